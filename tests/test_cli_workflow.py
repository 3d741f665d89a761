"""The command line on the user's own files: read as meant, or refused; the workflow from train
to evaluate and predict; output piped into a reader that leaves early."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crossent.cli import main
from crossent.cli._rundir import partial_dir
from crossent.data import DataSpec, load_csv, load_dataset, write_idx

FAST = ["--quiet", "--no-plots"]
ROOT = Path(__file__).resolve().parents[1]


def _iris_like(n: int = 90, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    names = ["setosa", "versicolor", "virginica"]
    y = [names[i % 3] for i in range(n)]
    X = np.round(rng.normal(size=(n, 4)) + 3 * np.array([[names.index(c)] for c in y]), 3)
    return X, y


def test_a_bom_csv_with_the_label_first_uses_the_label_column(tmp_path):
    X, y = _iris_like()
    text = "label,a,b,c,d\n" + "".join(
        f"{c},{','.join(map(str, r))}\n" for r, c in zip(X, y, strict=True)
    )
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())  # Excel's "CSV UTF-8"
    Xl, yl = load_csv(path)
    np.testing.assert_array_equal(Xl, X)
    assert yl.tolist() == y


def test_a_header_of_column_numbers_is_a_header_not_a_class(tmp_path):
    X, _ = _iris_like()
    path = tmp_path / "pandas.csv"
    labels = np.arange(len(X)) % 3
    path.write_text(
        "0,1,2,3,label\n"
        + "".join(f"{','.join(map(str, r))},{c}\n" for r, c in zip(X, labels, strict=True))
    )
    Xl, yl = load_csv(path)
    assert Xl.shape == (90, 4) and sorted(set(yl.tolist())) == [0, 1, 2]


def test_a_headerless_csv_with_a_text_label_first_keeps_its_first_row(tmp_path):
    X, y = _iris_like()
    path = tmp_path / "plain.csv"
    path.write_text("".join(f"{c},{','.join(map(str, r))}\n" for r, c in zip(X, y, strict=True)))
    Xl, yl = load_csv(path, 0)
    assert len(yl) == 90 and yl[0] == "setosa"
    np.testing.assert_array_equal(Xl[0], X[0])
    Xh, _ = load_csv(path, 0, header=False)  # saying it changes nothing here
    np.testing.assert_array_equal(Xh, Xl)


def test_integral_float_labels_are_classes_and_idx_images_keep_their_size(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for part, n in (("train", 120), ("t10k", 30)):
        y = np.arange(n) % 3
        images = (rng.integers(0, 60, (n, 8, 8)) + 60 * y[:, None, None]).astype(np.uint8)
        write_idx(tmp_path / f"{part}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{part}-labels-idx1-ubyte.gz", y.astype(np.float64))  # 0.0, 1.0
    ds = load_dataset(DataSpec("mnist", str(tmp_path), download=False))
    assert ds.image_shape == (8, 8) and ds.y_train.dtype == np.int64
    out = tmp_path / "run"
    assert main(["train", "--data", "mnist", "--data-dir", str(tmp_path), "--out", str(out),
                 "--quiet", "--offline", "--json"]) == 0  # fmt: skip
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["image_shape"] == [8, 8] and "weights.png" in metrics["pictures"]
    assert (out / "weights.png").is_file() and (out / "metrics.json").is_file()


@pytest.fixture(scope="module")
def species_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("species")
    X, y = _iris_like(120)
    path = d / "flowers.csv"
    path.write_text(
        "sepal_l,sepal_w,petal_l,petal_w,species\n"
        + "".join(f"{','.join(map(str, r))},{c}\n" for r, c in zip(X, y, strict=True))
    )
    out = d / "run"
    code = main(["train", "--data", str(path), "--label-column", "species", "--out", str(out),
                 *FAST])  # fmt: skip
    assert code == 0
    return d, path, out, X, y


def test_predict_drops_the_runs_own_label_column_and_picks_features_by_name(species_run, capsys):
    d, path, out, X, y = species_run
    capsys.readouterr()
    assert main(["predict", str(out), str(path), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    pred = [r["prediction"] for r in got["predictions"]]
    assert len(pred) == 120 and np.mean(np.array(pred) == np.array(y)) > 0.9
    # the same columns in another order, with an extra id column: picked by name
    shuffled = d / "shuffled.csv"
    shuffled.write_text(
        "id,petal_w,species,sepal_l,petal_l,sepal_w\n"
        + "".join(
            f"{i},{r[3]},{c},{r[0]},{r[2]},{r[1]}\n"
            for i, (r, c) in enumerate(zip(X, y, strict=True))
        )
    )
    assert main(["predict", str(out), str(shuffled), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert [r["prediction"] for r in again["predictions"]] == pred


def test_evaluate_prints_the_confusion_matrix(species_run, capsys):
    _, _, out, _, _ = species_run
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    text = capsys.readouterr().out
    assert "test confusion matrix" in text and "virginica" in text and "test accuracy" in text


def test_a_diverging_run_leaves_the_previous_run_and_no_partial_directory(species_run, capsys):
    _, path, out, _, _ = species_run
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code = main(["train", "--data", str(path), "--label-column", "species", "--out", str(out),
                 "--solver", "sgd", "--lr", "1e12", "--epochs", "3", *FAST])  # fmt: skip
    assert code == 2 and "training diverged" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not partial_dir(out).exists()


def test_json_into_a_reader_that_leaves_early_is_not_an_error(species_run):
    d, _, out, _, _ = species_run
    np.save(d / "many.npy", np.random.default_rng(0).normal(size=(20000, 4)))  # > a pipe's 64 KiB
    command = f"{sys.executable} -m crossent predict {out} {d / 'many.npy'} --json | head -c 12"
    proc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.stdout == '{\n  "classes'
    assert proc.returncode == 0, proc.stderr  # crossent itself exits 0
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_the_gpu_check_exits_2_with_one_line_when_there_is_no_gpu(tmp_path):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the script would run")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("gpu_check: error: no CUDA device, so nothing ran")
    assert list(tmp_path.iterdir()) == []


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _data_cases(d: Path) -> list[tuple[list[str], str]]:
    """Files that used to train without a word (issue 20), each with its one-line error."""
    X, y = _iris_like()
    rows = [",".join(map(str, r)) for r in X]
    classes = {"setosa": 0, "versicolor": 1, "virginica": 2}
    nums = [classes[c] for c in y]
    rng = np.random.default_rng(0)
    for part, n in (("train", 40), ("t10k", 10)):
        images = rng.random((n, 4, 4)).astype(np.float32)
        images[3, 0, 1] = np.nan
        write_idx(d / f"{part}-images-idx3-ubyte.gz", images)
        write_idx(d / f"{part}-labels-idx1-ubyte.gz", (np.arange(n) % 2).astype(np.uint8))
    from sklearn.datasets import load_digits

    pixels = load_digits().data.astype(int)
    return [
        (["--data", "mnist", "--data-dir", str(d)],
         "--data: mnist train images, row 3, column 1: expected a number, got 'nan'"),
        (["--data", _write(d / "dup.csv", "a,b,a,d,label\n" + "".join(
            f"{r},{c}\n" for r, c in zip(rows, nums, strict=True)))],
         "dup.csv, line 1: expected distinct column names, got 'a' in columns 1 and 3"),
        (["--data", _write(d / "zeros.csv", "a,b,c,d,label\n" + "".join(
            f"{r},{'0' * (i % 3)}7\n" for i, r in enumerate(rows)))],
         "labels '007', '07' and '7' are one class (7) written differently"),
        (["--data", _write(d / "comma.csv", "".join(
            f"{r},{c},\n" for r, c in zip(rows, nums, strict=True)))],
         "comma.csv: column 6 is empty on every line (each line ends with a comma); remove"),
        (["--data", _write(d / "pixels.csv", "".join(
            ",".join(map(str, p)) + "\n" for p in pixels))],
         "pixels.csv: the last column (column 64), taken as the labels, looks like a feature"),
    ]  # fmt: skip


def test_data_that_was_misread_is_one_line_naming_the_data(tmp_path, capsys):
    for argv, message in _data_cases(tmp_path):
        code = main(["train", "--out", str(tmp_path / "run"), *FAST, *argv])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, err
        assert "lower" not in err and not (tmp_path / "run").exists()


def test_reading_a_large_csv_shows_a_progress_bar_on_a_terminal(tmp_path, capsys, monkeypatch):
    from crossent.cli import _shared

    X, y = _iris_like()
    path = _write(tmp_path / "d.csv", "a,b,c,d,label\n" + "".join(
        f"{','.join(map(str, r))},{c}\n" for r, c in zip(X, y, strict=True)))  # fmt: skip
    monkeypatch.setattr(_shared, "BAR_MIN_BYTES", 0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["train", "--out", str(tmp_path / "run"), *FAST, "--data", path]) == 0
    assert "reading d.csv" in capsys.readouterr().err

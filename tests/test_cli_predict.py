"""``crossent evaluate`` and ``crossent predict`` on a trained run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits

from crossent.cli import main
from crossent.io import load_model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "linear"
    assert main(["train", "--out", str(out), "--quiet", "--no-plots"]) == 0
    return out


def test_evaluate_reproduces_the_run_metrics(run_dir, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(run_dir), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert m["test_accuracy"] == saved["test_accuracy"]
    assert m["test_loss"] == pytest.approx(saved["test_loss"])
    assert m["n_test"] == 450 and len(m["confusion_matrix"]) == 10


def test_evaluate_a_model_file_on_other_data_and_the_table(run_dir, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(run_dir / "model.npz"), "--data", "digits", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "test loss" in out


def test_evaluate_errors(tmp_path, run_dir, capsys):
    (tmp_path / "junk.npz").write_bytes(b"junk")
    assert main(["evaluate", str(tmp_path / "junk.npz")]) == 2
    assert "damaged, truncated or foreign" in capsys.readouterr().err
    X = np.random.default_rng(0).normal(size=(20, 3))
    np.savez(tmp_path / "three.npz", X=X, y=np.arange(20) % 2)
    assert main(["evaluate", str(run_dir), "--data", str(tmp_path / "three.npz")]) == 2
    assert "expected 64 features for this model, got 3" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv", "-header.csv", "-label.csv"])
def test_predict_prints_classes_and_probabilities(tmp_path, run_dir, capsys, suffix):
    X, y = load_digits(return_X_y=True)
    X, y = X[:6], y[:6]
    path = tmp_path / f"x{suffix}"
    if suffix == ".npy":
        np.save(path, X)
    elif suffix == ".npz":
        np.savez(path, X=X)
    elif suffix == ".csv":
        np.savetxt(path, X, delimiter=",")
    elif suffix == "-header.csv":
        np.savetxt(path, X, delimiter=",", header=",".join(f"p{i}" for i in range(64)), comments="")
    else:
        np.savetxt(
            path,
            np.column_stack([X, y]),
            delimiter=",",
            comments="",
            header=",".join([f"p{i}" for i in range(64)] + ["label"]),
        )
    capsys.readouterr()
    assert main(["predict", str(run_dir), str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = load_model(run_dir / "model.npz").predict(X)
    assert [r["prediction"] for r in out["predictions"]] == expected.tolist()
    assert np.mean(expected == y) >= 5 / 6
    proba = np.asarray(out["probabilities"])
    assert proba.shape == (6, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert out["predictions"][0]["top"][0] == [0, pytest.approx(proba[0, 0])]


def test_predict_table_and_errors(tmp_path, run_dir, capsys):
    X, _ = load_digits(return_X_y=True)
    np.save(tmp_path / "one.npy", X[0])
    capsys.readouterr()
    assert main(["predict", str(run_dir), str(tmp_path / "one.npy"), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "top 2 probabilities" in out and "0: 1.000" in out
    np.save(tmp_path / "bad.npy", X[:2, :10])
    assert main(["predict", str(run_dir), str(tmp_path / "bad.npy")]) == 2
    assert "expected 64 features per row, got 10" in capsys.readouterr().err
    assert main(["predict", str(run_dir), str(tmp_path / "none.csv")]) == 2
    assert "no file" in capsys.readouterr().err


def test_predict_refuses_a_header_with_two_columns_of_one_name(tmp_path, run_dir, capsys):
    X = load_digits().data[:6]
    names = [f"p{i}" for i in range(64)]
    names[5] = "p3"  # pandas would read 'p3' and 'p3.1'; a reader by name would take the first
    path = tmp_path / "dup.csv"
    np.savetxt(path, X, delimiter=",", header=",".join(names), comments="")
    capsys.readouterr()
    assert main(["predict", str(run_dir), str(path)]) == 2
    err = capsys.readouterr().err
    assert "dup.csv, line 1: expected distinct column names, got 'p3' in columns 4 and 6" in err
    assert err.count("\n") == 1

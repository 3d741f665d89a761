"""``crossent train``: exit codes, output, the run directory, determinism, Ctrl-C and --resume."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from crossent.cli import _shared as report
from crossent.cli import main
from crossent.cli._rundir import partial_dir
from crossent.io import load_model, load_run

FAST = ["--quiet", "--no-plots"]


def train(tmp_path, capsys, *args, name="run"):
    out = tmp_path / name
    code = main(["train", "--out", str(out), *args])
    captured = capsys.readouterr()
    return code, captured, out


def test_default_train_prints_json_and_writes_the_run_directory(tmp_path, capsys):
    code, cap, out = train(tmp_path, capsys, "--json", "--quiet")
    assert code == 0
    metrics = json.loads(cap.out)
    for key in ("train_accuracy", "test_accuracy", "test_loss", "fit_seconds"):
        assert isinstance(metrics[key], float)
    # L-BFGS trains on the whole training split (no validation hold-out it would not use) and
    # reaches scikit-learn LogisticRegression()'s 0.9667 on the same split
    assert metrics["val_accuracy"] is None and metrics["n_train"] == 1347
    assert metrics["test_accuracy"] >= 0.9666 and metrics["train_accuracy"] > 0.98
    assert 0.05 < metrics["test_loss"] < 0.3
    assert metrics["config"]["model"] == "linear" and metrics["config"]["penalty"] == "l2"
    assert metrics["data"]["source"] == "digits"
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        ".crossent-run",  # the marker that says: a run crossent wrote
        "checkpoint.npz",
        "confusion_matrix.png",
        "curves.png",
        "metrics.json",
        "model.npz",
        "weights.png",
    ]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test_accuracy"] == metrics["test_accuracy"]
    assert len(saved["history"]["loss"]) == saved["n_iter"]
    assert np.asarray(saved["confusion_matrix"]).sum() == saved["n_test"] == 450


def test_summary_table_without_json(tmp_path, capsys):
    code, cap, out = train(tmp_path, capsys, *FAST)
    assert code == 0
    for row in (
        "train accuracy",
        "test accuracy",
        "test loss",
        "fit time (s)",
    ):
        assert row in cap.out
    assert str(out) in cap.out


def test_load_run_contract(tmp_path, capsys):
    code, _, out = train(tmp_path, capsys, *FAST)
    assert code == 0
    run = load_run(out)
    assert run.classes == list(range(10)) and run.image_shape == (8, 8)
    assert run.X_test.shape == (450, 64) and run.X_test.max() == 16  # raw pixels
    acc = float(np.mean(run.model.predict(run.X_test) == run.y_test))
    assert acc == pytest.approx(run.metrics["test_accuracy"])
    assert run.model.decision_function(run.X_test).shape == (450, 10)
    assert run.classifier.coef_.shape == (10, 64) and run.scaler is not None


def test_same_seed_same_result(tmp_path, capsys):
    args = ["--model", "mlp", "--hidden", "16", "--epochs", "5", "--json", *FAST]
    results = [
        train(tmp_path, capsys, *args, "--seed", s, name=f"r{i}")
        for i, s in enumerate(["3", "3", "4"])
    ]
    models = [load_model(out / "model.npz") for _, _, out in results]
    np.testing.assert_array_equal(models[0][-1].coefs_[0], models[1][-1].coefs_[0])
    assert not np.array_equal(models[0][-1].coefs_[0], models[2][-1].coefs_[0])


def test_ctrl_c_keeps_the_checkpoint_and_resume_finishes_identically(tmp_path, capsys, monkeypatch):
    args = ["--solver", "sgd", "--epochs", "8", "--json", "--no-plots"]
    code, _, straight = train(tmp_path, capsys, *args, name="straight")
    assert code == 0

    real = report.make_progress

    def interrupting(*a, **k):
        progress, calls = real(*a, **k), []
        update = progress.update

        def update_then_interrupt(task, **kw):
            update(task, **kw)
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt

        progress.update = update_then_interrupt
        return progress

    monkeypatch.setattr(report, "make_progress", interrupting)
    code, cap, out = train(tmp_path, capsys, *args, name="cut")
    assert code == 130
    assert "interrupted after 3 epochs" in cap.err and "--resume" in cap.err
    ckpt, extra = load_model(partial_dir(out) / "checkpoint.npz", with_extra=True)
    assert ckpt[-1].n_iter_ == 3 and len(extra["history"]["loss"]) == 3
    assert not out.exists()  # nothing in --out until the run is complete

    monkeypatch.setattr(report, "make_progress", real)
    code, cap, out = train(tmp_path, capsys, *args, "--resume", name="cut")
    assert code == 0
    a, b = load_model(out / "model.npz"), load_model(straight / "model.npz")
    np.testing.assert_array_equal(a[-1].coef_, b[-1].coef_)
    assert (
        json.loads(cap.out)["test_accuracy"]
        == json.loads((straight / "metrics.json").read_text())["test_accuracy"]
    )


def test_mlp_with_l1_and_sgd(tmp_path, capsys):
    code, cap, _ = train(
        tmp_path,
        capsys,
        "--model",
        "mlp",
        "--hidden",
        "32,16",
        "--penalty",
        "l1",
        "--solver",
        "sgd",
        "--lr",
        "0.02",
        "--epochs",
        "15",
        "--json",
        *FAST,
    )
    assert code == 0
    m = json.loads(cap.out)
    assert m["config"]["hidden_layer_sizes"] == [32, 16] and m["test_accuracy"] > 0.9


def test_csv_data_with_string_labels(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (40, 3)), rng.normal(4, 1, (40, 3))])
    labels = ["small"] * 40 + ["large"] * 40
    path = tmp_path / "d.csv"
    path.write_text(
        "a,b,c,kind\n"
        + "".join(f"{r[0]},{r[1]},{r[2]},{k}\n" for r, k in zip(X, labels, strict=True))
    )
    code, cap, out = train(
        tmp_path, capsys, "--data", str(path), "--label-column", "kind", "--json", *FAST
    )
    assert code == 0
    m = json.loads(cap.out)
    assert m["test_accuracy"] == 1.0 and sorted(m["classes"]) == ["large", "small"]
    assert load_run(out).image_shape is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "nowhere.csv"], "No such file"),
        (["--data", "cifar10"], "data: expected 'digits'"),
        (["--l1-ratio", "2"], "--l1-ratio: expected a number in [0, 1]"),
        (["--alpha", "-1"], "--alpha: expected a finite number >= 0, got -1"),
        (["--resume"], "--resume:"),
        (["--model", "mlp", "--hidden", "a,b"], "--hidden: expected sizes"),
        (["--val-fraction", "1.5"], "--val-fraction: expected"),
    ],
)
def test_user_errors_exit_2_with_a_message(tmp_path, capsys, args, message):
    code, cap, _ = train(tmp_path, capsys, *args, *FAST)
    assert code == 2
    assert message in cap.err and cap.err.startswith("crossent train: error:")


def test_mnist_offline_names_the_files(tmp_path, capsys):
    code, cap, _ = train(
        tmp_path,
        capsys,
        "--data",
        "mnist",
        "--data-dir",
        str(tmp_path / "nothing"),
        "--offline",
        *FAST,
    )
    assert code == 2
    assert "train-images-idx3-ubyte.gz" in cap.err and "t10k-labels-idx1-ubyte.gz" in cap.err


def test_console_script_runs_as_a_process(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "crossent",
            "train",
            "--out",
            str(tmp_path / "p"),
            "--quiet",
            "--no-plots",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout


def test_importing_the_data_and_io_modules_stays_light():
    code = (
        "import sys, crossent.io, crossent.data, crossent.cli.train; "
        "print(any(m.split('.')[0] in ('sklearn', 'scipy', 'matplotlib', 'rich') "
        "for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_l1_picks_lbfgs_and_gives_exact_zeros(tmp_path, capsys):
    code, cap, _ = train(tmp_path, capsys, "--penalty", "l1", "--json", *FAST)
    assert code == 0
    m = json.loads(cap.out)
    assert m["config"]["solver"] == "lbfgs" and m["converged"]
    assert m["test_accuracy"] > 0.95
    assert m["zero_weight_fraction"] > 0.07  # more than the 3 always-blank pixels (0.047)


def test_an_interrupted_new_run_leaves_the_old_one_whole(tmp_path, capsys, monkeypatch):
    code, _, out = train(tmp_path, capsys, "--quiet")
    assert code == 0 and (out / "weights.png").exists()
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    from crossent.models import SoftmaxClassifier

    monkeypatch.setattr(SoftmaxClassifier, "fit", interrupt)
    code, _, out = train(tmp_path, capsys, *FAST)
    assert code == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old run, intact
    monkeypatch.undo()
    code, _, out = train(tmp_path, capsys, *FAST)  # a complete new run replaces it whole
    assert code == 0 and not (out / "weights.png").exists()


def test_single_class_csv_is_a_user_error(tmp_path, capsys):
    path = tmp_path / "one.csv"
    path.write_text("a,label\n" + "".join(f"{i},x\n" for i in range(20)))
    code, cap, _ = train(tmp_path, capsys, "--data", str(path), *FAST)
    assert code == 2 and "expected at least 2 classes" in cap.err

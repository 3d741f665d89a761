"""Bad command lines and bad files: every one ends with one line on stderr naming the option or
the file, exit status 2, and nothing lost — the previous run and every other file unchanged.

The cases run in-process (``crossent.cli.main``) against one small working directory: a
trained run, data files and model files made broken on purpose.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from crossent.cli import main
from crossent.cli._rundir import partial_dir
from crossent.data import write_idx

FAST = ["--quiet", "--no-plots"]


def _huge_npy(n: int = 10**10) -> bytes:
    """An .npy header that declares n float64 values (75 GiB), followed by 16 bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": (n,)}
    )
    return buf.getvalue() + bytes(16)


def _rewrite_model(src: Path, dest: Path, **changes: object) -> None:
    """Copy a model file, replacing arrays (or metadata fields, given as meta=dict)."""
    with np.load(src, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays["__metadata__"].tobytes())
    meta.update(changes.pop("meta", {}))  # type: ignore[arg-type]
    arrays.update(changes)  # type: ignore[arg-type]
    arrays["__metadata__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(dest, **arrays)


def _csv(path: Path, header: str | None, rows: list[str]) -> None:
    path.write_text(((header + "\n") if header else "") + "".join(r + "\n" for r in rows))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli_errors")
    assert main(["train", "--out", str(d / "run"), *FAST]) == 0
    run = d / "run"
    rng = np.random.default_rng(0)
    X = np.round(rng.normal(size=(60, 4)), 3)
    y = np.arange(60) % 3
    good = [",".join(map(str, r)) + f",{c}" for r, c in zip(X, y, strict=True)]
    _csv(d / "five.csv", "a,b,c,d,label", good)
    _csv(d / "count_header.csv", "0,1,2,3,4",
         [r.rsplit(",", 1)[0] + f",k{c}" for r, c in zip(good, y, strict=True)])  # fmt: skip
    _csv(d / "once.csv", None,
         ["1,2,3,4,flower"] + [r.rsplit(",", 1)[0] + f",k{c}" for r, c in zip(good, y, strict=True)])  # fmt: skip
    _csv(
        d / "label_first.csv",
        None,
        [f"k{c}," + r.rsplit(",", 1)[0] for r, c in zip(good, y, strict=True)],
    )
    _csv(d / "inf.csv", "a,b,label", ["1,2,0", "3,inf,1", "4,5,0", "6,7,1"])
    _csv(d / "huge.csv", "a,b,label", ["1,2,0", "3,1e308,1", "4,5,0", "6,7,1"])
    _csv(d / "nan.csv", "a,b,label", ["1,2,0", "3,,1", "4,5,0"])
    _csv(d / "two.csv", "a,b,label", ["1,2,0", "3,4,1"])
    _csv(d / "floatlabel.csv", "a,b,y", ["1,2,0.5", "3,4,1.5", "4,5,0.5", "5,6,1.5"])
    _csv(d / "emptylabel.csv", "a,b,label", ["1,2,0", "3,4,", "4,5,0", "5,6,1"])
    _csv(d / "ragged.csv", "a,b,label", ["1,2,0", "3,1", "4,5,0"])
    _csv(d / "text.csv", "a,b,label", ["1,2,0", "3,x,1", "4,5,0"])
    _csv(d / "oneclass.csv", "a,label", [f"{i},x" for i in range(20)])
    _csv(d / "onecol.csv", None, [str(i) for i in range(20)])
    (d / "empty.csv").write_text("")
    (d / "blank.csv").write_text("\n\n  \n")
    _csv(d / "header_only.csv", ",".join(f"p{i}" for i in range(64)), [])
    _csv(d / "semicolon.csv", None, [";".join(["1"] * 64)] * 3)
    (d / "latin1.csv").write_bytes("a,b,label\n1,2,caf\xe9\n".encode("latin-1"))
    (d / "notes.txt").write_text("hello")
    np.save(d / "nan.npy", np.full((2, 64), np.nan))
    np.save(d / "empty.npy", np.zeros((0, 64)))
    np.save(d / "obj.npy", np.zeros((2, 64)))
    (d / "huge.npy").write_bytes(_huge_npy())
    np.savez(d / "noX.npz", data=np.zeros((2, 64)))
    np.savez(d / "nan_X.npz", X=np.full((10, 4), np.nan), y=np.arange(10) % 2)
    np.savez(d / "y2d.npz", X=np.zeros((10, 4)), y=np.zeros((10, 2)))
    np.savez(d / "ynames.npz", X=np.zeros((10, 4)), label=np.zeros(10))
    with zipfile.ZipFile(d / "huge.npz", "w") as zf:
        zf.writestr("X.npy", _huge_npy())
        zf.writestr("y.npy", _huge_npy())
    idx = d / "idx_float"
    idx.mkdir()
    for part, n in (("train", 40), ("t10k", 10)):
        write_idx(
            idx / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 4, 4), dtype=np.uint8)
        )
        write_idx(idx / f"{part}-labels-idx1-ubyte.gz", rng.random(n) * 3)  # float labels
    # damaged run directories and model files, each a copy
    for name in ("badjson", "listjson", "escape", "nohist", "notrun", "baddata"):
        shutil.copytree(run, d / name)
    (d / "badjson" / "metrics.json").write_text("{not json")
    (d / "listjson" / "metrics.json").write_text("[1, 2]")
    (d / "escape" / "metrics.json").write_text(json.dumps({"model_file": "../five.csv"}))
    (d / "baddata" / "metrics.json").write_text(json.dumps({"data": {"source": 5}}))
    shutil.copy(run / "model.npz", d / "nohist" / "checkpoint.npz")  # no training history
    (d / "notrun" / "notes.txt").write_text("mine")
    model = run / "model.npz"
    with np.load(model) as f:
        classes, scale = f["classes"], f["scaler_scale"]
    _rewrite_model(model, d / "unsorted.npz", classes=classes[::-1].copy())
    _rewrite_model(model, d / "dupes.npz", classes=np.zeros_like(classes))
    _rewrite_model(model, d / "zeroscale.npz", scaler_scale=np.zeros_like(scale))
    _rewrite_model(model, d / "nanparam.npz", param_0=np.full((10, 64), np.nan))
    _rewrite_model(model, d / "strfeatures.npz", meta={"n_features_in": "64"})
    _rewrite_model(model, d / "strscaler.npz", meta={"scaler": "yes"})
    with zipfile.ZipFile(model) as src, zipfile.ZipFile(d / "hugemodel.npz", "w") as dst:
        for info in src.infolist():
            data = _huge_npy() if info.filename == "param_0.npy" else src.read(info)
            dst.writestr(info.filename, data)
    (d / "a_file").write_text("x")
    np.save(d / "rows.npy", np.zeros((3, 64)))
    # metadata a hostile file could hold: 100,000 nested [, a scaler said absent but present,
    # an unknown parameter beside a long value
    _rewrite_model(model, d / "noscaler.npz", meta={"scaler": False})
    params = json.loads(np.load(model)["__metadata__"].tobytes())["params"]
    _rewrite_model(model, d / "evilparams.npz", meta={"params": {**params, "evil": [0] * 10**4}})
    with np.load(model) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["__metadata__"] = np.frombuffer(b"[" * 100_000, dtype=np.uint8)
    np.savez(d / "nested.npz", **arrays)
    shutil.copytree(run, d / "nestedrun")
    (d / "nestedrun" / "metrics.json").write_text("[" * 100_000)
    shutil.copytree(run, d / "nestedmodelrun")
    shutil.copy(d / "nested.npz", d / "nestedmodelrun" / "model.npz")
    # a user's own directory holding only a file named like a run's
    (d / "mine").mkdir()
    (d / "mine" / "metrics.json").write_text('{"mine": true}')
    # paths that are not regular files: a directory named like data, a link to /dev/zero
    (d / "dir.csv").mkdir()
    (d / "zero.csv").symlink_to("/dev/zero")
    (d / "zero.npz").symlink_to("/dev/zero")
    return d


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


T = ["train", "--out", "{d}/run", *FAST]
CSV5 = [*T, "--data", "{d}/five.csv"]
E = ["evaluate", "{d}/run"]
P = ["predict", "{d}/run"]

# (argv with {d} for the working directory, a part of the one-line message)
CASES = [
    # a run is never lost: options checked before --out is touched
    ([*T, "--solver", "sgd", "--batch-size", "0"], "--batch-size: expected an integer >= 1, got 0"),
    ([*T, "--solver", "sgd", "--lr", "0"], "--lr: expected a finite number > 0, got 0"),
    ([*T, "--solver", "sgd", "--lr", "-1"], "--lr: expected a finite number > 0, got -1"),
    ([*T, "--solver", "sgd", "--lr", "nan"], "--lr: expected a finite number > 0, got nan"),
    ([*T, "--solver", "sgd", "--lr", "fast"], "--lr: expected a finite number > 0, got 'fast'"),
    ([*T, "--epochs", "0"], "--epochs: expected an integer >= 1, got 0"),
    ([*T, "--epochs", "2.5"], "--epochs: expected an integer >= 1, got '2.5'"),
    ([*T, "--alpha", "-1"], "--alpha: expected a finite number >= 0, got -1"),
    ([*T, "--alpha", "inf"], "--alpha: expected a finite number >= 0, got inf"),
    ([*T, "--model", "mlp", "--hidden", "0"], "--hidden: expected sizes like 128,64"),
    ([*T, "--model", "mlp", "--hidden", ","], "--hidden: expected sizes like 128,64"),
    ([*T, "--model", "mlp", "--hidden", "a,b"], "--hidden: expected sizes like 128,64"),
    (  # was a 54.6 TiB allocation (MemoryError)
        [*T, "--model", "mlp", "--hidden", "99999999999"],
        "--hidden: expected sizes like 128,64 (integers from 1 to 1000000), got '99999999999'",
    ),
    ([*T, "--model", "mlp", "--hidden", "²"], "(integers from 1 to 1000000), got '²'"),  # int('²')
    (
        [*T, "--model", "mlp", "--hidden", "1000000,1000000"],
        "--hidden: a 64 -> 1000000 -> 1000000 -> 10 network has 1e+12 parameters",
    ),
    ([*T, "--penalty", "elasticnet", "--l1-ratio", "2"], "--l1-ratio: expected a number in [0, 1]"),
    ([*T, "--limit", "5"], "--limit: expected at least 2 classes in the 5 training examples"),
    ([*T, "--limit", "0"], "--limit: expected an integer >= 1, got 0"),
    ([*T, "--limit", "-3"], "--limit: expected an integer >= 1, got -3"),
    ([*T, "--solver", "sgd", "--lr", "1e10", "--epochs", "3"], "training diverged"),
    ([*T, "--solver", "adam", "--lr", "1e10", "--epochs", "3"], "training diverged"),
    ([*T, "--seed", "-1"], "--seed: expected an integer in [0, 4294967295], got -1"),
    ([*T, "--test-size", "2"], "--test-size: expected a number in (0, 1), got 2"),
    ([*T, "--test-size", "0"], "--test-size: expected a number in (0, 1), got 0"),
    (
        [*T, "--test-size", "0.999"],
        "--test-size: expected at least 2 classes in the 1 training examples",
    ),
    ([*T, "--seed", str(2**32)], "--seed: expected an integer in [0, 4294967295], got 4294967296"),
    ([*T, "--val-fraction", "1"], "--val-fraction: expected a number in [0, 1), got 1"),
    ([*T, "--solver", "sgd", "--val-fraction", "0.9999"], "--val-fraction: 0.9999 of 1347"),
    # options that would be ignored
    ([*T, "--lr", "0.1"], "--lr: not used by the L-BFGS solver"),
    ([*T, "--batch-size", "8"], "--batch-size: not used by the L-BFGS solver"),
    ([*T, "--hidden", "64"], "--hidden: applies to --model mlp"),
    ([*T, "--l1-ratio", "0.5"], "--l1-ratio: applies to --penalty elasticnet, got --penalty l2"),
    ([*T, "--penalty", "none", "--alpha", "1"], "--alpha: --penalty none has nothing to scale"),
    ([*T, "--solver", "newton"], "--solver: invalid choice: 'newton'"),
    ([*T, "--data-dir", "{d}"], "--data-dir: applies to --data mnist or fashion-mnist"),
    ([*T, "--offline"], "--offline: applies to --data mnist or fashion-mnist"),
    ([*T, "--label-column", "label"], "--label-column: applies to a .csv --data, got digits"),
    ([*T, "--header", "yes"], "--header: applies to a .csv --data, got digits"),
    ([*T, "--data", "mnist", "--test-size", "0.2"], "--test-size: mnist has its own test split"),
    # --out
    ([*T[:2], "{d}/a_file", *FAST], "--out: expected a run directory, got the file"),
    ([*T[:2], "{d}/a_file/run", *FAST], "--out: expected a directory path, but"),
    ([*T[:2], "{d}/notrun", *FAST], "holds files that are not a crossent run ('notes.txt')"),
    ([*T[:2], "{d}", *FAST], "holds files that are not a crossent run"),
    ([*T[:2], "{d}/mine", *FAST], "--out: {d}/mine holds 'metrics.json' but is not a crossent run"),
    ([*T, "--resume", "--solver", "sgd"], "solver 'lbfgs' (now 'sgd')"),
    (
        [*T[:2], "{d}/nowhere", *FAST, "--resume"],
        "--resume: {d}/nowhere/checkpoint.npz: expected a",
    ),
    ([*T[:2], "{d}/nohist", *FAST, "--resume"], "checkpoint.npz has no training history"),
    # data the user names: never misread, never a traceback
    ([*T, "--data", "{d}/missing.csv"], "{d}/missing.csv"),
    ([*T, "--data", "cifar10"], "--data: expected 'digits', 'mnist', 'fashion-mnist' or a .csv/"),
    ([*T, "--data", "{d}/notes.txt"], "--data: expected 'digits', 'mnist', 'fashion-mnist'"),
    ([*CSV5, "--label-column", "5"], "--label-column: expected a column index from 0 to 4"),
    ([*CSV5, "--label-column", "-6"], "--label-column: expected a column index from 0 to 4"),
    ([*CSV5, "--label-column", "species"], "--label-column: expected a column name of"),
    (
        [*CSV5, "--label-column", "0"],
        "column 1, 'a': expected class labels (integers or names), got the number 0.126",
    ),
    (
        [*T, "--data", "{d}/count_header.csv"],
        "cannot tell whether line 1 ('0,1,2,3,4') is a header",
    ),
    (
        [*T, "--data", "{d}/once.csv"],
        "'flower' appears nowhere else in column 5); pass --header yes",
    ),
    ([*T, "--data", "{d}/once.csv", "--header", "maybe"], "--header: invalid choice: 'maybe'"),
    ([*T, "--data", "{d}/label_first.csv"], "got 'k0'; is this the label column? name it with"),
    ([*T, "--data", "{d}/inf.csv"], "inf.csv, line 3, column 2, 'b': expected a finite number"),
    (
        [*T, "--data", "{d}/huge.csv"],
        "got 1e+308, which overflows when squared to standardize the column",
    ),
    ([*T, "--data", "{d}/nan.csv"], "nan.csv, line 3, column 2, 'b': expected a number, got ''"),
    ([*T, "--data", "{d}/two.csv"], "--data: expected at least 2 classes in the 1 training"),
    ([*T, "--data", "{d}/floatlabel.csv"], "expected class labels (integers or names), got the"),
    ([*T, "--data", "{d}/emptylabel.csv"], "line 3, column 3, 'label': expected a class label"),
    ([*T, "--data", "{d}/ragged.csv"], "ragged.csv, line 3: expected 3 columns, got 2"),
    ([*T, "--data", "{d}/text.csv"], "text.csv, line 3, column 2, 'b': expected a number, got 'x'"),
    ([*T, "--data", "{d}/oneclass.csv"], "expected at least 2 classes"),
    ([*T, "--data", "{d}/onecol.csv"], "expected feature columns and a label column, got 1"),
    ([*T, "--data", "{d}/empty.csv"], "empty.csv: expected a CSV file with rows, got an empty"),
    ([*T, "--data", "{d}/semicolon.csv"], "got one column separated by ';'; save the file with"),
    ([*T, "--data", "{d}/latin1.csv"], "latin1.csv: expected a UTF-8 text file"),
    ([*T, "--data", "{d}/nan_X.npz"], "nan_X.npz: X, row 0, column 0: expected a number, got"),
    ([*T, "--data", "{d}/y2d.npz"], "y2d.npz: expected X (N, D) and y (N,), got (10, 4) and"),
    ([*T, "--data", "{d}/ynames.npz"], "expected arrays 'X' and 'y', got ['X', 'label']"),
    ([*T, "--data", "{d}/huge.npz"], "its header declares shape (10000000000,)"),
    ([*T, "--data", "mnist", "--data-dir", "{d}/idx_float"], "expected class labels (integers"),
    ([*T, "--data", "mnist", "--data-dir", "{d}/none", "--offline"], "t10k-labels-idx1-ubyte.gz"),
    (
        [*T, "--data", "{d}/dir.csv"],
        "--data: {d}/dir.csv: expected a regular file, got a directory",
    ),
    ([*T, "--data", "{d}/zero.csv"], "--data: /dev/zero: expected a regular file, got a character"),
    ([*T, "--data", "{d}/zero.npz"], "--data: /dev/zero: expected a regular file, got a character"),
    # evaluate
    ([*E, "--test-size", "0.5"], "--test-size: describes --data; without --data the model's"),
    ([*E, "--label-column", "y"], "--label-column: describes --data"),
    ([*E, "--limit", "3"], "unrecognized arguments: --limit 3"),
    ([*E, "--seed", "-2"], "--seed: expected an integer in [0, 4294967295], got -2"),
    ([*E, "--seed", str(2**40)], "--seed: expected an integer in [0, 4294967295], got 1099511"),
    (["evaluate", "{d}/nowhere"], "MODEL: expected a run directory or a model .npz file, got no"),
    (["evaluate", "{d}/badjson"], "metrics.json: expected the JSON crossent train writes, got a"),
    (["evaluate", "{d}/listjson"], "metrics.json: expected a mapping with a model_file name"),
    (["evaluate", "{d}/escape"], "metrics.json: expected a mapping with a model_file name"),
    (["evaluate", "{d}/baddata"], "MODEL: its data description is damaged (source: expected"),
    (["evaluate", "{d}/five.csv"], "five.csv: expected a crossent model (.npz of plain arrays)"),
    ([*E, "--data", "{d}/five.csv"], "--data: expected 64 features for this model, got 4"),
    (["evaluate", "{d}/unsorted.npz"], "unsorted.npz: expected classes sorted and unique"),
    (["evaluate", "{d}/dupes.npz"], "dupes.npz: expected classes sorted and unique"),
    (["evaluate", "{d}/zeroscale.npz"], "zeroscale.npz: expected positive scaler_scale"),
    (["evaluate", "{d}/nanparam.npz"], "expected finite values in param_0"),
    (["evaluate", "{d}/strfeatures.npz"], "expected metadata 'n_features_in' to be an integer"),
    (["evaluate", "{d}/strscaler.npz"], "expected metadata 'scaler' to be true or false"),
    (["evaluate", "{d}/hugemodel.npz"], "array 'param_0': its header declares shape (10000000000"),
    (["evaluate", "{d}/nested.npz"], "nested.npz: damaged metadata (nested too deeply"),
    (["evaluate", "{d}/nestedrun"], "metrics.json: expected the JSON crossent train writes, got a"),
    (
        ["evaluate", "{d}/noscaler.npz"],
        "inconsistent metadata: 'scaler' is false but the file holds scaler_mean and scaler_scale",
    ),
    (
        ["evaluate", "{d}/evilparams.npz"],
        "parameters of SoftmaxClassifier, got unknown ones ['evil']",
    ),
    (["evaluate", "{d}/zero.npz"], "MODEL: {d}/zero.npz: expected a regular file, got a character"),
    # predict
    ([*P, "{d}/empty.csv"], "INPUT: {d}/empty.csv: expected a CSV file with rows, got an empty"),
    ([*P, "{d}/blank.csv"], "INPUT: {d}/blank.csv: expected a CSV file with rows"),
    ([*P, "{d}/header_only.csv"], "header_only.csv: expected data rows, got only the line"),
    ([*P, "{d}/semicolon.csv"], "got one column separated by ';'"),
    ([*P, "{d}/five.csv"], "INPUT: expected 64 feature columns, got 4"),
    ([*P, "{d}/nan.npy"], "INPUT: {d}/nan.npy, row 0, column 0: expected a number, got 'nan'"),
    ([*P, "{d}/empty.npy"], "INPUT: {d}/empty.npy: expected features of shape (N, D) with N, D"),
    ([*P, "{d}/huge.npy"], "huge.npy: its header declares shape (10000000000,) (80000000000"),
    ([*P, "{d}/noX.npz"], "INPUT: expected an array 'X' in {d}/noX.npz, got ['data']"),
    ([*P, "{d}/notes.txt"], "INPUT: expected a .csv, .npy or .npz file, got notes.txt"),
    ([*P, "{d}/absent.csv"], "INPUT: expected a .csv, .npy or .npz file, got no file at"),
    ([*P, "{d}/huge.csv"], "INPUT: expected 64 feature columns, got 2"),
    (["predict", "{d}/hugemodel.npz", "{d}/rows.npy"], "its header declares shape"),
    (["predict", "{d}/nested.npz", "{d}/rows.npy"], "nested.npz: damaged metadata (nested too"),
    ([*P, "{d}/rows.npy", "--top", "0"], "--top: expected an integer >= 1, got 0"),
    # bench, explain
    (["bench", "-n", "0"], "--rows: expected an integer >= 1, got 0"),
    (["bench", "--repeat", "0"], "--repeat: expected an integer >= 1, got 0"),
    (["bench", "--vocab", "0"], "--vocab: expected an integer >= 1, got 0"),
    (["bench", "--json", "{d}/missing/b.json"], "--json: expected a file name in a writable"),
    (["bench", "--json", "{d}"], "--json: expected a file name in a writable directory"),
    (["explain", "--plot", "{d}/missing/e.png"], "--plot: expected an existing directory"),
    (["explain", "--plot", "{d}/idx_float"], "--plot: expected a file name ending in .png"),
    (["explain", "--plot", "{d}/run.png", "--digits", "20"], "--digits: expected an integer in"),
    (["explain", "--html", "{d}/page.txt"], "--html: expected a file name ending in .html"),
    (["explain", "--model", "{d}/nestedrun"], "metrics.json: expected the JSON crossent train"),
    (
        ["explain", "--model", "{d}/nestedmodelrun"],
        "model.npz: damaged metadata (nested too deeply",
    ),
]


@pytest.mark.parametrize(
    ("argv", "message"),
    CASES,
    ids=[
        f"{i}:" + " ".join(c[0][:1] + c[0][5 if c[0][0] == "train" else 1 :][:4])
        for i, c in enumerate(CASES)
    ],
)
def test_a_bad_input_is_one_line_exit_2_and_nothing_is_lost(work, capsys, argv, message):
    before = _snapshot(work)
    capsys.readouterr()
    code = main([a.replace("{d}", str(work)) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message.replace("{d}", str(work)) in err
    assert err.startswith("crossent") and err.count("\n") == 1, err
    assert _snapshot(work) == before  # the run, the data, every other file: unchanged
    assert not partial_dir(work / "run").exists()


def test_the_case_table_is_long_enough():
    assert len(CASES) >= 60


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(work, capsys):
    before = _snapshot(work)
    with open(work / ".run.lock", "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main([a.replace("{d}", str(work)) for a in T]) == 2
    assert "--out: another crossent train" in capsys.readouterr().err
    assert _snapshot(work) == before


def test_missing_matplotlib_is_said_before_training(work, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    before = _snapshot(work)
    assert main(["train", "--out", str(work / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "needs 'matplotlib'" in err and "or pass --no-plots" in err
    assert _snapshot(work) == before


def test_evaluate_without_scikit_learn_names_the_extra(work, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    assert main(["evaluate", str(work / "run")]) == 2
    assert "needs 'sklearn'" in capsys.readouterr().err
    assert main(["predict", str(work / "run"), str(work / "rows.npy")]) == 2
    assert "pip install 'crossent[cli]'" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_out_is_refused_up_front(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert main(["train", "--out", str(locked / "run"), *FAST]) == 2
    assert "--out: cannot write in" in capsys.readouterr().err


def test_a_full_disk_while_writing_the_run_keeps_the_old_one(work, capsys, monkeypatch):
    import crossent.cli._pictures as pictures

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(work / ".run.partial" / "curves.png"))

    monkeypatch.setattr(pictures, "save_pictures", full)
    before = _snapshot(work)
    assert main(["train", "--out", str(work / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "curves.png (No space left on device)" in err and err.count("\n") == 1
    assert _snapshot(work) == before and not partial_dir(work / "run").exists()


def test_explain_names_a_picture_it_cannot_write(work, capsys, monkeypatch):
    import crossent.explain as explain

    def denied(ex, path, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(explain, "save_plot", denied)
    assert main(["explain", "--plot", str(work / "e.png")]) == 2
    assert f"cannot use {work / 'e.png'} (Permission denied)" in capsys.readouterr().err


# ---- round 3 (issue 20): hangs, full disks, interrupted runs, pipes, changed data ------------
def _run_cli(*argv: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """``crossent ARGV`` in a fresh interpreter (its environment, signals and stdout its own)."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    return subprocess.run(
        [sys.executable, "-m", "crossent", *argv],
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )


@pytest.mark.timeout(60)  # before round 3 each of these blocked forever in open()
@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "{d}/fifo.npz"],
        ["predict", "{d}/fifo.npz", "{d}/rows.npy"],
        ["evaluate", "{d}/fiforun"],
        ["explain", "--model", "{d}/fiforun"],
        ["train", "--out", "{d}/run", *FAST, "--data", "{d}/fifo.csv"],
        ["predict", "{d}/run", "{d}/fifo.npz"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_a_fifo_is_refused_not_waited_on(work, capsys, argv):
    fifos = work / "fifos"
    if not fifos.exists():
        fifos.mkdir()
        shutil.copytree(work / "run", fifos / "fiforun")
        (fifos / "fiforun" / "model.npz").unlink()
        for path in ("fifo.npz", "fifo.csv", "fiforun/model.npz"):
            os.mkfifo(fifos / path)
        shutil.copy(work / "rows.npy", fifos / "rows.npy")
        os.symlink(work / "run", fifos / "run")
    argv = [a.replace("{d}", str(fifos)) for a in argv]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "expected a regular file, got a named pipe (FIFO)" in err, err
    assert err.count("\n") == 1


def test_model_metadata_is_never_dumped_whole(work, capsys):
    assert main(["evaluate", str(work / "evilparams.npz")]) == 2
    err = capsys.readouterr().err
    assert "['evil']" in err and len(err) < 400, err  # not the 10,000-element list


def _no_space(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Make syncing a file whose temporary name contains ``name`` fail with ENOSPC, as a
    full disk does (the data reach the disk at fsync at the latest)."""
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if name in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["train", "--out", "{d}/run", "--quiet"], "curves.png"),
        (["train", "--out", "{d}/run", *FAST], "model.npz"),
        (["train", "--out", "{d}/run", *FAST], "checkpoint.npz"),
        (["explain", "--html", "{d}/page.html"], "page.html"),
        (["explain", "--plot", "{d}/page.png"], "page.png"),
    ],
)
def test_a_full_disk_is_one_line_and_the_destination_is_intact(
    work, capsys, monkeypatch, argv, name
):
    (work / "page.html").write_text("the old page")
    (work / "page.png").write_bytes(b"the old picture")
    before = _snapshot(work)
    _no_space(monkeypatch, name)
    capsys.readouterr()
    assert main([a.replace("{d}", str(work)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err, err
    assert ".tmp" not in err and ".partial" not in err  # never a temporary file's name
    assert name in err
    if argv[0] == "train":
        assert f"{work / 'run'} is unchanged" in err
    assert _snapshot(work) == before and not partial_dir(work / "run").exists()


@pytest.mark.skipif(os.geteuid() != 0 or sys.platform != "linux", reason="mounts a tmpfs")
def test_a_really_full_disk_keeps_the_old_run(work, tmp_path, capsys):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs", str(disk)],
                      capture_output=True, check=False).returncode != 0:  # fmt: skip
        pytest.skip("cannot mount a tmpfs here")
    try:
        assert main(["train", "--out", str(disk / "run"), *FAST]) == 0  # ~60 kB: it fits
        before = _snapshot(disk)
        capsys.readouterr()
        assert main(["train", "--out", str(disk / "run"), "--quiet"]) == 2  # the pictures don't
        err = capsys.readouterr().err
        assert "(No space left on device)" in err and "is unchanged" in err, err
        assert _snapshot(disk) == before
        (disk / "page.html").write_text("the old page")
        with open(disk / "filler", "wb", buffering=0) as fh:  # fill the rest of the disk
            try:
                while True:
                    fh.write(bytes(1024))
            except OSError:
                pass
        assert main(["explain", "--html", str(disk / "page.html")]) == 2
        assert "page.html (No space left on device); nothing was written" in (
            capsys.readouterr().err
        )
        assert (disk / "page.html").read_text() == "the old page"
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_bad_mplbackend_is_said_before_training(work):
    before = _snapshot(work)
    env = {**os.environ, "MPLBACKEND": "no-such-backend"}
    res = _run_cli("train", "--out", str(work / "run"), "--quiet", env=env)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith("crossent train: error: MPLBACKEND: expected a matplotlib")
    assert "'no-such-backend'" in res.stderr and "or pass --no-plots" in res.stderr
    assert res.stderr.count("\n") == 1
    assert _snapshot(work) == before
    res = _run_cli("explain", "--plot", str(work / "e.png"), env=env)
    assert res.returncode == 2 and "or drop --plot" in res.stderr, res.stderr
    assert not (work / "e.png").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "{d}/run"],
        ["predict", "{d}/run", "{d}/rows.npy"],
        ["explain"],
        ["evaluate", "{d}/run", "--json"],
    ],
    ids=lambda argv: " ".join(argv[:1] + argv[2:]),
)
def test_a_reader_that_leaves_early_is_exit_0_and_quiet(work, argv):
    """``crossent evaluate RUN | head``: the reader is gone before the first write."""
    read, write = os.pipe()
    os.close(read)
    try:
        res = _run_cli(*(a.replace("{d}", str(work)) for a in argv), stdout=write)
    finally:
        os.close(write)
    assert res.returncode == 0 and res.stderr == "", res.stderr


def test_interrupt_counts_the_epochs_the_checkpoint_holds(tmp_path, capsys, monkeypatch):
    import crossent.io

    real_save = crossent.io.save_model
    calls = []

    def save_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # Ctrl-C while the third checkpoint is being written
            raise KeyboardInterrupt
        real_save(*args, **kwargs)

    monkeypatch.setattr(crossent.io, "save_model", save_then_stop)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *FAST, "--epochs", "50"]) == 130
    err = capsys.readouterr().err
    assert "interrupted after 2 iterations" in err, err
    assert "L-BFGS restarts its curvature memory when resumed" in err
    _, extra = crossent.io.load_model(partial_dir(out) / "checkpoint.npz", with_extra=True)
    assert len(extra["history"]["loss"]) == 2
    calls.clear()
    monkeypatch.setattr(crossent.io, "save_model", lambda *a, **k: (_ for _ in ()).throw(
        KeyboardInterrupt))  # fmt: skip
    out2 = tmp_path / "sgd"
    assert main(["train", "--out", str(out2), *FAST, "--solver", "sgd"]) == 130
    err = capsys.readouterr().err
    assert "before the first epoch was complete; nothing to resume" in err, err
    assert "L-BFGS" not in err and not partial_dir(out2).exists()


def test_a_changed_data_file_is_not_re_split(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X, y = np.round(rng.normal(size=(90, 3)), 3), np.arange(90) % 3
    rows = [",".join(map(str, r)) + f",{c}" for r, c in zip(X + y[:, None], y, strict=True)]
    data = tmp_path / "data.csv"
    _csv(data, "a,b,c,label", rows)
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), *FAST, "--data", str(data)]) == 0
    assert main(["evaluate", str(run), "--json"]) == 0
    capsys.readouterr()
    _csv(data, "a,b,c,label", rows[::-1])  # the same rows, another order: another split
    for argv in (
        ["evaluate", str(run)],
        ["evaluate", str(run / "model.npz")],
        ["explain", "--model", str(run)],
        ["train", "--out", str(run), *FAST, "--data", str(data), "--resume"],
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "expected the data file this run was trained on" in err or (
            "--resume: the data changed since" in err
        ), err
        assert err.count("\n") == 1
    assert main(["evaluate", str(run), "--data", str(data), "--json"]) == 0  # named: new data
    _csv(data, "a,b,c,label", rows)
    assert main(["evaluate", str(run), "--json"]) == 0  # restored


def test_out_follows_a_symbolic_link_and_keeps_it(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    link = tmp_path / "latest"
    link.symlink_to(tmp_path / "runs" / "today")
    for _ in range(2):  # a new run through a dangling link, then a replaced one
        assert main(["train", "--out", str(link), *FAST, "--epochs", "3"]) == 0
        assert link.is_symlink() and (tmp_path / "runs" / "today" / "model.npz").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "runs"]


def test_a_run_made_before_the_marker_is_still_replaced(work, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(work / "run", old)
    (old / ".crossent-run").unlink()  # as crossent wrote runs before round 3
    assert main(["train", "--out", str(old), *FAST, "--epochs", "3"]) == 0
    assert (old / ".crossent-run").is_file()


def test_bench_names_torch_when_asked_for_a_torch_peer_without_it(capsys, monkeypatch):
    from crossent.cli import bench

    monkeypatch.setitem(sys.modules, "torch", None)
    assert main(["bench", "--impl", "torch-eager", "--vocab", "10"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "crossent bench: error: --impl torch-eager: this command needs 'torch', which is not "
        "installed; install it with: pip install 'crossent[torch]'\n"
    )
    assert "torch-eager" not in bench._implementations(None)  # the default: what can run
    assert "torch-compile skipped" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--lr", "0.1"],
        ["train", "--model", "mlp", "--hidden", "²"],
        ["train", "--hidden", "64"],
        ["train", "--seed", str(2**32)],
        ["train", "--label-column", "y"],
        ["evaluate", "{d}/run", "--test-size", "0.5"],
        ["explain", "--index", "3"],
    ],
    ids=lambda argv: " ".join(argv[:3]),
)
def test_option_errors_come_before_the_heavy_imports(work, argv):
    """A mistake in the options is said at once: scikit-learn, matplotlib and torch (seconds
    of imports) are not loaded first."""
    code = (
        "import sys; from crossent.cli import main; "
        f"code = main({[a.replace('{d}', str(work)) for a in argv]!r}); "
        "heavy = [m for m in ('sklearn', 'scipy', 'matplotlib', 'torch') if m in sys.modules]; "
        "print(code, heavy)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert res.stdout.strip() == "2 []", (res.stdout, res.stderr)


def test_solver_auto_is_what_the_estimators_choose():
    from crossent.cli.train import AUTO_SOLVER
    from crossent.models import MLPClassifier, SoftmaxClassifier

    chosen = {"linear": SoftmaxClassifier()._resolve_solver(), "mlp": MLPClassifier().solver}
    assert chosen == AUTO_SOLVER
    for penalty in ("l1", "elasticnet", None):
        assert SoftmaxClassifier(penalty=penalty)._resolve_solver() == AUTO_SOLVER["linear"]


def test_a_picture_that_fails_to_draw_keeps_the_trained_run(tmp_path, capsys, monkeypatch):
    import crossent.cli._pictures as pictures

    def broken(*args, **kwargs):
        raise RuntimeError("no font for the title")

    monkeypatch.setattr(pictures, "save_pictures", broken)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--quiet", "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"crossent train: error: the run is saved in {out}, but its pictures could not be "
        "drawn (RuntimeError: no font for the title); pass --no-plots, or fix matplotlib and "
        "train again\n"
    )
    assert main(["evaluate", str(out), "--json"]) == 0  # the model and metrics are there
    assert json.loads((out / "metrics.json").read_text())["pictures"] == []


def test_a_lock_path_that_is_not_a_file_is_refused(tmp_path, capsys):
    os.mkfifo(tmp_path / ".run.lock")
    assert main(["train", "--out", str(tmp_path / "run"), *FAST]) == 2
    assert "--out: expected " in capsys.readouterr().err
    assert not (tmp_path / "run").exists()

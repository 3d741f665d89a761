"""Model files: round trips, exact resumption, atomic writes, and clear errors for bad files."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from crossent._npz import read_npy
from crossent.data import load_csv, load_npz, read_idx
from crossent.io import ModelFileError, load_model, read_run_metrics, save_model
from crossent.models import MLPClassifier, SoftmaxClassifier, TrainingState

DATA = pathlib.Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600], y[:600]


def _fit(est, X, y):
    with pytest.warns(ConvergenceWarning):
        return est.fit(X, y)


@pytest.mark.parametrize(
    "make",
    [
        lambda: SoftmaxClassifier(alpha=0.01, max_iter=20),
        lambda: MLPClassifier((8, 4), max_iter=3, random_state=0, class_weight={"3": 2.0}),
        lambda: SoftmaxClassifier(
            penalty="l1", solver="sgd", max_iter=2, early_stopping=True, random_state=0
        ),
    ],
)
def test_round_trip_keeps_predictions_params_and_labels(tmp_path, digits, make):
    X, y = digits
    labels = y.astype(str)  # string classes survive too
    pipe = _fit(make_pipeline(StandardScaler(), make()), X, labels)
    save_model(pipe, tmp_path / "m.npz")
    back = load_model(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.predict_proba(X), pipe.predict_proba(X))
    np.testing.assert_array_equal(back.classes_, pipe.classes_)
    assert back[-1].get_params() == pipe[-1].get_params()
    assert back[-1].loss_curve_ == pipe[-1].loss_curve_
    assert back[-1].n_iter_ == pipe[-1].n_iter_
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]  # no temporary left


def test_bare_classifier_and_extra_metadata(tmp_path, digits):
    X, y = digits
    clf = SoftmaxClassifier(alpha=0.1).fit(X / 16, y)
    save_model(clf, tmp_path / "m", extra={"note": "hello"})  # no suffix added
    back, extra = load_model(tmp_path / "m", with_extra=True)
    assert isinstance(back, SoftmaxClassifier) and extra == {"note": "hello"}
    np.testing.assert_array_equal(back.coef_, clf.coef_)


def test_loaded_model_resumes_training_exactly(tmp_path, digits):
    X, y = digits
    kw = dict(solver="adam", learning_rate_init=0.01, random_state=0, tol=0.0, n_iter_no_change=99)
    straight = _fit(MLPClassifier((8,), max_iter=4, **kw), X, y)
    first = _fit(MLPClassifier((8,), max_iter=2, **kw), X, y)
    save_model(first, tmp_path / "ckpt.npz")
    resumed = load_model(tmp_path / "ckpt.npz").set_params(warm_start=True, max_iter=2)
    _fit(resumed, X, y)
    for a, b in zip(resumed.coefs_, straight.coefs_, strict=True):
        np.testing.assert_array_equal(a, b)
    assert resumed.loss_curve_ == straight.loss_curve_


def test_save_refuses_other_estimators_and_unfitted_models(tmp_path, digits):
    X, y = digits
    with pytest.raises(TypeError, match="model: expected SoftmaxClassifier or MLPClassifier"):
        save_model(LogisticRegression().fit(X[:, :2], y < 5), tmp_path / "m.npz")
    with pytest.raises(NotFittedError):
        save_model(SoftmaxClassifier(), tmp_path / "m.npz")


@pytest.fixture
def saved(tmp_path, digits):
    X, y = digits
    path = tmp_path / "good.npz"
    save_model(make_pipeline(StandardScaler(), SoftmaxClassifier(alpha=0.1)).fit(X, y), path)
    return path


def _rewrite(src, dst, change):
    with np.load(src, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays["__metadata__"].tobytes().decode())
    change(arrays, meta)
    arrays["__metadata__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(dst, **arrays)
    return dst


def test_missing_truncated_and_foreign_files_give_clear_errors(tmp_path, saved):
    with pytest.raises(ModelFileError, match="no such file"):
        load_model(tmp_path / "absent.npz")
    raw = saved.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelFileError, match="damaged, truncated or foreign"):
        load_model(tmp_path / "cut.npz")
    (tmp_path / "text.npz").write_text("hello, I am not a model")
    with pytest.raises(ModelFileError, match="damaged, truncated or foreign"):
        load_model(tmp_path / "text.npz")
    np.savez(tmp_path / "other.npz", weights=np.ones(3))
    with pytest.raises(ModelFileError, match="without metadata"):
        load_model(tmp_path / "other.npz")
    np.save(tmp_path / "single.npy", np.ones(3))
    with pytest.raises(ModelFileError, match=r"not an \.npz"):
        load_model(tmp_path / "single.npy")


def test_a_pickle_inside_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    evil = np.empty(1, dtype=object)
    evil[0] = Payload()
    np.savez(tmp_path / "evil.npz", __metadata__=evil, classes=evil)
    with pytest.raises(ModelFileError, match="allow_pickle"):
        load_model(tmp_path / "evil.npz")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda a, m: m.update(format="something.else"), "expected format 'crossent.model'"),
        (lambda a, m: m.update(version=99), "expected format version 1, got 99"),
        (lambda a, m: m.update(estimator="os.system"), "expected estimator SoftmaxClassifier"),
        (lambda a, m: m["params"].update(evil=1), r"got unknown ones \[.evil.\]"),
        (lambda a, m: a.update(param_0=np.ones((3, 3))), "expected param_0 of shape \\(10, 64\\)"),
        (lambda a, m: a.pop("param_1"), "expected an array 'param_1', got none"),
        (lambda a, m: a.update(param_1=np.full(10, np.nan)), "expected finite values in param_1"),
        (lambda a, m: a.update(scaler_scale=np.ones(5)), "scaler_scale of shape \\(64,\\)"),
        (lambda a, m: m.pop("n_features_in"), "expected metadata .n_features_in. to be an integer"),
        (lambda a, m: a.update(classes=a["classes"][::-1]), "expected classes sorted and unique"),
        (lambda a, m: m["state"].update(optimizer="rmsprop"), "expected state optimizer one of"),
        (lambda a, m: a.update(opt_m=np.ones(3)), r"optimizer state m of shape \(650,\), got"),
        (lambda a, m: m.update(alpha="strong"), "expected metadata 'alpha' to be a number"),
        (lambda a, m: m.update(scaler=False), "'scaler' is false but the file holds scaler_mean"),
    ],
)
def test_tampered_files_are_rejected(tmp_path, saved, change, match):
    path = _rewrite(saved, tmp_path / "bad.npz", change)
    with pytest.raises(ModelFileError, match=match):
        load_model(path)


def test_damaged_metadata_bytes(tmp_path, saved):
    def scramble(arrays, meta):
        arrays["__metadata__"] = np.frombuffer(b"{not json", dtype=np.uint8)

    with np.load(saved) as f:
        arrays = {k: f[k] for k in f.files}
    scramble(arrays, None)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ModelFileError, match="damaged metadata"):
        load_model(tmp_path / "bad.npz")


def test_metadata_nested_too_deeply_is_a_model_file_error(tmp_path, saved):
    with np.load(saved) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["__metadata__"] = np.frombuffer(b"[" * 100_000, dtype=np.uint8)  # RecursionError
    np.savez(tmp_path / "nested.npz", **arrays)
    with pytest.raises(ModelFileError, match="damaged metadata \\(nested too deeply"):
        load_model(tmp_path / "nested.npz")


def _not_regular(tmp_path: pathlib.Path, kind: str, name: str) -> pathlib.Path:
    path = tmp_path / name
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")
    return path


_READERS = {
    "load_model": (lambda p: load_model(p), "model.npz"),
    "load_csv": (lambda p: load_csv(p), "data.csv"),
    "load_npz": (lambda p: load_npz(p), "data.npz"),
    "read_idx": (lambda p: read_idx(p), "train-images-idx3-ubyte"),
    "read_npy": (lambda p: read_npy(p), "rows.npy"),
    "read_run_metrics": (lambda p: read_run_metrics(p.parent), "metrics.json"),
}
_KINDS = {
    "fifo": "a named pipe \\(FIFO\\)",
    "directory": "a directory",
    "/dev/zero": "a character device",
}


@pytest.mark.timeout(60)  # a FIFO used to block open() forever; /dev/zero to fill the memory
@pytest.mark.parametrize("kind", list(_KINDS))
@pytest.mark.parametrize("reader", list(_READERS))
def test_every_reader_refuses_what_is_not_a_regular_file(tmp_path, reader, kind):
    read, name = _READERS[reader]
    path = _not_regular(tmp_path, kind, name)
    with pytest.raises(ValueError, match=f"expected a regular file, got {_KINDS[kind]}"):
        read(path)


def test_open_regular_reads_a_regular_file_and_a_link_to_one(tmp_path):
    from crossent._files import open_regular, read_regular

    (tmp_path / "a.txt").write_text("a,b\n1,2\n")
    (tmp_path / "link.txt").symlink_to(tmp_path / "a.txt")
    with open_regular(tmp_path / "link.txt", "r") as fh:
        assert fh.read() == "a,b\n1,2\n"
    assert read_regular(tmp_path / "a.txt") == b"a,b\n1,2\n"
    with pytest.raises(ValueError, match="expected a file of at most 4 bytes, got 8"):
        read_regular(tmp_path / "a.txt", max_bytes=4)
    with pytest.raises(FileNotFoundError):
        read_regular(tmp_path / "missing.txt")


def test_model_files_saved_by_version_0_1_0_still_load(tmp_path):
    """Files written before the training state was typed (main at d08dabf) load unchanged."""
    expected = np.load(DATA / "main-v1-expected.npz")
    linear, extra = load_model(DATA / "main-v1-linear-sgd.npz", with_extra=True)
    # The stored arrays load bit for bit (checked below); the probabilities computed from them
    # may differ by an ulp or two across CPUs: NumPy's exp and OpenBLAS's GEMM take other
    # kernels on AVX2 than on AVX-512 (22/450 entries, 2.8e-16 relative, seen on AVX2).
    np.testing.assert_allclose(
        linear.predict_proba(expected["X"]), expected["linear"], rtol=1e-13, atol=0
    )
    assert extra == {"note": "saved by crossent 0.1.0 (main d08dabf)"}
    clf = linear[-1]
    assert clf.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    assert clf.alpha_ == 0.01 and clf.n_iter_ == 5 and len(clf.validation_scores_) == 5
    meta, arrays = clf.to_arrays()
    assert meta["state"]["t"] == 5 and meta["state"]["optimizer"] == "sgd"
    assert arrays["val_idx"].size == 15 and arrays["best_theta"].shape == (15,)
    mlp = load_model(DATA / "main-v1-mlp-adam.npz")
    np.testing.assert_allclose(
        mlp.predict_proba(expected["X"]), expected["mlp"], rtol=1e-13, atol=0
    )
    # written again, the file holds the same arrays; the metadata gains only "alpha"
    save_model(linear, tmp_path / "again.npz", extra=extra)
    with np.load(DATA / "main-v1-linear-sgd.npz") as old, np.load(tmp_path / "again.npz") as new:
        assert sorted(old.files) == sorted(new.files)
        for key in old.files:
            if key != "__metadata__":
                np.testing.assert_array_equal(old[key], new[key])
        old_meta, new_meta = (json.loads(f["__metadata__"].tobytes()) for f in (old, new))
    assert new_meta.pop("alpha") == 0.01 and new_meta == old_meta
    # and training continues from the saved state
    Z = linear[0].transform(expected["X"])
    clf.set_params(warm_start=True, max_iter=2, early_stopping=False)
    _fit(clf, Z, clf.classes_[np.arange(150) // 50])
    assert clf.n_iter_ == 7


def test_training_state_round_trips_through_arrays():
    state = TrainingState.start(np.random.default_rng(3), "adam", 5, momentum=0.9)
    state.optimizer.step(np.zeros(5), np.arange(5.0), 0.1)
    state.t, state.best_loss, state.no_improve = 4, 0.25, 2
    state.best_theta, state.val_idx = np.arange(5.0), np.array([1, 3])
    scalars, arrays = state.to_arrays()
    back = TrainingState.from_arrays(json.loads(json.dumps(scalars)), arrays, size=5, momentum=0.9)
    assert (back.t, back.best_loss, back.best_score, back.no_improve) == (4, 0.25, -np.inf, 2)
    np.testing.assert_array_equal(back.best_theta, state.best_theta)
    np.testing.assert_array_equal(back.val_idx, state.val_idx)
    np.testing.assert_array_equal(back.optimizer.m, state.optimizer.m)
    assert back.optimizer.t == 1
    np.testing.assert_array_equal(back.rng.random(4), state.rng.random(4))  # the same stream
    with pytest.raises(ValueError, match=r"expected optimizer state m of shape \(6,\)"):
        TrainingState.from_arrays(scalars, arrays, size=6, momentum=0.9)
    arrays["best_theta"] = np.full(5, np.nan)
    with pytest.raises(ValueError, match="expected finite values in best_theta"):
        TrainingState.from_arrays(scalars, arrays, size=5, momentum=0.9)

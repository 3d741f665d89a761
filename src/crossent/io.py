"""Save and load trained classifiers safely, and reload a training run's directory.

A model file is one ``.npz`` archive of plain arrays plus a JSON metadata entry — never a
pickle: it is read with ``np.load(allow_pickle=False)``, every array is checked against the
shapes the metadata implies, and only the two crossent estimators can be built from it. Files
are written atomically (a temporary file in the same directory, then ``os.replace``).

A saved :class:`~sklearn.pipeline.Pipeline` of ``StandardScaler`` and a crossent classifier
keeps the scaler, so the loaded model takes raw features.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from crossent._files import atomic_open
from crossent._npz import read_npz

__all__ = ["FORMAT", "ModelFileError", "Run", "load_model", "load_run", "read_run_metrics",
           "save_model", "write_json_atomic"]  # fmt: skip

FORMAT = "crossent.model"
VERSION = 1
_META = "__metadata__"


class ModelFileError(ValueError):
    """A model file that is missing, damaged, truncated or not a crossent model."""


# every metadata field load_model reads: (accepted types, what the message says)
_META_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "estimator": ((str,), "a string"),
    "params": ((dict,), "a mapping"),
    "n_features_in": ((int,), "an integer"),
    "n_iter": ((int,), "an integer"),
    "best_validation_score": ((int, float, type(None)), "a number or null"),
    "state": ((dict,), "a mapping"),
    "scaler": ((bool,), "true or false"),
    "extra": ((dict,), "a mapping"),
}


def _estimators() -> dict[str, Any]:
    from crossent.models import MLPClassifier, SoftmaxClassifier

    return {"SoftmaxClassifier": SoftmaxClassifier, "MLPClassifier": MLPClassifier}


def _split_pipeline(model: Any) -> tuple[Any, Any]:
    """(scaler or None, crossent classifier) from a classifier or a Pipeline."""
    steps = getattr(model, "steps", None)
    if steps is None:
        return None, model
    from sklearn.preprocessing import StandardScaler

    estimators = [step for _, step in steps if step not in (None, "passthrough")]
    if len(estimators) == 1:
        return None, estimators[0]
    if len(estimators) == 2 and isinstance(estimators[0], StandardScaler):
        return estimators[0], estimators[1]
    raise TypeError(
        "model: expected a crossent classifier or Pipeline(StandardScaler, classifier), got a "
        f"Pipeline of {[type(s).__name__ for s in estimators]}"
    )


def _jsonable_params(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):  # class_weight: keys may be ints or strings
            value = {"__pairs__": [[_py(k), float(v)] for k, v in value.items()]}
        elif isinstance(value, tuple):
            value = list(value)
        elif key == "random_state" and not (value is None or isinstance(value, int)):
            value = None  # a Generator cannot be saved; its draws are already made
        out[key] = value
    return out


def _py(x: Any) -> Any:
    return x.item() if isinstance(x, np.generic) else x


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def save_model(
    model: Any, path: str | os.PathLike[str], *, extra: dict[str, Any] | None = None
) -> None:
    """Write a fitted classifier (or ``Pipeline(StandardScaler, classifier)``) to ``path``.

    The training state (optimizer moments, random generator, epoch count) is saved too, so a
    loaded model can continue with ``warm_start=True`` exactly where it stopped. ``extra`` is
    JSON-able metadata stored alongside (read it back with ``load_model(..., with_extra=True)``).
    """
    from sklearn.utils.validation import check_is_fitted

    scaler, clf = _split_pipeline(model)
    name = type(clf).__name__
    if name not in _estimators() or not isinstance(clf, _estimators()[name]):
        raise TypeError(f"model: expected SoftmaxClassifier or MLPClassifier, got {name}")
    check_is_fitted(clf)
    classes = np.asarray(clf.classes_.tolist())
    if classes.dtype.kind not in "biufU":
        raise TypeError(f"model.classes_: expected numbers or strings, got dtype {classes.dtype}")
    arrays: dict[str, NDArray[Any]] = {"classes": classes}
    for i, p in enumerate(clf._params()):
        arrays[f"param_{i}"] = np.asarray(p, dtype=np.float64)
    arrays["loss_curve"] = np.asarray(clf.loss_curve_, dtype=np.float64)
    if hasattr(clf, "validation_scores_"):
        arrays["validation_scores"] = np.asarray(clf.validation_scores_, dtype=np.float64)
    state = getattr(clf, "_state", {})
    opt_meta: dict[str, Any] = {}
    if state:
        for key, value in state["optimizer"].state_dict().items():
            arrays[f"opt_{key}"] = np.asarray(value)
        opt_meta = {
            "t": int(state["t"]),
            "optimizer": state["optimizer"].name,
            "rng": state["rng"].bit_generator.state,
            "best_loss": _finite(state["best_loss"]),
            "best_score": _finite(state["best_score"]),
            "no_improve": int(state["no_improve"]),
        }
        for key in ("best_theta", "val_idx"):
            if state.get(key) is not None:
                arrays[key] = np.asarray(state[key])
    if scaler is not None:
        arrays["scaler_mean"] = np.asarray(scaler.mean_, dtype=np.float64)
        arrays["scaler_scale"] = np.asarray(scaler.scale_, dtype=np.float64)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "estimator": name,
        "params": _jsonable_params(clf.get_params()),
        "n_features_in": int(clf.n_features_in_),
        "n_iter": int(clf.n_iter_),
        "best_validation_score": _finite(getattr(clf, "best_validation_score_", np.nan)),
        "state": opt_meta,
        "scaler": scaler is not None,
        "extra": extra or {},
    }
    arrays[_META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    _atomic_write(Path(path), arrays)


def _atomic_write(path: Path, arrays: dict[str, NDArray[Any]]) -> None:
    with atomic_open(path, "wb", make_dirs=True) as fh:
        np.savez(fh, allow_pickle=False, **arrays)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    with atomic_open(path, "w", make_dirs=True) as fh:
        json.dump(obj, fh, indent=2)
        fh.write("\n")


def _read(path: Path) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"{path}: expected a crossent model file, got no such file") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({exc})") from None
    try:
        arrays = read_npz(raw)
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, RuntimeError) as exc:
        raise ModelFileError(
            f"{path}: expected a crossent model (.npz of plain arrays), got a damaged, truncated "
            f"or foreign file ({type(exc).__name__}: {exc})"
        ) from None
    if _META not in arrays:
        raise ModelFileError(
            f"{path}: expected a crossent model, got an .npz without metadata "
            f"(arrays: {sorted(arrays)[:8]})"
        )
    try:
        meta = json.loads(arrays.pop(_META).astype(np.uint8).tobytes().decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: damaged metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(
            f"{path}: expected format {FORMAT!r}, got "
            f"{meta.get('format') if isinstance(meta, dict) else meta!r}"
        )
    if meta.get("version") != VERSION:
        raise ModelFileError(
            f"{path}: expected format version {VERSION}, got {meta.get('version')!r}"
        )
    for key, (kinds, expected) in _META_TYPES.items():
        value = meta.get(key)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ModelFileError(
                f"{path}: expected metadata {key!r} to be {expected}, got {value!r}"
            )
    if meta["n_features_in"] < 1 or meta["n_iter"] < 0:
        raise ModelFileError(
            f"{path}: expected n_features_in >= 1 and n_iter >= 0, got "
            f"{meta['n_features_in']} and {meta['n_iter']}"
        )
    return meta, arrays


def _restore_params(cls: Any, params: Any, path: Path) -> dict[str, Any]:
    allowed = set(cls().get_params())
    if not isinstance(params, dict) or not set(params) <= allowed:
        raise ModelFileError(f"{path}: unexpected estimator parameters {params!r}")
    out = dict(params)
    cw = out.get("class_weight")
    if isinstance(cw, dict):
        out["class_weight"] = {k: v for k, v in cw.get("__pairs__", [])}
    if isinstance(out.get("hidden_layer_sizes"), list):
        out["hidden_layer_sizes"] = tuple(out["hidden_layer_sizes"])
    return out


def _array(
    arrays: dict[str, NDArray[Any]], key: str, path: Path, shape: Any = None
) -> NDArray[Any]:
    if key not in arrays:
        raise ModelFileError(f"{path}: expected an array {key!r}, got none")
    arr = arrays[key]
    if shape is not None:
        if arr.shape != tuple(shape) or arr.dtype.kind != "f":
            raise ModelFileError(
                f"{path}: expected {key} of shape {tuple(shape)} (float), got "
                f"{arr.shape} ({arr.dtype})"
            )
        if not np.isfinite(arr).all():
            raise ModelFileError(f"{path}: expected finite values in {key}, got NaN or inf")
    return arr


def load_model(path: str | os.PathLike[str], *, with_extra: bool = False) -> Any:
    """Load what :func:`save_model` wrote: the classifier, or the Pipeline with its scaler.

    Raises :class:`ModelFileError` (a ``ValueError``) for a missing, damaged, truncated or
    foreign file; nothing in the file is ever executed. With ``with_extra=True`` returns
    ``(model, extra)``.
    """
    path = Path(path)
    meta, arrays = _read(path)
    cls = _estimators().get(meta.get("estimator"))  # type: ignore[arg-type]
    if cls is None:
        raise ModelFileError(
            f"{path}: expected estimator SoftmaxClassifier or MLPClassifier, "
            f"got {meta.get('estimator')!r}"
        )
    try:
        clf = cls(**_restore_params(cls, meta.get("params"), path))
        classes = _array(arrays, "classes", path)
        n_features = int(meta["n_features_in"])
        if classes.ndim != 1 or classes.size < 2 or classes.dtype.kind not in "biufU":
            raise ModelFileError(
                f"{path}: expected 1-d classes, got {classes.shape} {classes.dtype}"
            )
        if not np.all(classes[1:] > classes[:-1]):  # predictions index into this array
            raise ModelFileError(
                f"{path}: expected classes sorted and unique, got {classes.tolist()[:10]}"
            )
        clf.classes_ = classes
        clf.n_features_in_ = n_features
        shapes = clf._shapes(n_features, classes.size)
        params = [
            _array(arrays, f"param_{i}", path, s).astype(np.float64) for i, s in enumerate(shapes)
        ]
        clf._shapes_ = shapes
        clf._publish(params)
        clf._rebuild_theta()
        clf.n_iter_ = int(meta["n_iter"])
        clf.loss_curve_ = _array(arrays, "loss_curve", path).astype(float).tolist()
        if "validation_scores" in arrays:
            clf.validation_scores_ = arrays["validation_scores"].astype(float).tolist()
        if meta.get("best_validation_score") is not None:
            clf.best_validation_score_ = float(meta["best_validation_score"])
        _restore_state(clf, meta.get("state") or {}, arrays, path)
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{path}: inconsistent model file ({type(exc).__name__}: {exc})"
        ) from None
    model: Any = clf
    if meta.get("scaler"):
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler()
        scaler.mean_ = _array(arrays, "scaler_mean", path, (n_features,))
        scaler.scale_ = _array(arrays, "scaler_scale", path, (n_features,))
        if not np.all(scaler.scale_ > 0):
            raise ModelFileError(
                f"{path}: expected positive scaler_scale, got "
                f"{float(scaler.scale_.min())} (features are divided by it)"
            )
        scaler.var_ = scaler.scale_**2
        scaler.n_features_in_ = n_features
        scaler.n_samples_seen_ = 0
        model = Pipeline([("scaler", scaler), ("clf", clf)])
    return (model, meta.get("extra", {})) if with_extra else model


def _restore_state(
    clf: Any, st: dict[str, Any], arrays: dict[str, NDArray[Any]], path: Path
) -> None:
    from crossent.models._optim import make_optimizer

    if not st:
        return
    opt = make_optimizer(st["optimizer"], clf._theta.size, momentum=clf.momentum)
    opt_state = {k[4:]: v for k, v in arrays.items() if k.startswith("opt_")}
    for key, value in opt_state.items():
        if value.ndim == 1 and value.shape != clf._theta.shape:
            raise ModelFileError(f"{path}: optimizer state {key} has shape {value.shape}")
    opt.load_state_dict(opt_state)
    rng = np.random.default_rng()
    rng.bit_generator.state = st["rng"]
    clf._state = {
        "t": int(st["t"]),
        "rng": rng,
        "optimizer": opt,
        "best_loss": np.inf if st["best_loss"] is None else float(st["best_loss"]),
        "best_score": -np.inf if st["best_score"] is None else float(st["best_score"]),
        "no_improve": int(st["no_improve"]),
        "best_theta": arrays.get("best_theta"),
    }
    if "val_idx" in arrays:
        clf._state["val_idx"] = arrays["val_idx"].astype(np.intp)


from crossent._runs import Run, load_run, read_run_metrics  # noqa: E402  (they use load_model)

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

from crossent._files import atomic_open, read_regular
from crossent._npz import read_npz
from crossent._runs import Run, check_data_fingerprint, read_run_metrics

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
    """(scaler or None, crossent classifier): :func:`crossent.models.split_pipeline`."""
    from crossent.models import split_pipeline

    return split_pipeline(model)


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
    fitted, arrays = clf.to_arrays()  # the estimator owns its array form (and the state's)
    if scaler is not None:
        from crossent.models._pipeline import scaler_to_arrays

        arrays.update(scaler_to_arrays(scaler))
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "estimator": name,
        "params": _jsonable_params(clf.get_params()),
        **fitted,
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
        raw = read_regular(path)  # a FIFO or a device is refused before it is opened
    except FileNotFoundError:
        raise ModelFileError(f"{path}: expected a crossent model file, got no such file") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the model file ({exc.strerror})") from None
    except ValueError as exc:
        raise ModelFileError(str(exc)) from None
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
    except RecursionError:  # [[[[... nested deeper than the JSON parser recurses
        raise ModelFileError(
            f"{path}: damaged metadata (nested too deeply to be crossent's metadata)"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(
            f"{path}: expected format {FORMAT!r}, got "
            f"{_short(meta.get('format') if isinstance(meta, dict) else meta)}"
        )
    if meta.get("version") != VERSION:
        raise ModelFileError(
            f"{path}: expected format version {VERSION}, got {_short(meta.get('version'))}"
        )
    for key, (kinds, expected) in _META_TYPES.items():
        value = meta.get(key)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ModelFileError(
                f"{path}: expected metadata {key!r} to be {expected}, got {_short(value)}"
            )
    if meta["n_features_in"] < 1 or meta["n_iter"] < 0:
        raise ModelFileError(
            f"{path}: expected n_features_in >= 1 and n_iter >= 0, got "
            f"{meta['n_features_in']} and {meta['n_iter']}"
        )
    scaler_arrays = sorted(k for k in arrays if k.startswith("scaler_"))
    if not meta["scaler"] and scaler_arrays:  # a scaler would be dropped without a word
        raise ModelFileError(
            f"{path}: inconsistent metadata: 'scaler' is false but the file holds "
            f"{' and '.join(scaler_arrays)} (a damaged or edited file)"
        )
    return meta, arrays


def _short(value: Any, width: int = 60) -> str:
    """``repr(value)``, cut to ``width`` characters: a damaged file's value can be huge."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _restore_params(cls: Any, params: Any, path: Path) -> dict[str, Any]:
    allowed = set(cls().get_params())
    if not isinstance(params, dict) or not set(params) <= allowed:
        unknown = sorted(map(str, set(params) - allowed)) if isinstance(params, dict) else []
        raise ModelFileError(
            f"{path}: expected estimator parameters of {cls.__name__}, got "
            + (f"unknown ones {_short(unknown)}" if unknown else _short(params))
        )
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
    from crossent.models._state import checked_array

    try:
        return checked_array(arrays, key, shape)
    except ValueError as exc:
        raise ModelFileError(f"{path}: {exc}") from None


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
        clf = cls.from_arrays(_restore_params(cls, meta.get("params"), path), meta, arrays)
    except ModelFileError:
        raise
    except ValueError as exc:  # the estimator names the entry that does not fit
        raise ModelFileError(f"{path}: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise ModelFileError(
            f"{path}: inconsistent model file ({type(exc).__name__}: {exc})"
        ) from None
    n_features = clf.n_features_in_
    model: Any = clf
    if meta.get("scaler"):
        from crossent.models._pipeline import join_pipeline

        mean = _array(arrays, "scaler_mean", path, (n_features,))
        scale = _array(arrays, "scaler_scale", path, (n_features,))
        try:
            model = join_pipeline(mean, scale, clf)
        except ValueError as exc:
            raise ModelFileError(f"{path}: {exc}") from None
    return (model, meta.get("extra", {})) if with_extra else model


def load_run(run_dir: str | os.PathLike[str]) -> Run:
    """Reload a ``crossent train --out RUN_DIR`` directory: model, test split and metrics."""
    from crossent.data import DataSpec, load_dataset

    run_dir = Path(run_dir)
    metrics = read_run_metrics(run_dir)
    model = load_model(run_dir / metrics["model_file"])
    spec = DataSpec.from_dict(metrics.get("data", {}))
    check_data_fingerprint(spec, metrics.get("data_fingerprint"))
    ds = load_dataset(spec)
    clf = _split_pipeline(model)[1]
    image_shape = ds.image_shape
    return Run(
        run_dir=run_dir,
        model=model,
        classes=clf.classes_.tolist(),
        X_test=ds.X_test,
        y_test=ds.y_test,
        image_shape=image_shape,
        metrics=metrics,
        class_names=ds.class_names,
        data_spec=spec.to_dict(),
    )

"""A training run's directory: what it holds (:class:`Run`) and its metrics, checked.

Re-exported by :mod:`crossent.io`, where it is documented (and where :func:`load_run`, which
needs the model loader, lives).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from crossent._files import open_regular, read_regular

__all__ = ["Run", "check_data_fingerprint", "data_fingerprint", "read_run_metrics"]

_MAX_METRICS = 1 << 28  # 256 MiB: far above any metrics.json crossent writes


@dataclass
class Run:
    """A finished ``crossent train`` run, reloaded from its directory.

    ``model`` takes raw features (the standardization is inside it); ``X_test``/``y_test`` are
    the raw test split, rebuilt from the saved data spec with the same seed.
    """

    run_dir: Path
    model: Any
    classes: list[Any]
    X_test: NDArray[np.float64]
    y_test: NDArray[Any]
    image_shape: tuple[int, int] | None
    metrics: dict[str, Any]
    class_names: list[str] | None = None
    data_spec: dict[str, Any] = field(default_factory=dict)

    @property
    def classifier(self) -> Any:
        """The crossent estimator itself (``coef_`` acts on standardized features)."""
        from crossent.models import split_pipeline

        return split_pipeline(self.model)[1]

    @property
    def scaler(self) -> Any:
        """The fitted ``StandardScaler`` or ``None``."""
        from crossent.models import split_pipeline

        return split_pipeline(self.model)[0]


def read_run_metrics(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """A run directory's ``metrics.json``, checked: a mapping whose ``model_file`` is a file
    name inside the directory and whose ``data`` is a data description."""
    path = Path(run_dir) / "metrics.json"
    try:
        metrics = json.loads(read_regular(path, max_bytes=_MAX_METRICS).decode("utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{run_dir}: expected a run directory with metrics.json, got "
            "none (train one with `crossent train --out DIR`)"
        ) from None
    except (ValueError, OSError, RecursionError) as exc:  # RecursionError: [[[[... nested
        raise ValueError(
            f"{path}: expected the JSON crossent train writes, got a damaged file ({exc})"
        ) from None
    name = metrics.get("model_file", "model.npz") if isinstance(metrics, dict) else None
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise ValueError(f"{path}: expected a mapping with a model_file name, got {metrics!r:.80}")
    if not isinstance(metrics.get("data", {}), dict):
        raise ValueError(f"{path}: expected 'data' to be a mapping, got {metrics['data']!r:.80}")
    return {**metrics, "model_file": name}


def _data_files(spec: Any) -> list[Path]:
    """The files a data description reads: none for the bundled digits, the file of a CSV
    or NPZ, the four IDX files of MNIST (those present)."""
    from crossent.data import MNIST_FILES, _find, default_data_home

    if spec.source in MNIST_FILES:
        root = Path(spec.path) if spec.path is not None else default_data_home() / spec.source
        found = (_find(root, name) for name in MNIST_FILES[spec.source])
        return [p for p in found if p is not None]
    return [] if spec.path is None else [Path(spec.path)]


def data_fingerprint(spec: Any) -> dict[str, dict[str, Any]]:
    """``{path: {"size": bytes, "sha256": hex}}`` of every file a
    :class:`~crossent.data.DataSpec` reads, recorded in a run so that a changed file is noticed
    (its test split would be other rows, some of them trained on)."""
    prints: dict[str, dict[str, Any]] = {}
    for path in _data_files(spec):
        digest = hashlib.sha256()
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            left = size
            while left > 0 and (chunk := fh.read(min(left, 1 << 22))):
                digest.update(chunk)
                left -= len(chunk)
        prints[str(path)] = {"size": size, "sha256": digest.hexdigest()}
    return prints


def check_data_fingerprint(spec: Any, recorded: Any) -> None:
    """Raise ``ValueError`` if a file ``spec`` reads differs from the ``recorded`` fingerprint
    (runs made before fingerprints were recorded, and missing files, pass: the loader
    reports a missing file)."""
    if not isinstance(recorded, dict) or not recorded:
        return
    now = data_fingerprint(spec)
    for path, then in recorded.items():
        if path in now and now[path] != then:
            size = then.get("size") if isinstance(then, dict) else None
            raise ValueError(
                f"{path}: expected the data file this run was trained on ({size} bytes, "
                f"SHA-256 {str(then.get('sha256') if isinstance(then, dict) else '')[:12]}...), "
                f"got a changed file ({now[path]['size']} bytes, SHA-256 "
                f"{now[path]['sha256'][:12]}...): its test split would be other rows, some "
                "of them trained on; restore the file, or train a new run on it"
            )

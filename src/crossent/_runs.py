"""A training run's directory: what it holds (:class:`Run`) and its metrics, checked.

Re-exported by :mod:`crossent.io`, where it is documented (and where :func:`load_run`, which
needs the model loader, lives).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Run", "read_run_metrics"]


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
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{run_dir}: expected a run directory with metrics.json, got "
            "none (train one with `crossent train --out DIR`)"
        ) from None
    except (ValueError, OSError) as exc:
        raise ValueError(
            f"{path}: expected the JSON crossent train writes, got a damaged file ({exc})"
        ) from None
    name = metrics.get("model_file", "model.npz") if isinstance(metrics, dict) else None
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise ValueError(f"{path}: expected a mapping with a model_file name, got {metrics!r:.80}")
    if not isinstance(metrics.get("data", {}), dict):
        raise ValueError(f"{path}: expected 'data' to be a mapping, got {metrics['data']!r:.80}")
    return {**metrics, "model_file": name}

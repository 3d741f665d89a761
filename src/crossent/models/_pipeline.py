"""The one place that looks inside a scikit-learn ``Pipeline`` for a crossent classifier, and
that takes its ``StandardScaler`` apart into arrays and builds it back (for the model files)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["join_pipeline", "scaler_to_arrays", "split_pipeline"]


def split_pipeline(model: Any) -> tuple[Any, Any]:
    """``(scaler or None, classifier)`` of a classifier or a ``Pipeline`` ending in one.

    The one place that looks inside a scikit-learn ``Pipeline``: a bare classifier, or a
    ``Pipeline`` of at most a ``StandardScaler`` and the classifier (``None``/``"passthrough"``
    steps are skipped).
    """
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


def scaler_to_arrays(scaler: Any) -> dict[str, NDArray[np.float64]]:
    """A fitted ``StandardScaler`` as the arrays that :func:`join_pipeline` takes back."""
    return {
        "scaler_mean": np.asarray(scaler.mean_, dtype=np.float64),
        "scaler_scale": np.asarray(scaler.scale_, dtype=np.float64),
    }


def join_pipeline(
    scaler_mean: NDArray[np.float64], scaler_scale: NDArray[np.float64], classifier: Any
) -> Any:
    """``Pipeline(StandardScaler, classifier)`` with the scaler fitted to ``scaler_mean`` and
    ``scaler_scale`` (checked: features are divided by the scale); a ``ValueError`` otherwise."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if not np.all(scaler_scale > 0):
        raise ValueError(
            f"expected positive scaler_scale, got {float(scaler_scale.min())} (features are "
            "divided by it)"
        )
    scaler = StandardScaler()
    scaler.mean_, scaler.scale_ = scaler_mean, scaler_scale
    scaler.var_ = scaler_scale**2
    scaler.n_features_in_ = scaler_mean.shape[0]
    scaler.n_samples_seen_ = 0
    return Pipeline([("scaler", scaler), ("clf", classifier)])

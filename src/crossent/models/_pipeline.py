"""The one place that looks inside a scikit-learn ``Pipeline`` for a crossent classifier."""

from __future__ import annotations

from typing import Any

__all__ = ["split_pipeline"]


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

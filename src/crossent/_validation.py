"""Argument checks at the public boundary.

Every error names the argument, what was expected and what was got, in one form:
``"<argument>: expected <what>, got <what>"``. Private kernels trust their inputs.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

REDUCTIONS = ("mean", "sum", "none")


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def as_float_array(x: ArrayLike, name: str, *, min_ndim: int = 1) -> NDArray[np.floating]:
    """Return ``x`` as a float16/32/64 array; integers and booleans become float64."""
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name}: expected a numeric array, got {_describe(x)} ({exc})") from None
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind == "f":
        if arr.dtype not in (np.float16, np.float32, np.float64):
            arr = arr.astype(np.float64)
    else:
        raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    if arr.ndim < min_ndim:
        raise ValueError(
            f"{name}: expected an array with at least {min_ndim} dimension(s), "
            f"got a {arr.ndim}-d array of shape {arr.shape}"
        )
    return arr


def normalize_axis(axis: Any, ndim: int, name: str = "axis") -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {_describe(axis)}")
    axis = int(axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}: expected an int in [{-ndim}, {ndim - 1}], got {axis}")
    return axis % ndim


def check_positive(value: Any, name: str, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    val = check_real(value, name)
    if not val > 0 or not np.isfinite(val):
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return val


def check_real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {_describe(value)}")
    val = float(value)
    if np.isnan(val):
        raise ValueError(f"{name}: expected a number, got nan")
    return val


def check_nonnegative(value: Any, name: str) -> float:
    val = check_real(value, name)
    if not 0 <= val < np.inf:
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return val


def check_unit_interval(value: Any, name: str) -> float:
    val = check_real(value, name)
    if not 0.0 <= val <= 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
    return val


def check_reduction(reduction: Any) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction: expected one of {', '.join(map(repr, REDUCTIONS))}, got {reduction!r}"
        )
    return str(reduction)


def check_logits_values(row_max: NDArray[np.floating], name: str = "logits") -> None:
    """Reject NaN and +inf, detected cheaply through the row maxima (max propagates NaN)."""
    if np.isnan(row_max).any():
        raise ValueError(f"{name}: expected finite values or -inf (masked), got NaN")
    if np.isposinf(row_max).any():
        raise ValueError(f"{name}: expected finite values or -inf (masked), got +inf")


def check_weight(weight: ArrayLike | None, n_classes: int, dtype: np.dtype[Any]) -> Any:
    if weight is None:
        return None
    w = as_float_array(weight, "weight")
    if w.shape != (n_classes,):
        raise ValueError(f"weight: expected shape ({n_classes},) (one per class), got {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("weight: expected finite values, got NaN or inf")
    if (w < 0).any():
        raise ValueError(f"weight: expected values >= 0, got minimum {w.min()!r}")
    return w.astype(dtype)


def describe_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"

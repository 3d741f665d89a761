"""Argument checks at the public boundary.

Every error names the argument, what was expected and what was got, in one form:
``"<argument>: expected <what>, got <what>"``. Private kernels trust their inputs.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crossent._algebra import check_row_maxima

# the scalar checks live with the loss's options, where their messages are written once
from crossent._spec import (  # noqa: F401  (re-exported)
    check_nonnegative,
    check_positive,
    check_reduction,
    check_unit_interval,
)
from crossent._spec import describe_value as describe


def refuse_masked(x: Any, name: str) -> None:
    """A masked array is refused: ``np.asarray`` drops its mask, and every value under it
    would be read as if it were data."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name}: expected a plain array, got a numpy masked array (its mask would be "
            "ignored); select the entries you mean, or fill them with np.ma.filled"
        )


def as_array(x: ArrayLike, name: str) -> NDArray[Any]:
    """``np.asarray(x)``, a masked array refused."""
    refuse_masked(x, name)
    return np.asarray(x)


def as_float_array(x: ArrayLike, name: str, *, min_ndim: int = 1) -> NDArray[np.floating]:
    """Return ``x`` as a float16/32/64 array; integers and booleans become float64."""
    refuse_masked(x, name)
    try:
        arr = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name}: expected a numeric array, got {describe(x)} ({exc})") from None
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind == "f":
        if arr.dtype not in (np.float16, np.float32, np.float64):
            arr = arr.astype(np.float64)
    else:
        raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    check_min_ndim(arr, name, min_ndim)
    return arr


def check_min_ndim(arr: Any, name: str, min_ndim: int) -> None:
    """A ``ValueError`` naming ``name`` when ``arr`` (any array library's) has too few axes."""
    if arr.ndim < min_ndim:
        raise ValueError(
            f"{name}: expected an array with at least {min_ndim} dimension(s), "
            f"got a {arr.ndim}-d array of shape {tuple(arr.shape)}"
        )


def normalize_axis(axis: Any, ndim: int, name: str = "axis") -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {describe(axis)}")
    axis = int(axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}: expected an int in [{-ndim}, {ndim - 1}], got {axis}")
    return axis % ndim


def check_logits_values(row_max: NDArray[np.floating], name: str = "logits") -> None:
    """Reject NaN and +inf, detected cheaply through the row maxima (max propagates NaN)."""
    check_row_maxima(row_max, name=name)

"""Targets and class weights of the loss: classified and checked once, for NumPy and torch.

Part of :mod:`crossent._spec`; every message about a target or a class weight is written here.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray


def describe_shape(shape: tuple[int, ...]) -> str:
    """``(3,)``, ``(2, 3)``: a shape written the same for NumPy and torch."""
    return "(" + ", ".join(str(int(s)) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def dtype_name(dtype: Any) -> str:
    """``float32`` for ``numpy.float32`` and ``torch.float32`` alike."""
    return str(dtype).removeprefix("torch.")


def classify_target(
    kind: str,
    dtype: Any,
    shape: tuple[int, ...],
    index_shape: tuple[int, ...],
    prob_shape: tuple[int, ...],
) -> str:
    """``'index'`` or ``'prob'``, from the target's dtype kind and shape.

    ``kind`` is NumPy's dtype kind (``'f'`` float, ``'i'``/``'u'`` integer, ``'b'`` bool,
    ``'c'`` complex...; torch dtypes map to the same letters), ``index_shape`` the logits'
    shape without the class axis, ``prob_shape`` the logits' shape (both in the user's layout).
    """
    shape = tuple(shape)
    if kind == "f" and shape == tuple(prob_shape):
        return "prob"
    if kind in "iu" and shape == tuple(index_shape):
        return "index"
    expected = (
        f"target: expected integer class indices of shape {describe_shape(index_shape)} "
        f"or float probabilities of shape {describe_shape(prob_shape)}"
    )
    if kind == "f" and shape == tuple(index_shape):
        raise TypeError(
            f"{expected}, got float labels (dtype {dtype_name(dtype)}) of shape "
            f"{describe_shape(shape)}; convert them to an integer dtype"
        )
    if kind in "iufb":
        raise ValueError(
            f"{expected}, got dtype {dtype_name(dtype)} and shape {describe_shape(shape)}"
        )
    raise TypeError(f"target: expected a numeric array, got dtype {dtype_name(dtype)}")


def _position(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A flat row number as a position in the user's layout of the target."""
    return tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()


def check_class_indices(
    y: NDArray[Any], n_classes: int, ignore_index: int, shape: tuple[int, ...]
) -> NDArray[np.bool_] | None:
    """Raise for an index outside ``[0, C)`` that is not ``ignore_index``.

    ``y`` is the flattened ``(M,)`` target in any integer dtype (uint64 values are reported as
    they are, never wrapped), ``shape`` its shape in the user's layout, used to report the
    position. Returns the mask of ignored rows, or ``None`` when none is ignored.
    """
    ignored = y == ignore_index
    bad = (y >= n_classes) if y.dtype.kind == "u" else ((y < 0) | (y >= n_classes))
    bad &= ~ignored
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"target: expected class indices in [0, {n_classes - 1}] or ignore_index="
            f"{ignore_index}, got {y[pos].item()} at position {_position(pos, shape)}"
        )
    return ignored if ignored.any() else None


# machine epsilons; bfloat16 probabilities are checked as float16, which holds every bfloat16
# value in [6e-5, 1] exactly: a sum of them is as exact as a float16 sum
_EPS = {"float64": 2.0**-52, "float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-10}


def prob_sum_tolerance(dtype: Any) -> float:
    """How far from 1 a row of probabilities of this dtype may sum: ``max(√eps, 1e-6)``."""
    return max(math.sqrt(_EPS.get(dtype_name(dtype), 2.0**-52)), 1e-6)


def check_probabilities(
    q: NDArray[Any], dtype: Any, class_axis: int, shape: tuple[int, ...]
) -> None:
    """Finite, non-negative rows summing to 1 (within :func:`prob_sum_tolerance`).

    ``q`` is ``(M, C)`` (any float dtype: a low-precision tensor may arrive widened; ``dtype``
    is the user's), ``class_axis`` the class axis in the user's layout and ``shape`` the
    target's shape without it (positions are reported in it).
    """
    if not np.isfinite(q).all():
        raise ValueError("target: expected finite probabilities, got NaN or inf")
    if q.size and q.min() < 0:
        raise ValueError(f"target: expected probabilities >= 0, got minimum {float(q.min())!r}")
    sums = q.sum(axis=1, dtype=np.float64)
    tol = prob_sum_tolerance(dtype)
    off = np.abs(sums - 1.0) > tol
    if off.any():
        pos = int(np.flatnonzero(off)[0])
        raise ValueError(
            f"target: expected probabilities summing to 1 along axis {class_axis} "
            f"(tolerance {tol:.1e}), got a sum of {float(sums[pos])!r} at position "
            f"{_position(pos, shape)}"
        )


def check_class_weight(w: NDArray[Any], n_classes: int, name: str = "weight") -> None:
    """Class weights: shape ``(C,)``, finite, ``>= 0``.

    Negative class weights are refused (PyTorch accepts them): a negative weight turns the
    loss of its class into a reward for predicting it badly, unbounded below, and makes the
    weighted ``'mean'`` denominator ``Σ w_y`` able to vanish or change sign.
    """
    if tuple(w.shape) != (n_classes,):
        raise ValueError(
            f"{name}: expected shape ({n_classes},) (one per class), got "
            f"{describe_shape(tuple(w.shape))}"
        )
    if not np.isfinite(w).all():
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    if w.size and w.min() < 0:
        raise ValueError(
            f"{name}: expected values >= 0 (negative class weights are not supported), "
            f"got minimum {float(w.min())!r}"
        )

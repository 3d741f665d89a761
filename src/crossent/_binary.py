"""Binary cross-entropy on logits, with PyTorch's ``weight`` and ``pos_weight``."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crossent._validation import as_array, as_float_array, check_reduction

__all__ = ["binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_grad"]


def _prepare(
    logits: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None,
    pos_weight: ArrayLike | None,
    reduction: str,
) -> tuple[NDArray[Any], NDArray[Any], NDArray[Any] | None, NDArray[Any] | None, str, Any]:
    x = as_float_array(logits, "logits", min_ndim=0)
    reduction = check_reduction(reduction)
    if np.isnan(x).any() or np.isinf(x).any():
        raise ValueError("logits: expected finite values, got NaN or inf")
    y = as_array(target, "target")
    if y.dtype.kind not in "biuf":
        raise TypeError(f"target: expected numbers in [0, 1], got dtype {y.dtype}")
    if y.shape != x.shape:
        raise ValueError(f"target: expected the logits' shape {x.shape}, got {y.shape}")
    y = y.astype(np.float64)
    if y.size and (not np.isfinite(y).all() or y.min() < 0 or y.max() > 1):
        raise ValueError("target: expected values in [0, 1], got values outside it (or NaN)")
    arrays: list[NDArray[Any] | None] = []
    for name, value in (("weight", weight), ("pos_weight", pos_weight)):
        if value is None:
            arrays.append(None)
            continue
        arr = as_float_array(value, name, min_ndim=0).astype(np.float64)
        try:
            arr = np.broadcast_to(arr, x.shape)
        except ValueError:
            raise ValueError(
                f"{name}: expected a shape broadcastable to the logits' shape {x.shape}, "
                f"got {arr.shape}"
            ) from None
        if not np.isfinite(arr).all() or (arr < 0).any():
            raise ValueError(f"{name}: expected finite values >= 0, got a negative or NaN one")
        arrays.append(arr)
    return x.astype(np.float64), y, arrays[0], arrays[1], reduction, x.dtype


def _softplus(z: NDArray[Any]) -> NDArray[Any]:
    return np.logaddexp(0.0, z)  # log(1 + e^z) without overflow


def binary_cross_entropy_with_logits(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: str = "mean",
) -> Any:
    r"""Binary cross-entropy of ``sigmoid(logits)`` against ``target``, stable for any logit.

    With ``σ`` the sigmoid, ``P = pos_weight`` and ``w = weight`` (both broadcast to the logits):

    .. math::

        \ell = -w\,[P\,y \log\sigma(x) + (1-y)\log(1-\sigma(x))]
             = w\,[P\,y\,\operatorname{softplus}(-x) + (1-y)\operatorname{softplus}(x)],
        \qquad \frac{\partial \ell}{\partial x} = w\,[(1 + (P-1)\,y)\,\sigma(x) - P\,y]

    Parameters
    ----------
    logits : array_like
        Finite scores, any shape.
    target : array_like
        Same shape, values in [0, 1] (soft labels allowed).
    weight, pos_weight : array_like, optional
        Non-negative, broadcastable to the logits (``pos_weight`` typically per class, along
        the last axis).
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        ``'mean'`` divides by the number of elements.

    Returns
    -------
    scalar or ndarray
        The logits' dtype (float64 for integer input).

    Raises
    ------
    TypeError
        Non-numeric input.
    ValueError
        Non-finite logits, a target of another shape or outside [0, 1], negative or
        non-broadcastable weights, an unknown ``reduction``.

    Examples
    --------
    >>> import crossent
    >>> float(crossent.binary_cross_entropy_with_logits([0.0, 1000.0], [1.0, 0.0]))
    500.3466
    """
    x, y, w, pw, reduction, dtype = _prepare(logits, target, weight, pos_weight, reduction)
    pos = y * (pw if pw is not None else 1.0)
    loss = pos * _softplus(-x) + (1.0 - y) * _softplus(x)
    if w is not None:
        loss = loss * w
    if reduction == "none":
        return loss.astype(dtype)
    total = float(loss.sum())
    if reduction == "mean":
        total = total / loss.size if loss.size else 0.0
    return dtype.type(total)


def binary_cross_entropy_with_logits_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    pos_weight: ArrayLike | None = None,
    reduction: str = "mean",
) -> NDArray[Any]:
    r"""Gradient of :func:`binary_cross_entropy_with_logits` with respect to the logits.

    .. math::

        \frac{\partial L}{\partial x} = \frac{w\,[(1 + (P-1)\,y)\,\sigma(x) - P\,y]}{D}

    with ``D`` the number of elements for ``'mean'`` and 1 otherwise (for ``'none'``, each
    element's own derivative).

    Examples
    --------
    >>> import crossent
    >>> crossent.binary_cross_entropy_with_logits_grad([0.0, 2.0], [1.0, 0.0], reduction="sum")
    array([-0.5   ,  0.8808])
    """
    x, y, w, pw, reduction, dtype = _prepare(logits, target, weight, pos_weight, reduction)
    p = np.exp(-_softplus(-x))  # sigmoid, without overflow
    pw_ = pw if pw is not None else 1.0
    grad = (1.0 + (pw_ - 1.0) * y) * p - pw_ * y
    if w is not None:
        grad = grad * w
    if reduction == "mean" and grad.size:
        grad = grad / grad.size
    return np.asarray(grad, dtype=dtype)

"""Numerically stable ``logsumexp``, ``softmax`` and ``log_softmax``."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crossent._validation import (
    as_float_array,
    check_logits_values,
    check_positive,
    normalize_axis,
)

__all__ = ["log_softmax", "logsumexp", "softmax"]


def _compute_dtype(dtype: np.dtype) -> type[np.floating]:
    """float16 is computed in float32; float32 and float64 in themselves."""
    return np.float64 if dtype == np.float64 else np.float32


def _shifted(
    x: ArrayLike, axis: int, temperature: float, name: str = "x"
) -> tuple[NDArray[np.floating], NDArray[np.floating], int, np.dtype]:
    """Return ``(z - max, max, axis, dtype)`` with ``z = x / temperature``."""
    arr = as_float_array(x, name)
    ax = normalize_axis(axis, arr.ndim)
    if arr.shape[ax] == 0:
        raise ValueError(
            f"{name}: expected at least one value along axis {axis}, got 0 (shape {arr.shape})"
        )
    t = check_positive(temperature, "temperature")
    z = arr.astype(_compute_dtype(arr.dtype), copy=True)
    if t != 1.0:
        z /= t
    m = np.max(z, axis=ax, keepdims=True)
    check_logits_values(m, name)
    # a row of all -inf: shift by 0 so that exp gives 0 and no warning is raised
    m_safe = np.where(np.isneginf(m), 0.0, m).astype(z.dtype)
    with np.errstate(over="ignore"):  # -1e308 - 1e308 is -inf: exp gives 0, as it should
        z -= m_safe
    return z, m_safe, ax, arr.dtype


def logsumexp(x: ArrayLike, *, axis: int = -1) -> NDArray[np.floating]:
    r"""Log of the sum of exponentials along ``axis``, without overflow.

    .. math::

        \operatorname{lse}(x) = \log \sum_c e^{x_c} = m + \log \sum_c e^{x_c - m},
        \qquad m = \max_c x_c,
        \qquad \frac{\partial\,\operatorname{lse}}{\partial x_c} = \operatorname{softmax}(x)_c

    Parameters
    ----------
    x : array_like, shape (..., C, ...)
        Finite values or ``-inf`` (masked entries). A slice that is entirely ``-inf`` gives
        ``-inf`` (the log of an empty sum).
    axis : int, default -1
        The axis to reduce.

    Returns
    -------
    ndarray
        ``x``'s shape without ``axis``; float16 input gives float16 (computed in float32).

    Raises
    ------
    TypeError
        ``x`` is not a real numeric array.
    ValueError
        ``x`` is 0-d or empty along ``axis``, contains NaN or ``+inf``, or ``axis`` is out of
        range.

    Examples
    --------
    >>> import crossent
    >>> float(crossent.logsumexp([10.0, 9.0, 8.0]))
    10.4076
    >>> float(crossent.logsumexp([1000.0, 1000.0]))  # exp(1000) overflows; lse does not
    1000.6931
    """
    z, m, ax, dtype = _shifted(x, axis, 1.0)
    with np.errstate(divide="ignore"):  # log(0) = -inf for an all -inf slice, by design
        out = np.log(np.sum(np.exp(z), axis=ax, keepdims=True)) + m
    return np.squeeze(out, axis=ax).astype(dtype, copy=False)


def _check_no_empty_rows(z: NDArray[np.floating], ax: int) -> None:
    if np.isneginf(np.max(z, axis=ax)).any():
        raise ValueError(
            "x: expected at least one finite value along axis in every slice, "
            "got a slice that is entirely -inf (softmax of it is undefined)"
        )


def softmax(x: ArrayLike, *, axis: int = -1, temperature: float = 1.0) -> NDArray[np.floating]:
    r"""Softmax along ``axis``: scores to probabilities.

    .. math::

        p_c = \frac{e^{x_c / T}}{\sum_k e^{x_k / T}}
            = \frac{e^{x_c / T - m}}{\sum_k e^{x_k / T - m}},
        \qquad m = \max_k x_k / T,
        \qquad \frac{\partial p_c}{\partial x_k} = \frac{p_c\,(\delta_{ck} - p_k)}{T}

    Subtracting the maximum changes nothing mathematically but keeps ``exp`` from overflowing
    (``exp(1000)`` is ``inf`` in float64). ``-inf`` entries (masked classes) get probability 0.

    Parameters
    ----------
    x : array_like, shape (..., C, ...)
        Scores (logits): finite values or ``-inf``.
    axis : int, default -1
        The class axis.
    temperature : float, default 1.0
        ``T > 0``; the scores are divided by it first (``T > 1`` flattens, ``T < 1`` sharpens).

    Returns
    -------
    ndarray
        Same shape and dtype as ``x`` (integers give float64); each slice along ``axis`` is in
        [0, 1] and sums to 1.

    Raises
    ------
    TypeError
        ``x`` is not a real numeric array.
    ValueError
        ``x`` is 0-d or empty along ``axis``, contains NaN or ``+inf``, a slice is entirely
        ``-inf``, ``axis`` is out of range, or ``temperature`` is not positive.

    Examples
    --------
    The classic example's cat / dog / horse scores:

    >>> import crossent
    >>> crossent.softmax([10, 9, 8]).round(4)
    array([0.6652, 0.2447, 0.09  ])
    >>> crossent.softmax([10, 9, 8], temperature=10.0).round(4)
    array([0.3672, 0.3322, 0.3006])
    """
    z, _m, ax, dtype = _shifted(x, axis, temperature)
    _check_no_empty_rows(z, ax)
    np.exp(z, out=z)
    z /= np.sum(z, axis=ax, keepdims=True)
    return z.astype(dtype, copy=False)


def log_softmax(x: ArrayLike, *, axis: int = -1, temperature: float = 1.0) -> NDArray[np.floating]:
    r"""Log of the softmax along ``axis``, computed without forming the softmax.

    .. math::

        \log p_c = x_c / T - \operatorname{lse}(x / T),
        \qquad \frac{\partial \log p_c}{\partial x_k} = \frac{\delta_{ck} - p_k}{T}

    Parameters
    ----------
    x : array_like, shape (..., C, ...)
        Scores: finite values or ``-inf`` (which give ``-inf``).
    axis : int, default -1
        The class axis.
    temperature : float, default 1.0
        ``T > 0``; the scores are divided by it first.

    Returns
    -------
    ndarray
        Same shape and dtype as ``x`` (integers give float64).

    Raises
    ------
    TypeError
        ``x`` is not a real numeric array.
    ValueError
        As :func:`softmax`.

    Examples
    --------
    >>> import crossent
    >>> crossent.log_softmax([10, 9, 8]).round(4)
    array([-0.4076, -1.4076, -2.4076])
    """
    z, _m, ax, dtype = _shifted(x, axis, temperature)
    _check_no_empty_rows(z, ax)
    z -= np.log(np.sum(np.exp(z), axis=ax, keepdims=True))
    return z.astype(dtype, copy=False)

r"""Softmax cross-entropy: the loss, its exact gradient, and both from one softmax.

Notation (as in PyTorch): ``p = softmax(x)`` over the class axis, ``V`` the positions whose
target is not ``ignore_index``, ``w_c = weight[c]`` (1 without weights), ``ε`` the label
smoothing, ``C`` the number of classes.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crossent import _engine
from crossent._kernel import Problem, no_shift_range
from crossent._validation import (
    as_float_array,
    check_nonnegative,
    check_positive,
    check_reduction,
    check_unit_interval,
    check_weight,
    describe_shape,
    normalize_axis,
)

__all__ = ["cross_entropy", "cross_entropy_grad", "cross_entropy_with_grad"]


class _Prepared:
    """A validated problem plus what is needed to give results the user's shapes back."""

    def __init__(
        self,
        pb: Problem,
        x: NDArray[Any],
        axis: int,
        moved_shape: tuple[int, ...],
        reduction: str,
        out_dtype: Any,
    ) -> None:
        self.pb = pb
        self.x = x
        self.axis = axis
        self.moved_shape = moved_shape
        self.reduction = reduction
        self.out_dtype = out_dtype

    def reduce(self, loss: NDArray[np.float64]) -> Any:
        if self.reduction == "none":
            with np.errstate(over="ignore"):
                return loss.reshape(self.moved_shape[:-1]).astype(self.out_dtype)
        total = float(np.sum(loss))
        if self.reduction == "mean":
            total = total * self.pb.scale if self.pb.scale else 0.0
        with np.errstate(over="ignore"):  # a float16 'sum' above 65504 is inf, as in float16
            return self.out_dtype.type(total)

    def grad_buffer(self, out: NDArray[Any] | None) -> tuple[NDArray[Any], NDArray[Any]]:
        """(buffer in (M, C) layout for the engine, array to return in the user's layout)."""
        x = self.x
        last = self.axis == x.ndim - 1
        if out is not None:
            if not isinstance(out, np.ndarray):
                raise TypeError(f"out: expected a numpy.ndarray, got {type(out).__name__}")
            if out.shape != x.shape or out.dtype != self.out_dtype:
                raise ValueError(
                    f"out: expected an array of shape {x.shape} and dtype {self.out_dtype}, "
                    f"got shape {out.shape} and dtype {out.dtype}"
                )
            if not out.flags.writeable:
                raise ValueError("out: expected a writeable array, got a read-only one")
            if last and out.flags.c_contiguous:
                return out.reshape(self.pb.x.shape), out
            buf = np.empty(self.pb.x.shape, dtype=self.out_dtype)
            return buf, out
        buf = np.empty(self.pb.x.shape, dtype=self.out_dtype)
        return buf, buf

    def finish_grad(self, buf: NDArray[Any], ret: NDArray[Any]) -> NDArray[Any]:
        grad = np.moveaxis(buf.reshape(self.moved_shape), -1, self.axis)
        if ret is buf:
            return grad
        if not np.shares_memory(buf, ret):  # `out` could not be written directly
            np.copyto(ret, grad)
        return ret


def _prepare(
    logits: ArrayLike,
    target: ArrayLike,
    axis: int,
    weight: ArrayLike | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
    temperature: float,
) -> _Prepared:
    x = as_float_array(logits, "logits")
    ax = normalize_axis(axis, x.ndim)
    reduction = check_reduction(reduction)
    eps = check_unit_interval(label_smoothing, "label_smoothing")
    zl = check_nonnegative(z_loss, "z_loss")
    cap = check_positive(softcap, "softcap", allow_none=True)
    temp = check_positive(temperature, "temperature")
    assert temp is not None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index: expected an int, got {ignore_index!r}")
    c = x.shape[ax]
    if c == 0:
        raise ValueError(f"logits: expected at least one class along axis {ax}, got 0")
    cdtype = np.float64 if x.dtype == np.float64 else np.float32
    w = check_weight(weight, c, np.dtype(cdtype))

    moved = np.moveaxis(x, ax, -1)
    moved_shape = moved.shape
    x2 = np.ascontiguousarray(moved).reshape(-1, c)
    m = x2.shape[0]

    tgt = np.asarray(target)
    idx_shape = moved_shape[:-1]
    if tgt.dtype.kind == "f" and tgt.shape == x.shape:
        kind = "prob"
    elif tgt.dtype.kind in "iu" and tgt.shape == idx_shape:
        kind = "index"
    elif tgt.dtype.kind == "f" and tgt.shape == idx_shape:
        raise TypeError(
            f"target: expected integer class indices of shape {describe_shape(idx_shape)} "
            f"or float probabilities of shape {describe_shape(x.shape)}, got float labels "
            f"(dtype {tgt.dtype}) of shape {describe_shape(tgt.shape)}; use target.astype(int)"
        )
    elif tgt.dtype.kind in "iufb":
        raise ValueError(
            f"target: expected integer class indices of shape {describe_shape(idx_shape)} "
            f"or float probabilities of shape {describe_shape(x.shape)}, "
            f"got dtype {tgt.dtype} and shape {describe_shape(tgt.shape)}"
        )
    else:
        raise TypeError(f"target: expected a numeric array, got dtype {tgt.dtype}")

    y = valid = wy = q = None
    if kind == "index":
        raw = tgt.reshape(-1)
        y = raw.astype(np.intp)  # uint64 labels >= 2**63 wrap to negative numbers here
        ignored = y == ignore_index
        if raw.dtype.kind == "u" and ignore_index < 0:
            ignored[:] = False  # an unsigned label is never negative (2**64 - 100 is not -100)
        bad = ~ignored & ((y < 0) | (y >= c))
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            where = np.unravel_index(pos, idx_shape) if idx_shape else ()
            raise ValueError(
                f"target: expected class indices in [0, {c - 1}] or ignore_index="
                f"{ignore_index}, got {int(raw[pos])} at position {tuple(map(int, where))}"
            )
        if ignored.any():
            valid = ~ignored
            y = np.where(ignored, 0, y)
        wy = (w[y] if w is not None else np.ones(m, dtype=cdtype)).astype(cdtype)
        if valid is not None:
            wy[~valid] = 0.0
        denom = float(np.sum(wy, dtype=np.float64))
    else:
        q = np.ascontiguousarray(np.moveaxis(tgt, ax, -1)).reshape(-1, c)
        if not np.isfinite(q).all():
            raise ValueError("target: expected finite probabilities, got NaN or inf")
        if m and q.min() < 0:
            raise ValueError(f"target: expected probabilities >= 0, got minimum {q.min()!r}")
        sums = q.sum(axis=1, dtype=np.float64)
        tol = max(float(np.sqrt(np.finfo(q.dtype).eps)), 1e-6)
        off = np.abs(sums - 1.0) > tol
        if off.any():
            pos = int(np.flatnonzero(off)[0])
            raise ValueError(
                f"target: expected probabilities summing to 1 along axis {ax} "
                f"(tolerance {tol:.1e}), got a sum of {sums[pos]!r} at row {pos}"
            )
        denom = float(m)
    scale = 1.0 if reduction != "mean" else (1.0 / denom if denom > 0 else 0.0)

    pb = Problem(
        x=x2,
        cdtype=cdtype,
        y=y,
        valid=valid,
        wy=wy,
        q=q,
        w=w,
        eps=eps,
        z_loss=zl,
        softcap=cap,
        temperature=temp,
        scale=scale,
    )
    return _Prepared(pb, x, ax, moved_shape, reduction, x.dtype)


def _compute(prep: _Prepared, want_grad: bool, out: NDArray[Any] | None) -> tuple[Any, Any]:
    if not want_grad:
        loss, _lse = _engine.run(prep.pb, None)
        return prep.reduce(loss), None
    buf, ret = prep.grad_buffer(out)
    loss, _lse = _engine.run(prep.pb, buf)
    return prep.reduce(loss), prep.finish_grad(buf, ret)


_OPTIONS_DOC = r"""
    Parameters
    ----------
    logits : array_like, shape (N, C) or (C,) or (N, d1, ..., C, ..., dK)
        Class scores: finite values, or ``-inf`` for masked classes. float16/32/64 (integers
        become float64). float16 is computed in float32; sums are accumulated in float64.
    target : array_like
        Either integer class indices in ``[0, C)`` (or ``ignore_index``) with the logits'
        shape without the class axis, or float class probabilities with the logits' shape
        (each slice along ``axis`` non-negative and summing to 1).
    axis : int, default -1
        The class axis (PyTorch's layout ``(N, C, d1, ...)`` is ``axis=1``).
    weight : array_like, shape (C,), optional
        Non-negative class weights ``w``.
    ignore_index : int, default -100
        Index targets equal to it contribute 0 to the loss, the gradient and the ``'mean'``
        denominator. Not used with probability targets.
    reduction : {'mean', 'sum', 'none'}, default 'mean'
        ``'mean'`` divides the sum by ``D = Σ_{n∈V} w_{y_n}`` for index targets (the number
        of non-ignored positions without weights; 0 over an all-ignored batch gives a loss
        of 0) and by the number of positions ``N`` for probability targets.
    label_smoothing : float in [0, 1], default 0.0
        ``ε``: the target becomes ``(1-ε)·q + ε/k`` over the ``k`` classes whose logits are
        finite (``k = C`` without masking).
    z_loss : float >= 0, default 0.0
        ``λ``: adds ``λ·lse(x)²`` to each non-ignored position's loss (PaLM's z-loss).
    softcap : float > 0, optional
        ``s``: logits become ``s·tanh(x/s)`` first (Gemma 2); ``-inf`` stays ``-inf``.
    temperature : float > 0, default 1.0
        ``T``: logits are divided by ``T`` first (before soft-capping).
"""

_NOTES_DOC = r"""
    Where PyTorch returns NaN or inf, crossent returns what the mathematics gives:

    * ``'mean'`` over a batch whose targets are all ``ignore_index``: loss 0, gradient 0
      (PyTorch: NaN).
    * ``-inf`` logits (masked classes) give a finite loss and gradient whenever the target
      puts no mass on them, with index targets, probability targets and label smoothing
      (PyTorch: NaN for probability targets, ``inf`` with smoothing); smoothing then spreads
      ``ε`` over the finite classes only.
    * an ignored row of all ``-inf`` contributes 0 and a zero gradient (PyTorch: NaN
      gradient); a non-ignored one is an error.
    * a target class whose logit is ``-inf`` gives a loss of ``+inf`` (never NaN) and a
      finite gradient.
    * float16 losses are accumulated in float64, so a large float16 batch has a finite mean.
"""


# at most this many logits take the lean path below (when its conditions hold)
SMALL_MAX_ELEMENTS = 1 << 15


def _small_simple(
    logits: Any, target: Any, axis: int, reduction: str, want_grad: bool
) -> tuple[Any, Any] | None:
    """The common small case without a block engine: (N, C) float logits, valid int labels,
    no weights or extras, nothing ignored. ``None`` when it does not apply (the general path
    then handles the input, or raises the documented error). Same formulas, fewer NumPy calls:
    a batch of 64 × 10 costs what a plain vectorized NumPy implementation costs.
    """
    if not (
        type(logits) is np.ndarray
        and type(target) is np.ndarray
        and logits.ndim == 2
        and type(axis) is int
        and axis in (-1, 1)
        and logits.size <= SMALL_MAX_ELEMENTS
        and logits.dtype in (np.float32, np.float64)
        and target.dtype.kind in "iu"
        and target.shape == logits.shape[:1]
        and reduction in ("mean", "sum", "none")
        and logits.size > 0
    ):
        return None
    n, c = logits.shape
    # one reduction checks 0 <= target < C: negative labels wrap to huge unsigned values
    if target.view(f"u{target.itemsize}").max() >= c:
        return None  # ignored rows or a bad label: the general path
    lo, hi = no_shift_range(logits.dtype, c)
    if lo <= logits.min() and logits.max() <= hi:  # no shift needed (False for NaN)
        shift = None
        z = np.exp(logits, order="C")  # C order: z.ravel() below must be a view
    else:
        shift = logits.max(axis=1)
        if not math.isfinite(shift.sum()):
            return None  # NaN, inf, or -inf rows: the general path
        z = np.subtract(logits, shift[:, None], order="C")
        np.exp(z, out=z)
    s = np.dot(z, np.ones(c, dtype=z.dtype))  # row sums: a BLAS call, 3x faster than sum()
    flat = np.arange(0, n * c, c) + target.astype(np.intp, copy=False)  # [n, target[n]]
    loss = np.log(s)
    loss -= logits.take(flat)
    if shift is not None:
        loss += shift
    np.maximum(loss, 0.0, out=loss)  # round-off can leave -1e-17 where the loss is 0
    scale = 1.0 / n if reduction == "mean" else 1.0
    out = loss if reduction == "none" else logits.dtype.type(loss.sum(dtype=np.float64) * scale)
    if not want_grad:
        return out, None
    z *= (scale / s)[:, None]
    z.ravel()[flat] -= scale
    return out, z


def _no_extras(weight: Any, ls: Any, zl: Any, cap: Any, temp: Any, ii: Any) -> bool:
    """All options at their defaults (checked by type too: ``True == 1.0`` must not pass)."""
    return (
        weight is None
        and cap is None
        and type(ls) in (float, int)
        and ls == 0
        and type(zl) in (float, int)
        and zl == 0
        and type(temp) in (float, int)
        and temp == 1
        and type(ii) is int
        and ii == -100
    )


def _run(
    logits: ArrayLike,
    target: ArrayLike,
    want_grad: bool,
    out: NDArray[Any] | None,
    options: dict[str, Any],
) -> tuple[Any, Any]:
    """(loss, grad or None): the lean small path when it applies, else the block engine."""
    o = options
    if out is None and _no_extras(
        o["weight"], o["label_smoothing"], o["z_loss"], o["softcap"], o["temperature"],
        o["ignore_index"],
    ):  # fmt: skip
        fast = _small_simple(logits, target, o["axis"], o["reduction"], want_grad)
        if fast is not None:
            return fast
    prep = _prepare(
        logits, target, o["axis"], o["weight"], o["ignore_index"], o["reduction"],
        o["label_smoothing"], o["z_loss"], o["softcap"], o["temperature"],
    )  # fmt: skip
    return _compute(prep, want_grad, out)


def cross_entropy(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    temperature: float = 1.0,
) -> Any:
    options = dict(
        axis=axis, weight=weight, ignore_index=ignore_index, reduction=reduction,
        label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap, temperature=temperature,
    )  # fmt: skip
    return _run(logits, target, False, None, options)[0]


def cross_entropy_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    temperature: float = 1.0,
    out: NDArray[Any] | None = None,
) -> NDArray[Any]:
    options = dict(
        axis=axis, weight=weight, ignore_index=ignore_index, reduction=reduction,
        label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap, temperature=temperature,
    )  # fmt: skip
    grad: NDArray[Any] = _run(logits, target, True, out, options)[1]
    return grad


def cross_entropy_with_grad(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    temperature: float = 1.0,
    out: NDArray[Any] | None = None,
) -> tuple[Any, NDArray[Any]]:
    options = dict(
        axis=axis, weight=weight, ignore_index=ignore_index, reduction=reduction,
        label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap, temperature=temperature,
    )  # fmt: skip
    return _run(logits, target, True, out, options)


cross_entropy.__doc__ = (
    r"""Softmax cross-entropy between ``logits`` and ``target``, as PyTorch defines it.

    With class-index targets ``y`` and ``p = softmax(x)``:

    .. math::

        \ell_n = (1-\varepsilon)\, w_{y_n} (-\log p_{n,y_n})
               + \frac{\varepsilon}{k} \sum_c w_c (-\log p_{n,c})
               + \lambda \operatorname{lse}(x_n)^2,
        \qquad L_{\text{mean}} = \frac{\sum_{n \in V} \ell_n}{\sum_{n \in V} w_{y_n}}

    With probability targets ``q``, ``q' = (1-ε) q + ε/k``:

    .. math::

        \ell_n = -\sum_c w_c\, q'_{n,c} \log p_{n,c} + \lambda \operatorname{lse}(x_n)^2,
        \qquad L_{\text{mean}} = \frac{1}{N} \sum_n \ell_n

    The gradient is given by :func:`cross_entropy_grad`.
"""
    + _OPTIONS_DOC
    + r"""
    Returns
    -------
    loss : scalar or ndarray
        A scalar of the logits' dtype for ``'mean'``/``'sum'``; for ``'none'`` an array with
        the logits' shape without the class axis.

    Raises
    ------
    TypeError
        Non-numeric logits or target, float labels, a non-int ``ignore_index``, non-numeric
        options.
    ValueError
        0-d logits, NaN or ``+inf`` in the logits, a non-ignored row of all ``-inf``, ``axis``
        out of range, a target of the wrong shape, a class index out of range, probabilities
        that are negative or do not sum to 1, a ``weight`` of the wrong shape or negative,
        ``label_smoothing`` outside [0, 1], an unknown ``reduction``, a negative ``z_loss``,
        a non-positive ``softcap`` or ``temperature``.

    Notes
    -----
"""
    + _NOTES_DOC
    + r"""
    Examples
    --------
    The seed's example: scores ``[10, 9, 8]`` for cat, dog, horse; the image is a cat.

    >>> import crossent
    >>> float(crossent.cross_entropy([10.0, 9.0, 8.0], 0))
    0.4076
    >>> x = [[2.0, 1.0, 0.1], [0.5, 2.5, 0.3], [1.0, 1.0, 3.0]]
    >>> float(crossent.cross_entropy(x, [0, 2, -100], weight=[1.0, 2.0, 3.0]))
    1.9192947
    >>> crossent.cross_entropy(x, [0, 2, -100], label_smoothing=0.1, weight=[1.0, 2.0, 3.0],
    ...                        reduction="none").round(6)
    array([0.7154 , 6.86481, 0.     ])
    """
)

cross_entropy_grad.__doc__ = (
    r"""Gradient of :func:`cross_entropy` with respect to the logits.

    For class-index targets, with ``W_k = Σ_{c finite} w_c``:

    .. math::

        \frac{\partial L}{\partial x_{n,c}} = \frac{1[n \in V]}{D}
            \Big[(1-\varepsilon)\, w_{y_n} (p_{n,c} - 1[c = y_n])
            + \frac{\varepsilon}{k} (W_k\, p_{n,c} - w_c)
            + 2 \lambda \operatorname{lse}(x_n)\, p_{n,c}\Big]

    and for probability targets

    .. math::

        \frac{\partial L}{\partial x_{n,c}} = \frac{1}{D}
            \Big[\big(\textstyle\sum_k w_k q'_{n,k} + 2\lambda\operatorname{lse}(x_n)\big)
            p_{n,c} - w_c\, q'_{n,c}\Big]

    with ``D`` the ``'mean'`` denominator (1 for ``'sum'`` and ``'none'``); for ``'none'`` it is
    the gradient of each position's loss with respect to its own logits. Temperature and
    soft-capping multiply it by the chain rule, ``(1 - tanh²(x/(T s))) / T``.
"""
    + _OPTIONS_DOC
    + r"""
    out : ndarray, optional
        Where to write the gradient (the logits' shape and dtype). It may be the logits array
        itself: the gradient then overwrites the logits, and no array of their size is made.

    Returns
    -------
    grad : ndarray
        The logits' shape and dtype (``out`` when given).

    Raises
    ------
    TypeError, ValueError
        As :func:`cross_entropy`; also an ``out`` of the wrong shape or dtype.

    Examples
    --------
    >>> import crossent
    >>> crossent.cross_entropy_grad([10.0, 9.0, 8.0], 0).round(4)  # p - onehot(0)
    array([-0.3348,  0.2447,  0.09  ])
    """
)

cross_entropy_with_grad.__doc__ = (
    r"""Loss and gradient together, from one softmax (one ``exp`` per logit).

    Equivalent to ``(cross_entropy(...), cross_entropy_grad(...))`` at half the cost; the
    formulas are in those functions' documentation.
"""
    + _OPTIONS_DOC
    + r"""
    out : ndarray, optional
        Where to write the gradient; may be the logits array itself (in-place).

    Returns
    -------
    loss : scalar or ndarray
        As :func:`cross_entropy`.
    grad : ndarray
        As :func:`cross_entropy_grad`.

    Raises
    ------
    TypeError, ValueError
        As :func:`cross_entropy_grad`.

    Examples
    --------
    >>> import numpy as np, crossent
    >>> logits = np.array([[10.0, 9.0, 8.0], [0.0, 0.0, -np.inf]])
    >>> loss, grad = crossent.cross_entropy_with_grad(logits, [0, 1], reduction="none")
    >>> loss.round(4), grad.round(4)
    (array([0.4076, 0.6931]), array([[-0.3348,  0.2447,  0.09  ],
           [ 0.5   , -0.5   ,  0.    ]]))
    """
)

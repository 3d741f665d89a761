"""The NumPy core behind :func:`crossent.cross_entropy` and the PyTorch CPU path.

:func:`prepare` checks the arrays (the options arrive validated, as a
:class:`~crossent._spec.LossOptions`) through :mod:`crossent._spec` and builds the engine's
:class:`~crossent._kernel.Problem`; :func:`run` runs the engine and reduces. Callers that have
already flattened their arrays (the PyTorch layer) pass the user's layout, so that errors
report positions in it, and may pass the :class:`~crossent._spec.Scales` of a larger batch
(chunks of rows, blocks of bfloat16 rows).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crossent import _algebra, _engine, _spec
from crossent._algebra import no_shift_range
from crossent._exp import exp_rows, row_sums
from crossent._kernel import Problem
from crossent._spec import LossOptions, Scales
from crossent._validation import as_array, as_float_array, normalize_axis


@dataclass
class Prepared:
    """A validated problem plus what is needed to give results the user's shapes back."""

    pb: Problem
    x: NDArray[Any]  # the user's logits (as an array)
    axis: int
    moved_shape: tuple[int, ...]  # the logits' shape with the class axis last
    opts: LossOptions
    scales: Scales

    def reduce(self, loss: NDArray[np.float64], lse: NDArray[np.float64]) -> Any:
        """Per-row losses (``'none'``, float64, the batch shape) or the reduced float."""
        if self.opts.reduction == "none":
            return loss.reshape(self.moved_shape[:-1])
        return float(_algebra.reduce_rows(loss, lse, self.pb.valid, self.scales, self.pb.z_loss))

    def grad_buffer(self, out: NDArray[Any] | None) -> tuple[NDArray[Any], NDArray[Any]]:
        """(buffer in (M, C) layout for the engine, array to return in the user's layout)."""
        x = self.x
        if out is None:
            buf = np.empty(self.pb.x.shape, dtype=x.dtype)
            return buf, buf
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out: expected a numpy.ndarray, got {type(out).__name__}")
        if out.shape != x.shape or out.dtype != x.dtype:
            raise ValueError(
                f"out: expected an array of shape {x.shape} and dtype {x.dtype}, "
                f"got shape {out.shape} and dtype {out.dtype}"
            )
        if not out.flags.writeable:
            raise ValueError("out: expected a writeable array, got a read-only one")
        if self.axis == x.ndim - 1 and out.flags.c_contiguous:
            return out.reshape(self.pb.x.shape), out
        return np.empty(self.pb.x.shape, dtype=x.dtype), out

    def finish_grad(self, buf: NDArray[Any], ret: NDArray[Any]) -> NDArray[Any]:
        grad = np.moveaxis(buf.reshape(self.moved_shape), -1, self.axis)
        if ret is buf:
            return grad
        if not np.shares_memory(buf, ret):  # `out` could not be written directly
            np.copyto(ret, grad)
        return ret


def prepare(
    logits: ArrayLike,
    target: ArrayLike,
    opts: LossOptions,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    layout: tuple[int, tuple[int, ...]] | None = None,
    scales: Scales | None = None,
) -> Prepared:
    """Check the arrays and build the engine's problem.

    ``layout`` is ``(class axis, target shape)`` in the user's layout when the caller has
    flattened the arrays itself; ``scales`` replaces the batch's own ``'mean'`` scales.
    """
    x = as_float_array(logits, "logits")
    ax = normalize_axis(axis, x.ndim)
    c = x.shape[ax]
    if c == 0:
        raise ValueError(f"logits: expected at least one class along axis {ax}, got 0")
    cdtype = np.float64 if x.dtype == np.float64 else np.float32
    w = None
    if weight is not None:
        w = as_float_array(weight, "weight")
        _spec.check_class_weight(w, c)
        w = w.astype(cdtype)

    moved = np.moveaxis(x, ax, -1)
    moved_shape = moved.shape
    x2 = np.ascontiguousarray(moved).reshape(-1, c)
    m = x2.shape[0]
    idx_shape = moved_shape[:-1]
    class_axis, user_shape = layout if layout is not None else (ax, idx_shape)

    tgt = as_array(target, "target")
    kind = _spec.classify_target(tgt.dtype.kind, tgt.dtype, tgt.shape, idx_shape, x.shape)
    y = valid = wy = q = None
    if kind == "index":
        y = tgt.reshape(-1)
        ignored = _spec.check_class_indices(y, c, opts.ignore_index, user_shape)
        y = y.astype(np.intp)
        if ignored is not None:
            valid = ~ignored
            y = np.where(ignored, 0, y)
        wy = (w[y] if w is not None else np.ones(m, dtype=cdtype)).astype(cdtype)
        if valid is not None:
            wy[~valid] = 0.0
        if scales is None:
            count = float(m if valid is None else np.count_nonzero(valid))
            d = float(np.sum(wy, dtype=np.float64)) if w is not None else count
            scales = _spec.mean_scales(opts, d, count, weighted=w is not None)
    else:
        q = np.ascontiguousarray(np.moveaxis(tgt, ax, -1)).reshape(-1, c)
        _spec.check_probabilities(q, tgt.dtype, class_axis, user_shape)
        if scales is None:
            scales = _spec.mean_scales(opts, float(m), float(m), weighted=False)

    pb = Problem(x2, cdtype, y, valid, wy, q, w, opts.label_smoothing, opts.z_loss, opts.softcap,
                 opts.temperature, scales.ce, scales.z)  # fmt: skip
    return Prepared(pb, x, ax, moved_shape, opts, scales)


def check_target(
    t: NDArray[Any],
    n_classes: int,
    opts: LossOptions,
    layout: tuple[int, tuple[int, ...]] | None,
    dtype: Any = None,
) -> None:
    """Check a flattened target whole: ``(M,)`` indices or ``(M, C)`` probabilities
    (``dtype``: the user's, when ``t`` was widened)."""
    class_axis, shape = layout if layout is not None else (1, (t.shape[0],))
    if t.dtype.kind == "f":
        _spec.check_probabilities(t, t.dtype if dtype is None else dtype, class_axis, shape)
    else:
        _spec.check_class_indices(t, n_classes, opts.ignore_index, shape)


_FLOAT_MAX = {np.dtype(np.float32): float(np.finfo(np.float32).max), np.dtype(np.float16): 65504.0}


def _cast(loss: Any, dtype: np.dtype[Any]) -> Any:
    """A loss in the logits' dtype: a NumPy scalar, or an array for ``'none'``."""
    if dtype == np.float64:  # nothing to round (and no errstate to pay for, per call)
        return loss if isinstance(loss, np.ndarray) else np.float64(loss)
    if not isinstance(loss, np.ndarray) and abs(loss) <= _FLOAT_MAX.get(dtype, 0.0):
        return dtype.type(loss)  # cannot overflow: no errstate to pay for either
    with np.errstate(over="ignore"):  # a float16 'sum' above 65504 is inf, as in float16
        return loss.astype(dtype) if isinstance(loss, np.ndarray) else dtype.type(loss)


def compute(
    prep: Prepared, want_grad: bool, out: NDArray[Any] | None = None
) -> tuple[Any, NDArray[np.float64], NDArray[Any] | None]:
    """(loss as :meth:`Prepared.reduce` gives it, per-row log-sum-exp, gradient or None)."""
    buf = ret = None
    if want_grad:
        buf, ret = prep.grad_buffer(out)
    loss, lse = _engine.run(prep.pb, buf)
    if buf is None or ret is None:
        return prep.reduce(loss, lse), lse, None
    return prep.reduce(loss, lse), lse, prep.finish_grad(buf, ret)


_MEAN = _spec.DEFAULT_OPTIONS  # 'mean' without num_items: the batch's own denominator

# at most this many logits take the lean path below (when its conditions hold)
SMALL_MAX_ELEMENTS = 1 << 15
_SMALL_KEYS = frozenset({"axis", "weight"})
_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


@functools.lru_cache(maxsize=64)
def _small_constants(dtype: str, n: int, c: int) -> tuple[float, float, NDArray[np.intp]]:
    """What :func:`small_simple` needs of a shape, remembered (a tenth of a call's time):
    :func:`crossent._algebra.no_shift_range` and each row's offset (read-only)."""
    lo, hi = no_shift_range("float64" if dtype == "d" else "float32", c)
    offsets = np.arange(0, n * c, c)
    offsets.flags.writeable = False
    return lo, hi, offsets


def small_simple(
    logits: Any, target: Any, axis: Any, reduction: str, want_grad: bool
) -> tuple[Any, NDArray[np.float64], Any] | None:
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
        and logits.dtype.char in "fd"
        and target.dtype.kind in "iu"
        and target.shape == logits.shape[:1]
        and logits.size > 0
    ):
        return None
    n, c = logits.shape
    # one reduction checks 0 <= target < C: negative labels wrap to huge unsigned values
    if target.view(_UNSIGNED[target.itemsize]).max() >= c:
        return None  # ignored rows or a bad label: the general path
    lo, hi, offsets = _small_constants(logits.dtype.char, n, c)
    z = np.empty((n, c), logits.dtype)  # C order: z.ravel() below must be a view
    if lo <= logits.min() and logits.max() <= hi:  # no shift needed (False for NaN)
        shift = None
        exp_rows(logits, z)
    else:
        shift = logits.max(axis=1)
        if not math.isfinite(shift.sum()):
            return None  # NaN, inf, or -inf rows: the general path
        exp_rows(logits, z, shift.astype(np.float64))
    s = row_sums(z, z.dtype)  # (n,) float64: float32 sums lose digits on long rows
    flat = offsets + target.astype(np.intp, copy=False)  # [n, target[n]]
    log_s = np.log(s)
    lin = logits.take(flat).astype(np.float64)  # (n,) the target's logit
    if shift is None:
        lse = log_s
    else:  # shifted coordinates: log s - (x_y - m), no cancellation of m where the loss is small
        lse, lin = log_s + shift, lin - shift
    loss = _algebra.row_loss(1.0, lin, log_s, lse)
    scale = _spec.mean_scales(_MEAN, n, n, weighted=False).ce if reduction == "mean" else 1.0
    out = loss if reduction == "none" else float(loss.sum()) * scale
    if not want_grad:
        return out, lse, None
    co = _algebra.grad_coefficients(1.0, lse, s, scale=scale)
    z *= co.p.astype(z.dtype)[:, None]
    z.ravel()[flat] -= co.target
    return out, lse, z


def run(
    logits: ArrayLike,
    target: ArrayLike,
    opts: LossOptions,
    *,
    want_grad: bool = False,
    out: NDArray[Any] | None = None,
    cast: bool = False,
    **where: Any,
) -> tuple[Any, NDArray[np.float64], NDArray[Any] | None]:
    """``(loss, lse, grad)``: the lean small path when it applies, else the block engine.

    ``where`` holds :func:`prepare`'s keywords (``axis``, ``weight``, ``layout``, ``scales``).
    ``loss`` is a float (float64) for ``'mean'``/``'sum'`` and float64 per-row losses in the
    batch shape for ``'none'``; ``lse`` the ``(M,)`` log-sum-exp of the transformed logits;
    ``grad`` the gradient of the loss, in the logits' layout and dtype (``out`` when given).
    ``cast=True`` gives the loss in the logits' dtype instead.
    """
    plain = opts.plain and opts.ignore_index == -100 and where.get("weight") is None
    if plain and out is None and where.keys() <= _SMALL_KEYS:
        fast = small_simple(logits, target, where.get("axis", -1), opts.reduction, want_grad)
        if fast is not None:
            loss = _cast(fast[0], logits.dtype) if cast else fast[0]  # type: ignore[union-attr]
            return loss, fast[1], fast[2]
    prep = prepare(logits, target, opts, **where)
    loss, lse, grad = compute(prep, want_grad, out)
    return (_cast(loss, prep.x.dtype) if cast else loss), lse, grad

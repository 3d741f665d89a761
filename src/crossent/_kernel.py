"""The cross-entropy engine: loss and gradient for a block of rows, one ``exp`` per element.

``prepare`` (in :mod:`crossent._core`) validates the user's arguments and builds a
:class:`Problem`: logits as an ``(M, C)`` matrix, targets as ``(M,)`` indices or ``(M, C)``
probabilities, every option resolved. :func:`ce_block` computes rows ``r0:r1`` of it while they
stay in cache:

1. the row maxima of the raw logits (both transforms are increasing), which validate the rows
   and choose the shift: 0 when neither ``exp`` nor the sum of a row's ``C`` exponentials can
   overflow and the largest terms are not lost (then the shift costs nothing), the row
   maximum otherwise;
2. the per-row sums that need the transformed logits ``z`` (target logit, smoothing and
   probability-target sums), taken on the raw logits: they are linear in them;
3. ``e = exp(z - shift)`` written straight into the gradient buffer: the only transcendental
   per element (two with soft-capping);
4. ``grad = (a / s) * e - b`` in place, with ``s = sum(e)``, then the chain rule of the transform.

No temporary the size of the logits is made: the gradient buffer holds ``z``, then ``e``, then
the gradient. :mod:`crossent._engine` runs blocks on both cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

Array = NDArray[Any]


@dataclass
class Problem:
    """A validated cross-entropy problem over ``M`` rows and ``C`` classes."""

    x: Array  # (M, C) logits, float16/32/64, rows contiguous
    cdtype: Any  # compute dtype: float32 or float64
    y: Array | None  # (M,) intp class indices, ignored rows mapped to 0 (index targets)
    valid: Array | None  # (M,) bool, False where target == ignore_index (None: all valid)
    wy: Array | None  # (M,) weight of each row's target class, 0 where ignored (index targets)
    q: Array | None  # (M, C) probability targets
    w: Array | None  # (C,) class weights in cdtype (None: all ones)
    eps: float  # label smoothing
    z_loss: float
    softcap: float | None
    temperature: float
    scale: float  # 1/D for 'mean', 1 for 'sum' and 'none' (crossent._spec.Scales.ce)
    z_scale: float = 1.0  # 1/|V| for 'mean': the z-term's (crossent._spec.Scales.z)

    @property
    def plain(self) -> bool:
        """Index targets without smoothing, soft-capping or z-loss: :func:`plain_block`."""
        return self.q is None and self.eps == 0.0 and self.softcap is None and not self.z_loss

    @property
    def n_rows(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.x.shape[1])


def _check_row_max(pb: Problem, r0: int, m: Array) -> None:
    """NaN or +inf logits, or a non-ignored row of all -inf: a clear error."""
    if np.isnan(m).any():
        raise ValueError("logits: expected finite values or -inf (masked), got NaN")
    if np.isposinf(m).any():
        raise ValueError("logits: expected finite values or -inf (masked), got +inf")
    empty = np.isneginf(m)
    if pb.valid is not None:
        empty &= pb.valid[r0 : r0 + len(m)]
    if empty.any():
        row = r0 + int(np.flatnonzero(empty)[0])
        raise ValueError(
            "logits: expected at least one finite logit in every non-ignored row, got a row "
            f"of all -inf at row {row} (flattened); give it target=ignore_index to skip it"
        )


# exp(z) for z in [lo, hi] neither overflows nor underflows its largest terms, and a sum of
# exponentials up to exp(hi) is finite (float32 overflows above exp(88.7), float64 exp(709.8))
SAFE_RANGE = {np.dtype(np.float32): (-60.0, 80.0), np.dtype(np.float64): (-600.0, 700.0)}


def no_shift_range(cdtype: Any, n_classes: int) -> tuple[float, float]:
    """Row maxima ``m`` of the transformed logits for which ``exp`` needs no shift.

    The largest term ``exp(m)`` must stay normal (``m >= lo``) and the row's sum, at most
    ``C·exp(m) = exp(m + log C)``, finite: the bound is on ``m + log C``, not ``m`` alone
    (``C = 100000`` logits of 79 overflow float32's sum though ``exp(79)`` does not).
    """
    lo, hi = SAFE_RANGE[np.dtype(cdtype)]
    return lo, hi - math.log(max(n_classes, 1))


# columns summed by einsum in the compute dtype before the partial sums are added in float64
SUM_RUN = 256


def row_sums(x: Array, cdtype: Any) -> Array:
    """``Σ_c x[n, c]`` (float64) at einsum's speed, without its loss of digits on long rows.

    einsum keeps one running sum per SIMD lane, which is fast but inexact on long rows: over
    262144 equal float32 exponentials its total is off by 1.7e-4 (relative), pairwise ``sum``
    by 1e-7 at three times the cost, a float64 sum is exact at six times. Here einsum sums runs
    of ``SUM_RUN`` columns in ``cdtype`` (short running sums: about one unit of float32's last
    place) and the runs' totals are added in float64. Used for the exponentials' sums (the
    log-sum-exp) and the logits' sums (label smoothing).
    """
    n, c = x.shape
    k = c // SUM_RUN
    if k < 1:
        return np.einsum("ij->i", x, dtype=cdtype).astype(np.float64)
    runs = np.einsum("ijk->ij", x[:, : k * SUM_RUN].reshape(n, k, SUM_RUN), dtype=cdtype)
    total = runs.sum(axis=1, dtype=np.float64)
    if k * SUM_RUN < c:
        total += np.einsum("ij->i", x[:, k * SUM_RUN :], dtype=cdtype)
    return total


def _row_sums(
    pb: Problem, xt: Array, weights: Array | None, masked_rows: Array, fin: Array | None
) -> Array:
    """Σ_c weights[c] · xt[n, c] over the finite classes, in float64 (weights (C,) or (n, C))."""
    if weights is None:
        out = row_sums(xt, pb.cdtype)
    elif weights.ndim == 1:
        out = (xt @ weights.astype(xt.dtype, copy=False)).astype(np.float64)
    else:
        with np.errstate(invalid="ignore"):  # 0 * -inf at masked classes: redone below
            out = np.einsum("ij,ij->i", weights, xt, dtype=np.float64)
    if fin is not None:
        xm = np.where(fin, xt[masked_rows], 0.0)
        wm = weights[masked_rows] if weights is not None and weights.ndim == 2 else weights
        out[masked_rows] = (xm * (wm if wm is not None else 1.0)).sum(axis=1)
    return out


def _empty_lse(lse: Array, empty: Array | None) -> Array:
    """The log-sum-exp of an (ignored) row of all -inf is -inf, once nothing else reads it."""
    if empty is not None:
        lse[empty] = -np.inf
    return lse


def ce_block(
    pb: Problem,
    r0: int,
    r1: int,
    z: Array,
    t: Array | None,
    grad: bool,
) -> tuple[Array, Array]:
    """Loss (float64) and log-sum-exp of rows ``r0:r1``; the gradient is left in ``z``.

    ``z`` is a ``(r1 - r0, C)`` buffer in ``pb.cdtype`` (it may alias the logits rows for
    the in-place mode: they are read before it is written); ``t`` a same-shaped scratch
    buffer, needed only with soft-capping.
    """
    x = pb.x[r0:r1]  # (n, C)
    n, c = z.shape
    cd = pb.cdtype
    eps, cap, temp = pb.eps, pb.softcap, pb.temperature
    rows = np.arange(n)

    # 1. row maxima and the shift; z = factor * xt is the transformed logit
    mx = x.max(axis=1)
    empty: Array | None = None  # ignored rows of all -inf: their lse is -inf
    if not np.isfinite(mx).all():
        _check_row_max(pb, r0, mx)
        empty = np.isneginf(mx)
        mx[empty] = 0  # exp gives 0 everywhere
    if cap is None:
        xt, factor = x, 1.0 / temp
        m = mx.astype(np.float64) * factor
    else:
        assert t is not None
        k_cap = cd(1.0 / (temp * cap))
        np.multiply(x, k_cap, out=t, casting="same_kind")
        np.tanh(t, out=t)
        xt, factor = t, float(cap)
        m = cap * np.tanh(mx.astype(cd) * k_cap).astype(np.float64)
    lo, hi = no_shift_range(cd, c)
    shift = m if (m.min(initial=0.0) < lo or m.max(initial=0.0) > hi) else np.zeros(n)

    # masked classes (-inf logits) matter for smoothing, probability targets, soft-capping
    fin: Array | None = None
    masked_rows = np.zeros(n, dtype=bool)
    if eps > 0.0 or pb.q is not None or cap is not None:
        masked_rows = np.isneginf(x.min(axis=1))
        if masked_rows.any():
            fin = ~np.isneginf(x[masked_rows])  # (n_masked, C)
    k = np.full(n, float(c))  # number of finite classes per row
    if fin is not None:
        k[masked_rows] = np.maximum(fin.sum(axis=1), 1)  # 0 only in ignored rows

    # 2. per-row sums in shifted coordinates (z - shift), before exp overwrites the buffer
    if pb.q is None:
        assert pb.y is not None and pb.wy is not None
        y = pb.y[r0:r1]
        wy = pb.wy[r0:r1].astype(np.float64)
        with np.errstate(invalid="ignore"):
            zy = factor * xt[rows, y].astype(np.float64) - shift
        zy[wy == 0.0] = 0.0  # ignored rows, zero-weight classes: their term is 0, never nan
        if eps > 0.0:
            w_f = np.full(n, float(pb.w.sum()) if pb.w is not None else float(c))
            if fin is not None:
                wf = fin * (pb.w if pb.w is not None else 1.0)
                w_f[masked_rows] = wf.sum(axis=1)
            swz = factor * _row_sums(pb, xt, pb.w, masked_rows, fin) - shift * w_f
    else:
        q = pb.q[r0:r1]
        wq = np.multiply(q, 1.0 - eps, dtype=cd)  # (n, C) smoothed, weighted target
        if eps > 0.0:
            wq += cd(eps / c)
        if fin is not None:
            wq_m = (1.0 - eps) * q[masked_rows].astype(cd) + (eps / k[masked_rows])[:, None] * fin
            wq[masked_rows] = wq_m
        if pb.w is not None:
            wq *= pb.w
        a_sum = wq.sum(axis=1, dtype=np.float64)
        s_wqz = factor * _row_sums(pb, xt, wq, masked_rows, fin) - shift * a_sum
        if fin is not None:  # probability mass on a masked class: the loss is +inf
            on_masked = (wq[masked_rows] * ~fin).sum(axis=1) > 0
            s_wqz[np.flatnonzero(masked_rows)[on_masked]] = -np.inf

    # 3. the one exp per element, written straight into the gradient buffer
    if t is not None:
        np.multiply(t, cd(cap), out=z)
        if shift.any():
            z -= shift.astype(cd)[:, None]
        if fin is not None:  # a masked class stays masked
            z[masked_rows] = np.where(fin, z[masked_rows], -np.inf)
        np.exp(z, out=z)
    elif temp == 1.0 and not shift.any():
        np.exp(x, out=z, dtype=cd)
    else:
        with np.errstate(over="ignore"):  # -1e308 - 1e308 is -inf: exp gives 0, as it should
            if temp == 1.0:
                np.subtract(x, shift.astype(cd)[:, None], out=z, dtype=cd)
            else:
                np.multiply(x, cd(factor), out=z, dtype=cd)
                if shift.any():
                    z -= shift.astype(cd)[:, None]
        np.exp(z, out=z)
    s = row_sums(z, cd)  # (n,) float64: the digits of long rows of near-equal terms are kept
    s[s == 0.0] = 1.0  # all-masked ignored rows
    log_s = np.log(s)
    lse = shift + log_s

    # losses (float64, per row)
    if pb.q is None:
        loss = (1.0 - eps) * wy * (log_s - zy)
        if eps > 0.0:
            loss += (eps / k) * (w_f * log_s - swz)
        if pb.z_loss:
            loss += pb.z_loss * lse**2
        if pb.valid is not None:
            loss = np.where(pb.valid[r0:r1], loss, 0.0)
    else:
        loss = a_sum * log_s - s_wqz
        if pb.z_loss:
            loss += pb.z_loss * lse**2

    np.maximum(loss, 0.0, out=loss)  # exp/log round-off can leave -1e-17 where the loss is 0
    if not grad:
        return loss, _empty_lse(lse, empty)

    # 4. gradient: (a / s) * e - b, then the chain rule of the transform
    rowscale = np.full(n, pb.scale)
    if pb.valid is not None:
        rowscale[~pb.valid[r0:r1]] = 0.0
    if pb.q is None:
        a = (1.0 - eps) * wy
        if eps > 0.0:
            a = a + (eps / k) * w_f
    else:
        a = a_sum
    coef_p = rowscale * a
    if pb.z_loss:  # the z-term has its own scale (a mean over positions, not class weights)
        zscale = np.full(n, pb.z_scale)
        if pb.valid is not None:
            zscale[~pb.valid[r0:r1]] = 0.0
        coef_p = coef_p + zscale * (2.0 * pb.z_loss * lse)
    z *= (coef_p / s).astype(cd)[:, None]
    if pb.q is None:
        z[rows, y] -= (rowscale * (1.0 - eps) * wy).astype(cd)
        if eps > 0.0:
            coef = (rowscale * eps / k).astype(cd)[:, None]
            z -= coef * pb.w if pb.w is not None else coef
            if fin is not None:  # masked classes get no smoothing mass
                z[masked_rows] = np.where(fin, z[masked_rows], 0.0)
    else:
        z -= rowscale.astype(cd)[:, None] * wq
    if cap is not None:
        assert t is not None
        np.multiply(t, t, out=t)
        np.subtract(1.0, t, out=t)
        z *= t
    if temp != 1.0:
        z *= cd(1.0 / temp)
    return loss, _empty_lse(lse, empty)


def plain_block(
    pb: Problem,
    r0: int,
    r1: int,
    z: Array,
    t: Array | None,
    grad: bool,
) -> tuple[Array, Array]:
    """:func:`ce_block` for plain index targets in a dozen NumPy calls per block.

    For large class counts a block holds a few rows, and the per-call overhead of the general
    kernel's forty-odd calls would cost as much as a third of the ``exp``. Blocks this kernel
    does not cover (logits outside the safe range, NaN, ``-inf`` rows) go to :func:`ce_block`.
    """
    assert pb.y is not None and pb.wy is not None
    x = pb.x[r0:r1]  # (n, C)
    cd, temp = pb.cdtype, pb.temperature
    mx = x.max(axis=1)
    lo, hi = no_shift_range(cd, pb.n_classes)
    if not (lo * temp <= mx.min() and mx.max() <= hi * temp):  # also False for NaN
        return ce_block(pb, r0, r1, z, t, grad)
    y = pb.y[r0:r1]
    rows = np.arange(r1 - r0)
    zy = x[rows, y].astype(np.float64) / temp  # before z is written: z may be x (in place)
    if temp == 1.0:
        np.exp(x, out=z, dtype=cd)
    else:
        np.multiply(x, cd(1.0 / temp), out=z, dtype=cd)
        np.exp(z, out=z)
    s = row_sums(z, cd)  # (n,) float64 > 0: every row has a finite logit
    log_s = np.log(s)
    wy = pb.wy[r0:r1]
    if pb.valid is not None:  # ignored rows: 0, even where their label 0 has logit -inf
        zy[wy == 0.0] = 0.0
    loss = np.maximum(wy * (log_s - zy), 0.0)
    if grad:
        gy = (pb.scale / temp) * wy.astype(np.float64)  # scale of row n's gradient
        z *= (gy / s).astype(cd)[:, None]
        z[rows, y] -= gy.astype(cd)
    return loss, log_s

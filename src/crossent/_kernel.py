"""The cross-entropy engine: loss and gradient for a block of rows, one ``exp`` per element.

``prepare`` (in :mod:`crossent._cross_entropy`) validates the user's arguments and builds a
:class:`Problem`: logits as an ``(M, C)`` matrix, targets as ``(M,)`` indices or ``(M, C)``
probabilities, every option resolved. :func:`ce_block` computes rows ``r0:r1`` of it while they
stay in cache:

1. ``z = transform(x) - max`` (temperature, soft-capping), written into the gradient buffer;
2. the per-row sums that need ``z`` (target logit, smoothing and probability-target sums);
3. ``e = exp(z)`` in place: the only transcendental per element (two with soft-capping);
4. ``grad = (a / s) * e - b`` in place, with ``s = sum(e)``, then the chain rule of the transform.

No temporary the size of the logits is made: the gradient buffer holds ``z``, then ``e``, then
the gradient. :mod:`crossent._engine` runs blocks on both cores.
"""

from __future__ import annotations

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
    scale: float  # 1/D for 'mean', 1 for 'sum' and 'none'

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
    x = pb.x[r0:r1]
    n, c = z.shape
    eps, cap, temp = pb.eps, pb.softcap, pb.temperature
    masked = np.isneginf(x) if cap is not None else None

    # 1. z = transform(x) - max
    if temp != 1.0:
        np.divide(x, temp, out=z)
    elif z is not x:
        np.copyto(z, x, casting="same_kind")
    if cap is not None:
        assert t is not None and masked is not None
        np.divide(z, cap, out=t)
        np.tanh(t, out=t)
        np.multiply(t, cap, out=z)
        np.copyto(z, -np.inf, where=masked)  # a masked class stays masked
    m = z.max(axis=1)
    if not np.isfinite(m).all():
        _check_row_max(pb, r0, m)
        # an ignored row of all -inf is shifted by 0: exp gives 0, nothing overflows
        m[np.isneginf(m)] = 0.0
    with np.errstate(over="ignore"):  # -1e308 - 1e308 is -inf: exp gives 0, as it should
        z -= m[:, None]

    # 2. per-row sums that need z
    rows = np.arange(n)
    fin: Array | None = None  # finite-logit mask, only for rows that have masked classes
    flagged = np.zeros(n, dtype=bool)
    if pb.q is None:
        assert pb.y is not None and pb.wy is not None
        wy = pb.wy[r0:r1].astype(np.float64)
        zy = z[rows, pb.y[r0:r1]].astype(np.float64)
        zy[wy == 0.0] = 0.0  # ignored rows, zero-weight classes: their term is 0, never nan
        if eps > 0.0:
            swz = (z @ pb.w if pb.w is not None else z.sum(axis=1)).astype(np.float64)
            k = np.full(n, float(c))
            w_f = np.full(n, float(pb.w.sum()) if pb.w is not None else float(c))
            flagged = ~np.isfinite(swz)
            if flagged.any():
                fin = np.isfinite(z[flagged])
                zf = np.where(fin, z[flagged], 0.0)
                wf = fin * (pb.w if pb.w is not None else 1.0)
                swz[flagged] = (zf * wf).sum(axis=1)
                k[flagged] = np.maximum(fin.sum(axis=1), 1)  # 0 only in ignored rows
                w_f[flagged] = wf.sum(axis=1)
    else:
        q = pb.q[r0:r1]
        wq = np.multiply(q, 1.0 - eps, dtype=pb.cdtype)
        if eps > 0.0:
            wq += eps / c
        if pb.w is not None:
            wq *= pb.w
        with np.errstate(invalid="ignore"):  # 0 * -inf at masked classes; redone below
            s_wqz = np.einsum("ij,ij->i", wq, z, dtype=np.float64)
        flagged = ~np.isfinite(s_wqz)
        if flagged.any():
            fin = np.isfinite(z[flagged])
            k_f = fin.sum(axis=1, keepdims=True)
            wq_f = (1.0 - eps) * q[flagged].astype(pb.cdtype) + (eps / k_f) * fin
            if pb.w is not None:
                wq_f *= pb.w
            wq[flagged] = wq_f
            s_wqz[flagged] = np.where(fin, wq_f * np.where(fin, z[flagged], 0.0), 0.0).sum(1)
            # probability mass on a masked class: the loss is +inf
            s_wqz[flagged] = np.where((wq_f * ~fin).sum(axis=1) > 0, -np.inf, s_wqz[flagged])
        a_sum = wq.sum(axis=1, dtype=np.float64)

    # 3. the one exp per element
    np.exp(z, out=z)
    s = z.sum(axis=1, dtype=np.float64)
    s[s == 0.0] = 1.0  # all-masked ignored rows
    log_s = np.log(s)
    lse = m.astype(np.float64) + log_s

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

    if not grad:
        return loss, lse

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
    if pb.z_loss:
        a = a + 2.0 * pb.z_loss * lse
    z *= (rowscale * a / s).astype(pb.cdtype)[:, None]
    if pb.q is None:
        assert pb.y is not None
        z[rows, pb.y[r0:r1]] -= (rowscale * (1.0 - eps) * wy).astype(pb.cdtype)
        if eps > 0.0:
            coef = (rowscale * eps / k).astype(pb.cdtype)[:, None]
            z -= coef * pb.w if pb.w is not None else coef
            if fin is not None:  # masked classes get no smoothing mass
                z[flagged] = np.where(fin, z[flagged], 0.0)
    else:
        z -= rowscale.astype(pb.cdtype)[:, None] * wq
    if cap is not None:
        assert t is not None
        np.multiply(t, t, out=t)
        np.subtract(1.0, t, out=t)
        z *= t
    if temp != 1.0:
        z /= temp
    return loss, lse

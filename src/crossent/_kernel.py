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

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from crossent import _algebra
from crossent._algebra import no_shift_range
from crossent._exp import exp_rows, row_sums

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


def _row_maxima(pb: Problem, r0: int, x: Array) -> tuple[Array, Array | None]:
    """The raw row maxima (checked: NaN, +inf, non-ignored rows of all -inf), and the (ignored)
    rows of all -inf, whose maxima become 0 so that ``exp`` gives 0 everywhere."""
    mx = x.max(axis=1)
    if np.isfinite(mx).all():
        return mx, None
    valid = pb.valid[r0 : r0 + len(mx)] if pb.valid is not None else np.ones(len(mx), bool)
    _algebra.check_row_maxima(mx, valid, first_row=r0)
    empty = np.isneginf(mx)
    mx[empty] = 0
    return mx, empty


def _transform(pb: Problem, x: Array, mx: Array, t: Array | None) -> tuple[Array, float, Array]:
    """``(xt, factor, shift)``: ``z = factor · xt`` is the transformed logit (``xt`` is ``x``,
    or ``tanh(x / (T s))`` written to ``t``), ``shift`` the row's ``m``: 0 when the row maxima
    of ``z`` are in the safe range (:func:`crossent._algebra.no_shift_range`), else them."""
    cd, cap, temp = pb.cdtype, pb.softcap, pb.temperature
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
    lo, hi = no_shift_range(cd, x.shape[1])
    shift = m if (m.min(initial=0.0) < lo or m.max(initial=0.0) > hi) else np.zeros(len(m))
    return xt, factor, shift


@dataclass
class _Masking:
    """Masked classes (-inf logits), which matter for smoothing, probability targets and
    soft-capping: the rows that have some, their finite classes, each row's finite count."""

    rows: Array  # (n,) bool
    fin: Array | None  # (rows.sum(), C) bool, None when no row has a masked class
    k: Array  # (n,) float64, at least 1

    @classmethod
    def of(cls, pb: Problem, x: Array) -> _Masking:
        n, c = x.shape
        fin, rows = None, np.zeros(n, dtype=bool)
        if pb.eps > 0.0 or pb.q is not None or pb.softcap is not None:
            rows = np.isneginf(x.min(axis=1))
            if rows.any():
                fin = ~np.isneginf(x[rows])
        k = np.full(n, float(c))
        if fin is not None:
            k[rows] = np.maximum(fin.sum(axis=1), 1)  # 0 only in ignored rows
        return cls(rows, fin, k)


def _index_sums(
    pb: Problem, r0: int, r1: int, xt: Array, factor: float, shift: Array, mk: _Masking
) -> tuple[Array, Array, Array]:
    """``(a, lin, wy)`` of index targets (:func:`crossent._algebra.target_sums`), in shifted
    coordinates, before ``exp`` overwrites the buffer."""
    assert pb.y is not None and pb.wy is not None
    n, c = xt.shape
    wy = pb.wy[r0:r1].astype(np.float64)
    with np.errstate(invalid="ignore"):
        zy = factor * xt[np.arange(n), pb.y[r0:r1]].astype(np.float64) - shift
    zy[wy == 0.0] = 0.0  # ignored rows, zero-weight classes: their term is 0, never nan
    if pb.eps == 0.0:
        return wy, wy * zy, wy
    w_f = np.full(n, float(pb.w.sum()) if pb.w is not None else float(c))
    if mk.fin is not None:
        w_f[mk.rows] = (mk.fin * (pb.w if pb.w is not None else 1.0)).sum(axis=1)
    swz = factor * _row_sums(pb, xt, pb.w, mk.rows, mk.fin) - shift * w_f
    a, lin = _algebra.target_sums(wy, wy * zy, label_smoothing=pb.eps, k=mk.k,
                                  finite_weight=w_f, finite_score=swz)  # fmt: skip
    return a, lin, wy


def _prob_sums(
    pb: Problem, r0: int, r1: int, xt: Array, factor: float, shift: Array, mk: _Masking
) -> tuple[Array, Array, Array]:
    """``(a, lin, b)`` of probability targets, with ``b = w·((1-ε) q + ε/k)`` the smoothed,
    weighted target held whole; ``lin`` is ``-inf`` where ``b`` puts mass on a masked class."""
    assert pb.q is not None
    cd, eps = pb.cdtype, pb.eps
    q = pb.q[r0:r1]
    b = np.multiply(q, 1.0 - eps, dtype=cd)
    if eps > 0.0:
        b += cd(eps / xt.shape[1])
    if mk.fin is not None:
        b[mk.rows] = (1.0 - eps) * q[mk.rows].astype(cd) + (eps / mk.k[mk.rows])[:, None] * mk.fin
    if pb.w is not None:
        b *= pb.w
    a = b.sum(axis=1, dtype=np.float64)
    lin = factor * _row_sums(pb, xt, b, mk.rows, mk.fin) - shift * a
    if mk.fin is not None:  # probability mass on a masked class: the loss is +inf
        on_masked = (b[mk.rows] * ~mk.fin).sum(axis=1) > 0
        lin[np.flatnonzero(mk.rows)[on_masked]] = -np.inf
    return a, lin, b


def _exp_into(
    pb: Problem, x: Array, z: Array, t: Array | None, shift: Array, mk: _Masking
) -> Array:
    """``e = exp(z - shift)`` written straight into the buffer ``z``: the one ``exp``
    (:func:`crossent._exp.exp_rows`); returns the row sums ``Σ e`` (float64)."""
    cd, temp = pb.cdtype, pb.temperature
    s = np.empty(len(z))
    if t is not None:
        np.multiply(t, cd(pb.softcap), out=z)
        if shift.any():
            z -= shift.astype(cd)[:, None]
        if mk.fin is not None:  # a masked class stays masked
            z[mk.rows] = np.where(mk.fin, z[mk.rows], -np.inf)
        exp_rows(z, z, None, s)
    elif temp == 1.0:
        exp_rows(x, z, shift if shift.any() else None, s)
    else:
        with np.errstate(over="ignore"):  # an inf here has its shift: exp gives 0 or nan, checked
            np.multiply(x, cd(1.0 / temp), out=z, dtype=cd)
        exp_rows(z, z, shift if shift.any() else None, s)
    return s


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
    buffer, needed only with soft-capping. The loss and the gradient's coefficients come from
    :mod:`crossent._algebra`.
    """
    x = pb.x[r0:r1]  # (n, C)
    cd, eps = pb.cdtype, pb.eps
    mx, empty = _row_maxima(pb, r0, x)  # 1. row maxima, checked, and the shift
    xt, factor, shift = _transform(pb, x, mx, t)
    mk = _Masking.of(pb, x)
    sums = _index_sums if pb.q is None else _prob_sums  # 2. per-row sums, before exp
    a, lin, b = sums(pb, r0, r1, xt, factor, shift, mk)
    # 3. the one exp per element, into the buffer; its row sums (n,) in float64, the digits of
    # long rows of near-equal terms kept (row_sums, or the compiled exp's float64 sums)
    s = _exp_into(pb, x, z, t, shift, mk)
    s[s == 0.0] = 1.0  # all-masked ignored rows
    log_s = np.log(s)
    lse = shift + log_s
    valid = pb.valid[r0:r1] if pb.valid is not None else None
    loss = _algebra.row_loss(a, lin, log_s, lse, z_loss=pb.z_loss, valid=valid)
    if not grad:
        return loss, _empty_lse(lse, empty)

    # 4. gradient: p·e - target·(w q) - smooth·w, then the chain rule of the transform
    co = _algebra.grad_coefficients(
        a,
        lse,
        s,
        scale=pb.scale,
        z_scale=pb.z_scale,
        z_loss=pb.z_loss,
        label_smoothing=eps,
        k=mk.k,
        valid=valid,
    )
    z *= co.p.astype(cd)[:, None]
    if pb.q is None:
        assert pb.y is not None
        z[np.arange(len(z)), pb.y[r0:r1]] -= (co.target * b).astype(cd)
        if eps > 0.0:
            coef = co.smooth.astype(cd)[:, None]
            z -= coef * pb.w if pb.w is not None else coef
            if mk.fin is not None:  # masked classes get no smoothing mass
                z[mk.rows] = np.where(mk.fin, z[mk.rows], 0.0)
    else:
        z -= np.broadcast_to(np.asarray(co.row, dtype=cd), (len(z),))[:, None] * b
    if pb.softcap is not None or pb.temperature != 1.0:
        z *= _algebra.chain_factor(t, pb.temperature, overwrite=True)  # t is scratch
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
    s = np.empty(r1 - r0)  # (n,) > 0: every row has a finite logit
    if temp == 1.0:
        exp_rows(x, z, None, s)
    else:
        np.multiply(x, cd(1.0 / temp), out=z, dtype=cd)
        exp_rows(z, z, None, s)
    log_s = np.log(s)
    wy = pb.wy[r0:r1].astype(np.float64)
    if pb.valid is not None:  # ignored rows: 0, even where their label 0 has logit -inf
        zy[wy == 0.0] = 0.0
    loss = _algebra.row_loss(wy, wy * zy, log_s, log_s)
    if grad:  # the temperature's chain rule, a number, folded into the rows' scale
        co = _algebra.grad_coefficients(wy, log_s, s, scale=pb.scale / temp)
        z *= co.p.astype(cd)[:, None]
        z[rows, y] -= (co.target * wy).astype(cd)
    return loss, log_s

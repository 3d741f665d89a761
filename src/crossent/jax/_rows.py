"""A block of rows in ``jax.numpy``: the per-row statistics, then the gradient from the algebra.

This is the JAX backend's only kernel. It takes the transformed logits of ``M`` rows (all the
classes, or one device's columns of them), reduces them to the per-row statistics of
:mod:`crossent._algebra` — ``log_s``, the target's weight and score, the smoothing sums — and
builds the gradient ``p·e - target·(w q) - smooth·(w 1[finite])`` from the coefficients the
algebra returns. Where the classes are split over devices (:class:`Comm` with an axis name)
the row maxima cross devices in one ``pmax`` and the sums in one ``psum`` of a few floats per
row; everything else is local.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from crossent import _algebra
from crossent._spec import LossOptions

Array = Any


class Comm(NamedTuple):
    """How per-row statistics combine over the devices that hold the classes.

    ``axis_name=None``: one device holds every class. Otherwise the mesh axis (inside
    ``jax.shard_map``) over which the classes are split in equal contiguous shards.
    """

    axis_name: str | None = None

    def max(self, v: Array) -> Array:
        return v if self.axis_name is None else jax.lax.pmax(v, self.axis_name)

    def sum(self, v: Array) -> Array:
        return v if self.axis_name is None else jax.lax.psum(v, self.axis_name)

    def offset(self, n_local: int) -> Any:
        """The global index of this device's first class."""
        return 0 if self.axis_name is None else jax.lax.axis_index(self.axis_name) * n_local

    def n_classes(self, n_local: int) -> int:
        """The number of classes over every device (equal shards of ``n_local``)."""
        return (
            n_local if self.axis_name is None else n_local * int(jax.lax.axis_size(self.axis_name))
        )


LOCAL = Comm()


class Rows(NamedTuple):
    """A block's targets, already checked: index targets give ``y`` (global class indices,
    ignored rows anything) and ``wy`` (the target class's weight, 0 where ignored);
    probability targets give ``q`` (this device's columns). ``valid`` is False on ignored
    rows and padding; ``w`` this device's class weights (``None``: all ones)."""

    valid: Array  # (M,) bool
    w: Array | None  # (C,)
    y: Array | None = None  # (M,) int
    wy: Array | None = None  # (M,)
    q: Array | None = None  # (M, C)


def local_weights(rows: Rows, comm: Comm, n_local: int) -> Rows:
    """This device's columns of the class weights (the global ones stay in ``wy``)."""
    if comm.axis_name is None or rows.w is None:
        return rows
    return rows._replace(w=jax.lax.dynamic_slice_in_dim(rows.w, comm.offset(n_local), n_local))


class Out(NamedTuple):
    loss: Array  # (M,) per-row loss, z-term included, 0 where not valid
    lse: Array  # (M,) log-sum-exp of the transformed logits
    grad: Array | None  # (M, C) gradient with respect to the raw logits, compute dtype
    target_grad: Array | None = None  # (M, C) gradient with respect to probability targets


def _target_sums(
    x: Array, m: Array, d_fin: Array, finite: Array, rows: Rows, opts: LossOptions, comm: Comm
) -> tuple[list[Array], dict[str, Any]]:
    """This shard's per-row sums for the target and the smoothing (``d_fin``: the shifted,
    transformed logits, 0 where masked), in the order :func:`block` unstacks them, and what
    the gradient reuses (``local_y``, ``here``; ``wq``; ``wf``)."""
    c, w = x.shape[-1], rows.w
    sums: list[Array] = []
    keep: dict[str, Any] = {}
    if rows.q is None:
        local_y = rows.y - comm.offset(c)
        here = rows.valid & (local_y >= 0) & (local_y < c)
        # the target's raw logit, then its transform: no (M, C) array is read twice
        picked = jnp.take_along_axis(x, jnp.clip(local_y, 0, c - 1)[:, None], axis=-1)[:, 0]
        picked = _algebra.transform(picked, opts.temperature, opts.softcap)[0] - m
        sums.append(jnp.where(here & (rows.wy != 0), picked, 0.0))  # the target's z - m
        keep.update(local_y=local_y, here=here)
    else:
        wq = rows.q if w is None else rows.q * w
        sums += [jnp.sum(wq, -1), jnp.sum(wq * d_fin, -1), jnp.sum(jnp.where(finite, 0.0, wq), -1)]
        keep.update(wq=wq)
    if opts.label_smoothing > 0.0:
        wf = finite if w is None else jnp.where(finite, w, 0.0)
        sums += [
            jnp.sum(finite, -1),
            jnp.sum(wf, -1),
            jnp.sum(d_fin if w is None else wf * d_fin, -1),
        ]
        keep.update(wf=wf)
    return sums, keep


def _scores_grad(co: Any, e: Array, rows: Rows, keep: dict[str, Array], eps: float) -> Array:
    """The gradient with respect to the transformed scores: the coefficients ``co`` of
    :func:`crossent._algebra.grad_coefficients` times ``e = exp(z - m)``, the target's and the
    smoothing's terms subtracted."""
    c, w = e.shape[-1], rows.w
    g = co.p[:, None] * e
    if rows.q is None:
        # one scatter of M values, not a compare per logit; a target outside this device's
        # columns (or ignored) gets column c, which mode="drop" skips
        local_y = keep["local_y"]
        col = jnp.where(keep["here"], local_y, c)
        wt = co.target if w is None else co.target * w[jnp.clip(local_y, 0, c - 1)]
        g = g.at[jnp.arange(g.shape[0]), col].add(-wt, mode="drop")
    else:
        g = g - co.target[:, None] * keep["wq"]
    if eps > 0.0:
        g = g - co.smooth[:, None] * keep["wf"]
    return g


def block(
    x: Array,
    rows: Rows,
    opts: LossOptions,
    scale: Any = 1.0,
    z_scale: Any = None,
    *,
    want_grad: bool,
    want_target_grad: bool = False,
    comm: Comm = LOCAL,
) -> Out:
    """Loss and gradient of the rows of ``x`` (``(M, C)``, float32 or float64).

    ``scale`` multiplies each row's cross-entropy (``1/D`` for ``'mean'``; a per-row array
    such as the incoming gradient works too), ``z_scale`` its z-term (default ``scale``).
    """
    eps, zl = opts.label_smoothing, opts.z_loss
    z, tanh_u = _algebra.transform(x, opts.temperature, opts.softcap)
    finite = z != -math.inf
    m = comm.max(jnp.max(z, axis=-1))
    m = jnp.where(m == -math.inf, 0.0, m)  # an (ignored) row of all -inf: exp gives 0
    d = z - m[:, None]  # (M, C) <= 0
    d_fin = jnp.where(finite, d, 0.0)  # -inf never meets a weight of 0
    w = rows.w

    # the per-row sums, stacked for one psum
    e = jnp.exp(d)  # (M, C): stored once, read by the sum and the gradient
    parts, keep = _target_sums(x, m, d_fin, finite, rows, opts, comm)
    sums = [jnp.sum(e, axis=-1), *parts]
    total = comm.sum(jnp.stack([s.astype(x.dtype) for s in sums]))
    s, rest = total[0], list(total[1:])
    if rows.q is None:
        tw, ts = rows.wy, rows.wy * rest.pop(0)
    else:
        tw, ts, on_masked = rest.pop(0), rest.pop(0), rest.pop(0)
        ts = jnp.where(on_masked > 0, -math.inf, ts)  # target mass on a masked class: +inf
    k, fw, fs = rest if eps > 0.0 else (1.0, 0.0, 0.0)
    k = jnp.maximum(k, 1.0)  # 0 only on ignored rows

    s_safe = jnp.where(s > 0, s, 1.0)
    log_s = jnp.log(s_safe)
    lse = m + log_s

    def sums_to_loss(tw: Array, ts: Array) -> tuple[Array, Array]:
        a, lin = _algebra.target_sums(
            tw, ts, label_smoothing=eps, k=k, finite_weight=fw, finite_score=fs
        )
        return _algebra.row_loss(a, lin, log_s, lse, z_loss=zl, valid=rows.valid), a

    loss, a = sums_to_loss(tw, ts)
    if not want_grad:
        return Out(loss, lse, None)

    co = _algebra.grad_coefficients(
        a, lse, s_safe, scale=scale, z_scale=z_scale, z_loss=zl,
        label_smoothing=eps, k=k, valid=rows.valid,
    )  # fmt: skip
    grad = _scores_grad(co, e, rows, keep, eps) * _algebra.chain_factor(tanh_u, opts.temperature)
    if not want_target_grad:
        return Out(loss, lse, grad)
    # probabilities enter each row's loss only through the target's weight Σ w q and score
    # Σ w q (z - m): the row's derivatives in those two (by JAX, of the algebra's lines), then
    # the chain rule to q; 0 at a masked class (z = -inf), as in crossent.reference
    _, loss_vjp = jax.vjp(lambda tw, ts: sums_to_loss(tw, ts)[0], tw, ts)
    d_tw, d_ts = loss_vjp(co.row * jnp.ones_like(loss))
    wc = 1.0 if w is None else w
    dq = d_tw[:, None] * wc + d_ts[:, None] * wc * d_fin
    return Out(loss, lse, grad, jnp.where(finite, dq, 0.0))

r"""One vocabulary shard: its place in the full vocabulary, and the loss of full rows from it.

Rank ``r`` holds the columns ``[offset, offset + size)`` of the ``(N, V)`` logits. The loss of a
row needs its log-sum-exp and a few linear sums over all ``V`` columns (the same sums the Triton
kernel accumulates over blocks of one row, :mod:`crossent.torch._triton_ce`), so each rank
computes them over its own columns and two all-reduces combine them:

1. ``MAX`` of the row maxima of the transformed logits ``z`` (plus two flags: NaN/``+inf``
   logits, masked classes anywhere), one float per row;
2. ``SUM`` of ``s = Σ exp(z - M)`` and the linear term ``Σ_c b_c (z_c - M)`` (the target logit,
   the smoothing sum, ``Σ w q z``): two floats per row in the common cases; with label
   smoothing and masked classes also the finite count ``k`` and weight ``Σ_finite w``; with
   probability targets ``Σ w q`` (which are checked once per call, before the chunks).

Then every rank knows ``lse = M + log S`` and ``a = Σ_c b_c``, hence the loss
``ℓ = a·log S - Σ_c b_c (z_c - M) + λ·lse²`` and its gradient on its own columns,
``(a + 2λ·lse)·p_c - b_c`` times the chain rule of the transforms, written over the
``exp(z - M)`` it already holds: one ``exp`` per element, as in the single-process engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from crossent import _algebra, _spec
from crossent.torch._cpu import transform
from crossent.torch._options import LossOptions, check_class_weight

_NAN, _POSINF = 2.0, 1.0  # flag values of bad logits (MAX keeps the worse)


@dataclass(frozen=True)
class VocabShard:
    """This rank's columns ``[offset, offset + size)`` of a vocabulary of ``n_classes``."""

    group: Any  # a ProcessGroup, or None for the default group
    offset: int
    size: int
    n_classes: int
    sizes: tuple[int, ...]  # columns of every rank

    @property
    def max_size(self) -> int:
        return max(self.sizes)

    def all_reduce(self, t: torch.Tensor, op: Any) -> torch.Tensor:
        dist.all_reduce(t, op=op, group=self.group)
        return t


def _check_initialized(group: Any) -> None:
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "group: expected an initialized torch.distributed process group, got none; call "
            "torch.distributed.init_process_group first (torchrun sets up its environment)"
        )
    if group is not None and not isinstance(group, dist.ProcessGroup):
        raise TypeError(
            f"group: expected a torch.distributed ProcessGroup or None, got {type(group).__name__}"
        )


def vocab_shard(
    n_local: int, n_rows: int, group: Any, device: torch.device, name: str
) -> VocabShard:
    """Where this rank's ``n_local`` columns sit: one all-gather of the ranks' column and row
    counts (the rows must agree: every rank takes part in every row's all-reduces)."""
    _check_initialized(group)
    world = dist.get_world_size(group)
    mine = torch.tensor([n_local, n_rows], dtype=torch.int64, device=device)
    sizes = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(sizes, mine, group=group)
    counts = [int(s[0]) for s in sizes]
    row_counts = [int(s[1]) for s in sizes]
    if len(set(row_counts)) > 1:
        raise ValueError(
            f"{name}: expected the same number of rows on every rank, got {row_counts}"
        )
    rank = dist.get_rank(group)
    empty = [r for r, c in enumerate(counts) if c == 0]
    if empty:  # every rank sees every count, so every rank raises
        raise ValueError(
            f"{name}: expected at least one class column on every rank, got 0 on rank(s) "
            f"{empty} (columns per rank: {counts})"
        )
    return VocabShard(group, sum(counts[:rank]), n_local, sum(counts), tuple(counts))


def check_class_indices(
    target: torch.Tensor, n_classes: int, ignore_index: int, shape: Any
) -> None:
    """Global class indices in ``[0, V)`` or ``ignore_index`` (the same on every rank, so every
    rank raises), by the spec's rule and message; ``shape``: the target's, for the position."""
    _spec.check_class_indices(target.detach().cpu().numpy(), n_classes, ignore_index, shape)


def check_class_weight_values(weight: torch.Tensor | None, n_classes: int, name: str) -> None:
    """Finite and ``>= 0``, by the spec's rule and message."""
    if weight is not None:
        _spec.check_class_weight(weight.detach().double().cpu().numpy(), n_classes, name)


def check_sharded_probabilities(q: torch.Tensor, shard: VocabShard) -> None:
    """Probability targets split like the logits: finite, ``>= 0``, each row summing to 1 over
    all ranks (two all-reduces: the worst values, the row sums); the same error on every rank."""
    qd = q.detach().double()
    finite = bool(qd.isfinite().all())
    local = [0.0 if finite else 1.0, -float(qd.min()) if finite and qd.numel() else 0.0]
    nonfinite, neg_min = shard.all_reduce(qd.new_tensor(local), dist.ReduceOp.MAX).tolist()
    if nonfinite > 0:
        raise ValueError("target: expected finite probabilities, got NaN or inf")
    if neg_min > 0:
        raise ValueError(f"target: expected probabilities >= 0, got minimum {-neg_min!r}")
    sums = shard.all_reduce(qd.sum(1), dist.ReduceOp.SUM)
    tol = _spec.prob_sum_tolerance(q.dtype)
    off = (sums - 1.0).abs() > tol
    if bool(off.any()):
        r = int(torch.nonzero(off)[0, 0])
        raise ValueError(
            "target: expected probabilities summing to 1 along the class dimension (over all "
            f"ranks; tolerance {tol:.1e}), got a sum of {float(sums[r])!r} at row {r}"
        )


def check_shard_inputs(
    target: torch.Tensor,
    class_weight: Any,
    shard: VocabShard,
    opts: LossOptions,
    batch: Any,
    name: str,
) -> torch.Tensor | None:
    """The class weights (all ``V`` of them, the argument ``name``) and the target checked
    against the split vocabulary (the same error on every rank); returns the class weights."""
    w = check_class_weight(class_weight, shard.n_classes, target.device, name)
    check_class_weight_values(w, shard.n_classes, name)
    if target.is_floating_point():
        check_sharded_probabilities(target, shard)
    else:
        check_class_indices(target, shard.n_classes, opts.ignore_index, batch)
    return w


def _exp(t: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``exp(t)`` into ``out`` (which may be ``t``); NumPy's on the CPU (twice torch's speed
    on one AVX-512 core)."""
    if t.device.type == "cpu" and t.is_contiguous() and out.is_contiguous():
        np.exp(t.numpy(), out=out.numpy())
        return out
    return torch.exp(t, out=out)


def _global_max(
    z: torch.Tensor, valid: torch.Tensor, shard: VocabShard, smoothing_or_prob: bool
) -> tuple[torch.Tensor, bool, torch.Tensor | None]:
    """1. MAX: the rows' shift ``m`` over all ranks (0 in the safe range, as the engine's), the
    checks of the logits (the same error on every rank), whether any rank has a masked class
    that matters, and this rank's finite classes when it has some (else None)."""
    rows = z.shape[0]
    mx = z.amax(1)
    fl_x = _NAN if bool(mx.isnan().any()) else _POSINF if bool(mx.isposinf().any()) else 0.0
    masked_here = smoothing_or_prob and bool(z.isneginf().any())
    msg = torch.cat([torch.where(mx.isnan() | mx.isposinf(), 0.0, mx),
                     mx.new_tensor([fl_x, float(masked_here)])])  # fmt: skip
    msg = shard.all_reduce(msg, dist.ReduceOp.MAX)
    flags = msg[rows:].tolist()
    if flags[0] in (_NAN, _POSINF):
        raise _algebra.logits_error("nan" if flags[0] == _NAN else "posinf")
    m = msg[:rows]
    if bool((m.isneginf() & valid).any()):
        raise _algebra.logits_error("empty", where=" (over all ranks)")
    m = torch.where(m.isneginf(), 0.0, m)
    # no shift when exp can neither overflow a row's sum nor lose its largest terms (the
    # engine's safe range, with the row length in the bound): a pass over the chunk saved
    lo, hi = _algebra.no_shift_range(z.dtype, shard.n_classes)
    if bool(((m >= lo) & (m <= hi)).all()):
        m.zero_()
    fin = ~z.isneginf() if masked_here else None
    return m, flags[1] > 0.0, fin


@dataclass
class _Target:
    """This rank's part of the smoothed target ``b = w((1-ε) q + (ε/k) 1[finite])``."""

    valid: torch.Tensor  # (rows,) bool
    w_loc: torch.Tensor | None  # the class weights of the local columns
    q: torch.Tensor | None = None  # probability targets (local columns)
    col: torch.Tensor | None = None  # index targets: the local column of the label (0 if not)
    here: torch.Tensor | None = None  # ... and whether it is on this rank
    wy: torch.Tensor | None = None  # ... and its weight (0 on ignored rows)


def _local_sums(
    zs: torch.Tensor, tg: _Target, opts: LossOptions, shard: VocabShard, masked: bool,
    fin: torch.Tensor | None,
) -> list[torch.Tensor]:  # fmt: skip
    """2. SUM's columns over the local classes (after ``Σ exp``): ``Σ w q``, ``Σ w q z``, with
    smoothing ``Σ_finite w z`` and, when some rank has masked classes, ``k`` and
    ``Σ_finite w``; without masked classes the smoothing is combined here, over ``k = V``."""
    eps, w_loc = opts.label_smoothing, tg.w_loc
    if tg.q is not None:
        wq = tg.q * w_loc if w_loc is not None else tg.q
        if fin is None:
            lin_main = (wq * zs).sum(1)
        else:  # mass on a masked class: -inf, the loss is +inf
            lin_main = torch.where(fin, wq * zs, torch.where(wq > 0, -math.inf, 0.0)).sum(1)
        cols = [wq.sum(1)]
    else:
        assert tg.col is not None and tg.here is not None and tg.wy is not None
        zy = zs.gather(1, tg.col[:, None])[:, 0]
        lin_main, cols = torch.where(tg.here & (tg.wy > 0), zy, 0.0) * tg.wy, []
    if eps == 0.0:
        return [*cols, lin_main]
    zf = zs if fin is None else torch.where(fin, zs, 0.0)
    swz = zf @ w_loc if w_loc is not None else zf.sum(1)
    if not masked:  # k = V and Σ_finite w = Σ w on every row: combined before the SUM
        lin = _algebra.target_sums(0.0, lin_main, label_smoothing=eps, k=shard.n_classes,
                                   finite_score=swz)[1]  # fmt: skip
        return [*cols, lin]
    vr, cd = zs.shape[1], zs.dtype
    k = fin.sum(1).to(cd) if fin is not None else torch.full_like(swz, vr)
    if w_loc is None:
        w_fin = k
    elif fin is not None:
        w_fin = fin.to(cd) @ w_loc
    else:
        w_fin = torch.full_like(swz, float(w_loc.sum()))
    return [*cols, lin_main, swz, k, w_fin]


def _row_stats(
    sums: torch.Tensor, tg: _Target, opts: LossOptions, shard: VocabShard, masked: bool,
    class_weight: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """``(s, a, lin, k)`` of full rows from the all-reduced columns of :func:`_local_sums`."""
    eps = opts.label_smoothing
    s = sums[:, 0]
    s = torch.where(s > 0, s, 1.0)  # ignored rows of all -inf
    a_main = sums[:, 1] if tg.q is not None else tg.wy
    assert a_main is not None
    a_main, j = a_main.double(), 1 + (tg.q is not None)
    if eps > 0.0 and masked:
        lin_main, swz, k, w_fin = sums[:, j], sums[:, j + 1], sums[:, j + 2], sums[:, j + 3]
        k = k.clamp(min=1.0)  # 0 only in ignored rows
        a, lin = _algebra.target_sums(a_main, lin_main, label_smoothing=eps, k=k,
                                      finite_weight=w_fin, finite_score=swz)  # fmt: skip
        return s, a, lin, k
    k = torch.full_like(s, float(shard.n_classes))
    w_tot = float(class_weight.sum()) if class_weight is not None else float(shard.n_classes)
    a = _algebra.target_sums(a_main, 0.0, label_smoothing=eps, k=shard.n_classes,
                             finite_weight=w_tot)[0]  # fmt: skip
    return s, a, sums[:, j], k


def shard_loss_grad(
    src: torch.Tensor,
    target: torch.Tensor,
    class_weight: torch.Tensor | None,
    opts: LossOptions,
    want_grad: bool,
    *,
    shard: VocabShard,
    out: torch.Tensor | None = None,
    scale: float = 1.0,
    z_scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Losses and log-sum-exps (float64, ``(rows,)``) of full rows from this rank's columns.

    ``src`` holds the raw logits of the local columns ``(rows, size)``; with ``want_grad`` the
    gradient of each row's own loss (``'none'``) is written to ``out`` (default: over ``src``),
    its cross-entropy part times ``scale`` and its z-term times ``z_scale`` (default: ``scale``).
    ``target`` holds global class indices ``(rows,)`` or the local columns of probability
    targets; ``class_weight`` is the full ``(V,)``. Every rank of the group must call this
    with the same rows. The loss and the gradient's coefficients come from
    :mod:`crossent._algebra`.
    """
    out = src if out is None else out
    cd = torch.float64 if src.dtype == torch.float64 else torch.float32
    work = out if out.dtype == cd else None  # ours to overwrite (it may be `src`)
    tg = _target(src, target, class_weight, opts, shard, cd)
    z = transform(src if src.dtype == cd else src.to(cd), opts)  # `src` when no transform
    tanh_u = None
    if opts.softcap is not None and want_grad:  # z/s for the chain rule (-1 where masked)
        tanh_u = torch.div(z, opts.softcap, out=work) if work is not None else z / opts.softcap
        tanh_u.clamp_(min=-1.0)
    eps_or_prob = opts.label_smoothing > 0.0 or tg.q is not None
    m, masked, fin = _global_max(z, tg.valid, shard, eps_or_prob)
    if not bool(m.any()):  # 2. SUM: local sums in shifted coordinates (or not shifted)
        zs = z  # may be `src`: read only
    elif z is src:  # -inf stays -inf
        zs = torch.sub(z, m[:, None], out=work) if work is not None else z - m[:, None]
    else:
        zs = z.sub_(m[:, None])
    cols = _local_sums(zs, tg, opts, shard, masked, fin)
    e = _exp(zs, zs if zs is not src else work if work is not None else torch.empty_like(zs))
    sums = shard.all_reduce(torch.stack([e.sum(1), *cols], 1), dist.ReduceOp.SUM).double()
    s, a, lin, k = _row_stats(sums, tg, opts, shard, masked, class_weight)
    log_s = s.log()
    lse = m.double() + log_s
    valid = tg.valid if tg.q is None else None
    loss = _algebra.row_loss(a, lin, log_s, lse, z_loss=opts.z_loss, valid=valid)
    if want_grad:
        co = _algebra.grad_coefficients(a, lse, s, scale=scale, z_scale=z_scale,
                                        z_loss=opts.z_loss, label_smoothing=opts.label_smoothing,
                                        k=k, valid=valid)  # fmt: skip
        _write_grad(e, co, tg, fin, tanh_u, opts, out)
    return loss, lse


def _target(
    src: torch.Tensor, target: torch.Tensor, class_weight: torch.Tensor | None,
    opts: LossOptions, shard: VocabShard, cd: torch.dtype,
) -> _Target:  # fmt: skip
    """Where this rank's columns meet the target."""
    vr = src.shape[1]
    w_loc = None
    if class_weight is not None:
        w_loc = class_weight[shard.offset : shard.offset + vr].to(cd)
    if target.is_floating_point():
        valid = torch.ones(src.shape[0], dtype=torch.bool, device=src.device)
        return _Target(valid, w_loc, q=target.to(cd))
    valid = target != opts.ignore_index
    col = target - shard.offset
    here = valid & (col >= 0) & (col < vr)
    wy = class_weight[torch.where(valid, target, 0)].to(cd) if class_weight is not None else None
    wy = (wy if wy is not None else torch.ones(src.shape[0], dtype=cd, device=src.device)) * valid
    return _Target(valid, w_loc, col=torch.where(here, col, 0), here=here, wy=wy)


def _write_grad(
    e: torch.Tensor, co: _algebra.GradCoefficients, tg: _Target, fin: torch.Tensor | None,
    tanh_u: torch.Tensor | None, opts: LossOptions, out: torch.Tensor,
) -> None:  # fmt: skip
    """The gradient on this rank's columns, over ``e = exp(z - m)``, into ``out``:
    ``p·e - target·(w q) - smooth·(w 1[finite])``, times the chain rule of the transform."""
    cd, w_loc = e.dtype, tg.w_loc
    g = e.mul_(co.p.to(cd)[:, None])
    if tg.q is not None:
        b = tg.q * co.target
        if opts.label_smoothing > 0.0:
            b = b + co.smooth.to(cd)[:, None] * (fin if fin is not None else 1.0)
        g.sub_(b * w_loc if w_loc is not None else b)
    else:
        assert tg.col is not None and tg.here is not None and tg.wy is not None
        rows = torch.arange(g.shape[0], device=g.device)
        g[rows, tg.col] -= torch.where(tg.here, co.target * tg.wy, 0.0).to(cd)
        if opts.label_smoothing > 0.0:
            coef_b = co.smooth.to(cd)[:, None]
            g.sub_(coef_b * w_loc if w_loc is not None else coef_b)
            if fin is not None:  # masked classes get no smoothing mass
                g.masked_fill_(~fin, 0.0)
    if tanh_u is not None:  # in `out` when it is ours
        g = _algebra.chain_factor(tanh_u, opts.temperature, overwrite=True).mul_(g)
    elif opts.temperature != 1.0:
        g.mul_(_algebra.chain_factor(None, opts.temperature))
    if g.data_ptr() != out.data_ptr():
        out.copy_(g)

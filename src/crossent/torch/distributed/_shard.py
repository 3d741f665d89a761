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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from crossent import _spec
from crossent._kernel import SAFE_RANGE
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
    n_local: int,
    n_rows: int,
    group: Any,
    device: torch.device,
    name: str,
    extra: torch.Tensor | None = None,
    check: Callable[[list[list[int]]], None] | None = None,
) -> VocabShard:
    """Where this rank's ``n_local`` columns sit: one all-gather of the ranks' column and row
    counts (the rows must agree: every rank takes part in every row's all-reduces), and of
    ``extra`` (int64, the same length on every rank); ``check`` sees every rank's
    ``[columns, rows, *extra]`` first."""
    _check_initialized(group)
    world = dist.get_world_size(group)
    mine = torch.tensor([n_local, n_rows], dtype=torch.int64, device=device)
    if extra is not None:
        mine = torch.cat([mine, extra])
    sizes = [torch.empty_like(mine) for _ in range(world)]
    dist.all_gather(sizes, mine, group=group)
    table: list[list[int]] = torch.stack(sizes).tolist()  # one read-back
    if check is not None:
        check(table)
    counts = [row[0] for row in table]
    row_counts = [row[1] for row in table]
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


def _raise_flags(flag: float) -> None:
    """The same error on every rank, from the all-reduced flag."""
    if flag == _NAN:
        raise ValueError("logits: expected finite values or -inf (masked), got NaN")
    if flag == _POSINF:
        raise ValueError("logits: expected finite values or -inf (masked), got +inf")


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
    with the same rows.
    """
    out = src if out is None else out
    cd = torch.float64 if src.dtype == torch.float64 else torch.float32
    work = out if out.dtype == cd else None  # ours to overwrite (it may be `src`)
    rows, vr = src.shape
    prob = target.is_floating_point()
    eps, lam = opts.label_smoothing, opts.z_loss
    w_loc = None
    if class_weight is not None:
        w_loc = class_weight[shard.offset : shard.offset + vr].to(cd)
    z = transform(src if src.dtype == cd else src.to(cd), opts)  # `src` when no transform
    sq2 = None
    if opts.softcap is not None and want_grad:  # (z/s)² for the chain rule
        sq2 = torch.div(z, opts.softcap, out=work) if work is not None else z / opts.softcap
        sq2.square_().clamp_(max=1.0)

    # 1. MAX: row maxima of z, and the flags
    mx = z.amax(1)
    fl_x = _NAN if bool(mx.isnan().any()) else _POSINF if bool(mx.isposinf().any()) else 0.0
    if prob:
        q = target.to(cd)
    masked_here = (eps > 0.0 or prob) and bool(z.isneginf().any())
    msg = torch.cat([torch.where(mx.isnan() | mx.isposinf(), 0.0, mx),
                     mx.new_tensor([fl_x, float(masked_here)])])  # fmt: skip
    msg = shard.all_reduce(msg, dist.ReduceOp.MAX)
    flags = msg[rows:].tolist()
    _raise_flags(flags[0])
    masked = flags[1] > 0.0
    m = msg[:rows]
    if prob:
        valid = torch.ones(rows, dtype=torch.bool, device=src.device)
    else:
        valid = target != opts.ignore_index
    if bool((m.isneginf() & valid).any()):
        raise ValueError(
            "logits: expected at least one finite logit in every non-ignored row, got a row of "
            "all -inf (over all ranks); give it target=ignore_index to skip it"
        )
    m = torch.where(m.isneginf(), 0.0, m)
    # no shift when exp can neither overflow a row's sum nor lose its largest terms (the
    # engine's safe range, with the row length in the bound): a pass over the chunk saved
    lo, hi = SAFE_RANGE[np.dtype("float64" if cd == torch.float64 else "float32")]
    if bool(((m >= lo) & (m <= hi - math.log(shard.n_classes))).all()):
        m.zero_()

    # 2. SUM: local sums in coordinates shifted by the global maximum (or not shifted)
    if not bool(m.any()):
        zs = z  # may be `src`: read only
    elif z is src:  # -inf stays -inf
        zs = torch.sub(z, m[:, None], out=work) if work is not None else z - m[:, None]
    else:
        zs = z.sub_(m[:, None])
    fin = ~zs.isneginf() if masked_here else None
    cols: list[torch.Tensor] = []
    if prob:
        wq = q * w_loc if w_loc is not None else q
        if fin is None:
            lin_main = (wq * zs).sum(1)
        else:  # mass on a masked class: -inf, the loss is +inf
            lin_main = torch.where(fin, wq * zs, torch.where(wq > 0, -math.inf, 0.0)).sum(1)
        cols.append(wq.sum(1))
    else:
        col = target - shard.offset
        here = valid & (col >= 0) & (col < vr)
        col = torch.where(here, col, 0)
        wy = (
            class_weight[torch.where(valid, target, 0)].to(cd) if class_weight is not None else None
        )
        a_main = (wy if wy is not None else torch.ones_like(m)) * valid
        zy = zs.gather(1, col[:, None])[:, 0]
        lin_main = torch.where(here & (a_main > 0), zy, 0.0) * a_main
    w_tot = float(class_weight.sum()) if class_weight is not None else float(shard.n_classes)
    if eps > 0.0:
        zf = zs if fin is None else torch.where(fin, zs, 0.0)
        swz = zf @ w_loc if w_loc is not None else zf.sum(1)
        if masked:  # the finite count and weight differ per row: combined after the SUM
            k = fin.sum(1).to(cd) if fin is not None else torch.full_like(m, vr)
            if w_loc is None:
                w_fin = k
            else:
                w_fin = (
                    fin.to(cd) @ w_loc
                    if fin is not None
                    else torch.full_like(m, float(w_loc.sum()))
                )
            cols += [lin_main, swz, k, w_fin]
        else:
            cols.append((1.0 - eps) * lin_main + (eps / shard.n_classes) * swz)
    else:
        cols.append(lin_main)
    if zs is not src:
        e = _exp(zs, zs)  # the one exp per element
    else:
        e = _exp(zs, work if work is not None else torch.empty_like(zs))
    cols.insert(0, e.sum(1))
    sums = shard.all_reduce(torch.stack(cols, 1), dist.ReduceOp.SUM).double()  # (rows, K)

    # the loss of each full row, as the single-process engine gives it
    s = sums[:, 0]
    s = torch.where(s > 0, s, 1.0)  # ignored rows of all -inf
    log_s = s.log()
    lse = m.double() + log_s
    j = 1
    if prob:  # Σ_c w_c q_c
        a_main = sums[:, 1]
        j += 1
    a_main = a_main.double()
    if eps > 0.0 and masked:
        lin_main, swz, k, w_fin = sums[:, j], sums[:, j + 1], sums[:, j + 2], sums[:, j + 3]
        k = k.clamp(min=1.0)  # 0 only in ignored rows
        lin = (1.0 - eps) * lin_main + (eps / k) * swz
        a = (1.0 - eps) * a_main + (eps / k) * w_fin
    else:
        lin = sums[:, j]
        k = torch.full_like(s, float(shard.n_classes))
        a = (1.0 - eps) * a_main + (eps / shard.n_classes) * w_tot if eps > 0.0 else a_main
    loss = a * log_s - lin
    if lam:
        loss = loss + lam * lse.square()
    loss = torch.where(valid, loss, 0.0).clamp_(min=0.0)
    if not want_grad:
        return loss, lse

    # the gradient on this rank's columns, over exp(z - M)
    zsc = scale if z_scale is None else z_scale
    coef = torch.where(valid, (scale * a + zsc * 2.0 * lam * lse) / s, 0.0)
    g = e.mul_(coef.to(cd)[:, None])
    if prob:
        b = q * ((1.0 - eps) * scale)
        if eps > 0.0:
            b = b + (eps * scale / k).to(cd)[:, None] * (fin if fin is not None else 1.0)
        g.sub_(b * w_loc if w_loc is not None else b)
    else:
        g[torch.arange(rows, device=g.device), col] -= torch.where(
            here, (1.0 - eps) * scale * a_main, 0.0
        ).to(cd)
        if eps > 0.0:
            coef_b = torch.where(valid, eps * scale / k, 0.0).to(cd)[:, None]
            g.sub_(coef_b * w_loc if w_loc is not None else coef_b)
            if fin is not None:  # masked classes get no smoothing mass
                g.masked_fill_(~fin, 0.0)
    if sq2 is not None:
        g = sq2.neg_().add_(1.0).mul_(g)  # in `out` when it is ours
    if opts.temperature != 1.0:
        g.mul_(1.0 / opts.temperature)
    if g.data_ptr() != out.data_ptr():
        out.copy_(g)
    return loss, lse

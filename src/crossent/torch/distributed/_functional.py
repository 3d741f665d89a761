r"""``vocab_parallel_cross_entropy``: the loss of ``(N, V)`` logits split by columns over ranks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from crossent import _spec
from crossent.torch._autograd import (
    FORWARD_AD_ERROR,
    VOCAB_PARALLEL_ERROR,
    check_no_func_transform,
    scale_grad,
)
from crossent.torch._buffers import grad_buffer
from crossent.torch._grad import scale_target_grad
from crossent.torch._options import (
    LossKwargs,
    LossOptions,
    Scales,
    check_float_tensor,
    flatten_target,
    options_from,
    reduce_rows,
    scales_for,
    takes_options,
    transform,
)
from crossent.torch.distributed import _agree
from crossent.torch.distributed._shard import (
    VocabShard,
    check_shard_inputs,
    shard_loss_grad,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

# rows per chunk: about this many logits (16 MiB in float32), two small all-reduces per chunk
CHUNK_ELEMENTS = 1 << 22


class VocabParallelFunction(torch.autograd.Function):
    """Apply as ``(logits (N, V_r), target, weight (V,), options, shard, scales)``."""

    @staticmethod
    def forward(
        ctx: Any,
        logits: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        opts: LossOptions,
        shard: VocabShard,
        scales: Scales,
    ) -> torch.Tensor:
        want_grad = bool(ctx.needs_input_grad[0])
        n, vr = logits.shape
        cd = torch.float64 if logits.dtype == torch.float64 else torch.float32
        grad = None
        if want_grad:
            grad = (grad_buffer((n, vr), logits.dtype) if logits.device.type == "cpu"
                    else torch.empty_like(logits))  # fmt: skip
        rows = max(1, min(n, CHUNK_ELEMENTS // vr))
        tmp = None  # a float32 chunk for low-precision logits, or without a gradient
        if grad is None or grad.dtype != cd:
            tmp = torch.empty((rows, vr), dtype=cd, device=logits.device)
        losses = torch.empty(n, dtype=torch.float64, device=logits.device)
        lse = torch.empty(n, dtype=torch.float64, device=logits.device)
        for r0 in range(0, n, rows):
            r1 = min(r0 + rows, n)
            buf = tmp[: r1 - r0] if tmp is not None else grad[r0:r1]  # type: ignore[index]
            losses[r0:r1], lse[r0:r1] = shard_loss_grad(
                logits.detach()[r0:r1], target[r0:r1], weight, opts, want_grad, shard=shard,
                out=buf, scale=scales.ce, z_scale=scales.z,
            )  # fmt: skip
            if grad is not None and buf.data_ptr() != grad[r0:r1].data_ptr():
                grad[r0:r1].copy_(buf)
        ctx.opts, ctx.scale, ctx.offset = opts, scales.ce, shard.offset
        saved: list[torch.Tensor | None] = [grad]
        if ctx.needs_input_grad[1]:
            saved += [logits, lse, weight]
        ctx.save_for_backward(*saved)
        if opts.reduction == "none":
            return losses.to(logits.dtype)
        return reduce_rows(losses, lse, target, opts, scales).to(logits.dtype)

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[Any, ...]:
        if torch.is_grad_enabled():  # create_graph=True: the gradient would have no graph
            raise NotImplementedError(VOCAB_PARALLEL_ERROR.format(
                "vocab_parallel_cross_entropy", "create_graph=True (second derivatives)"
            ))  # fmt: skip
        opts: LossOptions = ctx.opts
        saved = ctx.saved_tensors
        grad_x = grad_t = None
        if ctx.needs_input_grad[0]:
            grad_x = scale_grad(saved[0], grad_loss, opts)
        if ctx.needs_input_grad[1]:  # probability targets: -(1-ε)·w·log p, p the global softmax
            logits, lse, weight = saved[1:]
            cd = torch.float64 if logits.dtype == torch.float64 else torch.float32
            logp = transform(logits.detach().to(cd), opts).sub_(lse.to(cd)[:, None])
            if weight is not None:
                weight = weight[ctx.offset : ctx.offset + logits.shape[1]]
            grad_t = scale_target_grad(logp, weight, grad_loss, opts, ctx.scale)
            grad_t = grad_t.to(logits.dtype)
        return grad_x, grad_t, None, None, None, None

    @staticmethod
    def jvp(ctx: Any, *_tangents: Any) -> Any:
        raise NotImplementedError(
            FORWARD_AD_ERROR.format("distributed.vocab_parallel_cross_entropy")
        )


@takes_options("vocab_parallel")
def vocab_parallel_cross_entropy(
    logits_shard: torch.Tensor,
    target: torch.Tensor,
    *,
    group: Any = None,
    weight: torch.Tensor | None = None,
    class_dim: int | None = None,
    check_ranks: bool = True,
    **options: Unpack[LossKwargs],
) -> torch.Tensor:
    r"""Cross-entropy of logits whose classes are split over the ranks of ``group``.

    Rank ``r`` passes its contiguous columns ``logits_shard`` of the full logits (shards in
    rank order; their sizes may differ). The loss, on every rank, and the gradient of each
    shard equal those of :func:`crossent.torch.cross_entropy` on the gathered logits, but
    only per-row statistics cross ranks: one all-reduce ``MAX`` and one ``SUM`` of a few
    floats per row (two in the common cases), never the logits. As in the single-process
    function, the gradient is computed in the forward pass (one ``exp`` per logit) and
    backward only scales it. Every rank of ``group`` must call it with the same rows.

    Parameters
    ----------
    logits_shard : Tensor, shape (N, V_r), (V_r,) or k-dimensional with ``class_dim``
        This rank's columns of the logits (any float dtype; ``-inf`` masks a class: a rank
        whose columns are all masked is fine).
    target : Tensor
        Global class indices (integer, the same on every rank, ``ignore_index`` allowed) of
        the logits' shape without the class dimension, or probabilities split like the
        logits (this rank's columns; they may require grad).
    group : ProcessGroup, optional
        The ranks that share the vocabulary (default: the default group).
    weight : Tensor, shape (V,), optional
        The class weights of the full vocabulary (the same on every rank).
    ignore_index, reduction, label_smoothing, z_loss, softcap, temperature
        As :func:`crossent.torch.cross_entropy`.
    num_items : float > 0, optional
        With ``reduction='mean'``: divide the summed loss by this instead of this batch's
        ``Σ w_{y_n}``, e.g. the count over all data-parallel ranks and accumulation steps
        (:func:`global_num_items`); it may be below this batch's own count.
    class_dim : int, optional
        The dimension of the vocabulary, required for logits of 3 or more dimensions: ``1``
        for PyTorch's ``(N, V_r, d1, ...)``, ``-1`` for Megatron's ``[s, b, V_r]`` (the
        vocabulary last). A shape alone cannot tell them apart (``[s, b, V_r]`` with
        ``b = V_r`` reads either way), so it is never guessed.
    check_ranks : bool, default True
        Check that every rank passed the same rows, batch shape, dtype, targets, class weights
        and options (hashes carried by the all-gather that finds the shards: no extra
        collective); a disagreement raises the same error on every rank.

    Returns
    -------
    Tensor
        The same value on every rank: a scalar, or the batch shape for ``'none'``.

    Raises
    ------
    RuntimeError
        ``torch.distributed`` is not initialized.
    TypeError, ValueError
        As :func:`crossent.torch.cross_entropy`, raised on every rank, also for problems
        found in one rank's arguments (that rank raises its own error; the others name it);
        ranks that disagree; a rank with no columns; a k-dimensional ``logits_shard``
        without ``class_dim``.
    """
    check_no_func_transform("distributed.vocab_parallel_cross_entropy")
    args = dict(locals())
    local, err = _agree.run_locally(lambda: _prepare(args))
    shard, local = _agree.find_shard(local, err, logits_shard, group, _NAMES)
    x, t, batch, opts = local.x, local.target, local.batch, local.opts
    w = check_shard_inputs(t, weight, shard, opts, batch, "weight")
    if not t.is_floating_point():
        t = t.long()
    loss = VocabParallelFunction.apply(x, t, w, opts, shard, scales_for(t, w, opts))
    return loss.reshape(batch) if opts.reduction == "none" else loss


_NAMES = {"x": "logits_shard", "layout": "class_dim", "layout_what": "value", "weight": "weight"}


def _class_dim(logits: torch.Tensor, class_dim: Any) -> int:
    """The vocabulary's dimension of ``logits`` (``>= 0``): the last for up to 2-D, else
    ``class_dim``, which must then be given."""
    nd, shape = logits.ndim, tuple(logits.shape)
    if nd == 0:
        raise ValueError(
            "logits_shard: expected a tensor of shape (V_r,), (N, V_r) or one of more "
            "dimensions with class_dim, got 0-d"
        )
    if class_dim is None:
        if nd >= 3:
            raise ValueError(
                f"class_dim: expected 1 (PyTorch's layout (N, V_r, d1, ...)) or -1 (Megatron's "
                f"[s, b, V_r], vocabulary last) for logits_shard of shape {shape}, got None; "
                "the vocabulary's dimension cannot be told from the shape"
            )
        return nd - 1
    if isinstance(class_dim, bool) or not isinstance(class_dim, int):
        raise TypeError(f"class_dim: expected an int or None, got {class_dim!r}")
    if not -nd <= class_dim < nd:
        raise ValueError(
            f"class_dim: expected a dimension of logits_shard of shape {shape} (from {-nd} to "
            f"{nd - 1}), got {class_dim}"
        )
    return class_dim % nd


def _prepare(a: dict[str, Any]) -> _agree.Local:
    """This rank's arguments checked and flattened: ``(M, V_r)`` logits, with the entries the
    ranks must agree on."""
    opts = options_from(a["options"], "vocab_parallel")
    logits = check_float_tensor(a["logits_shard"], "logits_shard")
    cdim = _class_dim(logits, a["class_dim"])
    shape = tuple(logits.shape)
    batch = shape[:cdim] + shape[cdim + 1 :]
    x = logits.movedim(cdim, -1).reshape(-1, shape[cdim])  # a view for the vocabulary last
    t = flatten_target(a["target"], x.device, batch, shape, cdim)
    entries = _agree.entries_if(a["check_ranks"], x, batch, cdim, None, t, a["weight"], opts)
    return _agree.Local(x, t, batch, opts, shape[cdim], entries)


def global_num_items(
    *targets: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    group: Any = None,
) -> float:
    r"""The ``'mean'`` denominator of a global batch, to pass as ``num_items=``.

    The sum over ``targets`` (e.g. the micro-batches of one optimizer step) of
    ``Σ_{n∈V} w_{y_n}``, the count of non-ignored class indices (weighted by ``weight``, the
    class weights, when given; ``N`` for ``(N, C)`` probabilities), then over the ranks of
    ``group`` (one all-reduce of one float). Pass the *data-parallel* group, whose ranks hold
    different data; ``group=None`` counts this rank's targets only (ranks that split the
    vocabulary hold the same targets: summing over them would count each one twice).
    """
    if not targets:
        raise ValueError("targets: expected at least one target tensor, got none")
    total = 0.0
    for i, t in enumerate(targets):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"targets[{i}]: expected a torch.Tensor, got {type(t).__name__}")
        if t.is_floating_point():
            if t.ndim > 2:
                raise ValueError(
                    f"targets[{i}]: expected class indices or (N, C) probabilities, got float "
                    f"shape {tuple(t.shape)}"
                )
            total += float(t.shape[0]) if t.ndim == 2 else 1.0
            continue
        total += _spec.count_items(t.reshape(-1), weight, ignore_index)[0]
    if group is None:
        return total
    out = torch.tensor([total], dtype=torch.float64, device=targets[0].device)
    dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
    return float(out.item())

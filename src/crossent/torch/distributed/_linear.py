r"""``vocab_parallel_linear_cross_entropy``: the fused head with its rows split over ranks."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from crossent.torch import _linear
from crossent.torch._autograd import check_no_func_transform
from crossent.torch._head import default_chunk_size, prepare_head
from crossent.torch._options import LossKwargs, LossOptions, Scales, options_from, takes_options
from crossent.torch.distributed import _agree
from crossent.torch.distributed._shard import VocabShard, check_shard_inputs, shard_loss_grad

if TYPE_CHECKING:
    from typing_extensions import Unpack


def _chunk_loss(
    lg: torch.Tensor,
    target: torch.Tensor,
    class_weight: torch.Tensor | None,
    opts: LossOptions,
    scales: Scales,
    want_grad: bool,
    *,
    shard: VocabShard,
) -> tuple[torch.Tensor, torch.Tensor, None]:
    """A chunk's per-row losses and lses over all ranks; their gradient (times ``scales``)
    overwrites the local logits."""
    loss, lse = shard_loss_grad(lg, target, class_weight, opts, want_grad, shard=shard,
                                scale=scales.ce, z_scale=scales.z)  # fmt: skip
    return loss, lse, None


def _sum_over_ranks(gx: torch.Tensor, *, group: Any) -> None:
    dist.all_reduce(gx, op=dist.ReduceOp.SUM, group=group)


@takes_options("vocab_parallel_linear")
def vocab_parallel_linear_cross_entropy(
    input: torch.Tensor,
    weight_shard: torch.Tensor,
    target: torch.Tensor,
    bias_shard: torch.Tensor | None = None,
    *,
    group: Any = None,
    class_weight: torch.Tensor | None = None,
    chunk_size: int | None = None,
    check_ranks: bool = True,
    **options: Unpack[LossKwargs],
) -> torch.Tensor:
    r"""Cross-entropy of ``input @ weight.T + bias`` with the rows of ``weight`` split over ranks.

    Rank ``r`` holds ``weight_shard``, its contiguous rows ``(V_r, D)`` of the head's weight
    (in rank order; sizes may differ) and the matching ``bias_shard``; ``input`` is the same
    on every rank. The loss (the same on every rank) and the gradients equal those of
    :func:`crossent.torch.linear_cross_entropy` with the whole weight: the gradient of
    ``input`` is the sum over ranks (one all-reduce of ``N × D``, done by this function), the
    gradients of ``weight_shard`` and ``bias_shard`` are this rank's rows. Rows of ``input``
    are processed a chunk at a time, as in the single-process head, each chunk's logits
    combined across ranks by :func:`vocab_parallel_cross_entropy`'s two all-reduces of a few
    floats per row: the ``(N, V)`` logits never exist, and a rank holds at most a
    ``(chunk, V_r)`` slice of them.

    Parameters
    ----------
    input : Tensor, shape (..., D)
        Hidden states, the same on every rank.
    weight_shard : Tensor, shape (V_r, D)
        This rank's rows of the head's weight, ``input``'s dtype.
    target : Tensor
        Global class indices of shape ``(...)`` (the same on every rank) or this rank's
        columns ``(..., V_r)`` of probability targets.
    bias_shard : Tensor, shape (V_r,), optional
        This rank's part of the head's bias.
    group : ProcessGroup, optional
        The ranks that share the vocabulary (default: the default group).
    class_weight : Tensor, shape (V,), optional
        Class weights of the whole vocabulary.
    ignore_index, reduction, label_smoothing, z_loss, softcap, temperature, num_items
        As :func:`vocab_parallel_cross_entropy`.
    chunk_size : int, optional
        Rows per chunk, the same on every rank. Default: as many as fit a 64 MiB float32
        buffer of the largest rank's columns.
    check_ranks : bool, default True
        As :func:`vocab_parallel_cross_entropy`; also the hidden width ``D`` and ``chunk_size``
        must agree (ranks with different chunks would wait on each other forever).

    Returns
    -------
    Tensor
        A scalar, or the shape ``(...)`` for ``'none'``; the same on every rank.

    Raises
    ------
    TypeError, ValueError
        As :func:`crossent.torch.linear_cross_entropy` and
        :func:`vocab_parallel_cross_entropy`, on every rank.
    """
    check_no_func_transform("distributed.vocab_parallel_linear_cross_entropy")
    args = dict(locals())
    local, err = _agree.run_locally(lambda: _prepare(args))
    shard, local = _agree.find_shard(local, err, input, group, _NAMES)
    x, t, batch, opts = local.x, local.target, local.batch, local.opts
    cw = check_shard_inputs(t, class_weight, shard, opts, batch, "class_weight")
    chunk = local.chunk
    if chunk_size is None:  # the same chunks on every rank: each chunk has its all-reduces
        chunk = default_chunk_size(x.shape[0], shard.max_size, x.device)
    head = _linear.Head(
        chunk_loss=partial(_chunk_loss, shard=shard),
        reduce_input_grad=partial(_sum_over_ranks, group=group),
    )
    loss = _linear.apply_head(x, weight_shard, t, bias_shard, cw, opts, chunk, head)
    return loss.reshape(batch) if opts.reduction == "none" else loss


_NAMES = {
    "x": "input",
    "layout": "input",
    "layout_what": "hidden width D",
    "weight": "class_weight",
}


def _prepare(a: dict[str, Any]) -> _agree.Local:
    """This rank's arguments checked, with the entries the ranks must agree on."""
    opts = options_from(a["options"], "vocab_parallel_linear")
    x, t, _, chunk, batch = prepare_head(
        a["input"], a["weight_shard"], a["target"], a["bias_shard"], None, a["chunk_size"],
        names=("weight_shard", "bias_shard"),
    )  # fmt: skip
    entries = _agree.entries_if(a["check_ranks"], x, batch, x.shape[1], a["chunk_size"], t,
                                a["class_weight"], opts)  # fmt: skip
    return _agree.Local(x, t, batch, opts, a["weight_shard"].shape[0], entries, chunk)

"""crossent on ``torch.distributed``: a vocabulary split over ranks, a batch over many.

* :func:`vocab_parallel_cross_entropy`: the loss of logits whose classes are split over the
  ranks of a process group (tensor parallelism), with only a few floats per row crossing ranks.
* :func:`vocab_parallel_linear_cross_entropy`: the fused head ``input @ weight.T + bias`` with
  the rows of ``weight`` split over the ranks; the logits are never held beyond a chunk.
* :func:`global_num_items`: the ``'mean'`` denominator of a global batch (data-parallel ranks,
  accumulation steps), for the ``num_items=`` argument of every entry point.

:func:`crossent.torch.cross_entropy` on a DTensor sharded on the class dimension runs
:func:`vocab_parallel_cross_entropy` (what ``loss_parallel`` does for ``F.cross_entropy``).
The collectives are ``torch.distributed``'s (``all_reduce``, ``all_gather``): gloo and NCCL.
"""

from __future__ import annotations

from crossent.torch.distributed._functional import global_num_items, vocab_parallel_cross_entropy
from crossent.torch.distributed._linear import vocab_parallel_linear_cross_entropy

__all__ = [
    "global_num_items",
    "vocab_parallel_cross_entropy",
    "vocab_parallel_linear_cross_entropy",
]

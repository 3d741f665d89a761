"""crossent on ``torch.distributed``: a vocabulary split over ranks, a batch over many.

* :func:`vocab_parallel_cross_entropy`: the loss of logits whose classes are split over the
  ranks of a process group (tensor parallelism), with only a few floats per row crossing ranks.
* :func:`vocab_parallel_linear_cross_entropy`: the fused head ``input @ weight.T + bias`` with
  the rows of ``weight`` split over the ranks; the logits are never held beyond a chunk.
* :func:`global_num_items`: the ``'mean'`` denominator of a global batch (data-parallel ranks,
  accumulation steps), for the ``num_items=`` argument of every entry point.

:func:`crossent.torch.cross_entropy` on a DTensor sharded on the class dimension runs
:func:`vocab_parallel_cross_entropy` (what ``loss_parallel`` does for ``F.cross_entropy``):
this package registers that path with the single-process layer when it is imported (which
``import crossent.torch`` does), and loads DTensor's own module only when a DTensor comes.
The collectives are ``torch.distributed``'s (``all_reduce``, ``all_gather``): gloo and NCCL.
"""

from __future__ import annotations

import sys
from typing import Any

from crossent.torch._functional import register_input_handler
from crossent.torch._options import LossOptions
from crossent.torch.distributed._functional import global_num_items, vocab_parallel_cross_entropy
from crossent.torch.distributed._linear import vocab_parallel_linear_cross_entropy

__all__ = [
    "global_num_items",
    "vocab_parallel_cross_entropy",
    "vocab_parallel_linear_cross_entropy",
]


def _is_dtensor(t: Any) -> bool:
    """A DTensor? (none can exist before PyTorch's DTensor module is loaded: not loaded here)"""
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(t, module.DTensor)


def _dtensor_cross_entropy(input: Any, target: Any, weight: Any, opts: LossOptions) -> Any:
    from crossent.torch.distributed._dtensor import dtensor_cross_entropy  # loads DTensor's

    return dtensor_cross_entropy(input, target, weight, opts)


register_input_handler(_is_dtensor, _dtensor_cross_entropy)

"""crossent for PyTorch: a drop-in ``cross_entropy`` and a fused linear + cross-entropy.

* :func:`cross_entropy` / :class:`CrossEntropyLoss`: ``F.cross_entropy``'s signature and
  semantics, finite wherever the mathematics is, plus z-loss, soft-capping and temperature;
  the gradient is computed in the forward pass (optionally over the logits' own buffer).
* :func:`linear_cross_entropy` / :class:`LinearCrossEntropyLoss`: the loss of
  ``input @ weight.T + bias`` without ever holding the ``(N, V)`` logits.

CPU tensors run on crossent's NumPy engine, whose gradient buffers are recycled from step to
step (:func:`empty_cache` gives them back); CUDA tensors run on Triton kernels. Importing
:mod:`crossent` does not import torch; this module does.
"""

from __future__ import annotations

import torch.distributed

from crossent.torch._buffers import empty_cache
from crossent.torch._functional import cross_entropy
from crossent.torch._linear import linear_cross_entropy
from crossent.torch._modules import CrossEntropyLoss, LinearCrossEntropyLoss

if torch.distributed.is_available():  # registers cross_entropy's path for DTensor logits
    import crossent.torch.distributed  # noqa: F401

__all__ = [
    "CrossEntropyLoss",
    "LinearCrossEntropyLoss",
    "cross_entropy",
    "empty_cache",
    "linear_cross_entropy",
]

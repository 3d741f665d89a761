"""crossent for JAX: the same loss, options and exact gradients under ``jit``, ``grad``, ``vmap``.

``pip install "crossent[jax]"``. :func:`cross_entropy` is :func:`crossent.cross_entropy` for
``jax.numpy`` arrays; :func:`linear_cross_entropy` the fused head that never holds the
``(N, V)`` logits; :func:`vocab_parallel_cross_entropy` and
:func:`vocab_parallel_linear_cross_entropy` the same inside ``jax.shard_map`` with the
vocabulary split over a mesh axis. The mathematics is :mod:`crossent._algebra`'s, shared with
the NumPy and PyTorch backends; this package computes the per-row statistics in
``jax.numpy`` and wires them to JAX's autodiff.
"""

from crossent.jax._functional import cross_entropy
from crossent.jax._linear import linear_cross_entropy
from crossent.jax._shard import vocab_parallel_cross_entropy, vocab_parallel_linear_cross_entropy

__all__ = [
    "cross_entropy",
    "linear_cross_entropy",
    "vocab_parallel_cross_entropy",
    "vocab_parallel_linear_cross_entropy",
]

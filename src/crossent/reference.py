r"""The loss as the blog post writes it: a naive, readable reference for crossent's fast paths.

:func:`cross_entropy` takes exactly :func:`crossent.cross_entropy`'s arguments and computes
the same loss in float64, the obvious way — log-softmax of the transformed logits, then the
weighted, smoothed, masked sum — with no blocks, no threads, no shift chosen per row and no
shortcut. It holds several arrays the size of the logits, so it is slow and memory-hungry;
it is meant to be read, and to be the one oracle every test of crossent compares with (it is
itself checked against PyTorch's ``F.cross_entropy``). It takes NumPy arrays (and anything
``numpy.asarray`` takes) or torch tensors, whose autograd then differentiates it; it checks
nothing: give it what :func:`crossent.cross_entropy` accepts.

>>> from crossent import reference
>>> round(float(reference.cross_entropy([10.0, 9.0, 8.0], 0)), 4)  # the classic example
0.4076
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["cross_entropy"]


def cross_entropy(logits: Any, target: Any, *, axis: int = -1, weight: Any = None,
                  ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0,
                  z_loss: float = 0.0, softcap: float | None = None, temperature: float = 1.0,
                  num_items: float | None = None) -> Any:  # fmt: skip
    """:func:`crossent.cross_entropy`, naively, in float64 (a NumPy array or a torch tensor:
    0-d for ``'mean'`` and ``'sum'``, the batch shape for ``'none'``)."""
    xp, f64 = _namespace(logits)
    x = xp.moveaxis(f64(logits), axis, -1)  # (..., C): classes last
    c = x.shape[-1]
    t: Any = target if xp is not np else np.asarray(target)
    probabilities = t.is_floating_point() if xp is not np else t.dtype.kind == "f"

    # the transform: temperature, then soft-capping; a masked class (-inf) stays masked
    z = x / temperature
    if softcap is not None:
        z = xp.where(z == -math.inf, -math.inf, softcap * xp.tanh(z / softcap))
    finite = z != -math.inf

    # the target distribution q, with the positions that count (valid)
    if probabilities:
        q = f64(xp.moveaxis(t, axis, -1))
        valid = xp.ones(q.shape[:-1], dtype=xp.bool)
    else:
        valid = t != ignore_index
        q = f64((t[..., None] == xp.arange(c)) & valid[..., None])  # one-hot, 0 when ignored
    onehot = q

    # label smoothing spreads ε over the k finite classes of each row
    k = xp.sum(finite, axis=-1, keepdims=True)
    q = (1.0 - label_smoothing) * q + label_smoothing * f64(finite) / xp.where(k > 0, k, 1)
    w = f64(weight) if weight is not None else xp.ones(c, dtype=x.dtype)

    # log-softmax; an ignored row (perhaps all -inf) gets zeros, which are never used
    z = xp.where(valid[..., None], z, 0.0)
    lse = _logsumexp(xp, z)
    log_p = xp.where(finite, z - lse[..., None], 0.0)

    # the cross-entropy of each position: -Σ_c w_c q_c log p_c (+inf if q puts mass on -inf)
    ce = -xp.sum(w * q * log_p, axis=-1)
    ce = xp.where(xp.sum(w * q * f64(~finite), axis=-1) > 0, math.inf, ce)
    ce = xp.where(valid, ce, 0.0)
    z_term = xp.where(valid, z_loss * lse**2, 0.0)  # PaLM's z-loss
    if reduction == "none":
        return ce + z_term
    if reduction == "sum":
        return xp.sum(ce + z_term)

    # 'mean': Σ ce / D with D the target weight (positions for probabilities), plus the mean
    # z-term over the positions that count; num_items replaces both denominators
    d = xp.sum(onehot * w) if not probabilities else xp.sum(f64(valid))
    n = xp.sum(f64(valid))
    if num_items is not None:
        d = n = num_items
    return _divide(xp.sum(ce), d) + _divide(xp.sum(z_term), n)


def _logsumexp(xp: Any, z: Any) -> Any:
    """``log Σ_c exp(z_c)`` over the last axis, shifted by the row maximum."""
    m = xp.amax(z, axis=-1, keepdims=True)
    return xp.log(xp.sum(xp.exp(z - m), axis=-1)) + m[..., 0]


def _divide(total: Any, denominator: Any) -> Any:
    """``total / denominator``, and 0 over a denominator of 0 (every target ignored)."""
    return total / denominator if float(denominator) > 0 else total * 0.0


def _namespace(logits: Any) -> tuple[Any, Any]:
    """(NumPy or torch, a function giving float64 arrays of that library)."""
    if type(logits).__module__.startswith("torch"):
        import torch

        return torch, lambda a: a.to(torch.float64)
    return np, lambda a: np.asarray(a, dtype=np.float64)

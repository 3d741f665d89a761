"""The CPU path: crossent's NumPy engine on zero-copy views of torch tensors.

float32/float64/float16 logits are handed to :func:`crossent.cross_entropy_with_grad` as they
are (``tensor.numpy()`` shares memory), with the gradient written straight into a torch tensor
or over the logits (in-place mode). NumPy has no bfloat16, so bfloat16 logits go through a
float32 buffer of a few megabytes, a block of rows at a time: the gradient, ``p - 1`` on the
true class included, is computed in float32 and rounded to bfloat16 once.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

import crossent
from crossent.torch._options import LossOptions

# bfloat16 logits go through float32 blocks of at most this many elements (4 MiB): small
# enough for the engine to run them on the calling thread, large enough to amortize a call
BF16_BLOCK_ELEMENTS = (1 << 20) - 1


def _np(t: torch.Tensor) -> np.ndarray[Any, Any]:
    """A NumPy view of a CPU tensor (bfloat16 becomes a float32 copy)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.contiguous().numpy()


def _np_target(t: torch.Tensor) -> np.ndarray[Any, Any]:
    """Targets for the engine. bfloat16 probabilities go as float16, which holds every
    bfloat16 value in [6e-5, 1] exactly (smaller ones to 3e-8), so that the engine checks their
    sums with a tolerance fit for 8-bit mantissas rather than float32's."""
    if t.dtype == torch.bfloat16:
        return t.detach().to(torch.float16).contiguous().numpy()
    return _np(t)


def _core_kwargs(weight: torch.Tensor | None, opts: LossOptions, reduction: str) -> dict[str, Any]:
    return {
        "weight": None if weight is None else _np(weight),
        "ignore_index": opts.ignore_index,
        "reduction": reduction,
        "label_smoothing": opts.label_smoothing,
        "z_loss": opts.z_loss,
        "softcap": opts.softcap,
        "temperature": opts.temperature,
    }


# Gradient buffers are recycled: a fresh (N, V) allocation is paid for in page faults (2-3 GB/s
# here, as slow as the loss itself). The pool keeps uint8 blocks, hands out views of them, and
# reuses a block once no tensor refers to its storage any more (like CUDA's caching allocator),
# holding at most POOL_MAX_BYTES.
POOL_MAX_BYTES = 8 << 30
_blocks: list[tuple[torch.Tensor, int]] = []  # (block, storage use count when unused)
_pool_lock = threading.Lock()


def _use_count(block: torch.Tensor) -> int:
    return int(torch._C._storage_Use_Count(block.untyped_storage()._cdata))


def grad_buffer(shape: torch.Size | tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialized contiguous CPU tensor, on memory already faulted in when possible."""
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if nbytes < (1 << 20) or not hasattr(torch._C, "_storage_Use_Count"):
        return torch.empty(shape, dtype=dtype)
    with _pool_lock:
        for block, idle in _blocks:
            if block.numel() == nbytes and _use_count(block) == idle:
                return block.view(dtype).view(shape)
        block = torch.empty(nbytes, dtype=torch.uint8)
        if sum(b.numel() for b, _ in _blocks) + nbytes <= POOL_MAX_BYTES:
            _blocks.append((block, _use_count(block)))
        return block.view(dtype).view(shape)


def empty_cache() -> None:
    """Give the CPU gradient buffers kept for reuse back to the operating system.

    crossent keeps the memory of a freed ``(N, C)`` gradient (up to 8 GiB) to serve the next
    one of the same size without page faults, as CUDA's caching allocator does.
    """
    with _pool_lock:
        _blocks.clear()


def mean_denominator(
    target: torch.Tensor, weight: torch.Tensor | None, n_classes: int, ignore_index: int
) -> float:
    """``D`` of ``'mean'``: ``Σ_{n∈V} w_{y_n}`` for index targets, ``N`` for probabilities."""
    if target.is_floating_point():
        return float(target.shape[0])
    valid = target != ignore_index
    if weight is None:
        return float(valid.sum())
    safe = torch.where(valid, target, 0).clamp(0, n_classes - 1)
    return float((weight.double()[safe] * valid).sum())


def ce_forward(
    x: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    opts: LossOptions,
    want_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Loss (reduced as asked, in ``x``'s dtype) and, if wanted, the gradient of the loss.

    ``x`` is ``(M, C)``; ``target`` ``(M,)`` int64 or ``(M, C)`` float. The gradient is that of
    the reduced loss (``'none'``: of each row's own loss) and is written over ``x`` when
    ``opts.inplace``.
    """
    if x.dtype == torch.bfloat16:
        return _ce_forward_blocked(x, target, weight, opts, want_grad)
    t = _np_target(target)
    kwargs = _core_kwargs(weight, opts, opts.reduction)
    xd = x.detach()
    if not want_grad:
        loss = crossent.cross_entropy(_np(xd), t, **kwargs)
        return torch.as_tensor(np.asarray(loss)).to(x.dtype), None
    grad = xd if opts.inplace and xd.is_contiguous() else grad_buffer(xd.shape, xd.dtype)
    loss, _ = crossent.cross_entropy_with_grad(_np(xd), t, out=grad.numpy(), **kwargs)
    return torch.as_tensor(np.asarray(loss)).to(x.dtype), grad


def _ce_forward_blocked(
    x: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    opts: LossOptions,
    want_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """bfloat16: each thread takes a range of rows, a few rows at a time, through float32.

    A block (under a million elements: the engine then stays on the calling thread) is
    widened to float32, turned into per-row losses and gradients by the engine, scaled and
    rounded to bfloat16 while it is still in cache.
    """
    m, c = x.shape
    xd = x.detach()
    t = _np_target(target)
    kwargs = _core_kwargs(weight, opts, "none")
    scale = 1.0
    if opts.reduction == "mean":
        denom = mean_denominator(target, weight, c, opts.ignore_index)
        scale = 1.0 / denom if denom > 0 else 0.0
    grad = None
    if want_grad:
        grad = xd if opts.inplace and xd.is_contiguous() else grad_buffer(xd.shape, xd.dtype)
    xd = xd.contiguous()
    losses = np.empty(m, dtype=np.float64)
    rows = max(1, min(m, BF16_BLOCK_ELEMENTS // max(c, 1)))

    def work(lo: int, hi: int) -> None:
        buf = torch.empty((min(rows, hi - lo), c), dtype=torch.float32)
        for r0 in range(lo, hi, rows):
            r1 = min(r0 + rows, hi)
            b = buf[: r1 - r0]
            b.copy_(xd[r0:r1])
            bn = b.numpy()
            if grad is None:
                losses[r0:r1] = crossent.cross_entropy(bn, t[r0:r1], **kwargs)
                continue
            losses[r0:r1], _ = crossent.cross_entropy_with_grad(bn, t[r0:r1], out=bn, **kwargs)
            torch.mul(b, scale, out=grad[r0:r1])  # the one rounding to bfloat16

    workers = max(1, min(_n_threads(), m // rows))
    bounds = np.linspace(0, m, workers + 1).astype(int)
    if workers == 1:
        work(0, m)
    else:
        futures = [
            _pool(workers).submit(work, int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds)
        ]
        for f in futures:
            f.result()
    if opts.reduction == "none":
        loss = torch.from_numpy(losses)
    else:
        loss = torch.tensor(float(losses.sum()) * scale)
    return loss.to(x.dtype), grad


_POOL: ThreadPoolExecutor | None = None


def _n_threads() -> int:
    env = os.environ.get("CROSSENT_NUM_THREADS")
    if env:
        return max(1, int(env))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def _pool(workers: int) -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None or _POOL._max_workers < workers:
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crossent-torch")
    return _POOL


def transformed_lse(x: torch.Tensor, opts: LossOptions) -> torch.Tensor:
    """``logsumexp`` of the transformed logits, float32 (float64 for float64 input), (M,)."""
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    m, c = x.shape
    out = torch.empty(m, dtype=dtype, device=x.device)
    rows = max(1, min(m, BF16_BLOCK_ELEMENTS // max(c, 1)))
    for r0 in range(0, m, rows):
        z = transform(x.detach()[r0 : r0 + rows].to(dtype), opts)
        torch.logsumexp(z, dim=-1, out=out[r0 : r0 + rows])
    return out


def transform(z: torch.Tensor, opts: LossOptions) -> torch.Tensor:
    """Temperature, then soft-capping (``-inf`` stays ``-inf``); a new tensor."""
    if opts.temperature != 1.0:
        z = z / opts.temperature
    if opts.softcap is not None:
        z = torch.where(torch.isneginf(z), z, torch.tanh(z / opts.softcap) * opts.softcap)
    return z

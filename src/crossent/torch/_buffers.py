"""Recycled CPU gradient buffers, for every CPU path (the engine, the fused head, the
vocabulary-parallel functions, a scaled gradient in backward)."""

from __future__ import annotations

import math
import threading

import torch

__all__ = ["POOL_MAX_BYTES", "empty_cache", "grad_buffer"]

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

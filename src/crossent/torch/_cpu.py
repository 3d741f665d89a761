"""The CPU path: crossent's NumPy engine on zero-copy views of torch tensors.

float32/float64/float16 logits are handed to the NumPy core (:func:`crossent._core.run`, with
the options already validated) as they are (``tensor.numpy()`` shares memory), with the
gradient written straight into a torch tensor or over the logits (in-place mode). NumPy has no
bfloat16, so bfloat16 logits go through a float32 buffer of a few megabytes, a block of rows
at a time: the gradient, ``p - 1`` on the true class included, is computed in float32 and
rounded to bfloat16 once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from crossent import _core, _engine
from crossent.torch._buffers import grad_buffer
from crossent.torch._options import Layout, LossOptions, Scales

# bfloat16 logits go through float32 blocks of at most this many elements (4 MiB): small
# enough for the engine to run them on the calling thread, large enough to amortize a call
BF16_BLOCK_ELEMENTS = (1 << 20) - 1


def _np(t: torch.Tensor) -> np.ndarray[Any, Any]:
    """A NumPy view of a CPU tensor (bfloat16 becomes a float32 copy)."""
    t = t.detach()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.contiguous().numpy()


def np_target(t: torch.Tensor) -> np.ndarray[Any, Any]:
    """Targets for the engine. bfloat16 probabilities go as float16, which holds every
    bfloat16 value in [6e-5, 1] exactly (smaller ones to 3e-8), so that the engine checks their
    sums with a tolerance fit for 8-bit mantissas rather than float32's."""
    if t.dtype == torch.bfloat16:
        return t.detach().to(torch.float16).contiguous().numpy()
    return _np(t)


def ce_rows(
    x: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    opts: LossOptions,
    scales: Scales,
    want_grad: bool,
    layout: Layout | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-row losses (float64, (M,)), per-row log-sum-exps (float64) and, if wanted, the
    gradient of ``Σ_n`` (each row's loss times ``scales``), written over ``x`` when
    ``opts.inplace``.

    ``x`` is ``(M, C)``; ``target`` ``(M,)`` integers or ``(M, C)`` floats; the options are
    already validated (the core does not check them again), the arrays are checked by the
    core, positions reported in ``layout``.
    """
    row_opts = dataclasses.replace(opts, reduction="none")
    w = None if weight is None else _np(weight)
    t = np_target(target)
    xd = x.detach()
    grad = None
    if want_grad:
        grad = xd if opts.inplace and xd.is_contiguous() else grad_buffer(xd.shape, xd.dtype)
    if x.dtype == torch.bfloat16:
        rows, lse = _rows_blocked(xd, t, w, row_opts, scales, grad, layout)
    else:
        rows, lse, _ = _core.run(_np(xd), t, row_opts, weight=w, want_grad=want_grad,
                                 out=None if grad is None else grad.numpy(), layout=layout,
                                 scales=scales)  # fmt: skip
    return torch.from_numpy(np.asarray(rows)), torch.from_numpy(lse), grad


def _rows_blocked(
    xd: torch.Tensor,
    t: np.ndarray[Any, Any],
    w: np.ndarray[Any, Any] | None,
    opts: LossOptions,
    scales: Scales,
    grad: torch.Tensor | None,
    layout: Layout | None,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """bfloat16: each thread takes a range of rows, a few rows at a time, through float32.

    A block (under a million elements: the engine then stays on the calling thread) is
    widened to float32, turned into per-row losses and gradients by the engine and rounded
    to bfloat16 once, while it is still in cache. The target is checked whole first, so that
    errors report positions in the user's layout.
    """
    m, c = xd.shape
    xd = xd.contiguous()
    losses = np.empty(m, dtype=np.float64)
    lses = np.empty(m, dtype=np.float64)
    rows = max(1, min(m, BF16_BLOCK_ELEMENTS // max(c, 1)))
    if m > rows:  # the blocks below would report positions within a block
        _core.check_target(t, c, opts, layout)

    def work(lo: int, hi: int) -> None:
        buf = torch.empty((min(rows, hi - lo), c), dtype=torch.float32)
        for r0 in range(lo, hi, rows):
            r1 = min(r0 + rows, hi)
            b = buf[: r1 - r0]
            b.copy_(xd[r0:r1])
            bn = b.numpy()
            losses[r0:r1], lses[r0:r1], _ = _core.run(
                bn, t[r0:r1], opts, weight=w, want_grad=grad is not None, out=bn,
                layout=layout, scales=scales,
            )  # fmt: skip
            if grad is not None:
                grad[r0:r1].copy_(b)  # the one rounding to bfloat16

    _engine.parallel(work, m, max(1, min(_engine.n_threads(), m // rows)))
    return losses, lses

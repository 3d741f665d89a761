"""``torch.autograd.Function`` classes: the gradient is computed in the forward pass.

Forward runs the loss and its gradient together (one pass over the logits, one ``exp`` per
element) and keeps the gradient; backward only scales it by the incoming gradient (a scalar for
``'mean'``/``'sum'``, one factor per row for ``'none'``). Options travel packed in one
:class:`~crossent.torch._options.LossOptions`.
"""

from __future__ import annotations

from typing import Any

import torch

from crossent.torch import _cpu
from crossent.torch._options import Layout, LossOptions, Scales, reduce_rows, scales_for, use_triton


def rows_forward(x: torch.Tensor, *args: Any) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """The backend's ``ce_rows(x, target, weight, opts, scales, want_grad[, layout])``: per-row
    losses, log-sum-exps and the gradient of the rows' losses times ``scales``."""
    if use_triton(x, args[2]):
        from crossent.torch import _triton_ce

        return _triton_ce.ce_rows(x, *args)
    return _cpu.ce_rows(x, *args)


def loss_forward(
    x: torch.Tensor,
    t: torch.Tensor,
    w: torch.Tensor | None,
    opts: LossOptions,
    want_grad: bool,
    layout: Layout | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, Scales]:
    """``(loss in x's dtype, lse (M,), gradient of the loss or None, scales)`` of ``(M, C)``
    logits: the spec's denominator, the backend, the spec's reduction."""
    scales = scales_for(t, w, opts)
    rows, lse, grad = rows_forward(x, t, w, opts, scales, want_grad, layout)
    loss = rows if opts.reduction == "none" else reduce_rows(rows, lse, t, opts, scales)
    lse = lse.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    return loss.to(x.dtype), lse, grad, scales


def _scale_grad(grad: torch.Tensor, grad_out: torch.Tensor, opts: LossOptions) -> torch.Tensor:
    """The saved gradient times ``grad_out`` (a scalar, or one factor per row for ``'none'``).

    An incoming gradient of exactly 1 (``loss.backward()``) hands over the saved buffer itself.
    Otherwise the default makes a new tensor; ``inplace=True`` scales the buffer in place (a
    second backward then fails with autograd's "modified by an inplace operation" error).
    """
    if bool((grad_out == 1.0).all()):  # loss.backward(), or loss.sum() of 'none'
        return grad
    if opts.reduction == "none":
        factor = grad_out.reshape(-1, 1).to(grad.dtype)
    else:
        factor = grad_out.to(grad.dtype)
    if opts.inplace:
        return grad.mul_(factor)
    if grad.device.type == "cpu":
        return torch.mul(grad, factor, out=_cpu.grad_buffer(grad.shape, grad.dtype))
    return grad * factor


def _bump_version(x: torch.Tensor) -> None:
    """The logits were overwritten: any other op that saved them now fails loudly in backward."""
    torch.autograd.graph.increment_version(x)


class CrossEntropyFunction(torch.autograd.Function):
    """Cross-entropy on ``(M, C)`` logits; apply as ``(logits, target, weight, options,
    layout)`` (``layout``: where errors report positions, see :mod:`crossent.torch._options`)."""

    @staticmethod
    def forward(
        ctx: Any,
        logits: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        opts: LossOptions,
        layout: Layout | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        want_grad = bool(ctx.needs_input_grad[0])
        loss, lse, grad, scales = loss_forward(logits, target, weight, opts, want_grad, layout)
        if grad is not None and grad.data_ptr() == logits.data_ptr():
            _bump_version(logits)
        ctx.opts, ctx.scale = opts, scales.ce
        # saved (not kept on ctx) so that autograd frees it after a backward without
        # retain_graph, and a leaf's AccumulateGrad can take the buffer without a copy
        saved: list[torch.Tensor | None] = [grad if grad is not None else lse]
        if ctx.needs_input_grad[1]:
            saved += [logits, weight]
        ctx.save_for_backward(*saved)
        ctx.mark_non_differentiable(lse)
        return loss, lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, grad_loss: torch.Tensor, _grad_lse: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None, None]:
        opts: LossOptions = ctx.opts
        grad_x = grad_t = None
        saved = ctx.saved_tensors
        if ctx.needs_input_grad[1]:
            grad_t = target_grad(saved[1], saved[2], grad_loss, opts, ctx.scale)
        if ctx.needs_input_grad[0]:
            grad_x = _scale_grad(saved[0], grad_loss, opts)
        return grad_x, grad_t, None, None, None


def target_grad(
    logits: torch.Tensor,
    weight: torch.Tensor | None,
    grad_loss: torch.Tensor,
    opts: LossOptions,
    scale: float | torch.Tensor,
) -> torch.Tensor:
    """``∂L/∂q_{n,c} = -(1-ε)·w_c·log p_{n,c} / D`` for probability targets (distillation);
    ``scale`` is ``1/D`` (:attr:`crossent._spec.Scales.ce`)."""
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    logp = torch.log_softmax(_cpu.transform(logits.detach().to(dtype), opts), dim=-1)
    g = logp.mul_(-(1.0 - opts.label_smoothing))
    if weight is not None:
        g.mul_(weight.to(dtype))
    if opts.reduction == "none":
        g.mul_(grad_loss.reshape(-1, 1).to(dtype))
    else:
        if isinstance(scale, torch.Tensor):
            scale = scale.to(dtype)
        g.mul_(grad_loss.to(dtype) * scale)
    return g.to(logits.dtype)

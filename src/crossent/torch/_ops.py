"""``crossent::cross_entropy``: the loss as a ``torch.library`` custom op, for ``torch.compile``.

Eager calls go through :class:`~crossent.torch._autograd.CrossEntropyFunction` (which also has
the in-place mode). Under ``torch.compile`` the functional API calls this op instead: opaque to
dynamo (its CPU implementation runs NumPy), described to the compiler by a fake implementation,
differentiable through :func:`torch.library.register_autograd`, so a compiled model keeps one
graph (``fullgraph=True`` works). The gradient is an output of the forward op, saved for
backward, which scales it (or, when autograd records the backward, ``create_graph=True``,
recomputes it in differentiable torch ops); ``inplace`` does not apply (a custom op's outputs
cannot alias its inputs).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from crossent.torch import _cpu
from crossent.torch._grad import logits_grad, target_grad
from crossent.torch._options import LossOptions, make_options, use_triton


def _options(
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
    temperature: float,
    backend: str,
) -> LossOptions:
    return make_options(
        ignore_index=ignore_index,
        reduction=reduction,
        label_smoothing=label_smoothing,
        z_loss=z_loss,
        softcap=softcap,
        temperature=temperature,
        backend=backend,
    )


@torch.library.custom_op("crossent::cross_entropy", mutates_args=())
def cross_entropy_op(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
    temperature: float,
    backend: str,
    want_grad: bool,
) -> tuple[Tensor, Tensor]:
    """``(loss, grad)`` of ``(M, C)`` logits; ``grad`` is empty unless ``want_grad``."""
    opts = _options(ignore_index, reduction, label_smoothing, z_loss, softcap, temperature, backend)
    if use_triton(logits, opts):
        from crossent.torch import _triton_ce

        loss, grad = _triton_ce.ce_forward(logits, target, weight, opts, want_grad)
    else:
        loss, grad = _cpu.ce_forward(logits, target, weight, opts, want_grad)
    return loss, grad if grad is not None else logits.new_empty(0)


@cross_entropy_op.register_fake
def _(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
    temperature: float,
    backend: str,
    want_grad: bool,
) -> tuple[Tensor, Tensor]:
    loss = logits.new_empty((logits.shape[0],) if reduction == "none" else ())
    grad = torch.empty_like(logits) if want_grad else logits.new_empty(0)
    return loss, grad


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor]) -> None:
    logits, target, weight = inputs[:3]
    ctx.opts = _options(*inputs[3:10])
    ctx.target_grad = isinstance(target, Tensor) and target.requires_grad
    ctx.save_for_backward(output[1], logits, target, weight)


def _backward(ctx: Any, grad_loss: Tensor, _grad_grad: Tensor) -> tuple[Any, ...]:
    grad, logits, target, weight = ctx.saved_tensors
    opts: LossOptions = ctx.opts
    grad_x = None
    if torch.is_grad_enabled():  # create_graph=True: a gradient autograd can differentiate
        grad_x = logits_grad(logits, target, weight, grad_loss, opts)
    elif grad.numel():
        factor = grad_loss.reshape(-1, 1) if opts.reduction == "none" else grad_loss
        grad_x = grad * factor.to(grad.dtype)
    grad_t = target_grad(logits, weight, grad_loss, opts) if ctx.target_grad else None
    return (grad_x, grad_t) + (None,) * 9


cross_entropy_op.register_autograd(_backward, setup_context=_setup_context)


def cross_entropy_compiled(
    x: Tensor, t: Tensor, w: Tensor | None, opts: LossOptions
) -> tuple[Tensor, Tensor]:
    """What :func:`crossent.torch.cross_entropy` runs under ``torch.compile``."""
    want_grad = torch.is_grad_enabled() and x.requires_grad
    loss, _ = cross_entropy_op(
        x,
        t,
        w,
        opts.ignore_index,
        opts.reduction,
        opts.label_smoothing,
        opts.z_loss,
        opts.softcap,
        opts.temperature,
        opts.backend,
        want_grad,
    )
    lse = x.new_empty(0)
    if opts.return_lse:
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        lse = torch.logsumexp(_cpu.transform(x.detach().to(dtype), opts), dim=-1)
    return loss, lse

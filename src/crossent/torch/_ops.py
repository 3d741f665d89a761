"""``crossent::cross_entropy``: the loss as a ``torch.library`` custom op, for ``torch.compile``.

Eager calls go through :class:`~crossent.torch._autograd.CrossEntropyFunction` (which also has
the in-place mode). Under ``torch.compile`` the functional API calls this op instead: opaque to
dynamo (its CPU implementation runs NumPy), described to the compiler by a fake implementation,
differentiable through :func:`torch.library.register_autograd`, so a compiled model keeps one
graph (``fullgraph=True`` works). The gradient is an output of the forward op, saved for
backward, which scales it; ``inplace`` does not apply (a custom op's outputs cannot alias its
inputs).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from crossent.torch._autograd import loss_forward
from crossent.torch._grad import logits_grad, target_grad
from crossent.torch._options import LossOptions


def _options(
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    z_loss: float,
    softcap: float | None,
    temperature: float,
    num_items: float | None,
    backend: str,
) -> LossOptions:
    """The options as the op's arguments carry them (validated by the functional API)."""
    return LossOptions(ignore_index, reduction, label_smoothing, z_loss, softcap, temperature,
                       num_items, backend=backend)  # fmt: skip


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
    num_items: float | None,
    backend: str,
    want_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(loss, grad, lse, 1/D)`` of ``(M, C)`` logits; ``grad`` is empty unless ``want_grad``."""
    opts = _options(ignore_index, reduction, label_smoothing, z_loss, softcap, temperature,
                    num_items, backend)  # fmt: skip
    loss, lse, grad, scales = loss_forward(logits, target, weight, opts, want_grad)
    grad = grad if grad is not None else logits.new_empty(0)
    return loss, grad, lse, torch.tensor(scales.ce, dtype=torch.float64, device=logits.device)


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
    num_items: float | None,
    backend: str,
    want_grad: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    loss = logits.new_empty((logits.shape[0],) if reduction == "none" else ())
    grad = torch.empty_like(logits) if want_grad else logits.new_empty(0)
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    lse = logits.new_empty((logits.shape[0],), dtype=dtype)
    return loss, grad, lse, logits.new_empty((), dtype=torch.float64)


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
    logits, target, weight = inputs[:3]
    ctx.opts = _options(*inputs[3:11])
    ctx.target_grad = isinstance(target, Tensor) and target.requires_grad
    ctx.save_for_backward(output[1], logits, target, weight, output[3])


def _backward(ctx: Any, grad_loss: Tensor, *_: Tensor) -> tuple[Any, ...]:
    grad, logits, target, weight, scale = ctx.saved_tensors
    opts: LossOptions = ctx.opts
    grad_x = None
    if torch.is_grad_enabled():  # create_graph=True (eager): a differentiable gradient
        grad_x = logits_grad(logits, target, weight, grad_loss, opts)
    elif grad.numel():
        factor = grad_loss.reshape(-1, 1) if opts.reduction == "none" else grad_loss
        grad_x = grad * factor.to(grad.dtype)
    grad_t = None
    if ctx.target_grad:
        grad_t = target_grad(logits, weight, grad_loss, opts, scale)
    return (grad_x, grad_t) + (None,) * 10


cross_entropy_op.register_autograd(_backward, setup_context=_setup_context)


def cross_entropy_compiled(
    x: Tensor, t: Tensor, w: Tensor | None, opts: LossOptions
) -> tuple[Tensor, Tensor]:
    """What :func:`crossent.torch.cross_entropy` runs under ``torch.compile``."""
    want_grad = torch.is_grad_enabled() and x.requires_grad
    loss, _, lse, _ = cross_entropy_op(
        x,
        t,
        w,
        opts.ignore_index,
        opts.reduction,
        opts.label_smoothing,
        opts.z_loss,
        opts.softcap,
        opts.temperature,
        opts.num_items,
        opts.backend,
        want_grad,
    )
    return loss, lse

"""``torch.autograd.Function`` classes: the gradient is computed in the forward pass.

Forward runs the loss and its gradient together (one pass over the logits, one ``exp`` per
element) and keeps the gradient; backward only scales it by the incoming gradient (a scalar for
``'mean'``/``'sum'``, one factor per row for ``'none'``). With ``create_graph=True`` backward
recomputes the gradient in differentiable torch ops instead (:mod:`crossent.torch._grad`), so
second derivatives are exact. Options travel packed in one
:class:`~crossent.torch._options.LossOptions`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Protocol

import torch

from crossent.torch import _cpu
from crossent.torch._buffers import grad_buffer
from crossent.torch._grad import logits_grad, target_grad
from crossent.torch._options import Layout, LossOptions, Scales, reduce_rows, scales_for, use_triton

FORWARD_AD_ERROR = (
    "crossent.torch.{}: forward-mode AD (torch.autograd.forward_ad, jvp) is not supported; "
    "use reverse mode (loss.backward(), torch.autograd.grad, create_graph=True for second "
    "derivatives) or torch.nn.functional.cross_entropy"
)
FUNC_TRANSFORM_ERROR = (
    "crossent.torch.{}: torch.func transforms (vmap, grad, jvp, jacrev, jacfwd, hessian) are "
    "not supported; use torch.autograd (loss.backward(), torch.autograd.grad, create_graph=True "
    "for second derivatives) over a batch, or torch.nn.functional.cross_entropy"
)
DOUBLE_BACKWARD_ERROR = (
    "crossent.torch.cross_entropy: second derivatives (create_graph=True) need the logits, "
    "which are gone: overwritten by inplace=True or modified in place, or no longer referred "
    "to by anything (crossent does not keep them, to save their memory); keep a reference "
    "(logits = model(x); loss = cross_entropy(logits, y)) and use inplace=False"
)

VOCAB_PARALLEL_ERROR = (
    "crossent.torch.distributed.{}: {} is not supported with the vocabulary split over "
    "ranks; gather the logits and use crossent.torch.cross_entropy for it"
)


def check_no_func_transform(fn_name: str) -> None:
    """Under ``torch.func`` the Functions would fail deep inside autograd: say what is missing."""
    if not torch.compiler.is_compiling() and torch._C._are_functorch_transforms_active():
        raise NotImplementedError(FUNC_TRANSFORM_ERROR.format(fn_name))


class LogitsSource:
    """The caller's logits, held weakly, for a backward with ``create_graph=True``.

    Keeping the logits for every backward would hold ``N×V`` memory until then for every
    caller; a weak reference costs nothing and serves whoever still holds them. ``to_matrix``
    makes the ``(M, C)`` matrix the Function saw, in differentiable ops; a changed version
    counter (in-place mode, or an in-place edit) means they are not the logits of the loss.
    """

    def __init__(
        self, tensor: torch.Tensor, to_matrix: Callable[[torch.Tensor], torch.Tensor]
    ) -> None:
        self._ref = weakref.ref(tensor)
        self._version = tensor._version
        self._to_matrix = to_matrix

    def matrix(self) -> torch.Tensor | None:
        t = self._ref()
        if t is None or t._version != self._version:
            return None
        return self._to_matrix(t)


class Backend(Protocol):
    """A backend: the NumPy engine (:mod:`crossent.torch._cpu`) or the Triton kernels
    (:mod:`crossent.torch._triton_ce`), chosen by :func:`backend`."""

    def ce_rows(self, x: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
                opts: LossOptions, scales: Scales, want_grad: bool, layout: Layout | None = None,
                /) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """Per-row losses (M,) and log-sum-exps (M,) of ``(M, C)`` logits and, if
        ``want_grad``, the gradient of the rows' losses times ``scales`` (written over ``x``
        when ``opts.inplace``). The options are validated; errors report positions in
        ``layout``."""


def backend(x: torch.Tensor, opts: LossOptions) -> Backend:
    """The backend that runs ``x``: Triton on CUDA (or with ``backend='triton'``), else NumPy."""
    if use_triton(x, opts):
        from crossent.torch import _triton_ce

        return _triton_ce
    return _cpu


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
    rows, lse, grad = backend(x, opts).ce_rows(x, t, w, opts, scales, want_grad, layout)
    loss = rows if opts.reduction == "none" else reduce_rows(rows, lse, t, opts, scales)
    lse = lse.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    return loss.to(x.dtype), lse, grad, scales


def scale_grad(grad: torch.Tensor, grad_out: torch.Tensor, opts: LossOptions) -> torch.Tensor:
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
        return torch.mul(grad, factor, out=grad_buffer(grad.shape, grad.dtype))
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
        source: LogitsSource | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.source = source if source is not None else LogitsSource(logits, lambda t: t)
        want_grad = bool(ctx.needs_input_grad[0])
        loss, lse, grad, scales = loss_forward(logits, target, weight, opts, want_grad, layout)
        if grad is not None and grad.data_ptr() == logits.data_ptr():
            _bump_version(logits)
        ctx.opts, ctx.scales = opts, scales
        # saved (not kept on ctx) so that autograd frees it after a backward without
        # retain_graph, and a leaf's AccumulateGrad can take the buffer without a copy; the
        # logits only for a probability target's gradient (see LogitsSource otherwise)
        saved = [grad if grad is not None else lse, target, weight]
        ctx.save_for_backward(*saved, logits if ctx.needs_input_grad[1] else None)
        ctx.mark_non_differentiable(lse)
        return loss, lse

    @staticmethod
    def backward(
        ctx: Any, grad_loss: torch.Tensor, _grad_lse: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None, None, None]:
        opts: LossOptions = ctx.opts
        grad_x = grad_t = None
        grad, target, weight, logits = ctx.saved_tensors
        if torch.is_grad_enabled() and ctx.needs_input_grad[0]:
            # create_graph=True: a gradient autograd can differentiate, from the logits
            x = ctx.source.matrix()
            if x is None:
                raise RuntimeError(DOUBLE_BACKWARD_ERROR)
            grad_x = logits_grad(x, target, weight, grad_loss, opts, ctx.scales)
        elif ctx.needs_input_grad[0]:
            grad_x = scale_grad(grad, grad_loss, opts)
        if ctx.needs_input_grad[1]:
            grad_t = target_grad(logits, weight, grad_loss, opts, ctx.scales.ce)
        return grad_x, grad_t, None, None, None, None

    @staticmethod
    def jvp(ctx: Any, *_tangents: Any) -> Any:
        raise NotImplementedError(FORWARD_AD_ERROR.format("cross_entropy"))

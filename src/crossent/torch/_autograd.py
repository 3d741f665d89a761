"""``torch.autograd.Function`` classes: the gradient is computed in the forward pass.

Forward runs the loss and its gradient together (one pass over the logits, one ``exp`` per
element) and keeps the gradient; backward only scales it by the incoming gradient (a scalar for
``'mean'``/``'sum'``, one factor per row for ``'none'``). With ``create_graph=True`` backward
recomputes the gradient in differentiable torch ops instead (:mod:`crossent.torch._grad`), so
second derivatives are exact. Options travel packed in one
:class:`~crossent.torch._options.LossOptions`.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
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
    "crossent.torch.cross_entropy: second derivatives (create_graph=True) need the logits of "
    "the loss, which were changed after it: overwritten by inplace=True or modified in place; "
    "use inplace=False and leave the logits unchanged until the backward"
)
REBUILD_ERROR = (
    "crossent.torch.cross_entropy: second derivatives (create_graph=True) of a loss whose "
    "logits nothing holds any more (a temporary, as in cross_entropy(model(x), y)) are rebuilt "
    "from the saved gradient, which {} does not allow; keep a reference to the logits until "
    "the backward (logits = model(x); loss = cross_entropy(logits, y))"
)

MODIFIED_ERROR = (
    "crossent.torch.cross_entropy: one of the variables needed for gradient computation has "
    "been modified by an inplace operation: a tensor of shape {} saved at version {} is now "
    "at version {} (inplace=True scales the saved gradient in place: a second backward "
    "through the same loss needs inplace=False)"
)

VOCAB_PARALLEL_ERROR = (
    "crossent.torch.distributed.{}: {} is not supported with the vocabulary split over "
    "ranks; gather the logits and use crossent.torch.cross_entropy for it"
)


def check_no_func_transform(fn_name: str) -> None:
    """Under ``torch.func`` the Functions would fail deep inside autograd: say what is missing."""
    if not torch.compiler.is_compiling() and torch._C._are_functorch_transforms_active():
        raise NotImplementedError(FUNC_TRANSFORM_ERROR.format(fn_name))


class _Edge:
    """The logits as saved for ``create_graph=True``: their place in the graph, not their memory."""

    __slots__ = ("device", "dtype", "shape")

    def __init__(self, t: torch.Tensor) -> None:
        self.shape, self.dtype, self.device = t.shape, t.dtype, t.device

    def tensor(self) -> torch.Tensor:
        return torch.zeros((), dtype=self.dtype, device=self.device).expand(self.shape)


class LogitsSource:
    """The caller's logits, held weakly, for a backward with ``create_graph=True``.

    Keeping the logits for every backward would hold ``N×V`` memory until then for every
    caller; a weak reference costs nothing and serves whoever still holds them. ``to_matrix``
    makes the ``(M, C)`` matrix the Function saw, in differentiable ops; a changed version
    counter (in-place mode, or an in-place edit) means they are not the logits of the loss.
    When nothing holds them any more (``cross_entropy(model(x), y)``, a view made for the
    call), :meth:`saving` has kept their autograd edge (no memory) and :func:`rebuild_logits`
    recovers their values from the saved gradient.
    """

    def __init__(
        self, tensor: torch.Tensor, to_matrix: Callable[[torch.Tensor], torch.Tensor]
    ) -> None:
        self._ref = weakref.ref(tensor)
        self._version = tensor._version
        self._to_matrix = to_matrix
        self.keeps_edge = False

    def gone(self) -> bool:
        return self._ref() is None

    def matrix(self) -> torch.Tensor | None:
        t = self._ref()
        if t is None or t._version != self._version:
            return None
        return self._to_matrix(t)

    @contextlib.contextmanager
    def saving(self, x: torch.Tensor | None) -> Iterator[None]:
        """While the Function is applied: ``x`` (the ``(M, C)`` logits) is saved as its edge in
        the graph only (autograd restores the edge on unpacking); other tensors as usual (by
        the hooks of an enclosing ``saved_tensors_hooks``, if any). ``None``: the logits are
        saved whole (a probability target's gradient needs them)."""
        top = getattr(torch._C._autograd, "_top_saved_tensors_default_hooks", None)
        enabled = getattr(torch._C._autograd, "_saved_tensors_hooks_is_enabled", None)
        if x is None or top is None or enabled is None or not enabled():
            yield  # no hooks here: the logits are not saved, create_graph needs a reference
            return
        outer = top(False)
        x_ref = weakref.ref(x)  # the hooks outlive the call: they must not hold the logits

        def pack(t: torch.Tensor) -> Any:
            if t is x_ref():
                return _Edge(t)
            return outer[0](t) if outer is not None else (t, t._version)

        def unpack(packed: Any) -> torch.Tensor:
            if isinstance(packed, _Edge):
                return packed.tensor()
            if outer is not None:
                return outer[1](packed)
            t, version = packed  # autograd checks no version of a hooked tensor: do it here
            if t._version != version:
                raise RuntimeError(MODIFIED_ERROR.format(tuple(t.shape), version, t._version))
            return t

        self.keeps_edge = True
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            yield


def rebuild_logits(
    edge: torch.Tensor,
    grad: torch.Tensor,
    lse: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    opts: LossOptions,
    scales: Scales,
) -> torch.Tensor:
    """``(M, C)`` logits with the values the saved gradient implies, on the logits' edge.

    Without smoothing and soft-capping the gradient of a row is ``(a p - s b) / T`` with
    ``b`` the (weighted) target, ``s = 1/D``, ``a = s Σ_c b_c + 2 ζ s_z lse``: ``p`` follows,
    and ``z = T (log p + lse)`` up to rounding (a class whose ``p`` underflowed comes back as
    a logit ``~87`` (float32) below the row's log-sum-exp instead of lower: its ``p`` stays
    ``~1e-38``). Rows without a gradient (ignored, zero weight) come back uniform: their loss
    does not depend on them. Second derivatives depend on ``p`` only, so they are exact to
    the gradient's own rounding.
    """
    why = None
    if opts.label_smoothing:
        why = "label_smoothing"
    elif opts.softcap is not None:
        why = "softcap"
    elif grad.dtype not in (torch.float32, torch.float64):
        why = f"a {grad.dtype} gradient (too few digits)"
    if why is not None:
        raise RuntimeError(REBUILD_ERROR.format(why))
    cd = grad.dtype
    m, c = grad.shape
    lse_col = lse.to(cd).reshape(-1, 1)
    if target.is_floating_point():
        b = target.to(cd)
        valid = torch.ones(m, 1, dtype=torch.bool, device=grad.device)
    else:
        valid = (target != opts.ignore_index).reshape(-1, 1)
        y = torch.where(valid.squeeze(1), target, 0).long()
        b = torch.nn.functional.one_hot(y, c).to(cd) * valid
    if weight is not None:
        b = b * weight.to(cd)
    a = b.sum(dim=1, keepdim=True) * scales.ce + 2.0 * opts.z_loss * scales.z * lse_col * valid
    with torch.no_grad():
        p = (grad.detach().to(cd) * opts.temperature + b * scales.ce) / torch.where(a > 0, a, 1)
        p = torch.where(a > 0, p, 1.0 / c).clamp(min=torch.finfo(cd).tiny)
        z = (torch.log(p) + lse_col) * opts.temperature
    return edge + z.to(edge.dtype)


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
        # logits: for a probability target's gradient, and (as their edge in the graph
        # only, see LogitsSource.saving) for create_graph=True
        keep = ctx.needs_input_grad[1] or (want_grad and ctx.source.keeps_edge)
        saved = [grad if grad is not None else lse, target, weight, lse if want_grad else None]
        ctx.save_for_backward(*saved, logits if keep else None)
        ctx.mark_non_differentiable(lse)
        return loss, lse

    @staticmethod
    def backward(
        ctx: Any, grad_loss: torch.Tensor, _grad_lse: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None, None, None]:
        opts: LossOptions = ctx.opts
        grad_x = grad_t = None
        grad, target, weight, lse, logits = ctx.saved_tensors
        if torch.is_grad_enabled() and ctx.needs_input_grad[0]:
            # create_graph=True: a gradient autograd can differentiate, from the logits
            x = ctx.source.matrix()
            if x is None and ctx.source.gone() and logits is not None:
                if ctx.source.keeps_edge:
                    x = rebuild_logits(logits, grad, lse, target, weight, opts, ctx.scales)
                else:  # saved whole
                    x = logits
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

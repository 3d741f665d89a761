r"""The functional API: :func:`cross_entropy`, with ``F.cross_entropy``'s signature.

Validation happens here, once; the layout work (class dimension 1, K-dimensional inputs,
unbatched inputs) is done with differentiable torch ops around the autograd Function, which
sees ``(M, C)`` logits only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from crossent.torch._autograd import (
    CrossEntropyFunction,
    LogitsSource,
    check_no_func_transform,
)
from crossent.torch._compile import eager_under_compile
from crossent.torch._ops import cross_entropy_compiled
from crossent.torch._options import (
    Layout,
    LossOptions,
    TorchKwargs,
    check_class_weight,
    check_float_tensor,
    flatten_target,
    options_from,
    takes_options,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

# Inputs that another layer handles: (accepts(input), handler(input, target, weight, options)),
# registered by that layer (crossent.torch.distributed registers DTensors sharded on the classes)
InputHandler = Callable[[Any, Any, Any, LossOptions], Any]
_INPUT_HANDLERS: list[tuple[Callable[[Any], bool], InputHandler]] = []


def register_input_handler(accepts: Callable[[Any], bool], handler: InputHandler) -> None:
    """Let :func:`cross_entropy` hand the inputs for which ``accepts`` is true to ``handler``,
    with the validated options (once per ``handler``)."""
    if all(h is not handler for _, h in _INPUT_HANDLERS):
        _INPUT_HANDLERS.append((accepts, handler))


def flatten_logits(input: Any) -> torch.Tensor:
    """``(M, C)`` logits from ``(C,)``, ``(N, C)`` or ``(N, C, d1, ..., dK)``."""
    check_float_tensor(input, "input")
    if input.ndim == 0:
        raise ValueError(
            "input: expected a tensor of shape (C,), (N, C) or (N, C, d1, ...), got 0-d"
        )
    if input.ndim == 1:
        return input.unsqueeze(0)
    if input.ndim == 2:
        return input
    return input.movedim(1, -1).reshape(-1, input.shape[1])


def _producer_saved(x: torch.Tensor) -> bool:
    """Did the op that made ``x`` save ``x`` itself for its backward (``exp``, ``tanh``...)?"""
    node = x.grad_fn
    saved = getattr(node, "_saved_result", None) if node is not None else None
    return isinstance(saved, torch.Tensor) and saved.data_ptr() == x.data_ptr()


def _views_a_leaf(x: torch.Tensor) -> bool:
    """Is ``x`` a leaf that requires grad, or a view of one (writing would change it)?"""
    t: torch.Tensor | None = x
    while t is not None:
        if t.is_leaf and t.requires_grad:
            return True
        t = t._base
    return False


@eager_under_compile
def _apply(
    x: torch.Tensor,
    t: torch.Tensor,
    w: torch.Tensor | None,
    opts: LossOptions,
    layout: Layout,
    source: LogitsSource | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The autograd Function; run eagerly under ``torch.compile`` (a graph break)."""
    return CrossEntropyFunction.apply(x, t, w, opts, layout, source)


@takes_options("torch")
def cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    **options: Unpack[TorchKwargs],
) -> Any:
    r"""Softmax cross-entropy, a drop-in for ``F.cross_entropy``.

    Same signature and semantics as PyTorch (class dimension 1, K-dimensional inputs, class
    indices or class probabilities as targets, ``weight``, ``ignore_index``, ``reduction``,
    ``label_smoothing``), plus z-loss, soft-capping and temperature, and finite results
    wherever the mathematics is finite. The gradient is computed in the forward pass, in one
    pass over the logits with one ``exp`` per element; backward only scales it. Second
    derivatives (``create_graph=True``) are exact: backward then recomputes the gradient in
    differentiable torch ops from the logits, which the caller must still hold (crossent keeps
    only a weak reference, so that they are freed as soon as nothing needs them).
    Forward-mode AD and ``torch.func`` transforms (``vmap``, ``jvp``, ``grad``, ...) are not
    supported and raise ``NotImplementedError``.

    The loss is :func:`crossent.cross_entropy`'s (its formulas, written once, are there and in
    :mod:`crossent._spec`), with ``x`` the logits after the transforms (``x/T``, then
    ``s·tanh(x/s)``), ``p = softmax(x)``, ``k`` the number of finite (unmasked) logits of the
    row and ``V`` the positions whose target is not ``ignore_index``. The gradient with respect
    to the logits is

    .. math::

        \frac{\partial L}{\partial x_{n,c}} = \frac{1[n \in V]}{D}
            \Big[\big(a_n + 2\lambda \operatorname{lse}(x_n)\big) p_{n,c} - b_{n,c}\Big]

    with ``a_n = Σ_c b_{n,c}``, ``b_{n,c} = w_c q'_{n,c}`` (``q' = (1-ε) q + ε/k`` the smoothed
    target, ``q`` one-hot for index targets) and ``D`` the ``'mean'`` denominator (1 for
    ``'sum'``/``'none'``), times the chain rule of the transforms; for ``'mean'`` the z-term's
    share is divided by the number of non-ignored positions ``|V|`` instead of ``D``.

    Parameters
    ----------
    input : Tensor, shape (C,), (N, C) or (N, C, d1, ..., dK)
        Logits: float32, float64, float16 or bfloat16; ``-inf`` marks masked classes.
        Low-precision gradients are computed in float32 (``p - 1`` of a confident prediction
        included) and rounded once.
    target : Tensor
        Class indices (integer dtype, shape ``()``, ``(N,)`` or ``(N, d1, ..., dK)``) or class
        probabilities (floating, ``input``'s shape). Probability targets may require grad.
    weight : Tensor, shape (C,), optional
        Class weights ``w`` (constants: one that requires grad is refused, never silently
        left without a gradient): finite and ``>= 0``. Negative weights
        are refused with a ``ValueError`` (``F.cross_entropy`` accepts them): they turn a
        class's loss into an unbounded reward.
    ignore_index, reduction, label_smoothing, z_loss, softcap, temperature
        As :func:`crossent.cross_entropy`: ``'mean'`` over targets that are all ignored gives
        0, not NaN; smoothing spreads ``ε`` over the finite classes only; the z-loss is not
        weighted by ``weight`` (PaLM's and Liger's).
    return_lse : bool, default False
        Also return the log-sum-exp of each position's transformed logits (float32, the
        batch shape; not differentiable), e.g. to log the z-loss.
    num_items : float >= 0, or a 0-d or one-element Tensor, optional
        As :func:`crossent.cross_entropy` (the ``'mean'`` denominator of the whole global
        batch, see :mod:`crossent._spec`). Not with class weights and ``z_loss`` together.
    inplace : bool, default False
        Write the gradient over the logits' buffer instead of allocating one of their size.
        The logits must then not be needed afterwards: a leaf that requires grad is refused;
        logits saved by the op that made them (``exp``, ``tanh``, ...) are copied instead;
        any other op that saved them raises autograd's "modified by an inplace operation"
        error in backward rather than producing a wrong gradient.

    Returns
    -------
    loss : Tensor
        A scalar (``'mean'``/``'sum'``) or the batch shape (``'none'``), in ``input``'s dtype.
    lse : Tensor
        Only with ``return_lse=True``.

    Raises
    ------
    TypeError
        A non-tensor or non-float ``input``, float labels, a non-int ``ignore_index``,
        non-numeric options.
    ValueError
        Shapes that do not match, a class index out of range, probabilities that are negative
        or do not sum to 1, NaN or ``+inf`` logits (CPU), a bad option value, a ``weight``
        that requires grad.
    NotImplementedError
        Forward-mode AD, ``torch.func`` transforms.
    RuntimeError
        A backward with ``create_graph=True`` when the logits are gone: overwritten
        (``inplace=True``), edited in place, or no longer referred to by anything.

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import cross_entropy
    >>> x = torch.tensor([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3], [1.0, 1.0, 3.0]], requires_grad=True)
    >>> y = torch.tensor([0, 2, -100])
    >>> loss = cross_entropy(x, y, weight=torch.tensor([1.0, 2.0, 3.0]))
    >>> round(loss.item(), 6)
    1.919295
    >>> loss.backward()
    >>> x.grad[2]  # the ignored row
    tensor([0., 0., 0.])

    Where PyTorch gives NaN, crossent gives the limit:

    >>> cross_entropy(torch.zeros(2, 3), torch.tensor([-100, -100]))
    tensor(0.)
    >>> masked = torch.tensor([[0.0, 0.0, float("-inf")]])
    >>> cross_entropy(masked, torch.tensor([[0.5, 0.5, 0.0]]), label_smoothing=0.1)
    tensor(0.6931)
    """
    opts = options_from(
        {**options, "ignore_index": ignore_index, "reduction": reduction,
         "label_smoothing": label_smoothing},
        "torch",
    )  # fmt: skip
    for accepts, handler in _INPUT_HANDLERS:  # e.g. a DTensor: crossent.torch.distributed
        if accepts(input):
            return handler(input, target, weight, opts)
    check_no_func_transform("cross_entropy")
    x = flatten_logits(input)
    c = x.shape[1]
    if c == 0:
        raise ValueError("input: expected at least one class (dimension 1), got 0")
    class_dim = 1 if input.ndim > 1 else 0
    batch = (input.shape[0], *input.shape[2:]) if input.ndim > 1 else ()
    t = flatten_target(target, input.device, batch, tuple(input.shape), class_dim)
    w = check_class_weight(weight, c, input.device)
    compiling = torch.compiler.is_compiling()
    if opts.inplace and x.requires_grad and not compiling:  # (ignored under torch.compile)
        if _views_a_leaf(x):
            raise ValueError(
                "inplace: the gradient would overwrite a leaf tensor that requires grad (a "
                "parameter), or a view of one; pass the logits produced by your model, or "
                "inplace=False"
            )
        if t.requires_grad:
            raise ValueError("inplace: not supported when target requires grad")
        if _producer_saved(x):  # the op that made the logits needs them: keep them
            opts = dataclasses.replace(opts, inplace=False)
    if compiling:  # one opaque custom op in the graph, no graph break
        loss, lse = cross_entropy_compiled(x, t, w, opts)
    else:
        source = LogitsSource(input, flatten_logits)  # for create_graph=True
        with source.saving(None if t.requires_grad else x):
            loss, lse = _apply(x, t, w, opts, (class_dim, batch), source)
    if opts.reduction == "none":
        loss = loss.reshape(batch)
    if opts.return_lse:
        return loss, lse.reshape(batch)
    return loss

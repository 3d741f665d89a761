"""``crossent::cross_entropy``: the loss as a ``torch.library`` custom op, for ``torch.compile``.

Eager calls go through :class:`~crossent.torch._autograd.CrossEntropyFunction` (which also has
the in-place mode). Under ``torch.compile`` the functional API calls this op instead: opaque to
dynamo (its CPU implementation runs NumPy), described to the compiler by a fake implementation,
differentiable through :func:`torch.library.register_autograd`, so a compiled model keeps one
graph (``fullgraph=True`` works). The gradient is an output of the forward op, saved for
backward, which scales it; ``inplace`` does not apply (a custom op's outputs cannot alias its
inputs).

The op's schema is derived from the table of options (:data:`crossent._spec.OPTIONS`): each
option is a keyword-only argument of its name and type, so that a new option travels through
the op without a line here, and an option of a type the schema cannot carry fails at import.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from crossent._spec import OPTIONS
from crossent.torch._autograd import loss_forward
from crossent.torch._grad import logits_grad, target_grad
from crossent.torch._options import LossOptions

# the annotations of the table's fields as the types of a torch.library schema
_SCHEMA_TYPES = {"int": "int", "str": "str", "bool": "bool", "float": "float",
                 "float | None": "float?"}  # fmt: skip


def _schema_type(annotation: str, name: str) -> str:
    if annotation not in _SCHEMA_TYPES:
        raise TypeError(
            f"{name}: expected an option of a type the custom op can carry "
            f"({', '.join(_SCHEMA_TYPES)}), got {annotation!r}; add it to _SCHEMA_TYPES"
        )
    return _SCHEMA_TYPES[annotation]


SCHEMA = (
    "(Tensor logits, Tensor target, Tensor? weight, bool want_grad, *, "
    + ", ".join(f"{_schema_type(o.type, o.name)} {o.name}" for o in OPTIONS)
    + ") -> (Tensor, Tensor, Tensor, Tensor)"
)


def _forward(
    logits: Tensor, target: Tensor, weight: Tensor | None, want_grad: bool, **options: Any
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(loss, grad, lse, 1/D)`` of ``(M, C)`` logits; ``grad`` is empty unless ``want_grad``;
    ``options``: every field of :class:`LossOptions`, by name (validated by the functional API)."""
    loss, lse, grad, scales = loss_forward(logits, target, weight, LossOptions(**options),
                                           want_grad)  # fmt: skip
    grad = grad if grad is not None else logits.new_empty(0)
    return loss, grad, lse, torch.tensor(scales.ce, dtype=torch.float64, device=logits.device)


cross_entropy_op = torch.library.custom_op(
    "crossent::cross_entropy", _forward, mutates_args=(), schema=SCHEMA
)


@cross_entropy_op.register_fake
def _(
    logits: Tensor, target: Tensor, weight: Tensor | None, want_grad: bool, **options: Any
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The op's outputs' shapes and dtypes."""
    loss = logits.new_empty((logits.shape[0],) if options["reduction"] == "none" else ())
    grad = torch.empty_like(logits) if want_grad else logits.new_empty(0)
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    lse = logits.new_empty((logits.shape[0],), dtype=dtype)
    return loss, grad, lse, logits.new_empty((), dtype=torch.float64)


def _setup_context(
    ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...], keyword_only_inputs: Any
) -> None:
    logits, target, weight, _ = inputs
    ctx.opts = LossOptions(**keyword_only_inputs)
    ctx.target_grad = isinstance(target, Tensor) and target.requires_grad
    ctx.save_for_backward(output[1], logits, target, weight, output[3])


def _backward(
    ctx: Any, grad_loss: Tensor, *_: Tensor
) -> tuple[Tensor | None, Tensor | None, None, None]:
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
    return grad_x, grad_t, None, None  # the options are keyword-only: no gradient slots


cross_entropy_op.register_autograd(_backward, setup_context=_setup_context)


def op_options(opts: LossOptions) -> dict[str, Any]:
    """The op's keyword arguments for ``opts`` (every option; ``inplace`` off: see above)."""
    options = {o.name: getattr(opts, o.name) for o in OPTIONS}
    options["inplace"] = False
    return options


def cross_entropy_compiled(
    x: Tensor, t: Tensor, w: Tensor | None, opts: LossOptions
) -> tuple[Tensor, Tensor]:
    """What :func:`crossent.torch.cross_entropy` runs under ``torch.compile``."""
    want_grad = torch.is_grad_enabled() and x.requires_grad
    loss, _, lse, _ = cross_entropy_op(x, t, w, want_grad, **op_options(opts))
    return loss, lse

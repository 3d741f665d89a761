"""``nn.Module`` wrappers: :class:`CrossEntropyLoss` and :class:`LinearCrossEntropyLoss`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from crossent.torch._functional import cross_entropy
from crossent.torch._linear import linear_cross_entropy
from crossent.torch._options import (
    ModuleKwargs,
    TransformKwargs,
    options_for,
    options_from,
    takes_options,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack


class _LossModule(nn.Module):
    """What the two modules share: their options, validated at construction and kept as
    attributes, passed on to the functions as given. Which options a module takes in its
    constructor and which in ``forward`` is read from the table of options
    (:data:`crossent._spec.OPTIONS`) for the module's entry point ``ENTRY``."""

    ENTRY: str

    def _keep(self, options: dict[str, Any], **extra: Any) -> None:
        """Validate the constructor's ``options`` (fail early) and keep them, with their
        defaults, and ``extra``."""
        opts = options_from(options, self.ENTRY, per_call=False)
        names = [o.name for o in options_for(self.ENTRY, per_call=False)]
        self._names = (*names, *extra)
        for name in names:
            setattr(self, name, options.get(name, getattr(opts, name)))
        for name, value in extra.items():
            setattr(self, name, value)

    def _options(self) -> dict[str, Any]:
        """The constructor's options and ``extra`` names, as keyword arguments."""
        return {name: getattr(self, name) for name in self._names}

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)!r}" for name in self._names)


class CrossEntropyLoss(_LossModule):
    """Module form of :func:`crossent.torch.cross_entropy` (``nn.CrossEntropyLoss``'s API).

    Parameters
    ----------
    weight : Tensor, shape (C,), optional
        Class weights, registered as a buffer (moves with ``.to(device)``).
    ignore_index, reduction, label_smoothing, z_loss, softcap, temperature, inplace
        As :func:`crossent.torch.cross_entropy`; validated here. The class weights must be
        finite and ``>= 0`` (negative weights are refused, unlike ``nn.CrossEntropyLoss``).

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import CrossEntropyLoss
    >>> loss_fn = CrossEntropyLoss(label_smoothing=0.1, z_loss=1e-4)
    >>> loss_fn(torch.zeros(4, 10), torch.tensor([1, 2, 3, -100]))
    tensor(2.3031)
    """

    ENTRY = "module"
    weight: torch.Tensor | None

    @takes_options("module", per_call=False)
    def __init__(
        self,
        weight: torch.Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        **options: Unpack[ModuleKwargs],
    ) -> None:
        super().__init__()
        self._keep({**options, "ignore_index": ignore_index, "reduction": reduction,
                    "label_smoothing": label_smoothing})  # fmt: skip
        self.register_buffer("weight", weight)

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, num_items: float | None = None
    ) -> Any:
        """The loss; ``num_items``: the global batch's ``'mean'`` denominator (it changes from
        batch to batch, so it is an argument of the call, not of the module)."""
        return cross_entropy(input, target, self.weight, **self._options(), num_items=num_items)


class LinearCrossEntropyLoss(_LossModule):
    """Module form of :func:`crossent.torch.linear_cross_entropy` (the head's weight is passed in).

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import LinearCrossEntropyLoss
    >>> hidden, head = torch.zeros(3, 8), torch.zeros(100, 8)
    >>> LinearCrossEntropyLoss()(hidden, head, torch.tensor([1, 2, 3]))
    tensor(4.6052)
    """

    ENTRY = "linear_module"

    @takes_options("linear_module", per_call=False)
    def __init__(
        self,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        chunk_size: int | None = None,
        **options: Unpack[TransformKwargs],
    ) -> None:
        super().__init__()
        self._keep({**options, "ignore_index": ignore_index, "reduction": reduction,
                    "label_smoothing": label_smoothing}, chunk_size=chunk_size)  # fmt: skip

    def forward(
        self,
        input: torch.Tensor,
        weight: torch.Tensor,
        target: torch.Tensor,
        bias: torch.Tensor | None = None,
        num_items: float | None = None,
    ) -> Any:
        """The loss; ``num_items`` as in :meth:`CrossEntropyLoss.forward`."""
        return linear_cross_entropy(input, weight, target, bias, **self._options(),
                                    num_items=num_items)  # fmt: skip

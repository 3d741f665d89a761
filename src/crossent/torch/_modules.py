"""``nn.Module`` wrappers: :class:`CrossEntropyLoss` and :class:`LinearCrossEntropyLoss`."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from crossent.torch._functional import cross_entropy
from crossent.torch._linear import linear_cross_entropy
from crossent.torch._options import options_from


class CrossEntropyLoss(nn.Module):
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

    weight: torch.Tensor | None

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        z_loss: float = 0.0,
        softcap: float | None = None,
        temperature: float = 1.0,
        inplace: bool = False,
    ) -> None:
        super().__init__()
        options_from(locals())  # fail early: validated at construction
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.temperature = temperature
        self.inplace = inplace

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, num_items: float | None = None
    ) -> Any:
        """The loss; ``num_items``: the global batch's ``'mean'`` denominator (it changes from
        batch to batch, so it is an argument of the call, not of the module)."""
        return cross_entropy(
            input,
            target,
            self.weight,
            self.ignore_index,
            self.reduction,
            self.label_smoothing,
            z_loss=self.z_loss,
            softcap=self.softcap,
            temperature=self.temperature,
            inplace=self.inplace,
            num_items=num_items,
        )

    def extra_repr(self) -> str:
        return (
            f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
            f"label_smoothing={self.label_smoothing}, z_loss={self.z_loss}, "
            f"softcap={self.softcap}, temperature={self.temperature}, inplace={self.inplace}"
        )


class LinearCrossEntropyLoss(nn.Module):
    """Module form of :func:`crossent.torch.linear_cross_entropy` (the head's weight is passed in).

    Examples
    --------
    >>> import torch
    >>> from crossent.torch import LinearCrossEntropyLoss
    >>> hidden, head = torch.zeros(3, 8), torch.zeros(100, 8)
    >>> LinearCrossEntropyLoss()(hidden, head, torch.tensor([1, 2, 3]))
    tensor(4.6052)
    """

    def __init__(
        self,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        *,
        z_loss: float = 0.0,
        softcap: float | None = None,
        temperature: float = 1.0,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        options_from(locals())  # fail early: validated at construction
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.z_loss = z_loss
        self.softcap = softcap
        self.temperature = temperature
        self.chunk_size = chunk_size

    def forward(
        self,
        input: torch.Tensor,
        weight: torch.Tensor,
        target: torch.Tensor,
        bias: torch.Tensor | None = None,
        num_items: float | None = None,
    ) -> Any:
        """The loss; ``num_items`` as in :meth:`CrossEntropyLoss.forward`."""
        return linear_cross_entropy(
            input,
            weight,
            target,
            bias,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            z_loss=self.z_loss,
            softcap=self.softcap,
            temperature=self.temperature,
            chunk_size=self.chunk_size,
            num_items=num_items,
        )

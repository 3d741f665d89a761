r"""The loss, specified once: its options, its targets, its ``'mean'`` denominator, its transform.

Every backend is a thin adapter around these definitions: the NumPy core
(:mod:`crossent._core`), the PyTorch CPU path, the Triton host code and the vocabulary-parallel
functions. None of them re-derives an option check, a target classification, a denominator
or the temperature/soft-cap transform, and every error message about them is written here,
so that the same bad input gets the same message through every entry point.

The options are declared once, as the fields of :class:`LossOptions` (see
:mod:`crossent._spec._options`). Names for internal use, kept stable: :class:`LossOptions`,
:data:`OPTIONS`, :func:`make_options`,
:func:`classify_target`, :func:`check_class_indices`, :func:`check_probabilities`,
:func:`prob_sum_tolerance`, :func:`check_class_weight`, :func:`count_items`, :class:`Scales`,
:func:`mean_scales`, :func:`reduced_loss`, :func:`describe_shape` (the transform's
formula: :func:`crossent._algebra.transform`).

The loss
--------
With ``z = transform(x)`` (``x/T``, then ``s·tanh(·/s)``), ``p = softmax(z)``,
``lse_n = log Σ_c exp(z_{n,c})``, ``V`` the positions whose target is not ``ignore_index``,
``w`` the class weights (1 without them), ``ε`` the label smoothing and ``k_n`` the number of
finite logits of row ``n``, each position's cross-entropy is

.. math::

    \mathrm{ce}_n = (1-\varepsilon)\, w_{y_n} (-\log p_{n,y_n})
                  + \frac{\varepsilon}{k_n} \sum_{c\ \mathrm{finite}} w_c (-\log p_{n,c})

for class indices, and ``ce_n = -Σ_c w_c q'_{n,c} log p_{n,c}`` with
``q' = (1-ε) q + ε/k_n`` for probabilities. The reductions are

.. math::

    \text{'none'}: \ \ell_n = \mathrm{ce}_n + \lambda\,\mathrm{lse}_n^2
    \ (0 \text{ for } n \notin V), \qquad
    \text{'sum'}: \ \sum_{n \in V} \ell_n, \qquad
    \text{'mean'}: \ \frac{\sum_{n\in V} \mathrm{ce}_n}{D}
                  + \lambda \frac{\sum_{n\in V} \mathrm{lse}_n^2}{|V|}

with ``D = Σ_{n∈V} w_{y_n}`` for class indices (PyTorch's weighted mean) and ``D = |V| = N``
for probabilities. The z-term (PaLM's z-loss) is a mean over the non-ignored positions, not
weighted by the classes: scaling every class weight by ``c > 0`` leaves the ``'mean'`` loss
unchanged (as in PaLM and Liger-Kernel). A denominator of 0 (every target ignored) gives 0.

``num_items=K`` (``'mean'`` only) replaces both denominators by ``K``, the count of non-ignored
target weight over the whole global batch (every data-parallel rank and accumulation step): the
loss is then ``(Σ ce_n + λ Σ lse_n²) / K``, and summing these losses over micro-batches and
ranks gives exactly the global mean and its gradient. Any ``K > 0`` is taken as given, also one
below this batch's own count (transformers' ``Trainer`` divides its count by the tensor-,
context- or sequence-parallel size); ``K = 0`` is accepted only when every target is ignored.
With class weights ``K`` is a weight sum, not a count of positions, so class weights, index
targets, a z-loss and ``num_items`` together are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from crossent._spec._options import (
    BACKENDS,
    DEFAULT_OPTIONS,
    ENTRY_POINTS,
    OPTIONS,
    REDUCTIONS,
    LossKwargs,
    LossOptions,
    ModuleKwargs,
    Option,
    TorchKwargs,
    TransformKwargs,
    check_bool,
    check_int,
    check_nonnegative,
    check_positive,
    check_reduction,
    check_unit_interval,
    describe_value,
    make_options,
    options_for,
    options_from,
    takes_options,
)
from crossent._spec._targets import (
    check_class_indices,
    check_class_weight,
    check_probabilities,
    classify_target,
    describe_shape,
    dtype_name,
    prob_sum_tolerance,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_OPTIONS",
    "ENTRY_POINTS",
    "OPTIONS",
    "REDUCTIONS",
    "LossKwargs",
    "LossOptions",
    "ModuleKwargs",
    "Option",
    "Scales",
    "TorchKwargs",
    "TransformKwargs",
    "check_bool",
    "check_class_indices",
    "check_class_weight",
    "check_int",
    "check_nonnegative",
    "check_positive",
    "check_probabilities",
    "check_reduction",
    "check_unit_interval",
    "classify_target",
    "count_items",
    "describe_shape",
    "describe_value",
    "dtype_name",
    "make_options",
    "mean_scales",
    "options_for",
    "options_from",
    "prob_sum_tolerance",
    "reduced_loss",
    "takes_options",
]

# ----------------------------------------------------------------------------------------------
# the 'mean' denominator


@dataclass(frozen=True)
class Scales:
    """What each row's loss is multiplied by in the reduced loss (and so in its gradient).

    ``ce`` multiplies the cross-entropy ``ce_n`` (``1/D`` for ``'mean'``), ``z`` the z-term
    ``λ·lse_n²`` (``1/|V|``); both are 1 for ``'sum'`` and ``'none'``. Ignored rows get 0.
    """

    ce: float = 1.0
    z: float = 1.0


def _is_float(a: Any) -> bool:
    dt = a.dtype
    return bool(dt.is_floating_point) if hasattr(dt, "is_floating_point") else dt.kind == "f"


def count_items(target: Any, weight: Any, ignore_index: int) -> tuple[float, float]:
    """``(Σ_{n∈V} w_{y_n}, |V|)`` of a flattened target: NumPy arrays or torch tensors.

    Probability targets ``(M, C)`` count every row: ``(M, M)``. Out-of-range indices are
    clamped here (they are reported by :func:`check_class_indices`). On CUDA this reads the
    two numbers back (one synchronization).
    """
    if _is_float(target):
        m = float(target.shape[0])
        return m, m
    valid = target != ignore_index
    if weight is None:
        n = float(valid.sum())
        return n, n
    safe = (target * valid).clip(0, weight.shape[0] - 1)
    if not isinstance(safe, np.ndarray):
        safe = safe.long()  # torch reads a uint8 index tensor as a mask
    picked = weight[safe] * valid
    if isinstance(picked, np.ndarray):
        return float(picked.sum(dtype=np.float64)), float(valid.sum())
    p64 = picked.double()  # a torch tensor: both numbers read back in one transfer
    both = p64.new_zeros(2)
    both[0] = p64.sum()
    both[1] = valid.sum()
    ws, n = both.tolist()
    return float(ws), float(n)


def _inverse(d: float) -> float:
    return 1.0 / d if d > 0 else 0.0


def mean_scales(opts: LossOptions, weight_sum: float, count: float, *, weighted: bool) -> Scales:
    """The one denominator rule (see the module's docstring) for a batch.

    ``weight_sum`` and ``count`` come from :func:`count_items` (``D`` and ``|V|``);
    ``weighted`` says whether class weights are given with index targets.
    """
    if opts.reduction != "mean":
        return Scales()
    k = opts.num_items
    if k is None:
        return Scales(_inverse(weight_sum), _inverse(count))
    if weighted and opts.z_loss > 0.0:
        raise ValueError(
            "num_items: not supported with class weights and z_loss together (the z-term is "
            "a mean over positions, num_items a sum of class weights); got num_items="
            f"{k!r} with z_loss={opts.z_loss!r}"
        )
    # Any k > 0 divides the sum, also one below this batch's own count: transformers' Trainer
    # divides its count by the tensor/context/sequence-parallel size, whose ranks share tokens.
    if k == 0.0 and weight_sum > 0.0:
        raise ValueError(
            f"num_items: expected a number > 0 when this batch has non-ignored targets "
            f"(target weight {weight_sum!r}), got {k!r}"
        )
    return Scales(_inverse(k), _inverse(k))


def reduced_loss(loss_sum: Any, zsq_sum: Any, scales: Scales, z_loss: float) -> Any:
    """The reduced loss from ``Σ ℓ_n`` (z-terms included) and ``Σ_{n∈V} lse_n²``.

    Floats, NumPy or torch scalars: ``ce·Σ ℓ_n + (z - ce)·λ·Σ lse_n²``.
    """
    total = loss_sum * scales.ce
    if z_loss and not (isinstance(scales.z, float) and scales.z == scales.ce):  # arrays: add
        total = total + (scales.z - scales.ce) * z_loss * zsq_sum
    return total

r"""The loss, specified once: its options, its targets, its ``'mean'`` denominator, its transform.

Every backend is a thin adapter around these definitions: the NumPy core
(:mod:`crossent._core`), the PyTorch CPU path, the Triton host code and the vocabulary-parallel
functions. None of them re-derives an option check, a target classification, a denominator
or the temperature/soft-cap transform, and every error message about them is written here,
so that the same bad input gets the same message through every entry point.

Names for internal use, kept stable: :class:`LossOptions`, :func:`make_options`,
:func:`classify_target`, :func:`check_class_indices`, :func:`check_probabilities`,
:func:`prob_sum_tolerance`, :func:`check_class_weight`, :func:`count_items`, :class:`Scales`,
:func:`mean_scales`, :func:`reduced_loss`, :func:`transform`, :func:`describe_shape`.

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
ranks gives exactly the global mean and its gradient. With class weights ``K`` is a weight sum,
not a count of positions, so class weights, index targets, a z-loss and ``num_items`` together
are refused.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

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
    "REDUCTIONS",
    "LossOptions",
    "Scales",
    "check_class_indices",
    "check_class_weight",
    "check_probabilities",
    "classify_target",
    "count_items",
    "describe_shape",
    "dtype_name",
    "make_options",
    "mean_scales",
    "options_from",
    "prob_sum_tolerance",
    "reduced_loss",
    "transform",
]

REDUCTIONS = ("mean", "sum", "none")
BACKENDS = ("auto", "cpu", "triton")


# ----------------------------------------------------------------------------------------------
# options


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _real(value: Any, name: str, expected: str) -> float:
    """``value`` as a float; a TypeError naming ``name`` when it is not a real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected {expected}, got {_describe(value)}")
    return float(value)


def check_nonnegative(value: Any, name: str) -> float:
    """A finite number >= 0 (NaN and inf included in the one message)."""
    val = _real(value, name, "a real number")
    if not 0.0 <= val < math.inf:
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return val


def check_positive(value: Any, name: str) -> float:
    val = _real(value, name, "a real number")
    if not 0.0 < val < math.inf:
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return val


def check_unit_interval(value: Any, name: str) -> float:
    val = _real(value, name, "a real number")
    if not 0.0 <= val <= 1.0:
        raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
    return val


def check_reduction(reduction: Any) -> str:
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction: expected one of {', '.join(map(repr, REDUCTIONS))}, got {reduction!r}"
        )
    return reduction


def check_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {_describe(value)}")
    return int(value)


@dataclass(frozen=True)
class LossOptions:
    """Every option of the loss, validated (build it with :func:`make_options`).

    ``softcap=None`` means no capping; ``num_items=None`` the batch's own ``'mean'``
    denominator. ``return_lse``, ``inplace`` and ``backend`` concern the PyTorch layer only
    (``backend='triton'`` forces the Triton kernels, in the interpreter on CPU tensors).
    """

    ignore_index: int = -100
    reduction: str = "mean"
    label_smoothing: float = 0.0
    z_loss: float = 0.0
    softcap: float | None = None
    temperature: float = 1.0
    num_items: float | None = None
    return_lse: bool = False
    inplace: bool = False
    backend: str = "auto"

    @property
    def plain(self) -> bool:
        """No smoothing, z-loss, soft-capping, temperature or ``num_items``."""
        return (
            self.label_smoothing == 0.0
            and self.z_loss == 0.0
            and self.softcap is None
            and self.temperature == 1.0
            and self.num_items is None
        )


def _num_items(value: Any, reduction: str) -> float | None:
    if value is None:
        return None
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # a 0-d array or tensor
        value = value.item()
    k = _real(value, "num_items", "a real number or None")
    if not 0.0 <= k < math.inf:
        raise ValueError(
            f"num_items: expected a finite number >= 0 (the non-ignored target weight of the "
            f"global batch), got {value!r}"
        )
    if reduction != "mean":
        raise ValueError(
            f"num_items: expected None with reduction={reduction!r} (num_items replaces the "
            f"'mean' denominator), got {value!r}"
        )
    return k


def make_options(
    *,
    ignore_index: Any = -100,
    reduction: Any = "mean",
    label_smoothing: Any = 0.0,
    z_loss: Any = 0.0,
    softcap: Any = None,
    temperature: Any = 1.0,
    num_items: Any = None,
    return_lse: Any = False,
    inplace: Any = False,
    backend: Any = "auto",
) -> LossOptions:
    """Validate every option once: a ``TypeError``/``ValueError`` naming the argument."""
    ii = check_int(ignore_index, "ignore_index")
    red = check_reduction(reduction)
    eps = check_unit_interval(label_smoothing, "label_smoothing")
    zl = check_nonnegative(z_loss, "z_loss")
    cap = None if softcap is None else check_positive(softcap, "softcap")
    temp = check_positive(temperature, "temperature")
    k = _num_items(num_items, red)
    for name, flag in (("return_lse", return_lse), ("inplace", inplace)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name}: expected a bool, got {_describe(flag)}")
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected 'auto', 'cpu' or 'triton', got {backend!r}")
    return LossOptions(ii, red, eps, zl, cap, temp, k, return_lse, inplace, str(backend))


DEFAULT_OPTIONS = LossOptions()
_FIELDS = tuple(f.name for f in fields(LossOptions))


def options_from(args: Mapping[str, Any]) -> LossOptions:
    """:func:`make_options` of the options among a public function's ``locals()``."""
    return make_options(**{name: args[name] for name in _FIELDS if name in args})


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
    if weight_sum > k * (1.0 + 1e-6) + 1e-9:
        raise ValueError(
            f"num_items: expected at least this batch's non-ignored target weight "
            f"({weight_sum!r}), got {k!r}; it counts the whole global batch"
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


# ----------------------------------------------------------------------------------------------
# the transform


def transform(x: Any, temperature: float, softcap: float | None) -> Any:
    """``x/T``, then ``s·tanh(·/s)``; ``-inf`` stays ``-inf``. NumPy arrays or torch tensors.

    Returns a new array (the input is never written). Both steps are increasing, so the row
    maximum of the result is the transform of the row maximum.
    """
    z = x / temperature if temperature != 1.0 else x * 1
    if softcap is not None:
        masked = z == -math.inf
        u = z / softcap
        z = (np.tanh(u) if isinstance(u, np.ndarray) else u.tanh()) * softcap
        z[masked] = -math.inf
    return z

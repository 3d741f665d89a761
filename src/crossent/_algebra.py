r"""The loss's algebra, written once, for NumPy arrays, torch tensors and ``jax.numpy`` arrays.

Every backend reduces a row of ``C`` transformed logits ``z`` (:func:`transform`)
to a few per-row statistics, taken in coordinates shifted by ``m`` (0, or the row maximum):

* ``log_s = log Σ_c exp(z_c - m)``, so that ``lse = m + log_s``;
* ``a = Σ_c b_c`` and ``lin = Σ_c b_c (z_c - m)``, with the weighted, smoothed target
  ``b_c = w_c ((1-ε) q_c + (ε/k) 1[z_c > -∞])`` (``q`` the one-hot of the label or the
  probabilities, ``k`` the row's count of finite logits): :func:`target_sums` builds them from
  the target's part and the smoothing's part.

This module maps those statistics to the per-row loss (:func:`row_loss`,
``ℓ = a·log_s - lin + λ·lse²``, 0 on ignored rows) and to the gradient's per-row coefficients
(:func:`grad_coefficients`):

.. math::

    \frac{\partial L}{\partial z_{n,c}} = \underbrace{\frac{s_n a_n + 2\lambda\,t_n\,
        \mathrm{lse}_n}{S_n}}_{\texttt{p}} e_{n,c}
        - \underbrace{s_n (1-\varepsilon)}_{\texttt{target}}\, w_c q_{n,c}
        - \underbrace{s_n \varepsilon / k_n}_{\texttt{smooth}}\, w_c 1[z_{n,c} > -\infty]

with ``e = exp(z - m)``, ``S = Σ e``, ``s_n`` the row's scale of the cross-entropy (``1/D`` for
``'mean'``) and ``t_n`` of the z-term (``1/|V|``), both 0 on ignored rows; then
:func:`chain_factor` is the chain rule of the transform back to the raw logits, and
:func:`reduce_rows` the reduction. Gathering the target's logit and scattering its gradient
are left to each backend (the array API has no scatter), as is the choice of ``m``
(:func:`no_shift_range`).

The checks of the logits every backend makes on its row maxima, and their messages, are here
too: :func:`check_row_maxima` and :func:`logits_error`.

The functions take and return arrays of one namespace (found with :func:`namespace`) and use
only the Python array API standard's operators and ``where``, so the same lines run on every
backend (a new backend, JAX's included, gathers the statistics and calls these). Nothing here
converts or copies to the host, except the checks (which read one boolean back), and nothing
writes in place but :func:`row_loss` on the NumPy array it made and
:func:`chain_factor` when asked to (``overwrite=True``). The readable, unoptimized
definition of the same loss is :mod:`crossent.reference`; :func:`smoothed_target` is the
smoothed target for a backend that holds it whole.

Names for the backends, kept stable (add, do not rename): :func:`namespace`,
:func:`logits_error`, :func:`check_row_maxima`, :data:`SAFE_RANGE`, :func:`no_shift_range`,
:func:`target_sums`, :func:`smoothed_target`, :func:`row_loss`, :class:`GradCoefficients`,
:func:`grad_coefficients`, :func:`chain_factor`, :func:`reduce_rows`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from crossent._spec import Scales, mean_scales, reduced_loss

__all__ = [
    "SAFE_RANGE",
    "GradCoefficients",
    "array_scales",
    "chain_factor",
    "check_row_maxima",
    "grad_coefficients",
    "logits_error",
    "namespace",
    "no_shift_range",
    "reduce_rows",
    "row_loss",
    "smoothed_target",
    "target_sums",
    "transform",
]


def namespace(*arrays: Any) -> Any:
    """The array namespace of the first array among ``arrays`` (NumPy for plain numbers).

    ``x.__array_namespace__()`` where the array has it (NumPy 2, JAX); the ``torch`` module for
    torch tensors (whose functions accept the array API's ``axis``/``keepdims`` names).
    """
    for x in arrays:
        if type(x) is np.ndarray:  # the common case first: this runs per block of rows
            return np
        if hasattr(x, "__array_namespace__"):
            return x.__array_namespace__()
        if type(x).__module__.startswith("torch"):
            import torch  # only when a tensor was given: `import crossent` stays NumPy-only

            return torch
    return np


# ----------------------------------------------------------------------------------------------
# the logits' checks, on the row maxima


def logits_error(kind: str, row: int | None = None, where: str = "") -> ValueError:
    """The one message for bad logits: ``kind`` is ``'nan'``, ``'posinf'`` or ``'empty'`` (a
    non-ignored row of all ``-inf``, at ``row`` of the flattened rows when known); ``where``
    is added after the row (``' (over all ranks)'``)."""
    if kind == "nan":
        return ValueError("logits: expected finite values or -inf (masked), got NaN")
    if kind == "posinf":
        return ValueError("logits: expected finite values or -inf (masked), got +inf")
    at = "" if row is None else f" at row {row} (flattened)"
    return ValueError(
        "logits: expected at least one finite logit in every non-ignored row, got a row of all "
        f"-inf{at}{where}; give it target=ignore_index to skip it"
    )


def check_row_maxima(
    m: Any, valid: Any = None, *, first_row: int | None = 0, where: str = "", name: str = "logits"
) -> None:
    """NaN or ``+inf`` row maxima, or a row of all ``-inf`` where ``valid`` (``None``: only NaN
    and ``+inf`` are checked): :func:`logits_error`. Reads one boolean back per check.

    ``first_row`` is the index of ``m``'s first row in the flattened logits (``None``: the
    row is not reported); ``name`` replaces ``logits`` in the message.
    """
    xp = namespace(m)
    for kind, bad in (("nan", xp.isnan(m)), ("posinf", m == math.inf)):
        if bool(xp.any(bad)):
            raise _renamed(logits_error(kind), name)
    if valid is None:
        return
    empty = (m == -math.inf) & valid
    if bool(xp.any(empty)):
        row = None if first_row is None else first_row + int(xp.nonzero(empty)[0][0])
        raise _renamed(logits_error("empty", row, where), name)


def _renamed(err: ValueError, name: str) -> ValueError:
    return err if name == "logits" else ValueError(str(err).replace("logits", name, 1))


# exp(z) for z in [lo, hi] neither overflows nor underflows its largest terms, and a sum of
# exponentials up to exp(hi) is finite (float32 overflows above exp(88.7), float64 exp(709.8))
SAFE_RANGE = {"float32": (-60.0, 80.0), "float64": (-600.0, 700.0)}


def no_shift_range(dtype: Any, n_classes: int) -> tuple[float, float]:
    """Row maxima ``m`` of the transformed logits for which ``exp`` needs no shift.

    ``dtype`` is the compute dtype (float32 or float64: a NumPy or torch dtype, or its name).
    The largest term ``exp(m)`` must stay normal (``m >= lo``) and the row's sum, at most
    ``C·exp(m) = exp(m + log C)``, finite: the bound is on ``m + log C``, not ``m`` alone
    (``C = 100000`` logits of 79 overflow float32's sum though ``exp(79)`` does not).
    """
    name = _DTYPE_NAMES.get(dtype)
    if name is None:  # str() of a NumPy dtype costs microseconds: once per dtype
        name = _DTYPE_NAMES[dtype] = "float64" if "64" in str(dtype) else "float32"
    lo, hi = SAFE_RANGE[name]
    return lo, hi - math.log(max(n_classes, 1))


_DTYPE_NAMES: dict[Any, str] = {}


# ----------------------------------------------------------------------------------------------
# per-row statistics -> per-row loss and gradient coefficients


def target_sums(
    target_weight: Any,
    target_score: Any,
    *,
    label_smoothing: float = 0.0,
    k: Any = 1.0,
    finite_weight: Any = 0.0,
    finite_score: Any = 0.0,
) -> tuple[Any, Any]:
    """``(a, lin)``: ``Σ_c b_c`` and ``Σ_c b_c (z_c - m)`` of the smoothed target.

    ``target_weight = Σ_c w_c q_c`` (``w_y`` for a label, 0 on ignored rows) and
    ``target_score = Σ_c w_c q_c (z_c - m)``; with ``label_smoothing`` ``ε > 0`` also ``k``
    (at least 1: give an all ``-inf`` row 1),
    ``finite_weight = Σ_{c finite} w_c`` and ``finite_score = Σ_{c finite} w_c (z_c - m)``.
    """
    eps = label_smoothing
    if eps == 0.0:
        return target_weight, target_score
    a = (1.0 - eps) * target_weight + (eps / k) * finite_weight
    lin = (1.0 - eps) * target_score + (eps / k) * finite_score
    return a, lin


def smoothed_target(q: Any, label_smoothing: float, k: Any, finite: Any = 1.0) -> Any:
    """``(1-ε) q + (ε/k) 1[finite]``: the target after label smoothing, without the class
    weights (``q`` the one-hot of the label or the probabilities; ``finite`` the mask of the
    finite logits, 1 without masked classes)."""
    eps = label_smoothing
    return q if eps == 0.0 else (1.0 - eps) * q + (eps / k) * finite


def row_loss(
    a: Any, lin: Any, log_s: Any, lse: Any, *, z_loss: float = 0.0, valid: Any = None
) -> Any:
    """Each row's loss ``a·log_s - lin + λ·lse²``, 0 where ``valid`` is False, never below 0
    (exp/log round-off can leave ``-1e-17`` where the loss is 0). ``lin = -inf`` (target mass
    on a masked class) gives ``+inf``."""
    xp = namespace(log_s, a)
    loss = (log_s if type(a) is float and a == 1.0 else a * log_s) - lin  # 1.0: no product
    if z_loss:
        loss = loss + z_loss * (lse * lse)
    if valid is not None:
        loss = xp.where(valid, loss, 0.0)
    if xp is np:  # in place (the array is ours), as fast as it gets on small blocks
        return (
            np.maximum(loss, 0.0, out=loss)
            if isinstance(loss, np.ndarray)
            else np.maximum(loss, 0.0)
        )
    return xp.where(loss < 0.0, 0.0, loss)  # NaN stays NaN: it is never hidden


class GradCoefficients(NamedTuple):
    """Per-row factors of the gradient ``p·e - target·(w q) - smooth·(w 1[finite])``.

    ``row`` is the row's scale ``s_n`` of the cross-entropy (0 on ignored rows), so that
    ``target = row·(1-ε)`` and ``smooth = row·ε/k``; a backend that holds the smoothed target
    ``b`` whole subtracts ``row·b``.
    """

    p: Any
    target: Any
    smooth: Any
    row: Any


def grad_coefficients(
    a: Any,
    lse: Any,
    s: Any,
    *,
    scale: Any = 1.0,
    z_scale: Any = None,
    z_loss: float = 0.0,
    label_smoothing: float = 0.0,
    k: Any = 1.0,
    valid: Any = None,
) -> GradCoefficients:
    """The gradient's per-row factors from ``a``, ``lse`` and ``s = Σ_c exp(z_c - m)``.

    ``scale`` multiplies each row's cross-entropy (``1/D`` for ``'mean'``, a number or per-row
    array such as the incoming gradient), ``z_scale`` its z-term (default: ``scale``); rows
    where ``valid`` is False get 0 everywhere.
    """
    row = _per_row(scale, valid, s)
    p = row * a
    if z_loss:
        zrow = row if z_scale is None else _per_row(z_scale, valid, s)
        p = p + zrow * (2.0 * z_loss * lse)
    eps = label_smoothing
    smooth = row * (eps / k) if eps else 0.0
    return GradCoefficients(p / s, row * (1.0 - eps) if eps else row, smooth, row)


def _per_row(scale: Any, valid: Any, like: Any) -> Any:
    """``scale`` on the rows where ``valid`` (every row for ``None``), 0 elsewhere, as an array
    of ``like``'s dtype (``where`` of two Python numbers would give torch's default dtype)."""
    if valid is None:
        return scale
    xp = namespace(like)
    return xp.where(valid, scale * xp.ones_like(like), 0.0)


def transform(x: Any, temperature: float, softcap: float | None) -> tuple[Any, Any]:
    """``(z, tanh_u)``: ``z = x/T``, then ``s·tanh(z/s)`` (``-inf`` stays ``-inf``), written
    with ``where`` (no writes in place: it runs on NumPy, torch and ``jax.numpy`` arrays), and
    ``tanh_u = tanh(x/(T s))`` for :func:`chain_factor` (``None`` without soft-capping). Both
    steps are increasing, so a row's maximum of ``z`` is the transform of its maximum. With
    neither option ``z`` is ``x`` itself."""
    z = x / temperature if temperature != 1.0 else x
    if softcap is None:
        return z, None
    xp = namespace(x)
    tanh_u = xp.tanh(z / softcap)
    return xp.where(z == -math.inf, -math.inf, softcap * tanh_u), tanh_u


def chain_factor(tanh_u: Any, temperature: float, *, overwrite: bool = False) -> Any:
    """``dz/dx`` of the transform ``z = s·tanh(x/(T s))`` (or ``x/T``): ``(1 - tanh_u²)/T``
    elementwise, with ``tanh_u = z/s`` (``None`` without soft-capping: the number ``1/T``).

    ``tanh_u`` must be in ``[-1, 1]`` (``-1`` at masked classes, where the factor is 0). With
    ``overwrite=True`` the factor is computed in ``tanh_u``'s memory, by the array API's
    in-place operators, where the array library has them (NumPy, torch; JAX makes a new array).
    """
    if tanh_u is None:
        return 1.0 / temperature
    if not overwrite:
        f = 1.0 - tanh_u * tanh_u
        return f if temperature == 1.0 else f * (1.0 / temperature)
    f = tanh_u
    if isinstance(f, np.ndarray):  # two passes with out= (the block engine's scratch)
        np.multiply(f, f, out=f)
        np.subtract(1.0, f, out=f)
    else:  # the array API's in-place operators: tanh_u² - 1, then its negative
        f *= f
        f -= 1.0
        f *= -1.0
    if temperature != 1.0:
        f *= 1.0 / temperature
    return f


def array_scales(opts: Any, weight_sum: Any, count: Any, *, weighted: bool) -> Scales:
    """:func:`crossent._spec.mean_scales` for a denominator known only as an array (traced by
    ``jax.jit``): the same rule, with ``where`` for the ``1/D`` of a ``D`` that may be 0.
    The checks of ``num_items`` that need the batch's count are not made."""
    if opts.reduction != "mean" or opts.num_items is not None:
        return mean_scales(opts, 0.0, 0.0, weighted=weighted)  # no count needed
    xp = namespace(weight_sum)
    return Scales(_inverse(xp, weight_sum), _inverse(xp, count))


def _inverse(xp: Any, d: Any) -> Any:
    positive = d > 0
    return xp.where(positive, 1.0 / xp.where(positive, d, 1.0), 0.0)


def reduce_rows(loss: Any, lse: Any, valid: Any, scales: Scales, z_loss: float) -> Any:
    """The reduced loss from the per-row losses (z-terms included) and log-sum-exps, by
    :func:`crossent._spec.reduced_loss`: ``Σ ℓ_n`` and, where the z-term has its own scale,
    ``Σ_{n∈V} lse_n²`` (``valid=None``: every row). In the arrays' dtype."""
    xp = namespace(loss)
    zsq: Any = 0.0
    if z_loss and not (isinstance(scales.z, float) and scales.z == scales.ce):  # arrays: add
        sq = lse * lse
        zsq = xp.sum(sq if valid is None else xp.where(valid, sq, 0.0))
    return reduced_loss(xp.sum(loss), zsq, scales, z_loss)

r"""L1, L2 and elastic-net penalties, and the regularized objective of a linear classifier.

The objective of a linear softmax classifier with scores ``X @ W.T + b``:

.. math::

    J(W, b) = \underbrace{\frac{1}{D}\sum_n \ell_n(X_n W^\top + b)}_{\text{data loss}}
            + \underbrace{\alpha\, R(W)}_{\text{regularization}},
    \qquad R(W) = \begin{cases}
        \tfrac12 \lVert W \rVert_2^2 & \text{"l2"} \\
        \lVert W \rVert_1 & \text{"l1"} \\
        \rho \lVert W \rVert_1 + \tfrac{1-\rho}{2} \lVert W \rVert_2^2 & \text{"elasticnet"}
    \end{cases}

The bias ``b`` is not penalized. With three or more classes, scikit-learn's
``LogisticRegression(C)`` minimizes the same objective (L2 or L1) when
``alpha = 1 / (C · n_samples)``; with two classes it fits one weight vector ``w = W₁ − W₀``, and
the two-row model is ``LogisticRegression(C′)`` with ``C′ = 2 / (alpha · n_samples)`` for L2 and
``C′ = 1 / (alpha · n_samples)`` for L1 (see :class:`crossent.models.SoftmaxClassifier`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crossent._cross_entropy import cross_entropy_with_grad
from crossent._validation import as_float_array, check_nonnegative, check_unit_interval

__all__ = [
    "elastic_net_penalty",
    "elastic_net_penalty_grad",
    "l1_penalty",
    "l1_penalty_grad",
    "l2_penalty",
    "l2_penalty_grad",
    "penalty",
    "penalty_grad",
    "regularized_objective",
]

PENALTY_KINDS = ("l2", "l1", "elasticnet")
"""The penalty kinds ``R(W)`` (models, explain and the CLI take these names)."""
PENALTIES = (*PENALTY_KINDS, None)
"""Every accepted ``penalty`` value: a kind or ``None`` (no penalty)."""


def check_penalty(kind: Any, name: str = "penalty", *, allow_none: bool = True) -> str | None:
    """``kind`` if it is a penalty kind (or ``None`` when allowed); else the one error message.

    Examples
    --------
    >>> check_penalty("l3")
    Traceback (most recent call last):
    ...
    ValueError: penalty: expected one of 'l2', 'l1', 'elasticnet' or None, got 'l3'
    """
    if kind in PENALTY_KINDS or (kind is None and allow_none):
        return kind
    kinds = "'l2', 'l1', 'elasticnet' or None" if allow_none else "'l2', 'l1' or 'elasticnet'"
    raise ValueError(f"{name}: expected one of {kinds}, got {kind!r}")


def _w(w: ArrayLike) -> NDArray[Any]:
    arr = as_float_array(w, "w", min_ndim=0)
    if not np.isfinite(arr).all():
        raise ValueError("w: expected finite values, got NaN or inf")
    return arr


def l1_penalty(w: ArrayLike, strength: float) -> float:
    r"""``strength · Σ|w|``.

    .. math::

        R_1(w) = \lambda \sum_i |w_i|,
        \qquad \partial R_1 / \partial w_i = \lambda\,\operatorname{sign}(w_i)

    Examples
    --------
    >>> import crossent
    >>> crossent.l1_penalty([1.0, -2.0, 0.0], 0.5)
    1.5
    """
    lam = check_nonnegative(strength, "strength")
    return lam * float(np.abs(_w(w)).sum())


def l1_penalty_grad(w: ArrayLike, strength: float) -> NDArray[Any]:
    """Subgradient of :func:`l1_penalty`: ``strength · sign(w)``, 0 where ``w == 0``.

    Examples
    --------
    >>> import crossent
    >>> crossent.l1_penalty_grad([1.0, -2.0, 0.0], 0.5)
    array([ 0.5, -0.5,  0. ])
    """
    lam = check_nonnegative(strength, "strength")
    return lam * np.sign(_w(w))


def l2_penalty(w: ArrayLike, strength: float) -> float:
    r"""``½ · strength · Σ w²``.

    .. math::

        R_2(w) = \frac{\lambda}{2} \sum_i w_i^2,
        \qquad \partial R_2 / \partial w_i = \lambda\, w_i

    Examples
    --------
    >>> import crossent
    >>> crossent.l2_penalty([1.0, -2.0, 0.0], 0.5)
    1.25
    """
    lam = check_nonnegative(strength, "strength")
    arr = _w(w)
    return 0.5 * lam * float(np.vdot(arr, arr))


def l2_penalty_grad(w: ArrayLike, strength: float) -> NDArray[Any]:
    """Gradient of :func:`l2_penalty`: ``strength · w``."""
    lam = check_nonnegative(strength, "strength")
    return lam * _w(w)


def elastic_net_penalty(w: ArrayLike, strength: float, l1_ratio: float) -> float:
    r"""``strength · (ρ·Σ|w| + ½(1-ρ)·Σw²)`` with ``ρ = l1_ratio`` (scikit-learn's convention).

    .. math:: R(w) = \lambda \Big(\rho \sum_i |w_i| + \frac{1-\rho}{2} \sum_i w_i^2\Big)

    Examples
    --------
    >>> import crossent
    >>> crossent.elastic_net_penalty([1.0, -2.0], 1.0, 0.5)
    2.75
    """
    rho = check_unit_interval(l1_ratio, "l1_ratio")
    return l1_penalty(w, strength * rho) + l2_penalty(w, strength * (1.0 - rho))


def elastic_net_penalty_grad(w: ArrayLike, strength: float, l1_ratio: float) -> NDArray[Any]:
    """(Sub)gradient of :func:`elastic_net_penalty`."""
    rho = check_unit_interval(l1_ratio, "l1_ratio")
    return l1_penalty_grad(w, strength * rho) + l2_penalty_grad(w, strength * (1.0 - rho))


def _as_list(params: ArrayLike | Sequence[ArrayLike]) -> list[ArrayLike]:
    if isinstance(params, (list, tuple)) and params and not np.isscalar(params[0]):
        return list(params)
    return [params]  # type: ignore[list-item]


def penalty(
    params: ArrayLike | Sequence[ArrayLike],
    kind: str | None = "l2",
    alpha: float = 1.0,
    l1_ratio: float = 0.5,
) -> float:
    """``alpha · R`` summed over one weight array or a list of them (pass weights, not biases).

    Examples
    --------
    >>> import numpy as np, crossent
    >>> crossent.penalty([np.ones((2, 2)), np.ones(3)], "l2", alpha=0.1)  # ½·0.1·7
    0.35
    """
    kind = check_penalty(kind)
    if kind is None:
        return 0.0
    fn = {"l2": l2_penalty, "l1": l1_penalty}.get(kind)
    if fn is not None:
        return sum((fn(p, alpha) for p in _as_list(params)), 0.0)
    return sum((elastic_net_penalty(p, alpha, l1_ratio) for p in _as_list(params)), 0.0)


_penalty_value = penalty  # regularized_objective's `penalty` argument shadows the name


def penalty_grad(
    params: ArrayLike | Sequence[ArrayLike],
    kind: str | None = "l2",
    alpha: float = 1.0,
    l1_ratio: float = 0.5,
) -> list[NDArray[Any]]:
    """Gradients of :func:`penalty`, one array per parameter array (always a list)."""
    kind = check_penalty(kind)
    arrays = [_w(p) for p in _as_list(params)]
    if kind is None:
        return [np.zeros_like(a) for a in arrays]
    if kind == "l2":
        return [l2_penalty_grad(a, alpha) for a in arrays]
    if kind == "l1":
        return [l1_penalty_grad(a, alpha) for a in arrays]
    return [elastic_net_penalty_grad(a, alpha, l1_ratio) for a in arrays]


def regularized_objective(
    W: ArrayLike,
    b: ArrayLike,
    X: ArrayLike,
    y: ArrayLike,
    *,
    penalty: str | None = "l2",
    alpha: float = 0.0,
    l1_ratio: float = 0.5,
    weight: ArrayLike | None = None,
    label_smoothing: float = 0.0,
) -> tuple[float, NDArray[Any], NDArray[Any]]:
    r"""The objective for scores ``X @ W.T + b``: mean cross-entropy + ``alpha·R(W)``.

    .. math::

        J(W, b) = \operatorname{CE}_{\text{mean}}(X W^\top + b,\ y) + \alpha\, R(W),
        \qquad \frac{\partial J}{\partial W} = G^\top X + \alpha\, \nabla R(W),
        \qquad \frac{\partial J}{\partial b} = \textstyle\sum_n G_n

    where ``G`` (N, C) is :func:`cross_entropy_grad` of the scores and ``R`` is ``½‖W‖²``
    (``"l2"``), ``‖W‖₁`` (``"l1"``), their mix (``"elasticnet"``) or 0 (``None``). The bias is
    not penalized.

    Parameters
    ----------
    W : array_like, shape (C, D)
    b : array_like, shape (C,)
    X : array_like, shape (N, D)
    y : array_like, shape (N,)
        Integer class indices (or (N, C) probabilities).
    penalty, alpha, l1_ratio
        The regularization term ``alpha · R(W)``.
    weight, label_smoothing
        Passed to :func:`cross_entropy`.

    Returns
    -------
    (J, dJ/dW, dJ/db) : (float, ndarray (C, D), ndarray (C,))

    Examples
    --------
    >>> import numpy as np, crossent
    >>> W, b = np.zeros((3, 2)), np.zeros(3)
    >>> J, dW, db = crossent.regularized_objective(W, b, np.ones((4, 2)), [0, 1, 2, 0], alpha=1.0)
    >>> round(J, 4)  # log(3): uniform scores, and R(0) = 0
    1.0986
    """
    Wa = as_float_array(W, "W")
    ba = as_float_array(b, "b")
    Xa = as_float_array(X, "X")
    if Wa.ndim != 2 or ba.shape != (Wa.shape[0],) or Xa.ndim != 2 or Xa.shape[1] != Wa.shape[1]:
        raise ValueError(
            f"W, b, X: expected shapes (C, D), (C,), (N, D), got {Wa.shape}, {ba.shape}, {Xa.shape}"
        )
    scores = Xa @ Wa.T + ba  # (N, C)
    loss, G = cross_entropy_with_grad(
        scores, y, weight=weight, label_smoothing=label_smoothing, reduction="mean"
    )
    reg = _penalty_value(Wa, penalty, alpha, l1_ratio)
    dW = G.T @ Xa + penalty_grad(Wa, penalty, alpha, l1_ratio)[0]
    return float(loss) + reg, dW, G.sum(axis=0)

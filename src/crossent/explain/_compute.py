r"""Every number of the classic example's walk-through, computed by crossent's own functions.

For one example with scores ``s`` (C,) the walk-through is

.. math::

    z = \operatorname{transform}(s), \quad m = \max_c z_c, \quad
    e_c = e^{z_c - m}, \quad p_c = \frac{e_c}{\sum_k e_k}, \quad
    \ell = -\sum_c w_c\, q_c \log p_c + \lambda \operatorname{lse}(z)^2

with ``transform`` the temperature and soft-capping (the identity by default), ``q`` the
target distribution (one-hot, smoothed or given) and ``w`` the class weights. The loss, the
probabilities and the gradient come from :func:`crossent.cross_entropy_with_grad`,
:func:`crossent.softmax` and :func:`crossent.log_softmax`; the penalty from
:func:`crossent.penalty`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

import crossent
from crossent import _algebra
from crossent._penalties import check_penalty
from crossent.explain._result import Explanation, PenaltyTerm

__all__ = ["SEED_CLASSES", "SEED_SCORES", "explain"]

#: The classic example: a cat / dog / horse classifier scores a photo of a cat.
SEED_SCORES: tuple[float, ...] = (10.0, 9.0, 8.0)
SEED_CLASSES: tuple[str, ...] = ("cat", "dog", "horse")

Array = NDArray[np.float64]


def _vector(values: ArrayLike, name: str, n: int | None = None) -> Array:
    """A finite 1-d float64 vector (of length ``n`` when given), or a ValueError naming it."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected numbers, got {values!r}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-d sequence of numbers, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name}: expected {n} values (one per class), got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        bad = arr[~np.isfinite(arr)][0]
        raise ValueError(f"{name}: expected finite numbers, got {bad}")
    return arr


def _target(
    target: int | str | ArrayLike, classes: tuple[str, ...]
) -> tuple[int | None, Array | None]:
    c = len(classes)
    if isinstance(target, str):
        if target in classes:
            return classes.index(target), None
        try:
            target = int(target)
        except ValueError:
            raise ValueError(
                f"target: expected a class index in [0, {c - 1}] or one of the class names "
                f"{', '.join(classes)}, got {target!r}"
            ) from None
    if isinstance(target, (bool, np.bool_)):
        raise TypeError(f"target: expected a class index or probabilities, got {target!r}")
    if isinstance(target, (int, np.integer)):
        if not 0 <= target < c:
            raise ValueError(
                f"target: expected a class index in [0, {c - 1}] or one of the class names "
                f"{', '.join(classes)}, got {int(target)}"
            )
        return int(target), None
    q = _vector(target, "target", c)
    if q.min() < 0:
        raise ValueError(f"target: expected probabilities >= 0, got {q.min():g}")
    total = float(q.sum())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"target: expected probabilities summing to 1, got a sum of {total:g}")
    return None, q


def _class_names(classes: Sequence[str] | None, c: int) -> tuple[str, ...]:
    """The class names: given (one per score, distinct), or the defaults."""
    if c < 2:
        raise ValueError(f"scores: expected at least 2 class scores, got {c}")
    if classes is None:
        return SEED_CLASSES if c == len(SEED_CLASSES) else tuple(str(i) for i in range(c))
    names = tuple(str(n) for n in classes)
    if len(names) != c:
        raise ValueError(f"classes: expected {c} names (one per score), got {len(names)}")
    dup = sorted(n for n, k in Counter(names).items() if k > 1)
    if dup:
        raise ValueError(f"classes: expected distinct names, got {', '.join(dup)} twice")
    return names


def _weight(weight: ArrayLike, c: int) -> Array:
    w = _vector(weight, "weight", c)
    if w.min() < 0:
        raise ValueError(f"weight: expected non-negative class weights, got {w.min():g}")
    return w


def _check_penalty_args(penalty: str | None, params: ArrayLike | None) -> None:
    if penalty is not None:
        check_penalty(penalty, allow_none=False)
    if penalty is not None and params is None:
        raise ValueError("params: expected the model weights the penalty is computed on, got None")
    if penalty is None and params is not None:
        check_penalty(penalty, allow_none=False)  # None: a penalty is needed with params


def _softmax_steps(s: Array, temperature: float, softcap: float | None) -> dict[str, Any]:
    """The scores the softmax sees (the library applies the same transform inside the loss),
    their shift, exponentials, probabilities and log-sum-exp, by crossent's functions."""
    z, _ = _algebra.transform(s, float(temperature), None if softcap is None else float(softcap))
    shift = float(np.max(z))
    e = np.exp(z - shift)
    probs = np.asarray(crossent.softmax(z), dtype=np.float64)
    return {
        "logits": z,
        "shift": shift,
        "shifted": z - shift,
        "exp": e,
        "sum_exp": float(e.sum()),
        "probs": probs,
        "log_probs": np.asarray(crossent.log_softmax(z), dtype=np.float64),
        "lse": float(crossent.logsumexp(z)),
        "predicted": int(np.argmax(probs)),
    }


def _terms(
    y: int | None, q: Array | None, w: Array | None, eps: float, log_probs: Array
) -> tuple[Array, Array]:
    """The smoothed target ``q'`` (:func:`crossent._algebra.smoothed_target`) and each class's
    term ``w_c q'_c (-log p_c)`` of the loss, in O(C) memory."""
    c = log_probs.shape[0]
    if y is not None:
        q = np.zeros(c)
        q[y] = 1.0
    assert q is not None
    dist = _algebra.smoothed_target(q, eps, c)
    wc = w if w is not None else np.ones(c)
    terms = wc * dist * -log_probs
    terms[dist * wc == 0.0] = 0.0  # 0·log 0 = 0
    return dist, terms


def _penalty(
    penalty: str | None, alpha: float, l1_ratio: float, params: ArrayLike | None
) -> PenaltyTerm | None:
    if penalty is None:
        return None
    assert params is not None
    wts = _vector(params, "params")
    value = float(crossent.penalty(wts, penalty, alpha=alpha, l1_ratio=l1_ratio))
    pgrad = crossent.penalty_grad(wts, penalty, alpha=alpha, l1_ratio=l1_ratio)[0]
    return PenaltyTerm(penalty, float(alpha), float(l1_ratio), wts, value, pgrad)


def explain(
    scores: ArrayLike = SEED_SCORES,
    target: int | str | ArrayLike = 0,
    *,
    classes: Sequence[str] | None = None,
    weight: ArrayLike | None = None,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
    softcap: float | None = None,
    temperature: float = 1.0,
    penalty: str | None = None,
    alpha: float = 1.0,
    l1_ratio: float = 0.5,
    params: ArrayLike | None = None,
    image: ArrayLike | None = None,
    source: str | None = None,
) -> Explanation:
    r"""Walk through the softmax cross-entropy of one example, step by step.

    Every number comes from crossent's functions: :func:`crossent.softmax`,
    :func:`crossent.log_softmax`, :func:`crossent.logsumexp`,
    :func:`crossent.cross_entropy_with_grad` and :func:`crossent.penalty`.

    .. math::

        p = \operatorname{softmax}(s), \qquad
        \ell = -\sum_c q_c \log p_c \;(= -\log p_y \text{ for a class } y), \qquad
        \frac{\partial \ell}{\partial s} = p - q

    (the general formulas, with the options, are in :func:`crossent.cross_entropy`).

    Parameters
    ----------
    scores : array_like, shape (C,), default (10, 9, 8)
        One example's class scores (logits), finite. The default is the classic example.
    target : int, str or array_like of shape (C,), default 0
        The true class as an index or a class name, or a probability distribution over the
        classes (non-negative, summing to 1): the loss is then ``H(q, p)``.
    classes : sequence of str, optional
        Class names; default ``cat, dog, horse`` for three classes, else ``0, 1, ...``.
    weight : array_like, shape (C,), optional
        Non-negative class weights.
    label_smoothing, z_loss, softcap, temperature
        As in :func:`crossent.cross_entropy`.
    penalty : {'l1', 'l2', 'elasticnet'}, optional
        Add the regularization term ``alpha · R(params)`` and the objective
        ``loss + alpha · R``.
    alpha : float, default 1.0
        The penalty's strength.
    l1_ratio : float, default 0.5
        The L1 share of ``'elasticnet'``.
    params : array_like, optional
        The model weights ``w`` the penalty is computed on (required with ``penalty``).
    image : array_like, optional
        The example's image, kept for the pictures.
    source : str, optional
        Where the scores come from, kept for the text.

    Returns
    -------
    Explanation

    Raises
    ------
    TypeError, ValueError
        A message naming the argument (``scores``, ``target``, ``classes``, ``weight``,
        ``label_smoothing``, ``z_loss``, ``softcap``, ``temperature``, ``penalty``, ``alpha``,
        ``l1_ratio``, ``params``), what was expected and what was got.

    Examples
    --------
    The classic example: a photo of a cat, scored 10 (cat), 9 (dog), 8 (horse).

    >>> from crossent.explain import explain
    >>> ex = explain()
    >>> ex.probs.round(4), round(ex.loss, 4)
    (array([0.6652, 0.2447, 0.09  ]), 0.4076)
    >>> ex.grad.round(4)  # p - onehot(cat)
    array([-0.3348,  0.2447,  0.09  ])
    >>> ex.verdict
    'unsure'
    >>> round(explain([10, 9, 8], "horse").loss, 4)
    2.4076
    >>> ex = explain(penalty="l2", alpha=0.1, params=[1.0, -2.0])
    >>> round(ex.penalty.value, 4), round(ex.objective, 4)  # ½·0.1·5 and loss + that
    (0.25, 0.6576)
    """
    s = _vector(scores, "scores")
    names = _class_names(classes, s.shape[0])
    y, q = _target(target, names)
    w = None if weight is None else _weight(weight, s.shape[0])
    _check_penalty_args(penalty, params)
    opts: dict[str, Any] = {"weight": w, "label_smoothing": label_smoothing, "z_loss": z_loss,
                            "softcap": softcap, "temperature": temperature}  # fmt: skip
    tgt: Any = np.int64(y) if y is not None else q
    # The loss and its gradient: the library validates the options (messages name them).
    loss_sum, grad = crossent.cross_entropy_with_grad(s, tgt, reduction="sum", **opts)
    mean_loss = crossent.cross_entropy(s, tgt, reduction="mean", **opts)

    steps = _softmax_steps(s, temperature, softcap)
    dist, terms = _terms(y, q, w, float(label_smoothing), steps["log_probs"])
    entropy = None
    if q is not None:
        # H(q) = H(q, q): the cross-entropy of a prediction equal to the target
        with np.errstate(divide="ignore"):
            entropy = float(crossent.cross_entropy(np.log(q), q, reduction="sum"))
    pen = _penalty(penalty, alpha, l1_ratio, params)
    objective = None if pen is None else float(loss_sum) + pen.value

    return Explanation(
        classes=names,
        scores=s,
        **steps,
        target_index=y,
        target_probs=q,
        target_dist=dist,
        weight=w,
        label_smoothing=float(label_smoothing),
        z_loss=float(z_loss),
        softcap=None if softcap is None else float(softcap),
        temperature=float(temperature),
        terms=terms,
        z_term=float(z_loss) * steps["lse"] ** 2,
        loss=float(loss_sum),
        mean_loss=float(mean_loss),
        grad=np.asarray(grad, dtype=np.float64),
        entropy=entropy,
        penalty=pen,
        objective=objective,
        image=None if image is None else np.asarray(image),
        source=source,
    )

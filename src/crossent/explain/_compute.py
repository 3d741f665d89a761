r"""Every number of the seed's walk-through, computed by crossent's own functions.

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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

import crossent

__all__ = ["SEED_CLASSES", "SEED_SCORES", "Explanation", "PenaltyTerm", "explain"]

#: The seed's example: a cat / dog / horse classifier scores a photo of a cat.
SEED_SCORES: tuple[float, ...] = (10.0, 9.0, 8.0)
SEED_CLASSES: tuple[str, ...] = ("cat", "dog", "horse")

#: A right answer with at least this probability counts as confident.
CONFIDENT = 0.9

Array = NDArray[np.float64]


@dataclass(frozen=True)
class PenaltyTerm:
    """The regularization term ``alpha · R(w)`` of the seed's "loss + regularization".

    Attributes
    ----------
    kind : {'l1', 'l2', 'elasticnet'}
        ``R(w) = Σ|w_i|`` (L1), ``½ Σ w_i²`` (L2) or their mix.
    alpha : float
        The strength.
    l1_ratio : float
        The L1 share for ``'elasticnet'``.
    weights : ndarray
        The model parameters ``w`` being penalized.
    value : float
        ``alpha · R(w)`` (:func:`crossent.penalty`).
    grad : ndarray
        Its (sub)gradient with respect to ``w`` (:func:`crossent.penalty_grad`).
    """

    kind: str
    alpha: float
    l1_ratio: float
    weights: Array
    value: float
    grad: Array


@dataclass(frozen=True)
class Explanation:
    """All the numbers of one example's cross-entropy, step by step.

    Attributes
    ----------
    classes : tuple of str
        Class names, one per score (``C`` of them).
    scores : ndarray, shape (C,)
        The scores (logits) as given.
    logits : ndarray, shape (C,)
        The scores the softmax sees: ``s / T``, then soft-capped ``cap·tanh(·/cap)``; equal to
        ``scores`` without ``temperature`` or ``softcap``.
    shift : float
        ``max(logits)``, subtracted before ``exp`` so that it cannot overflow.
    shifted : ndarray, shape (C,)
        ``logits - shift`` (all ``<= 0``).
    exp : ndarray, shape (C,)
        ``exp(shifted)``, in (0, 1].
    sum_exp : float
        ``Σ exp``.
    probs : ndarray, shape (C,)
        ``softmax(logits)`` (:func:`crossent.softmax`).
    log_probs : ndarray, shape (C,)
        ``log_softmax(logits)`` (:func:`crossent.log_softmax`).
    lse : float
        ``log Σ exp(logits)`` (:func:`crossent.logsumexp`), the z-loss's ``log Z``.
    target_index : int or None
        The target class for a class-index target, else None.
    target_probs : ndarray, shape (C,) or None
        The given target distribution for a probability target, else None.
    target_dist : ndarray, shape (C,)
        The distribution ``q`` the loss uses: one-hot or the given probabilities, after label
        smoothing ``(1-ε)·q + ε/C``.
    weight : ndarray, shape (C,) or None
        Class weights.
    label_smoothing, z_loss, temperature : float
        The options, as given.
    softcap : float or None
        The soft-capping value, as given.
    terms : ndarray, shape (C,)
        Each class's share of the cross-entropy, ``w_c·q_c·(-log p_c)``.
    z_term : float
        ``z_loss · lse²``.
    loss : float
        This example's loss ``Σ terms + z_term`` (:func:`crossent.cross_entropy`,
        ``reduction='sum'``).
    mean_loss : float
        The same example as a batch of one with ``reduction='mean'`` (PyTorch's default): for
        a class-index target with class weights it is divided by ``w_y``; otherwise equal to
        ``loss``.
    grad : ndarray, shape (C,)
        ``∂loss/∂scores`` (:func:`crossent.cross_entropy_grad`); ``p - q`` without options.
    predicted : int
        The class with the largest probability.
    entropy : float or None
        For a probability target, its entropy ``H(q) = min over predictions of H(q, p)``.
    penalty : PenaltyTerm or None
        The regularization term, when asked for.
    objective : float or None
        ``loss + penalty.value``, when a penalty is given.
    image : ndarray or None
        The example's image (for an example from a trained model).
    source : str or None
        Where the scores come from (for an example from a trained model).
    """

    classes: tuple[str, ...]
    scores: Array
    logits: Array
    shift: float
    shifted: Array
    exp: Array
    sum_exp: float
    probs: Array
    log_probs: Array
    lse: float
    target_index: int | None
    target_probs: Array | None
    target_dist: Array
    weight: Array | None
    label_smoothing: float
    z_loss: float
    softcap: float | None
    temperature: float
    terms: Array
    z_term: float
    loss: float
    mean_loss: float
    grad: Array
    predicted: int
    entropy: float | None = None
    penalty: PenaltyTerm | None = None
    objective: float | None = None
    image: NDArray[Any] | None = field(default=None, repr=False)
    source: str | None = None

    @property
    def n_classes(self) -> int:
        """The number of classes ``C``."""
        return len(self.classes)

    @property
    def plain(self) -> bool:
        """True when no option changes the textbook formulas (the gradient is ``p - q``)."""
        return (
            self.weight is None
            and self.label_smoothing == 0.0
            and self.z_loss == 0.0
            and self.softcap is None
            and self.temperature == 1.0
        )

    @property
    def target_name(self) -> str:
        """The target class's name, or ``'distribution'`` for a probability target."""
        if self.target_index is None:
            return "distribution"
        return self.classes[self.target_index]

    @property
    def verdict(self) -> str:
        """``'confident'``, ``'unsure'`` or ``'wrong'`` (the seed's three cases).

        The predicted class is compared with the target class (the target distribution's
        most likely class for a probability target); a right answer is confident when its
        probability is at least 0.9.
        """
        true = self.target_index if self.target_index is not None else self._dist_argmax()
        if self.predicted != true:
            return "wrong"
        return "confident" if self.probs[true] >= CONFIDENT else "unsure"

    def verdict_phrase(self) -> str:
        """:attr:`verdict` in words."""
        return {
            "confident": "right and confident",
            "unsure": "right but unsure",
            "wrong": "wrong: not the target's most likely class",
        }[self.verdict]

    def _dist_argmax(self) -> int:
        assert self.target_probs is not None
        return int(np.argmax(self.target_probs))

    @property
    def reading(self) -> str:
        """One sentence reading the result the way the seed does."""
        return _reading(self)

    def to_dict(self) -> dict[str, Any]:
        """Every number as JSON-ready Python types (lists, floats, ints, strings, None).

        Examples
        --------
        >>> from crossent.explain import explain
        >>> d = explain().to_dict()
        >>> d["classes"], [round(p, 4) for p in d["probs"]], round(d["loss"], 4)
        (['cat', 'dog', 'horse'], [0.6652, 0.2447, 0.09], 0.4076)
        """

        def lst(a: NDArray[Any] | None) -> list[Any] | None:
            return None if a is None else np.asarray(a).tolist()

        out: dict[str, Any] = {
            "classes": list(self.classes),
            "scores": lst(self.scores),
            "target": (
                self.target_index if self.target_index is not None else lst(self.target_probs)
            ),
            "target_name": self.target_name,
            "target_dist": lst(self.target_dist),
            "options": {
                "weight": lst(self.weight),
                "label_smoothing": self.label_smoothing,
                "z_loss": self.z_loss,
                "softcap": self.softcap,
                "temperature": self.temperature,
            },
            "logits": lst(self.logits),
            "shift": self.shift,
            "shifted": lst(self.shifted),
            "exp": lst(self.exp),
            "sum_exp": self.sum_exp,
            "probs": lst(self.probs),
            "log_probs": lst(self.log_probs),
            "neg_log_probs": lst(-self.log_probs),
            "lse": self.lse,
            "terms": lst(self.terms),
            "z_term": self.z_term,
            "loss": self.loss,
            "mean_loss": self.mean_loss,
            "grad": lst(self.grad),
            "predicted": self.predicted,
            "predicted_name": self.classes[self.predicted],
            "verdict": self.verdict,
            "reading": self.reading,
            "entropy": self.entropy,
            "penalty": None,
            "objective": self.objective,
        }
        if self.penalty is not None:
            pt = self.penalty
            out["penalty"] = {
                "kind": pt.kind,
                "alpha": pt.alpha,
                "l1_ratio": pt.l1_ratio if pt.kind == "elasticnet" else None,
                "weights": lst(pt.weights),
                "value": pt.value,
                "grad": lst(pt.grad),
            }
        if self.source is not None:
            out["source"] = self.source
        if self.image is not None:
            out["image"] = lst(self.image)
        return out


def _g(x: float) -> str:
    """Three significant digits, without an exponent for large values."""
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def _reading(ex: Explanation) -> str:
    p = ex.probs
    loss = _g(ex.loss)
    top = ex.classes[ex.predicted]
    if ex.target_index is None:
        assert ex.entropy is not None
        if ex.plain:
            return (
                f"The target spreads its probability over the classes, so even a perfect "
                f"prediction would cost its entropy H(q) = {_g(ex.entropy)}; this one costs "
                f"{loss}, {_g(ex.loss - ex.entropy)} more (the KL divergence from q to p), and "
                f"its top class is {top} ({ex.verdict_phrase()})."
            )
        return (
            f"The target spreads its probability over the classes; this prediction costs "
            f"{loss}, and its top class is {top} ({ex.verdict_phrase()})."
        )
    y = ex.target_index
    name = ex.classes[y]
    py = _g(p[y])
    if ex.verdict == "confident":
        end = "; it reaches 0 only at p = 1." if ex.plain else "."
        return (
            f"Right and confident: the model gives {name} p = {py}, so the loss is "
            f"small ({loss}){end}"
        )
    if ex.verdict == "unsure":
        return (
            f"Right but unsure: {name} has the largest probability, yet only p = {py}, so the "
            f"loss ({loss}) is larger than a confident answer's; it falls as p rises toward 1."
        )
    return (
        f"Wrong: the model prefers {top} (p = {_g(p[ex.predicted])}) and gives {name} only "
        f"p = {py}, so the loss is large ({loss}); -log p grows without bound as p falls "
        f"toward 0."
    )


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
        One example's class scores (logits), finite. The default is the seed's example.
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
    The seed's example: a photo of a cat, scored 10 (cat), 9 (dog), 8 (horse).

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
    c = s.shape[0]
    if c < 2:
        raise ValueError(f"scores: expected at least 2 class scores, got {c}")
    if classes is None:
        names = SEED_CLASSES if c == len(SEED_CLASSES) else tuple(str(i) for i in range(c))
    else:
        names = tuple(str(n) for n in classes)
        if len(names) != c:
            raise ValueError(f"classes: expected {c} names (one per score), got {len(names)}")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"classes: expected distinct names, got {', '.join(dup)} twice")
    y, q = _target(target, names)
    w = None
    if weight is not None:
        w = _vector(weight, "weight", c)
        if w.min() < 0:
            raise ValueError(f"weight: expected non-negative class weights, got {w.min():g}")
    if penalty is not None and penalty not in ("l1", "l2", "elasticnet"):
        raise ValueError(f"penalty: expected 'l1', 'l2' or 'elasticnet', got {penalty!r}")
    if penalty is not None and params is None:
        raise ValueError("params: expected the model weights the penalty is computed on, got None")
    if penalty is None and params is not None:
        raise ValueError("penalty: expected 'l1', 'l2' or 'elasticnet' with params, got None")

    opts: dict[str, Any] = {
        "weight": w,
        "label_smoothing": label_smoothing,
        "z_loss": z_loss,
        "softcap": softcap,
        "temperature": temperature,
    }
    tgt: Any = np.int64(y) if y is not None else q
    # The loss and its gradient: the library validates the options (messages name them).
    loss_sum, grad = crossent.cross_entropy_with_grad(s, tgt, reduction="sum", **opts)
    mean_loss = crossent.cross_entropy(s, tgt, reduction="mean", **opts)

    # The scores the softmax sees (the library applies the same transform inside the loss).
    z = s / float(temperature)
    if softcap is not None:
        z = float(softcap) * np.tanh(z / float(softcap))
    shift = float(np.max(z))
    shifted = z - shift
    e = np.exp(shifted)
    probs = np.asarray(crossent.softmax(z), dtype=np.float64)
    log_probs = np.asarray(crossent.log_softmax(z), dtype=np.float64)
    lse = float(crossent.logsumexp(z))

    base = np.eye(c)[y] if y is not None else q
    assert base is not None
    eps = float(label_smoothing)
    dist = (1.0 - eps) * base + eps / c
    wc = w if w is not None else np.ones(c)
    terms = wc * dist * -log_probs
    terms[dist * wc == 0.0] = 0.0  # 0·log 0 = 0
    entropy = None
    if q is not None:
        # H(q) = H(q, q): the cross-entropy of a prediction equal to the target
        with np.errstate(divide="ignore"):
            entropy = float(crossent.cross_entropy(np.log(q), q, reduction="sum"))

    pen = None
    objective = None
    if penalty is not None:
        assert params is not None
        wts = _vector(params, "params")
        value = float(crossent.penalty(wts, penalty, alpha=alpha, l1_ratio=l1_ratio))
        pgrad = crossent.penalty_grad(wts, penalty, alpha=alpha, l1_ratio=l1_ratio)[0]
        pen = PenaltyTerm(penalty, float(alpha), float(l1_ratio), wts, value, pgrad)
        objective = float(loss_sum) + value

    return Explanation(
        classes=names,
        scores=s,
        logits=z,
        shift=shift,
        shifted=shifted,
        exp=e,
        sum_exp=float(e.sum()),
        probs=probs,
        log_probs=log_probs,
        lse=lse,
        target_index=y,
        target_probs=q,
        target_dist=dist,
        weight=w,
        label_smoothing=eps,
        z_loss=float(z_loss),
        softcap=None if softcap is None else float(softcap),
        temperature=float(temperature),
        terms=terms,
        z_term=float(z_loss) * lse * lse,
        loss=float(loss_sum),
        mean_loss=float(mean_loss),
        grad=np.asarray(grad, dtype=np.float64),
        predicted=int(np.argmax(probs)),
        entropy=entropy,
        penalty=pen,
        objective=objective,
        image=None if image is None else np.asarray(image),
        source=source,
    )

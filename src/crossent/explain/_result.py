"""The result of :func:`crossent.explain.explain`: every number of the walk-through."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from crossent.explain._messages import MESSAGES, check_lang, fill

__all__ = ["CONFIDENT", "Explanation", "PenaltyTerm"]

#: A right answer with at least this probability counts as confident.
CONFIDENT = 0.9

Array = NDArray[np.float64]


@dataclass(frozen=True)
class PenaltyTerm:
    """The regularization term ``alpha · R(w)`` of the blog post's "loss + regularization".

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
        """``'confident'``, ``'unsure'`` or ``'wrong'`` (the blog post's three cases).

        The predicted class is compared with the target class (the target distribution's
        most likely class for a probability target); a right answer is confident when its
        probability is at least 0.9.
        """
        true = self.target_index if self.target_index is not None else self._dist_argmax()
        if self.predicted != true:
            return "wrong"
        return "confident" if self.probs[true] >= CONFIDENT else "unsure"

    def verdict_phrase(self, lang: str = "en") -> str:
        """:attr:`verdict` in words, in ``lang`` (``'en'`` or ``'zh'``)."""
        return MESSAGES[check_lang(lang)]["verdict_" + self.verdict]

    def _dist_argmax(self) -> int:
        assert self.target_probs is not None
        return int(np.argmax(self.target_probs))

    @property
    def reading(self) -> str:
        """One sentence reading the result the way the blog post does (in English)."""
        return _reading(self, "en")

    def reading_in(self, lang: str) -> str:
        """:attr:`reading` in ``lang`` (``'en'`` or ``'zh'``): the same numbers, other words.

        Examples
        --------
        >>> from crossent.explain import explain
        >>> explain().reading_in("zh")[:35]
        '预测正确但不够有把握：cat 的概率最大，但也只有 p = 0.665'
        """
        return _reading(self, lang)

    def to_dict(self, lang: str = "en") -> dict[str, Any]:
        """Every number as JSON-ready Python types (lists, floats, ints, strings, None).

        ``lang`` picks the language of the ``reading`` sentence; the numbers do not change.

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
            "reading": self.reading_in(lang),
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


def _reading(ex: Explanation, lang: str) -> str:
    p = ex.probs
    msg = MESSAGES[check_lang(lang)]
    top = ex.classes[ex.predicted]
    if ex.target_index is None:
        assert ex.entropy is not None
        args = {"loss": _g(ex.loss), "top": top, "phrase": ex.verdict_phrase(lang)}
        if ex.plain:
            kl = _g(ex.loss - ex.entropy)
            return fill(msg["read_dist_plain"], {**args, "h": _g(ex.entropy), "kl": kl})
        return fill(msg["read_dist"], args)
    y = ex.target_index
    args = {"name": ex.classes[y], "p": _g(p[y]), "loss": _g(ex.loss)}
    if ex.verdict == "confident":
        end = msg["read_confident_end_plain" if ex.plain else "read_confident_end"]
        return fill(msg["read_confident"], {**args, "end": end})
    if ex.verdict == "unsure":
        return fill(msg["read_unsure"], args)
    return fill(msg["read_wrong"], {**args, "top": top, "ptop": _g(p[ex.predicted])})

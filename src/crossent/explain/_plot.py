"""The walk-through as a picture: softmax bars, the -log curve, the regularization term."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import crossent
from crossent._files import atomic_write
from crossent.explain._result import Explanation

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot", "save_plot"]

_TARGET = "#d62728"
_OTHER = "#1f77b4"
_PENALTY = {"l1": "L1: alpha·|w|", "l2": "L2: alpha·½w²", "elasticnet": "elastic net"}


def _fmt(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def _bars(ax: Axes, ex: Explanation, digits: int) -> None:
    c = ex.n_classes
    pos = np.arange(c)
    is_target = np.zeros(c, dtype=bool)
    if ex.target_index is not None:
        is_target[ex.target_index] = True
    colors = [_TARGET if t else _OTHER for t in is_target]
    bars = ax.bar(pos, ex.probs, color=colors, edgecolor="black", linewidth=0.6)
    if ex.target_index is not None:
        ax.bar([0], [0], color=_TARGET, label=f"target: {ex.target_name}")
        if c > 1:
            ax.bar([0], [0], color=_OTHER, label="other classes")
    else:
        ax.hlines(
            ex.target_dist,
            pos - 0.4,
            pos + 0.4,
            colors=_TARGET,
            linewidth=2.5,
            label="target distribution q",
        )
        ax.bar([0], [0], color=_OTHER, label="predicted p")
    if c <= 12:
        size = 9 if c <= 6 else 7
        tops = ex.probs if ex.target_index is not None else np.maximum(ex.probs, ex.target_dist)
        for bar, p, top in zip(bars, ex.probs, tops, strict=True):
            ax.annotate(
                _fmt(p, digits),
                (bar.get_x() + bar.get_width() / 2, top),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=size,
            )
    if c <= 6:
        labels = [f"{n}\n({s:.3g})" for n, s in zip(ex.classes, ex.scores, strict=True)]
        ax.set_xlabel("class (score)")
    else:
        labels = list(ex.classes)
        ax.set_xlabel("class")
    ax.set_xticks(pos, labels, fontsize=9 if c <= 12 else 7)
    ax.set_ylim(0, 1.32)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("probability p = softmax(scores)")
    ax.set_title("Softmax: scores to probabilities")
    ax.legend(loc="upper center", ncols=2, fontsize=8, frameon=False)


def _curve(ax: Axes, ex: Explanation, digits: int) -> None:
    if ex.target_index is not None:
        idx = [ex.target_index]
    else:
        idx = [i for i in range(ex.n_classes) if ex.target_dist[i] > 0]
    pts = ex.probs[idx]
    nlp = -ex.log_probs[idx]
    positive = pts[pts > 0]
    xmin = min(1e-3, float(positive.min()) / 2) if positive.size else 1e-3
    x = np.unique(np.concatenate([np.geomspace(xmin, 1.0, 300), np.linspace(xmin, 1.0, 300)]))
    ax.plot(x, -np.log(x), color="black", linewidth=1.5, label="-log(x)")
    top = max(5.0, 1.2 * float(nlp.max()))
    ax.set_ylim(0, top)
    ax.set_xlim(0, 1.04)
    for k, i in enumerate(idx):
        lab = f"{ex.classes[i]}: p = {_fmt(ex.probs[i], digits)}, -log p = {_fmt(nlp[k], digits)}"
        size = 60 if ex.target_index is not None else 20 + 120 * float(ex.target_dist[i])
        ax.scatter(
            [ex.probs[i]], [nlp[k]], s=size, color=_TARGET, zorder=3, label=lab, clip_on=False
        )
        ax.vlines(ex.probs[i], 0, nlp[k], colors=_TARGET, linestyles=":", linewidth=1)
    ax.text(
        0.97, 0.2 * top, "right and confident:\nsmall loss", ha="right", fontsize=8, color="0.3"
    )
    ax.text(0.05, top * 0.88, "wrong:\nlarge loss", ha="left", va="top", fontsize=8, color="0.3")
    ax.set_xlabel("p of the target class" if ex.target_index is not None else "p of a class")
    ax.set_ylabel("loss -log p")
    ax.set_title("Cross-entropy: -log p on (0, 1]")
    ax.legend(loc="upper right", fontsize=8, frameon=False)


def _penalty(ax: Axes, ex: Explanation, digits: int) -> None:
    pt = ex.penalty
    assert pt is not None and ex.objective is not None
    span = max(2.0, 1.2 * float(np.max(np.abs(pt.weights))))
    w = np.linspace(-span, span, 201)

    def term(kind: str, v: float) -> float:
        return float(crossent.penalty([v], kind, alpha=pt.alpha, l1_ratio=pt.l1_ratio))

    for kind in ("l1", "l2"):
        style = "-" if kind == pt.kind else "--"
        ax.plot(w, [term(kind, v) for v in w], style, label=_PENALTY[kind], linewidth=1.5)
    if pt.kind == "elasticnet":
        label = f"elastic net (l1_ratio {pt.l1_ratio:g})"
        ax.plot(w, [term(pt.kind, v) for v in w], "-", label=label, linewidth=1.5)
    each = [term(pt.kind, float(v)) for v in pt.weights]
    ax.scatter(pt.weights, each, color=_TARGET, zorder=3, label="this model's weights")
    ax.set_xlabel("weight w")
    ax.set_ylabel("regularization term")
    ax.set_title(
        f"Regularization: {_fmt(pt.value, digits)}\nobjective = {_fmt(ex.loss, digits)} + "
        f"{_fmt(pt.value, digits)} = {_fmt(ex.objective, digits)}",
        fontsize=10,
    )
    ax.legend(loc="upper center", fontsize=8, frameon=False)


def _image(ax: Axes, ex: Explanation) -> None:
    assert ex.image is not None
    ax.imshow(np.asarray(ex.image, dtype=np.float64), cmap="gray_r", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    who = ex.target_name if ex.target_index is not None else "?"
    ax.set_title(f"the example (true: {who},\npredicted: {ex.classes[ex.predicted]})")


def plot(ex: Explanation, *, digits: int = 3) -> Figure:
    """Draw the walk-through: the example's image (if any), the softmax probabilities per
    class with the target marked, the ``-log(x)`` curve with this example's point on it, and
    the regularization term (with a penalty).

    Parameters
    ----------
    ex : Explanation
        From :func:`crossent.explain.explain`.
    digits : int, default 3
        Decimals in the labels.

    Returns
    -------
    matplotlib.figure.Figure
        A figure not attached to pyplot (no global state; nothing is shown).
    """
    from matplotlib.figure import Figure

    show_image = ex.image is not None and np.asarray(ex.image).ndim == 2
    n = 2 + int(show_image) + int(ex.penalty is not None)
    ratios = ([0.7] if show_image else []) + [1.0, 1.0] + ([1.0] if ex.penalty else [])
    fig = Figure(figsize=(4.4 * sum(ratios), 4.2), layout="constrained")
    axes = fig.subplots(1, n, width_ratios=ratios)
    k = 0
    if show_image:
        _image(axes[k], ex)
        k += 1
    _bars(axes[k], ex, digits)
    _curve(axes[k + 1], ex, digits)
    if ex.penalty is not None:
        _penalty(axes[k + 2], ex, digits)
    title = f"Cross-entropy of one example: loss = {_fmt(ex.loss, digits)}"
    if ex.objective is not None:
        title += f", objective = {_fmt(ex.objective, digits)}"
    fig.suptitle(title, fontsize=12)
    return fig


def save_plot(
    ex: Explanation, path: str | os.PathLike[str], *, digits: int = 3, dpi: int = 100
) -> Path:
    """Save :func:`plot` as a PNG at ``path``, atomically (see :func:`atomic_write`).

    Parameters
    ----------
    ex : Explanation
    path : str or os.PathLike
        Where to write; its directory must exist.
    digits : int, default 3
    dpi : int, default 100

    Returns
    -------
    pathlib.Path
    """
    fig = plot(ex, digits=digits)
    buf = io.BytesIO()
    meta: dict[str, Any] = {"Software": "crossent explain"}
    fig.savefig(buf, format="png", dpi=dpi, metadata=meta)
    return atomic_write(path, buf.getvalue())

"""The walk-through as a picture: softmax bars, the -log curve, the regularization term."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import crossent
from crossent._files import atomic_write
from crossent.explain._messages import MESSAGES, check_lang, fill
from crossent.explain._result import Explanation

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["cjk_font", "labels_for", "plot", "save_figure", "save_plot", "use_font"]

_TARGET = "#d62728"
_OTHER = "#1f77b4"
# fonts with CJK glyphs, in order of preference (Debian's fonts-noto-cjk gives the first)
_CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
)
_CJK_FILES = ("NotoSansCJK", "NotoSansSC", "SourceHanSans", "wqy-", "DroidSansFallback")


def _fmt(x: float, digits: int) -> str:
    return f"{x:.{digits}f}"


def _bars(ax: Axes, ex: Explanation, digits: int, msg: Mapping[str, str]) -> None:
    c = ex.n_classes
    pos = np.arange(c)
    is_target = np.zeros(c, dtype=bool)
    if ex.target_index is not None:
        is_target[ex.target_index] = True
    colors = [_TARGET if t else _OTHER for t in is_target]
    bars = ax.bar(pos, ex.probs, color=colors, edgecolor="black", linewidth=0.6)
    if ex.target_index is not None:
        ax.bar([0], [0], color=_TARGET, label=fill(msg["bars_target"], {"name": ex.target_name}))
        if c > 1:
            ax.bar([0], [0], color=_OTHER, label=msg["bars_other"])
    else:
        ax.hlines(
            ex.target_dist,
            pos - 0.4,
            pos + 0.4,
            colors=_TARGET,
            linewidth=2.5,
            label=msg["bars_dist"],
        )
        ax.bar([0], [0], color=_OTHER, label=msg["bars_pred"])
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
        ax.set_xlabel(msg["bars_xlabel_scores"])
    else:
        labels = list(ex.classes)
        ax.set_xlabel(msg["bars_xlabel"])
    ax.set_xticks(pos, labels, fontsize=9 if c <= 12 else 7)
    ax.set_ylim(0, 1.32)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel(msg["bars_ylabel"])
    ax.set_title(msg["bars_title"])
    ax.legend(loc="upper center", ncols=2, fontsize=8, frameon=False)


def _curve(ax: Axes, ex: Explanation, digits: int, msg: Mapping[str, str]) -> None:
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
        lab = fill(
            msg["curve_point"],
            {"name": ex.classes[i], "p": _fmt(ex.probs[i], digits), "nlp": _fmt(nlp[k], digits)},
        )
        size = 60 if ex.target_index is not None else 20 + 120 * float(ex.target_dist[i])
        ax.scatter(
            [ex.probs[i]], [nlp[k]], s=size, color=_TARGET, zorder=3, label=lab, clip_on=False
        )
        ax.vlines(ex.probs[i], 0, nlp[k], colors=_TARGET, linestyles=":", linewidth=1)
    ax.text(0.97, 0.2 * top, msg["curve_confident"], ha="right", fontsize=8, color="0.3")
    ax.text(0.05, top * 0.88, msg["curve_wrong"], ha="left", va="top", fontsize=8, color="0.3")
    ax.set_xlabel(msg["curve_xlabel" if ex.target_index is not None else "curve_xlabel_dist"])
    ax.set_ylabel(msg["curve_ylabel"])
    ax.set_title(msg["curve_title"])
    ax.legend(loc="upper right", fontsize=8, frameon=False)


def _penalty(ax: Axes, ex: Explanation, digits: int, msg: Mapping[str, str]) -> None:
    pt = ex.penalty
    assert pt is not None and ex.objective is not None
    span = max(2.0, 1.2 * float(np.max(np.abs(pt.weights))))
    w = np.linspace(-span, span, 201)

    def term(kind: str, v: float) -> float:
        return float(crossent.penalty([v], kind, alpha=pt.alpha, l1_ratio=pt.l1_ratio))

    for kind in ("l1", "l2"):
        style = "-" if kind == pt.kind else "--"
        ax.plot(w, [term(kind, v) for v in w], style, label=msg["pen_" + kind], linewidth=1.5)
    if pt.kind == "elasticnet":
        label = fill(msg["pen_elasticnet"], {"r": f"{pt.l1_ratio:g}"})
        ax.plot(w, [term(pt.kind, v) for v in w], "-", label=label, linewidth=1.5)
    each = [term(pt.kind, float(v)) for v in pt.weights]
    ax.scatter(pt.weights, each, color=_TARGET, zorder=3, label=msg["pen_points"])
    ax.set_xlabel(msg["pen_xlabel"])
    ax.set_ylabel(msg["pen_ylabel"])
    ax.set_title(
        fill(
            msg["pen_title"],
            {
                "value": _fmt(pt.value, digits),
                "loss": _fmt(ex.loss, digits),
                "obj": _fmt(ex.objective, digits),
            },
        ),
        fontsize=10,
    )
    ax.legend(loc="upper center", fontsize=8, frameon=False)


def _image(ax: Axes, ex: Explanation, msg: Mapping[str, str]) -> None:
    assert ex.image is not None
    ax.imshow(np.asarray(ex.image, dtype=np.float64), cmap="gray_r", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    who = ex.target_name if ex.target_index is not None else "?"
    ax.set_title(fill(msg["image_title"], {"true": who, "pred": ex.classes[ex.predicted]}))


def cjk_font() -> str | None:
    """The name of an installed font with Chinese glyphs that matplotlib can use, or None.

    Fonts installed after matplotlib built its font cache are found on disk and added.
    """
    from matplotlib import font_manager

    def known() -> str | None:
        names = {f.name for f in font_manager.fontManager.ttflist}
        return next((n for n in _CJK_FONTS if n in names), None)

    name = known()
    if name is None:
        for path in font_manager.findSystemFonts():
            if any(part in Path(path).name for part in _CJK_FILES):
                with contextlib.suppress(Exception):  # an unreadable file is no font
                    font_manager.fontManager.addfont(path)
        name = known()
    return name


def labels_for(lang: str) -> tuple[Mapping[str, str], str | None]:
    """The message table for the picture's labels and the CJK font they need (if any).

    Without a CJK font, Chinese labels would be drawn as empty boxes: the picture falls back
    to English with a warning saying which package to install.
    """
    check_lang(lang)
    if lang != "zh":
        return MESSAGES[lang], None
    font = cjk_font()
    if font is None:
        warnings.warn(
            "no font with Chinese glyphs found (on Debian: apt-get install fonts-noto-cjk); "
            "the picture's labels are in English",
            UserWarning,
            stacklevel=3,
        )
        return MESSAGES["en"], None
    return MESSAGES[lang], font


def use_font(fig: Figure, font: str | None) -> None:
    """Draw every text of ``fig`` with matplotlib's default font, falling back to ``font``."""
    if font is None:
        return
    from matplotlib import rcParams
    from matplotlib.text import Text

    families = [*rcParams["font.sans-serif"][:1], font]
    for text in fig.findobj(Text):
        text.set_fontfamily(families)


def plot(ex: Explanation, *, digits: int = 3, lang: str = "en") -> Figure:
    """Draw the walk-through: the example's image (if any), the softmax probabilities per
    class with the target marked, the ``-log(x)`` curve with this example's point on it, and
    the regularization term (with a penalty).

    Parameters
    ----------
    ex : Explanation
        From :func:`crossent.explain.explain`.
    digits : int, default 3
        Decimals in the labels.
    lang : {'en', 'zh'}, default 'en'
        The language of the labels. Chinese needs a font with CJK glyphs (Debian:
        ``fonts-noto-cjk``); without one the labels stay in English, with a ``UserWarning``.

    Returns
    -------
    matplotlib.figure.Figure
        A figure not attached to pyplot (no global state; nothing is shown).
    """
    from matplotlib.figure import Figure

    msg, font = labels_for(lang)
    show_image = ex.image is not None and np.asarray(ex.image).ndim == 2
    n = 2 + int(show_image) + int(ex.penalty is not None)
    ratios = ([0.7] if show_image else []) + [1.0, 1.0] + ([1.0] if ex.penalty else [])
    fig = Figure(figsize=(4.4 * sum(ratios), 4.2), layout="constrained")
    axes = fig.subplots(1, n, width_ratios=ratios)
    k = 0
    if show_image:
        _image(axes[k], ex, msg)
        k += 1
    _bars(axes[k], ex, digits, msg)
    _curve(axes[k + 1], ex, digits, msg)
    if ex.penalty is not None:
        _penalty(axes[k + 2], ex, digits, msg)
    args = {"loss": _fmt(ex.loss, digits)}
    if ex.objective is not None:
        title = fill(msg["fig_title_objective"], {**args, "obj": _fmt(ex.objective, digits)})
    else:
        title = fill(msg["fig_title"], args)
    fig.suptitle(title, fontsize=12)
    use_font(fig, font)
    return fig


def save_plot(
    ex: Explanation,
    path: str | os.PathLike[str],
    *,
    digits: int = 3,
    dpi: int = 100,
    lang: str = "en",
) -> Path:
    """Save :func:`plot` as a PNG at ``path``, atomically (see :func:`atomic_write`).

    Parameters
    ----------
    ex : Explanation
    path : str or os.PathLike
        Where to write; its directory must exist.
    digits : int, default 3
    dpi : int, default 100
    lang : {'en', 'zh'}, default 'en'

    Returns
    -------
    pathlib.Path
    """
    return save_figure(plot(ex, digits=digits, lang=lang), path, dpi=dpi)


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 100) -> Path:
    """Save ``fig`` as a PNG at ``path``, atomically (its directory must exist)."""
    buf = io.BytesIO()
    meta: dict[str, Any] = {"Software": "crossent"}
    fig.savefig(buf, format="png", dpi=dpi, metadata=meta)
    return atomic_write(path, buf.getvalue())

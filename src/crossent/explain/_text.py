"""The walk-through as plain text: the steps, one table row per class, the loss, a reading."""

from __future__ import annotations

import re
import textwrap
import unicodedata
from typing import Any

import numpy as np

from crossent.explain._messages import MESSAGES, check_lang, fill
from crossent.explain._result import Explanation

__all__ = ["format_number", "format_text"]

_SHADES = " .:-=+*#%@"
_CLOSING = frozenset("，。；：、）」！？")


def format_number(x: float, digits: int = 3, *, tiny: bool = False) -> str:
    """``x`` with ``digits`` decimals (``-0`` shown as ``0``).

    With ``tiny=True`` a non-zero value too small for ``digits`` decimals is shown in
    scientific notation (for ``exp`` and probabilities, where it matters), else as zero (for
    rounding noise such as a gradient's sum).

    Examples
    --------
    >>> format_number(0.66524), format_number(-2.0), format_number(-1e-16)
    ('0.665', '-2.000', '0.000')
    >>> format_number(1.9e-22, tiny=True), format_number(-0.4, 0)
    ('1.90e-22', '0')
    """
    x = float(x)
    if tiny and x != 0.0 and abs(x) < 0.5 * 10.0**-digits:
        return f"{x:.{max(digits - 1, 1)}e}"
    out = f"{x:.{digits}f}"
    return out.removeprefix("-") if out.lstrip("-").strip("0.") == "" else out


def _short(x: float, digits: int = 3) -> str:
    """A compact number for sentences: ``10`` rather than ``10.000``, ``2.793``."""
    x = round(float(x), digits)
    return f"{x:.{digits}f}".rstrip("0").rstrip(".") if x != int(x) else str(int(x))


def _width(text: str) -> int:
    """Columns ``text`` takes in a terminal: two for each wide (CJK) character."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _wrap(text: str, indent: str = "   ", width: int = 92) -> list[str]:
    """Lines of at most ``width`` columns; CJK text may break between any two characters."""
    if _width(text) == len(text):
        return textwrap.wrap(text, width=width, subsequent_indent=indent, break_on_hyphens=False)
    # words of narrow characters stay whole; each wide character is a word of its own
    tokens = re.findall(r"[^\s\u2e80-\uffef]+|\s+|.", text)
    lines, line = [], ""
    for tok in tokens:
        # a closing mark never starts a line
        if line.strip() and _width(line + tok.rstrip()) > width and tok not in _CLOSING:
            lines.append(line.rstrip())
            line = indent + ("" if tok.isspace() else tok)
        else:
            line += tok
    if line.strip():
        lines.append(line.rstrip())
    return lines


def _image_lines(image: Any) -> list[str]:
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or not np.isfinite(img).all():
        return []
    lo, hi = float(img.min()), float(img.max())
    scaled = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    idx = np.minimum((scaled * len(_SHADES)).astype(int), len(_SHADES) - 1)
    return ["  " + "".join(_SHADES[i] * 2 for i in row) for row in idx]


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """Right-aligned columns (the first ``left`` ones left-aligned), two spaces apart."""
    widths = [max(_width(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        pads = [" " * (w - _width(c)) for c, w in zip(r, widths, strict=True)]
        cells = [
            c + pad if i < left else pad + c for i, (c, pad) in enumerate(zip(r, pads, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return [line(header), *(line(r) for r in rows)]


def format_text(ex: Explanation, digits: int = 3, *, lang: str = "en") -> str:
    """The blog post's walk-through of one example, as text.

    Parameters
    ----------
    ex : Explanation
        From :func:`crossent.explain.explain`.
    digits : int, default 3
        Decimals shown.
    lang : {'en', 'zh'}, default 'en'
        The language of the words; the numbers and formulas are the same in every language.

    Returns
    -------
    str
        The steps, a table with one row per class (score, shifted score, exp, softmax
        probability, ``-log p``, target, gradient), the loss and one sentence reading it.

    Examples
    --------
    >>> from crossent.explain import explain, format_text
    >>> print(format_text(explain()))  # doctest: +ELLIPSIS
    Cross-entropy of one example, step by step
    scores: cat 10, dog 9, horse 8; target: cat (class 0)
    ...
    class  score  shifted    exp      p  -log p  target   p - y
    cat    10.000   0.000  1.000  0.665   0.408       1  -0.335
    dog     9.000  -1.000  0.368  0.245   1.408       0   0.245
    horse   8.000  -2.000  0.135  0.090   2.408       0   0.090
    sum                    1.503  1.000               1   0.000
    <BLANKLINE>
    loss = -log p(cat) = -log 0.665 = 0.408
    ...
    >>> print(format_text(explain(), lang="zh").splitlines()[-4])
    损失 = -log p(cat) = -log 0.665 = 0.408
    """
    w = _Words(lang, digits)
    out = _heading(ex, w)
    out += _steps(ex, w)
    out += _class_table(ex, w)
    out += _loss_lines(ex, w)
    if ex.penalty is not None:
        out += _penalty_lines(ex, w)
    out.append("")
    out += _wrap(ex.reading_in(lang), indent="")
    return "\n".join(out)


class _Words:
    """The messages of one language, filled, and numbers shown with ``digits`` decimals."""

    def __init__(self, lang: str, digits: int) -> None:
        self.msg = MESSAGES[check_lang(lang)]
        self.digits = digits

    def m(self, key: str, **args: object) -> str:
        return fill(self.msg[key], args)

    def f(self, x: float) -> str:
        return format_number(x, self.digits)

    def ft(self, x: float) -> str:
        return format_number(x, self.digits, tiny=True)


def _transformed(ex: Explanation) -> bool:
    return ex.temperature != 1.0 or ex.softcap is not None


def _plain_target(ex: Explanation) -> bool:
    return ex.target_index is not None and ex.label_smoothing == 0.0


def _heading(ex: Explanation, w: _Words) -> list[str]:
    """The title, the source, the image, the scores and target, the options."""
    m = w.m
    out: list[str] = [m("title")]
    if ex.source:
        out.append(ex.source)
    if ex.image is not None:
        out.extend(_image_lines(ex.image))
    scores = ", ".join(f"{n} {_short(s)}" for n, s in zip(ex.classes, ex.scores, strict=True))
    if ex.target_index is not None:
        tgt = m("target_class", name=ex.target_name, index=ex.target_index)
    else:
        assert ex.target_probs is not None
        tgt = m(
            "target_dist",
            dist=", ".join(
                f"{n} {_short(q)}" for n, q in zip(ex.classes, ex.target_probs, strict=True)
            ),
        )
    out += _wrap(m("scores_line", scores=scores, target=tgt), indent="  ")
    opts = []
    if ex.weight is not None:
        opts.append(m("opt_weight", v=", ".join(_short(x) for x in ex.weight)))
    if ex.label_smoothing:
        opts.append(m("opt_smoothing", v=_short(ex.label_smoothing)))
    if ex.temperature != 1.0:
        opts.append(m("opt_temperature", v=_short(ex.temperature)))
    if ex.softcap is not None:
        opts.append(m("opt_softcap", v=_short(ex.softcap)))
    if ex.z_loss:
        opts.append(m("opt_zloss", v=_short(ex.z_loss)))
    if opts:
        out.append(m("options_line", options=w.msg["list_sep"].join(opts)))
    out.append("")
    return out


def _steps(ex: Explanation, w: _Words) -> list[str]:
    """The numbered steps: transform, shift, softmax, loss."""
    m, msg = w.m, w.msg
    transformed = _transformed(ex)
    out: list[str] = []
    step = 1
    if transformed:
        how = []
        if ex.temperature != 1.0:
            how.append(m("how_temperature", t=_short(ex.temperature)))
        if ex.softcap is not None:
            how.append(m("how_softcap", c=_short(ex.softcap)))
        out += _wrap(m("step_transform", step=step, how=msg["how_join"].join(how)))
        step += 1
    src = msg["src_z" if transformed else "src_score"]
    out += _wrap(m("step_shift", step=step, src=src, m=_short(ex.shift)))
    step += 1
    out += _wrap(m("step_softmax", step=step, sum=w.f(ex.sum_exp)))
    step += 1
    if _plain_target(ex) and ex.weight is None:
        out += _wrap(m("step_loss_plain", step=step))
    else:
        zpart = m("step_loss_z", z=_short(ex.z_loss)) if ex.z_loss else ""
        out += _wrap(m("step_loss", step=step, zpart=zpart))
    out.append("")
    return out


def _class_table(ex: Explanation, w: _Words) -> list[str]:
    """One row per class (score, [z], shifted, exp, p, -log p, [w], target, [terms], gradient)
    and a row of sums."""
    msg, f, ft = w.msg, w.f, w.ft
    transformed, plain_target = _transformed(ex), _plain_target(ex)
    header = [msg["h_class"], msg["h_score"]]
    if transformed:
        header.append("z")
    header += [msg["h_shifted"], "exp", "p", "-log p"]
    if ex.weight is not None:
        header.append("w")
    header.append(msg["h_target"] if ex.label_smoothing == 0.0 else msg["h_smoothed"])
    show_terms = not (plain_target and ex.weight is None)
    if show_terms:
        header.append("w·q·(-log p)")
    header.append(msg["h_grad_plain"] if ex.plain else msg["h_grad"])
    rows = []
    for i in range(ex.n_classes):
        q = ex.target_dist[i]
        row = [ex.classes[i], f(ex.scores[i])]
        if transformed:
            row.append(f(ex.logits[i]))
        row += [f(ex.shifted[i]), ft(ex.exp[i]), ft(ex.probs[i]), f(-ex.log_probs[i])]
        if ex.weight is not None:
            row.append(f(ex.weight[i]))
        row.append(str(int(q)) if plain_target else f(q))
        if show_terms:
            row.append(f(ex.terms[i]))
        row.append(f(ex.grad[i]))
        rows.append(row)
    total = [msg["row_sum"], ""] + ([""] if transformed else [])
    total += ["", f(ex.sum_exp), f(float(np.sum(ex.probs))), ""]
    if ex.weight is not None:
        total.append("")
    qsum = float(np.sum(ex.target_dist))
    total.append(str(round(qsum)) if plain_target else f(qsum))
    if show_terms:
        total.append(f(float(np.sum(ex.terms))))
    total.append(f(float(np.sum(ex.grad))))
    rows.append(total)
    return [*_table(header, rows, left=1), ""]


def _loss_lines(ex: Explanation, w: _Words) -> list[str]:
    """The loss, as -log p of the target or as the sum of the terms (and the z-term)."""
    m, f, ft = w.m, w.f, w.ft
    out: list[str] = []
    if _plain_target(ex) and ex.weight is None and not ex.z_loss:
        y = ex.target_index
        assert y is not None
        out.append(m("loss_plain", name=ex.classes[y], p=ft(ex.probs[y]), loss=f(ex.loss)))
        if ex.probs[y] == 0.0:
            note = m(
                "loss_underflow",
                name=ex.classes[y],
                log_sum=f(np.log(ex.sum_exp)),
                minus_shifted=f(-ex.shifted[y]),
            )
            out += _wrap(note, indent=" ")
    else:
        data = f(float(np.sum(ex.terms)))
        if ex.z_loss:
            out.append(
                m(
                    "loss_terms_z",
                    data=data,
                    z=_short(ex.z_loss),
                    lse=f(ex.lse),
                    zterm=f(ex.z_term),
                    loss=f(ex.loss),
                )
            )
        else:
            out.append(m("loss_terms", loss=f(ex.loss)))
    if ex.target_index is not None and ex.weight is not None and ex.loss != ex.mean_loss:
        wy = ex.weight[ex.target_index]
        out += _wrap(m("mean_note", w=_short(wy), mean=f(ex.mean_loss)), indent=" ")
    return out


def _penalty_lines(ex: Explanation, w: _Words) -> list[str]:
    """The regularization term and the objective."""
    m, f = w.m, w.f
    pt = ex.penalty
    assert pt is not None and ex.objective is not None
    if pt.weights.size <= 8:
        ws = ", ".join(_short(x) for x in pt.weights)
    else:
        ws = m("many_weights", n=pt.weights.size)
    what = {
        "l1": "alpha·sum|w|",
        "l2": "alpha·½·sum w²",
        "elasticnet": f"alpha·({_short(pt.l1_ratio)}·sum|w| + ½·{_short(1 - pt.l1_ratio)}·sum w²)",
    }[pt.kind]
    kind = w.msg["kind_" + pt.kind]
    line = m(
        "regularization", kind=kind, alpha=f"{pt.alpha:g}", ws=ws, what=what, value=f(pt.value)
    )
    out = _wrap(line, indent="  ")
    out.append(m("objective", loss=f(ex.loss), pen=f(pt.value), obj=f(ex.objective)))
    return out

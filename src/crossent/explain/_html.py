"""The walk-through as a self-contained interactive page (no network, no external files).

The page opens on the library's numbers (rendered into the HTML by Python); when a score, the
target or the temperature changes, a small script (``page.js``, beside this module) recomputes
the same formulas in the browser. Its words come from the message tables of
:mod:`crossent.explain._messages`, passed to the page as data, so the language switch on the
page and ``lang=`` here show the same sentences. The tests drive it in headless Chromium and
check that the numbers it then shows equal :func:`crossent.cross_entropy`'s, and its formulas
against the library's on a grid of scores and options.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Callable
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from crossent._files import atomic_write
from crossent.explain._messages import LANGS, MESSAGES, check_lang, fill
from crossent.explain._result import CONFIDENT, Explanation
from crossent.explain._text import format_number

__all__ = ["render_html", "write_html"]


@cache
def _asset(name: str) -> str:
    """``page.css`` or ``page.js``, package data beside this module."""
    return files("crossent.explain").joinpath(name).read_text(encoding="utf-8")


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _msg(lang: str, key: str, tag: str = "span", attrs: str = "", **args: object) -> str:
    """``<tag data-msg=key>`` with the message in ``lang``; the page re-fills it on a switch."""
    data = f' data-args="{_e(json.dumps(args))}"' if args else ""
    text = fill(MESSAGES[lang][key], args)
    return f'<{tag}{attrs} data-msg="{key}"{data}>{_e(text)}</{tag}>'


def _data(ex: Explanation, digits: int, lang: str) -> str:
    data = {
        "classes": list(ex.classes),
        "digits": digits,
        "lang": lang,
        "messages": MESSAGES,
        "confident": CONFIDENT,
        "target_probs": None if ex.target_probs is None else ex.target_probs.tolist(),
        "options": {
            "weight": None if ex.weight is None else ex.weight.tolist(),
            "softcap": ex.softcap,
            "z_loss": ex.z_loss,
        },
        "penalty": None if ex.penalty is None else ex.penalty.value,
        # the library's numbers for the initial state, for reference
        "library": {"probs": ex.probs.tolist(), "loss": ex.loss, "grad": ex.grad.tolist()},
    }
    # "</" cannot end the script element early once escaped
    return json.dumps(data, ensure_ascii=False).replace("</", "<\\/")


def _image_svg(image: Any) -> str:
    """The example's image as an inline SVG of grey squares (dark = large), or ''."""
    if image is None:
        return ""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2 or not np.isfinite(img).all() or img.size > 4096:
        return ""
    lo, hi = float(img.min()), float(img.max())
    scaled = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    h, w = img.shape
    cell = max(3, 96 // max(h, w))
    rects = "".join(
        f'<rect x="{c * cell}" y="{r * cell}" width="{cell}" height="{cell}" '
        f'fill="rgb({v},{v},{v})"/>'
        for (r, c), v in np.ndenumerate(np.round(255 * (1 - scaled)).astype(int))
    )
    return (
        f'<svg id="image" width="{w * cell}" height="{h * cell}" role="img" '
        f'aria-label="the example\'s image">{rects}</svg>'
    )


def render_html(ex: Explanation, *, digits: int = 3, lang: str = "en") -> str:
    """A self-contained interactive page of the walk-through.

    The page shows the library's numbers for ``ex``; sliders and boxes for each score, the
    target, the temperature and the label smoothing recompute the table (shifted score,
    ``exp``, ``p`` with a bar, ``-log p``, target, gradient), the loss and the point on the
    ``-log`` curve in the browser. A menu switches its language. It loads nothing from the
    network: no external scripts, styles or fonts.

    Parameters
    ----------
    ex : Explanation
        The initial state (the blog post's example for ``explain()``).
    digits : int, default 3
        Decimals shown.
    lang : {'en', 'zh'}, default 'en'
        The language the page opens in.

    Returns
    -------
    str
        The HTML document.

    Examples
    --------
    >>> from crossent.explain import explain, render_html
    >>> page = render_html(explain())
    >>> '<output id="loss">0.408</output>' in page, "src=" in page
    (True, False)
    >>> '<html lang="zh">' in render_html(explain(), lang="zh")
    True
    """
    check_lang(lang)
    f = lambda x: format_number(x, digits)  # noqa: E731
    parts = {
        "rows": _score_rows(ex, f, lambda x: format_number(x, digits, tiny=True)),
        "targets": _target_options(ex, lang),
        "langs": "".join(
            f'<option value="{code}"{" selected" if code == lang else ""}>{_e(name)}</option>'
            for code, name in LANGS.items()
        ),
        "fixed": _fixed_options(ex, lang),
        "penalty": _penalty(ex, lang, f),
        "source": (f'<p class="note">{_e(ex.source)}</p>' if ex.source else "")
        + _image_svg(ex.image),
    }
    return _document(ex, lang, digits, f, parts)


Number = Callable[[float], str]


def _score_rows(ex: Explanation, f: Number, ft: Number) -> str:
    """One table row per class: its score's slider and box, then the computed cells."""
    lo = math.floor(min(float(ex.scores.min()), 0.0) - 10.0)
    hi = math.ceil(max(float(ex.scores.max()), 0.0) + 10.0)
    rows = []
    for i, name in enumerate(ex.classes):
        cls = ' class="target"' if ex.target_index == i else ""
        s = repr(float(ex.scores[i])).removesuffix(".0")  # exact: 10, 0.1, 2.6349...
        rows.append(
            f'<tr id="row-{i}"{cls}><td class="name">{_e(name)}</td>'
            f'<td><input type="range" id="score-{i}" min="{lo}" max="{hi}" step="0.1" '
            f'value="{s}" aria-label="score {_e(name)}"> '
            f'<input type="number" id="num-{i}" step="any" value="{s}" '
            f'aria-label="score {_e(name)} (number)"></td>'
            f'<td id="z-{i}">{f(ex.logits[i])}</td>'
            f'<td id="shifted-{i}">{f(ex.shifted[i])}</td>'
            f'<td id="exp-{i}">{ft(ex.exp[i])}</td>'
            f'<td><div class="bar"><div id="bar-{i}" style="width:{100 * ex.probs[i]:.2f}%">'
            f"</div></div></td>"
            f'<td id="p-{i}">{ft(ex.probs[i])}</td>'
            f'<td id="nlp-{i}">{f(-ex.log_probs[i])}</td>'
            f'<td id="q-{i}">{f(ex.target_dist[i])}</td>'
            f'<td id="grad-{i}">{f(ex.grad[i])}</td></tr>'
        )
    return "\n".join(rows)


def _target_options(ex: Explanation, lang: str) -> str:
    """The target menu: the given distribution (if any), then each class."""
    options = []
    if ex.target_probs is not None:
        options.append(f'<option value="dist" selected>{_msg(lang, "page_given_dist")}</option>')
    for i, name in enumerate(ex.classes):
        sel = " selected" if ex.target_index == i else ""
        options.append(f'<option value="{i}"{sel}>{_e(name)}</option>')
    return "".join(options)


def _fixed_options(ex: Explanation, lang: str) -> str:
    """A note of the options the page has no control for (weights, soft-cap, z-loss), or ''."""
    fixed = []
    if ex.weight is not None:
        fixed.append(("opt_weight", ", ".join(f"{w:g}" for w in ex.weight)))
    if ex.softcap is not None:
        fixed.append(("opt_softcap", f"{ex.softcap:g}"))
    if ex.z_loss:
        fixed.append(("opt_zloss", f"{ex.z_loss:g}"))
    if not fixed:
        return ""
    parts = [_msg(lang, key, v=v) for key, v in fixed]
    return f'<p class="note">{_msg(lang, "page_fixed")} {" · ".join(parts)}</p>'


def _penalty(ex: Explanation, lang: str, f: Number) -> str:
    """The regularization term and the objective, or ''."""
    if ex.penalty is None or ex.objective is None:
        return ""
    pt = ex.penalty
    kind = pt.kind.upper() if pt.kind != "elasticnet" else "elastic net"
    return (
        f"<p>{_msg(lang, 'page_regularization', kind=kind, alpha=f'{pt.alpha:g}')}"
        f'<span id="penalty">{f(pt.value)}</span>{_msg(lang, "page_objective")}'
        f'<output id="objective">{f(ex.objective)}</output></p>'
    )


def _document(ex: Explanation, lang: str, digits: int, f: Number, parts: dict[str, str]) -> str:
    """The page's template, filled with the ``parts`` made above."""
    msg = MESSAGES[lang]
    grad_key = "h_grad_plain" if ex.plain else "h_grad"
    return f"""<!DOCTYPE html>
<html lang="{lang}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(msg["page_title"])}</title>
<style>{_asset("page.css")}</style>
</head>
<body>
{_msg(lang, "page_h1", "h1")}
{_msg(lang, "page_lead", "p")}
{parts["source"]}
<div class="controls">
<label>{_msg(lang, "page_lang")} <select id="lang">{parts["langs"]}</select></label>
<label>{_msg(lang, "page_target")} <select id="target">{parts["targets"]}</select></label>
<label>{_msg(lang, "page_temperature")} <input type="range" id="temperature" min="0.1" max="5"
 step="0.1" value="{ex.temperature!r}"> <span id="temperature-value">{ex.temperature:g}</span>
</label>
<label>{_msg(lang, "page_smoothing")} <input type="range" id="smoothing" min="0" max="1"
 step="0.05" value="{ex.label_smoothing!r}">
 <span id="smoothing-value">{ex.label_smoothing:g}</span></label>
</div>
{parts["fixed"]}
<table>
<thead><tr>{_msg(lang, "h_class", "th", ' class="name"')}{_msg(lang, "h_score", "th")}
<th data-msg-title="page_z_title" title="{_e(msg["page_z_title"])}">z</th>
{_msg(lang, "h_shifted", "th")}<th>exp</th><th></th><th>p</th><th>-log p</th>
{_msg(lang, "h_target_q", "th")}{_msg(lang, grad_key, "th")}</tr></thead>
<tbody>
{parts["rows"]}
<tr>{_msg(lang, "row_sum", "td", ' class="name"')}<td></td><td></td><td></td>
<td id="sum">{f(ex.sum_exp)}</td><td></td><td>1</td><td></td><td></td><td></td></tr>
</tbody>
</table>
<div class="panel">
<div>
<p class="result">{_msg(lang, "page_loss")} = <output id="loss">{f(ex.loss)}</output></p>
{parts["penalty"]}
<p id="reading">{_e(ex.reading_in(lang))}</p>
</div>
<svg id="curve" width="440" height="300" viewBox="0 0 440 300" role="img"
 aria-label="-log(p)"></svg>
</div>
<script type="application/json" id="crossent-data">{_data(ex, digits, lang)}</script>
<script>{_asset("page.js")}</script>
</body>
</html>
"""


def write_html(
    ex: Explanation, path: str | os.PathLike[str], *, digits: int = 3, lang: str = "en"
) -> Path:
    """Write :func:`render_html` to ``path`` (UTF-8), atomically.

    Parameters
    ----------
    ex : Explanation
    path : str or os.PathLike
        Its directory must exist.
    digits : int, default 3
    lang : {'en', 'zh'}, default 'en'

    Returns
    -------
    pathlib.Path
    """
    return atomic_write(path, render_html(ex, digits=digits, lang=lang).encode("utf-8"))

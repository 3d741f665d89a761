"""The walk-through as plain text: the steps, one table row per class, the loss, a reading."""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np

from crossent.explain._result import Explanation

__all__ = ["format_number", "format_text"]

_SHADES = " .:-=+*#%@"


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


def _wrap(text: str, indent: str = "   ") -> list[str]:
    return textwrap.wrap(text, width=92, subsequent_indent=indent, break_on_hyphens=False)


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
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: list[str]) -> str:
        cells = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return [line(header), *(line(r) for r in rows)]


def format_text(ex: Explanation, digits: int = 3) -> str:
    """The seed's walk-through of one example, as text.

    Parameters
    ----------
    ex : Explanation
        From :func:`crossent.explain.explain`.
    digits : int, default 3
        Decimals shown.

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
    """
    f = lambda x: format_number(x, digits)  # noqa: E731
    ft = lambda x: format_number(x, digits, tiny=True)  # noqa: E731
    c = ex.n_classes
    out: list[str] = ["Cross-entropy of one example, step by step"]
    if ex.source:
        out.append(ex.source)
    if ex.image is not None:
        out.extend(_image_lines(ex.image))
    scores = ", ".join(f"{n} {_short(s)}" for n, s in zip(ex.classes, ex.scores, strict=True))
    if ex.target_index is not None:
        tgt = f"{ex.target_name} (class {ex.target_index})"
    else:
        assert ex.target_probs is not None
        tgt = "the distribution " + ", ".join(
            f"{n} {_short(q)}" for n, q in zip(ex.classes, ex.target_probs, strict=True)
        )
    out += _wrap(f"scores: {scores}; target: {tgt}", indent="  ")
    opts = []
    if ex.weight is not None:
        opts.append("class weights " + ", ".join(_short(w) for w in ex.weight))
    if ex.label_smoothing:
        opts.append(f"label smoothing {_short(ex.label_smoothing)}")
    if ex.temperature != 1.0:
        opts.append(f"temperature {_short(ex.temperature)}")
    if ex.softcap is not None:
        opts.append(f"soft-cap {_short(ex.softcap)}")
    if ex.z_loss:
        opts.append(f"z-loss {_short(ex.z_loss)}")
    if opts:
        out.append("options: " + "; ".join(opts))
    out.append("")

    # the steps
    transformed = ex.temperature != 1.0 or ex.softcap is not None
    step = 1
    if transformed:
        how = []
        if ex.temperature != 1.0:
            how.append(f"divided by the temperature {_short(ex.temperature)}")
        if ex.softcap is not None:
            how.append(f"soft-capped to z = {_short(ex.softcap)}·tanh(z/{_short(ex.softcap)})")
        out += _wrap(f"{step}. Transform: the scores are {' and '.join(how)} (column z).")
        step += 1
    src = "z" if transformed else "score"
    out += _wrap(
        f"{step}. Shift: subtract the largest {src}, {_short(ex.shift)}, from every {src}."
        f" Softmax is unchanged, and exp cannot overflow: exp(10000) is inf in float64, but"
        f" exp(10000 - 10000) = 1."
    )
    step += 1
    out += _wrap(
        f"{step}. Exponentiate and normalize: p = exp(shifted) / sum, with sum = "
        f"{f(ex.sum_exp)}; every p lies between 0 and 1, and they add up to 1."
    )
    step += 1
    plain_target = ex.target_index is not None and ex.label_smoothing == 0.0
    if plain_target and ex.weight is None:
        out += _wrap(f"{step}. Loss: -log p of the target class; its gradient is p - y.")
    else:
        out += _wrap(
            f"{step}. Loss: H(q, p) = -sum of w·q·log p over the classes (column w·q·(-log p))"
            + (f" plus the z-loss {_short(ex.z_loss)}·lse²" if ex.z_loss else "")
            + "; dloss/ds is its gradient."
        )
    out.append("")

    # the table
    header = ["class", "score"]
    if transformed:
        header.append("z")
    header += ["shifted", "exp", "p", "-log p"]
    if ex.weight is not None:
        header.append("w")
    header.append("target" if ex.label_smoothing == 0.0 else "q (smoothed)")
    show_terms = not (plain_target and ex.weight is None)
    if show_terms:
        header.append("w·q·(-log p)")
    header.append("p - y" if ex.plain else "dloss/ds")
    rows = []
    for i in range(c):
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
    total = ["sum", ""] + ([""] if transformed else [])
    total += ["", f(ex.sum_exp), f(float(np.sum(ex.probs))), ""]
    if ex.weight is not None:
        total.append("")
    qsum = float(np.sum(ex.target_dist))
    total.append(str(round(qsum)) if plain_target else f(qsum))
    if show_terms:
        total.append(f(float(np.sum(ex.terms))))
    total.append(f(float(np.sum(ex.grad))))
    rows.append(total)
    out.extend(_table(header, rows, left=1))
    out.append("")

    # the loss
    if plain_target and ex.weight is None and not ex.z_loss:
        y = ex.target_index
        assert y is not None
        out.append(f"loss = -log p({ex.classes[y]}) = -log {ft(ex.probs[y])} = {f(ex.loss)}")
        if ex.probs[y] == 0.0:
            out += _wrap(
                f"(p({ex.classes[y]}) underflows to 0 in float64, yet the loss is finite: -log p "
                f"= log(sum) - shifted score = {f(np.log(ex.sum_exp))} + "
                f"{f(-ex.shifted[y])}, computed by log_softmax without ever taking log(0).)",
                indent=" ",
            )
    else:
        data = f(float(np.sum(ex.terms)))
        if ex.z_loss:
            out.append(
                f"loss = sum of w·q·(-log p) + z-loss·lse² = {data} + {_short(ex.z_loss)}"
                f"·{f(ex.lse)}² = {data} + {f(ex.z_term)} = {f(ex.loss)}"
            )
        else:
            out.append(f"loss = sum of w·q·(-log p) = {f(ex.loss)}")
    if ex.target_index is not None and ex.weight is not None and ex.loss != ex.mean_loss:
        wy = ex.weight[ex.target_index]
        out += _wrap(
            f"(as a batch of one with reduction='mean', PyTorch's default, the loss is divided "
            f"by the target's weight {_short(wy)}: {f(ex.mean_loss)})",
            indent=" ",
        )
    if ex.penalty is not None:
        pt = ex.penalty
        if pt.weights.size <= 8:
            ws = ", ".join(_short(w) for w in pt.weights)
        else:
            ws = f"the model's {pt.weights.size} weights"
        what = {
            "l1": "alpha·sum|w|",
            "l2": "alpha·½·sum w²",
            "elasticnet": f"alpha·({_short(pt.l1_ratio)}·sum|w| + ½·{_short(1 - pt.l1_ratio)}"
            "·sum w²)",
        }[pt.kind]
        out += _wrap(
            f"regularization ({pt.kind.upper() if pt.kind != 'elasticnet' else 'elastic net'}"
            f", alpha = {pt.alpha:g}, w = {ws}): {what} = {f(pt.value)}",
            indent="  ",
        )
        assert ex.objective is not None
        out.append(
            f"objective = loss term + regularization term = {f(ex.loss)} + {f(pt.value)} = "
            f"{f(ex.objective)}"
        )
    out.append("")
    out += _wrap(ex.reading, indent="")
    return "\n".join(out)

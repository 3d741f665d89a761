"""The walk-through as a self-contained interactive page (no network, no external files).

The page opens on the library's numbers (rendered into the HTML by Python); when a score, the
target or the temperature changes, a small script recomputes the same formulas in the browser.
The tests drive it in headless Chromium and check that the numbers it then shows equal
:func:`crossent.cross_entropy`'s.
"""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from crossent._files import atomic_write
from crossent.explain._result import Explanation
from crossent.explain._text import format_number

__all__ = ["render_html", "write_html"]

_CSS = """
:root { --target: #d62728; --bar: #1f77b4; --ink: #222; --muted: #666; --line: #ddd; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); max-width: 980px; margin: 24px auto; padding: 0 16px; }
h1 { font-size: 1.45em; margin: 0 0 4px; }
p.lead { color: var(--muted); margin: 0 0 16px; }
table { border-collapse: collapse; width: 100%; }
th, td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: right;
  font-variant-numeric: tabular-nums; white-space: nowrap; }
th { font-weight: 600; font-size: 0.9em; color: var(--muted); }
td.name, th.name { text-align: left; }
tr.target td.name { color: var(--target); font-weight: 700; }
input[type=range] { width: 120px; vertical-align: middle; }
input[type=number] { width: 84px; font: inherit; }
input.invalid { outline: 2px solid var(--target); }
.bar { position: relative; width: 110px; height: 14px; background: #f1f1f1; }
.bar > div { position: absolute; left: 0; top: 0; bottom: 0; background: var(--bar); }
tr.target .bar > div { background: var(--target); }
.panel { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; margin-top: 16px; }
.panel > div { flex: 1 1 360px; }
.result { font-size: 1.25em; margin: 12px 0 4px; }
.result output { font-weight: 700; }
.controls label { margin-right: 18px; }
svg text { font: 12px system-ui, sans-serif; fill: var(--ink); }
svg text.label { paint-order: stroke; stroke: #fff; stroke-width: 3px; }
.note { color: var(--muted); font-size: 0.9em; }
"""

# The script recomputes what crossent.explain.explain computes, with the same formulas
# (see crossent.cross_entropy's documentation); the tests check it against the library.
_JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("crossent-data").textContent);
  var C = D.classes.length, digits = D.digits;
  var $ = function (id) { return document.getElementById(id); };

  function fmt(x, tiny) {
    if (tiny && x !== 0 && Math.abs(x) < 0.5 * Math.pow(10, -digits)) {
      // as Python writes it: 1.28e-05, not 1.28e-5
      return x.toExponential(Math.max(digits - 1, 1)).replace(/e([+-])(\d)$/,
        function (_, sign, d) { return "e" + sign + "0" + d; });
    }
    var s = x.toFixed(digits);
    return /^-0\.?0*$/.test(s) ? s.slice(1) : s;
  }
  function g3(x) {
    return Math.abs(x) >= 1000 ? x.toFixed(0) : String(Number(x.toPrecision(3)));
  }

  function compute(s, target, o) {
    var T = o.temperature, cap = o.softcap, i;
    var z = s.map(function (v) {
      var t = v / T;
      return cap ? cap * Math.tanh(t / cap) : t;
    });
    var m = Math.max.apply(null, z);
    var shifted = z.map(function (v) { return v - m; });
    var e = shifted.map(Math.exp);
    var S = 0;
    for (i = 0; i < C; i++) S += e[i];
    var logS = Math.log(S), lse = m + logS;
    var p = e.map(function (v) { return v / S; });
    var logp = shifted.map(function (v) { return v - logS; });
    var base = Array.isArray(target) ? target
      : s.map(function (_, k) { return k === target ? 1 : 0; });
    var q = base.map(function (v) { return (1 - o.eps) * v + o.eps / C; });
    var w = o.weight || s.map(function () { return 1; });
    var loss = 0, wq = 0, terms = [];
    for (i = 0; i < C; i++) {
      var t = w[i] * q[i] === 0 ? 0 : -w[i] * q[i] * logp[i];
      terms.push(t); loss += t; wq += w[i] * q[i];
    }
    loss += o.zloss * lse * lse;
    var grad = p.map(function (pi, k) {
      var gk = (wq + 2 * o.zloss * lse) * pi - w[k] * q[k];
      var th = cap ? Math.tanh(s[k] / (T * cap)) : 0;
      return gk * (1 - th * th) / T;
    });
    var pred = 0;
    for (i = 1; i < C; i++) if (p[i] > p[pred]) pred = i;
    return { z: z, shifted: shifted, exp: e, sum: S, p: p, logp: logp, q: q, terms: terms,
             loss: loss, grad: grad, pred: pred };
  }

  function state() {
    var s = [], ok = true;
    for (var i = 0; i < C; i++) {
      var box = $("num-" + i), v = parseFloat(box.value);
      var good = box.value.trim() !== "" && isFinite(v);
      box.classList.toggle("invalid", !good);
      ok = ok && good;
      s.push(good ? v : NaN);
    }
    var sel = $("target").value;
    var target = sel === "dist" ? D.target_probs : parseInt(sel, 10);
    return { ok: ok, s: s, target: target, o: {
      temperature: parseFloat($("temperature").value), softcap: D.options.softcap,
      eps: parseFloat($("smoothing").value), zloss: D.options.z_loss,
      weight: D.options.weight } };
  }

  function reading(r, st) {
    var o = st.o;
    var plain = o.temperature === 1 && o.eps === 0 && !o.weight && !o.zloss && !o.softcap;
    var top = D.classes[r.pred], i;
    if (Array.isArray(st.target)) {
      var best = 0;
      for (i = 1; i < C; i++) if (st.target[i] > st.target[best]) best = i;
      var phrase = r.pred !== best ? "wrong: not the target's most likely class"
        : r.p[best] >= 0.9 ? "right and confident" : "right but unsure";
      if (plain) {
        var H = 0;
        for (i = 0; i < C; i++) if (st.target[i] > 0) H -= st.target[i] * Math.log(st.target[i]);
        return "The target spreads its probability over the classes, so even a perfect "
          + "prediction would cost its entropy H(q) = " + g3(H) + "; this one costs "
          + g3(r.loss) + ", " + g3(r.loss - H) + " more (the KL divergence from q to p), "
          + "and its top class is " + top + " (" + phrase + ").";
      }
      return "The target spreads its probability over the classes; this prediction costs "
        + g3(r.loss) + ", and its top class is " + top + " (" + phrase + ").";
    }
    var y = st.target, name = D.classes[y], py = g3(r.p[y]);
    if (r.pred === y && r.p[y] >= 0.9) {
      return "Right and confident: the model gives " + name + " p = " + py
        + ", so the loss is small (" + g3(r.loss) + ")"
        + (plain ? "; it reaches 0 only at p = 1." : ".");
    }
    if (r.pred === y) {
      return "Right but unsure: " + name + " has the largest probability, yet only p = "
        + py + ", so the loss (" + g3(r.loss) + ") is larger than a confident answer's; "
        + "it falls as p rises toward 1.";
    }
    return "Wrong: the model prefers " + top + " (p = " + g3(r.p[r.pred])
      + ") and gives " + name + " only p = " + py + ", so the loss is large ("
      + g3(r.loss) + "); -log p grows without bound as p falls toward 0.";
  }

  var SVG = "http://www.w3.org/2000/svg";
  var W = 440, H = 300, L = 46, R = 14, TOP = 14, B = 40;
  function el(name, attrs, text) {
    var n = document.createElementNS(SVG, name);
    for (var k in attrs) n.setAttribute(k, attrs[k]);
    if (text !== undefined) n.textContent = text;
    return n;
  }
  function drawCurve(r, st) {
    var svg = $("curve");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var idx = [];
    if (Array.isArray(st.target)) {
      for (var i = 0; i < C; i++) if (r.q[i] > 0) idx.push(i);
    } else { idx.push(st.target); }
    var ymax = 5;
    idx.forEach(function (k) { ymax = Math.max(ymax, -1.2 * r.logp[k]); });
    var X = function (x) { return L + x * (W - L - R); };
    var Y = function (y) { return H - B - Math.min(y, ymax) / ymax * (H - B - TOP); };
    svg.appendChild(el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#444" }));
    svg.appendChild(el("line", { x1: L, y1: TOP, x2: L, y2: H - B, stroke: "#444" }));
    for (var t = 0; t <= 5; t++) {
      var xv = t / 5, yv = ymax * t / 5;
      svg.appendChild(el("text", { x: X(xv), y: H - B + 16, "text-anchor": "middle" },
        xv.toFixed(1)));
      svg.appendChild(el("text", { x: L - 6, y: Y(yv) + 4, "text-anchor": "end" },
        g3(yv)));
    }
    svg.appendChild(el("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" },
      Array.isArray(st.target) ? "p of a class" : "p of the target class"));
    svg.appendChild(el("text", { x: 12, y: (TOP + H - B) / 2, "text-anchor": "middle",
      transform: "rotate(-90 12 " + (TOP + H - B) / 2 + ")" }, "loss -log p"));
    var d = "", x0 = Math.exp(-ymax);
    for (var j = 0; j <= 400; j++) {
      var x = x0 * Math.pow(1 / x0, j / 400);
      d += (j ? " L " : "M ") + X(x).toFixed(2) + " " + Y(-Math.log(x)).toFixed(2);
    }
    svg.appendChild(el("path", { d: d, fill: "none", stroke: "#111", "stroke-width": 2 }));
    idx.forEach(function (k, n) {
      var px = X(r.p[k]), py = Y(-r.logp[k]);
      svg.appendChild(el("line", { x1: px, y1: py, x2: px, y2: H - B, stroke: "#d62728",
        "stroke-dasharray": "3 3" }));
      svg.appendChild(el("circle", { cx: px, cy: py, r: 6, fill: "#d62728",
        "class": "point", "data-class": D.classes[k] }));
      // the legend, top right, where the curve never goes
      var ly = TOP + 14 + 18 * n;
      svg.appendChild(el("circle", { cx: W - R - 8, cy: ly - 4, r: 5, fill: "#d62728" }));
      svg.appendChild(el("text", { x: W - R - 18, y: ly, "text-anchor": "end",
        "class": "label" },
        D.classes[k] + ": p = " + fmt(r.p[k]) + ", -log p = " + fmt(-r.logp[k])));
    });
  }

  function update() {
    var st = state();
    $("temperature-value").textContent = String(st.o.temperature);
    $("smoothing-value").textContent = String(st.o.eps);
    if (!st.ok) { $("loss").textContent = "?"; return; }
    var r = compute(st.s, st.target, st.o);
    for (var i = 0; i < C; i++) {
      var row = $("row-" + i);
      row.classList.toggle("target", !Array.isArray(st.target) && st.target === i);
      $("z-" + i).textContent = fmt(r.z[i]);
      $("shifted-" + i).textContent = fmt(r.shifted[i]);
      $("exp-" + i).textContent = fmt(r.exp[i], true);
      $("p-" + i).textContent = fmt(r.p[i], true);
      $("bar-" + i).style.width = (100 * r.p[i]).toFixed(2) + "%";
      $("nlp-" + i).textContent = fmt(-r.logp[i]);
      $("q-" + i).textContent = fmt(r.q[i]);
      $("grad-" + i).textContent = fmt(r.grad[i]);
    }
    $("sum").textContent = fmt(r.sum);
    $("loss").textContent = fmt(r.loss);
    if (D.penalty) $("objective").textContent = fmt(r.loss + D.penalty);
    $("reading").textContent = reading(r, st);
    drawCurve(r, st);
  }

  for (var i = 0; i < C; i++) {
    (function (k) {
      var slider = $("score-" + k), box = $("num-" + k);
      slider.addEventListener("input", function () { box.value = slider.value; update(); });
      var typed = function () {
        var v = parseFloat(box.value);
        if (isFinite(v)) slider.value = String(v);
        update();
      };
      box.addEventListener("input", typed);
      box.addEventListener("change", typed);
    })(i);
  }
  ["target", "temperature", "smoothing"].forEach(function (id) {
    $(id).addEventListener("input", update);
    $(id).addEventListener("change", update);
  });
  update();
  document.body.setAttribute("data-ready", "1");
})();
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _data(ex: Explanation, digits: int) -> str:
    data = {
        "classes": list(ex.classes),
        "digits": digits,
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
    return json.dumps(data).replace("</", "<\\/")


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


def render_html(ex: Explanation, *, digits: int = 3) -> str:
    """A self-contained interactive page of the walk-through.

    The page shows the library's numbers for ``ex``; sliders and boxes for each score, the
    target, the temperature and the label smoothing recompute the table (shifted score,
    ``exp``, ``p`` with a bar, ``-log p``, target, gradient), the loss and the point on the
    ``-log`` curve in the browser. It loads nothing from the network: no external scripts,
    styles or fonts.

    Parameters
    ----------
    ex : Explanation
        The initial state (the seed's example for ``explain()``).
    digits : int, default 3
        Decimals shown.

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
    """
    f = lambda x: format_number(x, digits)  # noqa: E731
    ft = lambda x: format_number(x, digits, tiny=True)  # noqa: E731
    lo = math.floor(min(float(ex.scores.min()), 0.0) - 10.0)
    hi = math.ceil(max(float(ex.scores.max()), 0.0) + 10.0)
    rows = []
    for i, name in enumerate(ex.classes):
        cls = ' class="target"' if ex.target_index == i else ""
        s = repr(float(ex.scores[i])).removesuffix(".0")  # exact: 10, 0.1, 2.6349...
        rows.append(
            f'<tr id="row-{i}"{cls}><td class="name">{_e(name)}</td>'
            f'<td><input type="range" id="score-{i}" min="{lo}" max="{hi}" step="0.1" '
            f'value="{s}" aria-label="score of {_e(name)}"> '
            f'<input type="number" id="num-{i}" step="any" value="{s}" '
            f'aria-label="score of {_e(name)} (number)"></td>'
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
    options = []
    if ex.target_probs is not None:
        options.append('<option value="dist" selected>the given distribution q</option>')
    for i, name in enumerate(ex.classes):
        sel = " selected" if ex.target_index == i else ""
        options.append(f'<option value="{i}"{sel}>{_e(name)}</option>')
    fixed = []
    if ex.weight is not None:
        fixed.append("class weights " + ", ".join(f"{w:g}" for w in ex.weight))
    if ex.softcap is not None:
        fixed.append(f"soft-cap {ex.softcap:g}")
    if ex.z_loss:
        fixed.append(f"z-loss {ex.z_loss:g}")
    fixed_html = f'<p class="note">Fixed options: {_e("; ".join(fixed))}.</p>' if fixed else ""
    penalty_html = ""
    if ex.penalty is not None and ex.objective is not None:
        pt = ex.penalty
        penalty_html = (
            f"<p>regularization ({_e(pt.kind)}, alpha {pt.alpha:g}) = "
            f'<span id="penalty">{f(pt.value)}</span>; objective = loss + regularization = '
            f'<output id="objective">{f(ex.objective)}</output></p>'
        )
    source = f'<p class="note">{_e(ex.source)}</p>' if ex.source else ""
    source += _image_svg(ex.image)
    grad_head = "p - y" if ex.plain else "dloss/ds"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>crossent explain: the cross-entropy of one example</title>
<style>{_CSS}</style>
</head>
<body>
<h1>The cross-entropy of one example, step by step</h1>
<p class="lead">Move a score (slider or box), pick the target: softmax turns the scores into
probabilities (after subtracting the largest score, so that exp cannot overflow: exp(10000)
is inf), and the loss is -log p of the target class. Made by <code>crossent explain</code>.</p>
{source}
<div class="controls">
<label>target <select id="target">{"".join(options)}</select></label>
<label>temperature <input type="range" id="temperature" min="0.1" max="5" step="0.1"
 value="{ex.temperature!r}"> <span id="temperature-value">{ex.temperature:g}</span></label>
<label>label smoothing <input type="range" id="smoothing" min="0" max="1" step="0.05"
 value="{ex.label_smoothing!r}"> <span id="smoothing-value">{ex.label_smoothing:g}</span>
</label>
</div>
{fixed_html}
<table>
<thead><tr><th class="name">class</th><th>score</th>
<th title="the scores the softmax sees: score / temperature, soft-capped">z</th>
<th>shifted</th><th>exp</th><th></th><th>p</th><th>-log p</th><th>target q</th>
<th>{grad_head}</th></tr></thead>
<tbody>
{chr(10).join(rows)}
<tr><td class="name">sum</td><td></td><td></td><td></td><td id="sum">{f(ex.sum_exp)}</td>
<td></td><td>1</td><td></td><td></td><td></td></tr>
</tbody>
</table>
<div class="panel">
<div>
<p class="result">loss = <output id="loss">{f(ex.loss)}</output></p>
{penalty_html}
<p id="reading">{_e(ex.reading)}</p>
</div>
<svg id="curve" width="440" height="300" viewBox="0 0 440 300" role="img"
 aria-label="the curve -log(p) with this example's point"></svg>
</div>
<script type="application/json" id="crossent-data">{_data(ex, digits)}</script>
<script>{_JS}</script>
</body>
</html>
"""


def write_html(ex: Explanation, path: str | os.PathLike[str], *, digits: int = 3) -> Path:
    """Write :func:`render_html` to ``path`` (UTF-8), atomically.

    Parameters
    ----------
    ex : Explanation
    path : str or os.PathLike
        Its directory must exist.
    digits : int, default 3

    Returns
    -------
    pathlib.Path
    """
    return atomic_write(path, render_html(ex, digits=digits).encode("utf-8"))

// The interactive page of crossent explain (crossent/explain/_html.py renders it).
// It recomputes what crossent.explain.explain computes, with the same formulas (see
// crossent.cross_entropy); the browser tests check it against the library on a grid.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("crossent-data").textContent);
  var C = D.classes.length, digits = D.digits, lang = D.lang;
  var $ = function (id) { return document.getElementById(id); };

  // the message tables are crossent.explain's (one per language), filled by the same rule
  function msg(key, args) {
    return D.messages[lang][key].replace(/\{(\w+)\}/g, function (_, name) {
      return String(args[name]);
    });
  }
  function applyLang() {
    document.documentElement.lang = lang;
    document.title = msg("page_title", {});
    var nodes = document.querySelectorAll("[data-msg]");
    for (var i = 0; i < nodes.length; i++) {
      var args = JSON.parse(nodes[i].getAttribute("data-args") || "{}");
      nodes[i].textContent = msg(nodes[i].getAttribute("data-msg"), args);
    }
    nodes = document.querySelectorAll("[data-msg-title]");
    for (i = 0; i < nodes.length; i++) {
      nodes[i].setAttribute("title", msg(nodes[i].getAttribute("data-msg-title"), {}));
    }
  }

  function fmt(x, tiny) {
    if (tiny && x !== 0 && Math.abs(x) < 0.5 * Math.pow(10, -digits)) {
      // as Python writes it: 1.28e-05, not 1.28e-5
      return x.toExponential(Math.max(digits - 1, 1)).replace(/e([+-])(\d)$/,
        function (_, sign, d) { return "e" + sign + "0" + d; });
    }
    var s = x.toFixed(digits);
    return /^-0\.?0*$/.test(s) ? s.slice(1) : s;
  }
  // three significant digits as Python's f"{x:.3g}" (f"{x:.0f}" from 1000 on)
  function g3(x) {
    if (Math.abs(x) >= 1000) return x.toFixed(0);
    var r = Number(x.toPrecision(3));
    if (r !== 0 && (Math.abs(r) < 1e-4 || Math.abs(r) >= 1000)) {
      return r.toExponential().replace(/e([+-])(\d)$/, "e$10$2");
    }
    return String(r);
  }

  function compute(s, target, o) {
    var C = s.length, T = o.temperature, cap = o.softcap, i;
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
    var top = D.classes[r.pred], loss = g3(r.loss), i;
    if (Array.isArray(st.target)) {
      var best = 0;
      for (i = 1; i < C; i++) if (st.target[i] > st.target[best]) best = i;
      var verdict = r.pred !== best ? "wrong" : r.p[best] >= D.confident ? "confident" : "unsure";
      var args = { loss: loss, top: top, phrase: msg("verdict_" + verdict, {}) };
      if (!plain) return msg("read_dist", args);
      var H = 0;
      for (i = 0; i < C; i++) if (st.target[i] > 0) H -= st.target[i] * Math.log(st.target[i]);
      args.h = g3(H);
      args.kl = g3(r.loss - H);
      return msg("read_dist_plain", args);
    }
    var y = st.target;
    var a = { name: D.classes[y], p: g3(r.p[y]), loss: loss, top: top, ptop: g3(r.p[r.pred]) };
    if (r.pred === y && r.p[y] >= D.confident) {
      a.end = msg(plain ? "read_confident_end_plain" : "read_confident_end", {});
      return msg("read_confident", a);
    }
    return msg(r.pred === y ? "read_unsure" : "read_wrong", a);
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
      msg(Array.isArray(st.target) ? "curve_xlabel_dist" : "curve_xlabel", {})));
    svg.appendChild(el("text", { x: 12, y: (TOP + H - B) / 2, "text-anchor": "middle",
      transform: "rotate(-90 12 " + (TOP + H - B) / 2 + ")" }, msg("curve_ylabel", {})));
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
        msg("curve_point", { name: D.classes[k], p: fmt(r.p[k]), nlp: fmt(-r.logp[k]) })));
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
  $("lang").addEventListener("change", function () {
    lang = $("lang").value;
    applyLang();
    update();
  });
  // for the tests, which compare these formulas with the library's on a grid
  window.crossent = { compute: compute, fmt: fmt, g3: g3 };
  applyLang();
  update();
  document.body.setAttribute("data-ready", "1");
})();

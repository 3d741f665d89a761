"""The tutorial (docs/tutorial.md, docs/zh/tutorial.md) in one script: it prints the numbers and
draws the pictures of the blog post's path, from the scores [10, 9, 8] to a digit classifier.

    python examples/tutorial.py                       # pictures into ./tutorial-figures
    python examples/tutorial.py --lang zh --out DIR   # Chinese labels (needs a CJK font)

The documentation's pictures are made by this script:
``--out docs/img/tutorial`` and ``--lang zh --out docs/zh/img/tutorial``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import crossent
from crossent.explain import (
    explain,
    format_text,
    plot,
    plot_cases,
    plot_curves,
    plot_sweep,
    plot_templates,
    regularization_sweep,
    save_figure,
    train_with_curves,
)
from crossent.models import MLPClassifier, SoftmaxClassifier

ALPHAS = [1e-4, 1e-3, 1e-2, 3e-2, 1e-1]


def main(out: Path, lang: str = "en", epochs: int = 30) -> None:
    out.mkdir(parents=True, exist_ok=True)

    # 1. loss = data term + regularization; all-zero parameters give log 10 on the digits
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_tr)
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    W, b = np.zeros((10, 64)), np.zeros(10)
    loss, _, _ = crossent.regularized_objective(W, b, X_tr, y_tr, penalty="l2", alpha=0.01)
    print(f"1. all-zero W, b: loss {loss:.4f} = log 10 = {np.log(10):.4f}")
    for _ in range(100):  # plain gradient descent
        loss, dW, db = crossent.regularized_objective(W, b, X_tr, y_tr, penalty="l2", alpha=0.01)
        W -= 0.5 * dW
        b -= 0.5 * db
    acc = np.mean(np.argmax(X_te @ W.T + b, axis=1) == y_te)
    print(f"   after 100 steps: loss {loss:.4f}, test accuracy {acc:.4f}")

    # 2. softmax of the classic example
    scores = np.array([10.0, 9.0, 8.0])
    p = crossent.softmax(scores)
    print(f"2. softmax([10, 9, 8]) = {p.round(4)}; p(cat)/p(dog) = {p[0] / p[1]:.4f} = e")

    # 3. cross-entropy, natural log and log2, and the walk-through
    ce = float(crossent.cross_entropy(scores, 0))
    print(f"3. H(p, q) = -log q(cat) = {ce:.4f} nats = {ce / np.log(2):.4f} bits (log2)")
    ex = explain(scores, "cat")
    print(format_text(ex, lang=lang))
    save_figure(plot(ex, lang=lang), out / "explain.png")

    # 4. the -log(x) curve: confident, unsure, wrong
    cases = [explain([10.0, 5.0, 3.0], "cat"), ex, explain(scores, "horse")]
    print("4. " + ", ".join(f"{c.verdict}: {c.loss:.4f}" for c in cases))
    save_figure(plot_cases(cases, lang=lang), out / "log-curve.png")

    # 5. L1 and L2 on the digits
    sweep = regularization_sweep(X_tr, y_tr, X_te, y_te, ALPHAS, epochs=epochs)
    print("5. alpha     " + "  ".join(f"{a:>7g}" for a in ALPHAS))
    for pen in ("l1", "l2"):
        print(f"   {pen} acc    " + "  ".join(f"{v:7.4f}" for v in sweep.accuracy[pen]))
        # two decimals: one weight of ~640 sits at the L1 threshold and flips with the CPU's SIMD
        # path (AVX2 vs AVX-512 round the last bit differently), moving the third decimal
        print(f"   {pen} zeros  " + "  ".join(f"{v:7.2f}" for v in sweep.zeros[pen]))
    save_figure(plot_sweep(sweep, lang=lang), out / "sweep.png")
    k = ALPHAS.index(3e-2)
    templates = {"L1": sweep.coefs["l1"][k], "L2": sweep.coefs["l2"][k]}
    save_figure(plot_templates(templates, (8, 8), lang=lang), out / "templates.png")

    # 6. a linear model and a small network, with their curves
    linear = SoftmaxClassifier(alpha=1e-3, solver="sgd", max_iter=epochs, random_state=0)
    network = MLPClassifier((100,), alpha=1e-3, max_iter=epochs, random_state=0)
    runs = [
        train_with_curves("linear", linear, X_tr, y_tr, X_te, y_te),
        train_with_curves("network (100,)", network, X_tr, y_tr, X_te, y_te),
    ]
    for r in runs:
        print(f"6. {r.name}: loss {r.loss[-1]:.4f}, test accuracy {r.test_accuracy[-1]:.4f}")
    save_figure(plot_curves(runs, lang=lang), out / "curves.png")
    print(f"pictures in {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tutorial-figures"))
    parser.add_argument("--lang", choices=["en", "zh"], default="en")
    args = parser.parse_args()
    main(args.out, args.lang)

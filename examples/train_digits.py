"""The blog post's classifier, step by step: scores, softmax, cross-entropy + L2, gradient descent.

    python examples/train_digits.py

First a hand-written loop of plain gradient descent on ``y = Wx + b`` using only crossent's core
(``regularized_objective`` gives the loss and its gradients), then the same model and a small
network with the scikit-learn estimators, saved and loaded back.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import crossent
from crossent.io import load_model, save_model
from crossent.models import MLPClassifier, SoftmaxClassifier


def main() -> None:
    X, y = load_digits(return_X_y=True)  # 1797 images of 8×8 pixels, labels 0–9
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_tr)  # fitted on the training split only
    Z_tr, Z_te = scaler.transform(X_tr), scaler.transform(X_te)

    # 1. By hand: W (10, 64) and b (10,), loss = mean CE + alpha·½‖W‖², full-batch descent.
    W, b, alpha, lr = np.zeros((10, 64)), np.zeros(10), 1e-3, 0.5
    for step in range(201):
        loss, dW, db = crossent.regularized_objective(W, b, Z_tr, y_tr, penalty="l2", alpha=alpha)
        W -= lr * dW  # gradient descent: the gradients come from the core
        b -= lr * db
        if step % 50 == 0:
            acc = np.mean(np.argmax(Z_te @ W.T + b, axis=1) == y_te)
            print(f"step {step:3d}  loss {loss:.4f}  test accuracy {acc:.4f}")
    # step 0 loss is log(10) = 2.3026: uniform scores, the cs231n sanity check

    # 2. The estimators: the same objective solved by L-BFGS, and a ReLU network.
    linear = make_pipeline(StandardScaler(), SoftmaxClassifier(alpha=1 / len(X_tr)))
    mlp = make_pipeline(StandardScaler(), MLPClassifier((100,), random_state=0))
    for name, model in (("linear", linear), ("mlp", mlp)):
        model.fit(X_tr, y_tr)
        print(
            f"{name:6s}  test accuracy {model.score(X_te, y_te):.4f}  "
            f"({model[-1].n_iter_} iterations)"
        )

    # 3. Save (npz + JSON, no pickle) and load back: the same probabilities on raw pixels.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "linear.npz"
        save_model(linear, path)
        back = load_model(path)
        same = np.array_equal(back.predict_proba(X_te), linear.predict_proba(X_te))
        print(f"saved {path.stat().st_size} bytes; loaded model agrees: {same}")


if __name__ == "__main__":
    main()

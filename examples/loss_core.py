"""The classic example with the NumPy core: scores -> softmax -> cross-entropy -> gradient.

Run: ``python examples/loss_core.py``
"""

import numpy as np

import crossent

scores = np.array([10.0, 9.0, 8.0])  # cat, dog, horse: the image is a cat (class 0)
probs = crossent.softmax(scores)
print("probabilities:", probs.round(4))  # [0.6652 0.2447 0.09  ]

loss, grad = crossent.cross_entropy_with_grad(scores, 0)
print(f"loss = -log({probs[0]:.4f}) = {float(loss):.4f}")  # 0.4076
print("gradient p - y:", grad.round(4))

# the blog post's objective: data loss + regularization, for a linear model y = Wx + b
rng = np.random.default_rng(0)
X = rng.normal(size=(32, 4))  # (N, D)
y = rng.integers(0, 3, size=32)  # (N,)
W, b = rng.normal(size=(3, 4)) * 0.1, np.zeros(3)  # (C, D), (C,)
for penalty in ("l2", "l1"):
    J, dW, db = crossent.regularized_objective(W, b, X, y, penalty=penalty, alpha=0.1)
    data = float(crossent.cross_entropy(X @ W.T + b, y))
    print(f"{penalty}: objective {J:.4f} = data loss {data:.4f} + penalty {J - data:.4f}")

# masked classes and an all-ignored batch: finite, where PyTorch gives NaN
masked = np.array([[2.0, -np.inf, 0.5]])
smoothed = crossent.cross_entropy(masked, [0], label_smoothing=0.1)
print("masked-class loss with smoothing:", round(float(smoothed), 4))
print("all-ignored mean:", float(crossent.cross_entropy(np.zeros((2, 3)), [-100, -100])))

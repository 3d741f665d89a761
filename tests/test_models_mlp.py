"""The network's forward/backward pairs, checked against finite differences and PyTorch."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

import crossent
from crossent.models import MLPClassifier, SoftmaxClassifier
from crossent.models._mlp import (
    dense_backward,
    dense_forward,
    mlp_backward,
    mlp_forward,
    relu_backward,
    relu_forward,
)
from numgrad import numerical_grad


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_dense_backward_matches_finite_differences(rng):
    x, W, b = rng.normal(size=(4, 3)), rng.normal(size=(5, 3)), rng.normal(size=5)
    dout = rng.normal(size=(4, 5))
    out, cache = dense_forward(x, W, b)
    np.testing.assert_allclose(out, x @ W.T + b)
    dx, dW, db = dense_backward(dout, cache)

    def f(_):
        return float(np.sum(dense_forward(x, W, b)[0] * dout))

    for analytic, param in ((dx, x), (dW, W), (db, b)):
        np.testing.assert_allclose(analytic, numerical_grad(f, param), rtol=1e-6, atol=1e-8)


def test_relu_backward_matches_finite_differences(rng):
    z = rng.normal(size=(6, 4))
    z[np.abs(z) < 1e-3] = 0.5  # keep away from the kink
    dout = rng.normal(size=z.shape)
    out, mask = relu_forward(z)
    np.testing.assert_array_equal(out, np.maximum(z, 0))
    num = numerical_grad(lambda _: float(np.sum(relu_forward(z)[0] * dout)), z)
    np.testing.assert_allclose(relu_backward(dout, mask), num, atol=1e-8)


def _network(rng, sizes):
    params = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        params += [rng.normal(size=(fan_out, fan_in)), rng.normal(size=fan_out)]
    return params


@pytest.mark.parametrize("sizes", [(3, 4), (3, 5, 4), (3, 6, 5, 4)])
def test_backprop_through_the_network_matches_finite_differences(rng, sizes):
    X, y = rng.normal(size=(7, sizes[0])), rng.integers(0, sizes[-1], size=7)
    params = _network(rng, sizes)
    scores, caches = mlp_forward(params, X)
    assert scores.shape == (7, sizes[-1])
    _, dscores = crossent.cross_entropy_with_grad(scores, y)
    grads = mlp_backward(dscores, caches)
    assert [g.shape for g in grads] == [p.shape for p in params]

    def loss(_):
        return float(crossent.cross_entropy(mlp_forward(params, X)[0], y))

    for g, p in zip(grads, params, strict=True):
        np.testing.assert_allclose(g, numerical_grad(loss, p), rtol=1e-5, atol=1e-8)


def test_backprop_matches_pytorch_autograd(rng):
    torch = pytest.importorskip("torch")
    X, y = rng.normal(size=(9, 4)), rng.integers(0, 3, size=9)
    params = _network(rng, (4, 8, 6, 3))
    scores, caches = mlp_forward(params, X)
    _, dscores = crossent.cross_entropy_with_grad(scores, y, label_smoothing=0.1)
    grads = mlp_backward(dscores, caches)

    tp = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params]
    a = torch.tensor(X)
    for i in range(0, len(tp), 2):
        a = a @ tp[i].T + tp[i + 1]
        if i < len(tp) - 2:
            a = torch.relu(a)
    loss = torch.nn.functional.cross_entropy(a, torch.tensor(y), label_smoothing=0.1)
    loss.backward()
    np.testing.assert_allclose(a.detach().numpy(), scores, rtol=1e-12)
    for g, t in zip(grads, tp, strict=True):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_mlp_learns_xor_which_a_linear_model_cannot():
    X = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]] * 10)
    y = np.array([0, 0, 1, 1] * 10)
    clf = MLPClassifier((16,), solver="lbfgs", max_iter=2000, random_state=0)
    assert clf.fit(X, y).score(X, y) == 1.0
    assert SoftmaxClassifier().fit(X, y).score(X, y) <= 0.75


def test_layer_attributes_and_initial_loss_near_log_c():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(200, 20)), rng.integers(0, 10, size=200)
    clf = MLPClassifier((32, 16), max_iter=1, random_state=0)
    with pytest.warns(ConvergenceWarning):  # one epoch does not converge
        clf.fit(X, y)
    assert [W.shape for W in clf.coefs_] == [(32, 20), (16, 32), (10, 16)]
    assert [b.shape for b in clf.intercepts_] == [(32,), (16,), (10,)]
    assert clf.coef_ is clf.coefs_[-1] and clf.intercept_ is clf.intercepts_[-1]
    fresh = MLPClassifier((32, 16), random_state=0)
    fresh.classes_ = np.arange(10)
    fresh._initialize(20, np.random.default_rng(0), "adam")
    first = crossent.cross_entropy(fresh.decision_function(X), y)
    assert abs(first - np.log(10)) < 0.5  # cs231n's sanity check: about -log(1/C)


def test_mlp_sgd_with_momentum_and_l1(rng):
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=300, centers=4, n_features=6, random_state=0)
    clf = MLPClassifier(
        (16,),
        penalty="l1",
        alpha=0.05,
        solver="sgd",
        learning_rate_init=0.01,
        random_state=0,
        max_iter=30,
        tol=0.0,
        n_iter_no_change=30,
    )
    with pytest.warns(ConvergenceWarning):
        clf.fit(X, y)
    assert clf.score(X, y) > 0.95
    assert any((W == 0).any() for W in clf.coefs_)  # the proximal step zeroes weights


def test_the_example_script_runs(capsys):
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "train_digits.py"
    runpy.run_path(str(script), run_name="__main__")
    out = capsys.readouterr().out
    assert "step   0  loss 2.3026" in out  # log(10): the initial-loss sanity check
    assert "loaded model agrees: True" in out


def test_lbfgs_takes_an_l1_penalty_with_exact_zeros():
    """L-BFGS handles L1 by the split W = W⁺ − W⁻ (it used to refuse any non-smooth penalty)."""
    from sklearn.datasets import make_blobs

    from crossent import reference

    X, y = make_blobs(n_samples=120, centers=3, n_features=5, random_state=0)
    alpha = 0.02
    clf = MLPClassifier((6,), penalty="l1", alpha=alpha, solver="lbfgs", random_state=0)
    clf.set_params(max_iter=3000, tol=1e-7).fit(X, y)
    W1, W2 = clf.coefs_
    assert np.mean(W1 == 0) > 0.3 and np.mean(W2 == 0) > 0.1
    H = np.maximum(X @ W1.T + clf.intercepts_[0], 0.0)
    S = H @ W2.T + clf.intercepts_[1]
    J = reference.cross_entropy(S, y)
    J += alpha * (np.abs(W1).sum() + np.abs(W2).sum())
    assert clf.loss_curve_[-1] == pytest.approx(J, rel=1e-9)

"""Finite-difference checks for what PyTorch lacks: z-loss, soft-capping, temperature, penalties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import crossent
from numgrad import numerical_grad

OPTIONS = [
    dict(z_loss=z, softcap=s, temperature=t, label_smoothing=e, weight=w)
    for z, s, t, e, w in itertools.product(
        [0.0, 1e-2], [None, 2.5], [1.0, 0.7], [0.0, 0.2], [None, [0.5, 1.0, 2.0, 1.5]]
    )
    if (z, s, t) != (0.0, None, 1.0)
]


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_extras_gradient_matches_finite_differences(opts, kind, reduction):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4)) * 3
    if kind == "index":
        target = np.array([0, 3, -100])
    else:
        q = rng.random(size=(3, 4))
        target = q / q.sum(axis=1, keepdims=True)
    opts = dict(opts, reduction=reduction)
    grad = crossent.cross_entropy_grad(x, target, **opts)
    num = numerical_grad(lambda v: float(crossent.cross_entropy(v, target, **opts)), x.copy())
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)


def test_none_gradient_is_per_row_gradient():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 5))
    y = np.array([1, 0, 4, 2])
    opts = dict(z_loss=0.1, softcap=3.0, temperature=1.3, label_smoothing=0.1)
    g = crossent.cross_entropy_grad(x, y, reduction="none", **opts)
    for n in range(4):
        num = numerical_grad(
            lambda v, n=n: float(crossent.cross_entropy(v, y, reduction="none", **opts)[n]),
            x.copy(),
        )
        np.testing.assert_allclose(g[n], num[n], rtol=1e-6, atol=1e-9)
        assert np.abs(np.delete(num, n, axis=0)).max() < 1e-9  # other rows do not depend on row n


def test_z_loss_value():
    x = np.array([[1.0, 2.0, 3.0]])
    lse = np.log(np.exp(x).sum())
    plain = crossent.cross_entropy(x, [2])
    assert crossent.cross_entropy(x, [2], z_loss=0.5) == pytest.approx(plain + 0.5 * lse**2)
    # REFERENCE.md: gradient (1 + 2λ·log Z)·p − q
    p = crossent.softmax(x)
    np.testing.assert_allclose(
        crossent.cross_entropy_grad(x, [2], z_loss=0.5), (1 + 2 * 0.5 * lse) * p - [0, 0, 1]
    )


def test_softcap_and_temperature_values():
    x = np.array([[10.0, -30.0, 0.5]])
    cap, t = 5.0, 2.0
    capped = cap * np.tanh(x / t / cap)
    assert crossent.cross_entropy(x, [1], softcap=cap, temperature=t) == pytest.approx(
        crossent.cross_entropy(capped, [1])
    )
    assert crossent.cross_entropy(x, [1], temperature=t) == pytest.approx(
        crossent.cross_entropy(x / t, [1])
    )
    np.testing.assert_allclose(crossent.softmax(x, temperature=t), crossent.softmax(x / t))
    np.testing.assert_allclose(crossent.log_softmax(x, temperature=t), crossent.log_softmax(x / t))


@pytest.mark.parametrize(
    ("fn", "grad_fn", "args"),
    [
        (crossent.l1_penalty, crossent.l1_penalty_grad, (0.3,)),
        (crossent.l2_penalty, crossent.l2_penalty_grad, (0.3,)),
        (crossent.elastic_net_penalty, crossent.elastic_net_penalty_grad, (0.3, 0.4)),
    ],
)
def test_penalty_gradients(fn, grad_fn, args):
    rng = np.random.default_rng(2)
    w = rng.normal(size=(3, 4))
    w[np.abs(w) < 0.05] = 0.5  # L1 is checked away from 0
    num = numerical_grad(lambda v: fn(v, *args), w.copy())
    np.testing.assert_allclose(grad_fn(w, *args), num, rtol=1e-6, atol=1e-9)


def test_penalty_values_and_subgradient_at_zero():
    w = np.array([[1.0, -2.0], [0.0, 3.0]])
    assert crossent.l1_penalty(w, 2.0) == 12.0
    assert crossent.l2_penalty(w, 2.0) == 14.0  # ½·2·14
    assert crossent.elastic_net_penalty(w, 2.0, 1.0) == 12.0
    assert crossent.elastic_net_penalty(w, 2.0, 0.0) == 14.0
    assert crossent.elastic_net_penalty(w, 2.0, 0.25) == pytest.approx(0.25 * 12 + 0.75 * 14)
    assert crossent.l1_penalty_grad(w, 2.0)[1, 0] == 0.0
    assert crossent.penalty([w, w], "l1", 1.0) == 12.0
    assert crossent.penalty(w, None, 1.0) == 0.0
    grads = crossent.penalty_grad([w, w[0]], "l2", 0.5)
    np.testing.assert_array_equal(grads[1], 0.5 * w[0])


@pytest.mark.parametrize("penalty", ["l2", "l1", "elasticnet", None])
def test_regularized_objective_gradient(penalty):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(8, 3))
    y = rng.integers(0, 4, size=8)
    W = rng.normal(size=(4, 3))
    b = rng.normal(size=4)
    opts = dict(penalty=penalty, alpha=0.3, l1_ratio=0.3, label_smoothing=0.05)
    J, dW, db = crossent.regularized_objective(W, b, X, y, **opts)
    assert (
        pytest.approx(
            float(crossent.cross_entropy(X @ W.T + b, y, label_smoothing=0.05))
            + crossent.penalty(W, penalty, 0.3, 0.3)
        )
        == J
    )
    np.testing.assert_allclose(
        dW,
        numerical_grad(lambda v: crossent.regularized_objective(v, b, X, y, **opts)[0], W.copy()),
        rtol=1e-6,
        atol=1e-9,
    )
    np.testing.assert_allclose(
        db,
        numerical_grad(lambda v: crossent.regularized_objective(W, v, X, y, **opts)[0], b.copy()),
        rtol=1e-6,
        atol=1e-9,
    )

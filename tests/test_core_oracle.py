"""Oracle tests: crossent's loss and gradient against torch.nn.functional in float64."""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest

import crossent

torch = pytest.importorskip("torch")
F = torch.nn.functional

LAYOUTS = {
    # name: (logits shape, class axis)
    "2d": ((7, 5), 1),
    "kdim": ((3, 4, 2, 5), 1),  # PyTorch's (N, C, d1, d2)
    "one-class": ((6, 1), 1),
}


def _case(layout: str, kind: str, weighted: bool, ignore: bool, scale: float, seed: int):
    rng = np.random.default_rng(seed)
    shape, axis = LAYOUTS[layout]
    c = shape[axis]
    x = rng.normal(size=shape) * scale
    idx_shape = shape[:axis] + shape[axis + 1 :]
    if kind == "index":
        target = rng.integers(0, c, size=idx_shape)
        if ignore:
            flat = target.reshape(-1)
            flat[:: max(2, flat.size // 3)] = -100
    else:
        q = rng.random(size=shape) + 0.01
        q[rng.random(size=shape) < 0.3] = 0.0  # some exact zeros
        q += (q.sum(axis=axis, keepdims=True) == 0) * 1.0
        target = q / q.sum(axis=axis, keepdims=True)
    weight = rng.random(c) * 2 + 0.1 if weighted else None
    return x, target, axis, weight


def _torch_loss_and_grad(x, target, weight, reduction, eps):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    tt = torch.tensor(target)
    wt = None if weight is None else torch.tensor(weight, dtype=torch.float64)
    loss = F.cross_entropy(xt, tt, weight=wt, reduction=reduction, label_smoothing=eps)
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


GRID = [
    (layout, kind, weighted, ignore, reduction, eps, scale)
    for layout, kind, weighted, ignore, reduction, eps, scale in itertools.product(
        LAYOUTS,
        ["index", "prob"],
        [False, True],
        [False, True],
        ["mean", "sum", "none"],
        [0.0, 0.15],
        [1.0, 1e4],
    )
    if not (kind == "prob" and ignore)  # probability targets have no ignore_index
]


@pytest.mark.parametrize(
    ("layout", "kind", "weighted", "ignore", "reduction", "eps", "scale"), GRID
)
def test_matches_torch(layout, kind, weighted, ignore, reduction, eps, scale):
    seed = zlib.crc32(repr((layout, kind, weighted, ignore, reduction, eps, scale)).encode())
    x, target, axis, weight = _case(layout, kind, weighted, ignore, scale, seed)
    ref_loss, ref_grad = _torch_loss_and_grad(x, target, weight, reduction, eps)
    opts = dict(axis=axis, weight=weight, reduction=reduction, label_smoothing=eps)
    loss = crossent.cross_entropy(x, target, **opts)
    grad = crossent.cross_entropy_grad(x, target, **opts)
    loss2, grad2 = crossent.cross_entropy_with_grad(x, target, **opts)
    rtol = 1e-10 if scale == 1.0 else 1e-9
    np.testing.assert_allclose(loss, ref_loss, rtol=rtol, atol=1e-10)
    np.testing.assert_allclose(grad, ref_grad, rtol=rtol, atol=1e-12)
    np.testing.assert_array_equal(loss2, loss)
    np.testing.assert_array_equal(grad2, grad)
    assert grad.shape == x.shape and grad.dtype == np.float64


@pytest.mark.parametrize("seed", range(12))
def test_random_shapes_match_torch(seed):
    rng = np.random.default_rng(seed)
    ndim = int(rng.integers(2, 5))
    shape = tuple(int(s) for s in rng.integers(1, 6, size=ndim))
    x = rng.normal(size=shape) * float(rng.choice([0.1, 1.0, 30.0]))
    c = shape[1]
    target = rng.integers(0, c, size=shape[:1] + shape[2:])
    weight = rng.random(c) + 0.5
    eps = float(rng.choice([0.0, 0.3, 1.0]))
    ref_loss, ref_grad = _torch_loss_and_grad(x, target, weight, "mean", eps)
    loss, grad = crossent.cross_entropy_with_grad(
        x, target, axis=1, weight=weight, label_smoothing=eps
    )
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-14)


def test_reference_worked_example():
    """REFERENCE.md §1, computed by torch 2.13."""
    x = [[2, 1, 0.1], [0.5, 2.5, 0.3], [1, 1, 3]]
    y = [0, 2, -100]
    w = [1.0, 2.0, 3.0]
    assert crossent.cross_entropy(x, y, weight=w) == pytest.approx(1.9192947, abs=1e-7)
    assert crossent.cross_entropy(x, y, weight=w, label_smoothing=0.1) == pytest.approx(
        1.8950526, abs=2e-7
    )
    np.testing.assert_allclose(
        crossent.cross_entropy(x, y, weight=w, label_smoothing=0.1, reduction="none"),
        [0.715400, 6.864810, 0.0],
        atol=1e-6,
    )
    assert crossent.cross_entropy(
        x, y, weight=w, label_smoothing=0.1, reduction="sum"
    ) == pytest.approx(7.5802102, abs=1e-6)


def test_seed_example():
    np.testing.assert_allclose(crossent.softmax([10, 9, 8]), [0.6652, 0.2447, 0.0900], atol=5e-5)
    assert crossent.cross_entropy([10.0, 9.0, 8.0], 0) == pytest.approx(0.4076, abs=5e-5)
    assert crossent.cross_entropy([10.0, 9.0, 8.0], 0) == pytest.approx(-np.log(0.66524096))


def test_one_hot_probabilities_mean_divides_by_n_unlike_weighted_indices():
    """pytorch#40560-style surprise: documented and matched, not 'fixed'."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4))
    y = rng.integers(0, 4, size=6)
    w = np.array([1.0, 2.0, 3.0, 4.0])
    q = np.eye(4)[y]
    ref_idx, _ = _torch_loss_and_grad(x, y, w, "mean", 0.0)
    ref_prob, _ = _torch_loss_and_grad(x, q, w, "mean", 0.0)
    assert crossent.cross_entropy(x, y, weight=w) == pytest.approx(float(ref_idx))
    assert crossent.cross_entropy(x, q, weight=w) == pytest.approx(float(ref_prob))
    assert float(ref_idx) != pytest.approx(float(ref_prob))


@pytest.mark.parametrize("fn", ["softmax", "log_softmax", "logsumexp"])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax_family_matches_torch(fn, axis):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 5, 3)) * 50
    xt = torch.tensor(x)
    ref = {
        "softmax": lambda: torch.softmax(xt, dim=axis),
        "log_softmax": lambda: torch.log_softmax(xt, dim=axis),
        "logsumexp": lambda: torch.logsumexp(xt, dim=axis),
    }[fn]().numpy()
    np.testing.assert_allclose(getattr(crossent, fn)(x, axis=axis), ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("with_weights", [False, True])
def test_bce_matches_torch(reduction, with_weights):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 3)) * 20
    y = rng.random(size=(5, 3))
    y[0] = [0.0, 1.0, 1.0]
    w = rng.random((5, 1)) if with_weights else None
    pw = rng.random(3) * 3 if with_weights else None
    xt = torch.tensor(x, requires_grad=True)
    ref = F.binary_cross_entropy_with_logits(
        xt,
        torch.tensor(y),
        weight=None if w is None else torch.tensor(w),
        pos_weight=None if pw is None else torch.tensor(pw),
        reduction=reduction,
    )
    ref.sum().backward()
    opts = dict(weight=w, pos_weight=pw, reduction=reduction)
    np.testing.assert_allclose(
        crossent.binary_cross_entropy_with_logits(x, y, **opts), ref.detach().numpy(), rtol=1e-12
    )
    np.testing.assert_allclose(
        crossent.binary_cross_entropy_with_logits_grad(x, y, **opts),
        xt.grad.numpy(),
        rtol=1e-12,
        atol=1e-15,
    )


def test_bce_stable_for_huge_logits():
    x = np.array([-1e308, -800.0, 800.0, 1e308])
    y = np.array([0.0, 1.0, 0.0, 1.0])
    loss = crossent.binary_cross_entropy_with_logits(x, y, reduction="none")
    np.testing.assert_allclose(loss, [0.0, 800.0, 800.0, 0.0])
    grad = crossent.binary_cross_entropy_with_logits_grad(x, y, reduction="none")
    np.testing.assert_allclose(grad, [0.0, -1.0, 1.0, 0.0])

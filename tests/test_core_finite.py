"""Where PyTorch returns NaN or inf, crossent returns what the mathematics gives."""

from __future__ import annotations

import numpy as np
import pytest

import crossent

torch = pytest.importorskip("torch")
F = torch.nn.functional
NEG = -np.inf


def _torch(x, target, **kw):
    xt = torch.tensor(x, requires_grad=True)
    loss = F.cross_entropy(xt, torch.tensor(target), **kw)
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


def test_all_ignored_mean_is_zero_with_zero_grad():
    x = np.random.default_rng(0).normal(size=(3, 4))
    y = np.full(3, -100)
    ref_loss, _ = _torch(x, y)
    assert np.isnan(ref_loss)  # PyTorch: NaN (pytorch#70348)
    loss, grad = crossent.cross_entropy_with_grad(x, y)
    assert loss == 0.0
    np.testing.assert_array_equal(grad, 0.0)
    loss_w = crossent.cross_entropy(x, y, weight=[1.0, 2.0, 3.0, 4.0], label_smoothing=0.1)
    assert loss_w == 0.0


def test_zero_weight_denominator_is_zero_not_nan():
    x = np.zeros((2, 3))
    loss, grad = crossent.cross_entropy_with_grad(x, [0, 0], weight=[0.0, 1.0, 1.0])
    assert loss == 0.0
    assert np.isfinite(grad).all()


def test_ignored_row_of_all_neg_inf():
    x = np.array([[1.0, 2.0, 0.5], [NEG, NEG, NEG]])
    y = np.array([1, -100])
    _, ref_grad = _torch(x, y)
    assert np.isnan(ref_grad).any()  # PyTorch: NaN gradient (pytorch#11551)
    for opts in [{}, {"label_smoothing": 0.2}, {"z_loss": 0.1}, {"softcap": 3.0}]:
        loss, grad = crossent.cross_entropy_with_grad(x, y, reduction="none", **opts)
        assert loss[1] == 0.0
        np.testing.assert_array_equal(grad[1], 0.0)
        assert np.isfinite(loss).all() and np.isfinite(grad).all()


def test_non_ignored_row_of_all_neg_inf_is_an_error():
    with pytest.raises(ValueError, match="row of all -inf at row 1"):
        crossent.cross_entropy([[1.0, 2.0], [NEG, NEG]], [0, 1])


def _unmasked_equivalent(x, mask):
    """The same problem with the masked classes removed."""
    return x[:, ~mask]


def test_masked_logits_index_targets():
    x = np.array([[2.0, NEG, 0.5, 1.0], [0.0, NEG, 3.0, -1.0]])
    y = np.array([0, 2])
    mask = np.isneginf(x[0])
    loss, grad = crossent.cross_entropy_with_grad(x, y)
    ref_loss, ref_grad = _torch(x[:, ~mask], np.array([0, 1]))
    assert loss == pytest.approx(float(ref_loss))
    np.testing.assert_allclose(grad[:, ~mask], ref_grad)
    np.testing.assert_array_equal(grad[:, mask], 0.0)


def test_masked_logits_probability_targets():
    x = np.array([[2.0, NEG, 0.5], [0.0, NEG, 3.0]])
    q = np.array([[0.7, 0.0, 0.3], [0.2, 0.0, 0.8]])
    ref_loss, _ = _torch(x, q)
    assert np.isnan(ref_loss)  # PyTorch: NaN (0 · -inf)
    loss, grad = crossent.cross_entropy_with_grad(x, q)
    mask = np.array([False, True, False])
    exp_loss, exp_grad = _torch(x[:, ~mask], q[:, ~mask])
    assert loss == pytest.approx(float(exp_loss))
    np.testing.assert_allclose(grad[:, ~mask], exp_grad)
    np.testing.assert_array_equal(grad[:, mask], 0.0)


@pytest.mark.parametrize("kind", ["index", "prob"])
def test_masked_logits_with_label_smoothing_spread_over_finite_classes(kind):
    x = np.array([[2.0, NEG, 0.5, 1.0], [0.0, 1.0, 3.0, -1.0]])
    mask = np.array([[False, True, False, False], [False, False, False, False]])
    if kind == "index":
        target = np.array([0, 2])
    else:
        target = np.array([[0.5, 0.0, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]])
    ref_loss, _ = _torch(x, target, label_smoothing=0.1)
    assert np.isinf(ref_loss)  # PyTorch: inf (ε/C lands on a -inf logit)
    loss, grad = crossent.cross_entropy_with_grad(x, target, label_smoothing=0.1, reduction="none")
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    # row 0 equals the same problem over the three finite classes (ε/3 each)
    t0 = target[0] if kind == "index" else target[0][None, ~mask[0]]
    l0, g0 = _torch(x[:1, ~mask[0]], np.array([0]) if kind == "index" else t0,
                    label_smoothing=0.1, reduction="none")  # fmt: skip
    assert loss[0] == pytest.approx(float(l0[0]))
    np.testing.assert_allclose(grad[0, ~mask[0]], g0[0])
    assert grad[0, 1] == 0.0
    # row 1 has no mask: exactly PyTorch
    l1, g1 = _torch(x[1:], target[1:], label_smoothing=0.1, reduction="none")
    assert loss[1] == pytest.approx(float(l1[0]))
    np.testing.assert_allclose(grad[1], g1[0])


@pytest.mark.parametrize("kind", ["index", "prob"])
def test_target_on_masked_class_is_inf_never_nan(kind):
    x = np.array([[2.0, NEG, 0.5]])
    target = np.array([1]) if kind == "index" else np.array([[0.5, 0.5, 0.0]])
    for eps in (0.0, 0.1):
        loss, grad = crossent.cross_entropy_with_grad(x, target, label_smoothing=eps)
        assert loss == np.inf
        assert np.isfinite(grad).all()


def test_float16_mean_of_a_large_batch_is_finite():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100_000, 8)).astype(np.float16) * 4
    y = rng.integers(0, 8, size=100_000)
    loss = crossent.cross_entropy(x, y)
    assert loss.dtype == np.float16 and np.isfinite(loss)
    ref = crossent.cross_entropy(x.astype(np.float64), y)
    assert float(loss) == pytest.approx(ref, rel=1e-3)
    total = crossent.cross_entropy(x, y, reduction="sum")
    assert np.isinf(total)  # the float16 sum itself overflows (> 65504): the mean must not


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_dtype_in_dtype_out(dtype):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3)).astype(dtype)
    y = np.array([0, 1, 2, 1, 0])
    loss, grad = crossent.cross_entropy_with_grad(x, y)
    assert loss.dtype == dtype and grad.dtype == dtype
    assert crossent.cross_entropy(x, y, reduction="none").dtype == dtype
    for fn in (crossent.softmax, crossent.log_softmax, crossent.logsumexp):
        assert fn(x).dtype == dtype
    ref_loss, ref_grad = crossent.cross_entropy_with_grad(x.astype(np.float64), y)
    tol = {np.float16: 2e-3, np.float32: 1e-6, np.float64: 1e-15}[dtype]
    assert float(loss) == pytest.approx(ref_loss, rel=tol)
    np.testing.assert_allclose(grad, ref_grad, rtol=tol * 10, atol=tol)


def test_softmax_family_with_neg_inf():
    x = np.array([[0.0, NEG, 0.0], [NEG, NEG, NEG]])
    np.testing.assert_array_equal(crossent.logsumexp(x), [np.log(2.0), NEG])
    np.testing.assert_array_equal(crossent.softmax(x[:1]), [[0.5, 0.0, 0.5]])
    np.testing.assert_array_equal(crossent.log_softmax(x[:1]), [[-np.log(2.0), NEG, -np.log(2.0)]])
    with pytest.raises(ValueError, match="entirely -inf"):
        crossent.softmax(x)
    with pytest.raises(ValueError, match="entirely -inf"):
        crossent.log_softmax(x)


def test_huge_logits_do_not_overflow():
    x = np.array([[1e4, -1e4, 0.0], [1e308, 1e308, -1e308]])
    loss, grad = crossent.cross_entropy_with_grad(x, [0, 1], reduction="none")
    np.testing.assert_allclose(loss, [0.0, np.log(2.0)], atol=1e-12)
    np.testing.assert_allclose(grad, [[0, 0, 0], [0.5, -0.5, 0]], atol=1e-12)
    np.testing.assert_allclose(crossent.softmax([1e4, 1e4]), [0.5, 0.5])

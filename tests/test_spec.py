"""The loss spec (crossent._spec): the z-term's denominator, num_items, the shared helpers."""

from __future__ import annotations

import numpy as np
import pytest

import crossent
from crossent import _algebra, _spec

torch = pytest.importorskip("torch")
import crossent.torch as ct  # noqa: E402

G = np.random.default_rng(0)
X = G.normal(size=(7, 5)) * 3
Y = np.array([0, 4, -100, 2, 2, -100, 1])
W = np.array([0.5, 2.0, 1.0, 3.0, 0.25])
SCALES = [0.01, 0.5, 1.0, 7.0, 1e3]


def numpy_entry(x, y, **kw):
    loss, grad = crossent.cross_entropy_with_grad(x, y, **kw)
    return float(loss), [grad]


def torch_entry(x, y, weight=None, **kw):
    xt = torch.tensor(x, requires_grad=True)
    w = None if weight is None else torch.tensor(weight)
    loss = ct.cross_entropy(xt, torch.as_tensor(y), w, **kw)
    loss.backward()
    return loss.item(), [xt.grad.numpy()]


def linear_entry(x, y, weight=None, **kw):
    """The logits x as h @ head.T with a random head: gradients of h and of the head."""
    rng = np.random.default_rng(1)
    head = torch.tensor(rng.normal(size=(x.shape[1], 4)), requires_grad=True)
    h = torch.tensor(rng.normal(size=(x.shape[0], 4)), requires_grad=True)
    cw = None if weight is None else torch.tensor(weight)
    loss = ct.linear_cross_entropy(h, head, torch.as_tensor(y), class_weight=cw, chunk_size=3, **kw)
    loss.backward()
    return loss.item(), [h.grad.numpy(), head.grad.numpy()]


def module_entry(x, y, weight=None, num_items=None, **kw):
    xt = torch.tensor(x, requires_grad=True)
    mod = ct.CrossEntropyLoss(None if weight is None else torch.tensor(weight), **kw)
    loss = mod(xt, torch.as_tensor(y), num_items=num_items)
    loss.backward()
    return loss.item(), [xt.grad.numpy()]


ENTRIES = [numpy_entry, torch_entry, linear_entry, module_entry]
ENTRY_IDS = ["numpy", "torch", "linear", "module"]


@pytest.mark.parametrize("entry", ENTRIES, ids=ENTRY_IDS)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_z_loss_mean_does_not_depend_on_the_scale_of_class_weights(entry, smoothing):
    """Issue 9 item 6: weight = c·w gives the same 'mean' loss and gradients for every c > 0."""
    kw = dict(z_loss=0.05, label_smoothing=smoothing, temperature=1.3)
    base_loss, base_grads = entry(X, Y, weight=W, **kw)
    for c in SCALES:
        loss, grads = entry(X, Y, weight=c * W, **kw)
        assert loss == pytest.approx(base_loss, rel=1e-9)
        for g, b in zip(grads, base_grads, strict=True):
            np.testing.assert_allclose(g, b, rtol=1e-8, atol=1e-12)


def test_z_term_is_a_mean_over_positions():
    """The formula: Σ ce / Σ w_y + λ Σ lse² / |V|, from the 'none' losses."""
    lam = 0.05
    rows = crossent.cross_entropy(X, Y, weight=W, reduction="none")
    lse = crossent.logsumexp(X, axis=1)
    valid = Y != -100
    want = rows.sum() / W[Y[valid]].sum() + lam * (lse[valid] ** 2).mean()
    got = crossent.cross_entropy(X, Y, weight=W, z_loss=lam)
    assert float(got) == pytest.approx(want, rel=1e-12)
    # issue 9's example: 10·w no longer changes the loss (it gave 1.9055 vs 1.8749)
    x = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3], [1.0, 1.0, 3.0]])
    w = np.array([1.0, 2.0, 3.0])
    a = crossent.cross_entropy(x, [0, 2, 1], weight=w, z_loss=0.01)
    b = crossent.cross_entropy(x, [0, 2, 1], weight=10 * w, z_loss=0.01)
    assert float(a) == pytest.approx(float(b), rel=1e-12)


@pytest.mark.parametrize("entry", ENTRIES, ids=ENTRY_IDS)
@pytest.mark.parametrize(
    "kw",
    [{}, {"weight": W}, {"z_loss": 0.02, "label_smoothing": 0.1}, {"softcap": 3.0}],
    ids=["plain", "weights", "z_loss", "softcap"],
)
def test_num_items_micro_batches_add_up_to_the_global_mean(entry, kw):
    """Σ over micro-batches of (sum / num_items) is the mean over the whole batch."""
    full_loss, _ = entry(X, Y, **kw)
    valid = Y != -100
    k = float(W[Y[valid]].sum()) if "weight" in kw else float(valid.sum())
    if entry is linear_entry:  # the hidden states are drawn per call: compare sums instead
        got, _ = entry(X, Y, num_items=k, **kw)  # num_items = the batch's own denominator
        assert got == pytest.approx(full_loss, rel=1e-9)
        return
    parts = [slice(0, 2), slice(2, 3), slice(3, 7)]  # uneven, the middle one all ignored
    total = 0.0
    grad = np.zeros_like(X)
    for p in parts:
        loss, (g,) = entry(X[p], Y[p], num_items=k, **kw)
        total += loss
        grad[p] = g
    assert total == pytest.approx(full_loss, rel=1e-9)
    np.testing.assert_allclose(grad, entry(X, Y, **kw)[1][0], rtol=1e-9, atol=1e-13)


def test_num_items_probability_targets_and_tensor_values():
    q = np.abs(G.normal(size=(4, 5)))
    q /= q.sum(axis=1, keepdims=True)
    x = X[:4]
    full = crossent.cross_entropy(x, q, z_loss=0.01)
    parts = crossent.cross_entropy(x[:1], q[:1], z_loss=0.01, num_items=4) + crossent.cross_entropy(
        x[1:], q[1:], z_loss=0.01, num_items=np.array(4)
    )
    assert float(parts) == pytest.approx(float(full), rel=1e-12)
    t = ct.cross_entropy(torch.tensor(x), torch.tensor(q), z_loss=0.01, num_items=torch.tensor(8.0))
    assert t.item() == pytest.approx(float(full) / 2, rel=1e-12)
    # a global batch whose every target is ignored: num_items = 0 gives 0, not NaN
    assert float(crossent.cross_entropy(x, [-100] * 4, num_items=0)) == 0.0


def test_count_items_and_transform_agree_on_numpy_and_torch():
    for w in (None, W):
        a = _spec.count_items(Y, w, -100)
        b = _spec.count_items(torch.tensor(Y), None if w is None else torch.tensor(w), -100)
        assert a == b
    assert _spec.count_items(np.zeros((3, 5)), W, -100) == (3.0, 3.0)
    x = X.copy()
    x[0, 1] = -np.inf
    z = _algebra.transform(x, 1.5, 2.0)[0]
    np.testing.assert_allclose(z, _algebra.transform(torch.tensor(x), 1.5, 2.0)[0].numpy())
    assert z[0, 1] == -np.inf and x[0, 0] != z[0, 0]  # a new array, -inf kept
    np.testing.assert_allclose(z[1], 2.0 * np.tanh(x[1] / 1.5 / 2.0))


def test_return_lse_is_the_engines():
    """return_lse comes from the same pass as the loss, also with the gradient in place."""
    x = torch.tensor(X, requires_grad=True) * 1.0
    _, lse = ct.cross_entropy(x, torch.tensor(Y), return_lse=True, inplace=True, temperature=0.5)
    torch.testing.assert_close(lse, torch.logsumexp(torch.tensor(X) / 0.5, dim=1))


def test_probability_sum_tolerance_per_dtype():
    assert _spec.prob_sum_tolerance(np.float64) == 1e-6
    assert _spec.prob_sum_tolerance(torch.float32) == pytest.approx(2.0**-11.5)
    assert _spec.prob_sum_tolerance(torch.bfloat16) == _spec.prob_sum_tolerance("float16")
    q = torch.tensor([[0.5, 0.5 - 3e-4]])  # within float32's tolerance, not float64's
    ct.cross_entropy(torch.zeros(1, 2), q)
    with pytest.raises(ValueError, match=r"tolerance 1\.0e-06"):
        ct.cross_entropy(torch.zeros(1, 2, dtype=torch.float64), q.double())


def test_lse_of_an_ignored_row_of_all_minus_inf_is_minus_inf():
    x = torch.tensor([[-np.inf] * 3, [0.0, 1.0, 2.0]], requires_grad=True)
    loss, lse = ct.cross_entropy(x, torch.tensor([-100, 1]), return_lse=True, z_loss=0.1)
    assert lse[0] == -np.inf and torch.isfinite(loss)
    loss.backward()
    assert (x.grad[0] == 0).all() and torch.isfinite(x.grad).all()


def test_bfloat16_blocks_run_on_the_engines_one_pool(monkeypatch):
    """The torch CPU path has no pool of its own: its bfloat16 blocks use the engine's."""
    import threading

    from crossent import _engine
    from crossent.torch import _cpu

    monkeypatch.setattr(_cpu, "BF16_BLOCK_ELEMENTS", 40)  # blocks of 4 rows of 10
    monkeypatch.setattr(_engine, "n_threads", lambda: 3)
    seen = set()
    run = _engine.parallel

    def spy(fn, m, workers):
        def wrapped(lo, hi):
            seen.add(threading.current_thread().name)
            fn(lo, hi)

        run(wrapped, m, workers)

    monkeypatch.setattr(_engine, "parallel", spy)
    x = torch.randn(30, 10, dtype=torch.float64).to(torch.bfloat16).requires_grad_()
    y = torch.randint(0, 10, (30,))
    y[5] = -100
    loss = ct.cross_entropy(x, y, label_smoothing=0.1)
    loss.backward()
    assert any(name.startswith("crossent") for name in seen)
    ref = torch.nn.functional.cross_entropy(x.detach().double(), y, label_smoothing=0.1)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-2)
    xd = x.detach().double().requires_grad_()
    torch.nn.functional.cross_entropy(xd, y, label_smoothing=0.1).backward()
    torch.testing.assert_close(x.grad.double(), xd.grad, rtol=1.6e-2, atol=2e-3)
    # an error in block 3 reports the position in the whole batch
    with pytest.raises(ValueError, match=r"got 12 at position \(17,\)"):
        ct.cross_entropy(x, torch.where(torch.arange(30) == 17, 12, y))


@pytest.mark.parametrize(("temperature", "softcap"), [(0.7, None), (1.0, 2.5), (1.6, 4.0)])
def test_engine_applies_the_specs_transform(temperature, softcap):
    """The engine's fused transform is the spec's: the loss of x with (T, s) is the plain loss
    of transform(x), and the gradient is that one times the transform's derivative."""
    x = X.copy()
    x[1, 3] = -np.inf
    y = np.array([0, 4, -100, 2, 2, -100, 1])
    z = _algebra.transform(x, temperature, softcap)[0]
    opts = dict(temperature=temperature, softcap=softcap, reduction="none", z_loss=0.01)
    np.testing.assert_allclose(
        crossent.cross_entropy(x, y, **opts),
        crossent.cross_entropy(z, y, reduction="none", z_loss=0.01),
        rtol=1e-12,
    )
    u = np.where(np.isinf(x), 0.0, x) / temperature
    dz = (1 - np.tanh(u / softcap) ** 2 if softcap else 1.0) / temperature
    np.testing.assert_allclose(
        crossent.cross_entropy_grad(x, y, **opts),
        crossent.cross_entropy_grad(z, y, reduction="none", z_loss=0.01) * dz,
        rtol=1e-10,
        atol=1e-15,
    )

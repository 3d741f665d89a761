"""crossent._algebra, the loss's algebra written once: the same lines on NumPy, torch and JAX.

Per-row statistics are taken naively here (NumPy, float64); the algebra maps them to each row's
loss and gradient, on every namespace, and both are compared with :mod:`crossent.reference`
(its gradient by torch's autograd).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from crossent import _algebra, reference
from crossent._spec import Scales

torch = pytest.importorskip("torch")

NAMESPACES = ["numpy", "torch"]
try:
    import jax

    NAMESPACES.append("jax")
except ImportError:  # pragma: no cover - jax is optional
    jax = None


@pytest.fixture(autouse=True)
def _jax_float64():
    """float64 on jax.numpy arrays for these tests only (the flag is global to the process)."""
    if jax is None:
        yield
        return
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


def _to(ns, a):
    if a is None or isinstance(a, float):
        return a
    if ns == "torch":
        return torch.as_tensor(np.asarray(a))
    if ns == "jax":
        return jax.numpy.asarray(np.asarray(a))
    return np.asarray(a)


def _stats(x, target, w, eps, temp, cap, shift):
    """The algebra's inputs, naively: (z, tanh_u, e, b_target, b_smooth, stats...)."""
    n, c = x.shape
    z = x / temp
    tanh_u = None
    if cap is not None:
        tanh_u = np.tanh(z / cap)
        z = np.where(np.isneginf(x), -np.inf, cap * tanh_u)
    fin = np.isfinite(z)
    k = np.maximum(fin.sum(1), 1).astype(float)
    m = np.where(np.isfinite(z.max(1)), z.max(1), 0.0) if shift else np.zeros(n)
    zs = np.where(fin, z - m[:, None], 0.0)
    if target.dtype.kind == "f":
        valid = np.ones(n, bool)
        wq = target * w
    else:
        valid = target != -100
        wq = (np.arange(c) == target[:, None]) * valid[:, None] * w
    wf = fin * w
    s = np.exp(np.where(fin, z - m[:, None], -np.inf)).sum(1)
    s = np.where(s > 0, s, 1.0)
    stats = dict(target_weight=wq.sum(1), target_score=(wq * zs).sum(1), k=k,
                 finite_weight=wf.sum(1), finite_score=(wf * zs).sum(1))  # fmt: skip
    e = np.exp(np.where(fin, z - m[:, None], -np.inf))
    return tanh_u, e, wq, wf, stats, s, m, valid


CASES = list(itertools.product(["index", "prob"], [0.0, 0.25], [0.0, 0.1], [None, 3.0],
                               [1.0, 0.6], [False, True]))  # fmt: skip


@pytest.mark.parametrize("ns", NAMESPACES)
@pytest.mark.parametrize(("kind", "eps", "lam", "cap", "temp", "shift"), CASES)
def test_algebra_gives_the_reference_loss_and_gradient(ns, kind, eps, lam, cap, temp, shift):
    rng = np.random.default_rng(3)
    n, c = 6, 5
    x = rng.normal(size=(n, c)) * 4
    x[1, 2] = x[4, 0] = -np.inf  # masked classes
    w = rng.random(c) + 0.2
    if kind == "index":
        target = np.array([0, 3, -100, 4, 1, 2])
        x[2] = -np.inf  # an ignored row of all -inf
    else:
        q = rng.random((n, c)) * np.isfinite(x)
        target = q / q.sum(1, keepdims=True)
    tanh_u, e, wq, wf, stats, s, m, valid = _stats(x, target, w, eps, temp, cap, shift)
    scales = Scales(0.3, 0.7)
    log_s = np.log(s)
    lse = m + log_s
    t = {key: _to(ns, v) for key, v in stats.items()}
    a, lin = _algebra.target_sums(t["target_weight"], t["target_score"], label_smoothing=eps,
                                  k=t["k"], finite_weight=t["finite_weight"],
                                  finite_score=t["finite_score"])  # fmt: skip
    valid_x = _to(ns, valid) if kind == "index" else None
    loss = _algebra.row_loss(a, lin, _to(ns, log_s), _to(ns, lse), z_loss=lam, valid=valid_x)
    opts = dict(weight=w, label_smoothing=eps, z_loss=lam, softcap=cap, temperature=temp)
    np.testing.assert_allclose(np.asarray(loss), reference.cross_entropy(x, target,
                               reduction="none", **opts), rtol=1e-12, atol=1e-13)  # fmt: skip
    # the reduction, with the z-term's own scale
    total = _algebra.reduce_rows(loss, _to(ns, lse), valid_x, scales, lam)
    ce = np.asarray(loss) - np.where(valid, lam * lse**2, 0.0)
    expect = 0.3 * ce.sum() + 0.7 * np.where(valid, lam * lse**2, 0.0).sum()
    np.testing.assert_allclose(float(total), expect, rtol=1e-12)

    co = _algebra.grad_coefficients(a, _to(ns, lse), _to(ns, s), scale=0.3, z_scale=0.7,
                                    z_loss=lam, label_smoothing=eps, k=t["k"], valid=valid_x)  # fmt: skip
    co = [np.broadcast_to(np.asarray(v, dtype=float), (n,))[:, None] for v in co]
    g = co[0] * e - co[1] * wq - co[2] * wf
    g = g * np.asarray(_algebra.chain_factor(_to(ns, tanh_u), temp))
    g = np.where(np.isfinite(x), g, 0.0)
    xt = torch.tensor(x, requires_grad=True)
    topts = {**opts, "weight": torch.tensor(w), "reduction": "none"}
    ce = reference.cross_entropy(xt, torch.tensor(target), **{**topts, "z_loss": 0.0})
    lse2 = reference.cross_entropy(xt, torch.tensor(target), **{**topts, "z_loss": 1.0}) - ce
    (0.3 * ce.sum() + 0.7 * lam * lse2.sum()).backward()  # the scales of the two terms
    np.testing.assert_allclose(g, xt.grad.numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("ns", NAMESPACES)
def test_checks_of_the_row_maxima_give_one_message(ns):
    ok = _to(ns, np.array([1.0, -np.inf]))
    _algebra.check_row_maxima(ok)  # -inf alone is fine without `valid`
    _algebra.check_row_maxima(ok, _to(ns, np.array([True, False])))
    with pytest.raises(
        ValueError, match=r"^logits: expected finite values or -inf \(masked\), got NaN$"
    ):
        _algebra.check_row_maxima(_to(ns, np.array([np.nan, np.inf])))
    with pytest.raises(ValueError, match=r"got \+inf$"):
        _algebra.check_row_maxima(_to(ns, np.array([0.0, np.inf])))
    with pytest.raises(ValueError, match=r"all -inf at row 11 \(flattened\); give it target="):
        _algebra.check_row_maxima(ok, _to(ns, np.array([True, True])), first_row=10)


def test_no_shift_range_takes_numpy_torch_and_names():
    assert _algebra.no_shift_range(np.float32, 1) == (-60.0, 80.0)
    assert _algebra.no_shift_range(torch.float64, 1) == (-600.0, 700.0)
    assert _algebra.no_shift_range("float64", 100)[1] == pytest.approx(700.0 - np.log(100))


@pytest.mark.parametrize("ns", NAMESPACES)
def test_chain_factor_in_place_is_the_same_number(ns):
    u = np.tanh(np.linspace(-3, 3, 7))
    u[0] = -1.0  # a masked class: factor 0
    want = (1 - u * u) / 0.7
    np.testing.assert_allclose(np.asarray(_algebra.chain_factor(_to(ns, u), 0.7)), want)
    buf = _to(ns, u.copy())
    got = _algebra.chain_factor(buf, 0.7, overwrite=True)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-15)
    if ns != "jax":  # NumPy and torch write the factor over their argument
        np.testing.assert_allclose(np.asarray(buf), want, rtol=1e-15)
    assert _algebra.chain_factor(None, 0.5) == 2.0

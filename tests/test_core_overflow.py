"""The sum of exponentials must not overflow where the loss is finite (issue 9, item 1).

The engine skips the max-shift when ``exp`` of the row maximum is safe; the bound must hold
for the row's sum of ``C`` exponentials, that is for ``max + log C``. Each case puts the
(transformed) row maximum at, just under and just over that bound, at V up to 262,144, and
compares loss and gradient with PyTorch in float64 on the same (rounded) logits. Two rows per
case keep these cheap.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import crossent
from crossent import reference

torch = pytest.importorskip("torch")
F = torch.nn.functional

from crossent.torch import cross_entropy as torch_ce  # noqa: E402
from crossent.torch import linear_cross_entropy  # noqa: E402

# the engine's no-shift bound on max + log V: float16 and float32 are computed in float32
HI = {np.float16: 80.0, np.float32: 80.0, np.float64: 700.0}
TOL = {np.float16: 2e-3, np.float32: 2e-5, np.float64: 1e-10}
CAP = 1.25  # the soft-cap, times the bound
# options (given the bound), and the map from the wanted transformed maximum m to the raw
# logit that gives it (given the options)
OPTIONS = {
    "plain": ({}, lambda m: m),
    "temperature": ({"temperature": 0.5}, lambda m: 0.5 * m),
    "softcap": ({"softcap": CAP}, None),
    "smoothing": ({"label_smoothing": 0.1, "z_loss": 1e-4}, lambda m: m),
    "probabilities": ({}, lambda m: m),
}


def _oracle(x, target, opts):
    """crossent.reference in float64: loss ('none') and, by torch's autograd, the gradient of
    its sum."""
    xt = torch.from_numpy(np.asarray(x, dtype=np.float64)).requires_grad_()
    tt = torch.from_numpy(np.asarray(target))
    loss = reference.cross_entropy(xt, tt, reduction="none", **opts)
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


def _case(v, m, dtype, raw, kind):
    """Two rows whose transformed maximum is m: all equal, and one spread below it."""
    x = np.full((2, v), raw(m), dtype=np.float64)
    x[1, 1::2] = raw(m - 3.0)
    x = x.astype(dtype)
    if kind == "probabilities":
        q = np.zeros((2, v), dtype=np.float64)
        q[:, :3] = [0.5, 0.25, 0.25]
        return x, q.astype(dtype if dtype != np.float16 else np.float32)
    return x, np.array([0, v - 1])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("v", [1000, 262144])
@pytest.mark.parametrize("where", ["at", "under", "over", "exp at", "exp under"])
@pytest.mark.parametrize("kind", list(OPTIONS))
def test_row_maximum_near_the_no_shift_bound(dtype, v, where, kind):
    opts, raw = OPTIONS[kind]
    if kind == "softcap":
        cap = CAP * HI[dtype]
        opts = {"softcap": cap}
        raw = lambda m: cap * math.atanh(m / cap)  # noqa: E731
    # at, just under or just over the bound on max + log V; at or just under the bound on
    # max alone, which exp(max) respects but the sum of V terms does not
    m = HI[dtype] - (0.0 if where.startswith("exp") else math.log(v))
    m += -0.05 if where.endswith("under") else 0.05 if where == "over" else 0.0
    x, target = _case(v, m, dtype, raw, kind)
    loss, grad = crossent.cross_entropy_with_grad(x, target, reduction="none", **opts)
    assert np.isfinite(loss).all() and np.isfinite(grad).all()
    ref_loss, ref_grad = _oracle(x, target, opts)
    tol = TOL[dtype]
    np.testing.assert_allclose(loss, ref_loss, rtol=tol, atol=tol)
    np.testing.assert_allclose(grad.astype(np.float64), ref_grad, rtol=tol, atol=tol * 10)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_reported_cases(reduction):
    """issue 9: logits of 79 with one 80 at V = 100000 (float32), 699/700 (float64), and
    temperature 0.5 on logits of 39.5 at V = 128256."""
    x = np.full((2, 100000), 79.0, np.float32)
    x[:, 0] = 80.0
    assert float(crossent.cross_entropy(x, np.array([0, 1]))) == pytest.approx(11.012943, 1e-5)
    cases = [
        (x, {}),
        (x.astype(np.float64) + 620.0, {}),
        (np.full((2, 128256), 39.5, np.float32), {"temperature": 0.5}),
    ]
    for xs, opts in cases:
        y = np.array([0, 1])
        loss, grad = crossent.cross_entropy_with_grad(xs, y, reduction=reduction, **opts)
        ref_loss, ref_grad = _oracle(xs, y, opts)
        ref = ref_loss.sum() / (2 if reduction == "mean" else 1)
        tol = TOL[xs.dtype.type]
        assert float(loss) == pytest.approx(ref, rel=tol)
        ref_grad = ref_grad / (2 if reduction == "mean" else 1)
        np.testing.assert_allclose(grad, ref_grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("where", ["at", "exp under"])
def test_torch_cross_entropy_every_dtype(dtype, where):
    v = 262144
    m = 80.0 - math.log(v) if where == "at" else 79.9
    x = torch.full((2, v), m, dtype=dtype)
    x[1, 1::2] = m - 3.0
    y = torch.tensor([0, v - 1])
    xr = x.clone().requires_grad_()
    loss = torch_ce(xr, y)
    loss.backward()
    ref = x.double().requires_grad_()
    ref_loss = F.cross_entropy(ref, y)
    ref_loss.backward()
    tol = 2e-5 if dtype == torch.float32 else 1e-2
    assert loss.item() == pytest.approx(ref_loss.item(), rel=tol)
    torch.testing.assert_close(xr.grad.double(), ref.grad, rtol=tol, atol=tol / v * 10)
    # the rounding to the logits' dtype is the only error: each gradient is right in float32
    assert torch.isfinite(xr.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_linear_cross_entropy_large_logits(dtype):
    """Logits of 79 (80 on the target) from the head, V = 100000, in chunks."""
    v = 100000
    h = torch.eye(2, 4, dtype=dtype)
    w = torch.full((v, 4), 79.0, dtype=dtype)
    w[0, 0] = 80.0
    w[1, 1] = 80.0
    w.requires_grad_()
    y = torch.tensor([0, 1])
    loss = linear_cross_entropy(h, w, y, chunk_size=1)
    loss.backward()
    wr = w.detach().double().requires_grad_()
    ref = F.cross_entropy(h.double() @ wr.T, y)
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-2 if dtype == torch.bfloat16 else 1e-5)
    assert torch.isfinite(w.grad).all()
    torch.testing.assert_close(w.grad.double(), wr.grad, rtol=2e-2, atol=1e-6)


def test_softmax_family_near_the_bound():
    """softmax, log_softmax and logsumexp always shift: finite at the bound too."""
    v = 262144
    x = np.full((2, v), 80.0 - math.log(v) + 0.05, np.float32)
    np.testing.assert_allclose(crossent.logsumexp(x), x[:, 0] + math.log(v), rtol=1e-6)
    np.testing.assert_allclose(crossent.softmax(x).sum(axis=1), 1.0, rtol=1e-4)
    assert np.isfinite(crossent.log_softmax(x)).all()

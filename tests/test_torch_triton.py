"""The Triton kernels: on CUDA when there is one, else in Triton's interpreter on the CPU.

Kept tiny: the interpreter runs each program in Python. Oracles: F.cross_entropy in float64
and the NumPy core.
"""

from __future__ import annotations

import importlib
import os
import sys

import pytest

torch = pytest.importorskip("torch")
CUDA = torch.cuda.is_available()
if not CUDA:  # must be set before triton is imported and the kernels are decorated
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip(
            "triton was imported before TRITON_INTERPRET=1 could be set; run with "
            "TRITON_INTERPRET=1 or this file first",
            allow_module_level=True,
        )
    os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("triton")
if not CUDA and "crossent.torch._triton_ce" in sys.modules:
    importlib.reload(sys.modules["crossent.torch._triton_ce"])
F = torch.nn.functional

import crossent  # noqa: E402
import crossent.torch._autograd  # noqa: E402
import crossent.torch._linear  # noqa: E402
from crossent import reference as naive  # noqa: E402
from crossent.torch import _triton_ce  # noqa: E402
from crossent.torch._autograd import CrossEntropyFunction  # noqa: E402
from crossent.torch._linear import LinearCrossEntropyFunction  # noqa: E402
from crossent.torch._options import make_options  # noqa: E402
from spec_cases import CASES, expect, linear_call, numpy_call, torch_call  # noqa: E402
from test_spec_errors import linear_message  # noqa: E402

pytestmark = pytest.mark.triton
DEV = "cuda" if CUDA else "cpu"
TOL = {torch.float32: (1e-5, 1e-6), torch.bfloat16: (1.6e-2, 2e-3), torch.float16: (2e-3, 2e-4)}
NINF = float("-inf")


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Blocks of 16 classes, so that every sweep runs several steps."""
    monkeypatch.setattr(_triton_ce, "MAX_BLOCK_BYTES", 64)


def run(x, y, w, dtype, **kw):
    """Loss and gradient (of sum(loss * gout)) through the Triton path."""
    opts = make_options(backend="triton", **kw)
    xa = x.to(DEV, dtype).requires_grad_()
    ya = y.to(DEV, dtype) if y.is_floating_point() else y.to(DEV)
    loss, _ = CrossEntropyFunction.apply(xa, ya, None if w is None else w.to(DEV, dtype), opts)
    gout = torch.linspace(0.5, 1.5, loss.numel(), device=DEV).reshape(loss.shape).to(dtype)
    (g,) = torch.autograd.grad(loss, xa, gout)
    return loss.double().cpu(), g.double().cpu(), gout.double().cpu()


def reference(x, y, w, gout, **kw):
    """crossent.reference (the tests' one oracle) in float64: loss and, by torch's autograd,
    the gradient of ``sum(loss * gout)``."""
    xr = x.detach().double().requires_grad_()
    loss = naive.cross_entropy(xr, y, weight=w, **kw)
    (g,) = torch.autograd.grad(loss, xr, gout)
    return loss.detach(), g


OPTIONS = [
    {},
    {"reduction": "none", "label_smoothing": 0.1},
    {"reduction": "sum", "z_loss": 1e-2},
    {"softcap": 3.0, "temperature": 0.7, "label_smoothing": 0.2},
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kw", OPTIONS, ids=repr)
@pytest.mark.parametrize("prob", [False, True], ids=["index", "prob"])
def test_kernel_matches_the_core(dtype, kw, prob):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 37, generator=g, dtype=torch.float64) * 3).to(dtype).double()
    x[1, 3] = NINF  # a masked class
    w = (torch.rand(37, generator=g, dtype=torch.float64) + 0.5).to(dtype).double()
    if prob:
        y = torch.softmax(torch.randn(4, 37, generator=g, dtype=torch.float64), 1)
        y[1, 3] = 0.0
        y = (y / y.sum(1, keepdim=True)).to(dtype).double()
        y = y / y.sum(1, keepdim=True)
    else:
        y = torch.tensor([5, 36, -100, 0])
    loss, grad, gout = run(x, y, w, dtype, **kw)
    want_loss, want_grad = reference(x, y, w, gout, **kw)
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(loss, want_loss, rtol=rtol, atol=atol * 10)
    torch.testing.assert_close(grad, want_grad, rtol=rtol, atol=atol)
    assert torch.isfinite(grad).all() and (grad[1, 3] == 0)


def test_all_ignored_and_all_masked_ignored_rows():
    x = torch.zeros(3, 20, dtype=torch.float64)
    x[0] = NINF
    loss, grad, _ = run(x, torch.full((3,), -100), None, torch.float32)
    assert loss.item() == 0.0 and (grad == 0).all()


def test_confident_bfloat16_prediction():
    x = torch.zeros(2, 100, dtype=torch.float64)
    x[:, 7] = 12.0
    _, grad, gout = run(x, torch.tensor([7, 7]), None, torch.bfloat16, reduction="sum")
    want = (torch.softmax(x, 1)[:, 7] - 1.0) * gout
    torch.testing.assert_close(grad[:, 7], want, rtol=1e-2, atol=0)


def test_inplace_writes_over_the_logits():
    x = torch.randn(3, 40, dtype=torch.float64)
    y = torch.tensor([1, 2, 3])
    base = x.to(DEV, torch.float32).requires_grad_()
    logits = base * 1.0
    opts = make_options(backend="triton", inplace=True)
    loss, _ = CrossEntropyFunction.apply(logits, y.to(DEV), None, opts)
    loss.backward()
    want = torch.softmax(x, 1) - F.one_hot(y, 40)
    torch.testing.assert_close(base.grad.double().cpu(), want / 3, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(logits.detach().double().cpu(), want / 3, rtol=1e-5, atol=1e-7)


def test_bad_class_index_is_an_error():
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        run(torch.zeros(2, 5, dtype=torch.float64), torch.tensor([0, 5]), None, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_linear_cross_entropy_through_the_kernel(reduction, dtype):
    # bfloat16: the logits buffer is bfloat16 (written by the GEMM), the kernel computes in
    # float32, the weight gradient is accumulated by the GEMM (float32 inside, one rounding per
    # chunk)
    g = torch.Generator().manual_seed(1)
    x, w, b = (torch.randn(s, generator=g, dtype=torch.float64) for s in ((9, 8), (33, 8), (33,)))
    x, w, b = (t.to(dtype).double() for t in (x, w, b))
    y = torch.randint(0, 33, (9,), generator=g)
    y[4] = -100
    leaves = [t.to(DEV, dtype).requires_grad_() for t in (x, w, b)]
    opts = make_options(backend="triton", reduction=reduction, label_smoothing=0.1)
    loss = LinearCrossEntropyFunction.apply(
        leaves[0], leaves[1], y.to(DEV), leaves[2], None, opts, 4
    )
    refs = [t.clone().requires_grad_() for t in (x, w, b)]
    ref = F.cross_entropy(F.linear(*refs), y, reduction=reduction, label_smoothing=0.1)
    rtol, atol = (1e-5, 1e-6) if dtype == torch.float32 else (2e-2, 4e-2)
    torch.testing.assert_close(loss.double().cpu(), ref.detach(), rtol=rtol, atol=atol)
    gout = torch.rand(ref.shape, generator=g, dtype=torch.float64)
    got = torch.autograd.grad(loss, leaves, gout.to(DEV, dtype))
    want = torch.autograd.grad(ref, refs, gout)
    for a, e in zip(got, want, strict=True):
        assert a.dtype == dtype
        torch.testing.assert_close(a.double().cpu(), e, rtol=rtol, atol=atol)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_kernel_sum_of_exponentials_does_not_overflow(dtype, monkeypatch):
    """issue 9: V = 262,144 logits near 80 (each exp finite, their sum not): the kernel's
    online max-shift keeps the log-sum-exp finite, with temperature and soft-capping too."""
    monkeypatch.setattr(_triton_ce, "MAX_BLOCK_BYTES", 32 * 1024)  # few interpreter steps
    v = 262144
    hi = 80.0
    x = torch.full((2, v), hi - 0.5, dtype=torch.float64)
    x[0, 0] = hi
    x[1, 1::2] = hi - 3.0
    x = x.to(dtype).double()
    y = torch.tensor([0, v - 1])
    for kw in ({}, {"temperature": 0.5, "softcap": 2.0 * hi}):
        loss, grad, gout = run(x, y, None, dtype, reduction="none", **kw)
        z = x.clone().requires_grad_()
        zt = z / kw.get("temperature", 1.0)
        if "softcap" in kw:
            zt = kw["softcap"] * torch.tanh(zt / kw["softcap"])
        ref = F.cross_entropy(zt, y, reduction="none")
        (ref_grad,) = torch.autograd.grad(ref, z, gout)
        assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
        torch.testing.assert_close(loss, ref.detach(), rtol=1e-2, atol=1e-2)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-2, atol=1e-5)


@pytest.mark.parametrize("case", [c for c in CASES if c[-1]], ids=[c[0] for c in CASES if c[-1]])
def test_triton_host_path_gives_the_cpu_messages(case, monkeypatch):
    """The table of bad inputs (spec_cases.py) through the Triton host code: same messages."""
    want = expect(case, numpy_call(case))
    monkeypatch.setattr(crossent.torch._autograd, "use_triton", lambda x, opts: True)
    monkeypatch.setattr(crossent.torch._linear, "use_triton", lambda x, opts: True)
    assert expect(case, torch_call(case)) == want
    assert expect(case, linear_call(case), linear_message) == want


def test_z_loss_with_class_weights_and_num_items_through_the_kernel():
    """The z-term's own denominator (weight-scale invariance) and num_items in the kernel."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 20, generator=g, dtype=torch.float64) * 3
    y = torch.tensor([1, 19, -100, 4, 4])
    w = torch.rand(20, generator=g, dtype=torch.float64) + 0.5
    kw = {"z_loss": 0.05, "label_smoothing": 0.1}
    base, gbase, gout = run(x, y, w, torch.float32, **kw)
    want_loss, want_grad = reference(x, y, w, gout, **kw)
    torch.testing.assert_close(base, want_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gbase, want_grad, rtol=1e-5, atol=1e-7)
    for c in (0.01, 10.0, 1e3):
        loss, grad, _ = run(x, y, w * c, torch.float32, **kw)
        torch.testing.assert_close(loss, base, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad, gbase, rtol=1e-5, atol=1e-7)
    loss, grad, gout = run(x, y, None, torch.float32, z_loss=0.05, num_items=8)
    want_loss, want_grad = reference(x, y, None, gout, z_loss=0.05, num_items=8)
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, want_grad, rtol=1e-5, atol=1e-7)


def test_kernel_applies_the_specs_transform():
    from crossent import _algebra

    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 30, generator=g, dtype=torch.float64) * 4
    x[0, 2] = NINF
    y = torch.tensor([1, 7, 29])
    loss, _, _ = run(x, y, None, torch.float32, softcap=3.0, temperature=1.4, reduction="none")
    z = _algebra.transform(x, 1.4, 3.0)[0]
    plain, _, _ = run(z, y, None, torch.float32, reduction="none")
    torch.testing.assert_close(loss, plain, rtol=1e-5, atol=1e-6)

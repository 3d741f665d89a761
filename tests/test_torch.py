"""crossent.torch.cross_entropy against a float64 oracle built on F.cross_entropy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import crossent  # noqa: E402
from crossent import reference  # noqa: E402
from crossent.torch import CrossEntropyLoss, cross_entropy  # noqa: E402

NINF = float("-inf")
# (rtol, atol) per dtype, for values and gradients against the float64 oracle
TOL = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-6),
    torch.float16: (2e-3, 2e-4),
    torch.bfloat16: (1.6e-2, 2e-3),
}
DTYPES = list(TOL)


def oracle(x, y, w=None, ii=-100, reduction="mean", eps=0.0, zl=0.0, cap=None, temp=1.0):
    """crossent.reference, the tests' one oracle (float64, torch's layout, differentiable)."""
    return reference.cross_entropy(x, y, axis=1 if x.ndim > 1 else 0, weight=w, ignore_index=ii,
                                   reduction=reduction, label_smoothing=eps, z_loss=zl,
                                   softcap=cap, temperature=temp)  # fmt: skip


def make(shape, dtype, seed, *, prob=False, ignore=True, weight=False):
    g = torch.Generator().manual_seed(seed)
    x64 = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    x64 = x64.to(dtype).double()  # the oracle sees exactly the rounded inputs
    c = shape[1] if len(shape) > 1 else shape[0]
    bshape = (shape[0], *shape[2:]) if len(shape) > 1 else ()
    if prob:
        y = torch.softmax(
            torch.randn(shape, generator=g, dtype=torch.float64), dim=min(1, len(shape) - 1)
        )
        y = y.to(dtype).double()
    else:
        y = torch.randint(0, c, bshape, generator=g)
        if ignore and y.numel() > 1:
            y.view(-1)[1] = -100
    w = torch.rand(c, generator=g, dtype=torch.float64) + 0.5 if weight else None
    return x64, y, w


def check(x64, y, w, dtype, kw, grad_out_seed=0):
    rtol, atol = TOL[dtype]
    xa = x64.to(dtype).requires_grad_()
    ya = y.to(dtype) if y.is_floating_point() else y
    loss = cross_entropy(xa, ya, None if w is None else w.to(dtype), **kw)
    xo = x64.clone().requires_grad_()
    ref = oracle(xo, y, w, **{k: v for k, v in (
        ("reduction", kw.get("reduction", "mean")), ("eps", kw.get("label_smoothing", 0.0)),
        ("zl", kw.get("z_loss", 0.0)), ("cap", kw.get("softcap")), ("temp", kw.get("temperature", 1.0)),
    )})  # fmt: skip
    assert loss.dtype == dtype
    assert loss.shape == ref.shape
    torch.testing.assert_close(loss.double(), ref.detach(), rtol=rtol, atol=atol * 10)
    gout = torch.rand(ref.shape, generator=torch.Generator().manual_seed(grad_out_seed)) + 0.5
    (ga,) = torch.autograd.grad(loss, xa, gout.to(dtype))
    (gr,) = torch.autograd.grad(ref, xo, gout.double())
    assert ga.dtype == dtype
    torch.testing.assert_close(ga.double(), gr, rtol=rtol, atol=atol)


OPTIONS = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"label_smoothing": 0.1},
    {"label_smoothing": 0.2, "reduction": "none"},
    {"z_loss": 1e-2},
    {"softcap": 4.0, "temperature": 0.7},
    {"softcap": 2.0, "label_smoothing": 0.1, "z_loss": 1e-3, "reduction": "sum"},
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kw", OPTIONS, ids=repr)
@pytest.mark.parametrize("weight", [False, True], ids=["", "weight"])
def test_index_targets_match_oracle(dtype, kw, weight):
    x, y, w = make((13, 37), dtype, seed=len(kw), weight=weight)
    check(x, y, w, dtype, kw)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("kw", OPTIONS[:5] + OPTIONS[6:7], ids=repr)
def test_probability_targets_match_oracle(dtype, kw):
    x, y, w = make((9, 21), dtype, seed=3, prob=True, weight=True)
    check(x, y, w, dtype, kw)


@pytest.mark.parametrize("shape", [(7,), (1, 5), (3, 1), (4, 6, 5), (2, 5, 3, 4)], ids=str)
@pytest.mark.parametrize("prob", [False, True], ids=["index", "prob"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_odd_shapes_and_k_dim(shape, prob, reduction):
    x, y, w = make(shape, torch.float32, seed=5, prob=prob, ignore=False)
    check(x, y, w, torch.float32, {"reduction": reduction, "label_smoothing": 0.05})


def test_large_vocabulary_rows_bfloat16():
    x, y, w = make((6, 40_000), torch.bfloat16, seed=7)
    check(x, y, w, torch.bfloat16, {"label_smoothing": 0.1})


def test_bfloat16_confident_prediction_keeps_the_true_class_gradient():
    # p_y = 1 - 6e-4: rounding p to bfloat16 first gives p_y - 1 = 0 (the shipped bug)
    x = torch.zeros(4, 100)
    y = torch.tensor([3, 14, 15, 92])
    x[torch.arange(4), y] = 12.0
    xb = x.bfloat16().requires_grad_()
    cross_entropy(xb, y, reduction="sum").backward()
    p = torch.softmax(x.double(), dim=1)
    true = (p[torch.arange(4), y] - 1.0).float()  # ≈ -6.1e-4
    got = xb.grad[torch.arange(4), y].float()
    naive = torch.softmax(x.bfloat16(), dim=1)[torch.arange(4), y] - 1.0
    assert (naive == 0).all()  # what a bfloat16 softmax gives
    torch.testing.assert_close(got, true, rtol=1e-2, atol=0)


def test_readme_worked_example():
    x = torch.tensor([[2, 1, 0.1], [0.5, 2.5, 0.3], [1, 1, 3]], dtype=torch.float64)
    y = torch.tensor([0, 2, -100])
    w = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    assert cross_entropy(x, y, w).item() == pytest.approx(1.9192947, abs=1e-7)
    assert cross_entropy(x, y, w, label_smoothing=0.1).item() == pytest.approx(1.8950526, abs=5e-7)
    none = cross_entropy(x, y, w, reduction="none", label_smoothing=0.1)
    np.testing.assert_allclose(none.numpy(), [0.715400, 6.864810, 0.0], atol=1e-6)


# ---- the fixes: finite wherever the mathematics is -------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_all_ignored_mean_is_zero_with_zero_grad(dtype):
    x = torch.randn(4, 5, dtype=dtype, requires_grad=True)
    loss = cross_entropy(x, torch.full((4,), -100))
    loss.backward()
    assert loss.item() == 0.0
    assert (x.grad == 0).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
def test_masked_logits_match_the_core_float64(dtype):
    x = torch.randn(5, 8, dtype=torch.float64)
    x[0, 2] = x[1, :6] = x[4] = NINF
    q = torch.softmax(torch.randn(5, 8, dtype=torch.float64), dim=1)
    q[0, 2] = 0.0
    q[1, :6] = 0.0
    q = q / q.sum(1, keepdim=True)
    q[4] = 1 / 8
    y = torch.tensor([0, 7, 3, 1, -100])
    for tgt, rows in ((q[:4], slice(0, 4)), (y, slice(None))):
        kw = {"label_smoothing": 0.1, "reduction": "none"}
        want, want_g = crossent.cross_entropy_with_grad(x[rows].numpy(), tgt.numpy(), **kw)
        xa = x[rows].to(dtype).requires_grad_()
        loss = cross_entropy(xa, tgt.to(dtype) if tgt.is_floating_point() else tgt, **kw)
        loss.sum().backward()
        assert torch.isfinite(loss).all() and torch.isfinite(xa.grad).all()
        rtol, atol = TOL[dtype]
        np.testing.assert_allclose(loss.double().detach().numpy(), want, rtol=rtol, atol=atol * 10)
        np.testing.assert_allclose(xa.grad.double().numpy(), want_g, rtol=rtol, atol=atol)
        assert (xa.grad[torch.isneginf(xa.detach())] == 0).all()


def test_float16_mean_of_a_large_batch_is_finite():
    x = torch.zeros(40_000, 2, dtype=torch.float16)
    loss = cross_entropy(x, torch.zeros(40_000, dtype=torch.long))
    assert loss.item() == pytest.approx(np.log(2), rel=1e-3)


# ---- autograd ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"reduction": "none", "label_smoothing": 0.3},
        {"z_loss": 0.1, "softcap": 1.5, "temperature": 0.8},
        {"reduction": "sum", "label_smoothing": 0.1, "z_loss": 0.05},
    ],
    ids=repr,
)
def test_gradcheck_float64(kw):
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1, -100, 5, 0])
    w = torch.rand(6, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(lambda x: cross_entropy(x, y, w, **kw), (x,))


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_probability_target_gradient(reduction):
    # the target is a probability vector, so gradcheck's perturbations are invalid targets:
    # compare with PyTorch's autograd instead
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    q = torch.softmax(torch.randn(3, 5, dtype=torch.float64), 1).requires_grad_()
    w = torch.rand(5, dtype=torch.float64) + 0.5
    kw = {"reduction": reduction, "label_smoothing": 0.2}
    gout = torch.rand(3, dtype=torch.float64) if reduction == "none" else torch.tensor(0.7)
    got = torch.autograd.grad(cross_entropy(x, q, w, softcap=3.0, **kw), (x, q), gout)
    z = 3.0 * torch.tanh(x / 3.0)
    want = torch.autograd.grad(F.cross_entropy(z, q, w, **kw), (x, q), gout.double())
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


def test_no_grad_computes_the_loss_only():
    x = torch.randn(6, 9)
    with torch.no_grad():
        loss = cross_entropy(x, torch.arange(6))
    assert loss.item() == pytest.approx(F.cross_entropy(x, torch.arange(6)).item(), rel=1e-6)


def test_backward_twice():
    x = torch.randn(3, 4, requires_grad=True)
    y = torch.tensor([0, 1, 2])
    loss = 2.0 * cross_entropy(x, y, reduction="none").sum() + cross_entropy(x, y)
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward()
    torch.testing.assert_close(x.grad, 2 * first)
    inplace = cross_entropy(x * 1.0, y, reduction="none", inplace=True).mean()
    inplace.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="inplace operation"):
        inplace.backward()


def test_scaled_and_combined_losses():
    x = torch.randn(5, 7, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, -100])
    (3.0 * cross_entropy(x, y) + cross_entropy(x, y, reduction="sum")).backward()
    xr = x.detach().clone().requires_grad_()
    (3.0 * F.cross_entropy(xr, y) + F.cross_entropy(xr, y, reduction="sum")).backward()
    torch.testing.assert_close(x.grad, xr.grad)


# ---- in-place mode -----------------------------------------------------------------------------


def test_inplace_overwrites_the_logits_with_the_gradient():
    w = torch.randn(6, 10, requires_grad=True)
    h = torch.randn(8, 6)
    y = torch.randint(0, 10, (8,))
    logits = h @ w
    keep = logits.detach().clone()
    cross_entropy(logits, y, inplace=True, label_smoothing=0.1).backward()
    wr = w.detach().clone().requires_grad_()
    F.cross_entropy(h @ wr, y, label_smoothing=0.1).backward()
    torch.testing.assert_close(w.grad, wr.grad)
    assert not torch.equal(logits.detach(), keep)  # the buffer now holds the gradient


def test_inplace_refuses_a_leaf_and_its_views():
    x = torch.randn(3, 4, requires_grad=True)
    for logits, y in ((x, torch.tensor([0, 1, 2])), (x.view(12)[:4], torch.tensor(1))):
        with pytest.raises(ValueError, match="leaf"):
            cross_entropy(logits, y, inplace=True)


def test_inplace_copies_when_the_producer_saved_the_logits():
    x = torch.randn(4, 6, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3])
    logits = torch.exp(x)  # exp saves its output for backward
    cross_entropy(logits, y, inplace=True).backward()
    xr = x.detach().clone().requires_grad_()
    F.cross_entropy(torch.exp(xr), y).backward()
    torch.testing.assert_close(x.grad, xr.grad)


def test_inplace_with_another_consumer_fails_loudly_not_silently():
    x = torch.randn(4, 6, requires_grad=True)
    logits = x * 2.0
    penalty = (logits**2).sum()  # pow saves the logits
    loss = cross_entropy(logits, torch.tensor([0, 1, 2, 3]), inplace=True) + penalty
    with pytest.raises(RuntimeError, match="inplace operation"):
        loss.backward()


# ---- module, lse, errors, import ---------------------------------------------------------------


def test_module_matches_functional_and_moves_its_weight():
    w = torch.rand(5) + 0.5
    mod = CrossEntropyLoss(w, label_smoothing=0.1, z_loss=1e-3)
    assert "weight" in dict(mod.named_buffers())
    assert "z_loss=0.001" in repr(mod)
    x, y = torch.randn(4, 5), torch.tensor([0, 4, 2, 1])
    assert mod(x, y).item() == cross_entropy(x, y, w, label_smoothing=0.1, z_loss=1e-3).item()
    assert mod.double().weight.dtype == torch.float64


def test_return_lse():
    x = torch.randn(2, 5, 3)
    loss, lse = cross_entropy(x, torch.zeros(2, 3, dtype=torch.long), return_lse=True,
                              softcap=2.0, temperature=0.5, reduction="none")  # fmt: skip
    assert loss.shape == lse.shape == (2, 3)
    z = 2.0 * torch.tanh(x / 0.5 / 2.0)
    torch.testing.assert_close(lse, torch.logsumexp(z, dim=1))


@pytest.mark.parametrize(
    ("args", "kw", "exc", "match"),
    [
        (([[1.0, 2.0]], torch.tensor([0])), {}, TypeError, "input: expected a torch.Tensor"),
        ((torch.ones(2, 3, dtype=torch.long), torch.tensor([0, 1])), {}, TypeError, "float16"),
        ((torch.ones(2, 3), torch.tensor([0.0, 1.0])), {}, TypeError, "float labels"),
        ((torch.ones(2, 3), torch.tensor([0, 1, 2])), {}, ValueError, "shape"),
        ((torch.ones(2, 3), torch.tensor([0, 3])), {}, ValueError, r"\[0, 2\]"),
        ((torch.ones(2, 3), torch.tensor([0, 1])), {"reduction": "avg"}, ValueError, "reduction"),
        (
            (torch.ones(2, 3), torch.tensor([0, 1])),
            {"label_smoothing": 1.5},
            ValueError,
            r"\[0, 1\]",
        ),
        ((torch.ones(2, 3), torch.tensor([0, 1])), {"z_loss": -1.0}, ValueError, "z_loss"),
        ((torch.ones(2, 3), torch.tensor([0, 1])), {"softcap": 0.0}, ValueError, "softcap"),
        ((torch.ones(2, 3), torch.tensor([0, 1])), {"temperature": "1"}, TypeError, "temperature"),
        (
            (torch.ones(2, 3), torch.tensor([0, 1])),
            {"ignore_index": 1.5},
            TypeError,
            "ignore_index",
        ),
        (
            (torch.ones(2, 3), torch.tensor([0, 1])),
            {"weight": torch.ones(2)},
            ValueError,
            r"\(3,\)",
        ),
        ((torch.ones(2, 3), torch.tensor([0, 1], device="meta")), {}, ValueError, "device|meta"),
        ((torch.ones(2, 3), torch.tensor([[0.5, 0.6, 0.1]] * 2)), {}, ValueError, "sum"),
        ((torch.tensor([[0.0, float("nan")]]), torch.tensor([0])), {}, ValueError, "NaN"),
        ((torch.ones(2, 3), torch.tensor([0, 1])), {"inplace": 1}, TypeError, "inplace"),
    ],
)
def test_errors_name_the_argument(args, kw, exc, match):
    with pytest.raises(exc, match=match):
        cross_entropy(*args, **kw)


def test_import_crossent_does_not_import_torch():
    code = (
        "import sys, crossent; assert 'torch' not in sys.modules, 'torch imported'; "
        "import crossent.torch; assert callable(crossent.torch.cross_entropy)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_gradient_buffers_are_recycled_only_when_free():
    y = torch.randint(0, 1000, (512,))
    x1, x2, x3 = (torch.randn(512, 1000, requires_grad=True) for _ in range(3))
    cross_entropy(x1, y).backward()
    cross_entropy(x2, y).backward()
    assert x1.grad.data_ptr() != x2.grad.data_ptr()  # both alive: never shared
    want = (torch.softmax(x1.detach(), 1) - F.one_hot(y, 1000)) / 512
    torch.testing.assert_close(x1.grad, want)
    freed = x1.grad.data_ptr()
    x1.grad = None
    cross_entropy(x3, y).backward()
    assert x3.grad.data_ptr() == freed  # the freed block, already faulted in
    crossent.torch.empty_cache()


def test_non_contiguous_logits_int32_targets_float64_weight():
    base = torch.randn(9, 6, requires_grad=True)
    logits = base.t()  # (6, 9), non-contiguous
    y = torch.tensor([0, 8, 3, -100, 5, 1], dtype=torch.int32)
    w = torch.rand(9, dtype=torch.float64) + 0.5
    loss = cross_entropy(logits, y, w, label_smoothing=0.1)
    loss.backward()
    ref_base = base.detach().clone().requires_grad_()
    F.cross_entropy(ref_base.t(), y.long(), w.float(), label_smoothing=0.1).backward()
    torch.testing.assert_close(
        loss, F.cross_entropy(base.t(), y.long(), w.float(), label_smoothing=0.1)
    )
    torch.testing.assert_close(base.grad, ref_base.grad)


def test_unbatched_input_none_reduction_is_a_scalar():
    x = torch.randn(5, requires_grad=True)
    loss = cross_entropy(x, torch.tensor(2), reduction="none")
    assert loss.shape == ()
    loss.backward()
    torch.testing.assert_close(x.grad, torch.softmax(x.detach(), 0) - F.one_hot(torch.tensor(2), 5))

"""crossent.torch.linear_cross_entropy against F.linear + F.cross_entropy in float64."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from crossent import reference  # noqa: E402
from crossent.torch import LinearCrossEntropyLoss, linear_cross_entropy  # noqa: E402

# (rtol, atol) per dtype for the loss and the three gradients
TOL = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-5),
    torch.bfloat16: (2e-2, 4e-2),  # bfloat16 logits (as in the unfused path): ~1% in p
}


def oracle(x, w, y, b, cw=None, **kw):
    """crossent.reference, the tests' one oracle, on the logits ``F.linear(x, w, b)``."""
    return reference.cross_entropy(F.linear(x, w, b), y, weight=cw, **kw)


def make(n, d, v, dtype, seed, *, prob=False, bias=True, lead=()):
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=1.0):
        return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype).double()

    x = r(*lead, n, d)
    w = r(v, d, scale=d**-0.5 * 2)
    b = r(v) if bias else None
    if prob:
        y = torch.softmax(torch.randn((*lead, n, v), generator=g, dtype=torch.float64), -1)
        y = y.to(dtype).double()
    else:
        y = torch.randint(0, v, (*lead, n), generator=g)
        y.view(-1)[0] = -100
    return x, w, b, y


def check(x, w, b, y, dtype, cw=None, **kw):
    rtol, atol = TOL[dtype]
    leaves = [t.to(dtype).requires_grad_() for t in (x, w) + ((b,) if b is not None else ())]
    ya = y.to(dtype) if y.is_floating_point() else y
    loss = linear_cross_entropy(leaves[0], leaves[1], ya, leaves[2] if b is not None else None,
                                class_weight=None if cw is None else cw.to(dtype), **kw)  # fmt: skip
    refs = [t.clone().requires_grad_() for t in (x, w) + ((b,) if b is not None else ())]
    okw = {k: v for k, v in kw.items() if k != "chunk_size"}
    ref = oracle(refs[0], refs[1], y, refs[2] if b is not None else None, cw, **okw)
    assert loss.dtype == dtype and loss.shape == ref.shape
    torch.testing.assert_close(loss.double(), ref.detach(), rtol=rtol, atol=atol)
    gout = torch.rand(ref.shape, generator=torch.Generator().manual_seed(1)) + 0.5
    got = torch.autograd.grad(loss, leaves, gout.to(dtype))
    want = torch.autograd.grad(ref, refs, gout.double())
    for name, a, e in zip(("input", "weight", "bias"), got, want, strict=False):
        assert a.dtype == dtype, name
        torch.testing.assert_close(a.double(), e, rtol=rtol, atol=atol, msg=name)


OPTIONS = [
    {},
    {"reduction": "sum", "chunk_size": 3},
    {"reduction": "none", "chunk_size": 4},
    {"label_smoothing": 0.1, "z_loss": 1e-3, "chunk_size": 1},
    {"softcap": 3.0, "temperature": 0.8, "reduction": "none", "chunk_size": 5},
]


@pytest.mark.parametrize("dtype", list(TOL), ids=str)
@pytest.mark.parametrize("kw", OPTIONS, ids=repr)
def test_matches_linear_then_cross_entropy(dtype, kw):
    x, w, b, y = make(11, 16, 37, dtype, seed=len(kw))
    check(x, w, b, y, dtype, **kw)


@pytest.mark.parametrize("kw", OPTIONS[:3], ids=repr)
def test_probability_targets_class_weights_no_bias(kw):
    x, w, b, y = make(7, 8, 13, torch.float64, seed=2, prob=True, bias=False)
    check(x, w, b, y, torch.float64, cw=torch.rand(13, dtype=torch.float64) + 0.5, **kw)
    x, w, b, y = make(7, 8, 13, torch.float64, seed=2)
    check(x, w, b, y, torch.float64, cw=torch.rand(13, dtype=torch.float64) + 0.5, **kw)


def test_leading_dimensions_and_odd_shapes():
    x, w, b, y = make(5, 3, 2, torch.float32, seed=4, lead=(2,))  # (2, 5, 3) hidden states
    check(x, w, b, y, torch.float32, reduction="none", chunk_size=3)
    x, w, b, y = make(1, 1, 1, torch.float64, seed=4)
    check(x, w, b, y[:0].new_zeros(1), torch.float64)


def test_all_ignored_mean_is_zero():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(5, 3, requires_grad=True)
    loss = linear_cross_entropy(x, w, torch.full((4,), -100))
    loss.backward()
    assert loss.item() == 0.0 and (x.grad == 0).all() and (w.grad == 0).all()


def test_gradcheck_float64():
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 5, -100, 2, 3])
    for kw in ({"label_smoothing": 0.1, "z_loss": 0.01, "chunk_size": 2},
               {"reduction": "none", "softcap": 2.0, "chunk_size": 3}):  # fmt: skip
        assert torch.autograd.gradcheck(
            lambda x, w, b, kw=kw: linear_cross_entropy(x, w, y, b, **kw), (x, w, b)
        )


def test_only_some_inputs_need_grad_and_no_grad():
    x, w, b, y = (
        t.float() if t.is_floating_point() else t for t in make(6, 4, 9, torch.float32, 0)
    )
    w.requires_grad_()
    linear_cross_entropy(x, w, y, b).backward()
    wr = w.detach().clone().requires_grad_()
    F.cross_entropy(F.linear(x, wr, b), y).backward()
    torch.testing.assert_close(w.grad, wr.grad)
    with torch.no_grad():
        loss = linear_cross_entropy(x, w, y, b)
    assert loss.item() == pytest.approx(F.cross_entropy(F.linear(x, w, b), y).item(), rel=1e-5)


def test_module():
    x, w, b, y = (
        t.float() if t.is_floating_point() else t for t in make(6, 4, 9, torch.float32, 1)
    )
    mod = LinearCrossEntropyLoss(label_smoothing=0.1, chunk_size=2)
    want = F.cross_entropy(F.linear(x, w, b), y, label_smoothing=0.1)
    assert mod(x, w, y, b).item() == pytest.approx(want.item(), rel=1e-5)


@pytest.mark.parametrize(
    ("args", "kw", "exc", "match"),
    [
        ((torch.ones(2, 3), torch.ones(4, 2), torch.tensor([0, 1])), {}, ValueError, r"\(V, 3\)"),
        ((torch.ones(2, 3), torch.ones(4, 3).double(), torch.tensor([0, 1])), {}, TypeError, "dtype"),
        ((torch.ones(2, 3), torch.ones(4, 3), torch.tensor([0.0, 1.0])), {}, TypeError, "float labels"),
        ((torch.ones(2, 3), torch.ones(4, 3), torch.tensor([0, 1, 2])), {}, ValueError, "shape"),
        ((torch.ones(2, 3), torch.ones(4, 3), torch.tensor([0, 4])), {}, ValueError, r"\[0, 3\]"),
        ((torch.ones(2, 3), torch.ones(4, 3), torch.tensor([0, 1]), torch.ones(3)), {}, ValueError, "bias"),
        ((torch.ones(2, 3), torch.ones(4, 3), torch.tensor([0, 1])), {"chunk_size": 0}, ValueError, "chunk_size"),
        ((torch.ones(2, 3), torch.ones(4, 3), torch.tensor([0, 1])), {"reduction": "x"}, ValueError, "reduction"),
        ((torch.ones(2, 3), torch.ones(4, 3), torch.tensor([0, 1])), {"class_weight": torch.ones(3)}, ValueError, r"\(4,\)"),
    ],
)  # fmt: skip
def test_errors_name_the_argument(args, kw, exc, match):
    with pytest.raises(exc, match=match):
        linear_cross_entropy(*args, **kw)


def test_bfloat16_weight_gradient_accumulates_in_its_own_dtype_within_a_bound():
    """bfloat16: the weight's gradient is accumulated by the GEMM in the weight's dtype (float32
    inside, one rounding per chunk; no (V, D) float32 accumulator). Each of the K roundings adds
    up to u = 2⁻⁸ of the partial sum: normwise at most about u·√K for random-signed errors.
    K = 16 small chunks here (measured 1.2u, 2.4× the unfused bfloat16 path, which rounds once):
    bounded by u·√(K/2) and by √K × the unfused error. Products summed in bfloat16 (no float32
    inside the GEMM) fail both."""
    g = torch.Generator().manual_seed(0)
    n, d, v, k = 256, 64, 1000, 16
    x = torch.randn(n, d, generator=g).bfloat16()
    w = (torch.randn(v, d, generator=g) * d**-0.5).bfloat16()
    y = torch.randint(0, v, (n,), generator=g)

    def weight_grad(fn, dtype):
        wt = w.to(dtype).clone().requires_grad_()
        fn(x.to(dtype), wt).backward()
        return wt.grad

    ref = weight_grad(lambda a, b: oracle(a, b, y, None), torch.float64)
    fused = weight_grad(
        lambda a, b: linear_cross_entropy(a, b, y, chunk_size=n // k), torch.bfloat16
    )
    unfused = weight_grad(lambda a, b: F.cross_entropy(F.linear(a, b), y), torch.bfloat16)
    assert fused.dtype == torch.bfloat16
    err = ((fused.double() - ref).norm() / ref.norm()).item()
    err_unfused = ((unfused.double() - ref).norm() / ref.norm()).item()
    assert err <= 2.0**-8 * (k / 2) ** 0.5, (err, err_unfused)
    assert err <= k**0.5 * err_unfused, (err, err_unfused)

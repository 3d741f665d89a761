"""Gradients that used to go missing (issue 9, items 2 and 3), against PyTorch in float64.

* second derivatives: ``create_graph=True`` gives a gradient autograd can differentiate
  (``gradgradcheck``, and a gradient penalty equal to PyTorch's), in every entry point;
* a probability target's gradient in ``linear_cross_entropy`` (was silently ``None``);
* what is not supported says so: forward-mode AD, ``torch.func`` transforms, class weights
  that require grad, ``create_graph=True`` after ``inplace=True``.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from torch.autograd import gradcheck as _gradcheck  # noqa: E402
from torch.autograd import gradgradcheck as _gradgradcheck  # noqa: E402

from crossent import reference  # noqa: E402
from crossent.torch import (  # noqa: E402
    CrossEntropyLoss,
    LinearCrossEntropyLoss,
    cross_entropy,
    linear_cross_entropy,
)
from crossent.torch._ops import cross_entropy_op, op_options  # noqa: E402
from crossent.torch._options import make_options  # noqa: E402

D64 = torch.float64


def gradcheck(fn, inputs):
    return _gradcheck(fn, inputs, fast_mode=True)


def gradgradcheck(fn, inputs):
    """Fast mode (random projections of the Jacobians): seconds, not minutes, on two cores."""
    return _gradgradcheck(fn, inputs, fast_mode=True)


NINF = float("-inf")

OPTIONS = [
    {},
    {"reduction": "sum", "label_smoothing": 0.2},
    {"reduction": "none", "z_loss": 0.05},
    {"softcap": 2.0, "temperature": 0.7, "label_smoothing": 0.1},
]


def _data(seed=0, n=4, c=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g, dtype=D64)
    y = torch.randint(0, c, (n,), generator=g)
    w = torch.rand(c, generator=g, dtype=D64) + 0.5
    q = torch.softmax(torch.randn(n, c, generator=g, dtype=D64), 1)
    return x, y, w, q


def _torch_ref(x, target, weight=None, **kw):
    """crossent.reference, the tests' one oracle (differentiable on torch tensors)."""
    return reference.cross_entropy(x, target, weight=weight, **kw)


@pytest.mark.parametrize("kw", OPTIONS, ids=repr)
@pytest.mark.parametrize("kind", ["index", "prob"])
def test_gradgradcheck_cross_entropy(kw, kind):
    x, y, w, q = _data()
    x.requires_grad_()
    if kind == "index":
        y[1] = -100
        inputs, fn = (x,), lambda a: cross_entropy(a, y, w, **kw)
    else:  # q = softmax(u): finite differences keep it a distribution
        u = q.log().requires_grad_()  # mixed second derivatives in (x, q) too
        inputs, fn = (x, u), lambda a, t: cross_entropy(a, torch.softmax(t, 1), w, **kw)
    assert gradcheck(fn, inputs)
    assert gradgradcheck(fn, inputs)


def test_gradgradcheck_with_a_masked_class_and_an_ignored_row_of_all_neg_inf():
    x, y, w, _ = _data()
    x[0, 2] = NINF
    x[3] = NINF
    y[3] = -100
    y[0] = 1
    x.requires_grad_()
    for kw in ({}, {"label_smoothing": 0.3, "softcap": 3.0}):
        (g,) = torch.autograd.grad(cross_entropy(x, y, w, **kw), x, create_graph=True)
        assert g.grad_fn is not None and torch.isfinite(g).all()
        (h,) = torch.autograd.grad((g * torch.arange(20.0).reshape(4, 5)).sum(), x)
        assert torch.isfinite(h).all() and (h[3] == 0).all() and h[0, 2] == 0


@pytest.mark.parametrize("kw", OPTIONS, ids=repr)
def test_gradient_penalty_equals_pytorch(kw):
    """The use case: ||∂L/∂x||² as a penalty, differentiated through the producer's weights."""
    x, y, w, _ = _data(1)
    lin = torch.nn.Linear(5, 5).double()
    got, want = [], []
    for fn, out in ((cross_entropy, got), (_torch_ref, want)):
        inp = x.clone().requires_grad_()
        logits = lin(inp)  # held: crossent keeps only a weak reference to them
        loss = fn(logits, y, w, **kw)
        if loss.ndim:
            loss = (loss * torch.linspace(0.5, 1.5, len(loss), dtype=D64)).sum()
        (g,) = torch.autograd.grad(loss, inp, create_graph=True)
        out += torch.autograd.grad(g.pow(2).sum(), [lin.weight, lin.bias, inp])
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_modules_and_the_custom_op_have_second_derivatives():
    x, y, w, _ = _data(2)
    x.requires_grad_()
    loss_fn = CrossEntropyLoss(weight=w, label_smoothing=0.1)
    assert gradgradcheck(lambda a: loss_fn(a, y), (x,))

    def op(a):  # the torch.library op that torch.compile runs
        opts = op_options(make_options(label_smoothing=0.1, z_loss=0.01))
        return cross_entropy_op(a, y, w, True, **opts)[0]

    assert gradgradcheck(op, (x,))
    torch.testing.assert_close(op(x), cross_entropy(x, y, w, label_smoothing=0.1, z_loss=0.01))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradgradcheck_linear_cross_entropy(reduction):
    g = torch.Generator().manual_seed(3)
    h = torch.randn(5, 3, generator=g, dtype=D64, requires_grad=True)
    w = torch.randn(7, 3, generator=g, dtype=D64, requires_grad=True)
    b = torch.randn(7, generator=g, dtype=D64, requires_grad=True)
    y = torch.tensor([0, 6, -100, 3, 3])
    kw = {"reduction": reduction, "label_smoothing": 0.1, "z_loss": 0.01}
    assert gradgradcheck(lambda *t: linear_cross_entropy(*t[:2], y, t[2], chunk_size=2, **kw),
                         (h, w, b))  # fmt: skip
    u = torch.randn(5, 7, generator=g, dtype=D64, requires_grad=True)
    module = LinearCrossEntropyLoss(reduction=reduction, softcap=3.0, chunk_size=2)
    assert gradgradcheck(lambda a, t: module(a, w, torch.softmax(t, 1)), (h, u))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("chunk", [2, None])
def test_linear_cross_entropy_probability_target_gradient(reduction, chunk):
    """issue 9, item 2: q.grad was None; now it is F.cross_entropy's."""
    g = torch.Generator().manual_seed(4)
    h = torch.randn(5, 3, generator=g, dtype=D64)
    w = torch.randn(7, 3, generator=g, dtype=D64, requires_grad=True)
    b = torch.randn(7, generator=g, dtype=D64)
    cw = torch.rand(7, generator=g, dtype=D64) + 0.5
    q0 = torch.softmax(torch.randn(5, 7, generator=g, dtype=D64), 1)
    gout = torch.linspace(0.5, 1.5, 5, dtype=D64) if reduction == "none" else torch.tensor(0.7)
    kw = {"reduction": reduction, "label_smoothing": 0.2}
    q = q0.clone().requires_grad_()
    loss = linear_cross_entropy(h, w, q, b, class_weight=cw, chunk_size=chunk, **kw)
    loss.backward(gout.to(loss.dtype))
    qr, wr = q0.clone().requires_grad_(), w.detach().clone().requires_grad_()
    F.cross_entropy(F.linear(h, wr, b), qr, cw, **kw).backward(gout)
    assert q.grad is not None
    torch.testing.assert_close(q.grad, qr.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(w.grad, wr.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_linear_cross_entropy_probability_target_gradient_low_precision(dtype):
    g = torch.Generator().manual_seed(5)
    h = torch.randn(6, 8, generator=g).to(dtype)
    w = torch.randn(50, 8, generator=g).to(dtype)
    q0 = torch.softmax(torch.randn(6, 50, generator=g), 1).to(dtype)
    q = q0.clone().requires_grad_()
    linear_cross_entropy(h, w, q, chunk_size=4).backward()
    qr = q0.double().requires_grad_()
    F.cross_entropy(h.double() @ w.double().T, qr).backward()
    assert q.grad.dtype == dtype
    torch.testing.assert_close(q.grad.double(), qr.grad, rtol=2e-2, atol=2e-3)


def test_every_entry_point_gives_the_target_its_gradient():
    x, _, w, q0 = _data(6)
    want = None
    for call in (
        lambda q: cross_entropy(x, q, w),
        lambda q: CrossEntropyLoss(weight=w)(x, q),
        lambda q: cross_entropy_op(x, q, w, False, **op_options(make_options()))[0],
        lambda q: linear_cross_entropy(torch.eye(4, dtype=D64), x.T.contiguous(), q,
                                       class_weight=w),
    ):  # fmt: skip
        q = q0.clone().requires_grad_()
        call(q).backward()
        assert q.grad is not None and torch.isfinite(q.grad).all()
        if want is None:
            qr = q0.clone().requires_grad_()
            F.cross_entropy(x, qr, w).backward()
            want = qr.grad
            torch.testing.assert_close(q.grad, want)


# torch's forward-mode AD loads its decompositions with torch.jit.script, which warns
JIT_WARNING = "ignore:`torch.jit.script` is deprecated:DeprecationWarning"


@pytest.mark.filterwarnings(JIT_WARNING)
def test_forward_mode_ad_is_a_clear_error():
    import torch.autograd.forward_ad as fwad

    x, y, _, _ = _data()
    h, w = torch.randn(4, 3, dtype=D64), torch.randn(5, 3, dtype=D64)
    with fwad.dual_level():
        dual = fwad.make_dual(x, torch.ones_like(x))
        with pytest.raises(NotImplementedError, match=r"cross_entropy: forward-mode AD .*jvp"):
            cross_entropy(dual, y)
        dual_h = fwad.make_dual(h, torch.ones_like(h))
        with pytest.raises(NotImplementedError, match=r"linear_cross_entropy: forward-mode"):
            linear_cross_entropy(dual_h, w, y)


@pytest.mark.parametrize(
    "transform",
    [
        lambda f, x: torch.func.vmap(f)(x.unsqueeze(0)),
        lambda f, x: torch.func.grad(f)(x),
        lambda f, x: torch.func.jvp(f, (x,), (torch.ones_like(x),)),
        lambda f, x: torch.func.jacrev(f)(x),
    ],
    ids=["vmap", "grad", "jvp", "jacrev"],
)
@pytest.mark.filterwarnings(JIT_WARNING)
def test_func_transforms_are_a_clear_error(transform):
    x, y, _, _ = _data()
    with pytest.raises(NotImplementedError, match=r"cross_entropy: torch.func transforms"):
        transform(lambda a: cross_entropy(a, y), x)
    w = torch.randn(5, 5, dtype=D64)
    with pytest.raises(NotImplementedError, match=r"linear_cross_entropy: torch.func"):
        transform(lambda a: linear_cross_entropy(a, w, y), x)


def test_create_graph_after_the_logits_changed_is_a_clear_error():
    """Logits changed after the loss (in-place mode, an in-place edit) cannot give second
    derivatives; logits nothing holds any more are rebuilt (test_torch_double_backward.py),
    except where the gradient does not determine them."""
    x, y, _, _ = _data()
    base = x.clone().requires_grad_()
    message = r"create_graph=True\) need the logits of the loss, which were changed"
    logits = base * 2.0  # its producer does not need it: the gradient may overwrite it
    loss = cross_entropy(logits, y, inplace=True)
    with pytest.raises(RuntimeError, match=message):
        torch.autograd.grad(loss, base, create_graph=True)
    logits = base * 2.0
    loss = cross_entropy(logits, y)
    with torch.no_grad():
        logits[0, 0] += 1.0  # edited in place: no longer the logits of this loss
    with pytest.raises(RuntimeError, match=message):
        torch.autograd.grad(loss, base, create_graph=True)
    rebuilt = r"logits nothing holds any more .* which {} does not allow; keep a reference"
    for kw, why in (({"label_smoothing": 0.1}, "label_smoothing"), ({"softcap": 3.0}, "softcap")):
        loss = cross_entropy(base * 2.0, y, **kw)  # nothing holds the logits after the call
        with pytest.raises(RuntimeError, match=rebuilt.format(why)):
            torch.autograd.grad(loss, base, create_graph=True)
    # first derivatives never need them
    (g,) = torch.autograd.grad(cross_entropy(base * 2.0, y), base)
    torch.testing.assert_close(g, torch.autograd.grad(F.cross_entropy(base * 2.0, y), base)[0])


@pytest.mark.parametrize("shape", [(5,), (2, 5, 3)], ids=["unbatched", "K-dim"])
def test_second_derivatives_in_every_layout(shape):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(shape, generator=g, dtype=D64, requires_grad=True)
    y = torch.randint(0, 5, (shape[0], *shape[2:]) if len(shape) > 1 else (), generator=g)
    assert gradgradcheck(lambda a: cross_entropy(a, y, label_smoothing=0.1), (x,))


def test_class_weights_that_require_grad_are_refused():
    x, y, w, q = _data()
    w.requires_grad_()
    with pytest.raises(ValueError, match=r"weight: class weights are constants.*weight\.detach"):
        cross_entropy(x, y, w)
    with pytest.raises(ValueError, match=r"weight: class weights are constants"):
        CrossEntropyLoss(weight=w)(x, q)
    with pytest.raises(ValueError, match=r"class_weight: class weights are constants"):
        linear_cross_entropy(x, torch.randn(5, 5, dtype=D64), y, class_weight=w)
    with torch.no_grad():  # no gradient is being recorded: nothing goes missing
        cross_entropy(x, y, w)
    cross_entropy(x, y, w.detach())


def test_the_logits_are_not_kept_until_backward():
    """Supporting second derivatives costs no memory: the (N, C) logits are freed when their
    last user lets go of them, as before; the gradient is all the loss keeps."""
    import weakref

    x, y, _, _ = _data()
    lin = torch.nn.Linear(5, 5).double()
    logits = lin(x)
    ref = weakref.ref(logits)
    loss = cross_entropy(logits, y)
    del logits
    assert ref() is None
    loss.backward()
    assert lin.weight.grad is not None

"""torch.compile of the functional API.

``cross_entropy`` compiles into one graph (the ``crossent::cross_entropy`` custom op,
``fullgraph=True``); ``linear_cross_entropy`` runs eagerly inside a compiled function (a graph
break). Losses and gradients match eager mode.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from crossent.torch import cross_entropy, linear_cross_entropy  # noqa: E402

# torch's own warnings while dynamo/inductor start up (not about crossent)
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning"
    ),
]


def losses(x, y, q):
    z = torch.tanh(x) * 3.0  # compiled around the loss
    a = cross_entropy(z, y, label_smoothing=0.1, z_loss=1e-3)
    b, lse = cross_entropy(z.reshape(2, 4, 10).transpose(1, 2), y.reshape(2, 4),
                           reduction="none", return_lse=True)  # fmt: skip
    c = cross_entropy(z, q, softcap=2.0)  # probability targets that require grad
    return a + 0.5 * b.sum() + 0.01 * lse.sum() + c


def fused(x, w, y):
    return linear_cross_entropy(torch.tanh(x), w, y, softcap=5.0, chunk_size=3)


def _grads(fn, *args):
    for t in args:
        t.grad = None
    loss = fn(*args)
    loss.backward()
    return [loss.detach()] + [t.grad.clone() for t in args if t.requires_grad]


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_cross_entropy_compiles_into_one_graph(backend):
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 10, generator=g, requires_grad=True)
    y = torch.randint(0, 10, (8,), generator=g)
    y[3] = -100
    q = torch.softmax(torch.randn(8, 10, generator=g), 1).requires_grad_()
    compiled = torch.compile(losses, backend=backend, fullgraph=True)
    got = _grads(lambda x, q: compiled(x, y, q), x, q)
    want = _grads(lambda x, q: losses(x, y, q), x, q)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


def test_linear_cross_entropy_under_compile():
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 6, generator=g, requires_grad=True)
    w = torch.randn(11, 6, generator=g, requires_grad=True)
    y = torch.randint(0, 11, (7,), generator=g)
    compiled = torch.compile(fused, backend="aot_eager")
    got = _grads(lambda x, w: compiled(x, w, y), x, w)
    want = _grads(lambda x, w: fused(x, w, y), x, w)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "options",
    [("mean", 0.1, 0.0, None, 1.0), ("none", 0.0, 1e-3, 3.0, 0.5)],
    ids=["mean-smoothing", "none-zloss-softcap-temperature"],
)
def test_custom_op_passes_opcheck(options):
    from crossent.torch._ops import cross_entropy_op, op_options
    from crossent.torch._options import make_options

    reduction, eps, zl, cap, temp = options
    x = torch.randn(5, 7, requires_grad=True)
    y = torch.tensor([1, 2, -100, 0, 6])
    opts = make_options(reduction=reduction, label_smoothing=eps, z_loss=zl, softcap=cap,
                        temperature=temp)  # fmt: skip
    args = (x, y, torch.rand(7) + 0.5, True)
    result = torch.library.opcheck(cross_entropy_op, args, op_options(opts))
    assert all(v == "SUCCESS" for v in result.values()), result


def test_double_backward_under_compile_is_an_error_not_a_silent_gradient():
    """torch.compile has no double backward: crossent's op raises PyTorch's error there, as
    F.cross_entropy does (eager crossent has exact second derivatives: test_torch_higher_order)."""
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1, 2, 3, -100])
    lin = torch.nn.Linear(3, 10).double()
    for fn in (cross_entropy, torch.nn.functional.cross_entropy):
        torch._dynamo.reset()
        compiled = torch.compile(lambda a, fn=fn: fn(lin(a), y), backend="aot_eager",
                                 fullgraph=True)  # fmt: skip
        (g,) = torch.autograd.grad(compiled(x), x, create_graph=True)
        with pytest.raises(RuntimeError, match="does not currently support double backward"):
            torch.autograd.grad(g.pow(2).sum(), lin.weight)

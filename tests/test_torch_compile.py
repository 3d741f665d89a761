"""torch.compile of the functional API: the crossent call runs eagerly (a graph break) inside
a compiled function, and gradients match eager mode."""

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


def model(x, w, y):
    h = torch.tanh(x @ w)  # compiled
    return cross_entropy(h * 3.0, y, label_smoothing=0.1, z_loss=1e-3) + linear_cross_entropy(
        x, w.t(), y, softcap=5.0
    )


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_function_matches_eager(backend):
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 6, generator=g)
    w = torch.randn(6, 5, generator=g, requires_grad=True)
    y = torch.randint(0, 5, (8,), generator=g)
    compiled = torch.compile(model, backend=backend)
    loss = compiled(x, w, y)
    loss.backward()
    got = w.grad.clone()
    w.grad = None
    want = model(x, w, y)
    want.backward()
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(got, w.grad)

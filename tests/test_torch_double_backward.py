"""Second derivatives (``create_graph=True``) for the idioms PyTorch users write (issue 23 item 4).

Before, 11 of these 18 raised "need the logits, which are gone": the loss kept only a weak
reference to its logits, so a temporary (``cross_entropy(model(x), y)``, a view made for the
call, the language-model shift) left nothing to differentiate twice. Each idiom is checked
with ``gradgradcheck`` and its gradient penalty against ``F.cross_entropy`` in float64, and the
logits are still not kept (their memory) for a plain backward.
"""

from __future__ import annotations

import weakref

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from torch.autograd import gradgradcheck  # noqa: E402

from crossent.torch import CrossEntropyLoss, cross_entropy  # noqa: E402

D64 = torch.float64
N, T, D, V = 3, 4, 5, 7


def _lm_shift(ce, h, w, y):
    logits = h @ w.T  # (N, T, V), held by the caller
    return ce(logits[:, :-1].reshape(-1, V), y[:, 1:].reshape(-1))


def _lm_shift_contiguous(ce, h, w, y):
    shift = (h @ w.T)[..., :-1, :].contiguous()
    return ce(shift.view(-1, V), y[:, 1:].reshape(-1))


def _held_view(ce, h, w, y):
    logits = h @ w.T
    return ce(logits.view(-1, V), y.view(-1))


def _temporary(ce, h, w, y):
    return ce((h @ w.T).reshape(-1, V), y.reshape(-1))


def _held(ce, h, w, y):
    logits = (h @ w.T).reshape(-1, V)
    return ce(logits, y.reshape(-1))


def _k_dim(ce, h, w, y):  # (N, V, T): classes at dim 1
    return ce((h @ w.T).transpose(1, 2), y)


def _flatten(ce, h, w, y):
    return ce((h @ w.T).flatten(0, 1), y.flatten())


def _scaled(ce, h, w, y):
    return ce((h @ w.T).reshape(-1, V) / 0.7, y.reshape(-1))


def _module(ce, h, w, y):
    loss = CrossEntropyLoss() if ce is cross_entropy else torch.nn.CrossEntropyLoss()
    return loss((h @ w.T).reshape(-1, V), y.reshape(-1))


def _sum(ce, h, w, y):
    return ce((h @ w.T).reshape(-1, V), y.reshape(-1), reduction="sum")


def _none_weighted_rows(ce, h, w, y):
    rows = ce((h @ w.T).reshape(-1, V), y.reshape(-1), reduction="none")
    return (rows * torch.linspace(0.5, 2.0, rows.numel(), dtype=D64)).sum()


def _ignore_index(ce, h, w, y):
    y = y.reshape(-1).clone()
    y[::3] = -100
    return ce((h @ w.T).reshape(-1, V), y)


def _class_weights(ce, h, w, y):
    cw = torch.linspace(0.5, 1.5, V, dtype=D64)
    return ce((h @ w.T).reshape(-1, V), y.reshape(-1), weight=cw)


def _probabilities(ce, h, w, y):
    q = torch.softmax(torch.linspace(-1, 1, N * T * V, dtype=D64).reshape(-1, V).cos(), 1)
    return ce((h @ w.T).reshape(-1, V), q)


def _unbatched(ce, h, w, y):
    return ce(h[0, 0] @ w.T, y[0, 0])


def _masked_class(ce, h, w, y):
    mask = torch.zeros(V, dtype=D64)
    mask[-1] = float("-inf")
    return ce((h @ w.T).reshape(-1, V) + mask, y.reshape(-1) % (V - 1))


def _module_output(ce, h, w, y):  # ce(model(x), y): a model whose weight is w
    model = torch.nn.Sequential(torch.nn.Tanh(), torch.nn.Linear(D, V, bias=False).double())
    out = torch.func.functional_call(model, {"1.weight": w}, (h,))
    return ce(out.reshape(-1, V), y.reshape(-1))


def _maml(ce, h, w, y):
    """A MAML-style inner step: differentiate through one SGD step on the head's weight."""
    x = h.reshape(-1, D)
    inner = ce(x @ w.T, y.reshape(-1))
    (g,) = torch.autograd.grad(inner, w, create_graph=True)
    w2 = w - 0.5 * g
    return ce(x.flip(0) @ w2.T, y.reshape(-1))


IDIOMS = [
    _lm_shift, _lm_shift_contiguous, _held_view, _temporary, _held, _k_dim, _flatten, _scaled,
    _module, _sum, _none_weighted_rows, _ignore_index, _class_weights, _probabilities,
    _unbatched, _masked_class, _module_output, _maml,
]  # fmt: skip


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, T, D, generator=g, dtype=D64, requires_grad=True)
    w = torch.randn(V, D, generator=g, dtype=D64, requires_grad=True)
    y = torch.randint(0, V, (N, T), generator=g)
    return h, w, y


@pytest.mark.parametrize("idiom", IDIOMS, ids=lambda f: f.__name__.strip("_"))
def test_gradient_penalty_equals_pytorch(idiom):
    """||∂L/∂h||² differentiated again, through the logits' producer, equals PyTorch's."""
    results = []
    for ce in (cross_entropy, F.cross_entropy):
        h, w, y = _inputs()
        loss = idiom(ce, h, w, y)
        gh, gw = torch.autograd.grad(loss, (h, w), create_graph=True)
        penalty = (gh**2).sum() + (gw**2).sum()
        results.append((loss, *torch.autograd.grad(penalty, (h, w))))
    for ours, theirs in zip(*results, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("idiom", [*IDIOMS[:8], _maml], ids=lambda f: f.__name__.strip("_"))
def test_gradgradcheck(idiom):
    h, w, y = _inputs(1)
    assert gradgradcheck(lambda a, b: idiom(cross_entropy, a, b, y), (h, w), fast_mode=True)


@pytest.mark.parametrize("kw", [{"z_loss": 0.05}, {"temperature": 0.7}], ids=repr)
def test_rebuilt_logits_with_options(kw):
    """z-loss and temperature: the gradient still determines the logits of a temporary."""
    h, w, y = _inputs(2)
    assert gradgradcheck(
        lambda a, b: cross_entropy((a @ b.T).reshape(-1, V), y.reshape(-1), **kw),
        (h, w),
        fast_mode=True,
    )


def test_float32_temporary_second_derivative():
    h, w, y = _inputs(3)
    results = []
    for ce in (cross_entropy, F.cross_entropy):
        a, b = h.detach().float().requires_grad_(), w.detach().float().requires_grad_()
        (g,) = torch.autograd.grad(_temporary(ce, a, b, y), a, create_graph=True)
        results.append(torch.autograd.grad((g**2).sum(), b)[0])
    torch.testing.assert_close(*results, rtol=1e-4, atol=1e-6)


def test_a_temporary_is_still_not_kept_for_a_plain_backward():
    """Rebuilding needs the logits' place in the graph, not their memory."""
    h, w, y = _inputs()
    logits = (h @ w.T).reshape(-1, V)
    ref = weakref.ref(logits)
    loss = cross_entropy(logits, y.reshape(-1))
    del logits
    assert ref() is None
    loss.backward()
    assert w.grad is not None

"""PyTorch's own OpInfo sample inputs, run through crossent.torch in float64.

``op_db`` (``torch.testing._internal.common_methods_invocations``) holds the inputs PyTorch
tests ``nn.functional.cross_entropy`` and ``nn.functional.linear_cross_entropy`` with: every
layout (unbatched, ``(N, C)``, ``(N, C, d1, ..., dK)``), index and probability targets,
class weights, ``ignore_index``, each reduction. Each sample goes through crossent and through
PyTorch; loss and gradients (of the input, the linear weight and bias, a probability target)
must agree. Where crossent refuses an input by design, the sample is adapted first and the test
says so: probability targets that are not distributions are normalized (``|t| / Σ|t|`` along
the class dimension), negative class weights are replaced by their absolute values.
"""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("expecttest")  # torch.testing._internal needs it (the dev extra has it)
F = torch.nn.functional
if not torch.cuda.is_available():
    # op_db imports triton: in interpreter mode, as tests/test_torch_triton.py needs it
    os.environ["TRITON_INTERPRET"] = "1"

from torch.testing._internal.common_methods_invocations import op_db  # noqa: E402

from crossent.torch import cross_entropy, linear_cross_entropy  # noqa: E402


def _samples(name: str) -> list:
    out = []
    for op in op_db:
        if op.name == name:
            out += list(op.sample_inputs("cpu", torch.float64, requires_grad=True))
    return out


CE_SAMPLES = _samples("nn.functional.cross_entropy")
LCE_SAMPLES = [
    s
    for s in _samples("nn.functional.linear_cross_entropy")
    # crossent's head is a (V, D) matrix over inputs (..., D), classes last: 2-D logits
    if s.args[0].ndim == 2 and s.input.ndim <= 2
]


def _describe(sample) -> str:
    shapes = [tuple(sample.input.shape)] + [tuple(a.shape) for a in sample.args]
    kw = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else v
          for k, v in sample.kwargs.items() if k != "options"}  # fmt: skip
    return f"{shapes}-{'prob' if sample.args[-1].is_floating_point() else 'index'}-{kw}"


def _adapt_target(t: torch.Tensor, class_dim: int) -> torch.Tensor:
    """Probability targets become distributions (crossent checks them; PyTorch does not)."""
    t = t.detach()
    if t.is_floating_point():
        a = t.abs() + 1e-3
        t = a / a.sum(dim=class_dim, keepdim=True)
    return t


def _abs_weight(w: torch.Tensor | None) -> torch.Tensor | None:
    """Negative class weights: crossent refuses them (a negative weight rewards a wrong class)."""
    return None if w is None else w.detach().abs()


def _loss_and_grads(fn, inputs: list[torch.Tensor], gout_seed: int = 0):
    leaves = [t.clone().requires_grad_(t.is_floating_point()) for t in inputs]
    loss = fn(*leaves)
    g = torch.Generator().manual_seed(gout_seed)
    gout = torch.rand(loss.shape, generator=g, dtype=loss.dtype) + 0.5
    wrt = [t for t in leaves if t.requires_grad]
    return loss.detach(), torch.autograd.grad(loss, wrt, gout)


def test_the_samples_are_there():
    assert len(CE_SAMPLES) >= 20
    assert len(LCE_SAMPLES) >= 30
    kinds = {s.args[0].is_floating_point() for s in CE_SAMPLES}
    assert kinds == {True, False}  # index and probability targets


@pytest.mark.parametrize("sample", CE_SAMPLES, ids=_describe)
def test_cross_entropy_opinfo_sample(sample):
    x = sample.input.detach()
    class_dim = 1 if x.ndim > 1 else 0
    t = _adapt_target(sample.args[0], class_dim)
    kw = dict(sample.kwargs)
    kw["weight"] = _abs_weight(kw.get("weight"))
    got = _loss_and_grads(lambda a, b: cross_entropy(a, b, **kw), [x, t])
    want = _loss_and_grads(lambda a, b: F.cross_entropy(a, b, **kw), [x, t])
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)
    assert len(got[1]) == len(want[1]) == (2 if t.is_floating_point() else 1)
    for a, b in zip(got[1], want[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("sample", LCE_SAMPLES, ids=_describe)
def test_linear_cross_entropy_opinfo_sample(sample):
    h = sample.input.detach()
    w = sample.args[0].detach()
    t = _adapt_target(sample.args[1], -1)
    kw = {k: v for k, v in sample.kwargs.items() if k != "options"}
    bias = kw.pop("linear_bias", None)
    class_weight = _abs_weight(kw.pop("weight", None))
    if kw.get("ignore_index", -100) is None:  # PyTorch's "nothing ignored"
        kw.pop("ignore_index")
    inputs = [h, w, t] + ([bias.detach()] if bias is not None else [])

    def ours(a, b, c, bb=None):
        return linear_cross_entropy(a, b, c, bb, class_weight=class_weight, chunk_size=2, **kw)

    def theirs(a, b, c, bb=None):
        return F.cross_entropy(F.linear(a, b, bb), c, class_weight, **kw)

    got, want = _loss_and_grads(ours, inputs), _loss_and_grads(theirs, inputs)
    torch.testing.assert_close(got[0], want[0], rtol=1e-12, atol=1e-12)
    assert len(got[1]) == len(want[1]) >= 2
    for a, b in zip(got[1], want[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)

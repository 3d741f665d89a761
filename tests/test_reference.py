"""crossent.reference, the one oracle of the tests, checked against PyTorch in float64.

PyTorch's ``F.cross_entropy`` covers class weights, ``ignore_index``, label smoothing, the three
reductions, probability targets and PyTorch's ``(N, C, d1, ...)`` layout; the options it lacks
(z-loss, soft-capping, temperature, ``num_items``) are checked through their formulas on top
of it, and crossent's documented departures from PyTorch (masked classes, all-ignored batches)
by their values.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from crossent import reference

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _case(kind, shape, axis, weighted, ignore, seed):
    rng = np.random.default_rng(seed)
    c = shape[axis]
    x = rng.normal(size=shape) * 3.0
    idx_shape = shape[:axis] + shape[axis + 1 :]
    if kind == "index":
        target = rng.integers(0, c, size=idx_shape)
        if ignore:
            target.reshape(-1)[::3] = -7
    else:
        q = rng.random(size=shape) * (rng.random(size=shape) < 0.7) + 1e-3
        target = q / q.sum(axis=axis, keepdims=True)
    weight = rng.random(c) * 2 + 0.1 if weighted else None
    return x, target, weight


GRID = [
    g
    for g in itertools.product(
        ["index", "prob"],
        [((6, 5), 1), ((3, 4, 2, 5), 1)],
        [False, True],
        [False, True],
        ["mean", "sum", "none"],
        [0.0, 0.2],
    )
    if not (g[0] == "prob" and g[3])
]


@pytest.mark.parametrize(("kind", "layout", "weighted", "ignore", "reduction", "eps"), GRID)
def test_reference_matches_torch(kind, layout, weighted, ignore, reduction, eps):
    shape, axis = layout
    seed = len(shape) * 100 + weighted * 10 + ignore + (kind == "prob") * 1000
    x, target, weight = _case(kind, shape, axis, weighted, ignore, seed)
    ii = -7
    xt = torch.tensor(x, requires_grad=True)
    wt = None if weight is None else torch.tensor(weight)
    expect = F.cross_entropy(xt, torch.tensor(target), weight=wt, ignore_index=ii,
                             reduction=reduction, label_smoothing=eps)  # fmt: skip
    got = reference.cross_entropy(x, target, axis=axis, weight=weight, ignore_index=ii,
                                  reduction=reduction, label_smoothing=eps)  # fmt: skip
    np.testing.assert_allclose(got, expect.detach().numpy(), rtol=1e-12, atol=1e-14)
    # on torch tensors it is differentiable, and its gradient is PyTorch's
    xr = torch.tensor(x, requires_grad=True)
    got_t = reference.cross_entropy(xr, torch.tensor(target), axis=axis, weight=wt,
                                    ignore_index=ii, reduction=reduction, label_smoothing=eps)  # fmt: skip
    got_t.sum().backward()
    expect.sum().backward()
    torch.testing.assert_close(xr.grad, xt.grad, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_z_loss_softcap_temperature_by_their_formulas(kind, reduction):
    x, target, weight = _case(kind, (8, 6), 1, True, kind == "index", 5)
    lam, cap, temp = 0.3, 2.5, 0.7
    xt = torch.tensor(x)
    z = cap * torch.tanh(xt / temp / cap)
    tt = torch.tensor(target)
    wt = torch.tensor(weight)
    ce = F.cross_entropy(z, tt, weight=wt, ignore_index=-7, reduction="none")
    valid = (tt != -7).double() if kind == "index" else torch.ones(8, dtype=torch.float64)
    zterm = lam * torch.logsumexp(z, 1) ** 2 * valid
    if reduction == "none":
        expect = ce + zterm
    elif reduction == "sum":
        expect = (ce + zterm).sum()
    else:
        d = (wt[torch.where(tt != -7, tt, 0)] * valid).sum() if kind == "index" else 8.0
        expect = ce.sum() / d + zterm.sum() / valid.sum()
    got = reference.cross_entropy(x, target, weight=weight, ignore_index=-7, reduction=reduction,
                                  z_loss=lam, softcap=cap, temperature=temp)  # fmt: skip
    np.testing.assert_allclose(got, expect.numpy(), rtol=1e-12)
    if reduction == "mean":  # num_items replaces both denominators
        got = reference.cross_entropy(x, target, weight=weight, ignore_index=-7, z_loss=lam,
                                      softcap=cap, temperature=temp, num_items=40.0)  # fmt: skip
        np.testing.assert_allclose(got, (ce + zterm).sum().item() / 40.0, rtol=1e-12)


def test_crossent_semantics_where_torch_gives_nan_or_inf():
    x = np.array([[0.0, -np.inf, 1.0], [-np.inf] * 3, [2.0, 0.0, -np.inf]])
    y = np.array([0, -100, 2])
    loss = reference.cross_entropy(x, y, reduction="none", label_smoothing=0.3)
    # smoothing over the two finite classes; an ignored all -inf row is 0; mass on -inf: +inf
    p0 = np.exp(x[0, [0, 2]]) / np.exp(x[0, [0, 2]]).sum()
    assert loss[0] == pytest.approx(-(0.7 + 0.15) * np.log(p0[0]) - 0.15 * np.log(p0[1]))
    assert loss[1] == 0.0 and loss[2] == math.inf
    assert reference.cross_entropy(x[:2], [-100, -100]) == 0.0  # 'mean' of nothing
    q = np.array([[0.5, 0.0, 0.5]])  # probabilities with no mass on the masked class
    expect = -0.5 * (np.log(p0)).sum()
    assert float(reference.cross_entropy(x[:1], q)) == pytest.approx(expect)
    # no NaN in torch's gradient either, masked classes get 0
    xt = torch.tensor(x, requires_grad=True)
    reference.cross_entropy(xt[:2], torch.tensor(y[:2]), label_smoothing=0.3).backward()
    assert torch.isfinite(xt.grad).all() and xt.grad[0, 1] == 0 and (xt.grad[1] == 0).all()


def test_reference_has_exactly_the_signature_of_crossent_cross_entropy():
    import inspect

    import crossent

    def params(f):  # names, kinds and defaults (the annotations differ: it also takes tensors)
        return [(p.name, p.kind, p.default) for p in inspect.signature(f).parameters.values()]

    assert params(reference.cross_entropy) == params(crossent.cross_entropy)


def test_reference_grad_helper_is_pytorchs_gradient():
    from numgrad import reference_grad

    x, y, w = _case("index", (6, 5), 1, True, True, 9)
    xt = torch.tensor(x, requires_grad=True)
    F.cross_entropy(xt, torch.tensor(y), weight=torch.tensor(w), ignore_index=-7).backward()
    got = reference_grad(x, y, weight=w, ignore_index=-7)
    np.testing.assert_allclose(got, xt.grad.numpy(), rtol=1e-12, atol=1e-15)

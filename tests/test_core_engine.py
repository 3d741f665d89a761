"""The blocked, threaded engine equals the single-block computation; out= and in-place."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import crossent
from crossent import _engine
from crossent._core import prepare
from crossent._spec import make_options


def _prepare(x, target, weight=None, **options):
    return prepare(x, target, make_options(**options), weight=weight)


OPTION_SETS = [
    {},
    {"weight": "w", "label_smoothing": 0.1},
    {"z_loss": 1e-3, "softcap": 15.0, "temperature": 1.5},
    {"weight": "w", "label_smoothing": 0.2, "z_loss": 1e-4, "softcap": 30.0, "temperature": 0.8},
]


def _problem(kind, n, c, dtype, rng):
    x = (rng.normal(size=(n, c)) * 4).astype(dtype)
    x[::5, ::7] = -np.inf  # masked classes
    if kind == "index":
        y = rng.integers(0, c, size=n)
        y = np.where(np.isneginf(x[np.arange(n), y]), 1, y)
        y[::7] = -100
        return x, y
    q = rng.random((n, c))
    q[np.isneginf(x)] = 0.0
    return x, (q / q.sum(axis=1, keepdims=True)).astype(dtype)


@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize("opts", OPTION_SETS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_blocked_threaded_equals_single_block(kind, opts, dtype):
    rng = np.random.default_rng(0)
    n, c = 301, 203
    x, target = _problem(kind, n, c, dtype, rng)
    opts = {k: (rng.random(c) + 0.5 if v == "w" else v) for k, v in opts.items()}
    prep = _prepare(x, target, **opts)
    results = []
    for threads, block in [(1, n), (1, 1), (2, 7), (3, 64)]:
        grad = np.empty_like(x)
        loss, lse = _engine.run(prep.pb, grad, threads=threads, block=block)
        results.append((loss, lse, grad))
    # summation order differs with the block shape: equal to rounding
    tol = {np.float64: 1e-12, np.float32: 2e-6, np.float16: 1e-3}[dtype]
    for loss, lse, grad in results[1:]:
        np.testing.assert_allclose(loss, results[0][0], rtol=tol)
        np.testing.assert_allclose(lse, results[0][1], rtol=tol)
        np.testing.assert_allclose(grad, results[0][2], rtol=tol, atol=tol * 1e-3)
    assert np.isfinite(results[0][2]).all()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["index", "prob"])
def test_large_input_default_path_equals_float64_reference(kind):
    """Large inputs take the blocked, threaded path: equal to a float64 single-block run."""
    rng = np.random.default_rng(1)
    n, c = 2048, 4099
    x, target = _problem(kind, n, c, np.float32, rng)
    w = rng.random(c) + 0.5
    opts = dict(weight=w, label_smoothing=0.1, z_loss=1e-4, softcap=20.0, temperature=1.2)
    assert n * c >= _engine.PARALLEL_MIN_ELEMENTS
    loss, grad = crossent.cross_entropy_with_grad(x, target, **opts)
    prep = _prepare(x.astype(np.float64), target.astype(np.float64) if kind == "prob" else target,
                    **opts)  # fmt: skip
    ref_grad = np.empty((n, c))
    ref_loss, ref_lse = _engine.run(prep.pb, ref_grad, threads=1, block=n)
    assert float(loss) == pytest.approx(prep.reduce(ref_loss, ref_lse), rel=1e-5)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_out_and_in_place(dtype):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 30)).astype(dtype)
    y = rng.integers(0, 30, size=50)
    loss, grad = crossent.cross_entropy_with_grad(x, y, label_smoothing=0.1)
    out = np.empty_like(x)
    loss2, grad2 = crossent.cross_entropy_with_grad(x, y, label_smoothing=0.1, out=out)
    assert grad2 is out
    np.testing.assert_array_equal(out, grad)
    assert loss2 == loss
    xc = x.copy()
    loss3, grad3 = crossent.cross_entropy_with_grad(xc, y, label_smoothing=0.1, out=xc)
    assert grad3 is xc
    np.testing.assert_array_equal(xc, grad)
    assert loss3 == loss


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "opts",
    [{}, {"weight": True}, {"temperature": 0.5}, {"label_smoothing": 0.1}, {"softcap": 5.0}],
    ids=str,
)
def test_in_place_equals_out_of_place_on_every_kernel(dtype, opts):
    """Large enough for the block engine (not the small path), in both kernels."""
    rng = np.random.default_rng(7)
    x = (rng.normal(size=(300, 150)) * 3).astype(dtype)
    y = rng.integers(0, 150, size=300)
    y[::9] = -100
    if opts.get("weight"):
        opts = {"weight": rng.random(150) + 0.5}
    for reduction in ("mean", "none"):
        loss, grad = crossent.cross_entropy_with_grad(x, y, reduction=reduction, **opts)
        buf = x.copy()
        loss2, grad2 = crossent.cross_entropy_with_grad(
            buf, y, reduction=reduction, out=buf, **opts
        )
        assert grad2 is buf
        np.testing.assert_array_equal(loss2, loss)
        np.testing.assert_array_equal(grad2, grad)


def test_out_with_class_axis_not_last():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 6, 5))
    y = rng.integers(0, 6, size=(4, 5))
    ref = crossent.cross_entropy_grad(x, y, axis=1)
    out = np.empty_like(x)
    assert crossent.cross_entropy_grad(x, y, axis=1, out=out) is out
    np.testing.assert_allclose(out, ref)


def test_import_crossent_stays_light():
    code = (
        "import sys, crossent; crossent.cross_entropy([1.0, 2.0], 0); "
        "heavy = {'torch', 'jax', 'optax', 'sklearn', 'matplotlib', 'scipy', 'rich'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_small_lean_path_equals_general_path(dtype, reduction):
    from crossent._core import compute, small_simple

    rng = np.random.default_rng(5)
    # scale 10: no shift needed; 1000, a masked class, Fortran order: the row-max shift
    cases = [(64, 10, 10), (1, 1, 10), (7, 300, 10), (100, 2, 10), (64, 10, 1000), (64, 10, 1)]
    for n, c, scale in cases:
        x = (rng.normal(size=(n, c)) * scale).astype(dtype)
        if n == 7:
            x[2, 5] = -np.inf
        if scale == 1:  # logits in Fortran order (a transposed view): z.ravel() is no view
            x = np.asfortranarray(x)
        y = rng.integers(0, c, size=n)
        fast = small_simple(x, y, -1, reduction, True)
        assert fast is not None
        general = compute(_prepare(x, y, reduction=reduction), True, None)
        tol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(fast[0], general[0], rtol=tol, atol=tol)
        np.testing.assert_allclose(fast[1], general[1], rtol=tol, atol=tol)  # the lse
        np.testing.assert_allclose(fast[2], general[2], rtol=tol, atol=tol * 0.1)  # p - 1 cancels
        assert crossent.cross_entropy(x, y, reduction=reduction).dtype == dtype
        assert fast[2].dtype == dtype
    # what the lean path hands over to the general one
    x = np.zeros((3, 4))
    assert small_simple(x, np.array([0, -100, 1]), -1, reduction, True) is None
    assert small_simple(x, np.array([0, 4, 1]), -1, reduction, True) is None
    assert small_simple(np.array([[np.nan, 0.0]]), np.array([0]), -1, reduction, True) is None
    assert small_simple(x, np.array([0, 1, 2]), 0, reduction, True) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_plain_block_equals_general_block(dtype, temperature):
    from crossent._kernel import ce_block, plain_block

    rng = np.random.default_rng(6)
    n, c = 40, 57
    x = (rng.normal(size=(n, c)) * 5).astype(dtype)
    x[3, :10] = -np.inf
    y = rng.integers(0, c, size=n)
    y[::5] = -100
    y[3] = 20
    w = rng.random(c) + 0.5
    prep = _prepare(x, y, w, temperature=temperature)
    assert prep.pb.plain
    cd = prep.pb.cdtype
    z1, z2 = np.empty((n, c), dtype=cd), np.empty((n, c), dtype=cd)
    loss1, lse1 = plain_block(prep.pb, 0, n, z1, None, True)
    loss2, lse2 = ce_block(prep.pb, 0, n, z2, None, True)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(loss1, loss2, rtol=tol, atol=tol)
    np.testing.assert_allclose(lse1, lse2, rtol=tol)
    np.testing.assert_allclose(z1, z2, rtol=tol, atol=tol * 1e-3)
    # a block the plain kernel does not cover goes to the general one
    big = x * 1e3
    prep = _prepare(big, y, w, temperature=temperature)
    loss3, _ = plain_block(prep.pb, 0, n, z1, None, True)
    loss4, _ = ce_block(prep.pb, 0, n, z2, None, True)
    np.testing.assert_array_equal(loss3, loss4)

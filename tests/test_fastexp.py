"""The compiled exp (crossent._fastexp) and its gateway crossent._exp.exp_rows.

Accuracy is measured in ulp of the correctly rounded exp (NumPy's ``longdouble`` exp, 64-bit
mantissa on x86, rounded once to the target dtype), over the whole range the engine uses and at
the thresholds its shift logic relies on (overflow, the last normal, the subnormals, underflow).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from crossent import _exp

fastexp = pytest.importorskip(
    "crossent._fastexp", reason="the compiled exp is not built (no C compiler at install)"
)
LONG = np.finfo(np.longdouble).nmant >= 63  # x86's 80-bit long double: a reference for float64


def _run(x: np.ndarray, shift: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    x2 = np.atleast_2d(x)
    out, sums = np.empty_like(x2), np.empty(x2.shape[0])
    fastexp.exp_sum(x2.ravel(), out.ravel(), *x2.shape, x2.shape[1], x2.shape[1], shift, sums)
    return out.reshape(x.shape), sums


def _ulps(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """|y - exp(x)| in units of the last place of the correctly rounded exp(x)."""
    exact = np.exp(x.astype(np.longdouble))
    with np.errstate(over="ignore"):
        rounded = exact.astype(x.dtype)
    # the ulp at the rounded result; subnormal results have the fixed smallest spacing
    ulp = np.spacing(np.abs(rounded)).astype(np.longdouble)
    return np.asarray(np.abs(y.astype(np.longdouble) - exact) / ulp, dtype=np.float64)


def _edges(dtype: type) -> np.ndarray:
    """128 neighbours of each threshold: overflow, the last normal result, underflow, ±ln2/2."""
    info = np.finfo(dtype)
    pts = [np.log(info.max), np.log(info.smallest_normal), np.log(info.smallest_subnormal)]
    pts += [0.0, 0.5 * np.log(2.0), -0.5 * np.log(2.0), 88.0, -87.0]
    return np.concatenate(
        [dtype(p) + np.arange(-64, 64, dtype=dtype) * np.spacing(dtype(p)) for p in pts]
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("simd", [True, False], ids=["simd", "scalar"])
def test_within_2_ulp_over_the_whole_range_and_at_the_thresholds(dtype, simd) -> None:
    if dtype == np.float64 and not LONG:
        pytest.skip("no 64-bit long double to measure float64 against")
    fastexp.simd(simd)
    try:
        info = np.finfo(dtype)
        rng = np.random.default_rng(0)
        lo, hi = float(np.log(info.smallest_subnormal)) - 2, float(np.log(info.max)) + 2
        x = np.concatenate(
            [
                rng.uniform(lo, hi, 200_000),
                rng.uniform(-1.0, 1.0, 50_000),
                rng.uniform(-30.0, 5.0, 50_000),
            ]
        ).astype(dtype)
        x = np.concatenate([x, _edges(dtype)])
        y, _ = _run(x)
        exact = np.exp(x.astype(np.longdouble))
        with np.errstate(over="ignore"):
            rounded = exact.astype(dtype)
        # overflow and underflow exactly where the correctly rounded exp has them
        np.testing.assert_array_equal(np.isinf(y), np.isinf(rounded))
        finite = np.isfinite(rounded) & (rounded > 0)
        assert (y[~finite & ~np.isinf(rounded)] <= info.smallest_subnormal).all()
        assert _ulps(y[finite], x[finite]).max() <= 2.0
    finally:
        fastexp.simd(True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(dtype) -> None:
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30], dtype)
    y, _ = _run(x)
    np.testing.assert_array_equal(y, np.array([np.nan, np.inf, 0, 1, 1, np.inf, 0], dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cols", [*range(34), 255, 256, 257, 1000])
def test_every_tail_length_shift_and_row_sums(dtype, cols) -> None:
    rng = np.random.default_rng(cols)
    x = (rng.standard_normal((3, cols)) * 5).astype(dtype)
    shift = np.array([0.0, 3.5, -2.0])
    y, sums = _run(x, shift)
    want = np.exp((x - shift.astype(dtype)[:, None]).astype(np.float64))
    np.testing.assert_allclose(y, want, rtol=4 * np.finfo(dtype).eps)
    # float32: lane sums of at most 32 terms, then float64
    np.testing.assert_allclose(sums, y.sum(axis=1, dtype=np.float64), rtol=64 * np.finfo(dtype).eps)


def test_exp_rows_on_strided_rows_and_in_place_equals_numpy_within_ulps() -> None:
    rng = np.random.default_rng(1)
    wide = rng.standard_normal((6, 50)).astype(np.float32)
    view = wide[:, 3:40]  # rows 50 apart, 37 columns
    want = np.exp(view - np.float32(1.0))
    out, sums = np.empty((6, 37), np.float32), np.empty(6)
    _exp.exp_rows(view, out, np.ones(6), sums)
    np.testing.assert_allclose(out, want, rtol=3e-7)
    np.testing.assert_allclose(sums, want.sum(axis=1, dtype=np.float64), rtol=1e-6)
    before = wide.copy()
    _exp.exp_rows(view, view)  # in place
    np.testing.assert_allclose(wide[:, 3:40], np.exp(before[:, 3:40]), rtol=3e-7)
    np.testing.assert_array_equal(wide[:, :3], before[:, :3])  # columns outside: untouched
    np.testing.assert_array_equal(wide[:, 40:], before[:, 40:])
    assert _exp.PATH in ("numpy", "fast")


def test_bad_buffers_are_refused_with_the_argument_named() -> None:
    x = np.zeros((2, 3))
    with pytest.raises(TypeError, match="src: expected float32 or float64"):
        fastexp.exp(np.zeros(6, np.int64), x.ravel(), 2, 3, 3, 3, None)
    with pytest.raises(TypeError, match="dst: expected a buffer of format 'd'"):
        fastexp.exp(x.ravel(), np.zeros(6, np.float32), 2, 3, 3, 3, None)
    with pytest.raises(ValueError, match="shift: expected at least 2 elements"):
        fastexp.exp(x.ravel(), x.ravel(), 2, 3, 3, 3, np.zeros(1))
    with pytest.raises(ValueError, match="src: smaller than rows x stride"):
        fastexp.exp(x.ravel(), x.ravel(), 3, 3, 3, 3, None)


def test_the_path_can_be_forced_and_a_typo_is_named(monkeypatch) -> None:
    monkeypatch.setenv("CROSSENT_EXP", "numpy")
    assert _exp._choose() == "numpy"
    monkeypatch.setenv("CROSSENT_EXP", "fast")
    assert _exp._choose() == "fast"
    monkeypatch.setenv("CROSSENT_EXP", "fastest")
    with pytest.raises(ValueError, match="CROSSENT_EXP: expected 'auto', 'numpy' or 'fast'"):
        _exp._choose()
    assert importlib.util.find_spec("crossent._fastexp") is not None


# The engine through both paths: every place it takes its exp goes through exp_rows, and the
# kernel's results (exp within 2 ulp, row sums in float64) equal NumPy's to rounding.
ENGINE_CASES = [
    ("plain", {}),  # plain_block
    ("small", {}),  # crossent._core.small_simple
    ("shifted", {}),  # logits beyond exp's safe range: the shift
    ("options", {"label_smoothing": 0.1, "z_loss": 1e-3, "temperature": 0.7}),
    ("softcap", {"softcap": 20.0, "weight": True}),
    ("prob", {"temperature": 1.5}),
]


def _engine_case(name: str, dtype: type, rng: np.random.Generator):
    n, c = (40, 10) if name == "small" else (301, 203)
    x = (rng.standard_normal((n, c)) * 4).astype(dtype)
    if name == "shifted":
        x = x + dtype(9000.0 if dtype == np.float64 else 80.0)
    if name == "prob":
        q = rng.random((n, c))
        return x, (q / q.sum(axis=1, keepdims=True)).astype(dtype)
    y = rng.integers(0, c, size=n)
    if name not in ("small", "shifted"):
        y[::7] = -100
    return x, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize(("name", "opts"), ENGINE_CASES, ids=[c[0] for c in ENGINE_CASES])
def test_the_engine_takes_its_exp_through_the_kernel_and_both_paths_agree(
    monkeypatch, dtype, name, opts
) -> None:
    import crossent
    from crossent.reference import cross_entropy as reference

    rng = np.random.default_rng(7)
    x, target = _engine_case(name, dtype, rng)
    kw = {k: (rng.random(x.shape[1]) + 0.5 if k == "weight" else v) for k, v in opts.items()}
    calls = []
    kernel = _exp._kernel
    monkeypatch.setattr(_exp, "_kernel", lambda *a: calls.append(1) or kernel(*a))
    results = {}
    for path in ("numpy", "fast"):
        monkeypatch.setattr(_exp, "PATH", path)
        results[path] = crossent.cross_entropy_with_grad(x, target, **kw)
    assert calls, "the engine did not call the compiled exp on the fast path"
    (l_np, g_np), (l_fast, g_fast) = results["numpy"], results["fast"]
    # float16 logits are computed in float32: the gradient is rounded to float16 once
    tol = {np.float64: 1e-12, np.float32: 2e-6, np.float16: 1e-3}[dtype]
    np.testing.assert_allclose(float(l_fast), float(l_np), rtol=tol)
    np.testing.assert_allclose(g_fast, g_np, rtol=tol, atol=tol * float(np.abs(g_np).max()))
    want = float(reference(x.astype(np.float64), target, **kw))
    np.testing.assert_allclose(float(l_fast), want, rtol=max(tol, 1e-5))

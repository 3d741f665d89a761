"""float32 accuracy where float32 sums lose digits: long rows of near-equal logits, small chunks.

The error of crossent and of PyTorch in the same dtype are both measured against PyTorch in
float64 and compared in units in the last place (ulp) of the float32 answer: crossent may not be
less accurate than PyTorch by more than a fraction of an ulp (both round once at the end), nor
off by more than one ulp where PyTorch happens to be exact. Same machine, same run: the
comparison holds on any CPU (each side's own kernels are used), the bounds state how much.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import crossent  # noqa: E402
import crossent.torch as ct  # noqa: E402


def ulps(got: torch.Tensor, ref: torch.Tensor) -> float:
    """Largest error of ``got`` (float32) against ``ref`` (float64), in ulp of float32 ``ref``."""
    ref32 = ref.float().double()
    ulp = np.spacing(np.abs(ref32.numpy()).astype(np.float32)).astype(np.float64)
    err = (got.double() - ref).abs().numpy()
    return float(np.max(err / np.maximum(ulp, np.finfo(np.float32).tiny)))


def boundary_rows(n: int, v: int, base: float, case: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` rows of ``v`` logits equal to ``base``; target 0, raised or lowered by ``case``."""
    x = torch.full((n, v), base, dtype=torch.float32)
    y = torch.zeros(n, dtype=torch.long)
    if case != "equal":
        x[:, 0] += {"above1": 1.0, "above12": 12.0, "below3": -3.0}[case]
    return x, y


# 50.3: the example; exp() needs no shift up to 80 - log(V) (float32), where the
# exponentials are ~e^50 and their float32 sums lose digits; 0.0 is the same without magnitude
BASES = [0.0, 50.3]
CASES = ["equal", "above1", "above12", "below3"]


@pytest.mark.parametrize("v", [1000, 4096, 32000, pytest.param(262144, marks=pytest.mark.slow)])
@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize("case", CASES)
def test_float32_long_rows_no_less_accurate_than_pytorch(v, base, case):
    # before: 178 ulp at V = 262144 on 4 rows of 50.3 (einsum's float32 row sums); PyTorch 0.04
    x, y = boundary_rows(4, v, base, case)
    for reduction in ("none", "mean", "sum"):
        ref = F.cross_entropy(x.double(), y, reduction=reduction)
        theirs = ulps(F.cross_entropy(x, y, reduction=reduction), ref)
        for name, got in (
            ("torch", ct.cross_entropy(x, y, reduction=reduction)),
            ("numpy", torch.as_tensor(crossent.cross_entropy(x.numpy(), y.numpy(),
                                                             reduction=reduction))),
            ("one row", ct.cross_entropy(x[:1], y[:1], reduction=reduction)),
        ):  # fmt: skip
            ours = ulps(got, ref if name != "one row" else F.cross_entropy(
                x[:1].double(), y[:1], reduction=reduction))  # fmt: skip
            assert ours <= max(theirs + 0.5, 1.0), (name, reduction, ours, theirs)


@pytest.mark.slow
def test_float32_long_rows_linear_head():
    # the fused head's logits all equal (zero weight, constant bias): the same row sums
    v, d = 262144, 4
    h = torch.randn(4, d, generator=torch.Generator().manual_seed(0))
    w = torch.zeros(v, d)
    b = torch.full((v,), 50.3)
    y = torch.zeros(4, dtype=torch.long)
    for reduction in ("mean", "sum"):
        got = ct.linear_cross_entropy(h, w, y, b, reduction=reduction, chunk_size=2)
        want = math.log(v) * (4 if reduction == "sum" else 1)
        assert ulps(got, torch.tensor(want, dtype=torch.float64)) <= 1.0


def test_float32_realistic_rows_stay_more_accurate():
    # random logits: crossent's float64 log-sum-exp beats PyTorch's float32 one; keep it
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 32000, generator=g) * 4
    y = torch.randint(0, 32000, (64,), generator=g)
    ref = F.cross_entropy(x.double(), y, reduction="sum")
    ours = abs(float(ct.cross_entropy(x, y, reduction="sum")) - float(ref))
    theirs = abs(float(F.cross_entropy(x, y, reduction="sum")) - float(ref))
    assert ours <= theirs


@pytest.mark.parametrize("chunk", range(1, 9))
def test_linear_small_chunks_input_grad_as_accurate(chunk):
    # before: chunks of 1-3 and 5-7 rows had 2-3x the input-gradient error of chunks of 8 and of
    # unfused PyTorch (MKL's GEMM takes a less accurate path for a few rows)
    g = torch.Generator().manual_seed(0)
    n, d, v = 256, 64, 2000
    x = torch.randn(n, d, generator=g)
    w = torch.randn(v, d, generator=g) * 0.3
    y = torch.randint(0, v, (n,), generator=g)
    up = torch.randn(n, generator=g)

    def input_grad(fn, dtype):
        xx = x.to(dtype).clone().requires_grad_()
        fn(xx, w.to(dtype)).backward(up.to(dtype))
        return xx.grad.double()

    def unfused(a, b):
        return F.cross_entropy(a @ b.T, y, reduction="none")

    ref = input_grad(unfused, torch.float64)
    theirs = (input_grad(unfused, torch.float32) - ref).abs().max().item()
    ours = (
        (
            input_grad(
                lambda a, b: ct.linear_cross_entropy(a, b, y, reduction="none", chunk_size=chunk),
                torch.float32,
            )
            - ref
        )
        .abs()
        .max()
        .item()
    )
    # PyTorch's own error is ~1e-6 here; 1.5x allows other BLAS kernels their own rounding
    assert ours <= 1.5 * theirs, (ours, theirs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(64, 10), (32, 255), (16, 250), (32, 256)])
def test_short_row_sums_agree_on_both_sides_of_the_gemv_threshold(shape, dtype):
    """Rows of one run: a small matrix is summed by a matrix-vector product, a larger one
    (above ``GEMV_MAX`` elements) by einsum; either is the float64 sum to within a few units of
    the compute dtype's last place, NaN and ``-inf`` included."""
    from crossent._exp import GEMV_MAX, row_sums

    x = np.random.default_rng(3).random(shape).astype(dtype)
    x[0, 1], x[1, :3] = np.nan, -np.inf
    big = np.tile(x, (GEMV_MAX // x.size + 1, 1))  # the same rows, over the threshold
    exact = x.astype(np.float64).sum(axis=1)
    tol = 8 * np.finfo(dtype).eps * shape[1]
    for got in (row_sums(x, x.dtype), row_sums(big, big.dtype)[: len(x)]):
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, exact, rtol=tol)

"""The engine's one ``exp`` per logit, and the row sums it feeds.

On x86-64 CPUs whose NumPy dispatches no AVX-512 (most laptops, many cloud CPUs), NumPy's
``exp`` is about 3x slower than it is with AVX-512, and it is the engine's floor. There the
engine calls a small compiled kernel (``crossent._fastexp``: AVX2 + FMA, within 2 ulp of the
correctly rounded ``exp``), which also sums each row as it goes (float32 runs of at most 32
terms per SIMD lane, added in float64: at least as exact as the engine's
:func:`row_sums`, which the NumPy path uses). Everywhere else —
AVX-512, other CPUs, an install without a C compiler — NumPy's ``exp`` does the work.

``CROSSENT_EXP=numpy`` or ``CROSSENT_EXP=fast`` forces one path (benchmarks, tests);
:data:`PATH` says which one is in use.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
from numpy.typing import NDArray

try:
    import crossent._fastexp as _fastexp
except ImportError:  # no C compiler at install time, or another platform
    _fastexp = None

__all__ = ["PATH", "SUM_RUN", "exp_rows", "row_sums"]

Array = NDArray[Any]


def _numpy_has_avx512() -> bool:
    import importlib

    try:
        umath = importlib.import_module("numpy._core._multiarray_umath")
    except ImportError:  # NumPy 1.x
        umath = importlib.import_module("numpy.core._multiarray_umath")
    have: dict[str, bool] = umath.__cpu_features__
    return bool(have.get("X86_V4", have.get("AVX512_SKX", False)))  # X86_V4: NumPy 2.4+


def _choose() -> str:
    forced = os.environ.get("CROSSENT_EXP", "auto")
    if forced not in ("auto", "numpy", "fast"):
        raise ValueError(f"CROSSENT_EXP: expected 'auto', 'numpy' or 'fast', got {forced!r}")
    if forced == "numpy" or _fastexp is None:
        return "numpy"
    if forced == "fast":
        return "fast"
    return "numpy" if _numpy_has_avx512() or _fastexp.simd() != "avx2" else "fast"


PATH: str = _choose()


def exp_rows(src: Array, out: Array, shift: Array | None = None, sums: Array | None = None) -> None:
    """``out = exp(src - shift[:, None])``, and ``sums = out.sum(axis=1)`` in float64.

    ``src`` and ``out`` are ``(n, C)`` float arrays whose rows are contiguous (``out`` may be
    ``src``); ``out`` is float32 or float64, the compute dtype; ``src`` may be narrower
    (float16), then it is widened first. ``shift`` (float64, ``(n,)``) is subtracted in
    ``out``'s dtype; ``sums`` (float64, ``(n,)``) receives the row sums when given.

    Examples
    --------
    >>> import numpy as np
    >>> from crossent._exp import exp_rows
    >>> x = np.array([[0.0, 1.0], [2.0, 2.0]])
    >>> out, sums = np.empty_like(x), np.empty(2)
    >>> exp_rows(x, out, np.array([0.0, 2.0]), sums)
    >>> out.round(4), sums.round(4)
    (array([[1.    , 2.7183],
           [1.    , 1.    ]]), array([3.7183, 2.    ]))
    """
    if PATH == "fast" and _kernel_fits(out):
        if src.dtype != out.dtype:  # float16 logits: widened in place, then exp over out
            np.copyto(out, src, casting="same_kind")
            src = out
        if _kernel_fits(src):
            _kernel(src, out, shift, sums)
            return
    cd = out.dtype
    if shift is not None:
        with np.errstate(over="ignore"):  # -1e308 - 1e308 is -inf: exp gives 0, as it should
            np.subtract(src, shift.astype(cd)[:, None], out=out, dtype=cd)
        np.exp(out, out=out)
    else:
        np.exp(src, out=out, dtype=cd)
    if sums is not None:
        sums[:] = row_sums(out, cd)


def _kernel(src: Array, out: Array, shift: Array | None, sums: Array | None) -> None:
    assert _fastexp is not None
    n, c = src.shape
    if shift is None and sums is None and src.flags.c_contiguous and out.flags.c_contiguous:
        n, c = 1, n * c  # one long row: short rows cost the kernel a padded tail each
    shape = (n, c, _row_stride(src) if n > 1 else c, _row_stride(out) if n > 1 else c)
    if sums is None:
        _fastexp.exp(_flat(src), _flat(out), *shape, shift)
    else:
        _fastexp.exp_sum(_flat(src), _flat(out), *shape, shift, sums)


def _kernel_fits(a: Array) -> bool:
    """A float32/float64 matrix whose rows are contiguous and evenly spaced: the kernel's."""
    if a.ndim != 2 or a.dtype.char not in "fd":
        return False
    st, size = a.strides, a.itemsize
    # rows that do not overlap (a contiguous matrix's row stride may be anything with 1 row)
    return a.flags.c_contiguous or (
        st[1] == size and st[0] % size == 0 and st[0] >= a.shape[1] * size
    )


def _row_stride(a: Array) -> int:
    """Elements from one row to the next (a contiguous matrix's own, whatever it says)."""
    return int(a.shape[1]) if a.flags.c_contiguous else a.strides[0] // a.itemsize


def _flat(a: Array) -> Array:
    """A 1-D view from ``a``'s first element to its last, for the buffer protocol."""
    n, c = a.shape
    if n == 0 or c == 0:
        return np.empty(0, a.dtype)
    if a.flags.c_contiguous:
        return a  # the buffer protocol takes it whole
    length = (n - 1) * _row_stride(a) + c
    return np.lib.stride_tricks.as_strided(a, shape=(length,), strides=(a.itemsize,))


# columns summed by einsum in the compute dtype before the partial sums are added in float64
SUM_RUN = 256
# rows of one run in a matrix of at most this many elements are summed by a matrix-vector
# product (the same sum in the compute dtype, without einsum's set-up): below OpenBLAS's
# threshold for threads (2304 x 4 elements), so it never competes with the engine's threads
GEMV_MAX = 8192


@functools.lru_cache(maxsize=64)
def _ones(c: int, dtype: str) -> Array:
    ones = np.ones(c, dtype)
    ones.flags.writeable = False
    return ones


def row_sums(x: Array, cdtype: Any) -> Array:
    """``Σ_c x[n, c]`` (float64) at einsum's speed, without its loss of digits on long rows.

    einsum keeps one running sum per SIMD lane, which is fast but inexact on long rows: over
    262144 equal float32 exponentials its total is off by 1.7e-4 (relative), pairwise ``sum``
    by 1e-7 at three times the cost, a float64 sum is exact at six times. Here einsum sums runs
    of ``SUM_RUN`` columns in ``cdtype`` (short running sums: about one unit of float32's last
    place) and the runs' totals are added in float64. Used for the exponentials' sums (the
    log-sum-exp) and the logits' sums (label smoothing).
    """
    n, c = x.shape
    k = c // SUM_RUN
    if k < 1:
        if x.size <= GEMV_MAX and x.dtype == cdtype:  # a third of einsum's time (64 x 10)
            return x.dot(_ones(c, x.dtype.char)).astype(np.float64, copy=False)
        return np.einsum("ij->i", x, dtype=cdtype).astype(np.float64, copy=False)
    runs = np.einsum("ijk->ij", x[:, : k * SUM_RUN].reshape(n, k, SUM_RUN), dtype=cdtype)
    total = runs.sum(axis=1, dtype=np.float64)
    if k * SUM_RUN < c:
        total += np.einsum("ij->i", x[:, k * SUM_RUN :], dtype=cdtype)
    return total

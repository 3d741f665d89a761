"""Shared test configuration."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,  # CI must not flake: the same examples every run
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=30, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_report_header() -> list[str]:
    """The SIMD level NumPy dispatches and OpenBLAS's kernels: the last bits depend on them."""
    import numpy as np

    try:
        from numpy._core._multiarray_umath import __cpu_features__ as have
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_features__ as have
    avx512 = "on" if have.get("X86_V4", have.get("AVX512F")) else "off"  # X86_V4: NumPy 2.4+
    blas = os.environ.get("OPENBLAS_CORETYPE", "auto")
    return [f"numpy {np.__version__}: AVX-512 dispatch {avx512}; OpenBLAS core type {blas}"]

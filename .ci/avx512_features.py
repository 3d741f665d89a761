"""Print the names of NumPy's AVX-512 dispatch targets, for NPY_DISABLE_CPU_FEATURES.

NumPy 2.4 dispatches X86_V4, AVX512_ICL and AVX512_SPR; NumPy <= 2.3 named them AVX512F,
AVX512_SKX, ... Naming a target that NumPy does not dispatch makes it warn at import (an error
in this suite), so the names come from NumPy itself. Disabling a target the CPU lacks is a no-op:
on an AVX2-only machine this run is the same as the first one.
"""

try:
    from numpy._core._multiarray_umath import __cpu_dispatch__ as dispatch
except ImportError:  # NumPy 1.x
    from numpy.core._multiarray_umath import __cpu_dispatch__ as dispatch

print(" ".join(f for f in dispatch if f == "X86_V4" or f.startswith("AVX512")))

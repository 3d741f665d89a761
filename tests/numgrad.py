"""The one numerical-gradient helper of the tests: central differences."""

from __future__ import annotations

import numpy as np


def numerical_grad(f, x, h=1e-6):
    """Central differences of the scalar function ``f(x)`` at ``x``.

    ``x`` (a float64 array) is changed in place one element at a time and restored, so ``f``
    may also ignore its argument and read ``x`` through a closure.
    """
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        fp = f(x)
        x[i] = old - h
        fm = f(x)
        x[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g

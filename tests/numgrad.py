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


def reference_grad(logits, target, **options):
    """The gradient of :func:`crossent.reference.cross_entropy` (summed over positions for
    ``'none'``) by torch's autograd, in float64: NumPy in, NumPy out."""
    import torch

    from crossent import reference

    x = torch.tensor(np.asarray(logits, dtype=np.float64), requires_grad=True)
    t = torch.as_tensor(np.asarray(target))
    w = options.pop("weight", None)
    w = None if w is None else torch.as_tensor(np.asarray(w, dtype=np.float64))
    reference.cross_entropy(x, t, weight=w, **options).sum().backward()
    return x.grad.numpy()

"""The JAX functions' arguments: checked at trace time with :mod:`crossent._spec`'s messages.

Shapes, dtypes and options are known when a function is traced, so they are checked under
``jit`` too, with the NumPy API's messages. Values are known only outside ``jit``: when every
array is concrete, the same value checks as :func:`crossent.cross_entropy` run (class indices
in range, probabilities summing to 1, class weights finite and >= 0, logits free of NaN and
``+inf``, ``num_items`` at least the batch's count); under ``jit`` they cannot raise, and a
bad value gives NaN instead, as ``jax.numpy`` does.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from crossent import _algebra, _spec
from crossent._spec import LossOptions, Scales
from crossent._validation import check_min_ndim, describe
from crossent.jax._rows import Rows

Array = Any


def concrete(*arrays: Any) -> bool:
    """No array is being traced (by ``jit``, ``grad``, ``vmap``...): values can be read."""
    return not any(isinstance(a, jax.core.Tracer) for a in arrays)


def _kind(dtype: Any) -> str:
    """NumPy's dtype kind letter; bfloat16 (kind ``'V'`` in NumPy) is a float."""
    return "f" if jnp.issubdtype(dtype, jnp.floating) else np.dtype(dtype).kind


def float_array(a: Any, name: str, *, min_ndim: int = 1) -> Array:
    """``a`` as a ``jax.numpy`` float array (integers and booleans become the default float)."""
    try:
        arr = jnp.asarray(a)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected a numeric array, got {describe(a)} ({exc})") from None
    if arr.dtype.kind in "biu":
        arr = arr.astype(jnp.result_type(float))
    elif _kind(arr.dtype) != "f":
        raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    check_min_ndim(arr, name, min_ndim)
    return arr


def compute_dtype(dtype: Any) -> Any:
    """float64 stays float64; float32, bfloat16 and float16 are computed in float32."""
    return jnp.float64 if dtype == jnp.float64 else jnp.float32


def class_weight(weight: Any, n_classes: int, name: str) -> Array | None:
    """Class weights ``(C,)``, their values checked when concrete."""
    if weight is None:
        return None
    w = float_array(weight, name)
    # the shape's message is check_class_weight's; its value checks pass on zeros
    values = np.asarray(w, dtype=np.float64) if concrete(w) else np.zeros(w.shape)
    _spec.check_class_weight(values, n_classes, name)
    return w


class Target(NamedTuple):
    """A classified target: integer indices ``(M,)`` or probabilities ``(M, C)``."""

    labels: Array | None
    prob: Array | None


def target(
    t: Any, moved_shape: tuple[int, ...], axis: int, opts: LossOptions, n_classes: int | None = None
) -> Target:
    """Classify ``t`` against the logits (classes moved last: ``moved_shape``) and check it.

    ``axis`` is the class axis in the user's layout (probabilities are given in it);
    ``n_classes`` the range of class indices when the logits hold only some classes.
    """
    c = moved_shape[-1]
    batch = moved_shape[:-1]
    user_shape = (*batch[:axis], c, *batch[axis:])
    is_tracer = not concrete(t)
    # concrete targets are read as NumPy arrays: a uint64 label is reported as it is
    arr = t if is_tracer else np.asarray(t)
    kind = _spec.classify_target(_kind(arr.dtype), arr.dtype, arr.shape, batch, user_shape)
    if kind == "index":
        if not is_tracer:
            _spec.check_class_indices(arr.reshape(-1), n_classes or c, opts.ignore_index, batch)
            arr = arr.astype(np.int64 if arr.dtype.itemsize > 4 else np.int32)
        return Target(jnp.asarray(arr).reshape(-1), None)
    if is_tracer:
        return Target(None, jnp.moveaxis(arr, axis, -1).reshape(-1, c))
    q = np.moveaxis(arr, axis, -1).reshape(-1, c)
    _spec.check_probabilities(q.astype(np.float64), arr.dtype, axis, batch)
    return Target(None, jnp.asarray(q))


def rows_of(
    tgt: Target,
    w: Array | None,
    n_classes: int,
    opts: LossOptions,
    cdtype: Any,
) -> tuple[Rows, Array, Array]:
    """The :class:`~crossent.jax._rows.Rows` of a checked target, with ``(D, |V|)``.

    Under ``jit`` a class index out of range (not ``ignore_index``) gives its row a NaN
    target weight: its loss, the ``'mean'`` and the gradient of its row are NaN.
    """
    wc = None if w is None else w.astype(cdtype)
    if tgt.prob is not None:
        m = tgt.prob.shape[0]
        count = jnp.asarray(m, cdtype)
        return Rows(jnp.ones(m, bool), wc, q=tgt.prob.astype(cdtype)), count, count
    y = tgt.labels
    assert y is not None
    valid = y != opts.ignore_index
    wy: Array
    if wc is None:
        wy = valid.astype(cdtype)
    else:
        wy = jnp.where(valid, wc[jnp.clip(y, 0, wc.shape[0] - 1)], 0.0)
    wy = jnp.where(valid & ((y < 0) | (y >= n_classes)), math.nan, wy)
    return Rows(valid, wc, y=y, wy=wy), jnp.sum(wy), jnp.sum(valid.astype(cdtype))


def scales(opts: LossOptions, weight_sum: Array, count: Array, *, weighted: bool) -> Scales:
    """The ``'mean'`` scales: :func:`crossent._spec.mean_scales` when the counts are concrete
    (its checks of ``num_items`` included), :func:`crossent._algebra.array_scales` under
    ``jit``."""
    if concrete(weight_sum, count):
        return _spec.mean_scales(opts, float(weight_sum), float(count), weighted=weighted)
    return _algebra.array_scales(opts, weight_sum, count, weighted=weighted)


def check_logits(x2: Array, valid: Array | None) -> None:
    """NaN, ``+inf`` and non-ignored rows of all ``-inf``, when ``x2`` is concrete."""
    if concrete(x2, valid):
        _algebra.check_row_maxima(jnp.max(x2, axis=-1), valid)


def check_num_items_static(opts: LossOptions, weighted: bool) -> None:
    """The part of the ``num_items`` rule that needs no values (checked under ``jit`` too)."""
    if opts.num_items is not None:
        _spec.mean_scales(opts, 0.0, 0.0, weighted=weighted)

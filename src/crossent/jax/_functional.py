"""``crossent.jax.cross_entropy``: the checks, the layout, and a ``custom_vjp`` around the block.

The forward pass of a differentiated call computes the gradient too (one ``exp`` per logit,
:mod:`crossent.jax._rows`); the backward pass only multiplies it by the incoming cotangent.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

from crossent import _algebra
from crossent._spec import LossKwargs, LossOptions, Scales, options_from, takes_options
from crossent._validation import normalize_axis
from crossent.jax import _checks
from crossent.jax._rows import LOCAL, Comm, Rows, block

if TYPE_CHECKING:
    from typing_extensions import Unpack

Array = Any


class Static(NamedTuple):
    """What a traced call specializes on: the options and how classes are split."""

    opts: LossOptions
    comm: Comm = LOCAL


def forward(
    static: Static,
    x2: Array,
    rows: Rows,
    sc: tuple[Array, Array],
    want_grad: bool,
    want_target_grad: bool = False,
) -> tuple[Array, Array | None, Array | None]:
    """(loss: reduced, or ``(M,)`` for ``'none'``; gradient of the loss in ``x2``'s dtype;
    its gradient with respect to probability targets, in theirs, when asked)."""
    opts = static.opts
    cd = _checks.compute_dtype(x2.dtype)
    scales = Scales(*sc)
    out = block(x2.astype(cd), rows, opts, scales.ce, scales.z, want_grad=want_grad,
                want_target_grad=want_target_grad, comm=static.comm)  # fmt: skip
    if opts.reduction == "none":
        loss = out.loss
    else:
        loss = _algebra.reduce_rows(out.loss, out.lse, rows.valid, scales, opts.z_loss)
    grad = None if out.grad is None else out.grad.astype(x2.dtype)
    dq = None if out.target_grad is None or rows.q is None else out.target_grad.astype(rows.q.dtype)
    return loss.astype(x2.dtype), grad, dq


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _loss(static: Static, x2: Array, rows: Rows, sc: tuple[Array, Array]) -> Array:
    return forward(static, x2, rows, sc, want_grad=False)[0]


def perturbed(tree: Any) -> bool:
    """Whether ``jax.grad`` differentiates anything in ``tree`` (``custom_vjp`` primals)."""
    leaves = jax.tree.leaves(tree, is_leaf=lambda p: hasattr(p, "perturbed"))
    return any(p.perturbed for p in leaves)


def refuse_constants(rows: Any, sc: Any, weight_name: str, *, probabilities: bool = False) -> None:
    """A clear error where JAX would differentiate what this loss treats as constants
    (``probabilities=True``: probability targets may be differentiated)."""
    if perturbed((rows.w, rows.wy, sc)):
        raise TypeError(
            f"{weight_name}: expected constant class weights, got weights being differentiated; "
            "wrap them in jax.lax.stop_gradient"
        )
    if not probabilities and perturbed(rows.q):
        raise TypeError(
            "target: expected constant probabilities, got probabilities being differentiated "
            "(the fused head does not support it); wrap them in jax.lax.stop_gradient"
        )


def values(tree: Any) -> Any:
    """The arrays of ``custom_vjp``'s primals (with ``symbolic_zeros=True`` they are wrapped)."""
    return jax.tree.map(lambda p: p.value, tree, is_leaf=lambda p: hasattr(p, "perturbed"))


def _loss_fwd(static: Static, x2: Any, rows: Any, sc: Any) -> tuple[Array, Array | None]:
    refuse_constants(rows, sc, "weight", probabilities=True)
    want_dq = perturbed(rows.q)
    loss, grad, dq = forward(static, x2.value, values(rows), values(sc), True, want_dq)
    return loss, (grad, dq)


def _loss_bwd(static: Static, res: Any, ct: Any) -> tuple[Any, ...]:
    grad, dq = res
    if isinstance(ct, SymbolicZero):
        return None, None, None
    ct = ct.astype(grad.dtype)
    per_row = ct if static.opts.reduction != "none" else ct[:, None]
    d_rows = None
    if dq is not None:  # only the probabilities' leaf: the others get zeros
        d_rows = Rows(None, None, q=dq * per_row.astype(dq.dtype))
    return grad * per_row, d_rows, None


_loss.defvjp(_loss_fwd, _loss_bwd, symbolic_zeros=True)


def prepare(
    logits: Any, target: Any, weight: Any, opts: LossOptions, axis: Any, weight_name: str
) -> tuple[Array, Rows, tuple[Array, Array], tuple[int, ...]]:
    """Check everything and lay it out: ``(x2 (M, C), rows, scales, batch shape)``."""
    x = _checks.float_array(logits, "logits")
    ax = normalize_axis(axis, x.ndim)
    c = x.shape[ax]
    if c == 0:
        raise ValueError(f"logits: expected at least one class along axis {ax}, got 0")
    w = _checks.class_weight(weight, c, weight_name)
    x2 = jnp.moveaxis(x, ax, -1)
    batch = x2.shape[:-1]
    x2 = x2.reshape(-1, c)
    tgt = _checks.target(target, (*batch, c), ax, opts)
    cd = _checks.compute_dtype(x.dtype)
    rows, d, count = _checks.rows_of(tgt, w, c, opts, cd)
    weighted = w is not None and tgt.labels is not None
    _checks.check_num_items_static(opts, weighted)
    _checks.check_logits(x2, rows.valid)
    sc = _checks.scales(opts, d, count, weighted=weighted)
    return x2, rows, (jnp.asarray(sc.ce, cd), jnp.asarray(sc.z, cd)), batch


@takes_options("core")
def cross_entropy(
    logits: Any,
    target: Any,
    *,
    weight: Any = None,
    axis: int = -1,
    **options: Unpack[LossKwargs],
) -> Array:
    r"""Softmax cross-entropy of ``jax.numpy`` logits: :func:`crossent.cross_entropy` in JAX.

    The same loss, options, semantics and error messages as :func:`crossent.cross_entropy`
    (the formulas are there and in :mod:`crossent.reference`), differentiable by ``jax.grad``
    through a ``custom_vjp`` whose forward pass computes the gradient with the loss, one
    ``exp`` per logit; ``jit``, ``vmap`` and sharded inputs work as for any JAX function.

    Parameters
    ----------
    logits : array_like, shape (..., C, ...)
        Class scores (``-inf`` masks a class). float16, bfloat16 and float32 are computed in
        float32, float64 (with ``jax_enable_x64``) in float64.
    target : array_like
        Integer class indices with the logits' shape without the class axis
        (``ignore_index`` allowed), or float probabilities with the logits' shape (which
        ``jax.grad`` may differentiate: ``(1-ε)·w_c·(lse - z_c)`` per row, scaled as the loss,
        0 at masked classes).
    weight : array_like, shape (C,), optional
        Class weights, finite and >= 0. Constants: differentiating with respect to them is
        refused (a ``TypeError``).
    ignore_index, reduction, label_smoothing, z_loss, softcap, temperature, num_items, axis
        As :func:`crossent.cross_entropy`.

    Returns
    -------
    jax.Array
        A scalar for ``'mean'``/``'sum'``, the batch shape for ``'none'``; the logits' dtype.

    Raises
    ------
    TypeError, ValueError
        At trace time: the options, the shapes and dtypes (under ``jit`` too), with the
        messages of :func:`crossent.cross_entropy`. Called outside ``jit``, also the values:
        NaN or ``+inf`` logits, a non-ignored row of all ``-inf``, class indices out of range,
        probabilities that do not sum to 1, bad class weights, ``num_items`` below the
        batch's count. Under ``jit`` values cannot be checked: an out-of-range class index
        makes the loss NaN, NaN logits give NaN. A ``TypeError`` when ``jax.grad`` would
        differentiate with respect to the class weights.

    Notes
    -----
    Higher derivatives: reverse over reverse (``jax.grad(jax.grad(...))``, ``jax.jacrev``
    twice, Hessian-vector products by ``jax.grad`` of a ``jax.grad``) is exact, because the
    gradient is computed by JAX operations that JAX differentiates. Forward mode
    (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``) raises JAX's ``TypeError`` for a
    ``custom_vjp`` function: use ``jax.jacrev(jax.jacrev(f))`` for a Hessian.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from crossent.jax import cross_entropy
    >>> round(float(cross_entropy(jnp.array([10.0, 9.0, 8.0]), 0)), 4)  # the classic example
    0.4076
    """
    opts = options_from(options, "core")
    x2, rows, sc, batch = prepare(logits, target, weight, opts, axis, "weight")
    loss = _loss(Static(opts), x2, rows, sc)
    return loss.reshape(batch) if opts.reduction == "none" else loss

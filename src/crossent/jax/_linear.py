"""The fused head in JAX: ``input @ weight.T + bias`` and the loss, a chunk of rows at a time.

The chunks run inside ``lax.scan`` (``lax.map`` for the loss alone), so at most a
``(chunk, V)`` block of logits exists. Differentiated with ``'mean'`` or ``'sum'``, the forward
pass computes the gradients with the loss (three GEMMs per chunk, as the unfused path) and the
backward pass only scales them; with ``'none'`` the backward pass redoes the chunks with each
row's cotangent.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp

from crossent import _algebra
from crossent._spec import LossKwargs, LossOptions, Scales, options_from, takes_options
from crossent.jax import _checks
from crossent.jax._functional import refuse_constants, values
from crossent.jax._rows import LOCAL, Comm, Rows, block, local_weights

if TYPE_CHECKING:
    from typing_extensions import Unpack

Array = Any

# rows per chunk by default: a 64 MiB float32 block of logits (130 rows at V = 128256)
CHUNK_ELEMENTS = 1 << 24


class HeadStatic(NamedTuple):
    opts: LossOptions
    chunk: int
    n_rows: int  # before padding to a multiple of ``chunk``
    comm: Comm = LOCAL


def _chunked(rows: Rows, chunk: int) -> tuple[Rows, Array | None]:
    """Per-row leaves as ``(n_chunks, chunk, ...)`` for the scan; the class weights apart."""
    per_row = rows._replace(w=None)
    return jax.tree.map(lambda a: a.reshape(-1, chunk, *a.shape[1:]), per_row), rows.w


def _logits(xc: Array, weight: Array, bias: Array | None) -> Array:
    """A chunk's logits in the compute dtype (float32 for 16-bit parameters)."""
    cd = _checks.compute_dtype(weight.dtype)
    z = jnp.matmul(xc, weight.T, preferred_element_type=cd)
    return z if bias is None else z + bias.astype(cd)


def _losses(st: HeadStatic, x: Array, weight: Array, bias: Array | None, rows: Rows) -> Any:
    """Per-row losses and log-sum-exps ``(M,)``, chunk by chunk."""
    chunks, w = _chunked(rows, st.chunk)

    def one(args: tuple[Array, Rows]) -> tuple[Array, Array]:
        xc, rc = args
        out = block(_logits(xc, weight, bias), rc._replace(w=w), st.opts, want_grad=False,
                    comm=st.comm)  # fmt: skip
        return out.loss, out.lse

    loss, lse = jax.lax.map(one, (x.reshape(-1, st.chunk, x.shape[-1]), chunks))
    return loss.reshape(-1), lse.reshape(-1)


def _grads(
    st: HeadStatic, x: Array, weight: Array, bias: Array | None, rows: Rows, scale: Any,
    z_scale: Any,
) -> tuple[Array, Array, Array, Array, Array | None]:  # fmt: skip
    """``(loss rows, lse rows, d input, d weight, d bias)``; ``scale`` a number or ``(M,)``."""
    chunks, w = _chunked(rows, st.chunk)
    cd = _checks.compute_dtype(weight.dtype)
    per_row = jnp.ndim(scale) == 1
    scales = scale.reshape(-1, st.chunk) if per_row else jnp.zeros(chunks.valid.shape[0])

    def one(carry: tuple[Array, Array], args: Any) -> tuple[Any, Any]:
        dw, db = carry
        xc, rc, sc = args
        out = block(_logits(xc, weight, bias), rc._replace(w=w), st.opts,
                    sc if per_row else scale, None if per_row else z_scale,
                    want_grad=True, comm=st.comm)  # fmt: skip
        assert out.grad is not None
        g = out.grad.astype(weight.dtype)  # (chunk, V)
        dxc = jnp.matmul(g, weight, preferred_element_type=cd).astype(x.dtype)
        dw = dw + jnp.matmul(g.T, xc, preferred_element_type=cd)
        return (dw, db + jnp.sum(out.grad, axis=0)), (out.loss, out.lse, dxc)

    # zeros_like: the accumulators vary over a mesh axis exactly as the weight does
    init = (jnp.zeros_like(weight, cd), jnp.zeros_like(weight[:, 0], cd))
    xs = (x.reshape(-1, st.chunk, x.shape[-1]), chunks, scales)
    (dw, db), (loss, lse, dx) = jax.lax.scan(one, init, xs)
    dx = st.comm.sum(dx.reshape(x.shape))  # the input is the same on every device
    db_out = None if bias is None else db.astype(bias.dtype)
    return loss.reshape(-1), lse.reshape(-1), dx, dw.astype(weight.dtype), db_out


def _reduce(st: HeadStatic, loss: Array, lse: Array, rows: Rows, sc: tuple[Array, Array]) -> Any:
    if st.opts.reduction == "none":
        return loss
    return _algebra.reduce_rows(loss, lse, rows.valid, Scales(*sc), st.opts.z_loss)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _head(
    st: HeadStatic, x: Array, weight: Array, bias: Array | None, rows: Rows,
    sc: tuple[Array, Array],
) -> Array:  # fmt: skip
    loss, lse = _losses(st, x, weight, bias, rows)
    return _reduce(st, loss, lse, rows, sc).astype(x.dtype)


def _head_fwd(st: HeadStatic, x: Any, weight: Any, bias: Any, rows: Any, sc: Any) -> Any:
    refuse_constants(rows, sc, "class_weight")  # and probabilities: the head has no dq
    x, weight, bias, rows, sc = values((x, weight, bias, rows, sc))
    if st.opts.reduction == "none":  # the cotangent is per row: backward redoes the chunks
        loss, lse = _losses(st, x, weight, bias, rows)
        return loss.astype(x.dtype), (x, weight, bias, rows)
    loss, lse, dx, dw, db = _grads(st, x, weight, bias, rows, sc[0], sc[1])
    return _reduce(st, loss, lse, rows, sc).astype(x.dtype), (dx, dw, db)


def _head_bwd(st: HeadStatic, res: Any, ct: Any) -> tuple[Any, ...]:
    if isinstance(ct, jax.custom_derivatives.SymbolicZero):
        return None, None, None, None, None
    if st.opts.reduction == "none":
        x, weight, bias, rows = res
        cd = _checks.compute_dtype(weight.dtype)
        _, _, dx, dw, db = _grads(st, x, weight, bias, rows, ct.astype(cd), None)
        return dx, dw, db, None, None
    dx, dw, db = res
    return (dx * ct.astype(dx.dtype), dw * ct.astype(dw.dtype),
            None if db is None else db * ct.astype(db.dtype), None, None)  # fmt: skip


_head.defvjp(_head_fwd, _head_bwd, symbolic_zeros=True)


def check_head(
    input: Any, weight: Any, bias: Any, names: tuple[str, str]
) -> tuple[Array, Array, Array | None]:
    """The head's arrays: ``input (..., D)``, ``weight (V, D)``, ``bias (V,)``, one dtype."""
    wname, bname = names
    x = _checks.float_array(input, "input")
    w = _checks.float_array(weight, wname)
    if w.ndim != 2 or w.shape[1] != x.shape[-1]:
        raise ValueError(
            f"{wname}: expected shape (V, {x.shape[-1]}) for input of shape "
            f"{tuple(x.shape)}, got {tuple(w.shape)}"
        )
    if w.shape[0] == 0:
        raise ValueError(f"{wname}: expected at least one class (row), got 0")
    if w.dtype != x.dtype:
        raise TypeError(f"{wname}: expected dtype {x.dtype} (input's), got {w.dtype}")
    b = None
    if bias is not None:
        b = _checks.float_array(bias, bname)
        if b.shape != (w.shape[0],):
            raise ValueError(f"{bname}: expected shape ({w.shape[0]},), got {tuple(b.shape)}")
        if b.dtype != x.dtype:
            raise TypeError(f"{bname}: expected dtype {x.dtype} (input's), got {b.dtype}")
    return x, w, b


def chunk_rows(chunk_size: Any, n_rows: int, n_classes: int) -> int:
    if chunk_size is None:
        return max(1, min(n_rows, CHUNK_ELEMENTS // max(n_classes, 1)))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size: expected an int >= 1 or None, got {chunk_size!r}")
    return min(chunk_size, max(n_rows, 1))


def pad_rows(rows: Rows, x2: Array, chunk: int) -> tuple[Rows, Array]:
    """Rows padded to a multiple of ``chunk`` with rows that count for nothing."""
    n = x2.shape[0]
    extra = -n % chunk
    if extra == 0:
        return rows, x2

    def pad(a: Array) -> Array:
        return jnp.pad(a, [(0, extra)] + [(0, 0)] * (a.ndim - 1))

    w = rows.w
    padded = jax.tree.map(pad, rows._replace(w=None))
    return padded._replace(w=w), pad(x2)


def prepare_head(
    input: Any,
    weight: Any,
    target: Any,
    bias: Any,
    class_weight: Any,
    opts: LossOptions,
    chunk_size: Any,
    names: tuple[str, str] = ("weight", "bias"),
    comm: Comm = LOCAL,
) -> tuple[HeadStatic, Array, Array, Array | None, Rows, tuple[Array, Array], tuple[int, ...]]:
    """Check and lay out the head's arguments (``comm``: the classes may be split)."""
    x, w, b = check_head(input, weight, bias, names)
    v_local = w.shape[0]
    v = comm.n_classes(v_local)
    cw = _checks.class_weight(class_weight, v, "class_weight")
    batch = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    tgt = _checks.target(target, (*batch, v_local), len(batch), opts, v)  # probabilities: local
    cd = _checks.compute_dtype(x.dtype)
    rows, d, count = _checks.rows_of(tgt, cw, v, opts, cd)
    rows = local_weights(rows, comm, v_local)
    weighted = cw is not None and tgt.labels is not None
    _checks.check_num_items_static(opts, weighted)
    sc = _checks.scales(opts, d, count, weighted=weighted)
    chunk = chunk_rows(chunk_size, x2.shape[0], v_local)
    n = x2.shape[0]
    rows, x2 = pad_rows(rows, x2, chunk)
    st = HeadStatic(opts, chunk, n, comm)
    return st, x2, w, b, rows, (jnp.asarray(sc.ce, cd), jnp.asarray(sc.z, cd)), batch


@takes_options("linear")
def linear_cross_entropy(
    input: Any,
    weight: Any,
    target: Any,
    bias: Any = None,
    *,
    class_weight: Any = None,
    chunk_size: int | None = None,
    **options: Unpack[LossKwargs],
) -> Array:
    r"""Cross-entropy of ``input @ weight.T + bias`` without ever holding the ``(N, V)`` logits.

    Equal to ``cross_entropy(input @ weight.T + bias, target, weight=class_weight, ...)``
    (:func:`crossent.jax.cross_entropy`), with gradients for ``input``, ``weight`` and
    ``bias``. Rows are processed ``chunk_size`` at a time inside ``lax.scan``: one GEMM makes
    a chunk's logits, the loss block turns them into their gradient ``g``, two GEMMs take
    ``g`` to the input and the weight (accumulated in float32). Differentiated with
    ``'mean'``/``'sum'``, the gradients are computed in the forward pass (``6·N·D·V`` flops,
    as the unfused path) and the backward pass scales them; ``'none'`` redoes the chunks in
    the backward pass with each row's cotangent. Called without differentiation, only the
    loss is computed (``2·N·D·V`` flops).

    Parameters
    ----------
    input : array, shape (..., D)
        Hidden states: float32, float64, bfloat16 or float16.
    weight : array, shape (V, D)
        The head's weight, ``input``'s dtype.
    target : array
        Class indices of shape ``(...)`` or probabilities of shape ``(..., V)`` (constants:
        differentiating with respect to them raises a ``TypeError``).
    bias : array, shape (V,), optional
        The head's bias, ``input``'s dtype.
    class_weight : array, shape (V,), optional
        Class weights (:func:`crossent.jax.cross_entropy`'s ``weight``), constants.
    ignore_index, reduction, label_smoothing, z_loss, softcap, temperature, num_items
        As :func:`crossent.jax.cross_entropy`.
    chunk_size : int, optional
        Rows per chunk. Default: as many as fit a 64 MiB float32 block of logits (130 rows at
        ``V = 128256``). Padding rows to a multiple of it costs nothing but their GEMMs.

    Returns
    -------
    jax.Array
        A scalar, or the shape ``(...)`` for ``'none'``; ``input``'s dtype.

    Notes
    -----
    Values are checked as in :func:`crossent.jax.cross_entropy` (outside ``jit`` only; the
    logits are never formed, so they are not checked for NaN). Higher derivatives: reverse
    over reverse differentiates the scan (exact, but it stores what the scan's autodiff
    needs); forward mode raises JAX's ``TypeError``.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from crossent.jax import cross_entropy, linear_cross_entropy
    >>> x = jax.random.normal(jax.random.key(0), (6, 4))
    >>> w = jax.random.normal(jax.random.key(1), (10, 4))
    >>> y = jnp.array([0, 9, 3, -100, 2, 2])
    >>> fused = linear_cross_entropy(x, w, y, chunk_size=4)
    >>> bool(jnp.allclose(fused, cross_entropy(x @ w.T, y), rtol=1e-5))
    True
    """
    opts = options_from(options, "linear")
    st, x2, w, b, rows, sc, batch = prepare_head(input, weight, target, bias, class_weight,
                                                 opts, chunk_size)  # fmt: skip
    loss = _head(st, x2, w, b, rows, sc)
    return loss[: st.n_rows].reshape(batch) if opts.reduction == "none" else loss

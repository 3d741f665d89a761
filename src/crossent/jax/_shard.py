"""The vocabulary split over a mesh axis, inside ``jax.shard_map``: the same loss, one ``pmax``
and one ``psum`` of a few floats per row.

Both functions are the single-device ones with :class:`~crossent.jax._rows.Comm` naming the
mesh axis: the per-row statistics of :mod:`crossent.jax._rows` cross devices, nothing else
does (the fused head adds one ``psum`` of the input's gradient, ``N × D``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax

from crossent._spec import LossKwargs, options_from, takes_options
from crossent.jax import _checks
from crossent.jax._functional import Static, _loss
from crossent.jax._linear import _head, prepare_head
from crossent.jax._rows import Comm, local_weights

if TYPE_CHECKING:
    from typing_extensions import Unpack

Array = Any


@takes_options("vocab_parallel")
def vocab_parallel_cross_entropy(
    logits_shard: Any,
    target: Any,
    *,
    axis_name: Any,
    weight: Any = None,
    **options: Unpack[LossKwargs],
) -> Array:
    r"""Cross-entropy of logits whose classes are split over the mesh axis ``axis_name``.

    Call it inside ``jax.shard_map`` with the logits' last axis sharded over ``axis_name``
    (``P(..., axis_name)``): device ``r`` holds columns ``r·V_r`` to ``(r+1)·V_r`` of the full
    logits. The loss (replicated: the same on every device, ``out_specs=P()``) and each
    shard's gradient equal :func:`crossent.jax.cross_entropy` on the whole logits; only the
    row maxima (one ``pmax``) and a few sums per row (one ``psum``) cross devices.

    ``shard_map`` splits an axis only in equal parts: for a vocabulary that does not divide
    by the number of devices, pad the logits with ``-inf`` columns (masked classes: they
    change nothing, label smoothing included, as it counts the finite classes).

    Parameters
    ----------
    logits_shard : array, shape (..., V_r)
        This device's columns of the logits, classes last.
    target : array
        Global class indices of shape ``(...)``, the same on every device (replicated), or
        this device's columns ``(..., V_r)`` of probability targets.
    axis_name : hashable
        The mesh axis that splits the vocabulary.
    weight : array, shape (V,), optional
        Class weights of the whole vocabulary (replicated).
    ignore_index, reduction, label_smoothing, z_loss, softcap, temperature, num_items
        As :func:`crossent.jax.cross_entropy` (values are not checked: everything is traced
        inside ``shard_map``).

    Returns
    -------
    jax.Array
        A scalar, or the batch shape for ``'none'``; the same on every device.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from jax.sharding import PartitionSpec as P
    >>> from crossent.jax import cross_entropy, vocab_parallel_cross_entropy
    >>> mesh = jax.sharding.Mesh(jax.devices()[:1], ("vocab",))  # the vocabulary's axis
    >>> f = jax.jit(jax.shard_map(
    ...     lambda x, y: vocab_parallel_cross_entropy(x, y, axis_name="vocab"),
    ...     mesh=mesh, in_specs=(P(None, "vocab"), P()), out_specs=P()))
    >>> x, y = jnp.array([[10.0, 9.0, 8.0, 7.0]]), jnp.array([0])
    >>> bool(jnp.allclose(f(x, y), cross_entropy(x, y)))
    True
    """
    opts = options_from(options, "vocab_parallel")
    comm = Comm(axis_name)
    x = _checks.float_array(logits_shard, "logits_shard")
    v_local = x.shape[-1]
    v = comm.n_classes(v_local)
    w = _checks.class_weight(weight, v, "weight")
    batch = x.shape[:-1]
    x2 = x.reshape(-1, v_local)
    tgt = _checks.target(target, (*batch, v_local), len(batch), opts, v)
    cd = _checks.compute_dtype(x.dtype)
    rows, d, count = _checks.rows_of(tgt, w, v, opts, cd)
    weighted = w is not None and tgt.labels is not None
    _checks.check_num_items_static(opts, weighted)
    sc = _checks.scales(opts, d, count, weighted=weighted)
    rows = local_weights(rows, comm, v_local)
    loss = _loss(Static(opts, comm), x2, rows, (jax.numpy.asarray(sc.ce, cd),
                                                jax.numpy.asarray(sc.z, cd)))  # fmt: skip
    return loss.reshape(batch) if opts.reduction == "none" else loss


@takes_options("vocab_parallel_linear")
def vocab_parallel_linear_cross_entropy(
    input: Any,
    weight_shard: Any,
    target: Any,
    bias_shard: Any = None,
    *,
    axis_name: Any,
    class_weight: Any = None,
    chunk_size: int | None = None,
    **options: Unpack[LossKwargs],
) -> Array:
    r"""The fused head with the rows of ``weight`` split over the mesh axis ``axis_name``.

    Inside ``jax.shard_map``: ``input (..., D)`` replicated, ``weight_shard (V_r, D)`` and
    ``bias_shard (V_r,)`` this device's rows (``P(axis_name)``). The loss (replicated) and the
    gradients equal :func:`crossent.jax.linear_cross_entropy` with the whole weight: the
    input's gradient is summed over devices (one ``psum`` of ``N × D``), the weight's and the
    bias's are this device's rows. Each chunk's logits cross devices only as
    :func:`vocab_parallel_cross_entropy`'s per-row statistics; a device holds at most a
    ``(chunk, V_r)`` block. For a vocabulary that does not divide by the number of devices,
    pad the weight with rows of zeros and the bias with ``-inf`` (masked classes).

    Parameters
    ----------
    input : array, shape (..., D)
        Hidden states, replicated.
    weight_shard : array, shape (V_r, D)
        This device's rows of the head's weight.
    target : array
        Global class indices ``(...)`` (replicated) or this device's columns ``(..., V_r)``
        of probability targets.
    bias_shard : array, shape (V_r,), optional
        This device's part of the bias.
    axis_name : hashable
        The mesh axis that splits the vocabulary.
    class_weight : array, shape (V,), optional
        Class weights of the whole vocabulary (replicated).
    ignore_index, reduction, label_smoothing, z_loss, softcap, temperature, num_items
        As :func:`crossent.jax.cross_entropy`.
    chunk_size : int, optional
        As :func:`crossent.jax.linear_cross_entropy` (the default counts ``V_r`` columns).

    Returns
    -------
    jax.Array
        A scalar, or the shape ``(...)`` for ``'none'``; the same on every device.
    """
    opts = options_from(options, "vocab_parallel_linear")
    st, x2, w, b, rows, sc, batch = prepare_head(
        input, weight_shard, target, bias_shard, class_weight, opts, chunk_size,
        names=("weight_shard", "bias_shard"), comm=Comm(axis_name),
    )  # fmt: skip
    loss = _head(st, x2, w, b, rows, sc)
    return loss[: st.n_rows].reshape(batch) if opts.reduction == "none" else loss

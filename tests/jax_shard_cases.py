"""crossent.jax's vocabulary-parallel functions on 2 and 4 host devices, against one device.

Run by test_jax_shard.py in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``
(the device count is fixed when JAX starts, and other tests in the same process start it with
one device). Nothing here touches a device at import time.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import jax.numpy as jnp  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from crossent.jax import (  # noqa: E402
    cross_entropy,
    linear_cross_entropy,
    vocab_parallel_cross_entropy,
    vocab_parallel_linear_cross_entropy,
)

RNG = np.random.default_rng(7)
N, V, D = 9, 12, 5
X = RNG.normal(size=(N, V)).astype(np.float32) * 2
X[1, [3, 7]] = -np.inf  # masked classes, in two different shards
Y = np.array([0, 4, -100, 6, 2, 10, 1, 11, 5])
W = RNG.uniform(0.5, 2.0, size=V).astype(np.float32)
Q = RNG.dirichlet(np.ones(V), size=N).astype(np.float32)
Q[1, [3, 7]] = 0.0
Q[1] /= Q[1].sum()
HX = RNG.normal(size=(N, D)).astype(np.float32)
HW = RNG.normal(size=(V, D)).astype(np.float32)
HB = RNG.normal(size=V).astype(np.float32)

OPTIONS = [
    {"weight": W, "label_smoothing": 0.1},
    {"z_loss": 1e-2, "softcap": 3.0, "temperature": 0.8, "reduction": "sum"},
    {"reduction": "none", "label_smoothing": 0.2, "weight": W},
]


def mesh_of(n):
    if len(jax.devices()) < n:
        pytest.skip(f"needs {n} devices (XLA_FLAGS=--xla_force_host_platform_device_count=4)")
    return jax.sharding.Mesh(np.array(jax.devices()[:n]), ("vocab",))


def cotangent(kw):
    return jnp.arange(1.0, N + 1) if kw.get("reduction") == "none" else 1.0


@pytest.mark.parametrize(("n_dev", "probabilities"), [(2, False), (4, False), (4, True)])
def test_vocab_parallel_cross_entropy_equals_one_device(n_dev, probabilities):
    mesh = mesh_of(n_dev)
    t, t_spec = (Q, P(None, "vocab")) if probabilities else (Y, P())
    for kw in OPTIONS:
        ct = cotangent(kw)

        def sharded(x, t, kw=kw, ct=ct):
            f = jax.shard_map(
                lambda x, t: vocab_parallel_cross_entropy(x, t, axis_name="vocab", **kw),
                mesh=mesh, in_specs=(P(None, "vocab"), t_spec), out_specs=P(),
            )  # fmt: skip
            return (f(x, t) * ct).sum()

        def single(x, t, kw=kw, ct=ct):
            return (cross_entropy(x, t, **kw) * ct).sum()

        argnums = (0, 1) if probabilities else 0  # distillation: the target's gradient too
        got = jax.jit(jax.value_and_grad(sharded, argnums))(X, t)
        want = jax.jit(jax.value_and_grad(single, argnums))(X, t)
        np.testing.assert_allclose(got[0], want[0], rtol=2e-6, err_msg=str(kw))
        for a, b in zip(jax.tree.leaves(got[1]), jax.tree.leaves(want[1]), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=str(kw))


def test_one_pmax_and_one_psum_per_call():
    mesh = mesh_of(4)
    kw = {"label_smoothing": 0.1, "weight": W, "z_loss": 1e-3}
    f = jax.shard_map(
        lambda x, t: vocab_parallel_cross_entropy(x, t, axis_name="vocab", **kw),
        mesh=mesh, in_specs=(P(None, "vocab"), P()), out_specs=P(),
    )  # fmt: skip
    # the loss and the gradient: the gradient is made in the same pass, nothing more crosses
    text = jax.jit(jax.value_and_grad(f)).lower(X, Y).as_text()
    reduces = re.findall(r"all_reduce.*?\n.*?(maximum|add)", text, flags=re.S)
    assert sorted(reduces) == ["add", "maximum"], reduces


def test_an_uneven_vocabulary_padded_with_masked_classes():
    """shard_map splits an axis in equal parts: 10 classes on 4 devices are padded to 12 with
    -inf logits, which change nothing (label smoothing counts the finite classes)."""
    mesh = mesh_of(4)
    x10, y10 = X[:, :10].copy(), np.where(Y >= 10, 3, Y)
    x10[1, 3] = 0.5
    padded = np.concatenate([x10, np.full((N, 2), -np.inf, np.float32)], axis=1)
    kw = {"label_smoothing": 0.2, "z_loss": 1e-3}
    f = jax.shard_map(
        lambda x, t: vocab_parallel_cross_entropy(x, t, axis_name="vocab", **kw),
        mesh=mesh, in_specs=(P(None, "vocab"), P()), out_specs=P(),
    )  # fmt: skip
    loss, grad = jax.jit(jax.value_and_grad(f))(padded, y10)
    want, want_grad = jax.value_and_grad(lambda x: cross_entropy(x, y10, **kw))(x10)
    np.testing.assert_allclose(loss, want, rtol=2e-6)
    np.testing.assert_allclose(grad[:, :10], want_grad, rtol=1e-5, atol=1e-7)
    assert not np.asarray(grad[:, 10:]).any()


@pytest.mark.parametrize("n_dev", [2, 4])
def test_vocab_parallel_head_equals_one_device(n_dev):
    mesh = mesh_of(n_dev)
    options = [{"class_weight": W, "label_smoothing": 0.1}, {"reduction": "none", "z_loss": 1e-2}]
    for kw in options[: 4 // n_dev]:
        ct = cotangent(kw)

        def sharded(x, w, b, kw=kw, ct=ct):
            f = jax.shard_map(
                lambda x, w, b: vocab_parallel_linear_cross_entropy(
                    x, w, Y, b, axis_name="vocab", chunk_size=4, **kw
                ),
                mesh=mesh, in_specs=(P(), P("vocab"), P("vocab")), out_specs=P(),
            )  # fmt: skip
            return (f(x, w, b) * ct).sum()

        def single(x, w, b, kw=kw, ct=ct):
            return (linear_cross_entropy(x, w, Y, b, **kw) * ct).sum()

        got = jax.jit(jax.value_and_grad(sharded, (0, 1, 2)))(HX, HW, HB)
        want = jax.jit(jax.value_and_grad(single, (0, 1, 2)))(HX, HW, HB)
        np.testing.assert_allclose(got[0], want[0], rtol=2e-6, err_msg=str(kw))
        for a, b in zip(got[1], want[1], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=str(kw))


def test_vocab_parallel_head_with_probabilities_and_an_uneven_vocabulary():
    """11 classes on 2 devices: a zero row in the weight and a -inf bias mask the 12th."""
    mesh = mesh_of(2)
    w12 = np.concatenate([HW[:11], np.zeros((1, D), np.float32)])
    b12 = np.concatenate([HB[:11], [-np.inf]]).astype(np.float32)
    q11 = RNG.dirichlet(np.ones(11), size=N).astype(np.float32)
    q12 = np.concatenate([q11, np.zeros((N, 1), np.float32)], axis=1)
    f = jax.shard_map(
        lambda x, w, b, q: vocab_parallel_linear_cross_entropy(
            x, w, q, b, axis_name="vocab", label_smoothing=0.1
        ),
        mesh=mesh, in_specs=(P(), P("vocab"), P("vocab"), P(None, "vocab")), out_specs=P(),
    )  # fmt: skip
    loss, (gx, gw) = jax.jit(jax.value_and_grad(f, (0, 1)))(HX, w12, b12, q12)
    want, (wx, ww) = jax.value_and_grad(
        lambda x, w: linear_cross_entropy(x, w, q11, HB[:11], label_smoothing=0.1), (0, 1)
    )(HX, HW[:11])
    np.testing.assert_allclose(loss, want, rtol=2e-6)
    np.testing.assert_allclose(gx, wx, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gw[:11], ww, rtol=1e-5, atol=1e-6)


def test_pmap_and_batch_sharded_inputs():
    """The single-device loss under pmap, and under jit with inputs sharded over the batch."""
    mesh = mesh_of(4)
    x = X[:8].reshape(4, 2, V)
    y = np.array([0, 4, -100, 6, 2, 10, 1, 11]).reshape(4, 2)
    kw = {"label_smoothing": 0.1, "z_loss": 1e-3, "weight": W}
    loss, grad = jax.pmap(jax.value_and_grad(lambda x, y: cross_entropy(x, y, **kw)))(x, y)
    for i in range(4):
        want = jax.value_and_grad(lambda x, y: cross_entropy(x, y, **kw))(x[i], y[i])
        np.testing.assert_allclose(loss[i], want[0], rtol=1e-6)
        np.testing.assert_allclose(grad[i], want[1], rtol=1e-6, atol=1e-7)
    rows = jax.sharding.NamedSharding(mesh, P("vocab"))  # the mesh's axis, over rows here
    xs, ys = jax.device_put(X[:8], rows), jax.device_put(y.reshape(8), rows)
    step = jax.jit(jax.value_and_grad(lambda x, y: cross_entropy(x, y, **kw)))
    got, want = step(xs, ys), step(X[:8], y.reshape(8))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-7)

"""crossent.jax: the loss and its gradient against crossent.reference, the NumPy API and optax.

The vocabulary-parallel functions need several devices: they are tested in a subprocess
(test_jax_shard.py runs jax_shard_cases.py with four host devices).
"""

from __future__ import annotations

import math
import re
from functools import partial

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

from jax.test_util import check_grads  # noqa: E402

import crossent  # noqa: E402
from crossent import reference  # noqa: E402
from crossent.jax import cross_entropy, linear_cross_entropy  # noqa: E402
from spec_cases import CASES, IDS, expect  # noqa: E402

RNG = np.random.default_rng(19)
N, C = 6, 5
X = RNG.normal(size=(N, C)) * 3
X_MASKED = X.copy()
X_MASKED[1, [0, 3]] = -np.inf  # row 1's target (2) stays finite
X_MASKED[4, :] = -np.inf  # an ignored row of all -inf
Y = np.array([0, 2, -100, 4, -100, 1])
W = RNG.uniform(0.2, 2.0, size=C)
Q = RNG.dirichlet(np.ones(C), size=N)
Q_MASKED = Q.copy()
Q_MASKED[1, [0, 3]] = 0.0
Q_MASKED[1] /= Q_MASKED[1].sum()
Q_MASKED[4] = 0.0
Q_MASKED[4, 0] = 1.0  # row 4 is all -inf: probabilities cannot skip it; not used with it

# (id, logits, target, options): every option, both kinds of target, masks, every reduction
OPTION_CASES = [
    ("plain", X, Y, {}),
    ("weights, smoothing, ignored rows", X, Y, {"weight": W, "label_smoothing": 0.2}),
    ("z_loss, weights", X, Y, {"weight": W, "z_loss": 0.05}),
    (
        "softcap, temperature, num_items",
        X,
        Y,
        {"softcap": 2.0, "temperature": 0.7, "z_loss": 0.01, "num_items": 7.0},
    ),
    ("sum", X, Y, {"reduction": "sum", "label_smoothing": 0.1}),
    ("none", X, Y, {"reduction": "none", "weight": W, "label_smoothing": 0.1}),
    (
        "-inf masks, smoothing, softcap",
        X_MASKED,
        Y,
        {"label_smoothing": 0.3, "weight": W, "softcap": 1.5},
    ),
    ("probabilities", X, Q, {"weight": W, "label_smoothing": 0.1}),
    (
        "probabilities, -inf masks",
        X_MASKED[:4],
        Q_MASKED[:4],
        {"z_loss": 0.02, "reduction": "none"},
    ),
]
OPTION_IDS = [c[0] for c in OPTION_CASES]


def _cotangent(kw, n):
    """Weights of each row's loss for 'none' (a plain sum would hide a per-row error)."""
    return np.arange(1.0, n + 1) if kw.get("reduction") == "none" else 1.0


def reference_loss_grad(x, t, kw):
    """crossent.reference in float64; its gradient by torch's autograd of the same lines."""
    torch = pytest.importorskip("torch")
    xt = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    tt = torch.from_numpy(np.asarray(t))
    kwt = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    loss = reference.cross_entropy(xt, tt, **kwt)
    ct = torch.as_tensor(_cotangent(kw, x.shape[0]), dtype=torch.float64)
    (loss * ct).sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


def jax_loss_grad(x, t, kw, fn=cross_entropy):
    ct = jnp.asarray(_cotangent(kw, x.shape[0]), dtype=x.dtype)
    return jax.value_and_grad(lambda x: (fn(x, t, **kw) * ct).sum())(x)


@pytest.mark.parametrize("case", OPTION_CASES, ids=OPTION_IDS)
def test_equals_the_reference_in_float64(case):
    _, x, t, kw = case
    want_loss, want_grad = reference_loss_grad(x, t, kw)
    with jax.enable_x64(True):
        kw64 = {k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        loss, grad = jax.jit(lambda x: (cross_entropy(x, t, **kw64), jax_loss_grad(x, t, kw64)[1]))(
            jnp.asarray(x)
        )
        assert loss.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(loss), want_loss, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.asarray(grad), want_grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("case", OPTION_CASES, ids=OPTION_IDS)
def test_equals_the_numpy_api_in_float32(case):
    _, x, t, kw = case
    x32 = x.astype(np.float32)
    t32 = t.astype(np.float32) if t.dtype.kind == "f" else t
    want = crossent.cross_entropy(x32, t32, **kw)
    loss, grad = jax.jit(lambda x: (cross_entropy(x, t32, **kw), jax_loss_grad(x, t32, kw)[1]))(
        jnp.asarray(x32)
    )
    # float32 on both sides, summed in different orders (NumPy sums in float64): a few ulps
    np.testing.assert_allclose(np.asarray(loss), want, rtol=2e-6)
    if kw.get("reduction") != "none":
        np.testing.assert_allclose(grad, crossent.cross_entropy_grad(x32, t32, **kw), atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_same_messages_as_the_numpy_api(case):
    _, x, y, kw, *_ = case
    kw = {k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    want = expect(case, lambda: crossent.cross_entropy(np.asarray(x), np.asarray(y), axis=1, **kw))
    xa = np.asarray(x, dtype=np.float32)
    got = expect(case, lambda: cross_entropy(xa, np.asarray(y), axis=1, **kw))
    assert got == want
    if case[0].endswith("logits"):  # a head's logits are products of finite arrays
        return
    # the head: input = the logits with classes last, weight = the identity
    h = np.moveaxis(xa, 1, -1)
    t = np.asarray(y)
    if t.dtype.kind == "f" and t.ndim > 1:
        t = np.moveaxis(t, 1, -1)
    if "weight" in kw:
        kw["class_weight"] = kw.pop("weight")
    eye = np.eye(xa.shape[1], dtype=np.float32)
    got = expect(case, lambda: linear_cross_entropy(h, eye, t, **kw), _linear_names)
    assert got == want


def _linear_names(msg):
    """The head's names: class weights are ``class_weight``, classes the last axis."""
    return msg.replace("class_weight:", "weight:").replace("along axis 2", "along axis 1")


# what needs no values is checked at trace time: the options and the shapes (num_items 0 is
# refused only where the targets are not all ignored: a value check)
OPTION_ERRORS = [
    c for c in CASES if not re.search(r"label|probabilities|weight|logits|below|with targets", c[0])
]
OPTION_ERRORS += [c for c in CASES if c[0] in ("target of the wrong shape", "float labels",
                                               "weight of the wrong shape",
                                               "num_items, weights and z_loss")]  # fmt: skip


@pytest.mark.parametrize("case", OPTION_ERRORS, ids=[c[0] for c in OPTION_ERRORS])
def test_options_and_shapes_are_checked_under_jit(case):
    _, x, y, kw, *_ = case
    fn = jax.jit(lambda x, y: cross_entropy(x, y, axis=1, **kw))
    x, y = jnp.asarray(x, dtype=jnp.float32), jnp.asarray(y)  # 32-bit: name them as 64
    expect(case, lambda: fn(x, y), lambda m: m.replace("int32", "int64").replace("t32", "t64"))


def test_under_jit_values_give_nan_instead_of_an_error():
    fn = jax.jit(lambda x, y: cross_entropy(x, y, reduction="none"))
    loss = fn(jnp.asarray(X, dtype=jnp.float32), jnp.array([0, 7, -100, 1, 2, 3]))
    assert np.isnan(loss[1]) and np.isfinite(np.delete(np.asarray(loss), 1)).all()
    # the mean of a batch with a bad label is NaN too: never a silently wrong number
    assert np.isnan(jax.jit(cross_entropy)(jnp.asarray(X), jnp.array([0, 7, 1, 1, 2, 3])))
    with pytest.raises(ValueError, match=r"got 7 at position \(1,\)"):  # outside jit: an error
        cross_entropy(jnp.asarray(X), jnp.array([0, 7, 1, 1, 2, 3]))


def test_jit_vmap_and_eager_agree():
    x = jnp.asarray(RNG.normal(size=(3, 4, C)), dtype=jnp.float32)
    y = jnp.array([[0, 1, -100, 4], [2, 2, 3, 1], [-100, 0, 0, 0]])
    kw = {"label_smoothing": 0.1, "z_loss": 1e-3, "weight": jnp.asarray(W, dtype=jnp.float32)}

    def f(a, b):
        return cross_entropy(a, b, **kw)

    eager = [jax.value_and_grad(f)(x[i], y[i]) for i in range(3)]
    loss, grad = jax.jit(jax.vmap(jax.value_and_grad(f)))(x, y)
    np.testing.assert_allclose(loss, [e[0] for e in eager], rtol=1e-6)
    np.testing.assert_allclose(grad, jnp.stack([e[1] for e in eager]), rtol=1e-6, atol=1e-8)


def test_jit_takes_the_options_by_name_as_static_arguments():
    """``static_argnames`` reads the signature, which the table gives (``**options``)."""
    x = jnp.asarray(RNG.normal(size=(4, C)), dtype=jnp.float32)
    y = jnp.array([0, 1, -100, 4])
    kw = {"reduction": "sum", "label_smoothing": 0.1, "softcap": 5.0}
    f = jax.jit(cross_entropy, static_argnames=tuple(kw))
    np.testing.assert_allclose(f(x, y, **kw), cross_entropy(x, y, **kw), rtol=1e-6)
    with pytest.raises(ValueError, match="reduction: expected one of"):
        f(x, y, reduction="avg")


def test_the_class_axis_is_the_same_as_moving_it_last():  # optax's consistency check
    x = jnp.asarray(RNG.normal(size=(4, 5, 6)), dtype=jnp.float32)
    ys = [jnp.asarray(RNG.integers(0, x.shape[a], size=np.delete(x.shape, a))) for a in range(3)]

    @jax.jit
    def both(x, ys):
        return [
            (cross_entropy(x, y, axis=a, reduction="none"),
             cross_entropy(jnp.moveaxis(x, a, -1), y, reduction="none"))
            for a, y in enumerate(ys)
        ]  # fmt: skip

    for got, want in both(x, ys):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_check_grads_and_exact_second_derivatives():
    with jax.enable_x64(True):
        x = jnp.asarray(X[:3, :4])
        y = jnp.array([0, 3, -100])
        kw = {"weight": jnp.asarray(W[:4]), "label_smoothing": 0.1, "z_loss": 0.01, "softcap": 4.0}

        def f(x):
            return cross_entropy(x, y, **kw)

        check_grads(f, (x,), order=1, modes=["rev"])
        # the gradient is made of JAX operations that JAX differentiates: second derivatives
        # by reverse over reverse and forward over reverse are exact (central differences of
        # the gradient, error O(h²) ~ 1e-10)
        grad = jax.jit(jax.grad(f))
        v = jnp.asarray(RNG.normal(size=x.shape))
        h = 1e-5
        fd = (grad(x + h * v) - grad(x - h * v)) / (2 * h)
        hvp = jax.jit(lambda x, v: jax.grad(lambda x: jnp.vdot(jax.grad(f)(x), v))(x))(x, v)
        np.testing.assert_allclose(hvp, fd, atol=1e-8)
        hess = jax.jit(jax.hessian(f))(x)
        np.testing.assert_allclose(jnp.tensordot(hess, v, 2), hvp, atol=1e-12)
        with pytest.raises(TypeError, match="custom_vjp"):  # forward mode on the loss itself
            jax.jvp(f, (x,), (x,))


def test_differentiating_class_weights_or_the_heads_probabilities_is_refused():
    x, q = jnp.asarray(X, dtype=jnp.float32), jnp.asarray(Q, dtype=jnp.float32)
    w = jnp.asarray(W, dtype=jnp.float32)
    y = jnp.asarray(Y)
    with pytest.raises(TypeError, match=r"^weight: expected constant class weights"):
        jax.grad(lambda w: cross_entropy(x, y, weight=w))(w)
    with pytest.raises(TypeError, match=r"^target: expected constant probabilities"):
        jax.grad(lambda q: linear_cross_entropy(x, jnp.eye(C, dtype=x.dtype), q))(q)
    # with respect to the logits only: fine, and the weights' stop_gradient is the remedy
    g = jax.grad(lambda x, w: cross_entropy(x, y, weight=jax.lax.stop_gradient(w)), (0, 1))(x, w)
    assert not np.asarray(g[1]).any()


@pytest.mark.parametrize(
    "kw",
    [{"weight": W, "label_smoothing": 0.1, "z_loss": 0.01}, {"reduction": "none", "softcap": 2.0}],
)
def test_the_gradient_with_respect_to_probabilities_equals_the_reference(kw):
    """Distillation differentiates the target too; 0 at masked classes, as the reference."""
    torch = pytest.importorskip("torch")
    x, q = X_MASKED[:4], Q_MASKED[:4]
    ct = _cotangent(kw, 4)
    qt = torch.tensor(q, requires_grad=True)
    kwt = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    (reference.cross_entropy(torch.from_numpy(x), qt, **kwt) * torch.tensor(ct)).sum().backward()
    with jax.enable_x64(True):
        grad = jax.jit(jax.grad(lambda q: (cross_entropy(x, q, **kw) * ct).sum()))(q)
        np.testing.assert_allclose(grad, qt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_all_ignored_batch_gives_zero_and_a_zero_gradient():
    x = jnp.asarray(X_MASKED, dtype=jnp.float32)
    y = jnp.full(N, -100)
    w = jnp.asarray(W, dtype=jnp.float32)
    for kw in ({}, {"weight": w, "z_loss": 0.1}):
        loss, grad = jax.value_and_grad(partial(cross_entropy, target=y, **kw))(x)
        assert float(loss) == 0.0 and not np.asarray(grad).any()


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_logits_are_computed_in_float32(dtype):
    x = jnp.asarray(X_MASKED, dtype=dtype)
    x32 = x.astype(jnp.float32)
    kw = {"label_smoothing": 0.1, "z_loss": 1e-3}
    loss, grad = jax.value_and_grad(lambda x: cross_entropy(x, jnp.asarray(Y), **kw))(x)
    loss32, grad32 = jax.value_and_grad(lambda x: cross_entropy(x, jnp.asarray(Y), **kw))(x32)
    assert loss.dtype == grad.dtype == x.dtype
    # the same float32 computation, rounded once to the 16-bit dtype at the end
    np.testing.assert_array_equal(
        np.asarray(loss, np.float32), np.asarray(loss32.astype(dtype), np.float32)
    )
    np.testing.assert_array_equal(
        np.asarray(grad, np.float32), np.asarray(grad32.astype(dtype), np.float32)
    )


# optax's own test cases (optax/losses/_classification_test.py) where the semantics coincide
OPTAX_YS = np.array([[10.0, 1.0, -2.0], [1.0, 4.0, 0.2]], dtype=np.float32)
OPTAX_TS = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32)
OPTAX_EXP = np.array([9.00013, 3.0696733], dtype=np.float32)


def test_optax_softmax_cross_entropy_cases():
    optax = pytest.importorskip("optax")
    got = jax.jit(lambda x, q: cross_entropy(x, q, reduction="none"))(OPTAX_YS, OPTAX_TS)
    np.testing.assert_allclose(got, OPTAX_EXP, atol=1e-4)
    # and optax itself, with its gradient, on random probability targets
    x = jnp.asarray(RNG.normal(size=(8, 7)), dtype=jnp.float32)
    q = jnp.asarray(RNG.dirichlet(np.ones(7), size=8), dtype=jnp.float32)
    f_ours = jax.jit(jax.value_and_grad(lambda x: cross_entropy(x, q, reduction="sum")))
    f_optax = jax.jit(jax.value_and_grad(lambda x: optax.softmax_cross_entropy(x, q).sum()))
    for a, b in zip(f_ours(x), f_optax(x), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_optax_integer_label_cases_and_where_as_ignore_index():
    optax = pytest.importorskip("optax")
    ts = np.array([1, 0], dtype=np.int32)
    mask = np.array([True, False])
    # optax's `where=mask` is crossent's ignore_index; its gradient test with a mask
    ours = jax.jit(jax.value_and_grad(
        lambda x: cross_entropy(x, np.where(mask, ts, -100), reduction="sum")
    ))  # fmt: skip
    theirs = jax.jit(jax.value_and_grad(
        lambda x: optax.softmax_cross_entropy_with_integer_labels(x, ts, where=mask).sum()
    ))  # fmt: skip
    for a, b in zip(ours(OPTAX_YS), theirs(OPTAX_YS), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    want = optax.softmax_cross_entropy(OPTAX_YS, jax.nn.one_hot(ts, 3))
    np.testing.assert_allclose(cross_entropy(OPTAX_YS, ts, reduction="none"), want, rtol=1e-6)


def test_optax_safe_softmax_cross_entropy_cases():
    ys = np.array(
        [[10.0, 1.0, -2.0], [1.0, 4.0, 0.2], [-np.inf, 0.0, 0.0], [-np.inf, 0.0, 0.0],
         [-np.inf, 0.0, -np.inf]], dtype=np.float32,
    )  # fmt: skip
    ts = np.array(
        [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.4, 0.3, 0.3], [0.0, 1.0, 0.0]],
        dtype=np.float32,
    )
    want = np.array([9.00013, 3.0696733, 0.693147, np.inf, 0.0], dtype=np.float32)
    np.testing.assert_allclose(cross_entropy(ys, ts, reduction="none"), want, atol=1e-4)
    # where the loss is finite, so is the gradient (masked classes get 0)
    rows = [0, 1, 2, 4]
    g = jax.jit(jax.grad(lambda x: cross_entropy(x, ts[rows], reduction="sum")))(ys[rows])
    assert np.isfinite(g).all() and g[2, 0] == 0 and g[3, 0] == g[3, 2] == 0


# ----------------------------------------------------------------------------------------------
# the fused head

D, V = 4, 11
HX = RNG.normal(size=(2, 5, D)).astype(np.float32)  # (..., D): a batch of sequences
HW = RNG.normal(size=(V, D)).astype(np.float32)
HB = RNG.normal(size=V).astype(np.float32)
HY = np.array([[0, 10, 3, -100, 2], [5, 5, -100, 9, 1]])
HQ = RNG.dirichlet(np.ones(V), size=(2, 5)).astype(np.float32)
CW = RNG.uniform(0.5, 2.0, size=V).astype(np.float32)

HEAD_CASES = [
    ("plain, bias", HY, True, {}),
    ("no bias, weights, smoothing", HY, False, {"class_weight": CW, "label_smoothing": 0.1}),
    (
        "z_loss, softcap, temperature",
        HY,
        True,
        {"z_loss": 1e-2, "softcap": 2.0, "temperature": 0.8},
    ),
    ("none", HY, True, {"reduction": "none", "label_smoothing": 0.2}),
    ("num_items, sum of two calls", HY, True, {"num_items": 9.0}),
    ("probabilities", HQ, True, {"class_weight": CW, "reduction": "sum"}),
]


@pytest.mark.parametrize("case", HEAD_CASES, ids=[c[0] for c in HEAD_CASES])
def test_the_head_equals_the_unfused_loss(case):
    _, t, with_bias, kw = case
    chunk = 3 if with_bias else None  # 3 does not divide the 10 rows: padding
    unfused_kw = {("weight" if k == "class_weight" else k): v for k, v in kw.items()}
    ct = jnp.asarray(np.arange(1.0, 11.0).reshape(2, 5) if kw.get("reduction") == "none" else 1.0)
    b = jnp.asarray(HB) if with_bias else None

    def fused(x, w, b):
        return (linear_cross_entropy(x, w, t, b, chunk_size=chunk, **kw) * ct).sum()

    def unfused(x, w, b):
        logits = x @ w.T + (0.0 if b is None else b)
        return (cross_entropy(logits, t, **unfused_kw) * ct).sum()

    args = (jnp.asarray(HX), jnp.asarray(HW), b)
    argnums = (0, 1, 2) if with_bias else (0, 1)
    got, want, loss_only = jax.jit(
        lambda *a: (jax.value_and_grad(fused, argnums)(*a), jax.value_and_grad(unfused, argnums)(*a),
                    fused(*a))
    )(*args)  # fmt: skip
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    for a, b_ in zip(got[1], want[1], strict=True):
        np.testing.assert_allclose(a, b_, rtol=1e-5, atol=1e-6)
    assert float(loss_only) == pytest.approx(float(got[0]), rel=1e-6)  # the loss-only path


def test_the_head_in_float64_equals_the_reference_and_check_grads():
    with jax.enable_x64(True):
        x, w, b = (jnp.asarray(a, dtype=jnp.float64) for a in (HX[:1], HW, HB))
        kw = {"label_smoothing": 0.1, "z_loss": 1e-2}
        got = linear_cross_entropy(x, w, HY[:1], b, chunk_size=4, **kw)
        want = reference.cross_entropy(np.asarray(x @ w.T + b), HY[:1], **kw)
        np.testing.assert_allclose(got, want, rtol=1e-12)
        check_grads(lambda x, w, b: linear_cross_entropy(x, w, HY[:1], b, chunk_size=4, **kw),
                    (x, w, b), order=1, modes=["rev"])  # fmt: skip


def test_the_head_in_bfloat16():
    x, w = jnp.asarray(HX, jnp.bfloat16), jnp.asarray(HW, jnp.bfloat16)
    fused = jax.value_and_grad(lambda x, w: linear_cross_entropy(x, w, HY), (0, 1))
    unfused = jax.value_and_grad(
        lambda x, w: cross_entropy(x.astype(jnp.float32) @ w.astype(jnp.float32).T, HY), (0, 1)
    )
    (loss, (gx, gw)), (want, (wx, ww)) = jax.jit(lambda x, w: (fused(x, w), unfused(x, w)))(x, w)
    assert loss.dtype == gx.dtype == gw.dtype == jnp.bfloat16
    # bfloat16 keeps 8 bits: the head multiplies in bfloat16 with float32 accumulation
    np.testing.assert_allclose(np.asarray(loss, np.float32), want, rtol=1e-2)
    np.testing.assert_allclose(np.asarray(gw, np.float32), ww, rtol=0.05, atol=2e-3)
    np.testing.assert_allclose(np.asarray(gx, np.float32), wx, rtol=0.05, atol=2e-3)


def test_the_head_never_holds_the_logits():
    """The compiled forward and backward hold no (N, V) array: at most (chunk, V)."""
    n, d, v, chunk = 256, 8, 4096, 16
    x = jnp.zeros((n, d), jnp.float32)
    w = jnp.zeros((v, d), jnp.float32)
    y = jnp.zeros(n, jnp.int32)
    step = jax.jit(jax.grad(lambda x, w: linear_cross_entropy(x, w, y, chunk_size=chunk), (0, 1)))
    text = step.lower(x, w).compile().as_text()
    shapes = {tuple(map(int, s.split(","))) for s in re.findall(r"f32\[(\d+,\d+)\]", text)}
    assert (n, v) not in shapes and (v, n) not in shapes
    assert (chunk, v) in shapes or (v, chunk) in shapes
    temp = step.lower(x, w).compile().memory_analysis().temp_size_in_bytes
    assert temp < n * v * 4 / 4  # well under the logits' 4 MiB


def test_head_arguments_are_checked():
    x, w = jnp.asarray(HX), jnp.asarray(HW)
    with pytest.raises(
        ValueError,
        match=r"^weight: expected shape \(V, 4\) for input of shape \(2, 5, 4\), got \(11, 3\)$",
    ):
        linear_cross_entropy(x, w[:, :3], HY)
    with pytest.raises(
        TypeError, match=r"^weight: expected dtype float32 \(input's\), got bfloat16$"
    ):
        linear_cross_entropy(x, w.astype(jnp.bfloat16), HY)
    with pytest.raises(ValueError, match=r"^bias: expected shape \(11,\), got \(10,\)$"):
        linear_cross_entropy(x, w, HY, jnp.zeros(10))
    with pytest.raises(ValueError, match=r"^chunk_size: expected an int >= 1 or None, got 0$"):
        linear_cross_entropy(x, w, HY, chunk_size=0)
    with pytest.raises(TypeError, match=r"^class_weight: expected constant class weights"):
        jax.grad(lambda c: linear_cross_entropy(x, w, HY, class_weight=c))(jnp.asarray(CW))


def test_num_items_losses_of_micro_batches_add_up_to_the_global_mean():
    x, w = jnp.asarray(HX.reshape(10, D)), jnp.asarray(HW)
    y = HY.reshape(10)
    k = float(np.sum(y != -100))
    parts = linear_cross_entropy(x[:4], w, y[:4], num_items=k) + linear_cross_entropy(
        x[4:], w, y[4:], num_items=k
    )
    np.testing.assert_allclose(parts, linear_cross_entropy(x, w, y), rtol=1e-6)
    assert math.isfinite(float(parts))


def test_every_function_takes_the_options_of_the_numpy_api():
    import inspect

    from crossent.jax import vocab_parallel_cross_entropy, vocab_parallel_linear_cross_entropy

    def options(f, drop=()):
        params = inspect.signature(f).parameters.values()
        got = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}
        if "class_weight" in got:
            got["weight"] = got.pop("class_weight")
        return {k: v for k, v in got.items() if k not in drop}

    want = options(crossent.cross_entropy)
    assert options(cross_entropy) == want
    no_axis = {k: v for k, v in want.items() if k != "axis"}
    assert options(linear_cross_entropy, ("chunk_size",)) == no_axis
    assert options(vocab_parallel_cross_entropy, ("axis_name",)) == no_axis
    assert options(vocab_parallel_linear_cross_entropy, ("axis_name", "chunk_size")) == no_axis

"""Property tests (hypothesis) and consistency checks in optax's spirit."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import crossent
from crossent import reference

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def logits_and_labels(draw, min_classes=1):
    n = draw(st.integers(1, 6))
    c = draw(st.integers(min_classes, 7))
    x = draw(hnp.arrays(np.float64, (n, c), elements=finite))
    y = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    return x, y


@given(logits_and_labels())
def test_softmax_rows_are_distributions(xy):
    x, _ = xy
    p = crossent.softmax(x)
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.exp(crossent.log_softmax(x)), p, atol=1e-12)


def unclamped_reference(x, y, eps, w):
    """Each row's loss from crossent.reference, which clamps nothing."""
    return reference.cross_entropy(x, y, label_smoothing=eps, weight=w, reduction="none")


@given(logits_and_labels(), st.floats(0, 1), st.booleans())
def test_loss_equals_an_unclamped_reference_and_is_nonnegative(xy, eps, weighted):
    """crossent clamps round-off below 0; a wrong formula would still be >= 0 after that, so
    the loss is compared with a reference that has no clamp, and that one is checked >= 0."""
    x, y = xy
    w = np.linspace(0.5, 2.0, x.shape[1]) if weighted else np.ones(x.shape[1])
    ref = unclamped_reference(x, y, eps, w)
    assert (ref >= -1e-9 * (1 + np.abs(x).max())).all()  # the mathematics: >= 0
    got = crossent.cross_entropy(x, y, label_smoothing=eps, weight=w, reduction="none")
    np.testing.assert_allclose(got, np.maximum(ref, 0.0), rtol=1e-9, atol=1e-9)
    total = crossent.cross_entropy(x, y, label_smoothing=eps, weight=w, reduction="sum")
    np.testing.assert_allclose(total, ref.sum(), rtol=1e-9, atol=1e-8)


@given(logits_and_labels(), st.floats(-1e3, 1e3))
def test_invariant_to_adding_a_constant_per_row(xy, shift):
    x, y = xy
    rows = np.linspace(-1, 1, x.shape[0])[:, None] * shift
    np.testing.assert_allclose(
        crossent.cross_entropy(x + rows, y, reduction="none"),
        crossent.cross_entropy(x, y, reduction="none"),
        rtol=1e-9,
        atol=1e-9,
    )
    np.testing.assert_allclose(crossent.softmax(x + rows), crossent.softmax(x), atol=1e-12)


@given(logits_and_labels(), st.floats(0, 1), st.booleans())
def test_integer_labels_equal_one_hot_probabilities(xy, eps, weighted):
    x, y = xy
    c = x.shape[1]
    w = np.linspace(0.5, 2.0, c) if weighted else None
    q = np.eye(c)[y]
    opts = dict(label_smoothing=eps, weight=w, reduction="none")
    np.testing.assert_allclose(
        crossent.cross_entropy(x, y, **opts), crossent.cross_entropy(x, q, **opts), rtol=1e-9,
        atol=1e-12,
    )  # fmt: skip
    np.testing.assert_allclose(
        crossent.cross_entropy_grad(x, y, **opts),
        crossent.cross_entropy_grad(x, q, **opts),
        atol=1e-12,
    )


@given(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=4, max_side=4), elements=finite),
    st.data(),
)
def test_axis_k_equals_moving_that_axis_last(x, data):
    axis = data.draw(st.integers(0, x.ndim - 1))
    c = x.shape[axis]
    idx_shape = x.shape[:axis] + x.shape[axis + 1 :]
    y = data.draw(hnp.arrays(np.int64, idx_shape, elements=st.integers(0, c - 1)))
    moved = np.moveaxis(x, axis, -1)
    loss, grad = crossent.cross_entropy_with_grad(x, y, axis=axis, reduction="none")
    loss_m, grad_m = crossent.cross_entropy_with_grad(moved, y, reduction="none")
    np.testing.assert_allclose(loss, loss_m, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.moveaxis(grad, axis, -1), grad_m, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        crossent.softmax(x, axis=axis), np.moveaxis(crossent.softmax(moved), -1, axis)
    )


@given(logits_and_labels(min_classes=2), st.data())
def test_ignoring_rows_equals_slicing_them_out(xy, data):
    x, y = xy
    keep = data.draw(hnp.arrays(bool, y.shape))
    w = np.linspace(1.0, 2.0, x.shape[1])
    y_ign = np.where(keep, y, -100)
    for reduction in ("mean", "sum"):
        full = crossent.cross_entropy(x, y_ign, weight=w, reduction=reduction)
        sliced = (
            crossent.cross_entropy(x[keep], y[keep], weight=w, reduction=reduction)
            if keep.any()
            else 0.0
        )
        np.testing.assert_allclose(full, sliced, rtol=1e-10, atol=1e-12)

"""Bad input gets a clear error naming the argument, what was expected and what was got."""

from __future__ import annotations

import numpy as np
import pytest

import crossent

X = np.array([[1.0, 2.0, 3.0], [0.0, 0.5, -1.0]])
Y = np.array([0, 2])

CE_CASES = [
    # (description, logits, target, kwargs, error type, message regex)
    ("label out of range", X, [0, 3], {}, ValueError, r"target: .*\[0, 2\].* got 3 at position \(1,\)"),
    ("negative label", X, [-1, 0], {}, ValueError, r"target: .*got -1 at position \(0,\)"),
    ("uint64 label 2**63", X, np.array([0, 2**63], np.uint64), {}, ValueError, r"target: .*got 9223372036854775808 at position \(1,\)"),
    ("uint64 label wrapping to ignore_index", X, np.array([2**64 - 100, 0], np.uint64), {}, ValueError, r"target: .*got 18446744073709551516 at position \(0,\)"),
    ("float labels", X, [0.0, 2.0], {}, TypeError, r"target: .*float labels"),
    ("target wrong shape", X, [0, 1, 2], {}, ValueError, r"target: expected .*shape \(2,\).*got .*\(3,\)"),
    ("string target", X, ["a", "b"], {}, TypeError, r"target: expected a numeric array"),
    ("negative probabilities", X, [[2.0, -1.0, 0.0], [0, 0, 1.0]], {}, ValueError, r"target: expected probabilities >= 0"),
    ("probabilities not summing to 1", X, [[0.5, 0.4, 0.0], [0, 0, 1.0]], {}, ValueError, r"target: expected probabilities summing to 1.*at position \(0,\)"),
    ("nan probabilities", X, [[np.nan, 1.0, 0.0], [0, 0, 1.0]], {}, ValueError, r"target: expected finite"),
    ("weight wrong shape", X, Y, {"weight": [1.0, 2.0]}, ValueError, r"weight: expected shape \(3,\).*got \(2,\)"),
    ("negative weight", X, Y, {"weight": [1.0, -2.0, 1.0]}, ValueError, r"weight: expected values >= 0"),
    ("nan weight", X, Y, {"weight": [1.0, np.nan, 1.0]}, ValueError, r"weight: expected finite"),
    ("smoothing > 1", X, Y, {"label_smoothing": 1.5}, ValueError, r"label_smoothing: expected a number in \[0, 1\], got 1.5"),
    ("smoothing < 0", X, Y, {"label_smoothing": -0.1}, ValueError, r"label_smoothing: expected"),
    ("smoothing not a number", X, Y, {"label_smoothing": "0.1"}, TypeError, r"label_smoothing: expected a real number"),
    ("unknown reduction", X, Y, {"reduction": "avg"}, ValueError, r"reduction: expected one of 'mean', 'sum', 'none', got 'avg'"),
    ("axis out of range", X, Y, {"axis": 2}, ValueError, r"axis: expected an int in \[-2, 1\], got 2"),
    ("axis not an int", X, Y, {"axis": 1.0}, TypeError, r"axis: expected an int"),
    ("nan logits", [[np.nan, 1.0, 0.0], [0.0, 0.0, 0.0]], Y, {}, ValueError, r"logits: expected finite values or -inf.*NaN"),
    ("+inf logits", [[np.inf, 1.0, 0.0], [0.0, 0.0, 0.0]], Y, {}, ValueError, r"logits: .*\+inf"),
    ("string logits", [["a", "b", "c"]], [0], {}, TypeError, r"logits: expected a real numeric array"),
    ("complex logits", np.ones((2, 3), dtype=complex), Y, {}, TypeError, r"logits: expected a real numeric array"),
    ("0-d logits", 3.0, 0, {}, ValueError, r"logits: expected an array with at least 1 dimension"),
    ("ragged logits", [[1.0, 2.0], [1.0]], [0, 0], {}, TypeError, r"logits: expected a numeric array"),
    ("negative z_loss", X, Y, {"z_loss": -1e-4}, ValueError, r"z_loss: expected a finite number >= 0"),
    ("zero softcap", X, Y, {"softcap": 0.0}, ValueError, r"softcap: expected a finite number > 0, got 0.0"),
    ("negative softcap", X, Y, {"softcap": -30.0}, ValueError, r"softcap: expected a finite number > 0"),
    ("zero temperature", X, Y, {"temperature": 0.0}, ValueError, r"temperature: expected a finite number > 0"),
    ("inf temperature", X, Y, {"temperature": np.inf}, ValueError, r"temperature: expected a finite number > 0"),
    ("ignore_index float", X, Y, {"ignore_index": 1.5}, TypeError, r"ignore_index: expected an int"),
    ("no classes", np.zeros((2, 0)), [0, 0], {}, ValueError, r"logits: expected at least one class"),
    ("all -inf row not ignored", [[-np.inf, -np.inf, -np.inf], [0.0, 0, 0]], Y, {}, ValueError, r"row of all -inf at row 0"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("logits", "target", "kwargs", "error", "match"),
    [case[1:] for case in CE_CASES],
    ids=[case[0] for case in CE_CASES],
)
@pytest.mark.parametrize(
    "fn",
    [crossent.cross_entropy, crossent.cross_entropy_grad, crossent.cross_entropy_with_grad],
    ids=lambda f: f.__name__,
)
def test_cross_entropy_bad_input(fn, logits, target, kwargs, error, match):
    with pytest.raises(error, match=match):
        fn(logits, target, **kwargs)


def test_out_argument_errors():
    with pytest.raises(
        ValueError, match=r"out: expected an array of shape \(2, 3\) and dtype float64"
    ):
        crossent.cross_entropy_grad(X, Y, out=np.empty((2, 3), dtype=np.float32))
    ro = np.empty_like(X)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out: expected a writeable array"):
        crossent.cross_entropy_grad(X, Y, out=ro)
    with pytest.raises(TypeError, match=r"out: expected a numpy\.ndarray"):
        crossent.cross_entropy_grad(X, Y, out=[[0.0] * 3] * 2)


@pytest.mark.parametrize("fn", [crossent.softmax, crossent.log_softmax, crossent.logsumexp])
def test_softmax_family_bad_input(fn):
    with pytest.raises(ValueError, match="NaN"):
        fn([1.0, np.nan])
    with pytest.raises(ValueError, match=r"\+inf"):
        fn([1.0, np.inf])
    with pytest.raises(ValueError, match="at least 1 dimension"):
        fn(1.0)
    with pytest.raises(TypeError, match="real numeric"):
        fn(["x"])
    with pytest.raises(ValueError, match="axis: expected an int in"):
        fn([1.0, 2.0], axis=1)
    with pytest.raises(ValueError, match=r"x: expected at least one value along axis -1, got 0"):
        fn(np.zeros((3, 0)))
    with pytest.raises(ValueError, match=r"x: expected at least one value along axis 0, got 0"):
        fn([], axis=0)
    if fn is not crossent.logsumexp:
        with pytest.raises(ValueError, match="temperature"):
            fn([1.0, 2.0], temperature=-1.0)


def test_bce_bad_input():
    bce = crossent.binary_cross_entropy_with_logits
    with pytest.raises(ValueError, match=r"target: expected the logits' shape \(2,\), got \(3,\)"):
        bce([0.0, 1.0], [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"target: expected values in \[0, 1\]"):
        bce([0.0, 1.0], [0.0, 2.0])
    with pytest.raises(ValueError, match="logits: expected finite"):
        bce([np.nan, 1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="pos_weight: expected a shape broadcastable"):
        bce([[0.0, 1.0]], [[0.0, 1.0]], pos_weight=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="weight: expected finite values >= 0"):
        bce([0.0, 1.0], [0.0, 1.0], weight=[-1.0, 1.0])
    with pytest.raises(ValueError, match="reduction"):
        bce([0.0], [0.0], reduction="mean ")


def test_penalty_bad_input():
    with pytest.raises(ValueError, match="strength: expected a finite number >= 0"):
        crossent.l2_penalty([1.0], -1.0)
    with pytest.raises(ValueError, match=r"l1_ratio: expected a number in \[0, 1\]"):
        crossent.elastic_net_penalty([1.0], 1.0, 2.0)
    with pytest.raises(
        ValueError, match=r"penalty: expected one of 'l2', 'l1', 'elasticnet' or None"
    ):
        crossent.penalty([1.0], "l3")
    with pytest.raises(ValueError, match="w: expected finite"):
        crossent.l1_penalty([np.nan], 1.0)
    with pytest.raises(ValueError, match=r"W, b, X: expected shapes"):
        crossent.regularized_objective(np.zeros((3, 2)), np.zeros(2), np.zeros((4, 2)), [0] * 4)


MASKED = np.ma.masked_array(X, mask=[[False, True, False], [False, False, False]])


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: crossent.cross_entropy(MASKED, Y), "logits"),
        (lambda: crossent.cross_entropy_grad(MASKED, Y), "logits"),
        (lambda: crossent.cross_entropy_with_grad(MASKED, Y), "logits"),
        (lambda: crossent.cross_entropy(X, np.ma.masked_array(Y, [True, False])), "target"),
        (lambda: crossent.cross_entropy(X, Y, weight=np.ma.masked_array([1.0] * 3)), "weight"),
        (lambda: crossent.softmax(MASKED), "x"),
        (lambda: crossent.log_softmax(MASKED), "x"),
        (lambda: crossent.logsumexp(MASKED), "x"),
        (lambda: crossent.binary_cross_entropy_with_logits(MASKED, np.zeros((2, 3))), "logits"),
        (lambda: crossent.binary_cross_entropy_with_logits(X, np.ma.zeros((2, 3))), "target"),
        (lambda: crossent.l2_penalty(MASKED, 1.0), "w"),
    ],
)
def test_a_masked_array_is_refused_not_read_without_its_mask(call, name):
    with pytest.raises(
        TypeError,
        match=rf"^{name}: expected a plain array, got a numpy masked array \(its mask would be "
        r"ignored\); select the entries you mean, or fill them with np\.ma\.filled",
    ):
        call()

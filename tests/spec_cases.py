"""One table of bad inputs, run through every entry point of the loss (see test_spec_errors.py).

Each case gives the logits in PyTorch's layout (class dimension 1), the target and the
options; the runners turn them into calls of ``crossent.cross_entropy`` (``axis=1``),
``crossent.torch.cross_entropy``, ``crossent.torch.linear_cross_entropy`` (input = the logits
with the classes last, head = the identity, so that the logits are exactly the same) and the
Triton host path. Every entry point must raise the same exception with the same message (the
linear function names its class weights ``class_weight``).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

X = np.array([[1.0, 2.0, 3.0], [0.0, 0.5, -1.0]])
Y = np.array([0, 2])
X3 = np.arange(12.0).reshape(2, 3, 2) / 10  # (N, C, d): PyTorch's K-dimensional layout
W = np.array([1.0, 2.0, 0.5])
INF = np.inf
Q3 = np.full((2, 3, 2), 0.5) * [[[1], [1], [0]]]  # sums 1 along the class axis...
Q3[1, :, 1] = 0.25  # ...but at (1, 1)

# (id, logits, target, options, exception, message regex, runs on the Triton host path)
CASES = [
    # options
    ("smoothing > 1", X, Y, {"label_smoothing": 1.5}, ValueError, r"^label_smoothing: expected a number in \[0, 1\], got 1.5$", True),
    ("smoothing < 0", X, Y, {"label_smoothing": -0.1}, ValueError, r"^label_smoothing: expected a number in \[0, 1\], got -0.1$", True),
    ("smoothing nan", X, Y, {"label_smoothing": float("nan")}, ValueError, r"^label_smoothing: expected a number in \[0, 1\], got nan$", True),
    ("smoothing a string", X, Y, {"label_smoothing": "0.1"}, TypeError, r"^label_smoothing: expected a real number, got '0.1'$", True),
    ("unknown reduction", X, Y, {"reduction": "avg"}, ValueError, r"^reduction: expected one of 'mean', 'sum', 'none', got 'avg'$", True),
    ("reduction None", X, Y, {"reduction": None}, ValueError, r"^reduction: expected one of .*got None$", True),
    ("negative z_loss", X, Y, {"z_loss": -1e-4}, ValueError, r"^z_loss: expected a finite number >= 0, got -0.0001$", True),
    ("inf z_loss", X, Y, {"z_loss": INF}, ValueError, r"^z_loss: expected a finite number >= 0, got inf$", True),
    ("nan z_loss", X, Y, {"z_loss": float("nan")}, ValueError, r"^z_loss: expected a finite number >= 0, got nan$", True),
    ("zero softcap", X, Y, {"softcap": 0.0}, ValueError, r"^softcap: expected a finite number > 0, got 0.0$", True),
    ("negative softcap", X, Y, {"softcap": -30.0}, ValueError, r"^softcap: expected a finite number > 0, got -30.0$", True),
    ("inf softcap", X, Y, {"softcap": INF}, ValueError, r"^softcap: expected a finite number > 0, got inf$", True),
    ("zero temperature", X, Y, {"temperature": 0.0}, ValueError, r"^temperature: expected a finite number > 0, got 0.0$", True),
    ("inf temperature", X, Y, {"temperature": INF}, ValueError, r"^temperature: expected a finite number > 0, got inf$", True),
    ("temperature a string", X, Y, {"temperature": "1"}, TypeError, r"^temperature: expected a real number, got '1'$", True),
    ("ignore_index float", X, Y, {"ignore_index": 1.5}, TypeError, r"^ignore_index: expected an int, got 1.5$", True),
    ("ignore_index bool", X, Y, {"ignore_index": True}, TypeError, r"^ignore_index: expected an int, got True$", True),
    ("negative num_items", X, Y, {"num_items": -1}, ValueError, r"^num_items: expected a finite number >= 0 .*got -1$", True),
    ("num_items a string", X, Y, {"num_items": "3"}, TypeError, r"^num_items: expected a real number or None, got '3'$", True),
    ("num_items with 'sum'", X, Y, {"num_items": 4, "reduction": "sum"}, ValueError, r"^num_items: expected None with reduction='sum'", True),
    ("num_items 0 with targets", X, Y, {"num_items": 0}, ValueError, r"^num_items: expected a number > 0 when this batch has non-ignored targets \(target weight 2.0\), got 0.0$", True),
    ("num_items a 2-element array", X, Y, {"num_items": np.array([2.0, 2.0])}, TypeError, r"^num_items: expected a real number or None, got array of shape \(2,\)", False),
    ("num_items, weights and z_loss", X, Y, {"num_items": 4, "weight": W, "z_loss": 1e-4}, ValueError, r"^num_items: not supported with class weights and z_loss together", True),
    # targets
    ("label out of range", X, [0, 3], {}, ValueError, r"^target: expected class indices in \[0, 2\] or ignore_index=-100, got 3 at position \(1,\)$", True),
    ("negative label", X, [-1, 0], {}, ValueError, r"^target: expected class indices in \[0, 2\] or ignore_index=-100, got -1 at position \(0,\)$", True),
    ("label out of range, other ignore_index", X, [0, -100], {"ignore_index": 7}, ValueError, r"got -100 at position \(1,\)$", True),
    ("uint64 label 2**63", X, np.array([2**63, 0], dtype=np.uint64), {}, ValueError, r"got 9223372036854775808 at position \(0,\)$", False),
    ("label out of range, K-dim: the user's position", X3, [[0, 1], [2, 5]], {}, ValueError, r"got 5 at position \(1, 1\)$", True),
    ("float labels", X, [0.0, 2.0], {}, TypeError, r"^target: expected integer class indices of shape \(2,\) or float probabilities of shape \(2, 3\), got float labels \(dtype float64\) of shape \(2,\)", True),
    ("target of the wrong shape", X, [0, 1, 2], {}, ValueError, r"^target: expected .* got dtype int64 and shape \(3,\)$", True),
    ("bool target", X, [True, False], {}, ValueError, r"got dtype bool and shape \(2,\)$", True),
    ("probabilities of the wrong shape", X, [[0.5, 0.5], [0.5, 0.5]], {}, ValueError, r"got dtype float64 and shape \(2, 2\)$", True),
    ("negative probabilities", X, [[2.0, -1.0, 0.0], [0, 0, 1.0]], {}, ValueError, r"^target: expected probabilities >= 0, got minimum -1.0$", True),
    ("probabilities not summing to 1", X, [[0.5, 0.4, 0.0], [0, 0, 1.0]], {}, ValueError, r"^target: expected probabilities summing to 1 along axis 1 \(tolerance 1.0e-06\), got a sum of 0.9 at position \(0,\)$", True),
    ("probabilities not summing to 1, K-dim", X3, Q3, {}, ValueError, r"got a sum of 0.75 at position \(1, 1\)$", True),
    ("nan probabilities", X, [[np.nan, 1.0, 0.0], [0, 0, 1.0]], {}, ValueError, r"^target: expected finite probabilities, got NaN or inf$", True),
    # class weights
    ("weight of the wrong shape", X, Y, {"weight": np.array([1.0, 2.0])}, ValueError, r"^weight: expected shape \(3,\) \(one per class\), got \(2,\)$", True),
    ("negative weight", X, Y, {"weight": np.array([1.0, -2.0, 1.0])}, ValueError, r"^weight: expected values >= 0 \(negative class weights are not supported\), got minimum -2.0$", True),
    ("nan weight", X, Y, {"weight": np.array([1.0, np.nan, 1.0])}, ValueError, r"^weight: expected finite values, got NaN or inf$", True),
    # logits (checked by the CPU engine)
    ("nan logits", [[np.nan, 1.0, 0.0], [0.0, 0.0, 0.0]], Y, {}, ValueError, r"^logits: expected finite values or -inf \(masked\), got NaN$", False),
    ("+inf logits", [[INF, 1.0, 0.0], [0.0, 0.0, 0.0]], Y, {}, ValueError, r"^logits: expected finite values or -inf \(masked\), got \+inf$", False),
]  # fmt: skip

IDS = [case[0] for case in CASES]


def expect(case, call, rename=lambda msg: msg):
    """Run ``call`` and check the exception against the case; return its message
    (``rename``: the entry point's own argument names mapped to the table's)."""
    _, _, _, _, exc, pattern, _ = case
    with pytest.raises(exc) as info:
        call()
    msg = rename(str(info.value))
    assert re.search(pattern, msg), f"{msg!r} does not match {pattern!r}"
    return msg


def numpy_call(case):
    import crossent

    _, x, y, kw, *_ = case
    return lambda: crossent.cross_entropy(np.asarray(x), np.asarray(y), axis=1, **kw)


def _torch_args(x, y, kw):
    import torch

    kw = dict(kw)
    if isinstance(kw.get("weight"), np.ndarray):
        kw["weight"] = torch.from_numpy(kw["weight"])
    return torch.from_numpy(np.asarray(x, dtype=np.float64)), torch.from_numpy(np.asarray(y)), kw


def torch_call(case):
    import crossent.torch

    _, x, y, kw, *_ = case
    xt, yt, kw = _torch_args(x, y, kw)
    return lambda: crossent.torch.cross_entropy(xt, yt, **kw)


def linear_call(case):
    import torch

    import crossent.torch

    _, x, y, kw, *_ = case
    xt, yt, kw = _torch_args(x, y, kw)
    if "weight" in kw:
        kw["class_weight"] = kw.pop("weight")
    h = xt.movedim(1, -1)  # (..., C): the head below is the identity
    if yt.is_floating_point() and yt.ndim > 1:
        yt = yt.movedim(1, -1)
    head = torch.eye(xt.shape[1], dtype=xt.dtype)
    return lambda: crossent.torch.linear_cross_entropy(h, head, yt, **kw)

"""The same bad input gets the same error, word for word, through every entry point.

The table is in spec_cases.py (the Triton host path runs it in test_torch_triton.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from spec_cases import CASES, IDS, expect, linear_call, numpy_call, torch_call

pytest.importorskip("torch")


def linear_message(msg: str) -> str:
    """The linear function's own names: its class weights are ``class_weight``, its classes
    are the last axis (axis 2 for the K-dimensional cases)."""
    return msg.replace("class_weight:", "weight:").replace("along axis 2", "along axis 1")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_entry_point_gives_the_same_message(case):
    want = expect(case, numpy_call(case))
    assert expect(case, torch_call(case)) == want
    if case[0] != "+inf logits":  # not a product of finite hidden states and weights
        assert expect(case, linear_call(case), linear_message) == want


def test_the_table_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize("num_items", [1, 0.5, 2, 7.0, "tensor", "tensor1", "array1"])
def test_num_items_below_the_batch_count_divides_the_sum(num_items):
    """Any ``num_items > 0`` divides the summed loss, also one below this batch's own count
    (transformers' Trainer divides its count by the tensor-parallel size), through every entry
    point, given as a number, a 0-d tensor or a one-element tensor or array (issue 23)."""
    import torch

    import crossent
    import crossent.torch

    x = np.array([[1.0, 2.0, 3.0], [0.0, 0.5, -1.0], [2.0, -1.0, 0.0]])
    y = np.array([0, 2, 1])
    k = {"tensor": torch.tensor(1.5), "tensor1": torch.tensor([1.5]),
         "array1": np.array([1.5])}.get(num_items, num_items)  # fmt: skip
    want = crossent.cross_entropy(x, y, reduction="sum") / float(np.asarray(k).item())
    xt, yt = torch.from_numpy(x).requires_grad_(), torch.from_numpy(y)
    got = [
        crossent.cross_entropy(x, y, num_items=k),
        crossent.torch.cross_entropy(xt, yt, num_items=k),
        crossent.torch.linear_cross_entropy(xt, torch.eye(3, dtype=torch.float64), yt, num_items=k),
    ]
    for g in got:
        np.testing.assert_allclose(
            float(np.asarray(g.detach() if hasattr(g, "detach") else g)), want, rtol=1e-12
        )
    (grad,) = torch.autograd.grad(got[1], xt)
    (ref,) = torch.autograd.grad(crossent.torch.cross_entropy(xt, yt, reduction="sum"), xt)
    torch.testing.assert_close(grad, ref / float(np.asarray(k).item()), rtol=1e-12, atol=0)

"""The same bad input gets the same error, word for word, through every entry point.

The table is in spec_cases.py (the Triton host path runs it in test_torch_triton.py).
"""

from __future__ import annotations

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

"""Run the autograd Functions eagerly under ``torch.compile`` without importing dynamo early.

The CPU path runs NumPy, which dynamo cannot trace; the Functions are therefore called through
``torch._dynamo.disable`` (a graph break) when dynamo is loaded. ``torch.compile`` imports
``torch._dynamo`` before it traces anything, so as long as it is not loaded nobody is compiling,
and eager users never pay for importing it (nor triton, which it imports).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any


def eager_under_compile(fn: Callable[..., Any]) -> Callable[..., Any]:
    disabled: list[Callable[..., Any]] = []

    @functools.wraps(fn)
    def inner(*args: Any) -> Any:
        dynamo = sys.modules.get("torch._dynamo")
        if dynamo is None:
            return fn(*args)
        if not disabled:
            disabled.append(dynamo.disable(fn, recursive=True))
        return disabled[0](*args)

    return inner

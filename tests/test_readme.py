"""The README's Python examples run and print what it says."""

from __future__ import annotations

import doctest
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples():
    result = doctest.testfile(
        str(README),
        module_relative=False,
        optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS,
    )
    assert result.attempted >= 5
    assert result.failed == 0


def test_readme_gives_the_two_commands_near_the_top():
    head = README.read_text(encoding="utf-8")[:1500]
    assert 'pip install ".[cli]" && crossent train' in head
    assert "bash .ci/run" in head

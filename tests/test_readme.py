"""The README's Python examples run and print what it says."""

from __future__ import annotations

import doctest
import re
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


def test_readme_is_the_front_door_to_the_docs():
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)", text)
    for target in ("docs/index.md", "docs/tutorial.md", "docs/zh/tutorial.md", "docs/api.md"):
        assert target in links
    for target in links:
        assert (README.parent / target).is_file(), target
    # the pitch, two commands, a tour, the language-model short forms, links
    assert len(text.splitlines()) <= 100

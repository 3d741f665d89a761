"""Collect doctests only from modules whose optional dependencies are installed."""

from __future__ import annotations

import importlib.util

collect_ignore_glob: list[str] = []
if importlib.util.find_spec("torch") is None:
    collect_ignore_glob.append("src/crossent/torch/*")
if importlib.util.find_spec("triton") is None:
    collect_ignore_glob.append("src/crossent/torch/_triton*")

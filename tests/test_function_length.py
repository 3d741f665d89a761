"""No function in crossent runs over 60 lines of code (issue 18's rule for the house).

A line of code is a line that is not blank, not a comment and not part of the docstring; the
signature counts, and so do the lines of the functions nested inside (a closure does not make a
long function short). Data tables and text templates are module-level constants, not functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import crossent

SRC = Path(crossent.__file__).parent
LIMIT = 60


def lines_of_code(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> int:
    skip: set[int] = set()
    first = node.body[0]
    doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    if doc and isinstance(first.value.value, str):  # type: ignore[attr-defined]
        skip = set(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return sum(
        1
        for i in range(start, (node.end_lineno or node.lineno) + 1)
        if i not in skip and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#")
    )


def long_functions(root: Path = SRC) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = lines_of_code(node, lines)
                if n > LIMIT:
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}: {n} lines")
    return found


def test_no_function_runs_over_60_lines_of_code():
    assert long_functions() == []


def test_the_count_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}  # a comment" for i in range(LIMIT))
    (tmp_path / "m.py").write_text(f'def f():\n    """Doc.\n\n    More."""\n\n{body}\n')
    assert long_functions(tmp_path) == [f"m.py:1 f: {LIMIT + 1} lines"]
    (tmp_path / "m.py").write_text(f"def f():\n{body}\n".replace("    x0 = 0", "    # x0"))
    assert long_functions(tmp_path) == []

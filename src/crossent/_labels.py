"""Class labels as the loaders read them: integers or names, never two classes merged into one
and never a feature taken for the labels.

A CSV label column is read from its text, so ``9007199254740993`` stays itself (float64 would
round it onto its neighbour), and two spellings of one number (``7``, ``07``) are refused rather
than merged. An NPZ or IDX label array is checked the same way where it holds floats.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from crossent._tabular import CsvTable, _number

__all__ = ["check_labels", "csv_labels"]

# a float64 holds every integer up to 2**53 exactly; beyond, two labels may become one
_EXACT_INT = 2**53


def check_labels(y: Any, where: str) -> NDArray[Any]:
    """Class labels (N,): integers or strings; integral floats become integers, others are
    refused (a column of measurements is not a column of classes), and so are integral floats
    beyond 2**53, which float64 cannot hold exactly (two classes may already be one)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{where}: expected labels of shape (N,), got shape {y.shape}")
    if y.dtype.kind == "f":
        finite = np.isfinite(y)
        if not finite.all() or not np.array_equal(y, np.round(y)):
            bad = y[~finite] if not finite.all() else y[y != np.round(y)]
            raise ValueError(
                f"{where}: expected class labels (integers or names), got the "
                f"number {bad[0].item()!r}; is this the label column?"
            )
        if y.size and np.abs(y).max() > _EXACT_INT:
            raise ValueError(
                f"{where}: expected class labels (integers or names), got the number "
                f"{y[np.abs(y) > _EXACT_INT][0].item():.17g}, which float64 cannot hold "
                "exactly; store the labels as integers or names"
            )
        return y.astype(np.int64)
    if y.dtype.kind == "b":
        return y.astype(np.int64)
    if y.dtype.kind not in "iuU":
        raise ValueError(f"{where}: expected integer or string labels, got dtype {y.dtype}")
    return y


_MISSING = {"na", "n/a", "nan", "null", "none", "?", "-", "#n/a", "missing"}


def _int_spelling(cell: str) -> int | None:
    digits = cell[1:] if cell[:1] in "+-" else cell
    return int(cell) if digits.isascii() and digits.isdigit() else None


def csv_labels(table: CsvTable, col: int, *, implicit: bool = False) -> NDArray[Any]:
    """The label column: integers if every label is an integer (``3`` or ``3.0``), else
    strings, read from the text as written (never through float64 when written as integers).
    Refused, naming the line: an empty label, a missing-value marker among numbers, a number
    float64 cannot hold exactly; naming the spellings: one class written two ways (``7``,
    ``07``). ``implicit``: the column was not named (the last one), so a column that looks like
    a feature is refused rather than taken as classes."""
    cells = table.text(col)
    what = f"{table.path}, {table.column_name(col)}"
    empty = np.flatnonzero(np.char.str_len(cells) == 0)
    if empty.size:
        raise ValueError(
            f"{table.where(int(empty[0]), col)}: expected a class label, got an empty field"
        )
    spellings = np.unique(cells)
    numbers = {c: _number(c) for c in spellings.tolist()}
    missing = [c for c in numbers if c.lower() in _MISSING]
    if missing and any(v is not None for v in numbers.values()):  # "NA" among numbers
        i = int(np.isin(cells, missing).argmax())  # the first such row
        raise ValueError(
            f"{table.where(i, col)}: expected a class label, got {str(cells[i])!r} (a missing "
            "value); fill it in or remove the row"
        )
    if any(v is None for v in numbers.values()):
        return cells  # names
    floats = {c: v for c, v in numbers.items() if _int_spelling(c) is None}  # "3.0", "1e20"
    inexact = {c for c, v in floats.items() if v is None or not math.isfinite(v) or v != round(v)}
    too_big = {c for c, v in floats.items() if c not in inexact and abs(v or 0) > _EXACT_INT}
    for bad in (inexact, too_big):
        if bad:  # the first such row, in the file's order
            i = int(np.isin(cells, list(bad)).argmax())
            c = str(cells[i])
            if bad is inexact:
                check_labels(np.array([numbers[c]]), what)  # the one message for a non-integer
            raise ValueError(
                f"{table.where(i, col)}: expected a class label written as an integer or a "
                f"name, got {c!r}, which float64 cannot hold exactly"
            )
    classes: dict[int, list[str]] = {}
    for c in spellings.tolist():
        k = _int_spelling(c)
        classes.setdefault(int(numbers[c]) if k is None else k, []).append(c)  # type: ignore[arg-type]
    for k, written in classes.items():
        if len(written) > 1:
            listed = ", ".join(map(repr, written[:-1])) + f" and {written[-1]!r}"
            raise ValueError(
                f"{what}: labels {listed} are one class ({k}) written differently; write each "
                "class one way"
            )
    lookup = {c: k for k, written in classes.items() for c in written}
    if all(-(2**63) <= k < 2**63 for k in classes):
        labels: NDArray[Any] = np.array([lookup[c] for c in spellings.tolist()], np.int64)
    else:
        labels = np.array([str(lookup[c]) for c in spellings.tolist()])
    y = labels[np.searchsorted(spellings, cells)]
    if implicit:
        _refuse_a_feature(table, col, y)
    return y


def _refuse_a_feature(table: CsvTable, col: int, y: NDArray[Any]) -> None:
    """The last column, taken as the labels because none was named, that looks like a pixel
    or a measurement: most rows in one of three or more values, or a value for almost every
    row."""
    n = len(y)
    values, counts = np.unique(y, return_counts=True)
    k, share = len(values), counts.max() / n
    if n < 10 or not ((k >= 3 and share >= 0.9) or k > n / 2):
        return
    if k > n / 2:
        detail = f"{k} classes in {n} rows"
    else:
        detail = f"{k} classes, {share:.0%} of the rows in one of them ({values[counts.argmax()]})"
    raise ValueError(
        f"{table.path}: the last column (column {col + 1}), taken as the labels, looks like a "
        f"feature: {detail}; name the label column with --label-column (label_column=)"
    )

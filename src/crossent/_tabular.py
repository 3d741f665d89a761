"""Reading the user's own data: a CSV reader that refuses to guess, and the checks every
loader applies to features and labels.

A CSV file is read with the standard library's :mod:`csv` module as UTF-8 (a leading byte-order
mark, as Excel's "CSV UTF-8" writes, is dropped). Whether the first line is a header is decided
from the columns below it; where the file cannot tell (a first line such as ``0,1,2,3,setosa``
that is either pandas' header of column numbers or a data row), the reader stops with a message
that says how to say what is meant (``header=True`` / ``header=False``). Errors name the file,
the line and the column.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["MAX_ABS_FEATURE", "CsvTable", "check_features", "check_labels", "read_csv"]

# |x| above this overflows when squared for a variance over many rows: standardizing (and any
# sum of squares) would turn it into inf, then NaN. Say so, instead of a NaN further on.
MAX_ABS_FEATURE = 1e150


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@dataclass
class CsvTable:
    """The cells of a CSV file (stripped strings), its header if it has one, and the line
    number of each data row."""

    path: str
    header: list[str] | None
    rows: list[list[str]]
    lines: list[int]

    def column_name(self, j: int) -> str:
        name = f", {self.header[j]!r}" if self.header else ""
        return f"column {j + 1}{name}"

    def where(self, i: int, j: int) -> str:
        return f"{self.path}, line {self.lines[i]}, {self.column_name(j)}"

    def column_index(self, column: str | int | None, option: str = "label_column") -> int:
        """The index of ``column``: a header name, an index (negative counts from the end), or
        ``None`` for the column named ``label`` or else the last one."""
        n = len(self.rows[0]) if self.rows else len(self.header or [])
        if column is None:
            return self.header.index("label") if self.header and "label" in self.header else n - 1
        if isinstance(column, str) and not column.lstrip("-").isdigit():
            if self.header is None or column not in self.header:
                got = f"the header {self.header}" if self.header else "a file without a header"
                raise ValueError(
                    f"{option}: expected a column name of {self.path}, got {column!r} and {got}"
                )
            return self.header.index(column)
        k = int(column)
        if not -n <= k < n:
            raise ValueError(
                f"{option}: expected a column index from 0 to {n - 1} (or -{n} to "
                f"-1) for the {n} columns of {self.path}, got {k}"
            )
        return k % n

    def numbers(self, columns: list[int]) -> NDArray[np.float64]:
        """The given columns as finite float64 numbers (N, len(columns))."""
        out = np.empty((len(self.rows), len(columns)), dtype=np.float64)
        for i, row in enumerate(self.rows):
            for k, j in enumerate(columns):
                value = _number(row[j])
                if value is None:
                    hint = ""
                    if all(_number(r[j]) is None for r in self.rows):
                        hint = "; is this the label column? name it with --label-column"
                    raise ValueError(f"{self.where(i, j)}: expected a number, got {row[j]!r}{hint}")
                if not math.isfinite(value) or abs(value) > MAX_ABS_FEATURE:
                    raise ValueError(f"{self.where(i, j)}: {_bad_number(value, row[j])}")
                out[i, k] = value
        return out


def _bad_number(value: float, text: str, use: str = "to standardize the column") -> str:
    if math.isnan(value):
        return f"expected a number, got {text!r} (a missing value)"
    if math.isinf(value):
        return f"expected a finite number, got {text!r}"
    return (
        f"expected a number of magnitude at most {MAX_ABS_FEATURE:.0e}, got {value:.3g}, which "
        f"overflows when squared {use}; rescale this column"
    )


def read_csv(
    path: str | os.PathLike[str], *, header: bool | None = None, names: Any = ()
) -> CsvTable:
    """Read a comma-separated file: ``header`` True/False, or ``None`` to decide from the
    columns (``names``: column names that, found on the first line, make it a header)."""
    where = str(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            rows, lines = [], []
            for row in reader:
                cells = [c.strip() for c in row]
                if any(cells):  # blank lines are skipped
                    rows.append(cells)
                    lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{where}: expected a UTF-8 text file, got bytes that are not ({exc.reason} "
            f"at byte {exc.start}); save it as CSV UTF-8"
        ) from None
    except csv.Error as exc:
        raise ValueError(f"{where}: expected a CSV file, got {exc}") from None
    if not rows:
        raise ValueError(f"{where}: expected a CSV file with rows, got an empty file")
    width = len(rows[0])
    if width == 1 and any(sep in rows[0][0] for sep in ";\t|"):
        sep = next(s for s in ";\t|" if s in rows[0][0])
        raise ValueError(
            f"{where}, line {lines[0]}: expected comma-separated values, got one "
            f"column separated by {sep!r}; save the file with commas"
        )
    for row, line in zip(rows, lines, strict=True):
        if len(row) != width:
            raise ValueError(f"{where}, line {line}: expected {width} columns, got {len(row)}")
    if header is None:
        header = _has_header(rows, lines, where, set(names))
    if header:
        if len(rows) == 1:
            raise ValueError(f"{where}: expected data rows below the header, got none")
        return CsvTable(where, rows[0], rows[1:], lines[1:])
    return CsvTable(where, None, rows, lines)


def _has_header(rows: list[list[str]], lines: list[int], where: str, names: set[str]) -> bool:
    first, rest = rows[0], rows[1:]
    if names & set(first) or "label" in first:
        return True
    numeric_first = [_number(v) is not None for v in first]
    if not rest:
        if all(numeric_first):
            return False
        raise ValueError(f"{where}: expected data rows, got only the line {','.join(first)[:60]!r}")
    numeric_col = [all(_number(r[j]) is not None for r in rest) for j in range(len(first))]
    if any(col and not num for col, num in zip(numeric_col, numeric_first, strict=True)):
        return True  # text above a column of numbers: a header
    n = len(first)
    count_up = n > 1 and first in ([str(j) for j in range(n)], [str(j) for j in range(1, n + 1)])
    # text in a text column: data if the same value appears again below, as a class does
    once = [j for j in range(n) if not numeric_first[j] and all(r[j] != first[j] for r in rest)]
    if count_up or once:
        why = (
            "its fields count the columns"
            if count_up
            else f"{first[once[0]]!r} appears nowhere else in column {once[0] + 1}"
        )
        raise ValueError(
            f"{where}: cannot tell whether line {lines[0]} ({','.join(first)!r}) is a header or "
            f"data ({why}); pass --header yes or --header no"
        )
    return False


def check_features(
    X: Any, where: str, *, use: str = "to standardize the column"
) -> NDArray[np.float64]:
    """``X`` as float64 (N, D) with N, D >= 1, every value finite and not too large (``use``
    says where a larger one would overflow)."""
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{where}: expected numeric features, got dtype {X.dtype}")
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(
            f"{where}: expected features of shape (N, D) with N, D >= 1, got shape {X.shape}"
        )
    X = X.astype(np.float64)
    bad = ~np.isfinite(X) | (np.abs(X) > MAX_ABS_FEATURE)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        raise ValueError(f"{where}, row {i}, column {j}: {_bad_number(X[i, j], str(X[i, j]), use)}")
    return X


def check_labels(y: Any, where: str) -> NDArray[Any]:
    """Class labels (N,): integers or strings; integral floats become integers, others are
    refused (a column of measurements is not a column of classes)."""
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
        return y.astype(np.int64)
    if y.dtype.kind == "b":
        return y.astype(np.int64)
    if y.dtype.kind not in "iuU":
        raise ValueError(f"{where}: expected integer or string labels, got dtype {y.dtype}")
    return y


def csv_labels(table: CsvTable, col: int) -> NDArray[Any]:
    """The label column: integers if every label is an integer (``3`` or ``3.0``), else
    strings; an empty label or a decimal number is an error naming its line."""
    labels = [row[col] for row in table.rows]
    for i, v in enumerate(labels):
        if not v:
            raise ValueError(f"{table.where(i, col)}: expected a class label, got an empty field")
    values = [_number(v) for v in labels]
    if any(v is None for v in values):
        return np.asarray(labels)
    return check_labels(
        np.asarray(values, dtype=np.float64), f"{table.path}, {table.column_name(col)}"
    )

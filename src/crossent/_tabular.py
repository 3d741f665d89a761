"""Reading the user's own data: a CSV reader that refuses to guess, and the checks every
loader applies to features and labels.

A CSV file is read as UTF-8 (a leading byte-order mark, as Excel's "CSV UTF-8" writes, is
dropped). Whether the first line is a header is decided from the columns below it; where the
file cannot tell (a first line such as ``0,1,2,3,setosa`` that is either pandas' header of
column numbers or a data row), the reader stops with a message that says how to say what is
meant (``header=True`` / ``header=False``). Errors name the file, the line and the column.

Two readers fill the same :class:`CsvTable`: NumPy's C parser (``numpy.loadtxt``) for the
well-formed file, and the standard library's :mod:`csv` module for everything it refuses (blank
lines with spaces, ragged rows, cells that are not numbers). The second is the reference: it
reads what the first reads, cell for cell, and it is the one that finds the line of an error.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from crossent._files import open_regular

__all__ = ["MAX_ABS_FEATURE", "CsvTable", "check_features", "read_csv"]

# |x| above this overflows when squared for a variance over many rows: standardizing (and any
# sum of squares) would turn it into inf, then NaN. Say so, instead of a NaN further on.
MAX_ABS_FEATURE = 1e150
Progress = Callable[[int, int], Any]  # (bytes read, bytes in all)
_CHUNK = 1 << 16  # rows the C parser reads at a time


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@dataclass
class CsvTable:
    """The data rows of a CSV file, by column: ``values`` (N, len(numeric)) holds the columns
    whose every cell is a number; any column's cells are there as text (:meth:`text`), and the
    line of each row (:meth:`line`)."""

    path: str
    header: list[str] | None
    width: int
    n_rows: int
    numeric: list[int]
    values: NDArray[np.float64]
    _texts: dict[int, NDArray[np.str_]]
    _read_text: Callable[[int], NDArray[np.str_]] = field(repr=False)
    _read_lines: Callable[[], NDArray[np.int64]] = field(repr=False)
    _lines: NDArray[np.int64] | None = field(default=None, repr=False)

    def text(self, j: int) -> NDArray[np.str_]:
        """Column ``j``'s cells as written (stripped)."""
        if j not in self._texts:
            self._texts[j] = self._read_text(j)
        return self._texts[j]

    def line(self, i: int) -> int:
        if self._lines is None:
            self._lines = self._read_lines()
        return int(self._lines[i])

    def column_name(self, j: int) -> str:
        name = f", {self.header[j]!r}" if self.header else ""
        return f"column {j + 1}{name}"

    def where(self, i: int, j: int) -> str:
        return f"{self.path}, line {self.line(i)}, {self.column_name(j)}"

    def column_index(self, column: str | int | None, option: str = "label_column") -> int:
        """The index of ``column``: a header name, an index (negative counts from the end), or
        ``None`` for the column named ``label`` or else the last one."""
        n = self.width
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
        for j in columns:
            if j not in self.numeric:
                cells = self.text(j).tolist()
                i = next(i for i, c in enumerate(cells) if _number(c) is None)
                hint = ""
                if all(_number(c) is None for c in cells):
                    hint = "; is this the label column? name it with --label-column"
                raise ValueError(f"{self.where(i, j)}: expected a number, got {cells[i]!r}{hint}")
        ks = [self.numeric.index(j) for j in columns]
        contiguous = ks == list(range(ks[0], ks[0] + len(ks))) if ks else False
        out = self.values[:, ks[0] : ks[0] + len(ks)] if contiguous else self.values[:, ks]
        # two reductions, no temporaries; a NaN fails both comparisons
        if out.size and not (out.min() >= -MAX_ABS_FEATURE and out.max() <= MAX_ABS_FEATURE):
            bad = ~np.isfinite(out) | (np.abs(out) > MAX_ABS_FEATURE)
            i, k = (int(v) for v in np.argwhere(bad)[0])
            j = columns[k]
            raise ValueError(f"{self.where(i, j)}: {_bad_number(out[i, k], str(self.text(j)[i]))}")
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


# ---- the two readers -------------------------------------------------------------------------
def _open(path: str | os.PathLike[str]) -> Any:
    """The file as text, if it is a regular file: a FIFO or /dev/zero is refused unopened."""
    return open_regular(path, "r", encoding="utf-8-sig")


def _csv_rows(path: str | os.PathLike[str], where: str) -> Iterator[tuple[list[str], int]]:
    """(stripped cells, line number) of each row that is not blank, by the csv module."""
    try:
        with _open(path) as fh:
            reader = csv.reader(fh)
            for row in reader:
                cells = [c.strip() for c in row]
                if any(cells):  # blank lines are skipped
                    yield cells, reader.line_num
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{where}: expected a UTF-8 text file, got bytes that are not ({exc.reason} "
            f"at byte {exc.start}); save it as CSV UTF-8"
        ) from None
    except csv.Error as exc:
        raise ValueError(f"{where}: expected a CSV file, got {exc}") from None


def _table_of_rows(where: str, width: int, rows: list[list[str]], lines: list[int]) -> CsvTable:
    """The reference reader's table: columns made of the csv module's cells."""
    texts = {j: np.array([r[j] for r in rows], dtype=str) for j in range(width)}
    numeric, columns = [], []
    for j in range(width):
        column = [_number(r[j]) for r in rows]
        if all(v is not None for v in column):
            numeric.append(j)
            columns.append(np.array(column, dtype=np.float64))
    values = np.stack(columns, axis=1) if columns else np.empty((len(rows), 0))
    line_numbers = np.array(lines, dtype=np.int64)
    return CsvTable(
        where, None, width, len(rows), numeric, values, texts, texts.__getitem__,
        lambda: line_numbers,
    )  # fmt: skip


def _strip(cells: NDArray[np.str_]) -> NDArray[np.str_]:
    """Cells without surrounding spaces, as narrow a string dtype as the csv module's."""
    out = np.char.strip(cells)
    width = int(np.char.str_len(out).max(initial=1))
    return out.astype(f"<U{max(width, 1)}")


class _FastReadError(Exception):
    """The C parser refused the file: the reference reader reads it (and finds the error)."""


def _count_lines(path: str | os.PathLike[str]) -> int:
    """At least the number of lines of the file (one more than its newlines)."""
    with open_regular(path, "rb") as fh:
        return 1 + sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 24), b""))


def _load_numbers(
    rows: Iterator[str], n_lines: int, numeric: list[int], dtype: Any
) -> NDArray[np.float64]:
    """The ``numeric`` columns of ``rows`` (at most ``n_lines``), parsed ``_CHUNK`` rows at a
    time into one float64 array: the peak is the result and one chunk, not the result twice."""
    out = np.empty((n_lines, len(numeric)))
    filled = 0
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a blank line; no data left
            chunk = np.loadtxt(
                rows, delimiter=",", comments=None, quotechar='"', usecols=numeric,
                dtype=dtype, ndmin=2, max_rows=_CHUNK,
            )  # fmt: skip
        out[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
        if len(chunk) < _CHUNK:
            return out[:filled]


def _fast_table(
    path: str | os.PathLike[str],
    where: str,
    skip: int,
    numeric: list[int],
    text: list[int],
    progress: Progress | None,
) -> CsvTable:
    """The columns of the lines after the first ``skip`` by ``numpy.loadtxt``: ``numeric``
    parsed as numbers (integers first: about 4x faster than floats, then exact in float64 up
    to 2**53), ``text`` as strings. Raises :class:`_FastReadError` for anything it cannot read
    exactly as the csv module would."""
    total = os.path.getsize(path)

    def lines(report: bool) -> Iterator[str]:
        with _open(path) as fh:
            raw = fh.buffer
            for k, line in enumerate(fh):
                if k < skip:
                    continue
                if report and progress is not None and not k & 0x3FFF:
                    progress(raw.tell(), total)
                yield line
        if report and progress is not None:
            progress(total, total)

    def load(cols: list[int], dtype: Any, report: bool = False) -> NDArray[Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input line contained no data": a blank line
            arr = np.loadtxt(
                lines(report), delimiter=",", comments=None, quotechar='"', usecols=cols,
                dtype=dtype, ndmin=2,
            )  # fmt: skip
        return arr

    def load_numbers(dtype: Any) -> NDArray[np.float64]:
        return _load_numbers(lines(report=True), _count_lines(path), numeric, dtype)

    try:
        values = np.empty((0, 0))
        if numeric:
            try:
                values = load_numbers(np.int64)
            except ValueError:  # a cell that is not an integer: the float parser
                values = load_numbers(np.float64)
        texts = {}
        if text:
            cells = _strip(load(text, str))
            texts = {j: cells[:, k] for k, j in enumerate(text)}
    except (ValueError, UnicodeDecodeError) as exc:
        raise _FastReadError from exc
    n = len(values) if numeric else 0
    if any(len(t) != n for t in texts.values()):
        raise _FastReadError

    def read_text(j: int) -> NDArray[np.str_]:
        return _strip(load([j], str)[:, 0])

    def read_lines() -> NDArray[np.int64]:
        found = [line for _, line in _csv_rows(path, where)]
        return np.array(found[len(found) - n :], dtype=np.int64)

    return CsvTable(where, None, -1, n, numeric, values, texts, read_text, read_lines)


# ---- reading a file --------------------------------------------------------------------------
def read_csv(
    path: str | os.PathLike[str],
    *,
    header: bool | None = None,
    names: Any = (),
    progress: Progress | None = None,
) -> CsvTable:
    """Read a comma-separated file: ``header`` True/False, or ``None`` to decide from the
    columns (``names``: column names that, found on the first line, make it a header).
    ``progress(done, total)`` is called now and then with the bytes read so far."""
    where = str(path)
    head: list[tuple[list[str], int]] = []
    for item in _csv_rows(path, where):
        head.append(item)
        if len(head) == 2:
            break
    if not head:
        raise ValueError(f"{where}: expected a CSV file with rows, got an empty file")
    first, first_line = head[0]
    width = len(first)
    if width == 1 and any(sep in first[0] for sep in ";\t|"):
        sep = next(s for s in ";\t|" if s in first[0])
        raise ValueError(
            f"{where}, line {first_line}: expected comma-separated values, got one "
            f"column separated by {sep!r}; save the file with commas"
        )
    fast, table = None, None
    if len(head) == 2 and len(head[1][0]) == width:
        fast = _try_fast(path, where, first, first_line, head[1][0], header, progress)
    if fast is not None:
        table, has_first = fast
        rest = _drop_first(table) if has_first else table
    else:  # the reference reader, which also finds the line of any error
        rows = list(_csv_rows(path, where))
        for row, line in rows:
            if len(row) != width:
                comma = "; it ends with a comma" if len(row) > width and not row[-1] else ""
                raise ValueError(
                    f"{where}, line {line}: expected {width} columns, got {len(row)}{comma}"
                )
        cells, lines = [r for r, _ in rows], [n for _, n in rows]
        rest, has_first = _table_of_rows(where, width, cells[1:], lines[1:]), True
    if not has_first:  # the C parser skipped a first line of text above numbers: a header
        header = True
    elif header is None:
        header = _has_header(first, first_line, rest, where, set(names))
    if header:
        if rest.n_rows == 0:
            raise ValueError(f"{where}: expected data rows below the header, got none")
        rest.header = first
        _check_names(first, where, first_line)
        table = rest
    elif table is None:
        table = _table_of_rows(where, width, cells, lines)
    _check_no_empty_column(table)
    return table


def _try_fast(
    path: str | os.PathLike[str],
    where: str,
    first: list[str],
    first_line: int,
    second: list[str],
    header: bool | None,
    progress: Progress | None,
) -> tuple[CsvTable, bool] | None:
    """The table by the C parser and whether it holds the first row, or ``None`` where the
    reference reader must read the file. The second row says which columns are numbers; the
    first row is parsed with them when it fits them (it may be data), else skipped (a header:
    text above numbers)."""
    numeric = [j for j, c in enumerate(second) if _number(c) is not None]
    text = [j for j in range(len(second)) if j not in numeric]
    fits = all(_number(first[j]) is not None for j in numeric)
    if not numeric or (not fits and header is False):
        return None
    try:
        table = _fast_table(path, where, 0 if fits else first_line, numeric, text, progress)
    except _FastReadError:
        return None
    table.width = len(first)
    return table, fits


def _drop_first(table: CsvTable) -> CsvTable:
    texts = {j: t[1:] for j, t in table._texts.items()}
    return CsvTable(
        table.path, table.header, table.width, table.n_rows - 1, table.numeric,
        table.values[1:], texts,
        lambda j: table.text(j)[1:],
        lambda: np.array([table.line(i) for i in range(1, table.n_rows)], dtype=np.int64),
    )  # fmt: skip


def _check_names(names: list[str], where: str, line: int) -> None:
    seen: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        seen.setdefault(name, []).append(j + 1)
    for name, cols in seen.items():
        if len(cols) > 1 and name:
            listed = ", ".join(map(str, cols[:-1])) + f" and {cols[-1]}"
            raise ValueError(
                f"{where}, line {line}: expected distinct column names, got {name!r} in "
                f"columns {listed}; rename them"
            )


def _check_no_empty_column(table: CsvTable) -> None:
    for j in range(table.width):
        if j in table.numeric or (table.header and table.header[j]):
            continue
        if not np.char.str_len(table.text(j)).any():
            end = j == table.width - 1
            why = "each line ends with a comma" if end else "two commas in a row on each line"
            fix = "remove the trailing commas" if end else "remove the empty column"
            raise ValueError(f"{table.path}: column {j + 1} is empty on every line ({why}); {fix}")


def _has_header(first: list[str], line: int, rest: CsvTable, where: str, names: set[str]) -> bool:
    if names & set(first) or "label" in first:
        return True
    numeric_first = [_number(v) is not None for v in first]
    if not rest.n_rows:
        if all(numeric_first):
            return False
        raise ValueError(f"{where}: expected data rows, got only the line {','.join(first)[:60]!r}")
    n = len(first)
    if any(j in rest.numeric and not numeric_first[j] for j in range(n)):
        return True  # text above a column of numbers: a header
    count_up = n > 1 and first in ([str(j) for j in range(n)], [str(j) for j in range(1, n + 1)])
    # text in a text column: data if the same value appears again below, as a class does
    once = [j for j in range(n) if not numeric_first[j] and first[j] not in set(rest.text(j))]
    why = ""
    if count_up:
        why = "its fields count the columns"
    elif once:
        why = f"{first[once[0]]!r} appears nowhere else in column {once[0] + 1}"
    elif _increasing_integers(first) and _new_class(first, rest):
        why = (
            f"its fields are increasing integers, like column numbers, and {first[-1]} "
            f"appears nowhere else in column {n}"
        )
    if why:
        raise ValueError(
            f"{where}: cannot tell whether line {line} ({','.join(first)!r}) is a header or "
            f"data ({why}); pass --header yes or --header no"
        )
    return False


def _increasing_integers(cells: list[str]) -> bool:
    if len(cells) < 2 or not all(c.isascii() and c.isdigit() for c in cells):
        return False
    ints = [int(c) for c in cells]
    return all(a < b for a, b in itertools.pairwise(ints))


def _new_class(first: list[str], rest: CsvTable) -> bool:
    """Whether the last column below holds a few repeated values (classes) and the first
    line's value is not one of them."""
    j = len(first) - 1
    if j in rest.numeric:
        below = rest.values[:, rest.numeric.index(j)]
        seen = set(below.tolist())
        return len(seen) < len(below) and float(first[j]) not in seen
    seen_text = set(rest.text(j).tolist())
    return len(seen_text) < rest.n_rows and first[j] not in seen_text


# ---- features and labels ---------------------------------------------------------------------
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
    X = X.astype(np.float64, copy=False)
    if not (X.min() >= -MAX_ABS_FEATURE and X.max() <= MAX_ABS_FEATURE):  # NaN fails both
        bad = ~np.isfinite(X) | (np.abs(X) > MAX_ABS_FEATURE)
        i, j = (int(k) for k in np.argwhere(bad)[0])
        raise ValueError(f"{where}, row {i}, column {j}: {_bad_number(X[i, j], str(X[i, j]), use)}")
    return X

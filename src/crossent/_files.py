"""Atomic file writes: a reader never sees a half-written model, picture, page or download.

Everything crossent writes goes through :func:`atomic_open`: a temporary file in the
destination's directory, flushed and synced, then renamed over the destination with
:func:`os.replace`. On any error the temporary file is removed and the destination is left
as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_open", "atomic_write"]


@contextmanager
def atomic_open(
    path: str | os.PathLike[str], mode: str = "wb", *, make_dirs: bool = False
) -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` when the ``with`` block ends cleanly.

    Parameters
    ----------
    path : str or os.PathLike
        The destination.
    mode : {'wb', 'w'}, default 'wb'
        Binary or text (UTF-8).
    make_dirs : bool, default False
        Create the destination's directory if needed; otherwise a missing directory is a
        :class:`FileNotFoundError` naming it.

    Examples
    --------
    >>> import json, pathlib, tempfile
    >>> from crossent._files import atomic_open
    >>> dest = pathlib.Path(tempfile.mkdtemp()) / "metrics.json"
    >>> with atomic_open(dest, "w") as fh:
    ...     json.dump({"loss": 0.4076}, fh)
    >>> dest.read_text()
    '{"loss": 0.4076}'
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode: expected 'wb' or 'w', got {mode!r}")
    dest = Path(path)
    directory = dest.parent
    if make_dirs:
        directory.mkdir(parents=True, exist_ok=True)
    elif not directory.is_dir():
        raise FileNotFoundError(f"{dest}: the directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        encoding = "utf-8" if mode == "w" else None
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a written file is an ordinary file
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | os.PathLike[str], data: bytes, *, make_dirs: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`); returns ``path``."""
    with atomic_open(path, "wb", make_dirs=make_dirs) as fh:
        fh.write(data)
    return Path(path)

"""Atomic file writes: a reader never sees a half-written picture or page."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory.

    The temporary file is renamed over ``path`` with :func:`os.replace` once complete, so
    ``path`` holds either its old content or all of ``data``, never a part.

    Parameters
    ----------
    path : str or os.PathLike
        The destination; its directory must exist.
    data : bytes
        The content.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    FileNotFoundError
        The directory does not exist.
    """
    dest = Path(path)
    directory = dest.parent
    if not directory.is_dir():
        raise FileNotFoundError(f"{dest}: the directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return dest

"""Files in and out: atomic writes, and reads of regular files only.

Everything crossent writes goes through :func:`atomic_open`: a temporary file in the
destination's directory, flushed and synced, then renamed over the destination with
:func:`os.replace`. On any error the temporary file is removed, the destination is left as it
was, and the error names the destination (never the temporary file).

Everything crossent reads (model files, data files, run files) goes through
:func:`open_regular` or :func:`read_regular`: a path that is not a regular file — a
directory, a FIFO (which would block forever), ``/dev/zero`` (which never ends) or another
device — is refused before it is opened, and no more than the file's size is read.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["NotARegularFileError", "atomic_open", "atomic_write", "open_regular", "read_regular"]


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
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{dest.name}.", suffix=".tmp")
    except OSError as exc:  # it names the temporary file it tried
        raise OSError(exc.errno, exc.strerror, str(dest)) from None
    try:
        encoding = "utf-8" if mode == "w" else None
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a written file is an ordinary file
        os.replace(tmp, dest)
    except OSError as exc:  # a full disk, a quota: say which file, not the temporary name
        raise _naming(exc, dest, tmp) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# errors of writing a file: named after the destination when they name no other file
_WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS}


def _naming(exc: OSError, dest: Path, tmp: str | None = None) -> OSError:
    """``exc`` as an OSError about ``dest`` (the file the user knows, not the temporary one)."""
    if exc.filename is not None and exc.filename != tmp:
        return exc
    if exc.filename is None and exc.errno not in _WRITE_ERRORS:
        return exc
    return OSError(exc.errno, exc.strerror, str(dest))


def atomic_write(path: str | os.PathLike[str], data: bytes, *, make_dirs: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`); returns ``path``."""
    with atomic_open(path, "wb", make_dirs=make_dirs) as fh:
        fh.write(data)
    return Path(path)


class NotARegularFileError(ValueError):
    """A path crossent would read that is a directory, a FIFO, a device or a socket."""


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _check_regular(mode: int, path: str | os.PathLike[str]) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
        raise NotARegularFileError(f"{os.fspath(path)}: expected a regular file, got {kind}")


def open_regular(
    path: str | os.PathLike[str], mode: str = "rb", *, encoding: str | None = None
) -> IO[Any]:
    """Open ``path`` for reading if it is a regular file (a symbolic link to one is fine).

    Anything else is refused with :class:`NotARegularFileError` (a ``ValueError``) before it
    is opened, so a FIFO cannot block and ``/dev/zero`` cannot fill the memory; a missing file
    is the usual :class:`FileNotFoundError`. ``mode`` is ``'rb'`` or ``'r'`` (text: ``encoding``,
    UTF-8 by default, and universal newlines left to the reader, as :mod:`csv` wants).

    Examples
    --------
    >>> from crossent._files import open_regular
    >>> open_regular("/dev/zero")
    Traceback (most recent call last):
    ...
    crossent._files.NotARegularFileError: /dev/zero: expected a regular file, got a character device
    """
    if mode not in ("rb", "r"):
        raise ValueError(f"mode: expected 'rb' or 'r', got {mode!r}")
    _check_regular(os.stat(path).st_mode, path)
    # O_NONBLOCK: should the path become a FIFO after the check, opening it still returns
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        _check_regular(os.fstat(fd).st_mode, path)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        if mode == "rb":
            return os.fdopen(fd, "rb")
        return os.fdopen(fd, "r", encoding=encoding or "utf-8", newline="")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (see :func:`open_regular`), never more than its
    size when opened, nor more than ``max_bytes`` (a larger file is a ``ValueError``)."""
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise ValueError(
                f"{os.fspath(path)}: expected a file of at most {max_bytes} bytes, got {size}"
            )
        return fh.read(size)

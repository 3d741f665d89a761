"""Reading ``.npy``/``.npz`` files that may be damaged or hostile, without trusting them.

``np.load`` allocates what an array's header declares before it reads the data, so a file of a
few bytes that declares 10¹⁰ elements asks for 75 GiB. Here every header is read first and its
size compared with the bytes the archive really holds; only then is the array read, never with
pickles.
"""

from __future__ import annotations

import io
import os
import zipfile
from typing import Any

import numpy as np
from numpy.typing import NDArray

from crossent._files import open_regular

__all__ = ["read_npy", "read_npz"]

_DEFLATE_MAX_RATIO = 1100  # deflate cannot compress better than ~1032:1


def _header(fh: Any, where: str) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """(shape, dtype, data bytes) from an ``.npy`` header; the file position ends after it."""
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, _fortran, dtype = read(fh)
    if dtype.hasobject:
        raise ValueError(
            f"{where}: expected an array of numbers or strings, got Python objects (pickles "
            "are never loaded: allow_pickle=False)"
        )
    return shape, dtype, int(np.prod(shape, dtype=object)) * dtype.itemsize


def read_npz(source: str | os.PathLike[str] | bytes) -> dict[str, NDArray[Any]]:
    """Every array of an ``.npz`` archive (a path or its bytes), each checked before reading.

    Raises ``ValueError`` naming the array for a header that declares more data than the
    archive holds, object arrays, and archives that are not zip files.
    """
    where = "the archive" if isinstance(source, bytes) else str(source)
    if isinstance(source, bytes) and source.startswith(b"\x93NUMPY"):
        raise ValueError(f"{where}: expected an .npz archive, got a single .npy array, not an .npz")
    fh = io.BytesIO(source) if isinstance(source, bytes) else open_regular(source)
    try:
        zf = zipfile.ZipFile(fh)
    except zipfile.BadZipFile as exc:
        fh.close()
        raise ValueError(f"{where}: expected an .npz archive, got {exc}") from None
    arrays: dict[str, NDArray[Any]] = {}
    with fh, zf:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            what = f"{where}: array {name!r}"
            stored = info.compress_type == zipfile.ZIP_STORED
            limit = 1 if stored else _DEFLATE_MAX_RATIO
            if info.file_size > limit * max(info.compress_size, 1):
                raise ValueError(
                    f"{what}: declares {info.file_size} bytes in "
                    f"{info.compress_size} (a damaged or hostile archive)"
                )
            with zf.open(info) as fh:
                shape, _, nbytes = _header(fh, what)
                held = info.file_size - fh.tell()
                if nbytes != held:
                    raise ValueError(
                        f"{what}: its header declares shape {shape} ({nbytes} bytes), "
                        f"the archive holds {held} bytes"
                    )
            with zf.open(info) as fh:
                arrays[name] = np.lib.format.read_array(fh, allow_pickle=False)
    return arrays


def read_npy(path: str | os.PathLike[str]) -> NDArray[Any]:
    """An ``.npy`` file's array, its header checked against the file's size first."""
    with open_regular(path) as fh:
        shape, _, nbytes = _header(fh, str(path))
        held = os.fstat(fh.fileno()).st_size - fh.tell()
        if nbytes != held:
            raise ValueError(
                f"{path}: its header declares shape {shape} ({nbytes} bytes), the "
                f"file holds {held} bytes"
            )
        fh.seek(0)
        return np.lib.format.read_array(fh, allow_pickle=False)

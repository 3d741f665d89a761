"""Datasets for the classifier: the bundled digits, MNIST/Fashion-MNIST IDX files, CSV and NPZ.

Every loader returns raw features (no scaling: fit a scaler on the training split only, e.g.
``make_pipeline(StandardScaler(), clf)``) and a fixed split: MNIST's own 60000/10000, or a
seeded ``train_test_split`` for the others. A :class:`DataSpec` describes a dataset in a few
JSON-able fields, so a saved run can reload exactly its test split.

Examples
--------
>>> from crossent.data import DataSpec, load_dataset
>>> ds = load_dataset(DataSpec("digits"))
>>> ds.X_train.shape, ds.X_test.shape, ds.image_shape
((1347, 64), (450, 64), (8, 8))
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.request
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from crossent._files import atomic_open, atomic_write, open_regular
from crossent._labels import check_labels, csv_labels
from crossent._npz import _DEFLATE_MAX_RATIO, read_npz
from crossent._tabular import Progress, check_features, read_csv

__all__ = ["SOURCES", "DataSpec", "Dataset", "default_data_home", "load_csv", "load_dataset",
           "load_mnist", "load_npz", "parse_source", "read_idx", "write_idx"]  # fmt: skip

SOURCES = ("digits", "mnist", "fashion-mnist", "csv", "npz")

MNIST_FILES = {  # name -> MD5 (the checksums torchvision publishes)
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}
MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": (
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")  # fmt: skip

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class DataSpec:
    """What to load: ``source`` in :data:`SOURCES`, ``path`` (a directory for MNIST, a file for
    CSV/NPZ), the CSV ``label_column`` (name or index; default ``"label"`` or the last column)
    and whether its first line is a ``header`` (default: decided from the file), ``test_size``
    and ``seed`` of the split (not used by MNIST, which has its own), an optional cap ``limit``
    on the training examples (a seeded subset), and whether MNIST may be ``download``-ed.
    Every field is checked on construction, so a spec read from a file is as safe as a new one."""

    source: str = "digits"
    path: str | None = None
    label_column: str | int | None = None
    test_size: float = 0.25
    seed: int = 0
    limit: int | None = None
    download: bool = True
    header: bool | None = None

    def __post_init__(self) -> None:
        def num(v: Any, kind: type | tuple[type, ...]) -> bool:
            return isinstance(v, kind) and not isinstance(v, bool)

        checks = {
            "source": (self.source in SOURCES, f"one of {SOURCES}"),
            "path": (self.path is None or isinstance(self.path, str), "a path or None"),
            "label_column": (self.label_column is None or isinstance(self.label_column, (str, int)),
                             "a column name, an index or None"),
            "test_size": (num(self.test_size, (int, float)) and 0 < self.test_size < 1,
                          "a number in (0, 1)"),
            "seed": (num(self.seed, int) and 0 <= self.seed < 2**32, "an integer in [0, 2**32)"),
            "limit": (self.limit is None or (num(self.limit, int) and self.limit >= 1),
                      "an integer >= 1 or None"),
            "download": (isinstance(self.download, bool), "true or false"),
            "header": (self.header is None or isinstance(self.header, bool), "true, false or None"),
        }  # fmt: skip
        for name, (ok, expected) in checks.items():
            if not ok:
                raise ValueError(f"{name}: expected {expected}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        if not isinstance(d, dict):
            raise ValueError(f"data: expected a data description (a mapping), got {d!r}")
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


@dataclass
class Dataset:
    """A fixed train/test split of raw features ``X`` (N, D) and labels ``y`` (N,)."""

    X_train: NDArray[np.float64]
    y_train: NDArray[Any]
    X_test: NDArray[np.float64]
    y_test: NDArray[Any]
    spec: DataSpec
    image_shape: tuple[int, int] | None = None
    class_names: list[str] | None = field(default=None)
    feature_names: list[str] | None = field(default=None)

    @property
    def name(self) -> str:
        return (
            self.spec.source if self.spec.path is None else f"{self.spec.source}:{self.spec.path}"
        )


def default_data_home() -> Path:
    """``$CROSSENT_DATA``, else ``$XDG_CACHE_HOME/crossent``, else ``~/.cache/crossent``."""
    if os.environ.get("CROSSENT_DATA"):
        return Path(os.environ["CROSSENT_DATA"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "crossent"


# ---- IDX (MNIST's format) -------------------------------------------------------------------
def read_idx(path: str | os.PathLike[str]) -> NDArray[Any]:
    """Read an IDX file (raw or gzip-compressed, detected from its first bytes).

    The format: two zero bytes, a type code (0x08 uint8 ... 0x0E float64), the number of
    dimensions ``k``, ``k`` big-endian uint32 sizes, then the data, big-endian, row-major.
    The header is read first: no more than the size it declares is ever read or decompressed,
    and a declared size that the file cannot hold is refused before reading the data.
    """
    with open_regular(path, "rb") as raw_fh:  # a FIFO or /dev/zero is refused unopened
        size = os.fstat(raw_fh.fileno()).st_size
        gz = raw_fh.read(2) == b"\x1f\x8b"
        raw_fh.seek(0)
        fh: Any = gzip.GzipFile(fileobj=raw_fh, mode="rb") if gz else raw_fh
        try:
            return _read_idx(fh, str(path), size, gz)
        except (OSError, EOFError, zlib.error) as exc:
            if not gz:
                raise
            raise ValueError(
                f"{path}: expected a valid gzip file, got a damaged one ({exc})"
            ) from None


def _read_exactly(fh: Any, n: int) -> bytes:
    """Up to ``n`` bytes, read in chunks (a gzip stream is decompressed no further)."""
    out = bytearray()
    while len(out) < n:
        chunk = fh.read(min(n - len(out), 1 << 20))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def _read_idx(fh: Any, path: str, size: int, gz: bool) -> NDArray[Any]:
    magic = _read_exactly(fh, 4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{path}: expected an IDX file (magic 00 00 <type> <ndim>), got "
            f"bytes {magic.hex(' ') or '(empty)'}"
        )
    dtype, ndim = np.dtype(_IDX_DTYPES[magic[2]]), magic[3]
    dims = _read_exactly(fh, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(f"{path}: expected {ndim} dimension sizes, got a truncated header")
    shape = tuple(int(s) for s in np.frombuffer(dims, dtype=">u4"))
    expected = int(np.prod(shape, dtype=object)) * dtype.itemsize
    # deflate compresses at most ~1032:1, so a gzip file of `size` bytes cannot hold more
    if expected > (_DEFLATE_MAX_RATIO if gz else 1) * size:
        raise ValueError(
            f"{path}: its header declares shape {shape} ({expected} bytes), more than a "
            f"{'gzip ' if gz else ''}file of {size} bytes can hold"
        )
    data = _read_exactly(fh, expected)
    if len(data) != expected:
        raise ValueError(
            f"{path}: expected {expected} data bytes for shape {shape}, got "
            f"{len(data)} (truncated or damaged)"
        )
    if fh.read(1):
        raise ValueError(
            f"{path}: expected {expected} data bytes for shape {shape}, got more (damaged or "
            "hostile)"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: ArrayLike) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``)."""
    arr = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    code = codes.get(arr.dtype)
    if code is None:
        raise TypeError(
            f"array: expected dtype uint8, int8, int16, int32, float32 or float64, got {arr.dtype}"
        )
    body = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    body += arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    data = gzip.compress(body) if str(path).endswith(".gz") else body
    atomic_write(path, data)


def _fetch(url: str, dest: Path, md5: str, timeout: float = 20.0) -> None:
    """Download ``url`` to ``dest`` atomically, keeping it only if its MD5 is ``md5``."""
    digest = hashlib.md5(usedforsecurity=False)
    with (
        atomic_open(dest, "wb", make_dirs=True) as out,
        urllib.request.urlopen(url, timeout=timeout) as resp,
    ):
        while chunk := resp.read(1 << 20):
            out.write(chunk)
            digest.update(chunk)
        if digest.hexdigest() != md5:  # raising here removes the partial file
            raise ValueError(f"{url}: expected MD5 {md5}, got {digest.hexdigest()}")


def _find(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def load_mnist(
    directory: str | os.PathLike[str] | None = None, *, kind: str = "mnist", download: bool = True
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64], NDArray[np.int64]]:
    """MNIST or Fashion-MNIST from its four IDX files: ``(X_train, y_train, X_test, y_test)``.

    Looks in ``directory`` (default ``default_data_home() / kind``) for each file, ``.gz`` or
    uncompressed; missing files are downloaded there (checksums verified) when ``download`` is
    true and the network answers. Otherwise raises ``FileNotFoundError`` naming the files.
    Features are the 784 pixel values 0–255 as float64.
    """
    X_train, y_train, X_test, y_test = _mnist_images(directory, kind, download)
    flat = lambda X: X.reshape(len(X), -1).astype(np.float64)  # noqa: E731
    return flat(X_train), y_train, flat(X_test), y_test


def _mnist_images(
    directory: str | os.PathLike[str] | None, kind: str, download: bool
) -> list[NDArray[Any]]:
    """Images (N, H, W) and integer labels (N,) of the train and test files, checked."""
    if kind not in MNIST_FILES:
        raise ValueError(f"kind: expected 'mnist' or 'fashion-mnist', got {kind!r}")
    root = Path(directory) if directory is not None else default_data_home() / kind
    found: dict[str, Path] = {}
    errors: list[str] = []
    for name, md5 in MNIST_FILES[kind].items():
        path = _find(root, name)
        if path is None and download and not errors:  # after one failure, stop trying
            for mirror in MIRRORS[kind]:
                try:
                    _fetch(mirror + name, root / name, md5)
                    path = root / name
                    errors.clear()
                    break
                except (OSError, ValueError) as exc:
                    errors.append(f"{mirror + name}: {exc}")
        if path is not None:
            found[name] = path
    missing = [n for n in MNIST_FILES[kind] if n not in found]
    if missing:
        why = f" (download failed: {errors[-1]})" if errors else ""
        raise FileNotFoundError(
            f"{kind}: expected the four IDX files in {root}{why}; missing: {', '.join(missing)}. "
            f"Place train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            f"t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (or the same names "
            f"without .gz) in {root}, or pass its directory."
        )
    X_train, y_train, X_test, y_test = (read_idx(found[n]) for n in MNIST_FILES[kind])
    for X, y, part in ((X_train, y_train, "train"), (X_test, y_test, "t10k")):
        if X.ndim != 3 or y.ndim != 1 or len(X) != len(y):
            raise ValueError(
                f"{kind} {part}: expected images (N, H, W) and labels (N,), got "
                f"{X.shape} and {y.shape}"
            )
        if len(X) == 0:
            raise ValueError(f"{kind} {part}: expected at least one example, got none")
        if X.dtype.kind == "f":  # NaN or inf pixels: say so now, not after the training
            check_features(X.reshape(len(X), -1), f"{kind} {part} images")
    if X_train.shape[1:] != X_test.shape[1:]:
        raise ValueError(
            f"{kind}: expected train and t10k images of one size, got "
            f"{X_train.shape[1:]} and {X_test.shape[1:]}"
        )
    labels = [
        check_labels(y, f"{kind} {part} labels")
        for y, part in ((y_train, "train"), (y_test, "t10k"))
    ]
    if any(y.dtype.kind not in "iu" for y in labels):
        raise ValueError(f"{kind}: expected integer labels, got {labels[0].dtype}")
    return [X_train, labels[0].astype(np.int64), X_test, labels[1].astype(np.int64)]


# ---- the user's own data ---------------------------------------------------------------------
def load_csv(
    path: str | os.PathLike[str],
    label_column: str | int | None = None,
    *,
    header: bool | None = None,
    progress: Progress | None = None,
) -> tuple[NDArray[np.float64], NDArray[Any]]:
    """Features (N, D) and labels (N,) from a CSV file with an optional header row.

    ``label_column`` is a header name or a column index (negative counts from the end); by
    default the column named ``"label"`` if there is one, else the last. ``header`` says
    whether the first line is a header; by default it is decided from the columns, and a
    file that cannot tell is refused (see :func:`crossent._tabular.read_csv`). Labels are
    integers if all are, else strings; an unnamed last column that looks like a feature (most
    rows in one of 3+ values, or more values than half the rows) is refused. ``progress(done,
    total)`` is called with the bytes read while a large file is read.
    """
    X, y, _ = _load_csv_named(path, label_column, header, progress)
    return X, y


def _load_csv_named(
    path: str | os.PathLike[str],
    label_column: str | int | None,
    header: bool | None,
    progress: Progress | None = None,
) -> tuple[NDArray[np.float64], NDArray[Any], list[str] | None]:
    names = (label_column,) if isinstance(label_column, str) else ()
    table = read_csv(path, header=header, names=names, progress=progress)
    col = table.column_index(label_column)
    if table.width < 2:
        raise ValueError(f"{path}: expected feature columns and a label column, got 1 column")
    features = [j for j in range(table.width) if j != col]
    feature_names = [table.header[j] for j in features] if table.header else None
    implicit = label_column is None and not (table.header and "label" in table.header)
    return table.numbers(features), csv_labels(table, col, implicit=implicit), feature_names


def load_npz(path: str | os.PathLike[str]) -> tuple[NDArray[np.float64], NDArray[Any]]:
    """Features ``X`` (N, D) and labels ``y`` (N,) from an ``.npz`` file with those two keys."""
    arrays = read_npz(path)
    if "X" not in arrays or "y" not in arrays:
        raise ValueError(f"{path}: expected arrays 'X' and 'y', got {sorted(arrays)}")
    X, y = arrays["X"], arrays["y"]
    if X.ndim < 2 or y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"{path}: expected X (N, D) and y (N,), got {X.shape} and {y.shape}")
    if len(X) == 0:
        raise ValueError(f"{path}: expected at least one example, got none (X has shape {X.shape})")
    return check_features(X.reshape(len(X), -1), f"{path}: X"), check_labels(y, f"{path}: y")


def _subsample(X: Any, y: Any, limit: int | None, seed: int) -> tuple[Any, Any]:
    if limit is None or limit >= len(X):
        return X, y
    keep = np.sort(np.random.default_rng(seed).permutation(len(X))[:limit])
    return X[keep], y[keep]


def load_dataset(spec: DataSpec | str = "digits", *, progress: Progress | None = None) -> Dataset:
    """Load the dataset ``spec`` describes, split into a fixed train and test part.

    ``"digits"`` is scikit-learn's bundled 1797 8×8 images (offline); MNIST has its own split;
    digits, CSV and NPZ are split by ``train_test_split(test_size, random_state=seed)``.
    ``progress(done, total)``: called with the bytes read while a CSV file is read.
    """
    from sklearn.model_selection import train_test_split

    if isinstance(spec, str):
        spec = DataSpec(spec)
    image_shape: tuple[int, ...] | None = None
    names = features = None
    if spec.source in ("mnist", "fashion-mnist"):
        X_tr, y_tr, X_te, y_te = _mnist_images(spec.path, spec.source, spec.download)
        image_shape = X_tr.shape[1:]  # 28×28 for the real thing; any H×W IDX files work
        flat = lambda X: X.reshape(len(X), -1).astype(np.float64)  # noqa: E731
        X_tr, y_tr = _subsample(flat(X_tr), y_tr, spec.limit, spec.seed)
        names = list(FASHION_CLASSES) if spec.source == "fashion-mnist" else None
        return Dataset(X_tr, y_tr, flat(X_te), y_te, spec, image_shape, names)  # type: ignore[arg-type]
    if spec.source == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X, image_shape = X.astype(np.float64), (8, 8)
    elif spec.path is None:
        raise ValueError(f"path: expected a file for source {spec.source!r}, got None")
    elif spec.source == "csv":
        X, y, features = _load_csv_named(spec.path, spec.label_column, spec.header, progress)
    else:
        X, y = load_npz(spec.path)
    if len(y) < 2:
        raise ValueError(f"{spec.path}: expected at least 2 examples to split, got {len(y)}")
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=spec.test_size, random_state=spec.seed
    )
    X_tr, y_tr = _subsample(X_tr, y_tr, spec.limit, spec.seed)
    if image_shape is None and spec.source == "npz":
        side = round(np.sqrt(X.shape[1]))
        image_shape = (side, side) if side * side == X.shape[1] and side > 1 else None
    return Dataset(X_tr, y_tr, X_te, y_te, spec, image_shape, names, features)  # type: ignore[arg-type]


def parse_source(text: str) -> tuple[str, str | None]:
    """``"digits"``, ``"mnist"``, ``"fashion-mnist"``, or a ``.csv``/``.npz`` path."""
    low = text.lower()
    if low in ("digits", "mnist", "fashion-mnist"):
        return low, None
    for prefix in ("mnist:", "fashion-mnist:"):
        if low.startswith(prefix):
            return prefix[:-1], text[len(prefix) :]
    if low.endswith(".csv"):
        return "csv", text
    if low.endswith(".npz"):
        return "npz", text
    raise ValueError(
        f"data: expected 'digits', 'mnist', 'fashion-mnist' or a .csv/.npz file, got {text!r}"
    )

"""Data loaders: IDX files (MNIST's format), MNIST directories and downloads, CSV, NPZ, digits."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from crossent import data
from crossent.data import (
    DataSpec,
    load_csv,
    load_dataset,
    load_mnist,
    load_npz,
    parse_source,
    read_idx,
    write_idx,
)

NAMES = list(data.MNIST_FILES["mnist"])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    arr = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    if dtype == np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, arr)
    back = read_idx(path)
    np.testing.assert_array_equal(back, arr)
    assert back.dtype == arr.dtype


def test_idx_header_is_the_documented_layout(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    write_idx(path, np.array([7, 2, 1], dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 7, 2, 1])


def test_idx_errors(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"PK\x03\x04junk")
    with pytest.raises(ValueError, match="expected an IDX file"):
        read_idx(bad)
    write_idx(tmp_path / "ok", np.zeros((4, 5), np.uint8))
    (tmp_path / "cut").write_bytes((tmp_path / "ok").read_bytes()[:-3])
    with pytest.raises(ValueError, match="expected 20 data bytes for shape \\(4, 5\\), got 17"):
        read_idx(tmp_path / "cut")
    (tmp_path / "cut.gz").write_bytes(gzip.compress((tmp_path / "ok").read_bytes())[:-8])
    with pytest.raises(ValueError, match="gzip"):
        read_idx(tmp_path / "cut.gz")
    with pytest.raises(TypeError, match="array: expected dtype uint8"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint64))


def write_fake_mnist(directory, n_train=12, n_test=5, gz=True):
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(n_test) % 10).astype(np.uint8),
    }
    for i, (name, arr) in enumerate(arrays.items()):
        # mix compressed and raw files, as users have them
        write_idx(directory / (name if gz or i % 2 else name.removesuffix(".gz")), arr)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_from_a_directory(tmp_path, gz):
    arrays = write_fake_mnist(tmp_path / "m", gz=gz)
    X_tr, _y_tr, X_te, y_te = load_mnist(tmp_path / "m", download=False)
    assert X_tr.shape == (12, 784) and X_te.shape == (5, 784) and X_tr.dtype == np.float64
    np.testing.assert_array_equal(X_tr[3], arrays["train-images-idx3-ubyte.gz"][3].ravel())
    np.testing.assert_array_equal(y_te, np.arange(5) % 10)
    ds = load_dataset(DataSpec("fashion-mnist", str(tmp_path / "m"), limit=8, download=False))
    assert ds.X_train.shape == (8, 784) and ds.image_shape == (28, 28)
    assert ds.class_names[9] == "Ankle boot"


def test_missing_mnist_offline_names_the_four_files_and_where(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path / "empty", download=False)
    msg = str(info.value)
    for name in NAMES:
        assert name in msg
    assert str(tmp_path / "empty") in msg


def _serve_locally(tmp_path, monkeypatch, arrays_dir, corrupt=None):
    """Point the mirrors at file:// URLs and the checksums at the local files' MD5s."""
    md5 = {n: hashlib.md5((arrays_dir / n).read_bytes()).hexdigest() for n in NAMES}
    if corrupt:
        md5[corrupt] = "0" * 32
    monkeypatch.setitem(data.MNIST_FILES, "mnist", md5)
    monkeypatch.setitem(data.MIRRORS, "mnist", (arrays_dir.as_uri() + "/",))


def test_download_verifies_checksums_into_the_cache(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path / "server")
    _serve_locally(tmp_path, monkeypatch, tmp_path / "server")
    monkeypatch.setenv("CROSSENT_DATA", str(tmp_path / "cache"))
    X_tr, *_ = load_mnist()
    assert X_tr.shape == (12, 784)
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(NAMES)


def test_download_with_a_bad_checksum_keeps_nothing(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path / "server")
    _serve_locally(tmp_path, monkeypatch, tmp_path / "server", corrupt=NAMES[0])
    with pytest.raises(FileNotFoundError, match=r"expected MD5 0{32}"):
        load_mnist(tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # no bad file, no partial file, no retry


def test_digits_split_is_fixed_and_matches_sklearn():
    ds = load_dataset("digits")
    X, y = load_digits(return_X_y=True)
    X_tr, _X_te, _y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0)
    np.testing.assert_array_equal(ds.X_train, X_tr)
    np.testing.assert_array_equal(ds.y_test, y_te)
    assert ds.image_shape == (8, 8) and ds.name == "digits"
    other = load_dataset(DataSpec("digits", seed=1))
    assert not np.array_equal(other.y_test, y_te)


def test_csv_with_header_and_string_labels(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,species,b\n1,cat,2\n3,dog,4.5\n5,cat,6\n")
    X, y = load_csv(path, "species")
    np.testing.assert_array_equal(X, [[1, 2], [3, 4.5], [5, 6]])
    assert y.tolist() == ["cat", "dog", "cat"]
    path.write_text("x1,x2,label\n1,2,0\n3,4,1\n")
    X, y = load_csv(path)
    assert y.dtype == np.int64 and X.shape == (2, 2)


def test_csv_without_header_uses_the_last_column_or_an_index(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("1,2,7\n3,4,8\n")
    X, y = load_csv(path)
    assert y.tolist() == [7, 8] and X.tolist() == [[1, 2], [3, 4]]
    X, y = load_csv(path, 0)
    assert y.tolist() == [1, 3] and X.tolist() == [[2, 7], [4, 8]]


def test_csv_errors_name_the_line(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("x,label\n1,a\nfoo,b\n")
    with pytest.raises(ValueError, match=r"line 3, column 1, .x.: expected a number, got .foo."):
        load_csv(path)
    path.write_text("x,y,label\n1,2,a\n1,b\n")
    with pytest.raises(ValueError, match="line 3: expected 3 columns, got 2"):
        load_csv(path)
    path.write_text("x,label\n1,a\n2,b\n")
    with pytest.raises(ValueError, match="label_column: expected a column"):
        load_csv(path, "nope")


def test_npz_and_dataset_split(tmp_path):
    X = np.arange(40.0).reshape(10, 4)
    y = np.array(list("ababababab"))
    np.savez(tmp_path / "d.npz", X=X, y=y)
    Xl, _yl = load_npz(tmp_path / "d.npz")
    np.testing.assert_array_equal(Xl, X)
    ds = load_dataset(DataSpec("npz", str(tmp_path / "d.npz"), test_size=0.3, seed=0))
    assert len(ds.y_test) == 3 and ds.image_shape == (2, 2)
    np.savez(tmp_path / "e.npz", data=X)
    with pytest.raises(ValueError, match=r"expected arrays 'X' and 'y', got \['data'\]"):
        load_npz(tmp_path / "e.npz")


def test_parse_source_and_spec_round_trip():
    assert parse_source("digits") == ("digits", None)
    assert parse_source("mnist:/data/m") == ("mnist", "/data/m")
    assert parse_source("my.CSV") == ("csv", "my.CSV")
    with pytest.raises(ValueError, match="data: expected 'digits'"):
        parse_source("cifar10")
    spec = DataSpec("csv", "x.csv", "label", 0.2, 3, 100, False)
    assert DataSpec.from_dict(spec.to_dict()) == spec


def test_unreachable_mirror_fails_with_the_placement_message(tmp_path, monkeypatch):
    monkeypatch.setitem(data.MIRRORS, "mnist", ((tmp_path / "nowhere").as_uri() + "/",))
    with pytest.raises(FileNotFoundError, match="download failed") as info:
        load_mnist(tmp_path / "cache")
    assert "Place train-images-idx3-ubyte.gz" in str(info.value)

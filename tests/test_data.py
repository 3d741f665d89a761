"""Data loaders: IDX files (MNIST's format), MNIST directories and downloads, CSV, NPZ, digits."""

from __future__ import annotations

import gzip
import hashlib
import re

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


# ---- misreads that used to pass silently (issue 20) ------------------------------------------
def _rows(n=60, seed=0):
    """n rows of 4 float features (3 decimals), as CSV text lines without the label."""
    X = np.round(np.random.default_rng(seed).normal(size=(n, 4)), 3)
    return [",".join(map(str, r)) for r in X]


@pytest.mark.parametrize(
    ("header", "match"),
    [
        ("a,b,a,c,label", r"line 1: expected distinct column names, got 'a' in columns 1 and 3"),
        ("x,x,x,y,label", r"got 'x' in columns 1, 2 and 3; rename them"),
    ],
)
def test_duplicate_header_names_are_refused(tmp_path, header, match):
    path = tmp_path / "d.csv"
    path.write_text(header + "\n" + "".join(f"{r},{i % 2}\n" for i, r in enumerate(_rows())))
    with pytest.raises(ValueError, match=match):
        load_csv(path)


def test_integer_labels_above_2_to_the_53_stay_distinct(tmp_path):
    big = 2**53
    path = tmp_path / "d.csv"
    path.write_text("a,label\n" + "".join(f"{i},{big + i % 2}\n" for i in range(6)))
    _, y = load_csv(path)
    assert y.dtype == np.int64 and sorted(set(y.tolist())) == [big, big + 1]
    path.write_text("a,label\n" + "".join(f"{i},{2**64 + i % 2}\n" for i in range(6)))
    _, y = load_csv(path)  # beyond int64: the exact spellings, as names
    assert sorted(set(y.tolist())) == [str(2**64), str(2**64 + 1)]


def test_a_numeric_header_that_does_not_count_up_is_not_read_as_data(tmp_path):
    path = tmp_path / "d.csv"
    body = "".join(f"{r},{i % 3}\n" for i, r in enumerate(_rows()))
    path.write_text("0,1,3,4,5\n" + body)  # pandas' column numbers after a column was dropped
    with pytest.raises(
        ValueError,
        match=r"cannot tell whether line 1 \('0,1,3,4,5'\) is a header or data \(its fields "
        r"are increasing integers, like column numbers, and 5 appears nowhere else in column "
        r"5\); pass --header yes or --header no",
    ):
        load_csv(path)
    X, y = load_csv(path, header=True)
    assert X.shape == (60, 4) and sorted(set(y.tolist())) == [0, 1, 2]


@pytest.mark.parametrize("missing", ["NA", "nan", "N/A", "?"])
def test_a_missing_label_is_refused_naming_its_line(tmp_path, missing):
    path = tmp_path / "d.csv"
    labels = [str(i % 3) for i in range(60)]
    labels[7] = missing
    path.write_text(
        "a,b,c,d,label\n" + "".join(f"{r},{c}\n" for r, c in zip(_rows(), labels, strict=True))
    )
    with pytest.raises(
        ValueError,
        match=rf"d.csv, line 9, column 5, 'label': expected a class label, got {re.escape(repr(missing))} "
        r"\(a missing value\); fill it in or remove the row",
    ):
        load_csv(path)


def test_a_csv_without_a_label_column_is_refused(tmp_path):
    X, _ = load_digits(return_X_y=True)
    path = tmp_path / "pixels.csv"
    np.savetxt(path, X, fmt="%d", delimiter=",")  # 64 pixels, no label column
    with pytest.raises(
        ValueError,
        match=r"pixels.csv: the last column \(column 64\), taken as the labels, looks like a "
        r"feature: 17 classes, 94% of the rows in one of them \(0\); name the label column "
        r"with --label-column \(label_column=\)",
    ):
        load_csv(path)
    _, y = load_csv(path, -1)  # named: the user's choice is taken
    assert len(set(y.tolist())) == 17


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (["7", "07", "007", "1"], r"labels '007', '07' and '7' are one class \(7\) written "
         r"differently; write each class one way"),
        (["3", "3.0", "1", "1"], r"labels '3' and '3.0' are one class \(3\) written differently"),
        (["1e20", "2e20", "1", "1"], r"line 2, column 2, 'label': expected a class label "
         r"written as an integer or a name, got '1e20', which float64 cannot hold exactly"),
    ],
)  # fmt: skip
def test_labels_that_would_collapse_into_one_class_are_refused(tmp_path, labels, match):
    path = tmp_path / "d.csv"
    path.write_text("a,label\n" + "".join(f"{i},{c}\n" for i, c in enumerate(labels * 3)))
    with pytest.raises(ValueError, match=match):
        load_csv(path)


def test_npz_labels_that_float64_cannot_hold_are_refused(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((4, 2)), y=np.array([1e20, 1e20 + 2**20, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"expected class labels \(integers or names\), got "
                       r"the number 1e\+20, which float64 cannot hold exactly"):  # fmt: skip
        load_npz(tmp_path / "d.npz")


def test_a_trailing_comma_is_named_as_such(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("".join(f"{r},{i % 3},\n" for i, r in enumerate(_rows())))
    with pytest.raises(
        ValueError,
        match=r"d.csv: column 6 is empty on every line \(each line ends with a comma\); "
        r"remove the trailing commas",
    ):
        load_csv(path)
    path.write_text("a,b,c,d,label\n" + "".join(f"{r},{i % 3},\n" for i, r in enumerate(_rows())))
    with pytest.raises(
        ValueError, match=r"d.csv, line 2: expected 5 columns, got 6; it ends with a comma$"
    ):
        load_csv(path)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_or_inf_pixels_in_idx_files_are_refused_before_training(tmp_path, value):
    rng = np.random.default_rng(0)
    for part, n in (("train", 20), ("t10k", 5)):
        images = rng.random((n, 4, 4)).astype(np.float32)
        images[1, 2, 3] = value
        write_idx(tmp_path / f"{part}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{part}-labels-idx1-ubyte.gz", (np.arange(n) % 2).astype(np.uint8))
    with pytest.raises(ValueError, match=r"mnist train images, row 1, column 11: expected a "):
        load_dataset(DataSpec("mnist", str(tmp_path), download=False))


def test_empty_npz_and_idx_files_say_they_hold_no_examples(tmp_path):
    np.savez(tmp_path / "e.npz", X=np.zeros((0, 64)), y=np.zeros(0, np.int64))
    with pytest.raises(ValueError, match=r"e.npz: expected at least one example, got none"):
        load_npz(tmp_path / "e.npz")
    write_fake_mnist(tmp_path / "m")
    write_idx(tmp_path / "m" / NAMES[0], np.zeros((0, 28, 28), np.uint8))
    write_idx(tmp_path / "m" / NAMES[1], np.zeros(0, np.uint8))
    with pytest.raises(ValueError, match=r"mnist train: expected at least one example, got none"):
        load_mnist(tmp_path / "m", download=False)


def test_a_gzip_bomb_is_refused_before_it_is_decompressed(tmp_path, monkeypatch):
    header = bytes([0, 0, 0x08, 3]) + np.array([10, 28, 28], ">u4").tobytes()
    path = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:  # 7840 bytes declared, 200 MB sent
        fh.write(header)
        for _ in range(200):
            fh.write(bytes(1 << 20))
    read = []
    real = gzip.GzipFile.read
    monkeypatch.setattr(gzip.GzipFile, "read", lambda s, n=-1: read.append(n) or real(s, n))
    monkeypatch.setattr(gzip, "decompress", lambda *a: pytest.fail("decompressed it whole"))
    with pytest.raises(ValueError, match=r"bomb-idx3-ubyte.gz: expected 7840 data bytes for "
                       r"shape \(10, 28, 28\), got more \(damaged or hostile\)"):  # fmt: skip
        read_idx(path)
    assert all(0 <= n <= 1 << 20 for n in read)
    declared = bytes([0, 0, 0x08, 1]) + np.array([2**31], ">u4").tobytes()
    (tmp_path / "big.gz").write_bytes(gzip.compress(declared + bytes(100)))
    with pytest.raises(ValueError, match=r"big.gz: its header declares shape \(2147483648,\) "
                       r"\(2147483648 bytes\), more than a gzip file of \d+ bytes can hold"):  # fmt: skip
        read_idx(tmp_path / "big.gz")


CSV_VARIANTS = {
    "plain ints": "a,b,label\n1,2,0\n3,4,1\n5,6,0\n",
    "no header": "1,2,0\n3,4,1\n5,6,0\n",
    "decimals later": "a,b,label\n1,2,0\n3,4.5,1\n5,-6e-3,0\n",
    "text labels, spaces": "a, b ,species\n 1 ,2, cat\n3,4,dog \n5,6,cat\n",
    "quoted": 'a,b,label\n"1",2,"x, y"\n3,"4",z\n5,6,"x, y"\n',
    "blank lines, CRLF": "a,b,label\r\n\r\n1,2,0\r\n3,4,1\r\n\r\n5,6,0\r\n",
    "bom": "\ufeffa,b,label\n1,2,0\n3,4,1\n5,6,1\n",
    "label first": "label,a,b\nk0,1,2\nk1,3,4\nk0,5,6\n",
    "big ints": f"a,b,label\n{2**53 + 1},2,0\n{2**60},4,1\n7,{-(2**62)},0\n",
    "spaces-only line": "a,b,label\n1,2,0\n   \n3,4,1\n5,6,0\n",
    "fullwidth digit": "a,b,label\n1,2,0\n３,4,1\n5,6,0\n",
    "signs": "a,b,label\n+1,-2,0\n3,4,+1\n5,6,0\n",
}


@pytest.mark.parametrize("chunk", [1 << 16, 2])  # 2: rows parsed two at a time
@pytest.mark.parametrize("text", CSV_VARIANTS.values(), ids=CSV_VARIANTS.keys())
def test_the_c_parser_reads_what_the_csv_module_reads(tmp_path, monkeypatch, text, chunk):
    from crossent import _tabular

    monkeypatch.setattr(_tabular, "_CHUNK", chunk)
    path = tmp_path / "d.csv"
    path.write_bytes(text.encode())
    used = []
    real = _tabular._try_fast
    monkeypatch.setattr(_tabular, "_try_fast", lambda *a: used.append(real(*a)) or used[-1])
    fast = _tabular.read_csv(path)
    Xf, yf = load_csv(path)
    # the C parser read it, except where it must stop: the reference reader reads those
    assert (used[0] is None) == (
        text in (CSV_VARIANTS["spaces-only line"], CSV_VARIANTS["fullwidth digit"])
    )
    monkeypatch.setattr(_tabular, "_try_fast", lambda *args: None)
    slow = _tabular.read_csv(path)
    Xs, ys = load_csv(path)
    assert (fast.header, fast.width, fast.n_rows, fast.numeric) == (
        slow.header, slow.width, slow.n_rows, slow.numeric,
    )  # fmt: skip
    np.testing.assert_array_equal(fast.values, slow.values)
    for j in range(fast.width):
        assert fast.text(j).tolist() == slow.text(j).tolist()
    assert [fast.line(i) for i in range(fast.n_rows)] == [slow.line(i) for i in range(slow.n_rows)]
    np.testing.assert_array_equal(Xf, Xs)
    assert yf.tolist() == ys.tolist() and yf.dtype == ys.dtype


def test_a_long_read_reports_its_progress(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},{i % 7},{i % 3}\n" for i in range(40000)))
    seen = []
    X, _ = load_csv(path, progress=lambda done, total: seen.append((done, total)))
    size = path.stat().st_size
    assert len(X) == 40000 and len(seen) >= 3 and seen[-1] == (size, size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and {t for _, t in seen} == {size}

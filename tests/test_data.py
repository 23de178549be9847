"""The IDX reader and the splits every run uses, on the real vendored files."""

from __future__ import annotations

import gzip
import shutil
import struct

import numpy as np
import pytest
import torch

from conftest import DATA_DIR, FASHION, FIRST_TEN, read_idx_numpy
from ganaug.data import load_split, prepare, read_idx, split_indices
from ganaug.errors import UserError

N_SMALL = 200  # images in the small files built from the head of the real training file


def images_file(raw_head: bytes, n: int = N_SMALL) -> bytes:
    """The first ``n`` real training images with a header that says ``n``."""
    return struct.pack(">IIII", 2051, n, 28, 28) + raw_head[16:16 + n * 784]


def labels_file(raw: bytes, n: int = N_SMALL) -> bytes:
    return struct.pack(">II", 2049, n) + raw[8:8 + n]


# ---------------------------------------------------------------- valid files

@pytest.mark.parametrize("split, size", [("train", 60000), ("test", 10000)])
def test_load_split_reads_the_official_files(split, size):
    x, y = load_split(DATA_DIR, "fashion-mnist", split)
    assert x.shape == (size, 28, 28) and x.dtype == torch.uint8
    assert y.shape == (size,) and y.dtype == torch.int64
    assert y[:10].tolist() == FIRST_TEN[split]
    assert y.bincount(minlength=10).tolist() == [size // 10] * 10
    # the pixel mean of the README's statistics proves the images are read whole and in order
    mean = {"train": 72.9404, "test": 73.1466}[split]
    assert x.double().mean().item() == pytest.approx(mean, abs=5e-4)


def test_read_idx_matches_an_independent_reader():
    images = read_idx(FASHION / "t10k-images-idx3-ubyte.gz", "images")
    assert np.array_equal(images, read_idx_numpy(FASHION / "t10k-images-idx3-ubyte.gz"))


def test_gunzipped_files_read_like_the_gzipped_ones(tmp_path, raw_idx):
    (tmp_path / "labels").write_bytes(raw_idx["t10k-labels"])
    (tmp_path / "images").write_bytes(images_file(raw_idx["train-images-head"]))
    (tmp_path / "images.gz").write_bytes(gzip.compress(images_file(raw_idx["train-images-head"])))
    labels = read_idx(tmp_path / "labels", "labels")
    assert labels.shape == (10000,) and labels[:10].tolist() == FIRST_TEN["test"]
    assert np.array_equal(labels, read_idx(FASHION / "t10k-labels-idx1-ubyte.gz", "labels"))
    raw, gz = read_idx(tmp_path / "images", "images"), read_idx(tmp_path / "images.gz", "images")
    assert raw.shape == (N_SMALL, 28, 28) and np.array_equal(raw, gz)
    full = read_idx_numpy(FASHION / "train-images-idx3-ubyte.gz")
    assert np.array_equal(raw, full[:N_SMALL])


def test_gunzipped_split_folder_loads(tmp_path, raw_idx):
    """load_split accepts a folder whose files were gunzipped in place (same names)."""
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(images_file(raw_idx["train-images-head"]))
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(labels_file(raw_idx["train-labels"]))
    x, y = load_split(tmp_path, "fashion-mnist", "train")
    assert x.shape == (N_SMALL, 28, 28) and y[:10].tolist() == FIRST_TEN["train"]


# ---------------------------------------------------------------- damaged files

def _flip(data: bytes, pos: int) -> bytes:
    b = bytearray(data)
    b[pos] ^= 0xFF
    return bytes(b)


def _patch(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack(">I", value) + data[offset + 4:]


CORRUPTIONS = {
    # name: (make bytes from a valid small images file, kind, fragment of the message)
    "wrong magic": (lambda f: _patch(f, 0, 2050), "images", "magic number 2050"),
    "labels read as images": (lambda f: labels_file(f), "images", "not an IDX images file"),
    "32x32 header": (lambda f: _patch(_patch(f, 8, 32), 12, 32), "images", "32x32"),
    "truncated data": (lambda f: f[:-100], "images", "truncated"),
    "trailing bytes": (lambda f: f + b"\0\0\0\0\0", "images", "longer than its header says"),
    "count too large": (lambda f: _patch(f, 4, N_SMALL + 1), "images", "truncated"),
    "truncated header": (lambda f: f[:10], "images", "shorter than an IDX header"),
    "empty file": (lambda f: b"", "images", "shorter than an IDX header"),
    "truncated label header": (lambda f: labels_file(f)[:6], "labels", "shorter than an IDX header"),
    "damaged gzip stream": (lambda f: _flip(gzip.compress(f, mtime=0), 60), "images", "damaged gzip"),
    "gzip CRC mismatch": (lambda f: _flip(gzip.compress(f, mtime=0), -6), "images", "damaged gzip"),
    "truncated gzip": (lambda f: gzip.compress(f, mtime=0)[:-1000], "images", "damaged gzip"),
}


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_damaged_file_is_a_clear_user_error(name, tmp_path, raw_idx):
    make, kind, fragment = CORRUPTIONS[name]
    valid = images_file(raw_idx["train-images-head"])
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(make(valid))
    with pytest.raises(UserError) as err:
        read_idx(path, kind)
    message = str(err.value)
    assert fragment in message and str(path) in message
    assert "\n" not in message


def _split_folder(tmp_path, images: bytes, labels: bytes):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(images, mtime=0))
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels, mtime=0))
    return folder


def test_image_and_label_counts_must_agree(tmp_path, raw_idx):
    _split_folder(tmp_path, images_file(raw_idx["train-images-head"]),
                  labels_file(raw_idx["train-labels"], N_SMALL - 1))
    with pytest.raises(UserError, match=f"{N_SMALL} images but {N_SMALL - 1} labels"):
        load_split(tmp_path, "fashion-mnist", "train")


def test_label_out_of_range(tmp_path, raw_idx):
    labels = bytearray(labels_file(raw_idx["train-labels"]))
    labels[8 + 17] = 10
    _split_folder(tmp_path, images_file(raw_idx["train-images-head"]), bytes(labels))
    with pytest.raises(UserError, match="label 10, outside 0..9"):
        load_split(tmp_path, "fashion-mnist", "train")


def test_missing_file_names_the_fix(tmp_path):
    (tmp_path / "fashion-mnist").mkdir()
    shutil.copy(FASHION / "t10k-labels-idx1-ubyte.gz", tmp_path / "fashion-mnist")
    with pytest.raises(UserError, match="missing data file .*t10k-images.*ganaug data download"):
        load_split(tmp_path, "fashion-mnist", "test")


def test_unknown_dataset():
    with pytest.raises(UserError, match="unknown dataset 'nope'.*fashion-mnist"):
        load_split(DATA_DIR, "nope", "train")


# ---------------------------------------------------------------- splits

@pytest.fixture(scope="module")
def train_labels(fashion_train_labels) -> torch.Tensor:
    return torch.from_numpy(fashion_train_labels.astype(np.int64))


def per_class(indices: torch.Tensor, labels: torch.Tensor) -> list[int]:
    return labels[indices].bincount(minlength=10).tolist()


def test_one_percent_is_60_per_class_6_of_them_validation(train_labels):
    train, val = split_indices(train_labels, 0.01, seed=0, val_fraction=0.1, num_classes=10)
    assert per_class(train, train_labels) == [54] * 10
    assert per_class(val, train_labels) == [6] * 10
    assert len(set(train.tolist()) | set(val.tolist())) == 600


def test_full_fraction_uses_everything_once(train_labels):
    train, val = split_indices(train_labels, 1.0, seed=0, val_fraction=0.1, num_classes=10)
    assert per_class(val, train_labels) == [600] * 10
    assert sorted(train.tolist() + val.tolist()) == list(range(60000))


def test_split_is_deterministic_per_seed_and_differs_across_seeds(train_labels):
    a = split_indices(train_labels, 0.01, 0, 0.1, 10)
    b = split_indices(train_labels, 0.01, 0, 0.1, 10)
    c = split_indices(train_labels, 0.01, 1, 0.1, 10)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])


def test_train_and_validation_are_disjoint(train_labels):
    for fraction in (0.01, 0.3, 1.0):
        train, val = split_indices(train_labels, fraction, 3, 0.1, 10)
        assert not set(train.tolist()) & set(val.tolist())


def test_subsets_are_nested_across_fractions(train_labels):
    small = split_indices(train_labels, 0.01, 5, 0.1, 10)
    large = split_indices(train_labels, 0.05, 5, 0.1, 10)
    small_all = set(small[0].tolist()) | set(small[1].tolist())
    large_all = set(large[0].tolist()) | set(large[1].tolist())
    assert small_all < large_all and len(large_all) == 3000
    assert set(small[1].tolist()) < set(large[1].tolist())  # validation grows with the subset


def test_unbalanced_classes_are_stratified():
    """MNIST's classes differ in size; each class contributes its own share."""
    _, y = load_split(DATA_DIR, "mnist", "train")
    train, val = split_indices(y, 0.01, 0, 0.1, 10)
    counts = y.bincount(minlength=10).tolist()
    subset = [a + b for a, b in zip(per_class(train, y), per_class(val, y))]
    assert subset == [round(n * 0.01) for n in counts]
    assert min(per_class(val, y)) >= 5


@pytest.mark.parametrize("fraction", [0.0, -1.0, 1.5, float("nan"), 0.0001, 0.0002])
def test_bad_fraction_is_a_user_error(train_labels, fraction):
    with pytest.raises(UserError, match="--fraction"):
        split_indices(train_labels, fraction, 0, 0.1, 10)


def test_smallest_usable_fraction_leaves_one_train_and_one_val_per_class(train_labels):
    train, val = split_indices(train_labels, 2 / 6000, 0, 0.1, 10)
    assert per_class(train, train_labels) == [1] * 10 and per_class(val, train_labels) == [1] * 10


def test_prepare_slices_the_real_files(fashion_test_set, fashion_train_labels):
    data = prepare(DATA_DIR, "fashion-mnist", 0.01, 0, 0.1)
    assert data.counts() == {"train": 540, "val": 60, "test": 10000}
    assert data.train_x.shape == (540, 28, 28) and data.val_x.shape == (60, 28, 28)
    # the test split is the official t10k file, whole and untouched
    test_images, test_labels = fashion_test_set
    assert np.array_equal(data.test_x.numpy(), test_images)
    assert np.array_equal(data.test_y.numpy(), test_labels)
    # training images and labels are the rows of the official training file at train_indices
    full = read_idx_numpy(FASHION / "train-images-idx3-ubyte.gz")
    idx = data.train_indices.numpy()
    assert np.array_equal(data.train_x.numpy(), full[idx])
    assert np.array_equal(data.train_y.numpy(), fashion_train_labels[idx])
    assert data.train_indices.max() < 60000

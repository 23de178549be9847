"""Real data: the dataset registry, a validating IDX reader, and the splits every run uses.

Images stay uint8 tensors in memory (60,000 x 28 x 28 is 47 MB); training code batches them by
index and scales to [0, 1] per batch. Normalisation lives inside the models, so a model file takes
raw [0, 1] pixels wherever it runs (PyTorch, ONNX, the browser).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import UserError

IMAGE_MAGIC = 2051  # IDX: unsigned byte, 3 dimensions
LABEL_MAGIC = 2049  # IDX: unsigned byte, 1 dimension
GZIP_MAGIC = b"\x1f\x8b"
IMAGE_SIZE = 28
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


@dataclass(frozen=True)
class DatasetInfo:
    """What ganaug needs to know about one data set."""

    name: str
    class_names: tuple[str, ...]
    mean: float  # pixel mean of the training split, on the [0, 1] scale
    std: float  # population std of the training split, on the [0, 1] scale
    sizes: dict  # split -> number of images
    # file name -> (size in bytes, SHA-256 of the .gz): the official distribution files
    checksums: dict
    mirrors: tuple[str, ...]  # base URLs that serve the four .gz files, tried in order
    licence: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        mean=0.2860, std=0.3530,
        sizes={"train": 60000, "test": 10000},
        checksums={
            "train-images-idx3-ubyte.gz": (26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
            "train-labels-idx1-ubyte.gz": (29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
            "t10k-images-idx3-ubyte.gz": (4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
            "t10k-labels-idx1-ubyte.gz": (5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        licence="MIT, Copyright (c) 2017 Zalando SE",
    ),
    "mnist": DatasetInfo(
        name="mnist",
        class_names=tuple(str(d) for d in range(10)),
        mean=0.1307, std=0.3081,
        sizes={"train": 60000, "test": 10000},
        checksums={
            "train-images-idx3-ubyte.gz": (9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
            "train-labels-idx1-ubyte.gz": (28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
            "t10k-images-idx3-ubyte.gz": (1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
            "t10k-labels-idx1-ubyte.gz": (4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        },
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        licence="CC BY-SA 3.0, Yann LeCun and Corinna Cortes",
    ),
}


def get_dataset(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]


def dataset_dir(data_dir: str | Path, name: str) -> Path:
    return Path(data_dir) / name


# ---------------------------------------------------------------- IDX reading

def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise UserError(f"missing data file {path}; run `ganaug data download --dataset "
                        f"{path.parent.name}` or pass --data-dir")
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            raise UserError(f"{path} is a damaged gzip file ({exc}); download it again "
                            "with `ganaug data download`") from None
    return raw


def read_idx(path: str | Path, kind: str) -> np.ndarray:
    """Read an IDX file (gzip or raw) of ``kind`` 'images' or 'labels', checking its structure.

    Every field a damaged or wrong file can break is checked: magic number, dimensions,
    the item count against the bytes present (truncation and trailing garbage).
    """
    path = Path(path)
    raw = _read_bytes(path)
    magic, ndim, header = (IMAGE_MAGIC, 3, 16) if kind == "images" else (LABEL_MAGIC, 1, 8)
    if len(raw) < header:
        raise UserError(f"{path} is truncated: {len(raw)} bytes, shorter than an IDX header")
    found = struct.unpack(">I", raw[:4])[0]
    if found != magic:
        raise UserError(f"{path} is not an IDX {kind} file (magic number {found}, expected "
                        f"{magic}); check that the file is the right one")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if kind == "images" and dims[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise UserError(f"{path} holds {dims[1]}x{dims[2]} images; ganaug expects "
                        f"{IMAGE_SIZE}x{IMAGE_SIZE}")
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "longer than its header says"
        raise UserError(f"{path} is {problem}: {len(raw)} bytes, header implies {expected}; "
                        "download it again with `ganaug data download`")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def load_split(data_dir: str | Path, dataset: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 [N, 28, 28] and labels as int64 [N] of one official split."""
    info = get_dataset(dataset)
    folder = dataset_dir(data_dir, dataset)
    image_file, label_file = SPLIT_FILES[split]
    images = read_idx(folder / image_file, "images")
    labels = read_idx(folder / label_file, "labels")
    if len(images) != len(labels):
        raise UserError(f"{folder}: {len(images)} images but {len(labels)} labels in the "
                        f"{split} split; the files do not belong together")
    if labels.size and labels.max() >= info.num_classes:
        raise UserError(f"{folder / label_file} has label {int(labels.max())}, outside "
                        f"0..{info.num_classes - 1}")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


# ---------------------------------------------------------------- splits

def stratified_order(labels: torch.Tensor, seed: int, num_classes: int) -> list[np.ndarray]:
    """A seeded random order of the indices of each class.

    Taking a prefix of each class's order gives a stratified subset; prefixes are nested, so the
    1% subset of a seed is inside its 5% subset, and so on.
    """
    rng = np.random.default_rng(seed)
    y = labels.numpy()
    return [rng.permutation(np.flatnonzero(y == c)) for c in range(num_classes)]


def approx_train_images(dataset: str, fraction: float, val_fraction: float) -> int:
    """About how many real training images a run with ``fraction`` gets (its subset less the
    validation part; ``split_indices`` rounds per class), without loading the data."""
    return round(get_dataset(dataset).sizes["train"] * fraction * (1 - val_fraction))


def per_class_count(available: int, fraction: float) -> int:
    return max(1, int(round(available * fraction)))


def split_indices(labels: torch.Tensor, fraction: float, seed: int, val_fraction: float,
                  num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of (train, validation) inside the official training split.

    The subset is a stratified ``fraction`` of each class; the validation part is a stratified
    ``val_fraction`` of that subset (at least one image per class), so a run never sees labels
    beyond its own subset. Deterministic for a given seed. This is *the* split function: a
    generator that augments a classifier trains on the same ``train`` indices.
    """
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"--fraction must be in (0, 1], got {fraction}")
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"validation fraction must be in (0, 1), got {val_fraction}")
    train, val = [], []
    for order in stratified_order(labels, seed, num_classes):
        take = per_class_count(len(order), fraction)
        if take < 2:
            raise UserError(f"--fraction {fraction} leaves {take} image(s) of a class; need at "
                            "least 2 per class (one for training, one for validation)")
        n_val = min(take - 1, max(1, int(round(take * val_fraction))))
        val.append(order[:n_val])
        train.append(order[n_val:take])
    return (torch.from_numpy(np.sort(np.concatenate(train))),
            torch.from_numpy(np.sort(np.concatenate(val))))


@dataclass
class RealData:
    """The three splits of one run, in memory: uint8 images [N, 28, 28], int64 labels [N]."""

    info: DatasetInfo
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    train_indices: torch.Tensor  # positions in the official training split

    def counts(self) -> dict[str, int]:
        return {"train": len(self.train_y), "val": len(self.val_y), "test": len(self.test_y)}


_CACHE: dict[tuple[str, str, str], tuple[torch.Tensor, torch.Tensor]] = {}


def load_cached(data_dir: str | Path, dataset: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``load_split`` memoised per process (a study loads the same files many times)."""
    key = (os.path.abspath(data_dir), dataset, split)
    if key not in _CACHE:
        _CACHE[key] = load_split(data_dir, dataset, split)
    return _CACHE[key]


def prepare(data_dir: str | Path, dataset: str, fraction: float, seed: int,
            val_fraction: float) -> RealData:
    info = get_dataset(dataset)
    x, y = load_cached(data_dir, dataset, "train")
    test_x, test_y = load_cached(data_dir, dataset, "test")
    train_idx, val_idx = split_indices(y, fraction, seed, val_fraction, info.num_classes)
    return RealData(info, x[train_idx], y[train_idx], x[val_idx], y[val_idx], test_x, test_y,
                    train_idx)

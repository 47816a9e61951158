"""Sequential MNIST (S-MNIST) and permuted sequential MNIST (PS-MNIST): 784 steps x 1 pixel, 10 classes.

Layout expected in ``data_dir`` (or ``<data_dir>/MNIST/raw``), the four IDX files, plain or gzipped::

    train-images-idx3-ubyte[.gz]   magic 2051, 60000 x 28 x 28 uint8
    train-labels-idx1-ubyte[.gz]   magic 2049, 60000 uint8
    t10k-images-idx3-ubyte[.gz]    magic 2051, 10000 x 28 x 28 uint8
    t10k-labels-idx1-ubyte[.gz]    magic 2049, 10000 uint8

The IDX files are read directly (no torchvision). Pixels are scaled to [0, 1] and normalised with
(x − 0.1307) / 0.3081 (the reference's ``Normalize``), read row-major as one pixel per step. PS-MNIST applies one
fixed permutation ``torch.randperm(784)`` drawn from ``torch.Generator().manual_seed(perm_seed)``; seed 0 gives the
reference's permutation (its first draw after ``torch.manual_seed(0)``). A stratified ``val_fraction`` of the
training file is held out for model selection. The uint8 pixels are already the compact form, so nothing is cached:
normalisation happens per batch.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from .base import (
    BatchDataset,
    BenchmarkDataModule,
    CorruptDataError,
    DatasetNotFoundError,
    missing_data_message,
    require_data_dir,
    stratified_holdout,
)

MNIST_SOURCE = "http://yann.lecun.com/exdb/mnist/ (or any mirror of the four *-ubyte.gz files)"
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
LAYOUT = "\n".join(f"  <data_dir>/{f}[.gz]" for f in FILES.values()) + "\n  (or the same under <data_dir>/MNIST/raw/)"
MEAN, STD = 0.1307, 0.3081
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4")}


def read_idx(path: Path | str, expected_ndim: int | None = None) -> np.ndarray:
    """Parse one IDX file (optionally gzipped): 2 zero bytes, type code, ndim, big-endian uint32 dims, data."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as err:
        raise CorruptDataError(f"{path}: cannot be read ({err}); the file is truncated or corrupt") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise CorruptDataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    if expected_ndim is not None and ndim != expected_ndim:
        magic = 2048 + expected_ndim
        raise CorruptDataError(f"{path}: IDX file with {ndim} dimensions, expected {expected_ndim} (magic {magic})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise CorruptDataError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[raw[2]])
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise CorruptDataError(
            f"{path}: {len(raw)} bytes but the header {dims} of {dtype} needs {expected}; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def find_idx(root: Path, stem: str) -> Path | None:
    for base in (root, root / "MNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (base / name).is_file():
                return base / name
    return None


def load_split(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 784) uint8, labels (N,) int64) of ``train`` or ``test``, validated."""
    img_path, lab_path = find_idx(root, FILES[f"{split}_images"]), find_idx(root, FILES[f"{split}_labels"])
    images = read_idx(img_path, 3)
    labels = read_idx(lab_path, 1)
    if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
        raise CorruptDataError(f"{img_path}: expected uint8 images of 28 x 28, got {images.dtype} {images.shape[1:]}")
    if labels.shape[0] != images.shape[0]:
        raise CorruptDataError(f"{lab_path}: {labels.shape[0]} labels for {images.shape[0]} images in {img_path}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise CorruptDataError(f"{lab_path}: labels must lie in 0..9, got [{labels.min()}, {labels.max()}]")
    return images.reshape(len(images), 784), labels.astype(np.int64)


def permutation(seed: int, length: int = 784) -> torch.Tensor:
    """The PS-MNIST pixel order: step t reads pixel ``perm[t]``."""
    return torch.randperm(length, generator=torch.Generator().manual_seed(seed))


class PixelSequenceDataset(BatchDataset):
    """uint8 pixel rows -> normalised (B, 784, 1) float32 sequences, optionally permuted."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray, perm: torch.Tensor | None) -> None:
        self.pixels = pixels
        self.labels = np.asarray(labels, dtype=np.int64)
        self.perm = perm

    def __len__(self) -> int:
        return len(self.labels)

    def get_batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(self.pixels[indices])).to(torch.float32)
        x = (x / 255.0 - MEAN) / STD
        if self.perm is not None:
            x = x[:, self.perm]
        return x.unsqueeze(-1), torch.from_numpy(self.labels[indices])


class SequentialMNISTDataModule(BenchmarkDataModule):
    """S-MNIST (``permuted=False``) or PS-MNIST (``permuted=True``): inputs (B, 784, 1).

    Args:
        data_dir: folder with the four IDX files (see module docstring).
        permuted: apply the fixed pixel permutation (PS-MNIST).
        perm_seed: seed of that permutation (0 = the reference's).
        val_fraction: share of the training file held out (stratified) for validation.
        split_seed: seed of that split.
    """

    name = "mnist"

    def __init__(
        self,
        data_dir: str | None = None,
        permuted: bool = False,
        perm_seed: int = 0,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(data_dir, batch_size, num_workers, None, False, pin_memory)
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        self.permuted = bool(permuted)
        self.perm_seed = int(perm_seed)
        self.val_fraction = float(val_fraction)
        self.split_seed = int(split_seed)
        self.input_size = 1
        self.num_classes = 10
        self.num_steps = 784
        self.perm = permutation(self.perm_seed) if self.permuted else None

    def check_data(self) -> Path:
        root = require_data_dir("MNIST", self.data_dir, LAYOUT, MNIST_SOURCE)
        missing = [f + "[.gz]" for f in FILES.values() if find_idx(root, f) is None]
        if missing:
            raise DatasetNotFoundError(missing_data_message("MNIST", root, missing, LAYOUT, MNIST_SOURCE))
        return root

    def build_splits(self) -> dict[str, BatchDataset]:
        root = self.check_data()
        train_x, train_y = load_split(root, "train")
        test_x, test_y = load_split(root, "test")
        kept, held = stratified_holdout(train_y, self.val_fraction, self.split_seed)
        return {
            "train": PixelSequenceDataset(train_x[kept], train_y[kept], self.perm),
            "val": PixelSequenceDataset(train_x[held], train_y[held], self.perm),
            "test": PixelSequenceDataset(test_x, test_y, self.perm),
        }

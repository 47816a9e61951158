"""Shared pieces of the benchmark DataModules: errors, layout checks, splits and the batch contract.

Every DataModule here yields batches ``(inputs, targets)``: ``inputs`` float32, batch-first ``(B, T, M)``;
``targets`` int64 ``(B,)``. ``input_size`` (M), ``num_classes`` and ``num_steps`` (T) are plain attributes set in
the constructor, so a CLI can link them to the model before any data is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class DatasetNotFoundError(FileNotFoundError):
    """The dataset directory is missing or incomplete; the message names the expected layout and the source."""


class CorruptDataError(ValueError):
    """A source file exists but cannot be read as the published format (truncated, wrong keys, bad values)."""


def missing_data_message(
    name: str, data_dir: Path | str | None, missing: Sequence[str], layout: str, source: str
) -> str:
    """One error text for every dataset: what is missing, the expected layout, and where the data is published."""
    shown = ", ".join(str(m) for m in list(missing)[:5]) + (" ..." if len(missing) > 5 else "")
    return (
        f"{name} data not found in data_dir={str(data_dir)!r}: missing {shown}.\n"
        f"Expected layout:\n{layout.rstrip()}\n"
        f"Get the data from: {source}\n"
        f"Then point the DataModule's `data_dir` (YAML: data.init_args.data_dir) at that folder."
    )


def require_data_dir(name: str, data_dir: Path | str | None, layout: str, source: str) -> Path:
    """Return ``data_dir`` as a Path, or raise DatasetNotFoundError naming the layout when it is unset or absent."""
    if data_dir is None or str(data_dir) == "":
        raise DatasetNotFoundError(missing_data_message(name, data_dir, ["data_dir (not set)"], layout, source))
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DatasetNotFoundError(
            missing_data_message(name, data_dir, [f"{path} (no such directory)"], layout, source)
        )
    return path


def require_files(name: str, data_dir: Path, files: Sequence[str], layout: str, source: str) -> list[Path]:
    """Check that every relative path in ``files`` exists below ``data_dir``; return the absolute paths."""
    paths = [data_dir / f for f in files]
    missing = [f for f, p in zip(files, paths) if not p.exists()]
    if missing:
        raise DatasetNotFoundError(missing_data_message(name, data_dir, missing, layout, source))
    return paths


def stratified_holdout(
    labels: np.ndarray, fraction: float, seed: int, indices: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` (default: all) into (kept, held_out), stratified by ``labels[indices]``, seeded.

    Thin wrapper over scikit-learn's ``train_test_split`` so the split is the well-known one for a given seed.
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation/test fraction must lie in (0, 1), got {fraction}")
    idx = np.arange(len(labels)) if indices is None else np.asarray(indices)
    kept, held = train_test_split(idx, test_size=fraction, stratify=labels[idx], shuffle=True, random_state=seed)
    return np.sort(kept), np.sort(held)


def _passthrough(batch: Any) -> Any:
    """Collate function for datasets that build whole batches in ``__getitems__`` (top level: picklable)."""
    return batch


class BatchDataset(Dataset):
    """Map-style dataset that builds a whole batch at once.

    Subclasses implement ``get_batch(indices) -> (inputs (B, T, M) float32, targets (B,) int64)``. The DataLoader's
    fetcher calls ``__getitems__`` with the batch's indices (torch >= 2.1), so batches are assembled with a few
    vectorised operations instead of B per-sample tensors plus a stack.
    """

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def get_batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.get_batch(np.asarray(indices, dtype=np.int64))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for dataset of length {len(self)}")
        x, y = self.get_batch(np.asarray([index % len(self)], dtype=np.int64))
        return x[0], y[0]


class BenchmarkDataModule(pl.LightningDataModule):
    """Base class: loaders over three ``BatchDataset`` splits built by ``build_splits``.

    Subclasses set ``input_size``, ``num_classes``, ``num_steps`` in ``__init__`` and implement ``check_data``
    (fast layout check with a clear error) and ``build_splits`` (read/cache/preprocess, return the three datasets).
    """

    name = "dataset"

    def __init__(
        self,
        data_dir: str | None = None,
        batch_size: int = 100,
        num_workers: int = 0,
        cache_dir: str | None = None,
        use_cache: bool = True,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.data_dir = data_dir
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.cache_dir = cache_dir
        self.use_cache = bool(use_cache)
        self.pin_memory = bool(pin_memory)
        self._splits: dict[str, BatchDataset] | None = None

    # -- to implement -------------------------------------------------------------------------------------------
    def check_data(self) -> Path:  # pragma: no cover - abstract
        """Raise DatasetNotFoundError unless every expected source file is present; return the data directory."""
        raise NotImplementedError

    def build_splits(self) -> dict[str, BatchDataset]:  # pragma: no cover - abstract
        raise NotImplementedError

    def train_sampler(self, dataset: BatchDataset) -> Sampler | None:
        """Optional sampler for the training split (None: plain shuffling)."""
        return None

    # -- Lightning hooks ----------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        # Called once per node before training: fail early on a bad path and fill the cache.
        self.check_data()
        self._load()

    def setup(self, stage: str | None = None) -> None:
        self._load()

    def _load(self) -> dict[str, BatchDataset]:
        if self._splits is None:
            self.check_data()
            self._splits = self.build_splits()
        return self._splits

    def dataset(self, split: str) -> BatchDataset:
        """The ``train``/``val``/``test`` dataset (loads or builds the cache on first use)."""
        splits = self._load()
        if split not in splits:
            raise KeyError(f"unknown split {split!r}; expected one of {sorted(splits)}")
        return splits[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        ds = self.dataset(split)
        sampler = self.train_sampler(ds) if split == "train" else None
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=_passthrough,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

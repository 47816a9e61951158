"""Shared pieces of the benchmark DataModules: errors, layout checks, splits and the batch contract.

Every DataModule here yields batches ``(inputs, targets)``: ``inputs`` float32, batch-first ``(B, T, M)``;
``targets`` int64 ``(B,)``. ``input_size`` (M), ``num_classes`` and ``num_steps`` (T) are plain attributes set in
the constructor, so a CLI can link them to the model before any data is read.

Training loaders resume exactly, also from a checkpoint saved mid-epoch: the order of every epoch is a function of
``(seed, epoch)`` only (:class:`EpochSampler`; no global RNG, which checkpoints do not hold), and the loader is a
:class:`ResumableDataLoader`, whose ``state_dict`` (epoch, batches handed out) Lightning stores in the checkpoint and
gives back on resume, so the resumed epoch continues after the last batch trained on instead of starting over. The
loader takes the epoch of each pass from the trainer (``trainer.current_epoch``, :func:`fit_epoch`), not from the
``set_epoch`` calls of Lightning's fit loop, which run one epoch ahead (one more per resume) after a fit resumes from a
checkpoint written at an epoch's end.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, WeightedRandomSampler


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


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A torch generator for one epoch, seeded from ``(seed, epoch)`` (numpy's SeedSequence mixes the two)."""
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


def global_seed() -> int:
    """The run's seed as Lightning's ``seed_everything`` publishes it (``PL_GLOBAL_SEED``), else 0."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class EpochSampler(DistributedSampler):
    """Rank ``rank``'s share of a per-epoch order of ``size`` indices that depends only on ``(seed, epoch)``.

    Epoch ``e`` visits ``epoch_order(e)`` (a permutation, or ``0..size-1`` without ``shuffle``), padded by wrapping
    around to a multiple of ``num_replicas`` and dealt out round robin: rank ``r`` takes positions ``r, r + w, ...``,
    as ``DistributedSampler`` does (it is one, so Lightning keeps it under DDP instead of injecting its own). The order
    never touches the global RNG, so a run resumed from a checkpoint sees the same epochs as an uninterrupted one.
    ``skip_next(n)`` drops the first ``n`` indices of the next pass only (mid-epoch resume).
    """

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0) -> None:
        if size < 1:
            raise ValueError(f"EpochSampler needs at least one index, got size={size}")
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.size = int(size)
        self._skip = 0

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """All ranks' indices of epoch ``epoch`` in visiting order (int64, length ``size``)."""
        if not self.shuffle:
            return torch.arange(self.size)
        return torch.randperm(self.size, generator=epoch_generator(self.seed, epoch))

    def skip_next(self, count: int) -> None:
        """Leave out the first ``count`` indices of this rank's next pass; later passes are whole again."""
        if count < 0:
            raise ValueError(f"cannot skip a negative number of indices, got {count}")
        self._skip = int(count)

    def __iter__(self) -> Iterator[int]:
        # A generator: the pass (and the skip it takes) begins at its first index, not when iter() is called.
        # DataLoaders call iter() on their sampler more than once per pass (workers) or late (BatchSampler).
        skip, self._skip = self._skip, 0
        order = self.epoch_order(self.epoch).tolist()
        order += (order * (self.total_size // len(order) + 1))[: self.total_size - len(order)]
        yield from order[self.rank : self.total_size : self.num_replicas][skip:]


class WeightedEpochSampler(EpochSampler, WeightedRandomSampler):
    """:class:`EpochSampler` whose epoch is ``len(weights)`` draws with replacement, index ``i`` with probability
    ``weights[i] / sum(weights)`` (a ``WeightedRandomSampler``, e.g. for class balance), drawn from ``(seed, epoch)``.

    ``num_samples`` is this rank's share of the draws (all of them on one process), as in ``DistributedSampler``.
    """

    def __init__(self, weights: Sequence[float] | torch.Tensor, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        w = torch.as_tensor(weights, dtype=torch.float64)
        if w.dim() != 1 or len(w) == 0 or not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError("weights must be a non-empty 1-D sequence of finite values >= 0 with a positive sum")
        EpochSampler.__init__(self, len(w), num_replicas, rank, shuffle=True, seed=seed)
        # WeightedRandomSampler's attributes (its own __init__ would reset num_samples to all draws).
        self.weights, self.replacement, self.generator = w, True, None

    def epoch_order(self, epoch: int) -> torch.Tensor:
        gen = epoch_generator(self.seed, epoch)
        return torch.multinomial(self.weights, self.size, replacement=True, generator=gen)


def fit_epoch(datamodule: pl.LightningDataModule) -> int | None:
    """The epoch that the trainer attached to ``datamodule`` is fitting (``trainer.current_epoch``), else None.

    This is the epoch to train on when a training pass starts, also in a resumed fit. Lightning's fit loop passes
    its count of processed epochs to ``set_epoch`` instead (``FitLoop.on_advance_start``), and that count is one
    ahead after every resume from a checkpoint written in ``on_train_epoch_end`` (``ModelCheckpoint`` with
    ``save_on_train_epoch_end``, its default when validation runs once per epoch or never): with ``max_steps`` set,
    the resumed fit ends that epoch a second time (``RESTARTED_ON_EPOCH_END``) and counts it processed again
    (``FitLoop.on_advance_end``), while ``current_epoch`` (the completed count) stays right.
    """
    trainer = datamodule.trainer
    if trainer is None or trainer.state.fn != TrainerFn.FITTING:
        return None
    return trainer.current_epoch


def set_sampler_epoch(loader: DataLoader, epoch: int) -> None:
    """``set_epoch(epoch)`` on the loader's sampler and on its batch sampler's sampler, as Lightning does."""
    samplers = [getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)]
    for i, sampler in enumerate(samplers):
        if sampler is not None and all(sampler is not other for other in samplers[:i]):
            set_epoch = getattr(sampler, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` that a checkpoint saved mid-epoch resumes exactly (Lightning's ``_Stateful`` protocol).

    ``state_dict()`` is ``{"epoch", "batches"}``: the sampler epoch of the current pass and how many batches it has
    handed out. Lightning saves it with the fit loop and calls ``load_state_dict`` on resume; the next pass of that
    same epoch then starts after those batches. That count is the number of batches the training loop has taken:
    with a sized loader Lightning's fetcher does not read ahead, and the workers' own prefetching (``num_workers``
    > 0) happens below this count. A checkpoint saved between epochs carries the finished epoch, so the next epoch
    (a different sampler epoch) is whole. Under DDP each rank skips the same number of its own batches.

    The sampler should order each epoch by ``(seed, epoch)`` alone (:class:`EpochSampler`,
    :class:`~lightning_tasks.data.xor.EpochBatchSampler`); with ``skip_next`` it skips indices without loading
    them, otherwise the skipped batches are loaded and dropped. ``__iter__`` is lazy: the pass starts, and reads
    the sampler's epoch, at its first batch, because Lightning creates the first iterator of a resumed run before
    it calls ``set_epoch``.

    ``epoch_fn`` (keyword): called when a pass starts; when it returns an epoch, the sampler is set to it first,
    overriding ``set_epoch``. The DataModules pass the trainer's epoch (:func:`fit_epoch`), which stays right when
    Lightning's ``set_epoch`` does not (after resuming from a checkpoint written at an epoch's end). Without it, or
    when it returns None (no trainer fitting), the pass uses the epoch the sampler was last set to.
    """

    def __init__(self, *args: Any, epoch_fn: Callable[[], int | None] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epoch_fn = epoch_fn
        self._epoch: int | None = None
        self._batches = 0
        self._resume: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        if self._resume is not None:  # loaded but not iterated yet: still the same position
            return dict(self._resume)
        return {"epoch": self._epoch, "batches": self._batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if set(state_dict) != {"epoch", "batches"} or int(state_dict["batches"]) < 0:
            raise ValueError(
                f"not a ResumableDataLoader state (expected keys 'epoch' and 'batches' >= 0): {state_dict!r}"
            )
        self._resume = {"epoch": state_dict["epoch"], "batches": int(state_dict["batches"])}

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch_fn() if self.epoch_fn is not None else None
        if epoch is not None:
            set_sampler_epoch(self, epoch)
        epoch = getattr(self.sampler, "epoch", None)
        skip = 0
        if self._resume is not None:
            if self._resume["epoch"] == epoch:
                skip = self._resume["batches"]
            self._resume = None
        self._epoch, self._batches = epoch, skip
        skip_next = getattr(self.sampler, "skip_next", None)
        if skip and callable(skip_next):
            # Whole batches of sampler indices (``batch_size=None``: one index per batch), taken by the pass that
            # the iterator below starts.
            skip_next(skip * (self.batch_size or 1))
            skip = 0
        batches = super().__iter__()
        for _ in range(skip):  # samplers that cannot skip: load and drop
            next(batches, None)
        for batch in batches:
            self._batches += 1
            yield batch


def shard(trainer: pl.Trainer | None) -> tuple[int, int]:
    """``(world_size, global_rank)`` of the attached trainer, ``(1, 0)`` without one."""
    if trainer is None:
        return 1, 0
    return trainer.world_size, trainer.global_rank


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
        self.shuffle_seed: int | None = None

    # -- to implement -------------------------------------------------------------------------------------------
    def check_data(self) -> Path:  # pragma: no cover - abstract
        """Raise DatasetNotFoundError unless every expected source file is present; return the data directory."""
        raise NotImplementedError

    def build_splits(self) -> dict[str, BatchDataset]:  # pragma: no cover - abstract
        raise NotImplementedError

    def train_sampler(self, dataset: BatchDataset) -> Sampler:
        """Sampler of the training split: a fresh permutation per epoch from ``(shuffle_seed, epoch)``, this rank's
        share of it under DDP. ``shuffle_seed`` (attribute) defaults to the run's ``seed_everything`` seed."""
        world, rank = shard(self.trainer)
        return EpochSampler(len(dataset), world, rank, shuffle=True, seed=self.epoch_seed())

    def epoch_seed(self) -> int:
        """Seed of the per-epoch training order: ``shuffle_seed`` when set, else the run's global seed."""
        return global_seed() if self.shuffle_seed is None else int(self.shuffle_seed)

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

    def _loader(self, split: str) -> DataLoader:
        ds = self.dataset(split)
        train = split == "train"
        # Training: an epoch-seeded sampler and a loader that resumes mid-epoch; evaluation: in order.
        return (ResumableDataLoader if train else DataLoader)(
            ds,
            batch_size=self.batch_size,
            sampler=self.train_sampler(ds) if train else None,
            num_workers=self.num_workers,
            collate_fn=_passthrough,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            **({"epoch_fn": functools.partial(fit_epoch, self)} if train else {}),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

"""Delayed and multi-timescale spiking XOR (DH-SNN paper, Fig. 3 and Fig. 4; spec dhsnn.md §7.1, §7.2).

Both tasks present Poisson-like spike patterns whose rate is "low" or "high" and ask for the XOR of two of them.
The generators follow the reference scripts (``delayed_xor/delayed_xor_snn.py``, ``multitimescale_xor/multi_xor_snn.py``)
channel for channel and step for step; labels are per time step, with ``-100`` (CrossEntropy's ``ignore_index``) on
every step that is not scored.

Delayed XOR (defaults: T = 200, 20 channels)::

    background  Bernoulli(noise_rate) on every channel and step
    pattern 1   Bernoulli(rate[a]) on all channels, steps [0, coding_time)            OR-ed into the background
    pattern 2   Bernoulli(rate[b]) on all channels, steps [T - coding_time, T)
    label       a XOR b, scored on steps t > T - coding_time (the reference's 191..199)

Multi-timescale XOR (defaults: T = 100, 2 x 20 channels)::

    signal 1    Bernoulli(rate[a]) on channels [0, C), steps [0, start_time)
    signal 2    for k < (T - start) // (remain + coding): Bernoulli(rate[b_k]) on channels [C, 2C),
                steps [start + k P + remain, start + (k + 1) P) with P = remain + coding
    label       a XOR b_k on steps [start + k P, start + (k + 1) P), scored where t > start and
                (t - start) % P > remain (9 of the 10 coding steps of each pattern)

Training batches are generated afresh for every epoch (as the reference does) but deterministically: batch ``i`` of
epoch ``e`` depends only on ``(seed, e, i)``, so runs repeat and resumed runs continue with the same data, also from
a checkpoint saved mid-epoch (the training loader is a :class:`~lightning_tasks.data.base.ResumableDataLoader`: the
resumed epoch goes on after the last batch trained on) or at an epoch's end (the loader takes the epoch from the
trainer). The validation and test sets are fixed (the reference reports only training accuracy).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from jsonargparse.typing import ClosedUnitInterval, NonNegativeInt, PositiveInt
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from lightning_tasks.data.base import ResumableDataLoader, fit_epoch, shard

IGNORE_INDEX = -100

# Streams of the seed tree: one per split, so changing the size of one split never changes another.
_TRAIN, _VAL, _TEST = 0, 1, 2


def _generator(*key: int) -> torch.Generator:
    """A torch generator seeded from an integer key path (numpy's SeedSequence mixes the parts)."""
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1]))


def _check_rates(channel_rate: Sequence[float], noise_rate: float) -> tuple[float, float]:
    if len(channel_rate) != 2:
        raise ValueError(f"channel_rate must be a (low, high) pair, got {channel_rate!r}")
    low, high = float(channel_rate[0]), float(channel_rate[1])
    for name, value in (("channel_rate[0]", low), ("channel_rate[1]", high), ("noise_rate", noise_rate)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a spike probability in [0, 1], got {value!r}")
    return low, high


def _pattern(batch: int, steps: int, channels: int, rate: Tensor, gen: torch.Generator) -> Tensor:
    """Bernoulli spikes ``(batch, steps, channels)`` with one rate per sample."""
    return torch.rand(batch, steps, channels, generator=gen) < rate.view(-1, 1, 1)


def delayed_xor(
    batch_size: int,
    generator: torch.Generator,
    time_steps: int = 200,
    channel_size: int = 20,
    channel_rate: Sequence[float] = (0.2, 0.6),
    noise_rate: float = 0.01,
    coding_time: int = 10,
) -> tuple[Tensor, Tensor]:
    """One batch of the delayed spiking XOR: inputs ``(B, T, C)`` float32 and per-step targets ``(B, T)`` int64."""
    rates = torch.tensor(_check_rates(channel_rate, noise_rate))
    if time_steps < 2 * coding_time or coding_time < 1:
        raise ValueError(
            f"time_steps must hold both patterns (>= 2 * coding_time = {2 * coding_time}) and coding_time must be "
            f">= 1, got time_steps={time_steps}, coding_time={coding_time}"
        )
    values = torch.rand(batch_size, time_steps, channel_size, generator=generator) <= noise_rate
    first = torch.randint(2, (batch_size,), generator=generator)
    values[:, :coding_time] |= _pattern(batch_size, coding_time, channel_size, rates[first], generator)
    second = torch.randint(2, (batch_size,), generator=generator)
    values[:, time_steps - coding_time :] |= _pattern(batch_size, coding_time, channel_size, rates[second], generator)
    targets = torch.full((batch_size, time_steps), IGNORE_INDEX, dtype=torch.int64)
    targets[:, time_steps - coding_time + 1 :] = (first ^ second).unsqueeze(1)
    return values.float(), targets


def multitimescale_xor(
    batch_size: int,
    generator: torch.Generator,
    time_steps: int = 100,
    channel_size: int = 20,
    channel_rate: Sequence[float] = (0.2, 0.6),
    noise_rate: float = 0.01,
    coding_time: int = 10,
    remain_time: int = 5,
    start_time: int = 10,
) -> tuple[Tensor, Tensor]:
    """One batch of the multi-timescale spiking XOR: inputs ``(B, T, 2C)`` float32, per-step targets ``(B, T)``."""
    rates = torch.tensor(_check_rates(channel_rate, noise_rate))
    period = coding_time + remain_time
    if coding_time < 1 or start_time < 1 or time_steps < start_time + period:
        raise ValueError(
            f"time_steps must hold signal 1 and at least one signal-2 pattern (>= start_time + remain_time + "
            f"coding_time = {start_time + period}), with coding_time, start_time >= 1; got time_steps={time_steps}, "
            f"start_time={start_time}, remain_time={remain_time}, coding_time={coding_time}"
        )
    values = torch.rand(batch_size, time_steps, 2 * channel_size, generator=generator) <= noise_rate
    first = torch.randint(2, (batch_size,), generator=generator)
    values[:, :start_time, :channel_size] |= _pattern(batch_size, start_time, channel_size, rates[first], generator)
    targets = torch.full((batch_size, time_steps), IGNORE_INDEX, dtype=torch.int64)
    for k in range((time_steps - start_time) // period):
        second = torch.randint(2, (batch_size,), generator=generator)
        begin = start_time + k * period
        on = slice(begin + remain_time, begin + period)
        values[:, on, channel_size:] |= _pattern(batch_size, coding_time, channel_size, rates[second], generator)
        # Scored: (t - start) % period > remain, i.e. the coding steps after the first one.
        targets[:, begin + remain_time + 1 : begin + period] = (first ^ second).unsqueeze(1)
    return values.float(), targets


class _FreshBatches(Dataset):
    """Training "dataset" whose items are whole batches, generated from ``(seed, epoch, index)`` on demand."""

    def __init__(self, make_batch, seed: int) -> None:
        self.make_batch = make_batch
        self.seed = seed

    def __getitem__(self, key: tuple[int, int]) -> tuple[Tensor, Tensor]:
        epoch, index = key
        return self.make_batch(_generator(self.seed, _TRAIN, epoch, index))


class EpochBatchSampler(DistributedSampler):
    """Yields ``(epoch, batch_index)`` keys; ``set_epoch`` (called by Lightning each epoch) selects fresh batches.

    It is a ``DistributedSampler`` so that Lightning keeps it under DDP: rank ``r`` of ``w`` takes indices
    ``r, r + w, ...``, hence different data on every rank and the same global data for any resume.
    ``skip_next(n)`` leaves out this rank's first ``n`` keys of the next pass only (mid-epoch resume); a pass
    begins at its first key (a generator), as DataLoaders may call ``iter()`` on it more than once per pass.
    """

    def __init__(self, batches: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(range(batches), num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.batches = batches
        self._skip = 0

    def skip_next(self, count: int) -> None:
        if count < 0:
            raise ValueError(f"cannot skip a negative number of batches, got {count}")
        self._skip = int(count)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        skip, self._skip = self._skip, 0
        for index in range(self.rank, self.batches, self.num_replicas)[skip:]:
            yield (self.epoch, index)

    def __len__(self) -> int:
        return len(range(self.rank, self.batches, self.num_replicas))


class _SpikingXORDataModule(pl.LightningDataModule):
    """Shared plumbing: fresh seeded training batches, fixed validation/test sets, the data contract attributes."""

    num_classes = 2

    def __init__(
        self,
        batch_size: PositiveInt = 500,
        batches_per_epoch: PositiveInt = 100,
        val_size: PositiveInt = 2000,
        test_size: PositiveInt = 2000,
        eval_batch_size: PositiveInt | None = None,
        seed: int = 0,
        num_workers: NonNegativeInt = 0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("batch_size", batch_size),
            ("batches_per_epoch", batches_per_epoch),
            ("val_size", val_size),
            ("test_size", test_size),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.batch_size = int(batch_size)
        self.batches_per_epoch = int(batches_per_epoch)
        self.val_size = int(val_size)
        self.test_size = int(test_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.seed = int(seed)
        self.num_workers = int(num_workers)
        self._fixed: dict[str, TensorDataset] = {}

    def _set_signals(
        self,
        time_steps: int,
        channel_size: int,
        channel_rate: Sequence[float],
        noise_rate: float,
        coding_time: int,
    ) -> None:
        """Check and store the spike-pattern settings both XOR tasks share."""
        _check_rates(channel_rate, noise_rate)
        self.time_steps = int(time_steps)
        self.num_steps = int(time_steps)
        self.channel_size = int(channel_size)
        self.channel_rate = tuple(float(r) for r in channel_rate)
        self.noise_rate = float(noise_rate)
        self.coding_time = int(coding_time)

    # Subclasses define the generator and the shape attributes.
    def make_batch(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def train_batch(self, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return self.make_batch(self.batch_size, generator)

    def fixed_split(self, split: str) -> TensorDataset:
        """The fixed validation (``"val"``) or test (``"test"``) set, generated once from the seed."""
        if split not in self._fixed:
            size, stream = {"val": (self.val_size, _VAL), "test": (self.test_size, _TEST)}[split]
            self._fixed[split] = TensorDataset(*self.make_batch(size, _generator(self.seed, stream)))
        return self._fixed[split]

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate"):
            self.fixed_split("val")
        if stage in (None, "test", "predict"):
            self.fixed_split("test")

    def train_dataloader(self) -> ResumableDataLoader:
        sampler = EpochBatchSampler(self.batches_per_epoch, *shard(self.trainer))
        return ResumableDataLoader(
            _FreshBatches(self.train_batch, self.seed),
            batch_size=None,
            sampler=sampler,
            num_workers=self.num_workers,
            epoch_fn=functools.partial(fit_epoch, self),  # not Lightning's set_epoch, off after epoch-end resumes
        )

    def _eval_loader(self, split: str) -> DataLoader:
        return DataLoader(self.fixed_split(split), batch_size=self.eval_batch_size, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


class DelayedXORDataModule(_SpikingXORDataModule):
    """Delayed spiking XOR (reference defaults: T = 200, 20 channels, rates 0.2/0.6, noise 0.01, coding 10 steps).

    Parameters:
        time_steps: sequence length T; the delay between the end of pattern 1 and the start of pattern 2 is
            ``T - 2 * coding_time`` (the reference's "delay knob").
        delay: alternatively the delay itself; when given, ``T = delay + 2 * coding_time`` replaces ``time_steps``.
        channel_size, channel_rate (low, high), noise_rate, coding_time: the pattern parameters.
        batch_size, batches_per_epoch: fresh training batches per epoch (reference: 500 x 100).
        val_size, test_size: sizes of the fixed evaluation sets; seed: seed of everything generated.
    """

    def __init__(
        self,
        time_steps: PositiveInt = 200,
        delay: NonNegativeInt | None = None,
        channel_size: PositiveInt = 20,
        channel_rate: tuple[ClosedUnitInterval, ClosedUnitInterval] = (0.2, 0.6),
        noise_rate: ClosedUnitInterval = 0.01,
        coding_time: PositiveInt = 10,
        batch_size: PositiveInt = 500,
        batches_per_epoch: PositiveInt = 100,
        val_size: PositiveInt = 2000,
        test_size: PositiveInt = 2000,
        eval_batch_size: PositiveInt | None = None,
        seed: int = 0,
        num_workers: NonNegativeInt = 0,
    ) -> None:
        super().__init__(batch_size, batches_per_epoch, val_size, test_size, eval_batch_size, seed, num_workers)
        if delay is not None:
            if not isinstance(delay, int) or delay < 0:
                raise ValueError(f"delay must be a non-negative int (steps), got {delay!r}")
            time_steps = delay + 2 * coding_time
        if not isinstance(time_steps, int) or time_steps < 2 * coding_time:
            raise ValueError(f"time_steps must be an int >= 2 * coding_time = {2 * coding_time}, got {time_steps!r}")
        self._set_signals(time_steps, channel_size, channel_rate, noise_rate, coding_time)
        self.delay = time_steps - 2 * coding_time
        self.input_size = int(channel_size)

    def make_batch(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return delayed_xor(
            batch_size,
            generator,
            self.time_steps,
            self.channel_size,
            self.channel_rate,
            self.noise_rate,
            self.coding_time,
        )


class MultiTimescaleXORDataModule(_SpikingXORDataModule):
    """Multi-timescale spiking XOR (reference defaults: T = 100, 2 x 20 channels, 6 signal-2 patterns).

    Parameters:
        time_steps, channel_size (per signal; inputs = 2 * channel_size), channel_rate (low, high), noise_rate,
        coding_time, remain_time (silent steps before each signal-2 pattern), start_time (length of signal 1):
        the pattern parameters. The other parameters are those of :class:`DelayedXORDataModule`.
    """

    def __init__(
        self,
        time_steps: PositiveInt = 100,
        channel_size: PositiveInt = 20,
        channel_rate: tuple[ClosedUnitInterval, ClosedUnitInterval] = (0.2, 0.6),
        noise_rate: ClosedUnitInterval = 0.01,
        coding_time: PositiveInt = 10,
        remain_time: NonNegativeInt = 5,
        start_time: PositiveInt = 10,
        batch_size: PositiveInt = 500,
        batches_per_epoch: PositiveInt = 100,
        val_size: PositiveInt = 2000,
        test_size: PositiveInt = 2000,
        eval_batch_size: PositiveInt | None = None,
        seed: int = 0,
        num_workers: NonNegativeInt = 0,
    ) -> None:
        super().__init__(batch_size, batches_per_epoch, val_size, test_size, eval_batch_size, seed, num_workers)
        if time_steps < start_time + remain_time + coding_time:
            raise ValueError(
                f"time_steps must be >= start_time + remain_time + coding_time = "
                f"{start_time + remain_time + coding_time}, got {time_steps!r}"
            )
        self._set_signals(time_steps, channel_size, channel_rate, noise_rate, coding_time)
        self.remain_time = int(remain_time)
        self.start_time = int(start_time)
        self.input_size = 2 * int(channel_size)
        self.num_patterns = (time_steps - start_time) // (coding_time + remain_time)

    def make_batch(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return multitimescale_xor(
            batch_size,
            generator,
            self.time_steps,
            self.channel_size,
            self.channel_rate,
            self.noise_rate,
            self.coding_time,
            self.remain_time,
            self.start_time,
        )


__all__ = [
    "IGNORE_INDEX",
    "DelayedXORDataModule",
    "EpochBatchSampler",
    "MultiTimescaleXORDataModule",
    "delayed_xor",
    "multitimescale_xor",
]

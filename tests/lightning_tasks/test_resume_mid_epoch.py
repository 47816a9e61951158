"""Resuming `fit` from a checkpoint saved mid-epoch continues the same run exactly (issue 4).

Run A trains N steps uninterrupted. Run B saves a step checkpoint mid-epoch and then dies (an exception in the next
batch, as a killed job would); run C resumes B from that checkpoint to N steps. C must end with A's parameters and
log A's per-step training loss for every step after the resume point. Before the training loaders were resumable,
the resumed epoch started again from its first batch, so C trained on batches A never saw at those steps.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch.utils.data import Dataset, DistributedSampler, WeightedRandomSampler

from lightning_tasks.classifier import SNNClassifier
from lightning_tasks.data.base import EpochSampler, ResumableDataLoader, WeightedEpochSampler
from lightning_tasks.data.shd import SHDDataModule
from lightning_tasks.data.xor import DelayedXORDataModule, EpochBatchSampler


class Killed(RuntimeError):
    """Stands in for the job being killed."""


class Record(Callback):
    """Per-step logged training loss, and the batch each step trained on (to see which data was used)."""

    def __init__(self) -> None:
        self.loss: dict[int, float] = {}
        self.inputs: dict[int, torch.Tensor] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.loss[trainer.global_step] = float(trainer.callback_metrics["train_loss_step"])
        self.inputs[trainer.global_step] = batch[0].clone()


class KillAt(Callback):
    """Raise when the batch of step ``step`` starts (after the checkpoint of the step before was written)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step - 1:
            raise Killed(f"killed at step {self.step}")


def xor_data(num_workers: int = 0) -> DelayedXORDataModule:
    # 4 batches per epoch: steps 1-4 are epoch 0, 5-8 epoch 1, 9-10 epoch 2.
    return DelayedXORDataModule(
        time_steps=12,
        coding_time=3,
        channel_size=4,
        batch_size=4,
        batches_per_epoch=4,
        val_size=4,
        test_size=4,
        seed=3,
        num_workers=num_workers,
    )


def model(input_size: int, num_classes: int, num_steps: int, aggregation: str = "per_step") -> SNNClassifier:
    layers = [{"kind": "dh_sfnn", "hidden_size": 4, "branches": 2}]
    return SNNClassifier(input_size, num_classes, num_steps, layers=layers, lr=0.05, aggregation=aggregation)


def trainer(root: Path, max_steps: int, callbacks: list[Callback], every: int = 0) -> pl.Trainer:
    if every:
        callbacks = [
            *callbacks,
            ModelCheckpoint(dirpath=root, filename="{step}", every_n_train_steps=every, save_top_k=-1),
        ]
    return pl.Trainer(
        max_steps=max_steps,
        max_epochs=-1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=bool(every),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=callbacks,
        default_root_dir=root,
    )


def straight_and_resumed(tmp_path: Path, make_data, make_model, steps: int, stop: int):
    """Run A (``steps`` uninterrupted) and run C (killed after the checkpoint of step ``stop``, then resumed)."""
    pl.seed_everything(0, verbose=False)
    a = Record()
    model_a = make_model()
    trainer(tmp_path / "a", steps, [a]).fit(model_a, datamodule=make_data())

    pl.seed_everything(0, verbose=False)
    with pytest.raises(Killed):
        trainer(tmp_path / "b", steps, [KillAt(stop + 1)], every=stop).fit(make_model(), datamodule=make_data())
    ckpt = tmp_path / "b" / f"step={stop}.ckpt"
    assert ckpt.exists(), sorted(p.name for p in (tmp_path / "b").iterdir())

    pl.seed_everything(0, verbose=False)
    c = Record()
    model_c = make_model()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*your dataloader is not resumable.*")
        trainer(tmp_path / "c", steps, [c]).fit(model_c, datamodule=make_data(), ckpt_path=ckpt)
    return model_a, a, model_c, c


def assert_same_run(model_a, a: Record, model_c, c: Record, steps: int, stop: int) -> None:
    assert sorted(c.loss) == list(range(stop + 1, steps + 1))  # resumed after the checkpoint's step
    for step in c.loss:
        assert torch.equal(a.inputs[step], c.inputs[step]), f"step {step} trained on other data"
        assert a.loss[step] == c.loss[step], step
    pa, pc = model_a.state_dict(), model_c.state_dict()
    assert pa.keys() == pc.keys()
    for key in pa:
        assert torch.equal(pa[key], pc[key]), key


@pytest.mark.parametrize(("stop", "num_workers"), [(2, 0), (4, 0), (6, 0), (6, 1)])
def test_xor_fit_resumed_mid_epoch_matches_the_uninterrupted_run(tmp_path, stop, num_workers):
    """Stops in epoch 0, after its last batch, and in epoch 1 (a later epoch), in-process and with a worker."""
    steps = 10
    runs = straight_and_resumed(
        tmp_path, lambda: xor_data(num_workers), lambda: model(4, 2, 12), steps=steps, stop=stop
    )
    assert_same_run(*runs, steps=steps, stop=stop)


def write_spike_h5(path: Path, labels: np.ndarray, rng: np.random.Generator) -> None:
    """A miniature file in the SHD layout (spikes/times, spikes/units as vlen arrays, labels)."""
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (len(labels),), dtype=h5py.vlen_dtype(np.float16))
        units = f.create_dataset("spikes/units", (len(labels),), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(len(labels)):
            k = int(rng.integers(20, 120))
            times[i] = np.sort(rng.uniform(0, 1.0, k)).astype(np.float16)
            units[i] = rng.integers(0, 700, k).astype(np.uint16)
        f.create_dataset("labels", data=labels.astype(np.uint16))
        f.create_dataset("extra/speaker", data=np.zeros(len(labels), dtype=np.uint16))


@pytest.mark.parametrize("num_workers", [0, 1])
def test_shd_fit_resumed_mid_epoch_matches_the_uninterrupted_run(tmp_path, num_workers):
    """A shuffled real-data module: 60 training samples in batches of 16 (3 full batches and one of 12 per epoch);
    with a worker the loader keeps it (persistent workers) and batches indices with a BatchSampler."""
    rng = np.random.default_rng(0)
    root = tmp_path / "shd"
    root.mkdir()
    write_spike_h5(root / "shd_train.h5", np.repeat(np.arange(20), 4), rng)
    write_spike_h5(root / "shd_test.h5", np.arange(20), rng)

    def data() -> SHDDataModule:
        return SHDDataModule(
            str(root), dt_ms=100.0, val_fraction=0.25, batch_size=16, num_workers=num_workers, cache_dir=str(root / "c")
        )

    steps, stop = 7, 5  # stops after the first batch of epoch 1
    runs = straight_and_resumed(tmp_path, data, lambda: model(700, 20, 10, "sum_softmax_after"), steps=steps, stop=stop)
    assert_same_run(*runs, steps=steps, stop=stop)


class Keys(Dataset):
    """Each item is its own key."""

    def __getitem__(self, key):
        return key


def test_loader_state_counts_batches_handed_out_and_skips_them_on_the_same_epoch_only():
    sampler = EpochBatchSampler(5)
    loader = ResumableDataLoader(Keys(), batch_size=None, sampler=sampler, collate_fn=tuple)
    sampler.set_epoch(2)
    it = iter(loader)
    assert loader.state_dict() == {"epoch": None, "batches": 0}  # lazy: nothing started yet
    assert [next(it), next(it)] == [(2, 0), (2, 1)]
    state = loader.state_dict()
    assert state == {"epoch": 2, "batches": 2}

    fresh = ResumableDataLoader(Keys(), batch_size=None, sampler=EpochBatchSampler(5), collate_fn=tuple)
    fresh.load_state_dict(state)
    fresh.sampler.set_epoch(2)  # Lightning sets the epoch after creating the iterator; the pass starts lazily
    assert list(fresh) == [(2, 2), (2, 3), (2, 4)]
    assert fresh.state_dict() == {"epoch": 2, "batches": 5}
    assert list(fresh) == [(2, i) for i in range(5)]  # later passes are whole

    other = ResumableDataLoader(Keys(), batch_size=None, sampler=EpochBatchSampler(5), collate_fn=tuple)
    other.load_state_dict(state)
    other.sampler.set_epoch(3)  # the checkpointed epoch was over: the next one is not cut
    assert list(other) == [(3, i) for i in range(5)]
    with pytest.raises(ValueError, match="epoch"):
        other.load_state_dict({"batches": 1})


def test_epoch_sampler_orders_by_seed_and_epoch_and_shards_like_distributed_sampler():
    s = EpochSampler(10, seed=4)
    s.set_epoch(1)
    first = list(s)
    assert sorted(first) == list(range(10)) and first == list(s)  # a permutation, the same on every pass
    s.set_epoch(2)
    assert list(s) != first
    s.set_epoch(1)
    s.skip_next(3)
    assert list(s) == first[3:] and list(s) == first
    # Ranks: round robin over the (wrapped-around) epoch order, disjoint, covering every index.
    ranks = [EpochSampler(10, num_replicas=3, rank=r, seed=4) for r in range(3)]
    for r in ranks:
        r.set_epoch(1)
    shards = [list(r) for r in ranks]
    assert [len(x) for x in shards] == [4, 4, 4] == [len(r) for r in ranks]
    padded = first + first[:2]
    assert shards == [padded[r::3] for r in range(3)]
    # Batched loader: skipping 2 batches of 4 indices.
    loader = ResumableDataLoader(list(range(10)), batch_size=4, sampler=EpochSampler(10, seed=4))
    loader.sampler.set_epoch(1)
    loader.load_state_dict({"epoch": 1, "batches": 2})
    assert [b.tolist() for b in loader] == [first[8:]]


def test_weighted_epoch_sampler_draws_by_weight_per_seed_and_epoch():
    w = torch.tensor([0.0, 1.0, 3.0])
    s = WeightedEpochSampler(w, seed=1)
    # Lightning keeps a DistributedSampler under DDP; code that checks for a WeightedRandomSampler still finds one.
    assert isinstance(s, DistributedSampler) and isinstance(s, WeightedRandomSampler) and s.num_samples == 3
    draws = []
    for epoch in range(400):
        s.set_epoch(epoch)
        draws += list(s)
        assert list(s) == draws[-3:]  # deterministic per (seed, epoch)
    draws = torch.tensor(draws)
    counts = torch.bincount(draws, minlength=3)
    assert counts[0] == 0 and abs(counts[2] / counts.sum() - 0.75) < 0.05  # 1200 draws: 3 sigma ~ 0.04
    with pytest.raises(ValueError, match="weights"):
        WeightedEpochSampler([0.0, 0.0])

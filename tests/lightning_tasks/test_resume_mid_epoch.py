"""Resuming `fit` from a checkpoint saved mid-epoch continues the same run exactly (issue 4).

Run A trains N steps uninterrupted. Run B saves a step checkpoint mid-epoch and then dies (an exception in the next
batch, as a killed job would); run C resumes B from that checkpoint to N steps. C must end with A's parameters,
log A's per-step training loss for every step after the resume point, and log A's epoch-level training loss and
accuracy for every epoch it finishes, the one it resumed in included. Before the training loaders were resumable,
the resumed epoch started again from its first batch, so C trained on batches A never saw at those steps; before the
classifier checkpointed its running epoch aggregates, the resumed epoch's means covered only the batches after the
resume.

A checkpoint written at an epoch's end (``ModelCheckpoint(save_on_train_epoch_end=True)``, Lightning's own choice when
validation runs once per epoch, as in the packaged XOR configs) resumes exactly too: Lightning ends that epoch a second
time on resuming and counts it processed twice, so the sampler epoch it sets from that count is one ahead (and one more
per further resume); the training loaders take the epoch from the trainer instead.
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

from lightning_tasks.classifier import EPOCH_STATE_KEY, SNNClassifier
from lightning_tasks.data.base import (
    EpochSampler,
    ResumableDataLoader,
    WeightedEpochSampler,
    epoch_generator,
    fit_epoch,
)
from lightning_tasks.data.shd import SHDDataModule
from lightning_tasks.data.xor import DelayedXORDataModule, EpochBatchSampler


class Killed(RuntimeError):
    """Stands in for the job being killed."""


class Record(Callback):
    """Per-step logged training loss, the batch each step trained on (to see which data was used), and per epoch
    the epoch-level training loss and accuracy with the global step the epoch ended at."""

    def __init__(self) -> None:
        self.loss: dict[int, float] = {}
        self.inputs: dict[int, torch.Tensor] = {}
        self.epochs: dict[int, tuple[int, float, float]] = {}
        self.replayed: list[tuple[int, int]] = []  # (epoch, global step) of epoch ends with no batch trained before
        self._trained = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.loss[trainer.global_step] = float(trainer.callback_metrics["train_loss_step"])
        self.inputs[trainer.global_step] = batch[0].clone()
        self._trained = True

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics = trainer.callback_metrics  # computed from the epoch's aggregates on access
        # Lightning ends the checkpoint's epoch again when it resumes from its end: with no metrics if the checkpoint
        # was written in on_train_epoch_end, with the checkpointed ones if it was written before (this is the first
        # epoch end of the process, so the epoch metrics cannot be an earlier epoch's).
        if not self._trained and "train_loss_epoch" not in metrics:
            self.replayed.append((trainer.current_epoch, trainer.global_step))
            return
        self._trained = False
        epoch = (trainer.global_step, float(metrics["train_loss_epoch"]), float(metrics["train_acc_epoch"]))
        assert trainer.current_epoch not in self.epochs, f"epoch {trainer.current_epoch} ended twice"
        self.epochs[trainer.current_epoch] = epoch


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


def trainer(
    root: Path, max_steps: int, callbacks: list[Callback], val_every: int = 0, max_epochs: int = -1
) -> pl.Trainer:
    """``val_every``: validate every that many training batches (else at epoch ends). ``max_epochs`` > 0 (with
    ``max_steps=-1``): epoch-based training, as the packaged configs run, instead of step-based."""
    return pl.Trainer(
        max_steps=max_steps,
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=any(isinstance(cb, ModelCheckpoint) for cb in callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        val_check_interval=val_every or 1.0,
        callbacks=callbacks,
        default_root_dir=root,
    )


def checkpoints(root: Path, every: int = 0, at: str = "step") -> ModelCheckpoint:
    """Checkpoints named by step: every ``every`` steps at a batch end (``at="step"``), at each epoch end
    (``"epoch_end"``) or after each validation (``"validation"``)."""
    if at == "step":
        return ModelCheckpoint(dirpath=root, filename="{step}", every_n_train_steps=every, save_top_k=-1)
    return ModelCheckpoint(dirpath=root, filename="{step}", save_top_k=-1, save_on_train_epoch_end=at == "epoch_end")


def straight_and_resumed(
    tmp_path: Path, make_data, make_model, steps: int, stop: int, edit=None, val_every: int = 0, max_epochs: int = -1
):
    """Run A (``steps`` uninterrupted) and run C (killed after the checkpoint of step ``stop``, then resumed).
    ``edit`` changes the loaded checkpoint dict in place before C resumes from it. ``val_every``: all three runs
    validate every that many batches, and B checkpoints after each validation instead of every ``stop`` steps.
    ``max_epochs`` (with ``steps=-1``): all three runs train that many epochs instead."""
    pl.seed_everything(0, verbose=False)
    a = Record()
    model_a = make_model()
    trainer(tmp_path / "a", steps, [a], val_every, max_epochs).fit(model_a, datamodule=make_data())

    pl.seed_everything(0, verbose=False)
    saver = checkpoints(tmp_path / "b", at="validation") if val_every else checkpoints(tmp_path / "b", every=stop)
    with pytest.raises(Killed):
        trainer(tmp_path / "b", steps, [KillAt(stop + 1), saver], val_every, max_epochs).fit(
            make_model(), datamodule=make_data()
        )
    ckpt = tmp_path / "b" / f"step={stop}.ckpt"
    assert ckpt.exists(), sorted(p.name for p in (tmp_path / "b").iterdir())
    if edit is not None:
        state = torch.load(ckpt, weights_only=True)
        edit(state)
        ckpt = tmp_path / "b" / "edited.ckpt"
        torch.save(state, ckpt)

    pl.seed_everything(0, verbose=False)
    c = Record()
    model_c = make_model()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*your dataloader is not resumable.*")
        trainer(tmp_path / "c", steps, [c], val_every, max_epochs).fit(model_c, datamodule=make_data(), ckpt_path=ckpt)
    return model_a, a, model_c, c


def assert_same_run(
    model_a, a: Record, model_c, c: Record, steps: int, stop: int, epochs: bool = True, ended_at_stop: bool = False
) -> None:
    """``ended_at_stop``: the checkpoint was written at the validation after an epoch's last batch, before that
    epoch's end, so C ends that epoch too (with the checkpointed aggregates of all its batches)."""
    assert sorted(c.loss) == list(range(stop + 1, steps + 1))  # resumed after the checkpoint's step
    for step in c.loss:
        assert torch.equal(a.inputs[step], c.inputs[step]), f"step {step} trained on other data"
        assert a.loss[step] == c.loss[step], step
    # C ends every epoch of A that ends after the checkpoint's step (an epoch whose last batch was the checkpoint's
    # step was over when C resumed, unless ``ended_at_stop``), each at A's step and with A's epoch aggregates. Exactly:
    # the accuracy is a ratio of integer counts, and the loss mean's running sum gets the same float32 additions in
    # the same order (the checkpointed sum of the earlier batches, then each later batch's loss * batch size).
    ended = [e for e, (end, *_) in sorted(a.epochs.items()) if end > stop or (ended_at_stop and end == stop)]
    assert sorted(c.epochs) == ended
    if epochs:
        for epoch in c.epochs:
            assert c.epochs[epoch] == a.epochs[epoch], epoch
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


class ScoredPerEpoch(Callback):
    """Per epoch end: the targets the training accuracy counted and the sequences the loss mean weighted."""

    def __init__(self) -> None:
        self.scored: list[tuple[int, int, int]] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        acc = pl_module.metrics["train_acc"]
        loss = trainer.fit_loop.epoch_loop._results.get("training_step.train_loss")
        sequences = 0 if loss is None or loss.has_reset else int(loss.cumulated_batch_size)
        self.scored.append((trainer.current_epoch, int(acc.tp + acc.fn), sequences))


def test_xor_checkpoint_holds_the_running_epoch_aggregates_only_mid_epoch(tmp_path):
    """The step-6 checkpoint (2 of epoch 1's 4 batches done) carries epoch 1's aggregates so far; a checkpoint written
    at the end of epoch 0 carries none, and its finished epoch does not leak into epoch 1 of the resumed fit."""
    steps = 10
    model_a, a, model_c, c = straight_and_resumed(tmp_path / "mid", xor_data, lambda: model(4, 2, 12), steps, stop=6)
    state = torch.load(tmp_path / "mid" / "b" / "step=6.ckpt", weights_only=True)[EPOCH_STATE_KEY]
    assert (state["epoch"], state["batches"], len(state["ranks"])) == (1, 2, 1)
    saved = state["ranks"][0]
    loss = saved["tensors"]["training_step.train_loss"]
    assert int(loss["cumulated_batch_size"]) == 2 * 4  # two batches of 4 sequences
    # Lightning's running sum is sum(batch loss * batch size), float32, in step order (A's logged step losses).
    expected = torch.tensor(0.0)
    for step in (5, 6):
        expected = expected + torch.tensor(a.loss[step]) * 4
    assert torch.equal(loss["value"], expected)
    acc = saved["metrics"]["metrics.train_acc"]
    # The delayed XOR scores steps t > T - coding_time = 9 of 12 (2 steps): 2 batches x 4 sequences x 2 steps.
    assert int(acc["updates"]) == 2
    assert int(acc["states"]["tp"] + acc["states"]["fn"]) == 2 * 4 * 2
    assert_same_run(model_a, a, model_c, c, steps=steps, stop=6)

    # Written in on_train_epoch_end of epoch 0 (Lightning has counted the epoch processed by then): no aggregates.
    pl.seed_everything(0, verbose=False)
    with pytest.raises(Killed):
        trainer(tmp_path / "end", steps, [KillAt(5), checkpoints(tmp_path / "end", at="epoch_end")]).fit(
            model(4, 2, 12), datamodule=xor_data()
        )
    ckpt = tmp_path / "end" / "step=4.ckpt"
    assert EPOCH_STATE_KEY not in torch.load(ckpt, weights_only=True)
    counts = ScoredPerEpoch()
    trainer(tmp_path / "end_c", steps, [counts]).fit(model(4, 2, 12), datamodule=xor_data(), ckpt_path=ckpt)
    # Lightning ends epoch 0 again on resuming (nothing logged), then epoch 1 has 4 batches and epoch 2 the last 2
    # (4 sequences x 2 scored steps each): epoch 0's 4 batches reach neither.
    assert counts.scored == [(0, 0, 0), (1, 32, 16), (2, 16, 8)]


def test_xor_checkpoint_after_a_mid_epoch_validation_resumes_the_same_epoch_metrics(tmp_path):
    """Validating every 2 of the 4 batches, the checkpoint written after the validation at step 6 (mid-epoch 1)
    holds epoch 1's training aggregates, not the validation's."""
    steps, stop = 10, 6
    runs = straight_and_resumed(tmp_path, xor_data, lambda: model(4, 2, 12), steps, stop, val_every=2)
    state = torch.load(tmp_path / "b" / "step=6.ckpt", weights_only=True)[EPOCH_STATE_KEY]
    assert (state["epoch"], state["batches"]) == (1, 2)
    assert list(state["ranks"][0]["tensors"]) == ["training_step.train_loss"]
    assert_same_run(*runs, steps=steps, stop=stop)


def test_xor_checkpoint_without_the_epoch_aggregates_still_resumes(tmp_path):
    """A checkpoint from before the aggregates were saved resumes the same parameters, data and step losses; only
    the resumed epoch's means lack the batches before the resume."""
    steps, stop = 10, 2
    runs = straight_and_resumed(
        tmp_path, xor_data, lambda: model(4, 2, 12), steps, stop, edit=lambda ckpt: ckpt.pop(EPOCH_STATE_KEY)
    )
    assert_same_run(*runs, steps=steps, stop=stop, epochs=False)
    a, c = runs[1], runs[3]
    assert sorted(c.epochs) == [0, 1, 2]
    assert c.epochs[1] == a.epochs[1] and c.epochs[2] == a.epochs[2]
    assert c.epochs[0] != a.epochs[0]  # epoch 0's means cover steps 3-4 only


def test_validate_and_test_from_a_mid_epoch_checkpoint_are_unaffected(tmp_path):
    """Evaluating from a mid-epoch checkpoint gives the same metrics as evaluating its weights loaded by hand."""
    pl.seed_everything(0, verbose=False)
    with pytest.raises(Killed):
        trainer(tmp_path, 10, [KillAt(3), checkpoints(tmp_path, every=2)]).fit(model(4, 2, 12), datamodule=xor_data())
    ckpt = tmp_path / "step=2.ckpt"
    assert EPOCH_STATE_KEY in torch.load(ckpt, weights_only=True)
    by_hand = model(4, 2, 12)
    by_hand.load_state_dict(torch.load(ckpt, weights_only=True)["state_dict"])
    for run, stage in (("validate", "val"), ("test", "test")):
        from_ckpt = getattr(trainer(tmp_path / run, 10, []), run)(
            model(4, 2, 12), datamodule=xor_data(), ckpt_path=ckpt
        )
        direct = getattr(trainer(tmp_path / run, 10, []), run)(by_hand, datamodule=xor_data())
        assert from_ckpt == direct and set(from_ckpt[0]) == {f"{stage}_loss", f"{stage}_acc"}, run


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


def shd_files(tmp_path: Path, num_workers: int):
    """A miniature SHD folder and a factory of its DataModule: 80 training-file samples, 60 of them for training
    in batches of 16 (3 full batches and one of 12 per epoch), 20 for validation; 10 steps of 100 ms."""
    rng = np.random.default_rng(0)
    root = tmp_path / "shd"
    root.mkdir()
    write_spike_h5(root / "shd_train.h5", np.repeat(np.arange(20), 4), rng)
    write_spike_h5(root / "shd_test.h5", np.arange(20), rng)

    def data() -> SHDDataModule:
        return SHDDataModule(
            str(root), dt_ms=100.0, val_fraction=0.25, batch_size=16, num_workers=num_workers, cache_dir=str(root / "c")
        )

    return data


def shd_model() -> SNNClassifier:
    return model(700, 20, 10, "sum_softmax_after")


@pytest.mark.parametrize("num_workers", [0, 1])
def test_shd_fit_resumed_mid_epoch_matches_the_uninterrupted_run(tmp_path, num_workers):
    """A shuffled real-data module; with a worker the loader keeps it (persistent workers) and batches indices with
    a BatchSampler."""
    steps, stop = 7, 5  # stops after the first batch of epoch 1
    runs = straight_and_resumed(tmp_path, shd_files(tmp_path, num_workers), shd_model, steps=steps, stop=stop)
    assert_same_run(*runs, steps=steps, stop=stop)


# -- checkpoints written at an epoch's end ----------------------------------------------------------------------------
EPOCH_END_SAVES = {
    # Written in on_train_epoch_end, every epoch.
    "epoch_end": lambda root: ModelCheckpoint(
        dirpath=root, filename="{step}", save_top_k=-1, every_n_epochs=1, save_on_train_epoch_end=True
    ),
    # The packaged XOR configs: the best by val_acc and last.ckpt. With one validation per epoch Lightning writes
    # them in on_train_epoch_end as well.
    "val_acc": lambda root: ModelCheckpoint(dirpath=root, monitor="val_acc", mode="max", save_last=True),
    # Forced to the end of the validation that follows the epoch's last batch, before the epoch-end hooks.
    "validation_end": lambda root: ModelCheckpoint(
        dirpath=root, filename="{step}", save_top_k=-1, save_last=True, save_on_train_epoch_end=False
    ),
}


def resumed_at_epoch_ends(tmp_path: Path, make_data, make_model, stops: list[int], at: str, **limit):
    """Run A uninterrupted; then a chain of runs that checkpoint as ``EPOCH_END_SAVES[at]`` says, each killed after
    the checkpoint of the step in ``stops`` (an epoch's last step) and resumed from it by the next (with the same
    checkpoint callback); the last run goes to the end. ``limit``: ``max_steps`` or ``max_epochs`` of all runs.
    Returns A's model and record and the last run's."""
    max_steps, max_epochs = limit.get("max_steps", -1), limit.get("max_epochs", -1)
    pl.seed_everything(0, verbose=False)
    a = Record()
    model_a = make_model()
    trainer(tmp_path / "a", max_steps, [a], max_epochs=max_epochs).fit(model_a, datamodule=make_data())
    ckpt = None
    for i, stop in enumerate(stops):
        pl.seed_everything(0, verbose=False)
        root = tmp_path / f"b{i}"
        with pytest.raises(Killed):
            trainer(root, max_steps, [KillAt(stop + 1), EPOCH_END_SAVES[at](root)], max_epochs=max_epochs).fit(
                make_model(), datamodule=make_data(), ckpt_path=ckpt
            )
        ckpt = root / ("last.ckpt" if at != "epoch_end" else f"step={stop}.ckpt")
        assert ckpt.exists(), sorted(p.name for p in root.iterdir())
        assert torch.load(ckpt, weights_only=True)["global_step"] == stop
    pl.seed_everything(0, verbose=False)
    c = Record()
    model_c = make_model()
    root = tmp_path / "c"
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*your dataloader is not resumable.*")
        trainer(root, max_steps, [c, EPOCH_END_SAVES[at](root)], max_epochs=max_epochs).fit(
            model_c, datamodule=make_data(), ckpt_path=ckpt
        )
    assert all(step == stops[-1] for _, step in c.replayed)  # an epoch end repeated on resuming trains nothing
    # Saved at the validation after the epoch's last batch, the checkpoint comes before the epoch's end: C ends that
    # epoch with its metrics. Saved in on_train_epoch_end, it comes after: C repeats the epoch end with none (step-based
    # training) or not at all (epoch-based).
    assert not (at == "validation_end" and c.replayed)
    return model_a, a, model_c, c


LIMITS = {"steps": {"max_steps": 10}, "epochs": {"max_epochs": 3}}
# Every way of saving with either limit in-process, and the two failing ones before the fix with a worker too.
EPOCH_END_CASES = [(at, limit, 0) for at in EPOCH_END_SAVES for limit in LIMITS] + [
    ("epoch_end", "steps", 1),
    ("val_acc", "steps", 1),
]


@pytest.mark.parametrize(("at", "limit", "num_workers"), EPOCH_END_CASES)
def test_xor_fit_resumed_from_an_epoch_end_checkpoint_matches_the_uninterrupted_run(tmp_path, at, limit, num_workers):
    """Killed after the checkpoint at the end of epoch 0 (step 4): the resumed run trains epoch 1 on epoch 1's fresh
    batches (it trained on epoch 2's, A's steps 9-12, when the sampler epoch came from Lightning's processed count)."""
    runs = resumed_at_epoch_ends(
        tmp_path, lambda: xor_data(num_workers), lambda: model(4, 2, 12), [4], at, **LIMITS[limit]
    )
    steps = max(runs[1].loss)
    assert steps == (10 if limit == "steps" else 12)
    assert_same_run(*runs, steps=steps, stop=4, ended_at_stop=at == "validation_end")


@pytest.mark.parametrize(("at", "limit", "num_workers"), EPOCH_END_CASES)
def test_shd_fit_resumed_from_an_epoch_end_checkpoint_matches_the_uninterrupted_run(tmp_path, at, limit, num_workers):
    """The shuffled real-data module (EpochSampler): killed after the checkpoint at the end of epoch 0 (step 4 of 4)."""
    runs = resumed_at_epoch_ends(tmp_path, shd_files(tmp_path, num_workers), shd_model, [4], at, **LIMITS[limit])
    steps = max(runs[1].loss)
    assert steps == (10 if limit == "steps" else 12)
    assert_same_run(*runs, steps=steps, stop=4, ended_at_stop=at == "validation_end")


@pytest.mark.parametrize("at", ["epoch_end", "val_acc", "validation_end"])
def test_xor_fit_resumed_twice_from_epoch_end_checkpoints_matches_the_uninterrupted_run(tmp_path, at):
    """Killed after epoch 0 (step 4), resumed, killed again after epoch 1 (step 8), resumed to step 14: every resume
    from an epoch's end put Lightning's processed count, and the sampler epochs it set, one further ahead."""
    runs = resumed_at_epoch_ends(tmp_path, xor_data, lambda: model(4, 2, 12), [4, 8], at, max_steps=14)
    assert_same_run(*runs, steps=14, stop=8, ended_at_stop=at == "validation_end")


@pytest.mark.parametrize(("stop", "limit"), [(4, "steps"), (8, "steps"), (4, "epochs")])
def test_xor_checkpoint_after_the_validation_on_an_epochs_last_batch_resumes_that_epochs_metrics(tmp_path, stop, limit):
    """Validating every 2 of the 4 batches, one validation lands on the epoch's last batch: the checkpoint written
    after it (step 4 or 8) comes before the epoch's end and holds all the epoch's training aggregates; Lightning ends
    that epoch on resuming without training a batch of it, and logs the same epoch metrics as the uninterrupted run."""
    steps, max_epochs = (10, -1) if limit == "steps" else (-1, 3)
    runs = straight_and_resumed(
        tmp_path, xor_data, lambda: model(4, 2, 12), steps, stop, val_every=2, max_epochs=max_epochs
    )
    state = torch.load(tmp_path / "b" / f"step={stop}.ckpt", weights_only=True)[EPOCH_STATE_KEY]
    assert (state["epoch"], state["batches"]) == (stop // 4 - 1, 4)
    saved = state["ranks"][0]
    assert int(saved["tensors"]["training_step.train_loss"]["cumulated_batch_size"]) == 4 * 4
    assert int(saved["metrics"]["metrics.train_acc"]["updates"]) == 4
    c = runs[3]
    assert c.replayed == [] and min(c.epochs) == stop // 4 - 1
    assert_same_run(*runs, steps=max(runs[1].loss), stop=stop, ended_at_stop=True)


def test_uninterrupted_fits_train_epoch_e_batch_i_at_step_4e_plus_i_plus_1(tmp_path):
    """The training loaders' epoch comes from the trainer; an uninterrupted fit still visits epoch ``e``'s data at
    its steps: the XOR's fresh batch ``(seed, e, i)`` and the SHD module's slice ``i`` of the ``(seed, e)`` permutation,
    both rebuilt here from the seed tree."""
    pl.seed_everything(0, verbose=False)
    xor, record = xor_data(), Record()
    trainer(tmp_path / "xor", 10, [record]).fit(model(4, 2, 12), datamodule=xor)
    for step, inputs in record.inputs.items():
        epoch, index = divmod(step - 1, 4)
        state = np.random.SeedSequence([3, 0, epoch, index]).generate_state(2, np.uint32)  # seed 3, training stream
        expected = xor.make_batch(4, torch.Generator().manual_seed(int(state[0]) << 31 ^ int(state[1])))[0]
        assert torch.equal(inputs, expected), step

    make_shd = shd_files(tmp_path, 0)
    pl.seed_everything(0, verbose=False)
    record = Record()
    trainer(tmp_path / "shd_run", 6, [record]).fit(shd_model(), datamodule=make_shd())
    shd = make_shd()
    shd.setup("fit")
    for step, inputs in record.inputs.items():
        epoch, index = divmod(step - 1, 4)
        order = torch.randperm(60, generator=epoch_generator(0, epoch)).numpy()  # global seed 0
        assert torch.equal(inputs, shd.dataset("train").get_batch(order[16 * index : 16 * index + 16])[0]), step


def test_loader_takes_the_epoch_from_epoch_fn_when_it_gives_one():
    """``epoch_fn`` overrides ``set_epoch`` (keeping the rank's shard); None leaves the sampler's epoch."""
    epoch: list[int | None] = [1]
    sampler = EpochSampler(10, num_replicas=2, rank=1, seed=4)
    loader = ResumableDataLoader(list(range(10)), batch_size=2, sampler=sampler, epoch_fn=lambda: epoch[0])
    reference = EpochSampler(10, num_replicas=2, rank=1, seed=4)
    reference.set_epoch(1)
    sampler.set_epoch(2)  # what Lightning's processed count says after resuming from an epoch's end
    assert [i for batch in loader for i in batch.tolist()] == list(reference) and sampler.epoch == 1
    assert loader.state_dict() == {"epoch": 1, "batches": 3}
    epoch[0] = None
    sampler.set_epoch(2)
    reference.set_epoch(2)
    assert [i for batch in loader for i in batch.tolist()] == list(reference)
    keys = ResumableDataLoader(
        Keys(), batch_size=None, sampler=EpochBatchSampler(3), collate_fn=tuple, epoch_fn=lambda: 5
    )
    keys.sampler.set_epoch(6)
    assert list(keys) == [(5, 0), (5, 1), (5, 2)]
    # Standalone (no trainer) the DataModules' epoch source gives None.
    assert fit_epoch(xor_data()) is None


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

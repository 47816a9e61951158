"""Exact epoch-level training metrics across a resume: a LightningModule mixin (issue 4).

Lightning 2 checkpoints the loops' progress and the loaders' state but no longer the logged results (their
serialization went with fault-tolerant training, Lightning PR #16516), so the epoch means of an epoch interrupted by a
checkpoint would cover only the batches after the resume. :class:`ResumableEpochMetrics` saves, in mid-epoch
checkpoints, Lightning's running sums of the tensors logged by ``training_step`` and the states of the torchmetrics
metrics it logs (per DDP rank), and puts them back when the resumed fit continues that epoch. It relies on Lightning
internals (``_ResultMetric``, the loops' progress): re-run ``tests/lightning_tasks/test_resume_mid_epoch.py`` after a
Lightning upgrade.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lightning_utilities.core.apply_func import apply_to_collection
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor

# Checkpoint entry holding the running training epoch's logged aggregates.
EPOCH_STATE_KEY = "snn_classifier_train_epoch"


class ResumableEpochMetrics:
    """Mixin for a ``pl.LightningModule`` (listed before it): its ``training_step`` runs through
    :meth:`resumed_training_step`, and :meth:`relog_train_epoch` repeats the training step's ``self.log`` calls."""

    # Epoch aggregates of a mid-epoch checkpoint, until the first training step of the resumed fit takes them.
    _resumed_epoch: dict[str, Any] | None = None

    def relog_train_epoch(self, loss_mean: Tensor) -> None:
        """Log the training loss (as ``loss_mean``) and metrics with the training step's keys and options."""
        raise NotImplementedError

    def resumed_training_step(self, batch_idx: int, step: Callable[[], Tensor]) -> Tensor:
        """``step()`` (the training step), with the checkpointed aggregates of its epoch restored around it when it is
        the first step of a resumed epoch."""
        resumed = self._take_resumed_epoch(batch_idx)
        if resumed is not None:  # before the update, so the metric sees the same sequence of updates as unbroken
            self._restore_metric_states(resumed["metrics"])
        loss = step()
        if resumed is not None:  # after: the first self.log of an epoch resets Lightning's tensor aggregates
            _merge_logged_aggregates(self.trainer.fit_loop.epoch_loop._results, resumed["tensors"])
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint taken mid-epoch also holds the epoch's logged aggregates so far, so a fit resumed from it
        logs the same ``train_loss_epoch``/``train_acc_epoch`` as an uninterrupted run (issue 4).

        Lightning 2 checkpoints the loops' progress and the loaders' state but no longer the logged results (their
        serialization went with fault-tolerant training, Lightning PR #16516); the resumed epoch's means would
        otherwise cover only the batches after the resume. Saved: Lightning's running sums of the tensors logged by
        ``training_step`` and the states of the torchmetrics metrics it logs, per DDP rank.
        """
        state = self._running_epoch_state()
        if state is not None:
            checkpoint[EPOCH_STATE_KEY] = state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Checkpoints without the entry (epoch-end ones, older ones) resume with fresh epoch aggregates.
        self._resumed_epoch = checkpoint.get(EPOCH_STATE_KEY)

    def on_train_start(self) -> None:
        self._end_resumed_epoch()

    def _end_resumed_epoch(self) -> None:
        """Restores the training metrics of an epoch whose every batch ran before the checkpoint, when the checkpoint
        came before the epoch's end (written at the validation after its last batch: ``ModelCheckpoint(
        save_on_train_epoch_end=False)``, or ``val_check_interval < 1`` with a validation on the last batch).

        Lightning then ends that epoch on resuming without running a training step of it, so the aggregates are
        logged again here, through the training step's own ``self.log`` calls (same keys and options) with the
        checkpointed metric states and Lightning's checkpointed running sums, and its epoch means are the
        uninterrupted run's exactly. Done in ``on_train_start``, the module's last hook before that epoch end (it gets
        no ``on_train_epoch_start``): the callbacks' ``on_train_epoch_end`` run before the module's and may read them.
        """
        state = self._resumed_epoch
        loop = self.trainer.fit_loop
        if state is None or state["epoch"] != self.current_epoch or not loop.epoch_loop._num_ready_batches_reached():
            return  # no checkpointed aggregates, or training steps of their epoch remain (training_step takes them)
        saved = self._take_resumed_epoch(state["batches"])  # this rank's, as for the step after the last batch
        loss = None if saved is None else saved["tensors"].get("training_step.train_loss")
        if loss is None:
            return
        self._restore_metric_states(saved["metrics"])
        fx, self._current_fx_name = self._current_fx_name, "training_step"
        try:  # logs the epoch mean (Lightning's step value); its epoch aggregates are then set to the checkpointed sums
            self.relog_train_epoch(loss["value"] / loss["cumulated_batch_size"])
        finally:
            self._current_fx_name = fx
        _merge_logged_aggregates(loop.epoch_loop._results, saved["tensors"], replace=True)

    def _restore_metric_states(self, saved: dict[str, dict[str, Any]]) -> None:
        for attribute, entry in saved.items():
            metric = self.get_submodule(attribute)
            for name, value in entry["states"].items():
                current = getattr(metric, name)
                setattr(metric, name, value.to(device=current.device, dtype=current.dtype))
            metric._update_count = int(entry["updates"])
            metric._computed = None

    def _running_epoch_state(self) -> dict[str, Any] | None:
        trainer = self._trainer
        if trainer is None or trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return None
        epoch = trainer.fit_loop.epoch_progress.current
        batches = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if epoch.processed >= epoch.started or batches == 0:
            return None  # between epochs: a finished epoch's aggregates must not flow into the next one
        tensors, metrics = {}, {}
        for key, result in trainer.fit_loop.epoch_loop._results.items():
            if result.meta.fx != "training_step" or not result.meta.on_epoch or result.has_reset:
                continue
            if result.is_tensor:
                tensors[key] = {name: value.detach().clone() for name, value in result.metric_state.items()}
            elif result.meta.metric_attribute is not None:
                states = result.value.metric_state
                # Concatenating (list) states differ in length per rank and cannot be gathered: such a metric
                # would cover the batches after the resume only (the classifier's accuracy has counts).
                if all(isinstance(value, Tensor) for value in states.values()):
                    states = {name: value.detach().clone() for name, value in states.items()}
                    metrics[result.meta.metric_attribute] = {"states": states, "updates": result.value._update_count}
        state = {"tensors": tensors, "metrics": metrics}
        if trainer.world_size > 1:
            # Aggregates are per rank and only rank 0 writes: gather them (Lightning dumps checkpoints on every
            # rank). Each entry becomes (world_size, ...).
            gathered = self.all_gather(state)
            ranks = [
                apply_to_collection(gathered, Tensor, lambda t, r=r: t[r].cpu()) for r in range(trainer.world_size)
            ]
        else:
            ranks = [apply_to_collection(state, Tensor, lambda t: t.cpu())]
        return {"epoch": trainer.current_epoch, "batches": batches, "ranks": ranks}

    def _take_resumed_epoch(self, batch_idx: int) -> dict[str, Any] | None:
        """This rank's checkpointed aggregates if this training step continues the checkpointed epoch, else None;
        either way they are used up."""
        state, self._resumed_epoch = self._resumed_epoch, None
        if state is None or state["epoch"] != self.current_epoch or state["batches"] != batch_idx:
            return None  # the checkpoint's epoch was over (its last batch was the checkpoint's), or another run
        if len(state["ranks"]) != self.trainer.world_size:
            rank_zero_warn(
                f"the checkpoint's epoch aggregates come from {len(state['ranks'])} process(es), this run has "
                f"{self.trainer.world_size}: epoch {self.current_epoch}'s training metrics cover only the batches "
                "after the resume"
            )
            return None
        return state["ranks"][self.global_rank]


def _merge_logged_aggregates(results: Any, saved: dict[str, dict[str, Tensor]], *, replace: bool = False) -> None:
    """Adds checkpointed aggregates to Lightning's (``_ResultMetric``: ``value`` and, for means, the
    ``cumulated_batch_size``) after the resumed epoch's first update. ``saved + current`` is the very float sum the
    uninterrupted run computed at that update, so the epoch's means are equal exactly. ``replace``: sets them instead
    (the entries were logged only to create them, and the checkpointed aggregates cover the whole epoch)."""
    for key, state in saved.items():
        result = results.get(key)
        if result is None:  # not logged by this step
            continue
        meta, value = result.meta, state["value"].to(result.value.device)
        if replace:
            result.value = value
        elif meta.is_mean_reduction or meta.is_sum_reduction:
            result.value = value + result.value
        else:
            result.value = meta.reduce_fx(value, result.value)
        if meta.is_mean_reduction:
            count = state["cumulated_batch_size"].to(result.value.device)
            result.cumulated_batch_size = count if replace else count + result.cumulated_batch_size
        result._computed = None

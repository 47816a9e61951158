"""Callbacks that write what a run looks like next to its logs (``<log_dir>/plots/``).

:class:`PlotCallback` records the timing factors when training starts and the per-epoch metrics, and writes

- ``timing_factors.png``: factor histograms before vs after training (per layer, per branch; paper Fig. 3-4 style),
- ``learning_curves.png``: loss and accuracy per epoch,
- ``raster_<split>.png``: input and every layer's output for one sample of the test set (after ``test``) or of the
  validation set (after ``fit``), when the LightningModule's ``model`` is a :class:`norse_dh.modules.SequentialSNN`.

It also logs the mean timing factor of every dendritic branch per epoch (``factor/<layer>.branch<d>``), which shows
the branch separation of the multi-timescale XOR while training. Its state (initial factors, history) is part of the
checkpoint, so a resumed run still compares against the factors at the very start. Each epoch's end is recorded and
logged once, also when a fit resumed from a checkpoint written at that end makes Lightning end the epoch again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torch import Tensor

from norse_dh.modules import SequentialSNN
from norse_dh.plotting import plot_learning_curves, plot_spike_raster, plot_timing_histograms, timing_factors


def _first_loader(loaders: Any):
    if loaders is None:
        return None
    if isinstance(loaders, (list, tuple)):
        return loaders[0] if loaders else None
    if isinstance(loaders, dict):
        return next(iter(loaders.values()), None)
    return loaders


class PlotCallback(Callback):
    """Write timing-factor histograms, learning curves and spike rasters into ``<trainer.log_dir>/<dirname>``.

    Parameters:
        dirname: sub-folder of the run's log directory.
        sample_index: which sample of the first evaluation batch the raster shows.
        log_branch_factors: log the mean dendritic factor per layer and branch each epoch.
    """

    def __init__(self, dirname: str = "plots", sample_index: int = 0, log_branch_factors: bool = True) -> None:
        super().__init__()
        self.dirname = dirname
        self.sample_index = sample_index
        self.log_branch_factors = log_branch_factors
        self.initial_factors: dict[str, Tensor] = {}
        self.history: list[dict[str, float]] = []
        self.written: list[Path] = []
        self._trained = False  # a training batch ran since the last epoch end (of this process)

    # ---------------------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"initial_factors": dict(self.initial_factors), "history": list(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.initial_factors = dict(state_dict.get("initial_factors", {}))
        self.history = list(state_dict.get("history", []))

    def plot_dir(self, trainer: pl.Trainer) -> Path:
        root = trainer.log_dir or trainer.default_root_dir
        return Path(root) / self.dirname

    # ---------------------------------------------------------------------------------------------------------- hooks
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.initial_factors:  # a resumed run keeps the factors of its real start
            self.initial_factors = timing_factors(pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._trained = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._trained and any(row["epoch"] == trainer.current_epoch for row in self.history):
            # Resumed from a checkpoint written at this epoch's end (with max_steps, Lightning's RESTARTED_ON_EPOCH_END
            # ends the epoch again, before any batch and without its metrics): recorded and logged already.
            return
        self._trained = False
        if self.log_branch_factors:
            for name, factor in timing_factors(pl_module).items():
                if name.endswith("dend_tau_raw"):
                    layer = name.removesuffix(".dend_tau_raw")
                    for d, mean in enumerate(factor.mean(0).tolist()):
                        pl_module.log(f"factor/{layer}.branch{d}", mean, on_epoch=True, sync_dist=False)
        row: dict[str, float] = {"epoch": float(trainer.current_epoch)}
        for key, value in trainer.callback_metrics.items():
            if isinstance(value, Tensor) and value.numel() == 1:
                row[key] = float(value)
        self.history.append(row)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = self.plot_dir(trainer)  # on every rank: trainer.log_dir is a collective under DDP
        if not trainer.is_global_zero:
            return
        name = type(pl_module).__name__
        if self.initial_factors:
            self.written.append(
                plot_timing_histograms(
                    self.initial_factors,
                    timing_factors(pl_module),
                    out / "timing_factors.png",
                    title=f"{name}: timing factors before (dashed) and after (filled) training",
                )
            )
        if self.history:
            self.written.append(plot_learning_curves(self.history, out / "learning_curves.png", title=name))
        self._raster(pl_module, _first_loader(trainer.val_dataloaders), out / "raster_val.png", "val")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = self.plot_dir(trainer)
        if trainer.is_global_zero:
            self._raster(pl_module, _first_loader(trainer.test_dataloaders), out / "raster_test.png", "test")

    # -------------------------------------------------------------------------------------------------------- helpers
    @torch.no_grad()
    def _raster(self, pl_module: pl.LightningModule, loader, path: Path, split: str) -> None:
        network = getattr(pl_module, "model", None)
        if loader is None or not isinstance(network, SequentialSNN):
            return
        batch = next(iter(loader))
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(inputs, Tensor) or inputs.dim() != 3:
            return
        index = min(self.sample_index, inputs.shape[0] - 1)
        sample = inputs[index : index + 1].transpose(0, 1).to(pl_module.device, pl_module.dtype)  # (T, 1, M)
        was_training = network.training
        network.eval()
        outputs = network.forward_all(sample)
        network.train(was_training)
        names = [f"{i}: {type(layer).__name__}" for i, layer in enumerate(network)]
        self.written.append(
            plot_spike_raster(
                sample[:, 0],
                [o[:, 0] for o in outputs],
                path,
                names=names,
                title=f"{split} sample {index}",
            )
        )


__all__ = ["PlotCallback"]

"""PlotCallback and norse_dh.plotting: the factors they read, the files they write, the state they keep."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from matplotlib.image import imread
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import Logger

from lightning_tasks.callbacks import PlotCallback
from lightning_tasks.classifier import LayerConfig, SNNClassifier
from lightning_tasks.data.xor import DelayedXORDataModule, MultiTimescaleXORDataModule
from norse_dh.plotting import plot_learning_curves, plot_spike_raster, plot_timing_histograms, timing_factors
from tests.lightning_tasks.test_resume_mid_epoch import KillAt, Killed

PNG = b"\x89PNG\r\n\x1a\n"


def test_timing_factors_are_the_sigmoids_of_every_tau_parameter():
    m = SNNClassifier(6, 2, layers=[LayerConfig(hidden_size=3, branches=2)], readout="leaky")
    factors = timing_factors(m)
    assert set(factors) == {"model.0.dend_tau_raw", "model.0.soma_tau_raw", "model.1.tau_raw"}
    assert torch.equal(factors["model.0.dend_tau_raw"], torch.sigmoid(m.model[0].dend_tau_raw.detach()))
    assert factors["model.0.dend_tau_raw"].shape == (3, 2)
    with torch.no_grad():
        m.model[0].dend_tau_raw.add_(1.0)
    assert not torch.equal(factors["model.0.dend_tau_raw"], torch.sigmoid(m.model[0].dend_tau_raw))  # a copy


def test_plot_functions_write_png_files_and_reject_bad_input(tmp_path):
    before = {"l.dend_tau_raw": torch.rand(16, 2), "l.soma_tau_raw": torch.rand(16)}
    after = {k: v.clamp(0.1, 0.9) for k, v in before.items()}
    path = plot_timing_histograms(before, after, tmp_path / "h" / "hist.png")
    assert path.read_bytes()[:8] == PNG and imread(path).shape[0] > 200
    spikes = (torch.rand(50, 8) < 0.2).float()
    raster = plot_spike_raster(spikes, [spikes[:, :4], torch.randn(50, 2)], tmp_path / "r.png", names=["a", "b"])
    assert raster.read_bytes()[:8] == PNG
    history = [{"epoch": e, "train_loss_epoch": 1.0 / (e + 1), "val_acc": 0.5 + 0.1 * e} for e in range(4)]
    assert plot_learning_curves(history, tmp_path / "c.png").read_bytes()[:8] == PNG
    assert not list(tmp_path.glob("*.tmp.png"))  # written atomically
    with pytest.raises(ValueError, match="no timing factors"):
        plot_timing_histograms({}, None, tmp_path / "x.png")
    with pytest.raises(ValueError, match="time, units"):
        plot_spike_raster(torch.rand(5, 2, 3), [], tmp_path / "x.png")
    with pytest.raises(ValueError, match="empty"):
        plot_learning_curves([], tmp_path / "x.png")


def test_callback_records_start_factors_history_and_writes_plots(tmp_path):
    torch.manual_seed(0)
    data = MultiTimescaleXORDataModule(time_steps=40, batch_size=8, batches_per_epoch=2, val_size=8, test_size=8)
    model = SNNClassifier(
        40, 2, 40, layers=[LayerConfig(branches=2, mask="contiguous", dend_tau_init=["large", "small"])], lr=0.05
    )
    start = timing_factors(model)
    callback = PlotCallback()
    trainer = pl.Trainer(
        max_epochs=2,
        callbacks=[callback],
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.fit(model, datamodule=data)
    trainer.test(model, datamodule=data, verbose=False)
    assert all(torch.equal(callback.initial_factors[k], start[k]) for k in start)
    assert [row["epoch"] for row in callback.history] == [0.0, 1.0]
    assert {"val_acc", "train_loss_epoch", "factor/model.0.branch0", "factor/model.0.branch1"} <= set(
        callback.history[-1]
    )
    branch0 = callback.history[-1]["factor/model.0.branch0"]
    assert branch0 == pytest.approx(torch.sigmoid(model.model[0].dend_tau_raw[:, 0]).mean().item(), abs=1e-6)
    names = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert names == ["learning_curves.png", "raster_test.png", "raster_val.png", "timing_factors.png"]
    restored = PlotCallback()
    restored.load_state_dict(callback.state_dict())
    assert restored.history == callback.history
    assert all(torch.equal(restored.initial_factors[k], start[k]) for k in start)


class MemoryLogger(Logger):
    """Keeps every ``log_metrics`` call as ``(step, metrics)``."""

    def __init__(self, save_dir) -> None:
        super().__init__()
        self.rows: list[tuple[int, dict[str, float]]] = []
        self._save_dir = str(save_dir)

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    @property
    def save_dir(self) -> str:
        return self._save_dir

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append((step, {k: float(v) for k, v in metrics.items()}))


@pytest.mark.parametrize("max_steps", [10, -1])
def test_callback_resumed_from_an_epoch_end_checkpoint_records_and_logs_each_epoch_once(tmp_path, max_steps):
    """Resuming from a checkpoint written in on_train_epoch_end, Lightning ends that epoch again (with max_steps):
    the callback must neither log its branch factors a second time nor add a second, empty history row. The resumed
    run's history equals the uninterrupted run's, and its log continues that run's log from the resume point."""

    def run(root, callbacks, ckpt_path=None):
        pl.seed_everything(0, verbose=False)
        data = DelayedXORDataModule(
            time_steps=12, coding_time=3, channel_size=4, batch_size=4, batches_per_epoch=4, val_size=4, test_size=4
        )
        model = SNNClassifier(4, 2, 12, layers=[LayerConfig(kind="dh_sfnn", hidden_size=4, branches=2)], lr=0.05)
        logger = MemoryLogger(root)
        plots = PlotCallback()
        pl.Trainer(
            max_steps=max_steps,
            max_epochs=3 if max_steps == -1 else -1,
            callbacks=[plots, *callbacks],
            logger=logger,
            log_every_n_steps=1,
            default_root_dir=root,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        ).fit(model, datamodule=data, ckpt_path=ckpt_path)
        return plots, logger

    def saver(root):
        return ModelCheckpoint(dirpath=root, filename="{step}", save_top_k=-1, save_on_train_epoch_end=True)

    plots_a, log_a = run(tmp_path / "a", [])
    with pytest.raises(Killed):
        run(tmp_path / "b", [KillAt(5), saver(tmp_path / "b")])
    plots_c, log_c = run(tmp_path / "c", [saver(tmp_path / "c")], ckpt_path=tmp_path / "b" / "step=4.ckpt")
    assert [row["epoch"] for row in plots_a.history] == [0.0, 1.0, 2.0]
    assert plots_c.history == plots_a.history
    # Epoch 0's metrics were logged at step 3 (Lightning's 0-based step of the epoch's last batch), before the kill.
    assert any(step == 3 and "factor/model.0.branch0" in row for step, row in log_a.rows)
    # The same metrics in the same order, none repeated. (Not the same step numbers with max_steps: Lightning numbers
    # the resumed run's log one step later, TrainingEpochLoop.reset adding 1 to a count saved after its increment.)
    assert [row for _, row in log_c.rows] == [row for step, row in log_a.rows if step >= 4]
    assert (tmp_path / "c" / "plots" / "learning_curves.png").read_bytes()[:8] == PNG

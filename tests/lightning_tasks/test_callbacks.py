"""PlotCallback and norse_dh.plotting: the factors they read, the files they write, the state they keep."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from matplotlib.image import imread

from lightning_tasks.callbacks import PlotCallback
from lightning_tasks.classifier import LayerConfig, SNNClassifier
from lightning_tasks.data.xor import MultiTimescaleXORDataModule
from norse_dh.plotting import plot_learning_curves, plot_spike_raster, plot_timing_histograms, timing_factors

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

"""The stochastic-SNN generative task: selectable by class_path from the norse-dh CLI, and training recovers c."""

from __future__ import annotations

import csv

import pytest
import torch

from lightning_tasks.cli import NorseDHCLI
from lightning_tasks.ssnn import SSNNDataModule, SSNNGenerativeTask, build_ssnn


@torch.no_grad()
def _test_loss(model: SSNNGenerativeTask, dm: SSNNDataModule) -> float:
    sol = model(dm.n_test, torch.Generator().manual_seed(123))
    return float(model.spike_loss((sol.spike_times, sol.counts), dm.test_data, match=False))


def test_tiny_config_trains_input_current_toward_the_truth(tmp_path, monkeypatch):
    """Exp. 1 in miniature (data from c = 1.5, start c = 0.565, 20 Adam steps, depth-3 expected-signature loss)."""
    monkeypatch.chdir(tmp_path)
    cli = NorseDHCLI(args=["--config", "ssnn_tiny.yaml", "--trainer.enable_progress_bar=false"], run=False)
    model, dm = cli.model, cli.datamodule
    assert isinstance(model, SSNNGenerativeTask) and isinstance(dm, SSNNDataModule)
    dm.setup("fit")
    c0, loss0 = model.ssnn.input_current[0].item(), _test_loss(model, dm)
    cli.trainer.fit(model, datamodule=dm)
    c1, loss1 = model.ssnn.input_current[0].item(), _test_loss(model, dm)
    assert c0 == pytest.approx(0.565)
    assert abs(c1 - 1.5) < 0.5 * abs(c0 - 1.5), (c0, c1)
    assert loss1 < 0.2 * loss0, (loss0, loss1)
    # Lightning's loggers got the metrics; the task wrote its plots next to them
    log_dir = cli.trainer.log_dir
    rows = list(csv.DictReader(open(f"{log_dir}/metrics.csv")))
    assert any(r.get("val/c") for r in rows) and any(r.get("train/loss") for r in rows)
    plots = {p.name for p in model.written_plots}
    assert {"ssnn_curves.png", "ssnn_rasters.png"} <= plots
    assert [h["step"] for h in model.history] == [0.0, 10.0, 20.0]  # the sanity check records step 0
    assert model.history[-1]["test_loss"] < 0.2 * model.history[0]["test_loss"]


def test_weight_experiment_step_gives_gradients_on_the_feedforward_edges():
    dm = SSNNDataModule("weights", n_train=4, n_test=4, seed=0)
    dm.setup("fit")
    st, cnt = dm.train_data
    assert st.shape == (4, 22, 32) and (cnt[:, :4] > 0).all()  # input neurons fire; the budget was not exceeded
    assert dm.truth.effective_weights().count_nonzero() == 4 * 16 + 16 * 2
    task = SSNNGenerativeTask(experiment="weights", backend="torch")
    task._noise_gen = torch.Generator().manual_seed(0)
    task.log = lambda *a, **k: None  # no trainer attached
    loss = task.training_step((st, cnt), 0)
    loss.backward()
    grad = task.ssnn.weights.grad
    mask = task.ssnn.connectivity
    assert grad[~mask].abs().sum() == 0 and (grad[mask] != 0).float().mean() > 0.5


def test_model_and_data_disagreement_is_a_clear_error():
    class _Trainer:
        datamodule = SSNNDataModule("current", n_train=4, n_test=4, horizon=2.0, dt=0.02)

    task = SSNNGenerativeTask(experiment="current", horizon=3.0, dt=0.02)
    task._trainer = _Trainer()
    with pytest.raises(ValueError, match="model and data disagree"):
        task.setup("fit")
    with pytest.raises(ValueError, match="loss must be one of"):
        SSNNGenerativeTask(loss="mse")
    with pytest.raises(ValueError, match="experiment must be one of"):
        build_ssnn("xor")

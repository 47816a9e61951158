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


def _with_late_extra_spikes(st: torch.Tensor, cnt: torch.Tensor, horizon: float, every: int) -> tuple:
    """A copy of the trains with one extra spike, after all others, in every ``every``-th (path, neuron)."""
    st, cnt = st.clone(), cnt.clone()
    B, K, M = st.shape
    for b in range(B):
        for k in range(0, K, every):
            n = int(cnt[b, k])
            if n < M:
                st[b, k, n] = 0.999 * horizon
                cnt[b, k] = n + 1
    return st, cnt


def test_spike_matching_is_per_neuron_so_extra_spikes_leave_the_training_loss_at_zero():
    """Reference match_spikes: each (model, data) pair keeps min(count_model, count_data) spikes in every neuron, so
    model trains equal to the data plus extra spikes (in neurons other than the busiest) give a training loss of 0;
    the test loss (no matching) sees them."""
    dm = SSNNDataModule("weights", n_train=8, n_test=2, seed=0)
    dm.setup("fit")
    st, cnt = dm.train_data
    task = SSNNGenerativeTask(experiment="weights", backend="torch")
    model = _with_late_extra_spikes(st, cnt, 1.0, every=3)
    assert (model[1] > cnt).any() and ((model[1] > cnt) & (cnt < cnt.max(1, keepdim=True).values)).any()
    assert task.spike_loss(model, (st, cnt), match=True).item() == 0.0
    assert task.spike_loss(model, (st, cnt), match=False).item() > 0.01


def test_event_budget_ignores_spikes_after_the_budget_and_is_validated():
    dm = SSNNDataModule("weights", n_train=8, n_test=2, seed=0)
    dm.setup("fit")
    st, cnt = dm.train_data
    other = (st.flip(0), cnt.flip(0))
    budget = int(cnt.sum(1).min())  # every path has at least this many events
    for snnax in (False, True):
        task = SSNNGenerativeTask(experiment="weights", backend="torch", event_budget=budget, snnax_lift=snnax)
        base = task.spike_loss((st, cnt), other, match=False)
        late = _with_late_extra_spikes(st, cnt, 1.0, every=2)  # events after the budget-th one
        torch.testing.assert_close(task.spike_loss(late, other, match=False), base)
    full = SSNNGenerativeTask(experiment="weights", backend="torch")
    assert full.spike_loss(late, other, match=False) != full.spike_loss((st, cnt), other, match=False)
    with pytest.raises(ValueError, match="snnax_lift reproduces"):
        SSNNGenerativeTask(experiment="weights", snnax_lift=True)
    with pytest.raises(ValueError, match="event_budget must be"):
        SSNNGenerativeTask(experiment="weights", event_budget=0)


def test_exp2_matched_training_loss_gradient_matches_central_fd():
    """Exact pathwise gradients at the Exp. 2 scale (22 neurons, all 96 weights, matched depth-3 loss), float64,
    common random numbers; eps small enough that no spike count and no cross-neuron spike order changes."""
    dm = SSNNDataModule("weights", n_train=12, n_test=2, seed=0)
    dm.setup("fit")
    st, cnt = dm.train_data
    task = SSNNGenerativeTask(experiment="weights", backend="torch").double()
    noise = task.ssnn.sample_noise(12, seed=7)
    w0 = task.ssnn.weights.detach().clone()

    def loss(w):
        task.ssnn.weights.data.copy_(w)
        sol = task.ssnn(noise)
        return task.spike_loss((sol.spike_times, sol.counts), (st.double(), cnt), match=True), sol.counts

    val, counts = loss(w0)
    (grad,) = torch.autograd.grad(val, task.ssnn.weights)
    assert (grad[task.ssnn.connectivity] != 0).float().mean() > 0.5
    eps = 1e-7
    for idx in ((0, 4), (3, 17), (8, 20), (15, 21)):
        e = torch.zeros_like(w0)
        e[idx] = eps
        with torch.no_grad():
            (lp, cp), (lm, cm) = loss(w0 + e), loss(w0 - e)
        assert torch.equal(cp, counts) and torch.equal(cm, counts)
        assert grad[idx].item() == pytest.approx(((lp - lm) / (2 * eps)).item(), rel=1e-4, abs=1e-9)

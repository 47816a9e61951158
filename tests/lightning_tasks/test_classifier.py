"""SNNClassifier: layer stacks from config, readout aggregations and losses, parameter groups."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_tasks.classifier import LayerConfig, SNNClassifier
from norse_dh.modules import DHLIF, DHLIFRecurrent, LeakyReadout, VanillaLIF, VanillaLIFRecurrent


def test_builds_every_layer_kind_with_the_configured_options():
    layers = [
        LayerConfig(hidden_size=6, kind="dh_sfnn", branches=2, mask="contiguous", dend_tau_init=["large", "small"]),
        {"hidden_size": 5, "kind": "dh_srnn", "branches": 1, "train_dend_tau": False},
        LayerConfig(hidden_size=4, kind="sfnn", reset="hard"),
        LayerConfig(hidden_size=3, kind="srnn", reset="none", bias=False),
    ]
    m = SNNClassifier(10, 3, 20, layers=layers, readout="leaky")
    kinds = [type(layer) for layer in m.model]
    assert kinds == [DHLIF, DHLIFRecurrent, VanillaLIF, VanillaLIFRecurrent, LeakyReadout]
    first = m.model[0]
    factors = torch.sigmoid(first.dend_tau_raw)
    lo, hi = torch.sigmoid(torch.tensor([2.0, 6.0])), torch.sigmoid(torch.tensor([-4.0, 0.0]))
    assert ((factors[:, 0] >= lo[0]) & (factors[:, 0] <= lo[1])).all()  # beneficial init: branch 0 large
    assert ((factors[:, 1] >= hi[0]) & (factors[:, 1] <= hi[1])).all()  # branch 1 small
    mask = first.dendrites.mask.view(6, 2, -1)
    assert mask[:, 0, :5].all() and not mask[:, 0, 5:].any() and mask[:, 1, 5:].all()  # contiguous halves
    assert not m.model[1].dend_tau_raw.requires_grad
    assert m.model[2].reset == "zero" and m.model[3].reset == "none" and m.model[3].linear.bias is None
    out = m(torch.rand(2, 20, 10))
    assert out.shape == (20, 2, 3)


def test_timing_factors_get_their_own_learning_rate_group():
    m = SNNClassifier(
        8, 2, layers=[LayerConfig(hidden_size=4, branches=2, train_soma_tau=False)], lr=0.01, tau_lr_mult=3
    )
    groups = m.parameter_groups()
    assert [g["lr"] for g in groups] == [0.01, pytest.approx(0.03)]
    timing = {id(p) for p in groups[1]["params"]}
    assert timing == {id(m.model[0].dend_tau_raw)}  # frozen soma factor excluded
    base = {id(p) for p in groups[0]["params"]}
    assert id(m.model[0].dendrites.weight) in base and id(m.model[1].weight) in base
    opt = m.configure_optimizers()
    assert isinstance(opt["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)


def _reference_per_step_loss(outputs, targets, double_softmax):
    # The XOR scripts: loss += CE(out_t[index], y_t[index]) over every scored step t (batch mean per step).
    loss = 0.0
    for t in range(outputs.shape[0]):
        keep = targets[:, t] != -100
        if keep.any():
            scores = outputs[t][keep].softmax(-1) if double_softmax else outputs[t][keep]
            loss = loss + F.cross_entropy(scores, targets[keep, t])
    return loss


@pytest.mark.parametrize("double_softmax", [False, True])
def test_per_step_loss_is_the_reference_sum_over_scored_steps(double_softmax):
    torch.manual_seed(0)
    m = SNNClassifier(5, 2, 12, layers=[LayerConfig(hidden_size=4, v_th=0.1)], double_softmax=double_softmax)
    x = (torch.rand(6, 12, 5) < 0.5).float()
    y = torch.full((6, 12), -100)
    y[:, 8:] = torch.randint(2, (6, 1))
    loss, scores, targets = m.loss_and_predictions((x, y))
    outputs = m(x)
    expected = _reference_per_step_loss(outputs, y, double_softmax)
    assert torch.allclose(loss, expected, atol=1e-6)
    assert scores.shape == (12 * 6, 2) and (targets != -100).sum() == 4 * 6


def test_sequence_aggregations_match_their_definitions():
    torch.manual_seed(1)
    x = torch.rand(3, 9, 4)
    y = torch.tensor([0, 2, 1])
    for aggregation, expect in (
        ("sum_softmax_after", lambda o: o[2:].softmax(-1).sum(0)),
        ("mean_membrane", lambda o: o[2:].sum(0) / 9),
    ):
        m = SNNClassifier(4, 3, 9, layers=[LayerConfig(hidden_size=5)], readout="leaky", aggregation=aggregation)
        m.readout_start = 2
        loss, scores, _ = m.loss_and_predictions((x, y))
        agg = expect(m(x))
        assert torch.allclose(scores, agg)
        assert torch.allclose(loss, F.cross_entropy(agg, y))
    m = SNNClassifier(4, 3, 9, layers=[LayerConfig(hidden_size=5)], readout="lif", aggregation="spike_count")
    _, scores, _ = m.loss_and_predictions((x, y))
    spikes = m(x)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0} and torch.equal(scores, spikes.sum(0))


def test_invalid_configurations_raise_clear_errors():
    with pytest.raises(ValueError, match="spike_count"):
        SNNClassifier(4, 2, aggregation="spike_count", readout="linear")
    with pytest.raises(ValueError, match="branches"):
        SNNClassifier(4, 2, layers=[LayerConfig(kind="sfnn", branches=2)])
    with pytest.raises(ValueError, match="unknown layer option"):
        SNNClassifier(4, 2, layers=[{"hiden_size": 3}])
    with pytest.raises(ValueError, match="readout_start"):
        SNNClassifier(4, 2, 10, readout_start=10)
    with pytest.raises(ValueError, match="aggregation"):
        SNNClassifier(4, 2, aggregation="max_pool")
    m = SNNClassifier(4, 2, aggregation="mean_membrane")
    with pytest.raises(ValueError, match="targets of shape"):
        m.loss_and_predictions((torch.rand(2, 5, 4), torch.zeros(2, 5, dtype=torch.long)))
    with pytest.raises(ValueError, match="batch-first"):
        m(torch.rand(5, 4))


def test_training_steps_learn_a_separable_task():
    # Class 1 = input channel 0 active: a linear-readout DH-SFNN must learn it in a few Adam steps.
    torch.manual_seed(0)
    m = SNNClassifier(4, 2, 10, layers=[LayerConfig(hidden_size=8, dend_tau_init="large")], lr=0.05)
    y = torch.randint(2, (64,))
    x = (torch.rand(64, 10, 4) < 0.05).float()
    x[:, :, 0] = y.view(-1, 1).float()
    opt = torch.optim.Adam(m.parameter_groups())
    losses = []
    for _ in range(40):
        loss, _, _ = m.loss_and_predictions((x, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    preds = m.predict_step((x, y), 0)
    assert preds.shape == (64, 10)
    assert losses[-1] < 0.5 * losses[0]
    assert (preds[:, -1] == y).float().mean() > 0.9


def test_network_attribute_is_a_plain_sequential_snn_for_export():
    m = SNNClassifier(3, 2, layers=[LayerConfig(hidden_size=4)])
    assert isinstance(m.model, nn.Sequential) and isinstance(m.model[-1], nn.Linear)
    state = m.state_dict()
    m2 = SNNClassifier(3, 2, layers=[LayerConfig(hidden_size=4)])
    m2.load_state_dict(state)
    x = torch.rand(2, 7, 3)
    assert torch.equal(m(x), m2(x))

"""Floating-point Lava models reproduce the PyTorch models spike for spike (torch -> NIR file -> Lava).

Each network is compiled once and runs a batch of samples (concatenated in time with state resets), so these
tests also check that samples never leak into each other and that the per-connection Lava delay is aligned away.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lava_export.runner
from lava_export import load_blocks, run_network
from norse_dh.modules import (
    DHLIF,
    DHLIFRecurrent,
    LeakyReadout,
    SequentialSNN,
    VanillaLIF,
    VanillaLIFRecurrent,
)
from tests.lava_export.lava_export_helpers import nir_file, random_spikes, scale_weights, torch_outputs

TIMEOUT = 120.0


def _check_equal(model, x, tmp_path, min_spikes=20):
    ref = torch_outputs(model, x)
    res = run_network(nir_file(model, tmp_path), x, "floating_pt", timeout=TIMEOUT)
    n_spiking = len(res.layer_spikes)
    for layer, (want, got) in enumerate(zip(ref[:n_spiking], res.layer_spikes)):
        assert got.shape == want.shape
        assert want.sum() >= min_spikes, f"layer {layer}: reference too silent for a meaningful test"
        np.testing.assert_array_equal(got, want, err_msg=f"layer {layer} spikes differ")
    if len(ref) > n_spiking:
        assert res.readout is not None and res.readout.shape == ref[-1].shape
        np.testing.assert_allclose(res.readout, ref[-1], rtol=1e-12, atol=1e-12)
    return res


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_dhsfnn_with_leaky_readout_matches_torch(reset, tmp_path):
    torch.manual_seed(0)
    model = SequentialSNN(
        DHLIF(20, 16, branches=4, reset=reset, mask_seed=1, seed=2), LeakyReadout(16, 3, seed=3)
    ).double()
    scale_weights(model, 8.0)
    _check_equal(model, random_spikes(3, 60, 20, 0.25, seed=4), tmp_path)


def test_two_layer_dhsrnn_matches_torch(tmp_path):
    """Recurrent DH-SRNN layer (recurrent weights through the same mask) feeding a second DH-SFNN layer."""
    torch.manual_seed(1)
    model = SequentialSNN(
        DHLIFRecurrent(10, 12, branches=2, reset="subtract", mask_seed=5, seed=6, dend_tau_init="large"),
        DHLIF(12, 8, branches=3, reset="zero", mask_seed=7, seed=8),
        LeakyReadout(8, 2, seed=9),
    ).double()
    scale_weights(model, 12.0)
    _check_equal(model, random_spikes(4, 50, 10, 0.3, seed=10), tmp_path, min_spikes=10)


def test_vanilla_srnn_with_linear_readout_matches_torch(tmp_path):
    """Vanilla recurrent LIF + vanilla LIF + nn.Linear readout (a leaky integrator with decay 0 on Lava)."""
    torch.manual_seed(2)
    model = SequentialSNN(
        VanillaLIFRecurrent(8, 10, reset="subtract", seed=11),
        VanillaLIF(10, 6, reset="none", seed=12),
        torch.nn.Linear(6, 3),
    ).double()
    scale_weights(model, 12.0)
    _check_equal(model, random_spikes(3, 50, 8, 0.3, seed=13), tmp_path, min_spikes=10)


@settings(max_examples=2, deadline=None)
@given(
    inputs=st.integers(4, 24),
    hidden=st.integers(2, 12),
    branches=st.integers(1, 5),
    recurrent=st.booleans(),
    reset=st.sampled_from(["subtract", "zero", "none"]),
    seed=st.integers(0, 1000),
)
def test_random_dhlif_models_match_torch(inputs, hidden, branches, recurrent, reset, seed, tmp_path_factory):
    torch.manual_seed(seed)
    cls = DHLIFRecurrent if recurrent else DHLIF
    model = SequentialSNN(cls(inputs, hidden, branches=branches, reset=reset, mask_seed=seed, seed=seed + 1)).double()
    scale_weights(model, 12.0, seed=seed)
    x = random_spikes(2, 40, inputs, 0.3, seed=seed + 2)
    _check_equal(model, x, tmp_path_factory.mktemp("h"), min_spikes=1)


def test_sample_order_lanes_and_chunks_do_not_matter(tmp_path, monkeypatch):
    """State is reset between samples, lanes are independent and large batches are split into worker runs: one lane
    running the samples one after the other, and two worker runs (2 lanes, then 1) on the reversed batch, give the
    same outputs, permuted."""
    torch.manual_seed(3)
    model = SequentialSNN(DHLIFRecurrent(6, 5, branches=2, mask_seed=1, seed=2), LeakyReadout(5, 2, seed=3)).double()
    scale_weights(model, 10.0)
    x = random_spikes(3, 30, 6, 0.4, seed=14)
    path = nir_file(model, tmp_path)
    a = run_network(path, x, timeout=TIMEOUT, lanes=1)
    monkeypatch.setattr(lava_export.runner, "MAX_INPUT_BYTES", 2 * 30 * 6)  # two samples per worker run
    b = run_network(load_blocks(path), x[::-1].copy(), timeout=TIMEOUT, lanes=2)
    assert b.timings["worker_runs"] == 2
    assert a.output_spikes.sum() > 0
    np.testing.assert_array_equal(a.output_spikes, b.output_spikes[::-1])
    np.testing.assert_array_equal(a.readout, b.readout[::-1])
    assert a.timings["steps"] == 3 * 30 + 2 and b.timings["steps"] == (30 + 2) + (30 + 2)


def test_briefly_trained_multitimescale_xor_model_matches_torch(tmp_path):
    """A 2-branch DH-SFNN trained (40 Adam steps) on the multi-timescale spiking XOR: Lava float reproduces the
    float64 model exactly and the float32 model it was trained as to within rounding."""
    from lightning_tasks.data.xor import IGNORE_INDEX, multitimescale_xor

    torch.manual_seed(0)
    model = SequentialSNN(
        DHLIF(40, 16, branches=2, bias=False, dend_tau_init=[(2.0, 6.0), (-4.0, 0.0)], mask_seed=0, seed=0),
        torch.nn.Linear(16, 2),
    )
    scale_weights(model, 5.0, inhibitory=0.0)  # an active start, so that a few steps of training change spikes
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(40):
        x, y = multitimescale_xor(32, gen)
        out, _ = model(x.transpose(0, 1))
        loss = torch.nn.functional.cross_entropy(out.reshape(-1, 2), y.t().reshape(-1), ignore_index=IGNORE_INDEX)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, _ = multitimescale_xor(4, torch.Generator().manual_seed(2))
    spikes = x.numpy().astype(np.uint8)
    ref32 = torch_outputs(model, spikes)[0]
    res = _check_equal(model.double(), spikes, tmp_path, min_spikes=20)
    assert np.mean(res.layer_spikes[0] == ref32) > 0.999

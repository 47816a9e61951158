"""The DH-LIF step function (dhsnn.md §1.1): hand-computed values, reductions, linearity, reference parity."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from norse.torch.functional.lif import LIFFeedForwardState as NorseState
from norse.torch.functional.lif import LIFParameters, lif_feed_forward_step

from norse_dh import DHLIF, DHLIFRecurrent
from norse_dh.functional.dhlif import DHLIFParameters, DHLIFState, SomaParameters, dhlif_step
from tests.norse_dh.reference_dhsnn import reference_dh_sfnn

# N = 1 neuron, D = 2 branches, a = (0.5, 0.25), b = 0.5, theta = 1; dendritic inputs per step:
INPUTS = [[2.0, 4.0], [0.0, 0.0], [2.0, 0.0]]
# i1 = (1, 3), u1 = 2 -> spike; i2 = (0.5, 0.75); i3 = (1.25, 0.1875). Soma by hand for each reset mode:
EXPECTED = {
    "subtract": ([2.0, 0.625, 1.03125], [1, 0, 1]),  # u2 = 1 + 0.625 - 1; u3 = 0.3125 + 0.71875
    "zero": ([2.0, 0.625, 1.03125], [1, 0, 1]),  # u2 = 0.5*2*(1-1) + 0.625
    "none": ([2.0, 1.625, 1.53125], [1, 1, 1]),  # u2 = 1 + 0.625; u3 = 0.8125 + 0.71875
}


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_hand_computed_three_steps(reset):
    p = DHLIFParameters(
        torch.tensor([[0.5, 0.25]], dtype=torch.float64),
        SomaParameters(torch.tensor([0.5], dtype=torch.float64), 1.0, reset),
    )
    state = DHLIFState(torch.zeros(1, 1, 2, dtype=torch.float64), *torch.zeros(2, 1, 1, dtype=torch.float64))
    us, zs = [], []
    for inp in INPUTS:
        z, state = dhlif_step(torch.tensor([[inp]], dtype=torch.float64), state, p)
        us.append(state.u.item())
        zs.append(int(z.item()))
    assert us == pytest.approx(EXPECTED[reset][0], abs=1e-12)
    assert zs == EXPECTED[reset][1]
    torch.testing.assert_close(state.i, torch.tensor([[[1.25, 0.1875]]], dtype=torch.float64))


def test_subtractive_reset_differs_from_zero_reset_when_potential_stays_high():
    # u1 = 3 (spike): subtract gives b*3 + 0 - 1 = 0.5, zero gives 0.
    p = lambda reset: DHLIFParameters(  # noqa: E731
        torch.tensor([[0.0]], dtype=torch.float64), SomaParameters(torch.tensor([0.5], dtype=torch.float64), 1.0, reset)
    )
    results = {}
    for reset in ("subtract", "zero"):
        state = DHLIFState(torch.zeros(1, 1, 1, dtype=torch.float64), *torch.zeros(2, 1, 1, dtype=torch.float64))
        _, state = dhlif_step(torch.tensor([[[6.0]]], dtype=torch.float64), state, p(reset))
        _, state = dhlif_step(torch.tensor([[[0.0]]], dtype=torch.float64), state, p(reset))
        results[reset] = state.u.item()
    assert results == {"subtract": pytest.approx(0.5), "zero": pytest.approx(0.0)}


@given(st.integers(1, 4), st.integers(1, 6), st.integers(1, 5), st.integers(0, 2**16))
def test_one_branch_full_mask_is_norse_current_based_lif(batch, inputs, neurons, seed):
    """D = 1, hard reset: DH-LIF == Norse's lif_feed_forward_step with a = 1 - dt/tau_syn, b = 1 - dt/tau_mem."""
    torch.manual_seed(seed)
    layer = DHLIF(inputs, neurons, 1, mask="full", reset="zero", bias=False, method="super").double()
    x = (torch.rand(40, batch, inputs, dtype=torch.float64) < 0.3).double() * 3.0
    z_ours, _ = layer(x)
    a = layer.dend_decay[:, 0].detach()
    b = layer.soma_decay.detach()
    dt = 1e-3
    p = LIFParameters(
        tau_syn_inv=(1 - a) / dt, tau_mem_inv=(1 - b) / dt, v_leak=torch.tensor(0.0), v_th=torch.tensor(1.0)
    )
    w = layer.dendrites.masked_weight().detach()[:, :inputs]
    state = NorseState(
        torch.zeros(batch, neurons, dtype=torch.float64), torch.zeros(batch, neurons, dtype=torch.float64)
    )
    z_norse = []
    for x_t in x.unbind(0):
        z, state = lif_feed_forward_step((1 - a) * (x_t @ w.t()), state, p, dt)
        z_norse.append(z)
    assert torch.equal(z_ours.detach(), torch.stack(z_norse))


shapes = st.tuples(st.integers(1, 3), st.integers(1, 8), st.integers(1, 6), st.integers(1, 4), st.integers(1, 12))


@given(shapes, st.integers(0, 2**16))
def test_branch_currents_and_potential_are_linear_without_reset(shape, seed):
    batch, m, n, d, steps = shape
    torch.manual_seed(seed)
    layer = DHLIF(m, n, d, reset="none", bias=False).double()
    x1, x2 = torch.randn(2, steps, batch, m, dtype=torch.float64)

    def trace(x):
        state = layer.initial_state(x)
        p = layer.dhlif_parameters()
        currents, potentials = [], []
        for inp in layer.dendrites(x).unbind(0):
            _, state = dhlif_step(inp, state, p)
            currents.append(state.i)
            potentials.append(state.u)
        return torch.stack(currents), torch.stack(potentials)

    i12, u12 = trace(x1 + 2.5 * x2)
    i1, u1 = trace(x1)
    i2, u2 = trace(x2)
    torch.testing.assert_close(i12, i1 + 2.5 * i2)
    torch.testing.assert_close(u12, u1 + 2.5 * u2)


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize(("m", "n", "d", "recurrent"), [(13, 7, 3, False), (20, 16, 4, False), (9, 6, 2, True)])
def test_matches_independent_reference_implementation(reset, m, n, d, recurrent):
    torch.manual_seed(0)
    cls = DHLIFRecurrent if recurrent else DHLIF
    layer = cls(m, n, d, reset=reset, dend_tau_init="large").double()
    with torch.no_grad():
        layer.dendrites.weight.mul_(25.0).add_(1.0)  # enough drive for many spikes
    x = (torch.rand(60, 5, m, dtype=torch.float64) < 0.3).double()
    z, _ = layer(x)
    sd = {k: v.detach().numpy() for k, v in layer.state_dict().items()}
    z_ref, _ = reference_dh_sfnn(
        x.numpy(),
        sd["dendrites.weight"],
        sd["dendrites.mask"],
        sd["dendrites.bias"],
        sd["dend_tau_raw"],
        sd["soma_tau_raw"],
        1.0,
        reset,
        recurrent,
    )
    assert z_ref.sum() > 20
    np.testing.assert_array_equal(z.detach().numpy(), z_ref)

"""Pair STDP: single-pair windows, heterogeneity, bounds, masks, Norse parity, homeostasis and the layer learner."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from norse.torch.functional.stdp import STDPParameters as NorseSTDPParameters
from norse.torch.functional.stdp import STDPState as NorseSTDPState
from norse.torch.functional.stdp import stdp_step_linear

from norse_dh.functional.stdp import (
    HomeostasisParameters,
    STDPParameters,
    adaptive_threshold_step,
    normalise_incoming,
    stdp_initial_state,
    stdp_step,
)
from norse_dh.modules import DHLIF, DHLIFRecurrent, VanillaLIF, VanillaLIFRecurrent
from norse_dh.modules.plasticity import STDP, STDPLearner, draw_heterogeneous


def _run_pair(p: STDPParameters, t_pre: int, t_post: int, w0: float = 0.5, steps: int = 30) -> torch.Tensor:
    w = torch.full((1, 1), w0, dtype=torch.float64)
    state = stdp_initial_state(1, 1, 1, p, w)
    for t in range(steps):
        s = torch.tensor([[float(t == t_pre)]], dtype=torch.float64)
        z = torch.tensor([[float(t == t_post)]], dtype=torch.float64)
        w, state = stdp_step(s, z, w, state, p)
    return w - w0


@pytest.mark.parametrize("delta", [0, 1, 5, 12])
def test_single_pair_ltp_window(delta):
    p = STDPParameters(tau_plus=15e-3, tau_minus=25e-3, eta_plus=0.01, eta_minus=0.02)
    dw = _run_pair(p, 3, 3 + delta)
    assert dw.item() == pytest.approx(0.01 * math.exp(-delta * 1e-3 / 15e-3), rel=1e-12)


@pytest.mark.parametrize("delta", [1, 4, 10])
def test_single_pair_ltd_window(delta):
    p = STDPParameters(tau_plus=15e-3, tau_minus=25e-3, eta_plus=0.01, eta_minus=0.02)
    dw = _run_pair(p, 3 + delta, 3)
    assert dw.item() == pytest.approx(-0.02 * math.exp(-delta * 1e-3 / 25e-3), rel=1e-12)


def test_per_synapse_tau_is_honoured_elementwise():
    """A (2, 3) weight with distinct per-synapse tau_plus and tau_minus: each synapse follows its own window."""
    tp = torch.tensor([[5e-3, 10e-3, 20e-3], [40e-3, 80e-3, 3e-3]], dtype=torch.float64)
    tm = torch.tensor([[7e-3, 11e-3, 13e-3], [17e-3, 19e-3, 23e-3]], dtype=torch.float64)
    eta = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64) * 1e-3
    p = STDPParameters(tp, tm, eta, 2 * eta, w_min=-1.0, w_max=1.0)
    w = torch.zeros(2, 3, dtype=torch.float64)
    state = stdp_initial_state(1, 2, 3, p, w)
    assert state.x.shape == (1, 2, 3) and state.y.shape == (1, 2, 3)
    # pre spikes of all three inputs at t=0, post neuron 0 at t=4; then post neuron 1 at t=6, pre again at t=9
    pre_t, post_t = {0: [0, 1, 2], 9: [0, 1, 2]}, {4: [0], 6: [1]}
    for t in range(12):
        s = torch.zeros(1, 3, dtype=torch.float64)
        z = torch.zeros(1, 2, dtype=torch.float64)
        s[0, pre_t.get(t, [])] = 1.0
        z[0, post_t.get(t, [])] = 1.0
        w, state = stdp_step(s, z, w, state, p)
    dt = 1e-3
    expected = torch.empty(2, 3, dtype=torch.float64)
    expected[0] = eta[0] * torch.exp(-4 * dt / tp[0]) - 2 * eta[0] * torch.exp(-5 * dt / tm[0])
    expected[1] = eta[1] * torch.exp(-6 * dt / tp[1]) - 2 * eta[1] * torch.exp(-3 * dt / tm[1])
    torch.testing.assert_close(w, expected, rtol=1e-12, atol=1e-15)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), bound=st.sampled_from(["additive", "multiplicative"]))
def test_homogeneous_equals_heterogeneous_with_zero_spread(seed, bound):
    """Neuron-level traces with shared constants == synapse-level traces whose per-synapse values are all equal."""
    g = torch.Generator().manual_seed(seed)
    s = (torch.rand(50, 2, 4, generator=g) < 0.3).double()
    z = (torch.rand(50, 2, 3, generator=g) < 0.3).double()
    w0 = torch.rand(3, 4, generator=g, dtype=torch.float64)
    ph = STDPParameters(20e-3, 30e-3, 4e-3, 5e-3, bound=bound, mu=0.7)
    full = lambda v: torch.full((3, 4), v, dtype=torch.float64)  # noqa: E731
    pe = ph._replace(tau_plus=full(20e-3), tau_minus=full(30e-3), eta_plus=full(4e-3), eta_minus=full(5e-3))
    wh, sh = w0, stdp_initial_state(2, 3, 4, ph, w0)
    we, se = w0, stdp_initial_state(2, 3, 4, pe, w0)
    assert se.x.dim() == 3 and sh.x.dim() == 2
    for t in range(50):
        wh, sh = stdp_step(s[t], z[t], wh, sh, ph)
        we, se = stdp_step(s[t], z[t], we, se, pe)
    torch.testing.assert_close(wh, we, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    ("bound", "norse_algorithm", "mu"),
    [
        ("additive", "additive", 0.0),
        ("multiplicative", "multiplicative_pow", 1.0),
        ("multiplicative", "multiplicative_pow", 0.5),
    ],
)
def test_parity_with_norse_stdp_step_linear_homogeneous(bound, norse_algorithm, mu):
    """Shared constants, Norse trace convention: the same weights as norse's stdp_step_linear."""
    g = torch.Generator().manual_seed(5)
    s = (torch.rand(80, 2, 5, generator=g) < 0.25).float()
    z = (torch.rand(80, 2, 3, generator=g) < 0.25).float()
    w0 = torch.rand(3, 5, generator=g)
    pn = NorseSTDPParameters(
        tau_pre_inv=torch.as_tensor(1 / 20e-3), tau_post_inv=torch.as_tensor(1 / 30e-3), eta_plus=4e-3,
        eta_minus=5e-3, stdp_algorithm=norse_algorithm, mu=mu, w_min=0.0, w_max=1.0,
    )  # fmt: skip
    sn = NorseSTDPState(torch.zeros(2, 5), torch.zeros(2, 3))
    p = STDPParameters(20e-3, 30e-3, 4e-3, 5e-3, 0.0, 1.0, bound, mu, True, "norse", 1e-3)
    w, wn, state = w0.clone(), w0.clone(), stdp_initial_state(2, 3, 5, p, w0)
    for t in range(80):
        wn, sn = stdp_step_linear(s[t], z[t], wn, sn, pn, dt=1e-3)
        w, state = stdp_step(s[t], z[t], w, state, p)
    assert not torch.equal(w, w0)
    torch.testing.assert_close(w, wn, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("bound", "norse_algorithm", "mu"),
    [
        ("additive", "additive", 0.0),
        ("multiplicative", "multiplicative_pow", 1.0),
        ("multiplicative", "multiplicative_pow", 0.5),
    ],
)
def test_parity_with_norse_stdp_step_linear(bound, norse_algorithm, mu):
    """Norse trace convention, per-neuron tau, per-synapse eta: identical weights to norse's stdp_step_linear."""
    g = torch.Generator().manual_seed(3)
    n_pre, n_post, batch, steps = 6, 4, 3, 60
    s = (torch.rand(steps, batch, n_pre, generator=g) < 0.2).float()
    z = (torch.rand(steps, batch, n_post, generator=g) < 0.2).float()
    w0 = torch.rand(n_post, n_pre, generator=g)
    tau_pre = 10e-3 + 30e-3 * torch.rand(n_pre, generator=g)
    tau_post = 10e-3 + 30e-3 * torch.rand(n_post, generator=g)
    eta_p = 0.01 * torch.rand(n_post, n_pre, generator=g)
    eta_m = 0.01 * torch.rand(n_post, n_pre, generator=g)
    pn = NorseSTDPParameters(
        tau_pre_inv=1 / tau_pre, tau_post_inv=1 / tau_post, eta_plus=eta_p, eta_minus=eta_m,
        stdp_algorithm=norse_algorithm, mu=mu, w_min=0.0, w_max=1.0,
    )  # fmt: skip
    sn = NorseSTDPState(torch.zeros(batch, n_pre), torch.zeros(batch, n_post))
    p = STDPParameters(tau_pre, tau_post[:, None], eta_p, eta_m, 0.0, 1.0, bound, mu, True, "norse", 1e-3)
    state = stdp_initial_state(batch, n_post, n_pre, p, w0)
    wn, w = w0.clone(), w0.clone()
    for t in range(steps):
        wn, sn = stdp_step_linear(s[t], z[t], wn, sn, pn, dt=1e-3)
        w, state = stdp_step(s[t], z[t], w, state, p)
    assert not torch.equal(w, w0)
    torch.testing.assert_close(w, wn, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(state.x, sn.t_pre)


def test_additive_bounds_clip_and_multiplicative_soft_bounds():
    p = STDPParameters(eta_plus=0.3, eta_minus=0.3, w_min=0.0, w_max=1.0)
    dw_up = _run_pair(p, 0, 0, w0=0.9)  # additive: 0.9 + 0.3 clipped at 1
    assert dw_up.item() == pytest.approx(0.1)
    pm = p._replace(bound="multiplicative", mu=1.0, hardbound=False)
    dw_soft = _run_pair(pm, 0, 0, w0=0.9)  # A_plus = eta (w_max - w) = 0.03
    assert dw_soft.item() == pytest.approx(0.3 * 0.1)
    dw_soft_ltd = _run_pair(pm, 1, 0, w0=0.2)  # A_minus = eta (w - w_min) = 0.06, decayed one step
    assert dw_soft_ltd.item() == pytest.approx(-0.3 * 0.2 * math.exp(-1e-3 / 20e-3))


def test_mask_keeps_masked_entries_unchanged():
    g = torch.Generator().manual_seed(0)
    w = torch.rand(5, 7, generator=g)
    mask = torch.rand(5, 7, generator=g) < 0.5
    w = w * mask  # masked entries are exactly zero, as in DendriticLinear
    p = STDPParameters(w_min=0.05)
    state = stdp_initial_state(2, 5, 7, p, w)
    for _ in range(20):
        s = (torch.rand(2, 7, generator=g) < 0.5).float()
        z = (torch.rand(2, 5, generator=g) < 0.5).float()
        w, state = stdp_step(s, z, w, state, p, mask)
    assert torch.all(w[~mask] == 0.0)
    assert torch.all(w[mask] >= 0.05)


def test_heterogeneous_draws_match_means():
    g = torch.Generator().manual_seed(1)
    tau, eta = draw_heterogeneous((400, 400), 20e-3, 5e-3, generator=g)
    assert tau.mean().item() == pytest.approx(20e-3, rel=0.02)  # clipping at [2, 100] ms moves it < 1 %
    assert eta.mean().item() == pytest.approx(5e-3, rel=0.02)
    assert (tau.std() / tau.mean()).item() == pytest.approx(0.5, abs=0.03)  # Gamma(k=4): CV 1/2
    assert tau.min() >= 2e-3 and tau.max() <= 100e-3
    het = STDP(10, 8, heterogeneous=True, seed=4)
    hom = STDP(10, 8)
    assert het.tau_plus.std() > 0 and hom.tau_plus.std() == 0
    torch.testing.assert_close(het.eta_minus, 1.1 * het.eta_plus)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="bound"):
        STDP(3, 3, bound="quadratic")
    with pytest.raises(ValueError, match="w_min < w_max"):
        STDP(3, 3, w_min=1.0, w_max=0.5)
    with pytest.raises(ValueError, match="mask must have shape"):
        STDP(3, 3, mask=torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="s_pre"):
        stdp_step(
            torch.zeros(1, 3),
            torch.zeros(1, 2),
            torch.zeros(3, 3),
            stdp_initial_state(1, 2, 3, STDPParameters(), torch.zeros(1)),
        )


def test_adaptive_threshold_and_normalisation():
    h = HomeostasisParameters(target_rate=0.1, theta_plus=1.0, tau_theta=1e9)
    theta_rest = torch.ones(3)
    theta = adaptive_threshold_step(theta_rest.clone(), theta_rest, torch.tensor([0.1, 0.5, 0.0]), h)
    torch.testing.assert_close(theta, torch.tensor([1.0, 1.4, 0.9]))
    w = torch.tensor([[1.0, 3.0, 5.0], [2.0, 2.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    out = normalise_incoming(w, 2.0, mask)
    torch.testing.assert_close(out, torch.tensor([[0.5, 1.5, 5.0], [1.0, 1.0, 0.0]]))


def test_learner_on_lif_recurrent_uses_delayed_recurrent_spikes():
    """STDP through the learner equals the functional rule applied to [x[t], z[t-1]] of the same run."""
    torch.manual_seed(0)
    layer = VanillaLIFRecurrent(5, 4, soma_tau_init=2.0, train_soma_tau=False, bias=False)
    with torch.no_grad():
        layer.linear.weight.uniform_(0.0, 2.0)
    w0 = layer.linear.weight.detach().clone()
    learner = STDPLearner(layer, eta_plus=0.01, w_max=3.0)
    x = (torch.rand(25, 1, 5) < 0.5).float()
    z, _ = learner(x)
    assert z.sum() > 0
    # replay: the same spikes through the functional rule (the run is deterministic given weights at each step)
    p = learner.stdp.stdp_parameters()
    w, st_ = w0.clone(), stdp_initial_state(1, 4, 9, p, w0)
    z_prev = torch.zeros(1, 4)
    for t in range(25):
        w, st_ = stdp_step(torch.cat([x[t], z_prev], -1), z[t], w, st_, p)
        z_prev = z[t]
    torch.testing.assert_close(layer.linear.weight.detach(), w)
    assert not torch.equal(w, w0)
    assert len(learner.rate_history) == 1


@pytest.mark.parametrize("layer_cls", [DHLIF, DHLIFRecurrent])
def test_learner_on_dhlif_respects_dendritic_mask(layer_cls):
    torch.manual_seed(1)
    layer = layer_cls(6, 5, branches=3, bias=False)
    with torch.no_grad():
        layer.dendrites.weight.abs_().mul_(4.0).mul_(layer.dendrites.mask)
    w0 = layer.dendrites.weight.detach().clone()
    learner = STDPLearner(
        layer, heterogeneous=True, seed=2, eta_plus=0.05, w_max=3.0, homeostasis=HomeostasisParameters(norm_target=5.0)
    )
    x = (torch.rand(30, 2, 6) < 0.6).float()
    z, _ = learner(x)
    w = layer.dendrites.weight.detach()
    mask = layer.dendrites.mask.bool()
    assert z.sum() > 0
    assert torch.all(w[~mask] == 0.0)
    assert not torch.equal(w[mask], w0[mask])
    # incoming normalisation: each neuron's (all branches) plastic L1 norm is the target
    per_neuron = (w * mask).view(5, 3, -1).abs().sum((1, 2))
    torch.testing.assert_close(per_neuron, torch.full((5,), 5.0))


def test_learner_on_feed_forward_lif_matches_functional_rule():
    torch.manual_seed(2)
    layer = VanillaLIF(5, 3, soma_tau_init=2.0, train_soma_tau=False, bias=False)
    with torch.no_grad():
        layer.linear.weight.uniform_(0.5, 2.0)
    w0 = layer.linear.weight.detach().clone()
    learner = STDPLearner(layer, eta_plus=0.02, w_max=3.0, bound="multiplicative")
    x = (torch.rand(20, 2, 5) < 0.5).float()
    z, _ = learner(x)
    p = learner.stdp.stdp_parameters()
    w, st_ = w0.clone(), stdp_initial_state(2, 3, 5, p, w0)
    for t in range(20):
        w, st_ = stdp_step(x[t], z[t], w, st_, p)
    assert z.sum() > 0
    torch.testing.assert_close(layer.linear.weight.detach(), w)
    with pytest.raises(TypeError, match="STDPLearner needs"):
        STDPLearner(torch.nn.Linear(3, 3))

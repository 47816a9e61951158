"""Stochastic event-driven LIF network: exact pathwise gradients, limits, statistics, convergence, bad input."""

from __future__ import annotations

import math
import pickle
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.integrate import quad
from scipy.optimize import brentq

from norse_dh.functional.ssnn import (
    SSNNParameters,
    check_grid,
    intensity,
    ssnn_initial_state,
    ssnn_solve,
    ssnn_step,
)
from norse_dh.losses.marcus import marcus_lift
from norse_dh.losses.mmd import sig_mmd2
from norse_dh.modules.ssnn import SSNN, SSNNCell, feedforward_mask
from norse_dh.noise import SSNNNoise

F64 = torch.float64
EXP1 = dict(mu1=15.0, mu2=0.0, v_reset=1.4, alpha=0.03)


def exp1_params(s: float = 0.5, **kw) -> SSNNParameters:
    return SSNNParameters(sigma=torch.tensor([[s, 0.0], [0.0, 0.0]], dtype=F64), **(EXP1 | kw))


def chain_params() -> SSNNParameters:
    return SSNNParameters(mu1=6.0, mu2=5.0, sigma=0.25 * torch.eye(2, dtype=F64), v_reset=1.2, alpha=0.03)


def chain_weights() -> torch.Tensor:
    W = torch.zeros(3, 3, dtype=F64)
    W[0, 1], W[0, 2], W[1, 2] = 0.8, 0.5, 0.3
    W[1, 0], W[0, 0] = -0.2, 0.1  # a spike-to-spike interaction back to neuron 0 and a self-weight
    return W


# ------------------------------------------------------------------------------------------------ exact gradients
def test_spike_time_gradient_wrt_input_current_matches_central_fd():
    noise = SSNNNoise.sample(4, 1, 300, 3, 0.01, seed=0, dtype=F64)
    p = exp1_params()

    def times(c):
        return ssnn_solve(c, torch.zeros(1, 1, dtype=F64), noise, p, 3.0, budget="truncate").spike_times[:, 0]

    # one current per path (B, 1): d tau[b, j] / d c[b] for all paths from one reverse pass per spike index j
    c = torch.full((4, 1), 1.5, dtype=F64, requires_grad=True)
    tau = times(c)
    jac = torch.stack([torch.autograd.grad(tau[:, j].sum(), c, retain_graph=True)[0][:, 0] for j in range(3)], 1)
    eps = 1e-6
    fd = (times(c.detach() + eps) - times(c.detach() - eps)) / (2 * eps)
    assert (tau < 3.0).all()  # all 12 spikes happen, so every entry is a real spike time
    torch.testing.assert_close(jac, fd, rtol=1e-6, atol=1e-8)
    assert (jac < 0).all()  # more current -> earlier spikes


def test_loss_gradient_wrt_weights_rates_and_current_matches_central_fd():
    """A smooth loss of a 3-neuron chain's spike times: autograd == central FD with common random numbers."""
    noise = SSNNNoise.sample(3, 3, 150, 6, 0.01, seed=3, dtype=F64)
    p0 = chain_params()
    c0 = torch.tensor([1.5, 0.2, 0.0], dtype=F64)
    W0, mu0 = chain_weights(), torch.tensor([6.0, 5.0], dtype=F64)
    g = torch.Generator().manual_seed(0)
    wts = torch.rand(3, 3, 6, generator=g, dtype=F64)

    def loss(c, W, mu):
        p = p0._replace(mu1=mu[0], mu2=mu[1])
        sol = ssnn_solve(c, W, noise, p, 1.5, v0=1.1, i0=0.6)
        return (sol.spike_times * wts).sum()

    args = [c0.clone().requires_grad_(), W0.clone().requires_grad_(), mu0.clone().requires_grad_()]
    grads = torch.autograd.grad(loss(*args), args)
    assert all(g_.abs().sum() > 0 for g_ in grads)
    eps = 1e-6
    for k, base in enumerate((c0, W0, mu0)):
        dirs = [torch.randn(base.shape, generator=g, dtype=F64)]
        if k == 1:  # the interaction weight w_10 and the self-weight w_00 one by one
            for idx in ((1, 0), (0, 0)):
                e = torch.zeros_like(base)
                e[idx] = 1.0
                dirs.append(e)
        for d in dirs:
            plus = [a.detach() + (eps * d if j == k else 0) for j, a in enumerate(args)]
            minus = [a.detach() - (eps * d if j == k else 0) for j, a in enumerate(args)]
            fd = (loss(*plus) - loss(*minus)) / (2 * eps)
            ad = (grads[k] * d).sum()
            assert ad.item() == pytest.approx(fd.item(), rel=1e-5, abs=1e-8)


def test_signature_mmd_gradient_through_marcus_lift_matches_fd():
    noise = SSNNNoise.sample(6, 1, 200, 3, 0.01, seed=4, dtype=F64)
    data = ssnn_solve(
        1.5, torch.zeros(1, 1, dtype=F64), noise._replace(xi=noise.xi.flip(0)), exp1_params(), 2.0, budget="truncate"
    )
    y = marcus_lift(data.spike_times, data.counts, 2.0, time_scale=2.0, count_scale=3.0)

    def loss(c):
        sol = ssnn_solve(c, torch.zeros(1, 1, dtype=F64), noise, exp1_params(), 2.0, budget="truncate")
        x = marcus_lift(sol.spike_times, sol.counts, 2.0, time_scale=2.0, count_scale=3.0)
        return sig_mmd2(x, y, dyadic_order=1, backend="torch")

    c = torch.tensor(1.2, dtype=F64, requires_grad=True)
    (ad,) = torch.autograd.grad(loss(c), c)
    eps = 1e-6
    fd = (loss(c.detach() + eps) - loss(c.detach() - eps)) / (2 * eps)
    assert ad.item() == pytest.approx(fd.item(), rel=1e-5)


# ------------------------------------------------------------------------------------------- limits and statistics
def _closed_form_spikes(xi: list[float], c: float, M: int) -> list[float]:
    """Noise-free single neuron: v(t) = c + (v_prev - c) e^{-mu1 (t - t_prev)}; spike when int lambda(v) = xi + alpha."""
    t, v0, out = 0.0, 0.0, []
    for j in range(M):

        def v(u, t=t, v0=v0):
            return c + (v0 - c) * math.exp(-EXP1["mu1"] * (u - t))

        def clock(tt, t=t, v=v, j=j):
            integral = quad(lambda u: math.exp(5.0 * min(v(u) - 1.0, 10.0)), t, tt, epsabs=1e-13, epsrel=1e-13)[0]
            return integral - (xi[j] + EXP1["alpha"])

        tau = brentq(clock, t, t + 50.0, xtol=1e-14)
        out.append(tau)
        v0, t = v(tau) - EXP1["v_reset"], tau
    return out


def test_noise_free_limit_matches_closed_form_clock_with_order_h():
    errors = []
    for dt in (0.01, 0.005, 0.0025):
        noise = SSNNNoise.sample(4, 1, round(2.0 / dt), 3, dt, seed=0, dtype=F64)
        sol = ssnn_solve(1.5, torch.zeros(1, 1, dtype=F64), noise, exp1_params(0.0), 2.0, budget="truncate")
        exact = torch.tensor([_closed_form_spikes(noise.xi[b, 0].tolist(), 1.5, 3) for b in range(4)], dtype=F64)
        assert (sol.counts == 3).all()
        errors.append((sol.spike_times[:, 0] - exact).abs().max().item())
        assert errors[-1] < 3 * dt
    assert 1.4 < errors[0] / errors[1] < 3.0 and 1.4 < errors[1] / errors[2] < 3.0


def test_constant_intensity_gives_exponential_interspike_intervals():
    """beta = 0, alpha = 0: lambda = 1 / tau_s, so ISIs ~ Exp(rate 1 / tau_s) (KS test, fixed seed)."""
    tau_s, T, M = 0.5, 10.0, 60
    p = SSNNParameters(
        mu1=15.0, sigma=torch.tensor([[0.5, 0.0], [0.0, 0.0]], dtype=F64), beta=0.0, alpha=0.0, tau_s=tau_s
    )
    noise = SSNNNoise.sample(100, 1, 200, M, 0.05, seed=11, dtype=F64)
    sol = ssnn_solve(1.0, torch.zeros(1, 1, dtype=F64), noise, p, T)
    assert (sol.counts < M).all()
    isis = []
    for b in range(100):
        n = int(sol.counts[b, 0])
        t = torch.cat((torch.zeros(1, dtype=F64), sol.spike_times[b, 0, :n]))
        isi = t.diff()
        torch.testing.assert_close(isi, noise.xi[b, 0, :n] * tau_s)  # the clock integrates lambda exactly
        isis.append(isi)
    isis = torch.cat(isis).numpy()
    assert len(isis) > 1500
    assert stats.kstest(isis, "expon", args=(0, tau_s)).pvalue > 0.01
    assert abs(isis.mean() - tau_s) < 4 * tau_s / math.sqrt(len(isis))


def test_halving_the_step_changes_spike_times_by_order_h():
    """The same Brownian path refined by Brownian bridges: |tau_h - tau_ref| halves with h (strong order 1)."""
    noise = SSNNNoise.sample(8, 1, 100, 3, 0.02, seed=1, dtype=F64)
    g = torch.Generator().manual_seed(5)
    levels = [noise]
    for _ in range(4):
        levels.append(levels[-1].refine(generator=g))
    sols = [ssnn_solve(1.5, torch.zeros(1, 1, dtype=F64), nz, exp1_params(), 2.0, budget="truncate") for nz in levels]
    ref = sols[-1]
    errs = [(s.spike_times - ref.spike_times).abs().mean().item() for s in sols[:3]]
    assert all((s.counts == ref.counts).all() for s in sols)
    assert 1.5 < errs[0] / errs[1] < 3.2 and 1.5 < errs[1] / errs[2] < 3.2
    assert errs[0] < 2.0 * 0.02


def test_refined_noise_is_the_same_brownian_path():
    noise = SSNNNoise.sample(3, 2, 10, 4, 0.1, seed=0, dtype=F64)
    fine = noise.refine(seed=1)
    assert fine.dt == 0.05 and fine.n_steps == 20
    torch.testing.assert_close(fine.dW.reshape(10, 2, 3, 2, 2).sum(1), noise.dW)
    assert torch.equal(fine.xi, noise.xi)
    big = SSNNNoise.sample(2000, 1, 1, 1, 0.3, seed=2, dtype=F64)
    assert abs(big.dW.var().item() - 0.3) < 0.03 and abs(big.xi.mean().item() - 1.0) < 0.05


# ------------------------------------------------------------------------------------------------- event handling
def test_several_events_in_one_step_are_located_exactly_earliest_first():
    """Noise-free, mu1 = 0: v only jumps at its own resets, so the clock is exactly linear and the spike times have a
    closed form tau_{j+1} = tau_j + (xi_j + alpha) / lambda(v0 - j v_reset), whatever the step; uncoupled neurons
    sharing steps (several events per step, several neurons) must each hit it to rounding."""
    p = SSNNParameters(mu1=0.0, mu2=0.0, sigma=None, v_reset=0.2, alpha=0.03)
    v0 = torch.tensor([1.6, 1.8, 2.0], dtype=F64)
    noise = SSNNNoise.sample(5, 3, 4, 6, 0.25, seed=7, dtype=F64)
    sol = ssnn_solve(0.0, torch.zeros(3, 3, dtype=F64), noise, p, 1.0, v0=v0, budget="truncate")
    lam = torch.exp(5.0 * (v0[:, None] - 0.2 * torch.arange(6, dtype=F64) - 1.0))  # (K, M)
    exact = ((noise.xi[..., :6] + 0.03) / lam).cumsum(-1)
    exact = torch.where(exact < 1.0, exact, torch.ones(()))
    torch.testing.assert_close(sol.spike_times, exact, rtol=1e-12, atol=1e-12)
    assert torch.equal(sol.counts, (exact < 1.0).sum(-1))
    step = (sol.spike_times[sol.spike_times < 1.0] / 0.25).floor()
    assert step.unique(return_counts=True)[1].max() >= 4  # many events shared one grid step


def test_uncoupled_neurons_in_a_network_converge_to_single_neuron_paths():
    """With dynamics and noise the in-step re-proposal after another neuron's event differs from the lone neuron's
    step by O(h) only: the gap shrinks when the step halves."""
    p = exp1_params(0.3)
    c = torch.tensor([2.0, 2.1, 2.2], dtype=F64)
    noise = SSNNNoise.sample(5, 3, 20, 4, 0.1, seed=7, dtype=F64)
    gaps = []
    for _ in range(3):
        both = ssnn_solve(c, torch.zeros(3, 3, dtype=F64), noise, p, 2.0, budget="truncate")
        gap = 0.0
        for k in range(3):
            alone = SSNNNoise(noise.dW[:, :, k : k + 1], noise.xi[:, k : k + 1], noise.dt)
            one = ssnn_solve(c[k], torch.zeros(1, 1, dtype=F64), alone, p, 2.0, budget="truncate")
            gap = max(gap, (both.spike_times[:, k : k + 1] - one.spike_times).abs().max().item())
        gaps.append(gap)
        noise = noise.refine(seed=1)
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.02


def test_coupled_network_converges_as_step_shrinks_and_jumps_currents():
    W = torch.zeros(2, 2, dtype=F64)
    W[0, 1] = 2.0
    p = SSNNParameters(mu1=6.0, mu2=5.0, sigma=None, v_reset=1.2, alpha=0.03)
    noise = SSNNNoise.sample(2, 2, 4, 5, 0.25, seed=0, dtype=F64)
    c = torch.tensor([2.0, 0.0], dtype=F64)
    levels = [noise]
    for _ in range(8):
        levels.append(levels[-1].refine(seed=0))
    ref = ssnn_solve(c, W, levels[-1], p, 1.0, budget="truncate")
    assert (ref.counts[:, 1] > 0).all()  # neuron 1 fires only because neuron 0's spikes jump its current
    assert (ssnn_solve(c, torch.zeros_like(W), levels[-1], p, 1.0).counts[:, 1] == 0).all()
    errs = []
    for nz in levels[3:6]:
        sol = ssnn_solve(c, W, nz, p, 1.0, budget="truncate", record=True)
        errs.append((sol.spike_times - ref.spike_times).abs().max().item())
    assert errs[0] > errs[1] > errs[2], errs
    assert errs[2] < 0.5 * errs[0], errs
    coarse = sol
    # traces: i of neuron 1 jumps by w_01 = 2 at each spike of neuron 0 (minus decay over < one step)
    assert coarse.traces.i.shape == (129, 2, 2) and coarse.traces.i[:, :, 1].max() > 1.0


# --------------------------------------------------------------------------------------- conditions and bad input
def test_configurations_without_exact_gradients_are_refused():
    noise = SSNNNoise.sample(1, 1, 10, 2, 0.1, seed=0, dtype=F64)
    z = torch.zeros(1, 1, dtype=F64)
    with pytest.raises(ValueError, match="reset='hard' with noise on v"):
        ssnn_solve(1.0, z, noise, exp1_params(reset="hard"), 1.0)
    with pytest.raises(ValueError, match="noise on the clock"):
        ssnn_solve(1.0, z, noise, exp1_params(clock_noise=0.1), 1.0)
    with pytest.raises(ValueError, match="reset='hard' with noise on v"):
        SSNN(1, sigma=((0.5, 0.0), (0.0, 0.0)), reset="hard")
    # a hard reset is fine when v carries no noise (noise on i only): v restarts at v_reset after each spike
    p = SSNNParameters(
        mu1=15.0, mu2=1.0, sigma=torch.tensor([[0.0, 0.0], [0.0, 0.3]], dtype=F64), reset="hard", v_reset=0.0
    )
    s0 = ssnn_initial_state(1.5, 0.0, noise.xi, p, 1.0)._replace(s=torch.full((1, 1), -0.01, dtype=F64))
    _, s1 = ssnn_step(torch.tensor(1.5, dtype=F64), s0, z, noise.dW[0] * 0, noise.xi, 0.0, 0.01, p, "truncate")
    assert int(s1.counts) == 1 and s1.v.item() < 15 * 1.5 * 0.01  # reset to 0, then < one step of drift
    _, s2 = ssnn_step(
        torch.tensor(1.5, dtype=F64),
        s0,
        z,
        noise.dW[0] * 0,
        noise.xi,
        0.0,
        0.01,
        p._replace(reset="subtract"),
        "truncate",
    )
    assert int(s2.counts) == 1 and s2.v.item() == pytest.approx(1.5)  # subtracting v_reset = 0 leaves v


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(dt=0.0), "dt must be a positive"),
        (dict(dt=-0.01), "dt must be a positive"),
        (dict(horizon=1.005), "not an integer multiple"),
        (dict(max_spikes=0), "max_spikes"),
        (dict(input_current=float("nan")), "NaN"),
        (dict(weights=torch.zeros(2, 3)), r"weights must have shape \(K, K\)"),
    ],
)
def test_bad_module_arguments_raise_clear_errors(kwargs, match):
    base = dict(horizon=1.0, dt=0.01, max_spikes=3)
    with pytest.raises(ValueError, match=match):
        SSNN(2, **(base | kwargs))


def test_bad_solver_inputs_raise_clear_errors():
    noise = SSNNNoise.sample(2, 2, 100, 3, 0.01, seed=0, dtype=F64)
    p = chain_params()
    with pytest.raises(ValueError, match=r"weights must have shape \(K, K\) = \(2, 2\)"):
        ssnn_solve(1.0, torch.zeros(3, 3, dtype=F64), noise, p, 1.0)
    with pytest.raises(ValueError, match="T=2.0 needs 200"):
        ssnn_solve(1.0, torch.zeros(2, 2, dtype=F64), noise, p, 2.0)
    with pytest.raises(ValueError, match="mu1 contains NaN"):
        ssnn_solve(1.0, torch.zeros(2, 2, dtype=F64), noise, p._replace(mu1=torch.tensor(float("nan"))), 1.0)
    with pytest.raises(ValueError, match="weights contains NaN"):
        ssnn_solve(1.0, torch.full((2, 2), float("nan"), dtype=F64), noise, p, 1.0)
    with pytest.raises(ValueError, match="max_spikes"):
        SSNNNoise.sample(2, 2, 100, 0, 0.01)
    net = SSNN(2, horizon=1.0, dt=0.01, max_spikes=3)
    with torch.no_grad():
        net.mu[0] = float("nan")
    with pytest.raises(ValueError, match="mu contains NaN"):
        net(net.sample_noise(2, seed=0))
    with pytest.raises(ValueError, match="noise.dt"):
        SSNN(2, horizon=1.0, dt=0.02, max_spikes=3)(net.sample_noise(2, seed=0))
    assert check_grid(5.0, 0.01) == 500


def test_running_out_of_spike_budget_warns_with_count_and_keeps_first_spikes():
    big = SSNNNoise.sample(4, 1, 100, 20, 0.01, seed=0, dtype=F64)
    small = SSNNNoise(big.dW, big.xi[..., :3], big.dt)  # the same first 3 thresholds, budget M = 2
    z = torch.zeros(1, 1, dtype=F64)
    full = ssnn_solve(2.0, z, big, exp1_params(), 1.0)
    with pytest.warns(RuntimeWarning, match=r"spike budget M=2 per neuron exceeded: \d+ spikes were simulated"):
        cut = ssnn_solve(2.0, z, small, exp1_params(), 1.0)
    assert (cut.counts > 2).all()
    torch.testing.assert_close(cut.spike_times, full.spike_times[..., :2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trunc = ssnn_solve(2.0, z, small, exp1_params(), 1.0, budget="truncate")  # explicit "first M spikes"
    assert (trunc.counts == 2).all()


# ------------------------------------------------------------------------------------------------------- modules
def test_cell_steps_reproduce_the_solver_and_module_holds_parameters():
    kw = dict(
        input_current=torch.tensor([1.5, 0.0, 0.0, 0.5]), connectivity=feedforward_mask([2, 2]), mu=(6.0, 5.0),
        sigma=((0.25, 0.0), (0.0, 0.25)), v_reset=1.2, v0=1.1, i0=0.6,
    )  # fmt: skip
    torch.manual_seed(0)
    net = SSNN(4, horizon=1.0, dt=0.01, max_spikes=8, weights=torch.rand(4, 4), **kw)
    cell = SSNNCell(4, max_spikes=8, weights=net.weights.detach(), **kw)
    noise = net.sample_noise(3, seed=5)
    sol = net(noise)
    state = None
    for m, dW in enumerate(noise.dW.unbind(0)):
        _, state = cell(dW, noise.xi, state, t0=m * 0.01, dt=0.01)
    st = torch.where(state.spike_times.isinf(), torch.ones(()), state.spike_times)  # cell pads with inf
    torch.testing.assert_close(st, sol.spike_times)
    assert torch.equal(state.counts, sol.counts)
    # masked weights are exactly zero and get no gradient; learnable tensors are parameters in the state dict
    sol.spike_times.sum().backward()
    assert net.weights.grad[~net.connectivity].abs().sum() == 0 and net.weights.grad.abs().sum() > 0
    assert net.input_current.grad.abs().sum() > 0 and net.mu.grad.abs().sum() > 0
    assert {"input_current", "weights", "mu", "connectivity", "sigma"} <= set(net.state_dict())
    clone = pickle.loads(pickle.dumps(net)).to(F64)
    assert clone.weights.dtype == F64 and clone.sample_noise(1, seed=0).dW.dtype == F64
    # the same seed reproduces the same paths
    torch.testing.assert_close(net(net.sample_noise(3, seed=5)).spike_times, sol.spike_times)


def test_gradients_stay_finite_when_the_intensity_underflows():
    """float32, a neuron driven far below threshold: lambda(v) = exp(5 (v - 1)) underflows to exactly 0."""
    noise = SSNNNoise.sample(4, 2, 100, 4, 0.01, seed=0)
    c = torch.tensor([2.0, -40.0], requires_grad=True)
    W = torch.tensor([[0.0, -5.0], [0.0, 0.0]], requires_grad=True)
    sol = ssnn_solve(c, W, noise, SSNNParameters(mu1=6.0, mu2=5.0, sigma=0.25 * torch.eye(2)), 1.0, v0=-30.0)
    assert (intensity(torch.tensor(-30.0), SSNNParameters()) == 0) and (sol.counts[:, 0] > 0).all()
    sol.spike_times.sum().backward()
    assert torch.isfinite(c.grad).all() and torch.isfinite(W.grad).all() and c.grad[0] < 0


@settings(max_examples=10, deadline=None)
@given(v=st.floats(-5.0, 30.0), beta=st.floats(0.0, 8.0))
def test_intensity_is_positive_and_capped(v, beta):
    p = SSNNParameters(beta=beta)
    lam = intensity(torch.tensor(v, dtype=F64), p)
    assert 0 < lam.item() <= math.exp(beta * 10.0) * (1 + 1e-12)

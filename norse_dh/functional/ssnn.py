"""Stochastic event-driven LIF network (SSNN) as an Event SDE with exact pathwise spike-time gradients.

Holberg & Salvi, "Exact Gradients for Stochastic Spiking Neural Networks Driven by Rough Signals", NeurIPS 2024.
Per neuron ``k`` (state ``v, i, s``; one 2-d Brownian motion ``B^k`` per neuron, one shared 2x2 matrix ``Sigma``)::

    dv = mu1 * (i + c - v) dt + Sigma[0, 0] dB1 + Sigma[0, 1] dB2
    di = -mu2 * i dt          + Sigma[1, 0] dB1 + Sigma[1, 1] dB2
    ds = lambda(v) dt,        lambda(v) = exp(beta * min(v - v_th, cap)) / tau_s        (no noise on the clock)

Neuron ``k`` fires when its clock ``s`` reaches 0 from below; then (transition map)::

    v^k <- v^k - v_reset          (subtractive reset; keeps the gradient conditions with noise on v)
    s^k <- -(xi + alpha)          (fresh Exp(1) threshold xi: escape noise with a soft refractory offset alpha)
    i^j <- i^j + W[k, j]          (row k of W jumps every postsynaptic current)

Numerical scheme (Euler-Maruyama on the global grid ``t_m = m dt``; the dense output is the linear interpolant, noise
included): inside a step the clock is linear in time, so a crossing is located exactly at the fraction
``phi_k = -s_k / (lambda(v_k) * rem)`` of the remaining step; the earliest neuron fires first, the state is moved to
the event on the interpolant, the transition is applied and the rest of the step is re-proposed (several events per
step, earliest first). Spike times ``tau = t_m + r dt`` are differentiable tensors, and autograd through this loop is
the implicit-function-theorem rule ``D tau = -D s / lambda(v)`` of the discrete scheme: the exact gradient of the
scheme at fixed noise, converging to the pathwise derivative as ``dt -> 0``.

Gradient conditions (checked by :func:`check_gradient_conditions`): the event function ``s`` never sees noise, the
intensity is positive (transversality), and the jump map commutes with the noise (subtractive reset). A hard reset
``v <- v_reset`` with noise on ``v``, or noise on the clock, breaks them and is refused.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch
from torch import Tensor

from norse_dh.noise import SSNNNoise

RESETS = ("subtract", "hard")
BUDGET_POLICIES = ("warn", "truncate")


class SSNNParameters(NamedTuple):
    """Parameters of the stochastic LIF network.

    Parameters:
        mu1: membrane rate (scalar tensor or ``(K,)``).
        mu2: synaptic-current decay rate (scalar tensor or ``(K,)``).
        sigma: ``(2, 2)`` noise matrix acting on ``(v, i)``.
        v_reset: subtracted amount (``reset="subtract"``) or reset potential (``reset="hard"``).
        alpha: soft refractory offset of the clock (integrated intensity added to each Exp(1) threshold).
        beta: intensity gain of ``lambda(v) = exp(beta * min(v - v_th, cap)) / tau_s``.
        v_th: intensity reference potential.
        tau_s: intensity time scale.
        cap: exponent cap (numerical safety only).
        reset: ``"subtract"`` (exact gradients) or ``"hard"`` (only allowed without noise on ``v``).
        clock_noise: noise amplitude on the clock ``s``; must be 0 (the event function must not see noise).
    """

    mu1: Tensor | float = 15.0
    mu2: Tensor | float = 0.0
    sigma: Tensor | None = None
    v_reset: Tensor | float = 1.4
    alpha: float = 0.03
    beta: float = 5.0
    v_th: float = 1.0
    tau_s: float = 1.0
    cap: float = 10.0
    reset: str = "subtract"
    clock_noise: float = 0.0


class SSNNState(NamedTuple):
    """Network state for ``B`` paths of ``K`` neurons.

    Parameters:
        v, i, s: membrane potential, synaptic current and intensity clock, each ``(B, K)``.
        counts: spikes so far per neuron ``(B, K)`` (int64), including spikes beyond the budget.
        spike_times: recorded spike times ``(B, K, M)``, padded with the horizon ``T``.
    """

    v: Tensor
    i: Tensor
    s: Tensor
    counts: Tensor
    spike_times: Tensor


def intensity(v: Tensor, p: SSNNParameters) -> Tensor:
    """``lambda(v) = exp(beta * min(v - v_th, cap)) / tau_s`` (positive: transversality holds at every event)."""
    return torch.exp(p.beta * torch.clamp(v - p.v_th, max=p.cap)) / p.tau_s


def _sigma(p: SSNNParameters, like: Tensor) -> Tensor:
    if p.sigma is None:
        return torch.zeros(2, 2, dtype=like.dtype, device=like.device)
    return torch.as_tensor(p.sigma, dtype=like.dtype, device=like.device)


def check_gradient_conditions(p: SSNNParameters) -> None:
    """Raises ``ValueError`` for configurations without exact pathwise spike-time gradients (or with bad values)."""
    if p.reset not in RESETS:
        raise ValueError(f"SSNNParameters.reset must be one of {RESETS}, got {p.reset!r}")
    if p.clock_noise != 0:
        raise ValueError(
            f"SSNNParameters.clock_noise must be 0, got {p.clock_noise}: noise on the clock s makes the event function "
            "see the Brownian path (condition C1), so spike times are first-passage times without gradients"
        )
    if p.sigma is not None:
        sig = torch.as_tensor(p.sigma)
        if sig.shape != (2, 2):
            raise ValueError(f"SSNNParameters.sigma must have shape (2, 2) acting on (v, i), got {tuple(sig.shape)}")
        if not torch.isfinite(sig).all():
            raise ValueError("SSNNParameters.sigma contains NaN or inf")
        if p.reset == "hard" and bool((sig[0] != 0).any()):
            raise ValueError(
                "reset='hard' with noise on v (sigma[0] != 0) violates the jump condition grad(T) sigma = sigma(T) (C3): "
                "spike-time gradients would not exist; use reset='subtract'"
            )
    for name in ("mu1", "mu2", "v_reset"):
        val = torch.as_tensor(getattr(p, name))
        if not torch.isfinite(val).all():
            raise ValueError(f"SSNNParameters.{name} contains NaN or inf: {val}")
    for name in ("alpha", "beta", "v_th", "tau_s", "cap"):
        if not math.isfinite(float(getattr(p, name))):
            raise ValueError(f"SSNNParameters.{name} must be finite, got {getattr(p, name)}")
    if p.tau_s <= 0:
        raise ValueError(f"SSNNParameters.tau_s must be > 0, got {p.tau_s}")
    if p.alpha < 0:
        raise ValueError(f"SSNNParameters.alpha must be >= 0, got {p.alpha}")


def ssnn_initial_state(
    v0: Tensor | float,
    i0: Tensor | float,
    xi: Tensor,
    p: SSNNParameters,
    horizon: float,
    dtype: torch.dtype | None = None,
) -> SSNNState:
    """State at ``t = 0``: ``v = v0``, ``i = i0``, ``s = -(xi[..., 0] + alpha)``, no spikes (times padded with ``T``)."""
    B, K, M1 = xi.shape
    dtype = dtype or xi.dtype
    z = torch.zeros(B, K, dtype=dtype, device=xi.device)
    v = z + torch.as_tensor(v0, dtype=dtype, device=xi.device)
    i = z + torch.as_tensor(i0, dtype=dtype, device=xi.device)
    s = -(xi[..., 0].to(dtype) + p.alpha)
    counts = torch.zeros(B, K, dtype=torch.long, device=xi.device)
    st = torch.full((B, K, M1 - 1), float(horizon), dtype=dtype, device=xi.device)
    return SSNNState(v, i, s, counts, st)


def ssnn_step(
    input_current: Tensor,
    state: SSNNState,
    weights: Tensor,
    dW: Tensor,
    xi: Tensor,
    t0: float,
    dt: float,
    p: SSNNParameters,
    budget: str = "warn",
    max_events_per_step: int = 10_000,
) -> tuple[Tensor, SSNNState]:
    """One grid step ``[t0, t0 + dt]`` with all events inside it, earliest first.

    Parameters:
        input_current: external current ``c`` broadcastable to ``(B, K)``.
        state: the state at ``t0``.
        weights: ``(K, K)``; row ``k`` is added to all currents when neuron ``k`` fires.
        dW: Brownian increments of this step ``(B, K, 2)``.
        xi: Exp(1) clock thresholds ``(B, K, M + 1)``.
        budget: ``"warn"`` keeps simulating spikes beyond the ``M`` recorded ones (they are counted, not stored);
            ``"truncate"`` stops a neuron's clock after ``M`` spikes ("first M spikes" experiments).

    Returns:
        ``(spikes, state)`` with ``spikes`` the number of spikes per neuron in this step ``(B, K)``.
    """
    v, i, s, cnt, st = state
    B, K = v.shape
    M = st.shape[-1]
    sigma = _sigma(p, v)
    c = torch.as_tensor(input_current, dtype=v.dtype, device=v.device)
    r = torch.zeros(B, 1, dtype=v.dtype, device=v.device)
    active = torch.ones(B, dtype=torch.bool, device=v.device)
    spikes = torch.zeros_like(cnt)
    nz_full = dW @ sigma.T  # (B, K, 2): (Sigma dW)_v, (Sigma dW)_i for the whole step
    slots = torch.arange(M, device=v.device)
    for _ in range(max_events_per_step):
        frac = 1.0 - r  # fraction of the step still to go (B, 1)
        rem = frac * dt
        # Euler-Maruyama proposal over the rest of the step; W is linear inside the step.
        v1 = v + p.mu1 * (i + c - v) * rem + frac * nz_full[..., 0]
        i1 = i - p.mu2 * i * rem + frac * nz_full[..., 1]
        rate = intensity(v, p) * rem
        s1 = s + rate
        can = active[:, None] if budget == "warn" else active[:, None] & (cnt < M)
        cross = (s < 0) & (s1 >= 0) & can
        # A crossing implies rate >= -s > 0; other entries divide by 1 so that an underflowed intensity (rate = 0)
        # cannot put 0 * inf = NaN into the backward pass of the unselected branch.
        phi = torch.where(cross, -s / torch.where(cross, rate, torch.ones_like(rate)), torch.inf)
        phimin, kstar = phi.min(dim=1)
        has = torch.isfinite(phimin)
        f = torch.where(has, phimin, torch.ones_like(phimin))[:, None]
        act = active[:, None]
        # Move to the event (or to the end of the step) on the linear interpolant.
        v = torch.where(act, v + f * (v1 - v), v)
        i = torch.where(act, i + f * (i1 - i), i)
        s = torch.where(act, s + f * (s1 - s), s)
        r = torch.where(act, r + f * frac, r)
        ev = has & active
        if not bool(ev.any()):
            break
        tau = t0 + r[:, 0] * dt  # differentiable event time
        hot = torch.nn.functional.one_hot(kstar, K).bool() & ev[:, None]
        rec = hot[..., None] & (slots == cnt[..., None])  # slot cnt of the firing neuron, if cnt < M
        st = torch.where(rec, tau[:, None, None], st)
        cnt = cnt + hot.long()
        spikes = spikes + hot.long()
        if p.reset == "subtract":
            v = v - p.v_reset * hot.to(v.dtype)
        else:
            v = torch.where(hot, torch.as_tensor(p.v_reset, dtype=v.dtype, device=v.device), v)
        i = i + hot.to(v.dtype) @ weights
        fresh = xi.gather(2, cnt.clamp(max=M)[..., None])[..., 0]  # beyond the budget the last threshold is reused
        s = torch.where(hot, -(fresh + p.alpha), s)
        active = ev
    else:
        raise RuntimeError(
            f"ssnn_step: more than max_events_per_step={max_events_per_step} events in one step at t={t0}; "
            "the intensity is too large for this step (reduce dt or the input)"
        )
    return spikes, SSNNState(v, i, s, cnt, st)


class SSNNTraces(NamedTuple):
    """Grid values ``(n_steps + 1, B, K)`` of ``v``, ``i``, ``s`` (end of each step, after its events)."""

    v: Tensor
    i: Tensor
    s: Tensor


class SSNNSolution(NamedTuple):
    """Solver output: padded spike times ``(B, K, M)`` (pad value ``T``), counts ``(B, K)``, optional traces.

    ``counts`` includes spikes beyond the budget ``M`` (``counts > M`` means truncated records); use
    ``counts.clamp(max=M)`` for the number of recorded times.
    """

    spike_times: Tensor
    counts: Tensor
    traces: SSNNTraces | None
    state: SSNNState


def check_grid(horizon: float, dt: float) -> int:
    """Number of steps of ``[0, T]``; raises for a non-positive step or a horizon that is not a multiple of it."""
    if not (isinstance(dt, int | float) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive finite number, got {dt!r}")
    if not (isinstance(horizon, int | float) and math.isfinite(horizon) and horizon > 0):
        raise ValueError(f"T (horizon) must be a positive finite number, got {horizon!r}")
    n = round(horizon / dt)
    if n < 1 or abs(n * dt - horizon) > 1e-9 * max(1.0, horizon):
        raise ValueError(f"T={horizon} is not an integer multiple of dt={dt} (T/dt = {horizon / dt})")
    return n


def ssnn_solve(
    input_current: Tensor | float,
    weights: Tensor,
    noise: SSNNNoise,
    p: SSNNParameters,
    horizon: float,
    *,
    v0: Tensor | float = 0.0,
    i0: Tensor | float = 0.0,
    budget: str = "warn",
    record: bool = False,
) -> SSNNSolution:
    """Runs the network over ``[0, T]`` on the grid of ``noise.dt``.

    Parameters:
        input_current: ``c`` broadcastable to ``(B, K)`` (constant in time).
        weights: ``(K, K)`` connection weights (row = presynaptic neuron).
        noise: Brownian increments and clock thresholds (``noise.n_steps * noise.dt == T``).
        budget: ``"warn"``: spikes beyond ``M`` per neuron are simulated and reported by a ``RuntimeWarning`` with the
            count (never silently dropped); ``"truncate"``: record the first ``M`` spikes per neuron and stop
            (early exit once every neuron of every path has ``M``).
        record: also return the grid traces of ``v``, ``i``, ``s``.
    """
    check_gradient_conditions(p)
    if budget not in BUDGET_POLICIES:
        raise ValueError(f"budget must be one of {BUDGET_POLICIES}, got {budget!r}")
    dt = noise.dt
    n_steps = check_grid(horizon, dt)
    if noise.n_steps != n_steps:
        raise ValueError(f"noise has {noise.n_steps} steps of dt={dt}, but T={horizon} needs {n_steps}")
    B, K = noise.batch_size, noise.neurons
    if weights.shape != (K, K):
        raise ValueError(f"weights must have shape (K, K) = ({K}, {K}) for {K} neurons, got {tuple(weights.shape)}")
    c = torch.as_tensor(input_current, dtype=noise.dW.dtype, device=noise.dW.device)
    for name, val in (("input_current", c), ("weights", weights), ("v0", v0), ("i0", i0)):
        if not torch.isfinite(torch.as_tensor(val)).all():
            raise ValueError(f"{name} contains NaN or inf")
    try:
        torch.broadcast_shapes(c.shape, (B, K))
    except RuntimeError as e:
        raise ValueError(f"input_current of shape {tuple(c.shape)} does not broadcast to (B, K) = ({B}, {K})") from e
    state = ssnn_initial_state(v0, i0, noise.xi, p, horizon, dtype=noise.dW.dtype)
    M = state.spike_times.shape[-1]
    trace = [state[:3]] if record else None
    for m, dW_m in enumerate(noise.dW.unbind(0)):
        if budget == "truncate" and not record and bool((state.counts >= M).all()):
            break
        _, state = ssnn_step(c, state, weights, dW_m, noise.xi, m * dt, dt, p, budget)
        if trace is not None:
            trace.append(state[:3])
    over = (state.counts - M).clamp(min=0)
    n_over = int(over.sum())
    if n_over > 0 and budget == "warn":
        warnings.warn(
            f"ssnn_solve: spike budget M={M} per neuron exceeded: {n_over} spikes were simulated but not recorded "
            f"(max count {int(state.counts.max())}); increase max_spikes",
            RuntimeWarning,
            stacklevel=2,
        )
    traces = None
    if trace is not None:
        traces = SSNNTraces(*(torch.stack(z) for z in zip(*trace)))
    return SSNNSolution(state.spike_times, state.counts, traces, state)

"""Stochastic event-driven LIF network modules: a one-step cell and a solver over ``[0, T]``.

Both are thin wrappers of :mod:`norse_dh.functional.ssnn` (equations there). Learnable quantities are real
``nn.Parameter``s: the external input current ``c`` ``(K,)``, the weights ``W`` ``(K, K)`` (multiplied by a fixed
connectivity mask) and the rate constants ``mu = (mu1, mu2)``; the noise matrix ``Sigma`` is a buffer (not trained).
Which parameters train is chosen with ``trainable``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from norse_dh.functional.ssnn import (
    BUDGET_POLICIES,
    RESETS,
    SSNNParameters,
    SSNNSolution,
    SSNNState,
    check_gradient_conditions,
    check_grid,
    ssnn_initial_state,
    ssnn_solve,
    ssnn_step,
)
from norse_dh.noise import SSNNNoise

TRAINABLE = ("input_current", "weights", "mu")


def feedforward_mask(layers: Sequence[int]) -> Tensor:
    """Boolean ``(K, K)`` connectivity (True = connection ``k -> j``) of a layered feed-forward net, ``K = sum(layers)``."""
    if len(layers) < 1 or any(int(n) < 1 for n in layers):
        raise ValueError(f"layers must be a non-empty sequence of positive sizes, got {list(layers)}")
    K = int(sum(layers))
    mask = torch.zeros(K, K, dtype=torch.bool)
    start = 0
    for a, b in zip(layers[:-1], layers[1:]):
        mask[start : start + a, start + a : start + a + b] = True
        start += a
    return mask


class _SSNNBase(nn.Module):
    def __init__(
        self,
        n_neurons: int,
        *,
        input_current: Tensor | Sequence[float] | float = 0.0,
        weights: Tensor | None = None,
        connectivity: Tensor | None = None,
        mu: Sequence[float] = (15.0, 0.0),
        sigma: Tensor | Sequence[Sequence[float]] = ((0.0, 0.0), (0.0, 0.0)),
        v_reset: float = 1.4,
        alpha: float = 0.03,
        beta: float = 5.0,
        v_th: float = 1.0,
        tau_s: float = 1.0,
        reset: str = "subtract",
        v0: float = 0.0,
        i0: float = 0.0,
        trainable: Sequence[str] = TRAINABLE,
    ) -> None:
        super().__init__()
        K = int(n_neurons)
        if K < 1:
            raise ValueError(f"n_neurons must be >= 1, got {n_neurons}")
        bad = set(trainable) - set(TRAINABLE)
        if bad:
            raise ValueError(f"trainable entries must be in {TRAINABLE}, got {sorted(bad)}")
        if reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
        c = torch.as_tensor(input_current, dtype=torch.get_default_dtype())
        if c.dim() == 0:
            c = c.expand(K)
        if c.shape != (K,):
            raise ValueError(f"input_current must be a scalar or have shape (K,) = ({K},), got {tuple(c.shape)}")
        w = torch.zeros(K, K) if weights is None else torch.as_tensor(weights, dtype=torch.get_default_dtype())
        if w.shape != (K, K):
            raise ValueError(f"weights must have shape (K, K) = ({K}, {K}), got {tuple(w.shape)}")
        conn = torch.ones(K, K, dtype=torch.bool) if connectivity is None else torch.as_tensor(connectivity).bool()
        if conn.shape != (K, K):
            raise ValueError(f"connectivity must have shape (K, K) = ({K}, {K}), got {tuple(conn.shape)}")
        mu_t = torch.as_tensor(mu, dtype=torch.get_default_dtype())
        if mu_t.shape != (2,):
            raise ValueError(f"mu must be (mu1, mu2), got shape {tuple(mu_t.shape)}")
        sig = torch.as_tensor(sigma, dtype=torch.get_default_dtype())
        for name, val in (("input_current", c), ("weights", w), ("mu", mu_t), ("sigma", sig)):
            if not torch.isfinite(val).all():
                raise ValueError(f"{name} contains NaN or inf")
        self.n_neurons = K
        self.input_current = nn.Parameter(c.clone(), requires_grad="input_current" in trainable)
        self.weights = nn.Parameter(w.clone(), requires_grad="weights" in trainable)
        self.mu = nn.Parameter(mu_t.clone(), requires_grad="mu" in trainable)
        self.register_buffer("connectivity", conn.clone())
        self.register_buffer("sigma", sig.clone())
        self.v_reset, self.alpha, self.beta, self.v_th, self.tau_s = v_reset, alpha, beta, v_th, tau_s
        self.reset, self.v0, self.i0 = reset, v0, i0
        check_gradient_conditions(self.parameters_tuple())

    def parameters_tuple(self) -> SSNNParameters:
        """The functional parameters (differentiable views of the module's tensors)."""
        return SSNNParameters(
            mu1=self.mu[0],
            mu2=self.mu[1],
            sigma=self.sigma,
            v_reset=self.v_reset,
            alpha=self.alpha,
            beta=self.beta,
            v_th=self.v_th,
            tau_s=self.tau_s,
            reset=self.reset,
        )

    def effective_weights(self) -> Tensor:
        """``W * connectivity`` (masked connections are exactly 0 and receive no gradient)."""
        return self.weights * self.connectivity.to(self.weights.dtype)

    def _check_finite(self) -> None:
        for name, t in (("input_current", self.input_current), ("weights", self.weights), ("mu", self.mu)):
            if not torch.isfinite(t).all():
                raise ValueError(f"{type(self).__name__}.{name} contains NaN or inf")


class SSNNCell(_SSNNBase):
    """One Euler-Maruyama grid step of the stochastic LIF network with all in-step events (earliest first).

    ``forward(dW, xi, state=None, t0=0.0, dt=0.01) -> (spikes, state)``; ``state=None`` starts at ``v0, i0`` with
    the clock ``-(xi[..., 0] + alpha)``. ``spikes`` counts spikes per neuron in the step ``(B, K)``.
    """

    def __init__(self, n_neurons: int, *, max_spikes: int = 16, budget: str = "warn", **kwargs) -> None:
        super().__init__(n_neurons, **kwargs)
        if int(max_spikes) < 1:
            raise ValueError(f"max_spikes (spike budget per neuron) must be >= 1, got {max_spikes}")
        if budget not in BUDGET_POLICIES:
            raise ValueError(f"budget must be one of {BUDGET_POLICIES}, got {budget!r}")
        self.max_spikes, self.budget = int(max_spikes), budget

    def forward(
        self, dW: Tensor, xi: Tensor, state: SSNNState | None = None, t0: float = 0.0, dt: float = 0.01
    ) -> tuple[Tensor, SSNNState]:
        self._check_finite()
        if dW.dim() != 3 or dW.shape[1:] != (self.n_neurons, 2):
            raise ValueError(f"dW must have shape (B, K, 2) with K={self.n_neurons}, got {tuple(dW.shape)}")
        if xi.shape != (dW.shape[0], self.n_neurons, self.max_spikes + 1):
            raise ValueError(
                f"xi must have shape (B, K, M + 1) = ({dW.shape[0]}, {self.n_neurons}, {self.max_spikes + 1}), "
                f"got {tuple(xi.shape)}"
            )
        if not dt > 0:
            raise ValueError(f"dt must be > 0, got {dt}")
        p = self.parameters_tuple()
        if state is None:
            state = ssnn_initial_state(self.v0, self.i0, xi, p, float("inf"), dtype=dW.dtype)
        return ssnn_step(self.input_current, state, self.effective_weights(), dW, xi, t0, dt, p, self.budget)


class SSNN(_SSNNBase):
    """Solver module: runs ``B`` paths of the stochastic LIF network over ``[0, T]`` with step ``dt``.

    ``forward(noise, input_current=None, record=False) -> SSNNSolution(spike_times (B, K, M), counts (B, K), traces,
    state)``; spike times are padded with ``T`` and differentiable in ``input_current``, ``weights`` and ``mu``.
    ``input_current`` overrides the module's ``c`` (broadcastable to ``(B, K)``).

    Parameters:
        n_neurons: ``K``.
        horizon: ``T``; dt: the grid step (``T`` must be a multiple of it).
        max_spikes: recorded spikes per neuron ``M``.
        budget: ``"warn"`` (spikes beyond ``M`` are simulated and reported by a warning) or ``"truncate"`` (first
            ``M`` spikes per neuron, then the neuron stops; early exit).
        other keywords: see :class:`SSNNCell` / :class:`norse_dh.functional.ssnn.SSNNParameters`.
    """

    def __init__(
        self,
        n_neurons: int,
        *,
        horizon: float = 5.0,
        dt: float = 0.01,
        max_spikes: int = 3,
        budget: str = "warn",
        **kwargs,
    ) -> None:
        super().__init__(n_neurons, **kwargs)
        self.n_steps = check_grid(horizon, dt)
        if int(max_spikes) < 1:
            raise ValueError(f"max_spikes (spike budget per neuron) must be >= 1, got {max_spikes}")
        if budget not in BUDGET_POLICIES:
            raise ValueError(f"budget must be one of {BUDGET_POLICIES}, got {budget!r}")
        self.horizon, self.dt, self.max_spikes, self.budget = float(horizon), float(dt), int(max_spikes), budget

    def sample_noise(
        self, batch_size: int, *, seed: int | None = None, generator: torch.Generator | None = None
    ) -> SSNNNoise:
        """A noise realisation matching this module's grid, size and dtype/device."""
        return SSNNNoise.sample(
            batch_size,
            self.n_neurons,
            self.n_steps,
            self.max_spikes,
            self.dt,
            seed=seed,
            generator=generator,
            dtype=self.weights.dtype,
            device=self.weights.device,
        )

    def forward(self, noise: SSNNNoise, input_current: Tensor | None = None, record: bool = False) -> SSNNSolution:
        self._check_finite()
        if abs(noise.dt - self.dt) > 1e-12 * self.dt:
            raise ValueError(f"noise.dt={noise.dt} differs from the module's dt={self.dt}")
        if noise.neurons != self.n_neurons or noise.max_spikes != self.max_spikes:
            raise ValueError(
                f"noise is for K={noise.neurons} neurons and M={noise.max_spikes} spikes, "
                f"the module has K={self.n_neurons}, M={self.max_spikes}"
            )
        c = self.input_current if input_current is None else input_current
        return ssnn_solve(
            c,
            self.effective_weights(),
            noise,
            self.parameters_tuple(),
            self.horizon,
            v0=self.v0,
            i0=self.i0,
            budget=self.budget,
            record=record,
        )

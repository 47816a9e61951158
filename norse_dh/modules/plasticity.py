"""STDP modules: per-synapse STDP parameters as buffers, and online learning for LIF and DH-LIF layers.

:class:`STDP` holds the four STDP constants as buffers of shape ``(N_post, N_pre)`` (homogeneous: all equal;
heterogeneous: drawn per synapse with the homogeneous values as means) plus the mask of plastic synapses, and applies
:func:`norse_dh.functional.stdp.stdp_step`.

:class:`STDPLearner` runs a norse-dh layer (``VanillaLIF``, ``VanillaLIFRecurrent``, ``DHLIF``, ``DHLIFRecurrent``)
step by step and applies STDP to its feed-forward and recurrent weights after every step (recurrent presynaptic
spikes are ``z[t-1]``, the spikes that arrive through the one-step recurrence). DH-LIF weights are updated through the
dendritic mask: a branch row ``n*D + d`` learns from neuron ``n``'s spikes and masked entries stay exactly zero.
Homeostasis after each presentation: adaptive thresholds towards a target rate and/or incoming-weight normalisation;
firing rates are logged in ``rate_history``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from norse_dh.functional.stdp import (
    HomeostasisParameters,
    STDPParameters,
    STDPState,
    adaptive_threshold_step,
    check_stdp_parameters,
    normalise_incoming,
    stdp_initial_state,
    stdp_step,
)


def draw_heterogeneous(
    shape: tuple[int, ...],
    tau_mean: float,
    eta_mean: float,
    tau_shape: float = 4.0,
    tau_range: tuple[float, float] = (2e-3, 100e-3),
    eta_sigma: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-synapse ``tau ~ Gamma(k=tau_shape, mean=tau_mean)`` clipped to ``tau_range`` and
    ``eta ~ LogNormal`` with mean ``eta_mean`` (``log eta ~ N(log eta_mean - sigma^2/2, sigma)``)."""
    if tau_shape <= 0 or eta_sigma < 0:
        raise ValueError(f"need tau_shape > 0 and eta_sigma >= 0, got {tau_shape}, {eta_sigma}")
    # Gamma via torch's sampler (no generator argument): draw with a forked RNG state for reproducibility.
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tau = torch.distributions.Gamma(tau_shape, tau_shape / tau_mean).sample(shape)
    tau = tau.clamp(*tau_range)
    normal = torch.randn(shape, generator=generator)
    eta = torch.exp(math.log(eta_mean) - 0.5 * eta_sigma**2 + eta_sigma * normal)
    return tau, eta


class STDP(nn.Module):
    """Pair STDP on a ``(N_post, N_pre)`` weight with per-synapse constants stored as buffers.

    Parameters:
        n_pre, n_post: weight shape ``(n_post, n_pre)``.
        tau_plus, tau_minus, eta_plus: homogeneous values, the means of the heterogeneous draws.
        ltd_ratio: ``eta_minus = ltd_ratio * eta_plus`` per synapse (slight LTD bias for stability).
        heterogeneous: draw ``tau_plus, tau_minus ~ Gamma(tau_shape)`` in ``tau_range`` and ``eta_plus ~ LogNormal
            (eta_sigma)`` per synapse, means matched to the homogeneous values.
        w_min, w_max, bound, mu, hardbound, trace, dt: see :class:`STDPParameters`.
        mask: plastic synapses (bool ``(n_post, n_pre)``); default all.
        seed: seed of the heterogeneous draws.
    """

    def __init__(
        self,
        n_pre: int,
        n_post: int,
        *,
        tau_plus: float = 20e-3,
        tau_minus: float = 20e-3,
        eta_plus: float = 5e-3,
        ltd_ratio: float = 1.1,
        heterogeneous: bool = False,
        tau_shape: float = 4.0,
        tau_range: tuple[float, float] = (2e-3, 100e-3),
        eta_sigma: float = 0.5,
        w_min: float = 0.0,
        w_max: float = 1.0,
        bound: str = "additive",
        mu: float = 1.0,
        hardbound: bool = True,
        trace: str = "unit",
        dt: float = 1e-3,
        mask: Tensor | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        shape = (n_post, n_pre)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        if heterogeneous:
            tp, ep = draw_heterogeneous(shape, tau_plus, eta_plus, tau_shape, tau_range, eta_sigma, gen)
            tm, _ = draw_heterogeneous(shape, tau_minus, eta_plus, tau_shape, tau_range, eta_sigma, gen)
        else:
            tp, tm, ep = torch.full(shape, tau_plus), torch.full(shape, tau_minus), torch.full(shape, eta_plus)
        if mask is None:
            mask = torch.ones(shape, dtype=torch.bool)
        if tuple(mask.shape) != shape:
            raise ValueError(f"mask must have shape {shape} (n_post, n_pre), got {tuple(mask.shape)}")
        self.heterogeneous = heterogeneous
        self.register_buffer("tau_plus", tp)
        self.register_buffer("tau_minus", tm)
        self.register_buffer("eta_plus", ep)
        self.register_buffer("eta_minus", ltd_ratio * ep)
        self.register_buffer("mask", mask.bool().clone())
        self.w_min, self.w_max, self.bound, self.mu = float(w_min), float(w_max), bound, float(mu)
        self.hardbound, self.trace, self.dt = hardbound, trace, float(dt)
        check_stdp_parameters(self.stdp_parameters())

    def stdp_parameters(self) -> STDPParameters:
        """The functional parameter tuple (per-synapse time constants only when heterogeneous: neuron traces
        otherwise, which is exact for shared constants and much cheaper)."""
        if self.heterogeneous:
            tp, tm, ep, em = self.tau_plus, self.tau_minus, self.eta_plus, self.eta_minus
        else:
            tp, tm = float(self.tau_plus.flatten()[0]), float(self.tau_minus.flatten()[0])
            ep, em = float(self.eta_plus.flatten()[0]), float(self.eta_minus.flatten()[0])
        return STDPParameters(
            tp, tm, ep, em, self.w_min, self.w_max, self.bound, self.mu, self.hardbound, self.trace, self.dt
        )

    def initial_state(self, batch: int, like: Tensor) -> STDPState:
        return stdp_initial_state(batch, self.mask.shape[0], self.mask.shape[1], self.stdp_parameters(), like)

    @torch.no_grad()
    def forward(
        self, s_pre: Tensor, z_post: Tensor, w: Tensor, state: STDPState | None = None
    ) -> tuple[Tensor, STDPState]:
        """One step: returns the updated weight (masked entries unchanged) and the traces."""
        state = self.initial_state(s_pre.shape[0], s_pre) if state is None else state
        return stdp_step(s_pre, z_post, w, state, self.stdp_parameters(), self.mask)

    def extra_repr(self) -> str:
        return (
            f"n_pre={self.mask.shape[1]}, n_post={self.mask.shape[0]}, heterogeneous={self.heterogeneous}, "
            f"bound={self.bound!r}, trace={self.trace!r}"
        )


class STDPLearner(nn.Module):
    """Online STDP for a norse-dh spiking layer (LIF or DH-LIF, feed-forward or recurrent).

    Parameters:
        layer: ``VanillaLIF``, ``VanillaLIFRecurrent``, ``DHLIF`` or ``DHLIFRecurrent``.
        plastic: bool mask over the layer's stored weight (``linear.weight`` ``(N, M[+N])`` or the dendritic
            ``(N*D, M[+N]+pad)``) selecting plastic synapses; default all enabled synapses. DH-LIF: always
            intersected with the dendritic mask.
        homeostasis: adaptive threshold / weight normalisation after each presentation (``None``: off).
        **stdp_kwargs: forwarded to :class:`STDP` (``heterogeneous``, ``eta_plus``, ``w_max``, ``bound``, ...).

    ``forward(x, learn=True)`` takes ``(T, B, M)`` and returns ``(z (T, B, N), layer_state)``.
    """

    def __init__(
        self,
        layer: nn.Module,
        plastic: Tensor | None = None,
        homeostasis: HomeostasisParameters | None = None,
        **stdp_kwargs,
    ) -> None:
        super().__init__()
        if hasattr(layer, "linear"):
            self.kind, weight = "vanilla", layer.linear.weight
            structural = torch.ones_like(weight, dtype=torch.bool)
            self.branches = 1
        elif hasattr(layer, "dendrites"):
            self.kind, weight = "dhlif", layer.dendrites.weight
            structural = layer.dendrites.mask.bool()
            self.branches = layer.branches
        else:
            raise TypeError(
                f"STDPLearner needs a norse-dh VanillaLIF/VanillaLIFRecurrent/DHLIF/DHLIFRecurrent layer, "
                f"got {type(layer).__name__}"
            )
        if plastic is not None and plastic.shape != weight.shape:
            raise ValueError(
                f"plastic mask must have the layer weight's shape {tuple(weight.shape)}, got {tuple(plastic.shape)}"
            )
        mask = structural if plastic is None else structural & plastic.bool()
        self.layer = layer
        self.stdp = STDP(weight.shape[1], weight.shape[0], mask=mask, dt=layer.dt, **stdp_kwargs)
        self.homeostasis = homeostasis
        self.register_buffer("theta_rest", layer.v_th.detach().clone())
        self.rate_history: list[float] = []

    @property
    def weight(self) -> Tensor:
        return self.layer.linear.weight if self.kind == "vanilla" else self.layer.dendrites.weight

    def _presynaptic(self, x_t: Tensor, z_prev: Tensor) -> Tensor:
        """Spikes arriving at every column of the stored weight: ``[x[t], z[t-1], zero padding]``."""
        parts = [x_t, z_prev] if self.layer.recurrent else [x_t]
        pre = torch.cat(parts, dim=-1)
        pad = self.weight.shape[1] - pre.shape[-1]
        return torch.nn.functional.pad(pre, (0, pad)) if pad else pre

    def _step(self, x_t: Tensor, state, p):
        layer = self.layer
        if self.kind == "vanilla":
            return layer._step(layer._feed_forward(x_t), state, p)
        _, w_rec = layer._split_weights()
        return layer._recurrent_step(layer._feed_forward(x_t), state, p, w_rec)

    @torch.no_grad()
    def forward(self, x: Tensor, state=None, learn: bool = True) -> tuple[Tensor, object]:
        layer = self.layer
        layer._check_input(x, 3, layer.input_size, "input sequence")
        state = layer.initial_state(x) if state is None else state
        p = layer.soma_parameters() if self.kind == "vanilla" else layer.dhlif_parameters()
        trace = self.stdp.initial_state(x.shape[1], x) if learn else None
        weight = self.weight
        outputs = []
        for x_t in x.unbind(0):
            z_prev = state.z
            z, state = self._step(x_t, state, p)
            if learn:
                z_post = z.repeat_interleave(self.branches, dim=1) if self.branches > 1 else z
                w_new, trace = self.stdp(self._presynaptic(x_t, z_prev), z_post, weight, trace)
                weight.copy_(w_new)
            outputs.append(z)
        out = torch.stack(outputs)
        rate = out.mean((0, 1))
        self.rate_history.append(float(rate.mean()))
        if learn and self.homeostasis is not None:
            self._homeostasis(rate)
        return out, state

    def _homeostasis(self, rate: Tensor) -> None:
        h = self.homeostasis
        if h.theta_plus > 0:
            self.layer.v_th.copy_(adaptive_threshold_step(self.layer.v_th, self.theta_rest, rate, h))
        if h.norm_target is not None:
            w, mask = self.weight, self.stdp.mask
            scaled = normalise_incoming(w, h.norm_target, mask, self.branches)
            # rescaling may leave the STDP bounds; clip so plastic weights stay in [w_min, w_max]
            w.copy_(torch.where(mask, scaled.clamp(self.stdp.w_min, self.stdp.w_max), w))


__all__ = ["STDP", "STDPLearner", "draw_heterogeneous"]

"""Trace-based pair STDP (Song, Miller & Abbott 2000; Morrison et al. 2008), homogeneous or heterogeneous.

For a weight ``w`` of shape ``(N_post, N_pre)``, presynaptic spikes ``s`` ``(B, N_pre)`` arriving this step (for a
recurrent weight the caller passes ``z[t-1]``: one-step delay) and postsynaptic spikes ``z`` ``(B, N_post)``:

Unit-jump convention (``trace="unit"``, default; the window peak is ``A`` whatever ``tau``)::

    x   <- x * exp(-dt / tau_plus) + s                  presynaptic trace
    y'   = y * exp(-dt / tau_minus)                     postsynaptic trace, decayed
    dw   = A_plus(w) * sum_b z x  -  A_minus(w) * sum_b y' s
    y   <- y' + z
    w   <- where(mask, clip(w + dw, w_min, w_max), w)

so a pre spike at ``t0`` and a post spike at ``t0 + k`` give ``dw = A_plus exp(-k dt / tau_plus)`` (LTP; a pre spike
arriving in the same step counts as "before"), the reverse order ``dw = -A_minus exp(-k dt / tau_minus)`` (LTD).

Norse convention (``trace="norse"``, for parity with ``norse.torch.functional.stdp.stdp_step_linear``)::

    x <- x + dt / tau_plus  * (-x + s)
    y <- y + dt / tau_minus * (-y + z)
    dw = A_plus(w) * sum_b z x - A_minus(w) * sum_b y s

Weight dependence (``bound``): ``"additive"`` ``A_plus = eta_plus``, ``A_minus = eta_minus`` (hard clip);
``"multiplicative"`` (soft bounds, Guetig et al. 2003) ``A_plus = eta_plus (w_max - w)^mu``,
``A_minus = eta_minus (w - w_min)^mu``.

Homogeneous STDP: scalar ``tau_plus, tau_minus, eta_plus, eta_minus``. Heterogeneous: any of them per synapse
``(N_post, N_pre)`` (``tau_plus`` may also be per presynaptic neuron ``(N_pre,)``, ``tau_minus`` per postsynaptic
neuron ``(N_post, 1)``). A per-synapse time constant needs synapse-level traces, so the trace then has shape
``(B, N_post, N_pre)``; otherwise traces are per neuron. Updates are summed over the batch (as Norse does).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

TRACE_CONVENTIONS = ("unit", "norse")
BOUNDS = ("additive", "multiplicative")


class STDPParameters(NamedTuple):
    """Pair-STDP parameters; tensors may be scalars (homogeneous) or per synapse (heterogeneous).

    Parameters:
        tau_plus: presynaptic trace time constant (s): scalar, ``(N_pre,)`` or ``(N_post, N_pre)``.
        tau_minus: postsynaptic trace time constant (s): scalar, ``(N_post, 1)`` or ``(N_post, N_pre)``.
        eta_plus: LTP amplitude: scalar or ``(N_post, N_pre)``.
        eta_minus: LTD amplitude: scalar or ``(N_post, N_pre)``.
        w_min, w_max: weight bounds (hard clip for ``"additive"``, soft bounds for ``"multiplicative"``).
        bound: ``"additive"`` or ``"multiplicative"``.
        mu: exponent of the multiplicative weight dependence (1: fully multiplicative).
        hardbound: clip to ``[w_min, w_max]`` after the update.
        trace: ``"unit"`` (jump 1) or ``"norse"`` (Euler jump ``dt / tau``, Norse's order).
        dt: step length (s).
    """

    tau_plus: Tensor | float = 20e-3
    tau_minus: Tensor | float = 20e-3
    eta_plus: Tensor | float = 5e-3
    eta_minus: Tensor | float = 5.5e-3
    w_min: float = 0.0
    w_max: float = 1.0
    bound: str = "additive"
    mu: float = 1.0
    hardbound: bool = True
    trace: str = "unit"
    dt: float = 1e-3


class STDPState(NamedTuple):
    """Traces: ``x`` presynaptic ``(B, N_pre)`` or ``(B, N_post, N_pre)``; ``y`` postsynaptic ``(B, N_post)`` or
    ``(B, N_post, N_pre)`` (synapse level when the matching time constant is per synapse)."""

    x: Tensor
    y: Tensor


def _per_synapse(tau: Tensor | float) -> bool:
    return isinstance(tau, Tensor) and tau.dim() == 2 and tau.shape[-1] > 1


def check_stdp_parameters(p: STDPParameters) -> None:
    """Raise ``ValueError`` naming the bad field (called where parameters enter: modules, first step)."""
    if p.trace not in TRACE_CONVENTIONS:
        raise ValueError(f"trace must be one of {TRACE_CONVENTIONS}, got {p.trace!r}")
    if p.bound not in BOUNDS:
        raise ValueError(f"bound must be one of {BOUNDS}, got {p.bound!r}")
    if not p.w_min < p.w_max:
        raise ValueError(f"need w_min < w_max, got w_min={p.w_min}, w_max={p.w_max}")
    if not p.dt > 0:
        raise ValueError(f"dt must be > 0, got {p.dt}")
    for name in ("tau_plus", "tau_minus"):
        if not bool(torch.all(torch.as_tensor(getattr(p, name)) > 0)):
            raise ValueError(f"{name} must be > 0 everywhere")
    for name in ("eta_plus", "eta_minus"):
        if not bool(torch.all(torch.as_tensor(getattr(p, name)) >= 0)):
            raise ValueError(f"{name} must be >= 0 everywhere")


def stdp_initial_state(batch: int, n_post: int, n_pre: int, p: STDPParameters, like: Tensor) -> STDPState:
    """All-zero traces with the shapes the time constants in ``p`` need, on ``like``'s dtype and device."""
    kw = dict(dtype=like.dtype, device=like.device)
    x_shape = (batch, n_post, n_pre) if _per_synapse(p.tau_plus) else (batch, n_pre)
    y_shape = (batch, n_post, n_pre) if _per_synapse(p.tau_minus) else (batch, n_post)
    return STDPState(torch.zeros(x_shape, **kw), torch.zeros(y_shape, **kw))


def _weight_dependence(w: Tensor, p: STDPParameters) -> tuple[Tensor | float, Tensor | float]:
    if p.bound == "additive":
        return p.eta_plus, p.eta_minus
    # clamp keeps fractional powers real when w sits outside the bounds (hardbound=False)
    return (
        p.eta_plus * (p.w_max - w).clamp(min=0.0) ** p.mu,
        p.eta_minus * (w - p.w_min).clamp(min=0.0) ** p.mu,
    )


def _as_post_trace_tau(tau: Tensor | float) -> Tensor | float:
    """A per-postsynaptic-neuron tau given as ``(N_post, 1)`` acts on the ``(B, N_post)`` trace as ``(N_post,)``."""
    if isinstance(tau, Tensor) and tau.dim() == 2 and tau.shape[-1] == 1:
        return tau[:, 0]
    return tau


def _decay(tau: Tensor | float, dt: float) -> Tensor | float:
    """``exp(-dt / tau)``; a Python float stays a float (full precision, no float32 tensor)."""
    return torch.exp(-dt / tau) if isinstance(tau, Tensor) else math.exp(-dt / tau)


def stdp_step(
    s_pre: Tensor,
    z_post: Tensor,
    w: Tensor,
    state: STDPState,
    p: STDPParameters = STDPParameters(),
    mask: Tensor | None = None,
) -> tuple[Tensor, STDPState]:
    """One pair-STDP step (equations in the module docstring); returns the new weight and traces.

    ``s_pre`` ``(B, N_pre)``: presynaptic spikes arriving this step; ``z_post`` ``(B, N_post)``: postsynaptic spikes;
    ``w`` ``(N_post, N_pre)``; ``mask`` (bool or 0/1, same shape as ``w``): only these synapses change, every other
    entry is returned unchanged (a masked-out zero stays exactly zero). Not differentiable (plasticity is local).
    """
    b, n_pre = s_pre.shape
    n_post = z_post.shape[-1]
    if z_post.shape != (b, n_post) or w.shape != (n_post, n_pre):
        raise ValueError(
            f"stdp_step expects s_pre (B, N_pre), z_post (B, N_post), w (N_post, N_pre); got {tuple(s_pre.shape)}, "
            f"{tuple(z_post.shape)}, {tuple(w.shape)}"
        )
    syn_x, syn_y = state.x.dim() == 3, state.y.dim() == 3
    tau_m = p.tau_minus if syn_y else _as_post_trace_tau(p.tau_minus)
    s_row = s_pre[:, None, :] if syn_x else s_pre  # presynaptic spikes as they enter the x trace
    if p.trace == "unit":
        x = state.x * _decay(p.tau_plus, p.dt) + s_row
        y = state.y * _decay(tau_m, p.dt)
    elif p.trace == "norse":
        x = state.x + p.dt / p.tau_plus * (-state.x + s_row)
        z_col = z_post[:, :, None] if syn_y else z_post
        y = state.y + p.dt / tau_m * (-state.y + z_col)
    else:
        raise ValueError(f"trace must be one of {TRACE_CONVENTIONS}, got {p.trace!r}")
    # sum_b z_i x_(i)j and sum_b y_i(j) s_j
    ltp = torch.einsum("bi,bij->ij", z_post, x) if syn_x else torch.einsum("bi,bj->ij", z_post, x)
    ltd = torch.einsum("bij,bj->ij", y, s_pre) if syn_y else torch.einsum("bi,bj->ij", y, s_pre)
    a_plus, a_minus = _weight_dependence(w, p)
    dw = a_plus * ltp - a_minus * ltd
    if p.trace == "unit":
        y = y + (z_post[:, :, None] if syn_y else z_post)
    w_new = w + dw
    if p.hardbound:
        w_new = w_new.clamp(p.w_min, p.w_max)
    if mask is not None:
        w_new = torch.where(mask.bool(), w_new, w)
    return w_new, STDPState(x, y)


class HomeostasisParameters(NamedTuple):
    """Homeostasis keeping firing rates in a useful range.

    Parameters:
        target_rate: target spikes per neuron per step of the adaptive threshold.
        theta_plus: threshold increase per spike above target (0 disables the adaptive threshold).
        tau_theta: time constant (in steps) of the threshold's relaxation towards its rest value.
        norm_target: target L1 norm of each neuron's plastic incoming weights (``None`` disables normalisation).
    """

    target_rate: float = 0.05
    theta_plus: float = 0.05
    tau_theta: float = 200.0
    norm_target: float | None = None


def adaptive_threshold_step(theta: Tensor, theta_rest: Tensor, rate: Tensor, p: HomeostasisParameters) -> Tensor:
    """``theta <- theta_rest + (theta - theta_rest) exp(-1 / tau_theta) + theta_plus (rate - target_rate)``.

    ``rate`` ``(N,)`` is the neuron's firing rate (spikes per step) over the last presentation; the threshold rises
    for neurons above the target and falls for neurons below it, never under ``0.1 theta_rest``.
    """
    decay = math.exp(-1.0 / p.tau_theta)
    theta = theta_rest + (theta - theta_rest) * decay + p.theta_plus * (rate - p.target_rate)
    return torch.maximum(theta, 0.1 * theta_rest)


def normalise_incoming(w: Tensor, target: float, mask: Tensor, group: int = 1) -> Tensor:
    """Scale each neuron's plastic incoming weights to L1 norm ``target`` (Diehl & Cook 2015).

    ``w`` ``(N*group, M)``: with DH-LIF weights ``group`` is the number of branches, whose rows belong to one neuron.
    Entries outside ``mask`` are returned unchanged; neurons without plastic weight mass are left as they are.
    """
    m = mask.to(w.dtype)
    plastic = (w * m).view(-1, group, w.shape[-1])
    norm = plastic.abs().sum((1, 2), keepdim=True)
    scale = torch.where(norm > 0, target / norm.clamp(min=1e-12), torch.ones_like(norm))
    scaled = (plastic * scale).view_as(w)
    return torch.where(mask.bool(), scaled, w)


__all__ = [
    "BOUNDS",
    "TRACE_CONVENTIONS",
    "HomeostasisParameters",
    "STDPParameters",
    "STDPState",
    "adaptive_threshold_step",
    "check_stdp_parameters",
    "normalise_incoming",
    "stdp_initial_state",
    "stdp_step",
]

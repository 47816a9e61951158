"""DH-LIF: leaky integrate-and-fire soma fed by D leaky dendritic branches (Zheng et al., Nat. Commun. 2024).

Per layer with N neurons and D branches, for each batch row::

    I[n, d]  = (W_d x)[n] (+ b[n, d])                         dendritic input (masked projection, see DendriticLinear)
    i[n, d] <- a[n, d] * i[n, d] + (1 - a[n, d]) * I[n, d]     branch current, never reset
    u[n]    <- b[n] * u[n] + (1 - b[n]) * sum_d i[n, d] - reset
    z[n]     = H(u[n] - theta[n])                            strict: fires iff u > theta

with ``a = sigmoid(dend_tau_raw)`` and ``b = sigmoid(soma_tau_raw)`` per-step decay factors. Reset modes:

- ``"subtract"`` (the paper's): ``u <- b u + (1 - b) I - theta * z[t-1]``: theta is subtracted one step after the
  spike and is not decayed;
- ``"zero"`` (hard, as the reference ablation): ``u <- b u (1 - z[t-1]) + (1 - b) I``: the decayed potential is
  cleared one step after a spike, the new input is not;
- ``"none"``: ``u <- b u + (1 - b) I``.

Gradients flow through the reset term (as in the reference code). The state keeps the previous spike ``z`` so the
step is pure.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from norse_dh.functional.surrogate import MultiGaussianParameters, spike_fn

RESET_MODES = ("subtract", "zero", "none")


class SomaParameters(NamedTuple):
    """Parameters of the spiking soma.

    Parameters:
        soma_decay: per-step decay ``b`` in (0, 1), shape ``(N,)`` or broadcastable.
        v_th: threshold ``theta`` (scalar or ``(N,)``).
        reset: ``"subtract"``, ``"zero"`` or ``"none"``.
        method: surrogate name (``"mg"`` or a Norse threshold method).
        alpha: sharpness of Norse surrogates (unused by ``"mg"``).
        mg: shape of the multi-Gaussian surrogate.
    """

    soma_decay: Tensor
    v_th: Tensor | float = 1.0
    reset: str = "subtract"
    method: str = "mg"
    alpha: float = 100.0
    mg: MultiGaussianParameters = MultiGaussianParameters()


class SomaState(NamedTuple):
    """Soma state: membrane potential ``u`` and the previous step's spikes ``z``, both ``(B, N)``."""

    u: Tensor
    z: Tensor


class DHLIFParameters(NamedTuple):
    """Parameters of a DH-LIF neuron population.

    Parameters:
        dend_decay: per-step branch decay ``a`` in (0, 1), shape ``(N, D)``.
        soma: the soma parameters (decay ``b``, threshold, reset, surrogate).
    """

    dend_decay: Tensor
    soma: SomaParameters


class DHLIFState(NamedTuple):
    """DH-LIF state: branch currents ``i`` ``(B, N, D)``, soma potential ``u`` and previous spikes ``z`` ``(B, N)``."""

    i: Tensor
    u: Tensor
    z: Tensor


def dendrite_step(dend_input: Tensor, i: Tensor, dend_decay: Tensor) -> Tensor:
    """One branch-current update ``i <- a i + (1 - a) I`` (linear, never reset)."""
    return dend_decay * i + (1.0 - dend_decay) * dend_input


def soma_step(soma_input: Tensor, state: SomaState, p: SomaParameters) -> tuple[Tensor, SomaState]:
    """One soma update and spike, returns ``(z, SomaState(u, z))``.

    ``u <- b u + (1 - b) I - reset(z[t-1])``; ``z = H(u - theta)``; see the module docstring for the reset modes.
    """
    b = p.soma_decay
    if p.reset == "subtract":
        u = b * state.u + (1.0 - b) * soma_input - p.v_th * state.z
    elif p.reset == "zero":
        u = b * state.u * (1.0 - state.z) + (1.0 - b) * soma_input
    elif p.reset == "none":
        u = b * state.u + (1.0 - b) * soma_input
    else:
        raise ValueError(f"reset must be one of {RESET_MODES}, got {p.reset!r}")
    z = spike_fn(u - p.v_th, p.method, p.alpha, p.mg)
    return z, SomaState(u, z)


def dhlif_step(dend_input: Tensor, state: DHLIFState, p: DHLIFParameters) -> tuple[Tensor, DHLIFState]:
    """One DH-LIF time step from the dendritic input currents ``I`` of shape ``(B, N, D)``.

    ``i <- a i + (1 - a) I``; ``u <- b u + (1 - b) sum_d i - reset``; ``z = H(u - theta)``.
    Returns ``(z, DHLIFState(i, u, z))`` with ``z`` of shape ``(B, N)``.
    """
    i = dendrite_step(dend_input, state.i, p.dend_decay)
    z, soma = soma_step(i.sum(-1), SomaState(state.u, state.z), p.soma)
    return z, DHLIFState(i, soma.u, soma.z)


class LeakyReadoutState(NamedTuple):
    """Readout integrator state: membrane ``m`` of shape ``(B, K)``."""

    m: Tensor


def leaky_readout_step(
    readout_input: Tensor, state: LeakyReadoutState, decay: Tensor
) -> tuple[Tensor, LeakyReadoutState]:
    """Non-spiking leaky integrator readout ``m <- b m + (1 - b) I``; returns ``(m, state)``."""
    m = decay * state.m + (1.0 - decay) * readout_input
    return m, LeakyReadoutState(m)


def zero_dhlif_state(batch: int, neurons: int, branches: int, like: Tensor) -> DHLIFState:
    """All-zero initial state on the dtype and device of ``like``."""
    kw = dict(dtype=like.dtype, device=like.device)
    return DHLIFState(
        i=torch.zeros(batch, neurons, branches, **kw),
        u=torch.zeros(batch, neurons, **kw),
        z=torch.zeros(batch, neurons, **kw),
    )

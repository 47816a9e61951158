"""Readouts: the DH-SNN leaky-integrator readout ``m <- b m + (1 - b) (W s + bias)`` (non-spiking)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from norse_dh.functional.dhlif import LeakyReadoutState, leaky_readout_step
from norse_dh.kernels import full_plan, fused_supported, leaky_loop, project
from norse_dh.modules.soma import check_input, run_sequence
from norse_dh.timing import InitSpec, decay_to_tau, init_raw

# Readout weight inits of the reference scripts: xavier_normal_ weights with zero bias (SHD, SSC, DEAP) or nn.Linear's
# default U(+-1/sqrt(fan_in)) weights and bias (delayed and multi-timescale XOR).
READOUT_WEIGHT_INITS = ("xavier_normal", "linear_default")


class _ReadoutBase(nn.Module):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        tau_init: InitSpec = "medium",
        train_tau: bool = True,
        bias: bool = True,
        init_state: str = "zero",
        dt: float = 1e-3,
        seed: int | None = None,
        weight_init: str = "xavier_normal",
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if init_state not in ("zero", "reference_random"):
            raise ValueError(f"init_state must be 'zero' or 'reference_random', got {init_state!r}")
        if weight_init not in READOUT_WEIGHT_INITS:
            raise ValueError(f"weight_init must be one of {READOUT_WEIGHT_INITS}, got {weight_init!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.init_state = init_state
        self.dt = float(dt)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        if weight_init == "xavier_normal":  # the SHD/SSC/DEAP scripts re-initialise their readout this way
            nn.init.xavier_normal_(self.linear.weight)
            if bias:
                nn.init.zeros_(self.linear.bias)
        # "linear_default": nn.Linear's own init, kept (the XOR scripts' readout_integrator_test)
        self.tau_raw = nn.Parameter(init_raw((out_features,), tau_init, gen), requires_grad=train_tau)

    @property
    def decay(self) -> Tensor:
        return torch.sigmoid(self.tau_raw)

    def time_constants(self, dt: float | None = None) -> dict[str, Tensor]:
        return {"readout": decay_to_tau(self.decay.detach(), self.dt if dt is None else dt)}

    def initial_state(self, x: Tensor) -> LeakyReadoutState:
        shape = (x.shape[-2], self.out_features)
        if self.init_state == "reference_random":
            return LeakyReadoutState(torch.rand(shape, dtype=x.dtype, device=x.device))
        return LeakyReadoutState(torch.zeros(shape, dtype=x.dtype, device=x.device))

    def _check(self, x: Tensor, dims: int) -> None:
        check_input(self, x, dims, self.in_features, "input" if dims == 2 else "input sequence")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class LeakyReadoutCell(_ReadoutBase):
    """One step of the leaky-integrator readout: ``(B, M) -> (B, K)`` membrane values."""

    def forward(self, input_tensor: Tensor, state: LeakyReadoutState | None = None):
        self._check(input_tensor, 2)
        state = self.initial_state(input_tensor) if state is None else state
        return leaky_readout_step(self.linear(input_tensor), state, self.decay)


class LeakyReadout(_ReadoutBase):
    """Leaky-integrator readout over a sequence: ``(T, B, M) -> (T, B, K)`` membrane values."""

    def forward(self, input_tensor: Tensor, state: LeakyReadoutState | None = None):
        self._check(input_tensor, 3)
        state = self.initial_state(input_tensor) if state is None else state
        decay = self.decay
        w = self.linear.weight
        if fused_supported([input_tensor, w, decay, state.m], "mg", "none"):
            # one (event-driven for spike inputs) projection of all steps, then the fused linear recurrence
            plan = full_plan(self.out_features, self.in_features)
            readout_input, _ = project(input_tensor, w, self.linear.bias, plan)
            m, m_last = leaky_loop(readout_input, decay, state.m)
            return m, LeakyReadoutState(m_last)
        return run_sequence(self.linear(input_tensor), state, lambda x, s: leaky_readout_step(x, s, decay))

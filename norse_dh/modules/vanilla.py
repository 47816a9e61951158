"""Vanilla LIF baselines of the DH-SNN paper (SFNN, SRNN): the DH-LIF soma fed directly, without dendrites.

``u <- b u + (1 - b) (W x + bias) - reset``; ``z = H(u - theta)`` with the reset modes of
:func:`norse_dh.functional.dhlif.soma_step` (the paper's ablation uses ``"zero"``, ``"subtract"`` and ``"none"``).
The recurrent version reads ``[x[t], z[t-1]]`` through one Linear, as the reference does.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from norse_dh.functional.dhlif import SomaParameters, SomaState, soma_step
from norse_dh.kernels import dhlif_loop, full_plan, fused_supported, project
from norse_dh.modules.soma import SomaLayer, run_sequence
from norse_dh.timing import InitSpec


class _VanillaBase(SomaLayer):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        recurrent: bool = False,
        bias: bool = True,
        soma_tau_init: InitSpec = "medium",
        train_soma_tau: bool = True,
        v_th: float | Tensor = 1.0,
        reset: str = "subtract",
        method: str = "mg",
        alpha: float = 100.0,
        mg=None,
        init_state: str = "zero",
        dt: float = 1e-3,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            hidden_size, soma_tau_init, train_soma_tau, v_th, reset, method, alpha, mg, init_state, dt, seed
        )
        if not isinstance(input_size, int) or input_size < 1:
            raise ValueError(f"input_size must be a positive int, got {input_size!r}")
        self.input_size = input_size
        self.recurrent = recurrent
        self.linear = nn.Linear(input_size + (hidden_size if recurrent else 0), hidden_size, bias=bias)

    def initial_state(self, x: Tensor) -> SomaState:
        return SomaState(*self._initial_soma(x.shape[-2], x))

    def _feed_forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.linear.weight[:, : self.input_size], self.linear.bias)

    def _step(self, ff: Tensor, state: SomaState, p: SomaParameters) -> tuple[Tensor, SomaState]:
        if self.recurrent:
            ff = ff + state.z @ self.linear.weight[:, self.input_size :].t()
        return soma_step(ff, state, p)

    def _fast_sequence(self, x: Tensor, state: SomaState) -> tuple[Tensor, SomaState] | None:
        """Fast path (``norse_dh.kernels``): one projection of all steps (event-driven for sparse inputs), then the
        fused soma loop; None where it does not apply (the caller then runs the step-by-step loop)."""
        p = self.soma_parameters()
        w = self.linear.weight
        if not fused_supported([x, w, p.soma_decay, self.v_th, *state], p.method, p.reset):
            return None
        plan = full_plan(self.hidden_size, self.input_size, w.shape[1])
        ff, _ = project(x, w, self.linear.bias, plan)
        w_rec_t = w[:, self.input_size :].t() if self.recurrent else None
        z, _, u, z_last = dhlif_loop(
            ff, None, p.soma_decay, p.v_th, None, state.u, state.z, w_rec_t=w_rec_t, reset=p.reset,
            method=p.method, alpha=p.alpha, mg=p.mg,
        )  # fmt: skip
        return z, SomaState(u, z_last)

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, hidden_size={self.hidden_size}, recurrent={self.recurrent}, "
            f"reset={self.reset!r}, method={self.method!r}"
        )


class VanillaLIFCell(_VanillaBase):
    """One step of a vanilla LIF layer (SFNN): ``(B, M) -> (B, N)``."""

    def __init__(self, input_size: int, hidden_size: int, **kwargs) -> None:
        super().__init__(input_size, hidden_size, recurrent=False, **kwargs)

    def forward(self, input_tensor: Tensor, state: SomaState | None = None) -> tuple[Tensor, SomaState]:
        self._check_input(input_tensor, 2, self.input_size, "input")
        state = self.initial_state(input_tensor) if state is None else state
        return self._step(self._feed_forward(input_tensor), state, self.soma_parameters())


class VanillaLIF(_VanillaBase):
    """Vanilla LIF layer over a sequence: ``(T, B, M) -> (T, B, N)``."""

    def __init__(self, input_size: int, hidden_size: int, **kwargs) -> None:
        super().__init__(input_size, hidden_size, recurrent=False, **kwargs)

    def forward(self, input_tensor: Tensor, state: SomaState | None = None) -> tuple[Tensor, SomaState]:
        self._check_input(input_tensor, 3, self.input_size, "input sequence")
        state = self.initial_state(input_tensor) if state is None else state
        fast = self._fast_sequence(input_tensor, state)
        if fast is not None:
            return fast
        p = self.soma_parameters()
        return run_sequence(self._feed_forward(input_tensor), state, lambda x, s: self._step(x, s, p))


class VanillaLIFRecurrentCell(_VanillaBase):
    """One step of a vanilla recurrent LIF layer (SRNN)."""

    def __init__(self, input_size: int, hidden_size: int, **kwargs) -> None:
        super().__init__(input_size, hidden_size, recurrent=True, **kwargs)

    def forward(self, input_tensor: Tensor, state: SomaState | None = None) -> tuple[Tensor, SomaState]:
        self._check_input(input_tensor, 2, self.input_size, "input")
        state = self.initial_state(input_tensor) if state is None else state
        return self._step(self._feed_forward(input_tensor), state, self.soma_parameters())


class VanillaLIFRecurrent(_VanillaBase):
    """Vanilla recurrent LIF layer over a sequence."""

    def __init__(self, input_size: int, hidden_size: int, **kwargs) -> None:
        super().__init__(input_size, hidden_size, recurrent=True, **kwargs)

    def forward(self, input_tensor: Tensor, state: SomaState | None = None) -> tuple[Tensor, SomaState]:
        self._check_input(input_tensor, 3, self.input_size, "input sequence")
        state = self.initial_state(input_tensor) if state is None else state
        fast = self._fast_sequence(input_tensor, state)
        if fast is not None:
            return fast
        p = self.soma_parameters()
        return run_sequence(self._feed_forward(input_tensor), state, lambda x, s: self._step(x, s, p))


__all__ = ["VanillaLIFCell", "VanillaLIF", "VanillaLIFRecurrentCell", "VanillaLIFRecurrent"]

"""DH-LIF modules: feed-forward (DH-SFNN) and recurrent (DH-SRNN), one-step cells and sequence layers.

Equations: :mod:`norse_dh.functional.dhlif`. The cells take one step ``(B, M)``; the sequence layers take
``(T, B, M)`` and project the feed-forward input of all steps in one product before the time loop.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from norse_dh.functional.dhlif import DHLIFParameters, DHLIFState, dhlif_step
from norse_dh.kernels import dhlif_loop, dhsfnn_sequence, fused_supported, plan_for, project
from norse_dh.modules.dendritic_linear import DendriticLinear
from norse_dh.modules.soma import SomaLayer, run_sequence
from norse_dh.timing import InitSpec, decay_to_tau, init_raw


class _DHLIFBase(SomaLayer):
    """Parameters shared by all DH-LIF layers: the masked dendritic projection and per-branch timing factors.

    Parameters:
        input_size: inputs M (feed-forward part).
        hidden_size: neurons N.
        branches: dendritic branches D.
        recurrent: if True the dendrites read ``[x, z[t-1]]`` (width M + N) through one mask (DH-SRNN).
        mask, group_size, mask_seed, sparsity: connectivity (see :class:`DendriticLinear`).
        bias: per-branch bias.
        dend_tau_init, soma_tau_init: timing-factor init (presets, ranges, per-branch lists, tensors).
        train_dend_tau, train_soma_tau: False freezes the factor (it stays in ``state_dict``).
        v_th, reset, method, alpha, mg: soma threshold, reset mode and surrogate.
        init_state: ``"zero"`` or ``"reference_random"``.
        dt: step length in seconds, only used to express factors as time constants (and by NIR export).
        seed: seed for the timing-factor draws (``None``: global RNG).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        branches: int = 4,
        *,
        recurrent: bool = False,
        mask: str | Tensor = "random",
        group_size: int = 32,
        mask_seed: int | None = 0,
        sparsity: float | None = None,
        bias: bool = True,
        dend_tau_init: InitSpec = "medium",
        soma_tau_init: InitSpec = "medium",
        train_dend_tau: bool = True,
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
        if not isinstance(branches, int) or branches < 1:
            raise ValueError(f"branches must be a positive int, got {branches!r}")
        self.input_size = input_size
        self.branches = branches
        self.recurrent = recurrent
        dend_in = input_size + hidden_size if recurrent else input_size
        self.dendrites = DendriticLinear(dend_in, hidden_size, branches, mask, bias, group_size, mask_seed, sparsity)
        self.dend_tau_raw = nn.Parameter(
            init_raw((hidden_size, branches), dend_tau_init, self._generator), requires_grad=train_dend_tau
        )

    @property
    def dend_decay(self) -> Tensor:
        """Per-step branch decay ``a = sigmoid(dend_tau_raw)``, shape ``(N, D)``."""
        return torch.sigmoid(self.dend_tau_raw)

    def dhlif_parameters(self) -> DHLIFParameters:
        return DHLIFParameters(self.dend_decay, self.soma_parameters())

    def time_constants(self, dt: float | None = None) -> dict[str, Tensor]:
        taus = super().time_constants(dt)
        taus["dend"] = decay_to_tau(self.dend_decay.detach(), self.dt if dt is None else dt)
        return taus

    def initial_state(self, x: Tensor) -> DHLIFState:
        """Initial state for a batch like ``x`` (``(B, M)`` or ``(T, B, M)``): zeros or the reference draw."""
        batch = x.shape[-2]
        u, z = self._initial_soma(batch, x)
        shape = (batch, self.hidden_size, self.branches)
        i = torch.zeros(shape, dtype=x.dtype, device=x.device)
        if self.init_state == "reference_random" and self.branches == 1:
            i = torch.rand(shape, dtype=x.dtype, device=x.device)  # the reference draws d_input only for D = 1
        return DHLIFState(i, u, z)

    def _split_weights(self) -> tuple[Tensor, Tensor | None]:
        """Effective (masked) feed-forward ``(N*D, M)`` and recurrent ``(N*D, N)`` weights."""
        w = self.dendrites.masked_weight()
        if not self.recurrent:
            return w[:, : self.input_size], None
        return w[:, : self.input_size], w[:, self.input_size : self.input_size + self.hidden_size]

    def _feed_forward(self, x: Tensor) -> Tensor:
        """Feed-forward branch input ``(..., N, D)`` (bias included); for DH-SRNN without the recurrent part."""
        w_in, _ = self._split_weights()
        out = torch.nn.functional.linear(x, w_in, self.dendrites.bias)
        return out.unflatten(-1, (self.hidden_size, self.branches))

    def _recurrent_step(self, ff: Tensor, state: DHLIFState, p: DHLIFParameters, w_rec: Tensor | None):
        if w_rec is not None:
            ff = ff + (state.z @ w_rec.t()).unflatten(-1, (self.hidden_size, self.branches))
        return dhlif_step(ff, state, p)

    def _fast_sequence(self, x: Tensor, state: DHLIFState) -> tuple[Tensor, DHLIFState] | None:
        """The fast sequence path (``norse_dh.kernels``), or None where it does not apply (then the caller runs the
        step-by-step reference loop): one density-dependent projection of all steps, then the fused C++ loop with
        its hand-derived backward; for DH-SRNN only the recurrent product runs per step, inside the loop."""
        p = self.dhlif_parameters()
        sp = p.soma
        w = self.dendrites.weight
        if not fused_supported([x, w, p.dend_decay, sp.soma_decay, self.v_th, *state], sp.method, sp.reset):
            return None
        path = "auto"
        if not self.recurrent and sp.method == "mg":  # sparse input: projection, loop and surrogate in one kernel
            d = self.dendrites
            out = dhsfnn_sequence(
                x, w, d.bias, d.mask, p.dend_decay, sp.soma_decay, sp.v_th, *state, reset=sp.reset, mg=sp.mg
            )
            if out is not None:
                z, i, u, z_last = out
                return z, DHLIFState(i, u, z_last)
            path = "shared"  # above the event break-even: pattern-shared or dense product
        plan = plan_for(self.dendrites.mask, self.input_size, self.branches)
        ff, _ = project(x, w, self.dendrites.bias, plan, mask=self.dendrites.mask, branches=self.branches, path=path)
        w_rec_t = self._split_weights()[1].t() if self.recurrent else None
        z, i, u, z_last = dhlif_loop(
            ff.unflatten(-1, (self.hidden_size, self.branches)),
            p.dend_decay,
            sp.soma_decay,
            sp.v_th,
            state.i,
            state.u,
            state.z,
            w_rec_t=w_rec_t,
            reset=sp.reset,
            method=sp.method,
            alpha=sp.alpha,
            mg=sp.mg,
        )
        return z, DHLIFState(i, u, z_last)

    def extra_repr(self) -> str:
        return (
            f"input_size={self.input_size}, hidden_size={self.hidden_size}, branches={self.branches}, "
            f"recurrent={self.recurrent}, reset={self.reset!r}, method={self.method!r}"
        )


class DHLIFCell(_DHLIFBase):
    """One step of a feed-forward DH-LIF layer (DH-SFNN): ``(B, M) -> (B, N)``.

    Example:
        >>> cell = DHLIFCell(700, 64, branches=4)
        >>> z, state = cell(torch.rand(8, 700))
    """

    def __init__(self, input_size: int, hidden_size: int, branches: int = 4, **kwargs) -> None:
        super().__init__(input_size, hidden_size, branches, recurrent=False, **kwargs)

    def forward(self, input_tensor: Tensor, state: DHLIFState | None = None) -> tuple[Tensor, DHLIFState]:
        self._check_input(input_tensor, 2, self.input_size, "input")
        state = self.initial_state(input_tensor) if state is None else state
        return dhlif_step(self._feed_forward(input_tensor), state, self.dhlif_parameters())


class DHLIF(_DHLIFBase):
    """Feed-forward DH-LIF layer over a sequence: ``(T, B, M) -> (T, B, N)``.

    The input projection of all T steps is one product (it does not depend on the state; sparse spike inputs use
    the event-driven path), and the recurrences run in the fused C++ loop of :mod:`norse_dh.kernels` with a
    hand-derived backward. Where that loop does not apply (non-CPU tensors, dtypes other than float32/float64,
    kernels not built or ``NORSE_DH_KERNELS=0``) the step-by-step functional loop runs instead, with the same
    results.
    """

    def __init__(self, input_size: int, hidden_size: int, branches: int = 4, **kwargs) -> None:
        super().__init__(input_size, hidden_size, branches, recurrent=False, **kwargs)

    def forward(self, input_tensor: Tensor, state: DHLIFState | None = None) -> tuple[Tensor, DHLIFState]:
        self._check_input(input_tensor, 3, self.input_size, "input sequence")
        state = self.initial_state(input_tensor) if state is None else state
        fast = self._fast_sequence(input_tensor, state)
        if fast is not None:
            return fast
        p = self.dhlif_parameters()
        return run_sequence(self._feed_forward(input_tensor), state, lambda x, s: dhlif_step(x, s, p))


class DHLIFRecurrentCell(_DHLIFBase):
    """One step of a recurrent DH-LIF layer (DH-SRNN): the dendrites read ``[x[t], z[t-1]]`` through one mask."""

    def __init__(self, input_size: int, hidden_size: int, branches: int = 4, **kwargs) -> None:
        super().__init__(input_size, hidden_size, branches, recurrent=True, **kwargs)

    def forward(self, input_tensor: Tensor, state: DHLIFState | None = None) -> tuple[Tensor, DHLIFState]:
        self._check_input(input_tensor, 2, self.input_size, "input")
        state = self.initial_state(input_tensor) if state is None else state
        _, w_rec = self._split_weights()
        return self._recurrent_step(self._feed_forward(input_tensor), state, self.dhlif_parameters(), w_rec)


class DHLIFRecurrent(_DHLIFBase):
    """Recurrent DH-LIF layer over a sequence: feed-forward part batched over time, recurrent product per step."""

    def __init__(self, input_size: int, hidden_size: int, branches: int = 4, **kwargs) -> None:
        super().__init__(input_size, hidden_size, branches, recurrent=True, **kwargs)

    def forward(self, input_tensor: Tensor, state: DHLIFState | None = None) -> tuple[Tensor, DHLIFState]:
        self._check_input(input_tensor, 3, self.input_size, "input sequence")
        state = self.initial_state(input_tensor) if state is None else state
        fast = self._fast_sequence(input_tensor, state)
        if fast is not None:
            return fast
        p = self.dhlif_parameters()
        _, w_rec = self._split_weights()
        ff = self._feed_forward(input_tensor)
        return run_sequence(ff, state, lambda x, s: self._recurrent_step(x, s, p, w_rec))

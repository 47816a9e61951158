"""The spiking soma shared by DH-LIF and vanilla LIF layers: its parameters, checks, initial state and time loop."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from norse_dh.functional.dhlif import RESET_MODES, SomaParameters
from norse_dh.functional.surrogate import MultiGaussianParameters, check_method
from norse_dh.timing import InitSpec, decay_to_tau, init_raw

INIT_STATES = ("zero", "reference_random")


class SomaLayer(nn.Module):
    """Base of every spiking layer: owns the soma timing factor and threshold as real parameters/buffers.

    ``soma_tau_raw`` ``(N,)`` is an ``nn.Parameter`` (frozen with ``train_soma_tau=False``: it stays in
    ``state_dict``); ``v_th`` ``(N,)`` is a buffer, so per-neuron thresholds are first class.
    """

    def __init__(
        self,
        hidden_size: int,
        soma_tau_init: InitSpec = "medium",
        train_soma_tau: bool = True,
        v_th: float | Tensor = 1.0,
        reset: str = "subtract",
        method: str = "mg",
        alpha: float = 100.0,
        mg: MultiGaussianParameters | None = None,
        init_state: str = "zero",
        dt: float = 1e-3,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(hidden_size, int) or hidden_size < 1:
            raise ValueError(f"hidden_size must be a positive int, got {hidden_size!r}")
        if reset not in RESET_MODES:
            raise ValueError(f"reset must be one of {RESET_MODES}, got {reset!r}")
        if init_state not in INIT_STATES:
            raise ValueError(f"init_state must be one of {INIT_STATES}, got {init_state!r}")
        if not dt > 0:
            raise ValueError(f"dt must be > 0, got {dt!r}")
        self.hidden_size = hidden_size
        self.reset = reset
        self.method = check_method(method)
        self.alpha = float(alpha)
        self.mg = mg if mg is not None else MultiGaussianParameters()
        self.init_state = init_state
        self.dt = float(dt)
        self._generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self.soma_tau_raw = nn.Parameter(
            init_raw((hidden_size,), soma_tau_init, self._generator), requires_grad=train_soma_tau
        )
        v_th_t = torch.as_tensor(v_th, dtype=torch.get_default_dtype())
        if v_th_t.dim() > 1 or (v_th_t.dim() == 1 and v_th_t.numel() != hidden_size):
            raise ValueError(f"v_th must be a scalar or have shape ({hidden_size},), got shape {tuple(v_th_t.shape)}")
        self.register_buffer("v_th", torch.broadcast_to(v_th_t, (hidden_size,)).clone())

    @property
    def soma_decay(self) -> Tensor:
        """Per-step soma decay ``b = sigmoid(soma_tau_raw)``, shape ``(N,)``."""
        return torch.sigmoid(self.soma_tau_raw)

    def soma_parameters(self) -> SomaParameters:
        """The functional parameter tuple, rebuilt from the module's tensors on every forward."""
        return SomaParameters(self.soma_decay, self.v_th, self.reset, self.method, self.alpha, self.mg)

    def time_constants(self, dt: float | None = None) -> dict[str, Tensor]:
        """Equivalent continuous time constants ``-dt / ln(factor)`` (seconds if ``dt`` is)."""
        return {"soma": decay_to_tau(self.soma_decay.detach(), self.dt if dt is None else dt)}

    def _initial_soma(self, batch: int, like: Tensor) -> tuple[Tensor, Tensor]:
        """``(u, z)``: zeros, or the reference's U(0, 1) draws (non-binary spikes included) for parity."""
        shape = (batch, self.hidden_size)
        if self.init_state == "reference_random":
            return torch.rand(shape, dtype=like.dtype, device=like.device), torch.rand(
                shape, dtype=like.dtype, device=like.device
            )
        zeros = torch.zeros(shape, dtype=like.dtype, device=like.device)
        return zeros, zeros.clone()

    def _check_input(self, x: Tensor, dims: int, width: int, what: str) -> None:
        check_input(self, x, dims, width, what)


def check_input(module: nn.Module, x: Tensor, dims: int, width: int, what: str) -> None:
    """Reject inputs of the wrong dtype, layout, width or with NaN/inf, naming what was expected.

    The finiteness check costs one reduction per call (a device sync on GPU); set ``module.check_finite = False``
    to skip it in tight loops.
    """
    name = type(module).__name__
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} expects a floating-point {what}, got dtype {x.dtype}")
    if x.dim() != dims or x.shape[-1] != width:
        layout = "(batch, inputs)" if dims == 2 else "(time, batch, inputs)"
        raise ValueError(f"{name} expects a {what} of shape {layout} with inputs={width}, got {tuple(x.shape)}")
    # One sum is cheaper than an element-wise isfinite scan; it is non-finite iff some entry is (or the sum
    # overflows, then the exact scan decides).
    if getattr(module, "check_finite", True) and not bool(torch.isfinite(x.sum())):
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} got a {what} containing NaN or inf values; expected finite values")


def run_sequence(steps: Tensor, state: tuple, step: Callable[[Tensor, tuple], tuple[Tensor, tuple]]):
    """Apply ``step`` over dim 0 with ``unbind`` (``x[t]`` indexing makes backward quadratic in T)."""
    outputs = []
    for x_t in steps.unbind(0):
        z, state = step(x_t, state)
        outputs.append(z)
    return torch.stack(outputs), state

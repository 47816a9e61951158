"""Timing factors: per-step decays ``sigmoid(raw)`` and their initialisation presets (DH-SNN SI Table S3).

A decay factor ``f = sigmoid(raw)`` in (0, 1) multiplies a state once per step. The equivalent continuous time
constant for a step ``dt`` is ``tau = -dt / ln(f)`` (so ``f = exp(-dt / tau)``).

Init specs accepted by :func:`init_raw`:

- a preset name: ``"small"`` U(-4, 0), ``"medium"`` U(0, 4), ``"large"`` U(2, 6);
- a ``(low, high)`` pair: U(low, high);
- a float: the constant raw value;
- a list with one spec per branch (the last dimension), e.g. ``["large", "small"]``, the paper's "beneficial" init;
- a tensor of raw values with the parameter's shape (or broadcastable to it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

PRESETS: dict[str, tuple[float, float]] = {"small": (-4.0, 0.0), "medium": (0.0, 4.0), "large": (2.0, 6.0)}

InitSpec = str | float | tuple[float, float] | Sequence | Tensor


def init_raw(shape: tuple[int, ...], spec: InitSpec, generator: torch.Generator | None = None) -> Tensor:
    """Raw (pre-sigmoid) timing parameters of ``shape`` drawn according to ``spec``."""
    if isinstance(spec, Tensor):
        try:
            return torch.broadcast_to(spec.detach().to(torch.get_default_dtype()), shape).clone()
        except RuntimeError as err:
            raise ValueError(f"timing init tensor of shape {tuple(spec.shape)} does not fit {shape}") from err
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ValueError(f"timing init preset must be one of {sorted(PRESETS)}, got {spec!r}")
        low, high = PRESETS[spec]
        return torch.empty(shape).uniform_(low, high, generator=generator)
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return torch.full(shape, float(spec))
    if isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(v, (int, float)) for v in spec):
        low, high = float(spec[0]), float(spec[1])
        if not low <= high:
            raise ValueError(f"timing init range must have low <= high, got {spec!r}")
        return torch.empty(shape).uniform_(low, high, generator=generator)
    if isinstance(spec, Sequence):
        if len(shape) == 0 or len(spec) != shape[-1]:
            raise ValueError(
                f"a per-branch timing init needs one spec per branch ({shape[-1] if shape else 0}), got {list(spec)}"
            )
        cols = [init_raw(shape[:-1], s, generator) for s in spec]
        return torch.stack(cols, dim=-1)
    raise ValueError(
        f"timing init must be a preset {sorted(PRESETS)}, a (low, high) pair, a float, a per-branch list or a "
        f"tensor, got {spec!r}"
    )


def decay_to_tau(decay: Tensor, dt: float) -> Tensor:
    """Continuous time constant ``tau = -dt / ln(decay)`` for per-step decays in (0, 1)."""
    return -dt / torch.log(decay)


def tau_to_decay(tau: Tensor, dt: float) -> Tensor:
    """Per-step decay ``exp(-dt / tau)``."""
    return torch.exp(-dt / tau)


def decay_to_raw(decay: Tensor) -> Tensor:
    """Inverse sigmoid: raw parameter with ``sigmoid(raw) == decay``."""
    return torch.log(decay) - torch.log1p(-decay)


def preset_tau_range(preset: str, dt: float = 1.0) -> tuple[float, float]:
    """The equivalent tau range of a preset (for docs and plots)."""
    low, high = PRESETS[preset]
    sig = lambda r: 1.0 / (1.0 + math.exp(-r))  # noqa: E731
    return (-dt / math.log(sig(low)), -dt / math.log(sig(high)))

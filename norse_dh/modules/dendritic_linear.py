"""Masked dendritic projection: inputs -> (neurons, branches)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from norse_dh.masks import dendritic_mask, padded_width


class DendriticLinear(nn.Module):
    """``I[..., n, d] = sum_m (W * mask)[n*D + d, m] x[..., m] + bias[n*D + d]``.

    The weight is stored dense as ``(N*D, M+pad)`` (the reference layout, so reference checkpoints load) and always
    used through the mask: masked entries contribute exactly zero and receive exactly zero gradient, whatever the
    optimizer does. The mask is a buffer, so it is saved in ``state_dict`` and moves with ``.to()``.

    Parameters:
        in_features: input width M.
        out_features: neurons N.
        branches: dendritic branches D per neuron.
        mask: ``"random"``, ``"grouped"``, ``"contiguous"``, ``"full"`` or a bool tensor (see ``norse_dh.masks``).
        bias: one bias per neuron and branch.
        group_size: neurons sharing one pattern in ``"grouped"`` mode.
        seed: seed of the mask generator (``None``: torch's global generator).
        sparsity: fraction of the padded inputs per branch (default ``1/D``: each input reaches one branch).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        branches: int = 4,
        mask: str | Tensor = "random",
        bias: bool = True,
        group_size: int = 32,
        seed: int | None = 0,
        sparsity: float | None = None,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.branches = branches
        self.mask_mode = mask if isinstance(mask, str) else "custom"
        self.group_size = group_size
        width = padded_width(in_features, branches)
        self.register_buffer(
            "mask", dendritic_mask(in_features, out_features, branches, mask, group_size, seed, sparsity)
        )
        self.weight = nn.Parameter(torch.empty(out_features * branches, width))
        self.bias = nn.Parameter(torch.empty(out_features * branches)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Linear``'s default init over the padded fan-in (as the reference), masked entries zeroed."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        with torch.no_grad():
            self.weight.mul_(self.mask)
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.weight.shape[1])
            nn.init.uniform_(self.bias, -bound, bound)

    def masked_weight(self) -> Tensor:
        """The effective weight ``W * mask`` of shape ``(N*D, M+pad)``."""
        return self.weight * self.mask

    def forward(self, x: Tensor) -> Tensor:
        """Project ``x`` of shape ``(..., M)`` to branch inputs of shape ``(..., N, D)``."""
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"DendriticLinear expected input with last dimension {self.in_features}, got shape {tuple(x.shape)}"
            )
        # Padding columns only ever meet zero inputs, so the product uses the first M columns and never pads x.
        weight = self.masked_weight()[:, : self.in_features]
        out = F.linear(x, weight, self.bias)
        return out.unflatten(-1, (self.out_features, self.branches))

    def nonzero_per_neuron(self) -> Tensor:
        """Enabled input slots per neuron (M + pad for the default partitioning)."""
        return self.mask.view(self.out_features, self.branches, -1).sum((1, 2))

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, branches={self.branches}, "
            f"mask={self.mask_mode!r}, bias={self.bias is not None}"
        )

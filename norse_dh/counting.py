"""Effective parameter counts: masked dendritic weights count only where the mask enables them."""

from __future__ import annotations

from torch import nn

from norse_dh.modules.dendritic_linear import DendriticLinear


def effective_parameter_count(module: nn.Module) -> int:
    """Trainable entries a model really uses (SI Table S4's ``MN + (2D+1)N`` per DH layer).

    A :class:`DendriticLinear` weight counts ``mask.sum()`` entries (every enabled slot, padding slots included,
    as the paper counts them); all other parameters count in full.
    """
    total = 0
    for sub in module.modules():
        for name, param in sub.named_parameters(recurse=False):
            if isinstance(sub, DendriticLinear) and name == "weight":
                total += int(sub.mask.sum())
            else:
                total += param.numel()
    return total

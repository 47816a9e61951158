"""``SequentialSNN``: a stack of sequence layers run layer by layer over whole sequences.

Every layer maps ``(T, B, ...)`` to ``(T, B, ...)``. Stateful layers (whose ``forward`` has a ``state`` argument,
Norse's convention) return ``(out, state)``; stateless ones (``nn.Linear``, ``nn.Flatten``, ...) return a tensor and
are applied to every step at once. This is the model container that the Lightning tasks build and that the NIR
bridge exports.
"""

from __future__ import annotations

import inspect

from torch import Tensor, nn


def is_stateful(module: nn.Module) -> bool:
    """Norse's rule: a module is stateful iff its ``forward`` takes an argument named ``state``."""
    return "state" in inspect.signature(module.forward).parameters


class SequentialSNN(nn.Sequential):
    """Run ``layers`` in order on a ``(T, B, M)`` sequence; returns ``(output, [state or None per layer])``.

    Example:
        >>> model = SequentialSNN(DHLIF(700, 64, branches=4), LeakyReadout(64, 20))
        >>> out, states = model(torch.rand(100, 8, 700))
    """

    def forward(self, input_tensor: Tensor, state: list | None = None) -> tuple[Tensor, list]:
        if input_tensor.dim() < 3:
            raise ValueError(
                f"SequentialSNN expects a time-first tensor (time, batch, ...), got shape {tuple(input_tensor.shape)}"
            )
        states = list(state) if state is not None else [None] * len(self)
        if len(states) != len(self):
            raise ValueError(f"state must hold one entry per layer ({len(self)}), got {len(states)}")
        out = input_tensor
        new_states: list = []
        for layer, layer_state in zip(self, states):
            if is_stateful(layer):
                out, layer_state = layer(out, layer_state)
            else:
                out = layer(out)
            new_states.append(layer_state)
        return out, new_states

    def forward_all(self, input_tensor: Tensor) -> list[Tensor]:
        """Outputs of every layer (for rasters and representation analysis), input first excluded."""
        outs = []
        out = input_tensor
        for layer in self:
            out = layer(out)[0] if is_stateful(layer) else layer(out)
            outs.append(out)
        return outs

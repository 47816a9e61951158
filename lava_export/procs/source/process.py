"""``SpikeInput``: plays a binary spike raster, one column of M inputs per time step, then stays silent.

The raster of all samples (concatenated in time) is held bit-packed: ``packed`` ``(T_total, ceil(M / 8))`` uint8
(``np.packbits`` along the inputs), so a 100-sample SHD batch (700 inputs x 100 000 steps) costs 8.75 MB.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class SpikeInput(AbstractProcess):
    """Spike source: step ``t`` (1-based) sends row ``t - 1`` of the raster (zeros after its end).

    Parameters:
        packed: ``np.packbits(raster, axis=1)`` of a ``(T_total, M)`` binary raster.
        inputs: M.
    """

    def __init__(self, *, packed: np.ndarray, inputs: int, name: str | None = None) -> None:
        packed = np.asarray(packed, dtype=np.uint8)
        if packed.ndim != 2 or packed.shape[1] != (inputs + 7) // 8:
            raise ValueError(f"packed must have shape (T, {(inputs + 7) // 8}), got {packed.shape}")
        super().__init__(inputs=inputs, name=name)
        self.s_out = OutPort(shape=(inputs,))
        self.packed = Var(shape=packed.shape, init=packed)

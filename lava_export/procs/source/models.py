"""ProcessModels of :class:`~.process.SpikeInput` (``floating_pt`` sends floats, ``fixed_pt`` int32 spikes)."""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lava_export.procs.source.process import SpikeInput


class _SpikeInputBase(PyLoihiProcessModel):
    def run_spk(self) -> None:
        row = self.time_step - 1
        m = int(self.proc_params["inputs"])
        if row < self.packed.shape[0]:
            spikes = np.unpackbits(self.packed[row], count=m).astype(self.spike_dtype)
        else:
            spikes = np.zeros(m, self.spike_dtype)
        self.s_out.send(spikes)


@implements(proc=SpikeInput, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PySpikeInputModelFloat(_SpikeInputBase):
    spike_dtype = np.float64
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    packed: np.ndarray = LavaPyType(np.ndarray, np.uint8)


@implements(proc=SpikeInput, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PySpikeInputModelFixed(_SpikeInputBase):
    spike_dtype = np.int32
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=1)
    packed: np.ndarray = LavaPyType(np.ndarray, np.uint8)

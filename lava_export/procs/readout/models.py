"""Floating-point and fixed-point ProcessModels of :class:`~.process.LeakyIntegrator`.

Float: ``m <- b m + (1 - b) (a_in + bias)`` in float64. Fixed: ``m <- clip24(rtz12(B m + (4096 - B) I))`` with
``I = a_in << 6 + bias_mant << bias_exp`` and ``B = round(4096 b)``, the arithmetic of the DH-LIF branch current.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lava_export.procs._batching import SampleClock
from lava_export.procs.readout.process import LeakyIntegrator

_UNITY = 4096
_ACT_SHIFT = 6
_MAX24 = 2**23 - 1


class _IntegratorBase(PyLoihiProcessModel):
    record_dtype: type = np.float64

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.clock = SampleClock(proc_params, int(proc_params["units"]), self.record_dtype)

    def run_spk(self) -> None:
        try:
            self._run_spk()
        except Exception as err:
            self.clock.report(err)
            raise

    def _run_spk(self) -> None:
        a = self.a_in.recv()
        local = self.clock.local(self.time_step)
        if local < 0:
            return
        if self.clock.is_sample_start(local):
            self.m[:] = 0
        self.step(a)
        self.clock.store(local, self.time_step, self.m)

    def step(self, a: np.ndarray) -> None:
        raise NotImplementedError


@implements(proc=LeakyIntegrator, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyLeakyIntegratorModelFloat(_IntegratorBase):
    """float64 leaky integrator."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    m: np.ndarray = LavaPyType(np.ndarray, float)
    decay: np.ndarray = LavaPyType(np.ndarray, float)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, float)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, int)

    def step(self, a: np.ndarray) -> None:
        b = self.decay
        self.m[:] = b * self.m + (1.0 - b) * (a + self.bias_mant)


@implements(proc=LeakyIntegrator, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyLeakyIntegratorModelFixed(_IntegratorBase):
    """Integer leaky integrator (24-bit state, 12-bit decay); records the raw integers."""

    record_dtype = np.int64
    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=16)
    m: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    decay: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=12)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=3)

    def step(self, a: np.ndarray) -> None:
        b = self.decay.astype(np.int64)
        drive = (a.astype(np.int64) << _ACT_SHIFT) + (self.bias_mant.astype(np.int64) << int(self.bias_exp[0]))
        m = b * self.m.astype(np.int64) + (_UNITY - b) * drive
        self.m[:] = np.clip(np.sign(m) * (np.abs(m) >> 12), -_MAX24, _MAX24)

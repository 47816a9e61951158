"""Floating-point and fixed-point (Loihi-style integer) ProcessModels of :class:`~.process.DHLIF`.

Float (``floating_pt``, float64): exactly the DH-LIF step of the process docstring, in the order of the PyTorch
reference (``(W x + bias) + W_rec z``, then the branch update, the branch sum, the soma update and ``u > vth``).

Fixed (``fixed_pt``, ``bit_accurate_loihi``): integer arithmetic in the style of Lava's bit-accurate LIF
(``lava.proc.lif.models.PyLifModelBitAcc``), with the DH-LIF's normalised input gain::

    I     = (a_in + a_rec) << 6 + bias_mant << bias_exp                      activation MSB-aligned by 6 bits
    i    <- wrap24(rtz12(A i + (4096 - A) I))                                 A = round(4096 a), 12-bit
    u    <- clip24(rtz12(B u + (4096 - B) sum_d i) - (vth << 6) z[t-1])      "subtract" (B = round(4096 b))
            clip24(rtz12(B u (1 - z[t-1]) + (4096 - B) sum_d i))               "zero"
    z     = u > vth << 6

with ``rtz12(x) = sign(x) (|x| >> 12)`` (rounding toward zero, as Lava's decay), ``wrap24`` the signed 24-bit
wrap-around of Lava's current and ``clip24`` the +-(2^23 - 1) saturation of its voltage. The input gain
``4096 - A`` keeps the steady state of a branch exact whatever the decay's rounding (``i = I`` for constant I).
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from lava_export.procs._batching import SampleClock
from lava_export.procs.dhlif.process import DHLIF

_UNITY = 4096  # 2**12: decays are 12-bit fractions
_ACT_SHIFT = 6  # activation and threshold MSB alignment (Lava's act_shift / vth_shift)
_MAX24 = 2**23 - 1


def rtz12(x: np.ndarray) -> np.ndarray:
    """``sign(x) * (|x| >> 12)``: divide by 4096 rounding toward zero (int64)."""
    return np.sign(x) * (np.abs(x) >> 12)


def wrap24(x: np.ndarray) -> np.ndarray:
    """Signed 24-bit wrap-around."""
    return ((x + 2**23) % 2**24) - 2**23


class _DHLIFBase(PyLoihiProcessModel):
    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.reset = proc_params["reset"]
        self.dendrites = bool(proc_params["dendrites"])
        self.recurrent = bool(proc_params["recurrent"])
        self.n = int(proc_params["neurons"])
        self.d = int(proc_params["branches"])
        self.clock = SampleClock(proc_params, self.n, np.uint8)

    def run_spk(self) -> None:
        try:
            self._run_spk()
        except Exception as err:
            self.clock.report(err)
            raise

    def _run_spk(self) -> None:
        a = self.a_in.recv()
        r = self.a_rec.recv() if self.recurrent else None
        local = self.clock.local(self.time_step)
        if local < 0:  # the first sample has not reached this layer yet
            self.s_out.send(np.zeros(self.n))
            return
        if self.clock.is_sample_start(local):
            self.i[:] = 0
            self.u[:] = 0
            self.z[:] = 0
            r = None  # the previous sample's last spikes must not leak into this one
        z = self.step(a.reshape(self.n, self.d), None if r is None else r.reshape(self.n, self.d))
        self.s_out.send(z)
        self.clock.store(local, self.time_step, z)

    def step(self, a: np.ndarray, r: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError


@implements(proc=DHLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyDHLIFModelFloat(_DHLIFBase):
    """float64 DH-LIF (equal to the PyTorch step up to summation order)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    a_rec: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    i: np.ndarray = LavaPyType(np.ndarray, float)
    u: np.ndarray = LavaPyType(np.ndarray, float)
    z: np.ndarray = LavaPyType(np.ndarray, float)
    dend_decay: np.ndarray = LavaPyType(np.ndarray, float)
    soma_decay: np.ndarray = LavaPyType(np.ndarray, float)
    vth: np.ndarray = LavaPyType(np.ndarray, float)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, float)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, int)

    def step(self, a: np.ndarray, r: np.ndarray | None) -> np.ndarray:
        drive = a + self.bias_mant
        if r is not None:
            drive = drive + r
        if self.dendrites:
            dec = self.dend_decay
            self.i[:] = dec * self.i + (1.0 - dec) * drive
            soma_in = self.i.sum(1)
        else:
            soma_in = drive[:, 0]
        b = self.soma_decay
        if self.reset == "subtract":
            u = b * self.u + (1.0 - b) * soma_in - self.vth * self.z
        elif self.reset == "zero":
            u = b * self.u * (1.0 - self.z) + (1.0 - b) * soma_in
        else:
            u = b * self.u + (1.0 - b) * soma_in
        self.u[:] = u
        self.z[:] = u > self.vth
        return self.z.copy()


@implements(proc=DHLIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyDHLIFModelFixed(_DHLIFBase):
    """Loihi-style integer DH-LIF (see the module docstring); state is 24-bit, decays 12-bit, vth 17-bit."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=16)
    a_rec: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=16)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    i: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    z: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=1)
    dend_decay: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=12)
    soma_decay: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=12)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=3)

    def step(self, a: np.ndarray, r: np.ndarray | None) -> np.ndarray:
        act = a.astype(np.int64)
        if r is not None:
            act = act + r.astype(np.int64)
        bias = self.bias_mant.astype(np.int64) << int(self.bias_exp[0])
        drive = (act << _ACT_SHIFT) + bias
        if self.dendrites:
            dec = self.dend_decay.astype(np.int64)
            i = wrap24(rtz12(dec * self.i.astype(np.int64) + (_UNITY - dec) * drive))
            self.i[:] = i
            soma_in = i.sum(1)
        else:
            soma_in = drive[:, 0]
        b = self.soma_decay.astype(np.int64)
        u = self.u.astype(np.int64)
        z = self.z.astype(np.int64)
        vth = self.vth.astype(np.int64) << _ACT_SHIFT
        if self.reset == "subtract":
            u = rtz12(b * u + (_UNITY - b) * soma_in) - vth * z
        elif self.reset == "zero":
            u = rtz12(b * u * (1 - z) + (_UNITY - b) * soma_in)
        else:
            u = rtz12(b * u + (_UNITY - b) * soma_in)
        u = np.clip(u, -_MAX24, _MAX24)
        self.u[:] = u
        self.z[:] = u > vth
        return self.z.copy()

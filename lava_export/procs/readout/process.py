"""``LeakyIntegrator``: the non-spiking readout ``m <- b m + (1 - b) (a_in + bias)`` of K units.

A linear readout on spikes is the case ``b = 0``. Sample batching as in the DH-LIF process: idle until step
``offset + 1``, state reset every ``period`` steps; if ``record_path`` is set, ``m`` of the valid steps is saved
there (``(num_samples * period, K)``; float64, or the raw integers of the fixed-point model).
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var


class LeakyIntegrator(AbstractProcess):
    """Leaky-integrator readout (see the module docstring).

    Parameters:
        units: K.
        decay: ``(K,)`` per-step decays ``b`` (float in [0, 1), or 12-bit integers ``round(4096 b)``).
        bias_mant, bias_exp: bias (float; or integer mantissa ``<< bias_exp`` in state units).
        period, offset, num_samples, num_steps, record_path: sample batching and recording.
    """

    def __init__(
        self,
        *,
        units: int,
        decay: np.ndarray,
        bias_mant: np.ndarray,
        bias_exp: int = 0,
        period: int = 1,
        offset: int = 0,
        num_samples: int = 1,
        num_steps: int = 1,
        record_path: str = "",
        name: str | None = None,
    ) -> None:
        super().__init__(
            units=units,
            period=period,
            offset=offset,
            num_samples=num_samples,
            num_steps=num_steps,
            record_path=record_path,
            name=name,
        )
        self.a_in = InPort(shape=(units,))
        self.m = Var(shape=(units,), init=0)
        self.decay = Var(shape=(units,), init=np.asarray(decay).reshape(units))
        self.bias_mant = Var(shape=(units,), init=np.asarray(bias_mant).reshape(units))
        self.bias_exp = Var(shape=(1,), init=int(bias_exp))

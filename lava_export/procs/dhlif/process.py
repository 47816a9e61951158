"""``DHLIF``: a population of N dendritic-heterogeneity LIF neurons with D current compartments each.

Per neuron ``n`` and branch ``d`` (float model; the fixed-point model is the same in integers, see ``models``)::

    I[n, d]  = a_in[n*D + d] + bias[n, d] (+ a_rec[n*D + d])     inputs of the step, branch-stacked, neuron-major
    i[n, d] <- a[n, d] i[n, d] + (1 - a[n, d]) I[n, d]          branch current (a = dend_decay), never reset
    u[n]    <- b[n] u[n] + (1 - b[n]) sum_d i[n, d] - reset       soma (b = soma_decay)
    z[n]     = u[n] > vth[n]                                    strict threshold

Reset modes: ``"subtract"`` ``- vth z[t-1]`` (one step later, not decayed), ``"zero"`` ``b u (1 - z[t-1])`` (the
decayed potential is cleared one step later), ``"none"``. Without dendrites (``dendrites=False``, the vanilla LIF
layer, ``D = 1``) the soma reads ``I`` directly.

Sample batching: the process idles (zero state, no spikes) until step ``offset + 1`` and resets ``i, u, z`` every
``period`` steps after that, so several samples concatenated in time run through one compiled network; at a reset
step the recurrent input (the previous sample's last spikes) is discarded. ``a_in`` and ``a_rec`` are separate
ports for that reason. If ``record_path`` is set, the spikes of the ``num_samples * period`` valid steps are saved
there (``.npy``, ``(num_samples * period, N)`` uint8) at the last step ``num_steps``.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.process.variable import Var

RESET_MODES = ("subtract", "zero", "none")


class DHLIF(AbstractProcess):
    """DH-LIF neuron population (see the module docstring).

    Parameters:
        neurons, branches: N and D.
        dend_decay: ``(N, D)`` branch decays (float in [0, 1), or 12-bit integers ``round(4096 a)`` for fixed point).
        soma_decay: ``(N,)`` soma decays (same convention).
        vth: ``(N,)`` thresholds (float, or the integer mantissa compared as ``u > vth << 6``).
        bias_mant: ``(N, D)`` per-branch bias (float, or the integer mantissa, scaled ``<< bias_exp``).
        bias_exp: bias exponent (fixed point only).
        reset: ``"subtract"``, ``"zero"`` or ``"none"``.
        dendrites: False for a vanilla LIF layer (soma fed directly, ``D = 1``).
        recurrent: the layer reads its own previous spikes through ``a_rec``.
        period, offset, num_samples, num_steps: sample batching (see the module docstring).
        record_path: where to save the valid spikes (``None``: no recording).
    """

    def __init__(
        self,
        *,
        neurons: int,
        branches: int,
        dend_decay: np.ndarray,
        soma_decay: np.ndarray,
        vth: np.ndarray,
        bias_mant: np.ndarray,
        bias_exp: int = 0,
        reset: str = "subtract",
        dendrites: bool = True,
        recurrent: bool = False,
        period: int = 1,
        offset: int = 0,
        num_samples: int = 1,
        num_steps: int = 1,
        record_path: str = "",
        name: str | None = None,
    ) -> None:
        if reset not in RESET_MODES:
            raise ValueError(f"reset must be one of {RESET_MODES}, got {reset!r}")
        if not dendrites and branches != 1:
            raise ValueError(f"a layer without dendrites has branches=1, got {branches}")
        super().__init__(
            neurons=neurons,
            branches=branches,
            reset=reset,
            dendrites=dendrites,
            recurrent=recurrent,
            period=period,
            offset=offset,
            num_samples=num_samples,
            num_steps=num_steps,
            record_path=record_path,
            name=name,
        )
        n, d = neurons, branches
        self.a_in = InPort(shape=(n * d,))
        self.a_rec = InPort(shape=(n * d,))
        self.s_out = OutPort(shape=(n,))
        self.i = Var(shape=(n, d), init=0)
        self.u = Var(shape=(n,), init=0)
        self.z = Var(shape=(n,), init=0)
        self.dend_decay = Var(shape=(n, d), init=np.asarray(dend_decay).reshape(n, d))
        self.soma_decay = Var(shape=(n,), init=np.asarray(soma_decay).reshape(n))
        self.vth = Var(shape=(n,), init=np.asarray(vth).reshape(n))
        self.bias_mant = Var(shape=(n, d), init=np.asarray(bias_mant).reshape(n, d))
        self.bias_exp = Var(shape=(1,), init=int(bias_exp))

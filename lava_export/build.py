"""Build a Lava process network from norse-dh blocks (imports Lava: call it in the process that runs Lava).

Mapping, per block ``l`` (1-based along the chain)::

    SpikeInput ──> Sparse(W_ff) ──a_in──> DHLIF ──s_out──> next block ...
                                           ^   │
                                           └───┴── Sparse(W_rec) ──a_rec── (recurrent layers)
    ... ──> Sparse(W_out) ──> LeakyIntegrator (readout; a ``linear`` block is an integrator with decay 0)

Each ``Sparse`` holds only the non-zero masked weights (CSR; rows ``n * D + d`` stacked neuron-major, exactly the
layout of ``nir_bridge.patterns.Block.weight``), so dendritic connectivity stays sparse. A vanilla LIF layer is a
``DHLIF`` without dendrites. In fixed point a DH-LIF matrix whose branches need different weight exponents is split
into one ``Sparse`` per exponent (disjoint rows, same input port; see :mod:`lava_export.quantize`).

**Delay alignment.** Lava's ``Sparse`` sends the previous step's accumulation, i.e. every connection process adds one
step of latency. Block ``l`` therefore sees input step ``t`` at Lava step ``t + l`` (the source emits step ``t`` at
Lava step ``t + 1``): its process gets ``offset = l`` and idles until then. The recurrent ``Sparse`` of a layer adds
one step too, which is exactly the ``z[t-1]`` the DH-SRNN recurrence reads, so it needs no correction. Samples are
concatenated in time (period ``T``); each process resets its state at every sample start of its own timeline and
drops the recurrent input there (it is the previous sample's last spikes). The network runs ``B * T + L`` steps
(``L`` blocks) and every recorded step is aligned with PyTorch's step ``t`` of sample ``k`` without shifting inputs.

**Lanes.** Lava's cost per step is mostly synchronisation between its processes, nearly independent of the layer
width, so samples also run side by side: with ``lanes = R`` every process holds R independent copies of its layer
(block-diagonal ``Sparse`` matrices ``kron(I_R, W)``, parameters tiled), lane ``r`` plays samples ``r * S .. r * S +
S - 1`` one after the other (``S = ceil(B / R)``), and the network runs ``S * T + L`` steps instead of ``B * T + L``.
Lanes never exchange spikes, so the outputs do not depend on ``R``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.sparse.models import PySparseModelBitAcc, PySparseModelFloat
from lava.proc.sparse.process import Sparse
from lava.utils.weightutils import SignMode
from scipy.sparse import csr_matrix, eye, kron

import lava_export.compat  # noqa: F401  (the package __init__ already ran the shim before the lava imports above)
from lava_export.network import SPIKING_KINDS, check_inputs, load_blocks
from lava_export.procs.dhlif.models import PyDHLIFModelFixed, PyDHLIFModelFloat
from lava_export.procs.dhlif.process import DHLIF
from lava_export.procs.readout.models import PyLeakyIntegratorModelFixed, PyLeakyIntegratorModelFloat
from lava_export.procs.readout.process import LeakyIntegrator
from lava_export.procs.source.models import PySpikeInputModelFixed, PySpikeInputModelFloat
from lava_export.procs.source.process import SpikeInput
from lava_export.quantize import QuantizedBlock, quantize_block

BACKENDS = ("floating_pt", "fixed_pt")
# Sparse's graded-spike path computes W @ s (one CSR product) instead of slicing the columns of the active inputs;
# for 0/1 spikes both give the same sums, the product is several times faster for wide layers.
_MESSAGE_BITS = 1
_MODELS = {
    "floating_pt": {
        SpikeInput: PySpikeInputModelFloat,
        Sparse: PySparseModelFloat,
        DHLIF: PyDHLIFModelFloat,
        LeakyIntegrator: PyLeakyIntegratorModelFloat,
    },
    "fixed_pt": {
        SpikeInput: PySpikeInputModelFixed,
        Sparse: PySparseModelBitAcc,
        DHLIF: PyDHLIFModelFixed,
        LeakyIntegrator: PyLeakyIntegratorModelFixed,
    },
}


@dataclass
class LavaNetwork:
    """A built (not yet compiled) Lava network for a batch of samples; :meth:`run` compiles, runs and stops it."""

    backend: str
    blocks: list
    quantized: list[QuantizedBlock] | None
    source: SpikeInput
    processes: list = field(default_factory=list)
    record_paths: list[str] = field(default_factory=list)  # one per block, in order
    num_samples: int = 1
    sample_steps: int = 1
    lanes: int = 1
    num_steps: int = 1
    build_s: float = 0.0

    @property
    def model_map(self) -> dict:
        """ProcessModel per Process *instance* (Lava then skips its model-discovery scan of the source tree)."""
        models = _MODELS[self.backend]
        return {p: models[type(p)] for p in [self.source, *self.processes]}

    def run(self) -> dict:
        """Compile, run ``num_steps`` steps, always stop; returns aligned outputs and timings.

        Returns a dict: ``spikes`` (list of ``(B, T, N)`` uint8, one per spiking block), ``readout`` (``(B, T, K)``
        float64 in model units, or None), ``readout_raw`` (fixed point: the integer membrane, else None) and
        ``timings`` (seconds: ``build``, ``compile``, ``init``, ``run``, ``stop``; ``steps``; ``per_step``).
        """
        cfg = Loihi2SimCfg(select_tag=self.backend, exception_proc_model_map=self.model_map)
        t0 = time.perf_counter()
        executable = self.source.compile(cfg)
        t1 = time.perf_counter()
        try:
            self.source.create_runtime(executable=executable)
            t2 = time.perf_counter()
            self.source.run(condition=RunSteps(num_steps=self.num_steps, blocking=True))
            t3 = time.perf_counter()
        finally:
            t_stop = time.perf_counter()
            self.source.stop()
        t4 = time.perf_counter()
        out = self._collect()
        out["timings"] = {
            "build": self.build_s,
            "compile": t1 - t0,
            "init": t2 - t1,
            "run": t3 - t2,
            "stop": t4 - t_stop,
            "steps": self.num_steps,
            "per_step": (t3 - t2) / self.num_steps,
        }
        return out

    def _unlane(self, rec: np.ndarray) -> np.ndarray:
        """``(S * T, R * N)`` record -> ``(B, T, N)`` per sample (lane r holds samples r*S .. r*S + S - 1)."""
        r, t = self.lanes, self.sample_steps
        s = rec.shape[0] // t
        out = rec.reshape(s, t, r, -1).transpose(2, 0, 1, 3).reshape(r * s, t, -1)
        return out[: self.num_samples]

    def _collect(self) -> dict:
        spikes, readout, raw = [], None, None
        for i, (block, path) in enumerate(zip(self.blocks, self.record_paths)):
            rec = self._unlane(np.load(path))
            if block.kind in SPIKING_KINDS:
                spikes.append(rec.astype(np.uint8))
            else:
                if self.quantized is not None:
                    raw = rec
                    readout = self.quantized[i].dequantize_state(rec)
                else:
                    readout = rec.astype(np.float64)
        return {"spikes": spikes, "readout": readout, "readout_raw": raw}


def _sparse(weights: np.ndarray, q=None, lanes: int = 1, name: str = "") -> list[Sparse]:
    """Sparse processes holding only the non-zero weights, block-diagonal over the lanes.

    Float: one process. Fixed: one per part of the :class:`~lava_export.quantize.QuantizedMatrix` (one exponent
    each, disjoint rows; all of them drive the same input port, whose values Lava sums).
    """

    def lane_matrix(w: np.ndarray, dtype) -> csr_matrix:
        mat = csr_matrix(np.asarray(w, dtype=dtype))
        return mat if lanes == 1 else kron(eye(lanes, dtype=dtype, format="csr"), mat, format="csr")

    if q is None:
        return [Sparse(weights=lane_matrix(weights, np.float64), num_message_bits=_MESSAGE_BITS, name=name)]
    return [
        Sparse(
            weights=lane_matrix(part.mant, np.int32),
            num_message_bits=_MESSAGE_BITS,
            weight_exp=part.exp,
            num_weight_bits=8,
            sign_mode=SignMode(part.sign_mode),
            name=name if len(q.parts) == 1 else f"{name}{k}",
        )
        for k, part in enumerate(q.parts)
    ]


def build_network(
    source,
    inputs: np.ndarray,
    backend: str = "floating_pt",
    *,
    record_dir: str | os.PathLike,
    quantized: list[QuantizedBlock] | None = None,
    warn: bool = True,
    lanes: int = 1,
) -> LavaNetwork:
    """Lava processes for a NIR graph / ``.nir`` file / block list and a spike batch ``inputs`` ``(B, T, M)``.

    Parameters:
        source: ``nir.NIRGraph``, path to a ``.nir`` file, or a list of ``nir_bridge.patterns.Block``.
        inputs: binary spikes ``(B, T, M)``; the samples are concatenated in time (see the module docstring).
        backend: ``"floating_pt"`` or ``"fixed_pt"``.
        record_dir: folder where each block's process saves its recorded output (``.npy``).
        quantized: precomputed :func:`~lava_export.quantize.quantize_block` results (fixed point); computed here
            if None.
        warn: emit :class:`~lava_export.quantize.QuantizationWarning` when quantising here.
        lanes: samples run side by side (see the module docstring); clipped to [1, B].
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    t0 = time.perf_counter()
    blocks = load_blocks(source)
    x = check_inputs(inputs, blocks[0].input_size)
    b, t, m = x.shape
    if backend == "fixed_pt" and quantized is None:
        quantized = [quantize_block(blk, warn=warn) for blk in blocks]
    lanes = max(1, min(int(lanes), b))
    per_lane = -(-b // lanes)
    num_steps = per_lane * t + len(blocks)
    padded = np.zeros((lanes * per_lane, t, m), np.uint8)
    padded[:b] = x
    raster = padded.reshape(lanes, per_lane, t, m).transpose(1, 2, 0, 3).reshape(per_lane * t, lanes * m)
    src = SpikeInput(packed=np.packbits(raster, axis=1), inputs=lanes * m, name="input")
    net = LavaNetwork(backend, blocks, quantized, src, num_samples=b, sample_steps=t, lanes=lanes, num_steps=num_steps)
    r = lanes
    prev = src.s_out
    for i, blk in enumerate(blocks):
        qb = quantized[i] if quantized is not None else None
        name = blk.name or f"layer{i}"
        path = os.path.join(os.fspath(record_dir), f"{i:02d}_{name}.npy")
        clock = dict(period=t, offset=i + 1, num_samples=per_lane, num_steps=num_steps, record_path=path)
        mm = blk.input_size
        conns = _sparse(blk.weight[:, :mm], None if qb is None else qb.weight, r, f"{name}.w")
        for conn in conns:
            prev.connect(conn.s_in)
        n, d = blk.hidden_size, blk.branches
        if blk.kind in SPIKING_KINDS:
            dend = blk.dend_decay if blk.kind == "dhlif" else np.zeros((n, 1))
            params = dict(
                dend_decay=dend if qb is None else (qb.dend_decay if qb.dend_decay is not None else np.zeros((n, 1))),
                soma_decay=blk.soma_decay if qb is None else qb.soma_decay,
                vth=blk.v_th if qb is None else qb.vth,
                bias_mant=blk.bias.reshape(n, d) if qb is None else qb.bias_mant.reshape(n, d),
            )
            params = {k: np.tile(np.asarray(v), (r, 1) if np.ndim(v) == 2 else r) for k, v in params.items()}
            neuron = DHLIF(
                neurons=r * n, branches=d, reset=blk.reset, dendrites=blk.kind == "dhlif", recurrent=blk.recurrent,
                bias_exp=0 if qb is None else qb.bias_exp, name=name, **params, **clock,
            )  # fmt: skip
            for conn in conns:
                conn.a_out.connect(neuron.a_in)
            net.processes += [*conns, neuron]
            if blk.recurrent:
                recs = _sparse(blk.weight[:, mm:], None if qb is None else qb.rec_weight, r, f"{name}.w_rec")
                for rec in recs:
                    neuron.s_out.connect(rec.s_in)
                    rec.a_out.connect(neuron.a_rec)
                net.processes += recs
            prev = neuron.s_out
        else:
            if qb is None:
                decay = blk.soma_decay if blk.soma_decay is not None else np.zeros(n)
            else:
                decay = qb.soma_decay if qb.soma_decay is not None else np.zeros(n, np.int32)
            readout = LeakyIntegrator(
                units=r * n, decay=np.tile(decay, r), bias_mant=np.tile(blk.bias if qb is None else qb.bias_mant, r),
                bias_exp=0 if qb is None else qb.bias_exp, name=name, **clock,
            )  # fmt: skip
            for conn in conns:
                conn.a_out.connect(readout.a_in)
            net.processes += [*conns, readout]
        net.record_paths.append(path)
    net.build_s = time.perf_counter() - t0
    return net


__all__ = ["BACKENDS", "LavaNetwork", "build_network"]

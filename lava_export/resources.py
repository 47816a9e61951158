"""Resource report of an exported model on Lava: neurons, compartments, synapses, fixed-point bits (pure NumPy)."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

from lava_export.network import SPIKING_KINDS, load_blocks
from lava_export.quantize import QuantizationWarning, quantize_block

WEIGHT_BITS = 8  # Loihi synaptic weight mantissa (Lava's num_weight_bits); MIXED-sign matrices use 7 + sign


@dataclass
class LayerResources:
    """Resources of one block."""

    name: str
    kind: str
    neurons: int  # spiking neurons, or readout units
    compartments: int  # dhlif: N * (D + 1) (D branch currents + soma); other kinds: N
    synapses: int  # non-zero weights held by the Sparse processes (feed-forward + recurrent)
    dense_synapses: int  # the dense weight matrix of the layer (what PyTorch stores): N * D * (M [+ N])
    fc_synapses: int  # one synapse per input and neuron (a fully connected layer): N * (M [+ N])
    weight_exp: tuple[int, ...]  # fixed point: exponent per Sparse process (feed-forward parts, then recurrent)
    sign_modes: tuple[str, ...]
    zero_rows: int  # fixed point: rows whose weights all quantise to zero


@dataclass
class ResourceReport:
    """Per-layer resources and totals (see :func:`resource_report`)."""

    layers: list[LayerResources]

    @property
    def neurons(self) -> int:
        return sum(r.neurons for r in self.layers if r.kind in SPIKING_KINDS)

    @property
    def compartments(self) -> int:
        return sum(r.compartments for r in self.layers)

    @property
    def synapses(self) -> int:
        return sum(r.synapses for r in self.layers)

    @property
    def dense_synapses(self) -> int:
        return sum(r.dense_synapses for r in self.layers)

    @property
    def fc_synapses(self) -> int:
        return sum(r.fc_synapses for r in self.layers)

    @property
    def weight_bits(self) -> int:
        """Fixed-point synaptic memory: ``WEIGHT_BITS`` per non-zero synapse."""
        return WEIGHT_BITS * self.synapses

    def format(self) -> str:
        """A plain-text table."""
        head = (
            f"{'layer':<12}{'kind':<15}{'neurons':>8}{'compart.':>9}{'synapses':>10}{'dense':>10}{'density':>9}"
            f"{'full conn.':>11}"
        )
        lines = [head + "  fixed point"]
        for r in self.layers:
            dens = r.synapses / r.dense_synapses if r.dense_synapses else 0.0
            fx = (
                f"{len(r.weight_exp)} Sparse, {WEIGHT_BITS}-bit mantissa, exp {list(r.weight_exp)}, "
                f"{'/'.join(r.sign_modes)}"
            )
            if r.zero_rows:
                fx += f", {r.zero_rows} all-zero rows"
            lines.append(
                f"{r.name:<12}{r.kind:<15}{r.neurons:>8}{r.compartments:>9}{r.synapses:>10}{r.dense_synapses:>10}"
                f"{dens:>9.3f}{r.fc_synapses:>11}  {fx}"
            )
        ratio = self.synapses / self.dense_synapses if self.dense_synapses else 0.0
        lines.append(
            f"total: {self.neurons} spiking neurons, {self.compartments} compartments, {self.synapses} non-zero "
            f"synapses of {self.dense_synapses} dense ({ratio:.3f}; fully connected {self.fc_synapses}), "
            f"{self.weight_bits} weight bits "
            f"({self.weight_bits / 8 / 1024:.1f} KiB) in fixed point"
        )
        return "\n".join(lines)


_SIGN_NAMES = {1: "mixed", 2: "excitatory", 3: "inhibitory"}


def resource_report(graph_or_path: object | str | os.PathLike) -> ResourceReport:
    """Resources of the Lava mapping of a NIR graph, ``.nir`` file or block list (fixed-point figures included)."""
    rows = []
    for i, b in enumerate(load_blocks(graph_or_path)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", QuantizationWarning)
            q = quantize_block(b, warn=False)
        mats = [q.weight] + ([q.rec_weight] if q.rec_weight is not None else [])
        n, d, cols = b.hidden_size, b.branches, b.weight.shape[1]
        rows.append(
            LayerResources(
                name=b.name or f"layer{i}",
                kind=b.kind,
                neurons=n,
                compartments=n * (d + 1) if b.kind == "dhlif" else n,
                synapses=int(np.count_nonzero(b.weight)),
                dense_synapses=n * d * cols,
                fc_synapses=n * cols,
                weight_exp=tuple(e for m in mats for e in m.exps),
                sign_modes=tuple(_SIGN_NAMES[s] for m in mats for s in m.sign_modes),
                zero_rows=sum(m.zero_rows for m in mats),
            )
        )
    return ResourceReport(rows)


__all__ = ["WEIGHT_BITS", "LayerResources", "ResourceReport", "resource_report"]

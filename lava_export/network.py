"""From a NIR graph (object or ``.nir`` file) to the ordered layer blocks that lava_export maps to Lava processes.

NIR is the contract: graphs are read with :mod:`nir_bridge.patterns` (pure NIR + NumPy). Supported: a chain
``input -> block -> ... -> output`` of norse-dh blocks (``dhlif``, ``vanilla_lif``, ``leaky_readout``, ``linear``;
see the encoding in ``nir_bridge.patterns``) in which every block but the last is spiking. The last block may be a
``leaky_readout`` or a ``linear`` readout on spikes (a leaky integrator with decay 0). Anything else (other node
types, non-chain topologies, non-spiking hidden layers) raises :class:`UnsupportedNIRError` naming the node.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import nir
import numpy as np

from lava_export.errors import UnsupportedNIRError
from nir_bridge.patterns import Block, PatternError, is_block, read_blocks

SPIKING_KINDS = ("dhlif", "vanilla_lif")
READOUT_KINDS = ("leaky_readout", "linear")
SUPPORTED = (
    "a chain input -> norse-dh blocks -> output (nir_bridge.patterns): dhlif and vanilla_lif blocks (feed-forward "
    "or recurrent), then optionally one leaky_readout or linear block last"
)


def _describe(node: nir.NIRNode) -> str:
    kind = getattr(node, "metadata", {}).get("norse_dh_block") if is_block(node) else None
    return f"{type(node).__name__}" + (f" (norse-dh block {kind!r})" if kind else "")


def read_graph(source: nir.NIRGraph | str | os.PathLike) -> nir.NIRGraph:
    """A NIR graph from a graph object or a ``.nir`` file path (clear errors for missing or corrupt files)."""
    if isinstance(source, nir.NIRGraph):
        return source
    if isinstance(source, str | os.PathLike):
        from nir_bridge.io import read_nir

        return read_nir(Path(source))
    raise TypeError(f"expected a nir.NIRGraph or a path to a .nir file, got {type(source).__name__}")


def load_blocks(source: nir.NIRGraph | str | os.PathLike | Sequence[Block]) -> list[Block]:
    """The layer blocks of a supported graph, in order, checked for Lava (see the module docstring).

    ``source`` may also be a list of ``nir_bridge.patterns.Block`` (what the graph decodes to).

    Raises:
        UnsupportedNIRError: unsupported node types, topology or block order (the message names the node).
        FileNotFoundError / nir_bridge.errors.NIRFileError: a missing or unreadable file.
    """
    if isinstance(source, Sequence) and not isinstance(source, str) and all(isinstance(b, Block) for b in source):
        blocks = list(source)
    else:
        graph = read_graph(source)
        inner = {k: v for k, v in graph.nodes.items() if not isinstance(v, nir.Input | nir.Output)}
        bad = {k: _describe(v) for k, v in inner.items() if not is_block(v)}
        if bad:
            listing = ", ".join(f"{k!r}: {v}" for k, v in bad.items())
            raise UnsupportedNIRError(f"lava_export cannot map node(s) {listing}; supported: {SUPPORTED}")
        try:
            blocks = read_blocks(graph)
        except PatternError as err:
            raise UnsupportedNIRError(f"graph is not a supported norse-dh chain: {err}") from err
    if not blocks:
        raise UnsupportedNIRError(f"the graph has no layer; supported: {SUPPORTED}")
    for i, b in enumerate(blocks):
        name = b.name or f"layer{i}"
        if b.kind not in SPIKING_KINDS + READOUT_KINDS:
            raise UnsupportedNIRError(f"block {name!r} has unknown kind {b.kind!r}; supported: {SUPPORTED}")
        if b.kind in READOUT_KINDS and i != len(blocks) - 1:
            raise UnsupportedNIRError(
                f"block {name!r} ({b.kind}) is non-spiking but not the last layer; Lava connections carry spikes, "
                f"so only the last block may be a readout ({SUPPORTED})"
            )
        if i and b.input_size != blocks[i - 1].hidden_size:
            raise UnsupportedNIRError(
                f"block {name!r} expects {b.input_size} inputs, the previous block gives {blocks[i - 1].hidden_size}"
            )
        for what in ("weight", "bias"):
            if not np.all(np.isfinite(getattr(b, what))):
                raise UnsupportedNIRError(f"block {name!r} has non-finite {what}")
    return blocks


def check_inputs(inputs: np.ndarray, input_size: int) -> np.ndarray:
    """Validate a spike batch ``(B, T, M)`` of 0/1 values; returns it as uint8."""
    x = np.asarray(inputs)
    if x.ndim != 3 or x.shape[2] != input_size or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(
            f"inputs must be a spike array of shape (batch, time, {input_size}) with batch, time >= 1, "
            f"got shape {x.shape}"
        )
    if x.dtype == bool:
        return x.astype(np.uint8)
    if not (np.issubdtype(x.dtype, np.number)) or not np.all((x == 0) | (x == 1)):
        raise ValueError(
            "inputs must be binary spikes (0/1 values; Lava connections carry unit spikes), got values outside {0, 1}"
        )
    return x.astype(np.uint8)


__all__ = ["READOUT_KINDS", "SPIKING_KINDS", "SUPPORTED", "check_inputs", "load_blocks", "read_graph"]

"""The norse-dh NIR encoding: build and recognise layer blocks made of standard NIR nodes (pure NIR + NumPy).

This module is the contract between norse-dh and every NIR consumer (the torch importer in ``nir_bridge.load`` and
the Lava exporter in ``lava_export``). It imports no torch and no norse-dh code, and its public names
(:class:`Block`, :func:`build_block`, :func:`build_graph`, :func:`recognise_block`, :func:`read_blocks`, the
constants) are stable.

Discretisation (``metadata["discretization"] == "euler_r1"``, :data:`DISCRETIZATION`)
----------------------------------------------------------------------------------------
NIR is continuous time. norse-dh layers are exactly forward Euler with step ``dt`` of the NIR equations when every
per-step factor ``f`` (a dendritic decay ``a``, a soma decay ``b`` or a readout decay) is written as the time constant
``tau = dt / (1 - f)`` with ``r = 1`` and ``v_leak = 0``, and the weights are the trained, unscaled masked weights:

    LI  ``tau v' = -v + I``   ->  ``v <- v + dt/tau (-v + I) = f v + (1 - f) I``          (a branch current, readout)
    LIF the same, then ``z = H(v - v_th)`` (strict ``>``), ``v <- v_reset = 0`` where ``z``    (a soma)

(this is the ``r = 1`` alternative of specs/nir_lava.md §7.1; no gain is folded into any weight). Fan-in into a node
is summed; an edge that closes a cycle carries the previous step's output (zeros at t = 0), as in nirtorch and Lava.
A CubaLIF integrates its current first and then feeds the *new* current to ``v`` (Norse's order).
Recovering the factors from the nodes alone is ``f = 1 - dt / tau`` (exact up to one rounding); the exact values
come from the metadata: ``decay`` (the factors as the layer computes them, what :class:`Block` returns) and ``raw``
(the trained parameters, which the torch importer restores).

Blocks (one per layer; ``M`` inputs, ``N`` neurons, ``D`` branches; every block but ``linear`` is a ``nir.NIRGraph``
sub-graph whose nodes are named as below, with ``input``/``output`` nodes of shapes ``(M,)``/``(N,)``)
---------------------------------------------------------------------------------------------------------------------
``dhlif`` (DH-LIF, ``D >= 2``)::

    input -> w_k (Affine (N, M) with bias_k, or Linear) -> dend_k (LI, tau = dt/(1 - a[:, k])) -> soma   k = 0..D-1
    soma (LIF, tau = dt/(1 - b), v_threshold = theta, v_reset = 0) -> output
    recurrent (DH-SRNN) only: soma -> rec_k (Linear (N, N)) -> dend_k                                   k = 0..D-1

  ``w_k`` holds rows ``n * D + k`` of the effective masked weight (masked entries are explicit zeros).

``dhlif`` with ``D == 1``::  input -> w_0 -> soma (CubaLIF, tau_syn = dt/(1 - a), tau_mem = dt/(1 - b), w_in = 1)
  -> output; recurrent: soma -> rec_0 (Linear) -> soma.

``vanilla_lif``::  input -> w (Affine/Linear (N, M)) -> soma (LIF) -> output; recurrent: soma -> rec -> soma.

``leaky_readout``::  input -> w (Affine/Linear (K, M)) -> li (LI, tau = dt/(1 - b)) -> output (the membrane).

``linear`` (``torch.nn.Linear``): a bare top-level ``nir.Affine`` (bias) or ``nir.Linear`` node, no sub-graph.

Reset modes: the standard nodes express ``reset == "zero"`` exactly (NIR's LIF/CubaLIF reset to ``v_reset = 0``
right after the spike equals DH-LIF's "clear the decayed potential one step later"). ``"subtract"`` (``u -= theta
z[t-1]``) and ``"none"`` cannot be said with standard nodes: a consumer reading only the nodes simulates a hard reset
there; the metadata ``reset`` key says what the layer computes.

Metadata (on every block sub-graph; HDF5-safe: no ``None``, absent means "not applicable")
-----------------------------------------------------------------------------------------
``norse_dh_block`` kind; ``format`` :data:`FORMAT_VERSION`; ``norse_dh_version``; ``dt`` (float, seconds);
``discretization`` ``"euler_r1"``; ``reset`` (spiking kinds); ``recurrent`` (0/1); ``input_size``, ``hidden_size``,
``branches`` (ints); ``bias`` (0/1); ``v_th`` ``(N,)``; ``mask`` (dhlif: uint8 ``(N*D, M[+N]+pad)``, the module's
padded mask buffer, rows ``n * D + d``); ``decay`` (dict of the per-step factors exactly as the layer computes them:
``dend`` ``(N, D)``, ``soma`` ``(N,)``; the readout's under ``soma``); ``raw`` (dict of the trained pre-sigmoid
arrays: ``dend_tau_raw`` ``(N, D)``, ``soma_tau_raw`` ``(N,)`` or ``tau_raw`` ``(K,)`` for the readout); ``dtype`` of
the weights; ``module`` (the norse-dh class name) and ``options`` (dict: surrogate ``method``, ``alpha``, ``mg``
``(4,)``, ``mask_mode``, ``init_state``, trainability flags, and ``pad_weight``: non-zero weights in the padding
columns, which never meet an input) for a faithful rebuild. The top-level graph carries ``norse_dh_version``,
``format``, ``dt``, ``discretization`` and ``container`` (``"SequentialSNN"`` or ``"single"``).

Reading: :func:`read_blocks` walks a top-level graph ``input -> block -> ... -> output`` and returns one
:class:`Block` per layer, each checked against its nodes (shapes, weights, time constants, connectivity)::

    graph = nir.read("model.nir")
    for b in read_blocks(graph):  # Block(kind, input_size, hidden_size, branches, recurrent, weight, mask, ...)
        w_ff, w_rec = b.feed_forward_weight, b.recurrent_weight  # (N*D, M), (N*D, N) or None

Graphs exported from models with Norse modules (LIF, LI, LIFBoxCell, LIBoxCell) hold bare nodes tagged
``norse_module`` instead of blocks; :func:`read_blocks` rejects them (:func:`is_norse_dh_graph` is False).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np

FORMAT_VERSION = 1
DISCRETIZATION = "euler_r1"
KINDS = ("dhlif", "vanilla_lif", "leaky_readout", "linear")
RESET_MODES = ("subtract", "zero", "none")
BLOCK_KEY = "norse_dh_block"
# Relative tolerance when checking node time constants against the metadata factors: a consistency check that
# tolerates factors recomputed in float64 from float32 raw values.
_TAU_RTOL = 1e-4


class PatternError(ValueError):
    """A graph or block does not follow the norse-dh encoding (the message says where and what was expected)."""


@dataclass
class Block:
    """One norse-dh layer in NumPy form: the parameters a simulator needs, in the layer's own dtype (float32).

    Attributes:
        kind: ``"dhlif"``, ``"vanilla_lif"``, ``"leaky_readout"`` or ``"linear"``.
        input_size: feed-forward inputs M.
        hidden_size: neurons N (readout: outputs K; linear: out_features).
        branches: dendritic branches D (1 for the other kinds).
        recurrent: the layer reads its own previous spikes (DH-SRNN / SRNN).
        weight: effective (masked) weights, unscaled, ``(N*D, M + N)`` if recurrent else ``(N*D, M)``; rows
            ``n * D + d``; columns ``[:M]`` feed-forward, ``[M:]`` recurrent. ``D = 1`` for non-dendritic kinds.
        mask: bool, same shape as ``weight`` (all True for dense kinds).
        bias: ``(N*D,)`` (zeros when the layer has none; see ``has_bias``).
        has_bias: whether the layer has a bias (exported as Affine rather than Linear).
        dend_decay: per-step branch decay ``a``, ``(N, D)`` (dhlif only, else None).
        soma_decay: per-step soma/readout decay ``b``, ``(N,)`` (None for linear).
        v_th: threshold ``(N,)`` (spiking kinds, else None).
        reset: ``"subtract"``, ``"zero"`` or ``"none"`` (spiking kinds, else None).
        dt: step in seconds.
        raw: exact pre-sigmoid parameters (``dend_tau_raw``, ``soma_tau_raw``, ``tau_raw``) when known.
        padded_mask: the module's full mask buffer including padding columns (dhlif), else None.
        module: norse-dh class name to rebuild (e.g. ``"DHLIFRecurrent"``); ``""`` if unknown.
        options: extra rebuild options (surrogate method, alpha, mg, mask_mode, init_state).
        name: node name in the top-level graph.
    """

    kind: str
    input_size: int
    hidden_size: int
    branches: int
    recurrent: bool
    weight: np.ndarray
    mask: np.ndarray
    bias: np.ndarray
    has_bias: bool
    dend_decay: np.ndarray | None
    soma_decay: np.ndarray | None
    v_th: np.ndarray | None
    reset: str | None
    dt: float
    raw: dict[str, np.ndarray] = field(default_factory=dict)
    padded_mask: np.ndarray | None = None
    module: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    @property
    def feed_forward_weight(self) -> np.ndarray:
        """``weight[:, :M]``."""
        return self.weight[:, : self.input_size]

    @property
    def recurrent_weight(self) -> np.ndarray | None:
        """``weight[:, M:]`` ``(N*D, N)`` or None."""
        return self.weight[:, self.input_size :] if self.recurrent else None


# ----------------------------------------------------------------------------------------------------------- build


def factor_to_tau(factor: np.ndarray, dt: float) -> np.ndarray:
    """``tau = dt / (1 - f)`` (float64) for per-step factors f in [0, 1)."""
    f = np.asarray(factor, dtype=np.float64)
    if np.any(~np.isfinite(f)) or np.any(f < 0) or np.any(f >= 1):
        raise PatternError(f"per-step decay factors must lie in [0, 1), got range [{f.min()}, {f.max()}]")
    return dt / (1.0 - f)


def tau_to_factor(tau: np.ndarray, dt: float) -> np.ndarray:
    """``f = 1 - dt / tau`` (float64): the Euler decay of a leaky node with time constant ``tau``."""
    return 1.0 - dt / np.asarray(tau, dtype=np.float64)


def _check_block(b: Block) -> None:
    if b.kind not in KINDS:
        raise PatternError(f"block kind must be one of {KINDS}, got {b.kind!r}")
    if not (isinstance(b.dt, float | int) and b.dt > 0):
        raise PatternError(f"dt must be a positive number, got {b.dt!r}")
    m, n, d = b.input_size, b.hidden_size, b.branches
    cols = m + (n if b.recurrent else 0)
    if b.weight.shape != (n * d, cols):
        raise PatternError(f"{b.kind} block weight must have shape ({n * d}, {cols}), got {b.weight.shape}")
    if b.mask.shape != b.weight.shape:
        raise PatternError(f"{b.kind} block mask must have the weight's shape {b.weight.shape}, got {b.mask.shape}")
    if b.bias.shape != (n * d,):
        raise PatternError(f"{b.kind} block bias must have shape ({n * d},), got {b.bias.shape}")
    if b.kind in ("dhlif", "vanilla_lif"):
        if b.reset not in RESET_MODES:
            raise PatternError(f"reset must be one of {RESET_MODES}, got {b.reset!r}")
        if b.v_th is None or b.v_th.shape != (n,):
            raise PatternError(f"v_th must have shape ({n},)")
    if b.kind != "linear" and (b.soma_decay is None or b.soma_decay.shape != (n,)):
        raise PatternError(f"soma_decay must have shape ({n},)")
    if b.kind == "dhlif" and (b.dend_decay is None or b.dend_decay.shape != (n, d)):
        raise PatternError(f"dend_decay must have shape ({n}, {d})")
    if b.kind != "dhlif" and d != 1:
        raise PatternError(f"a {b.kind} block has one branch, got branches={d}")
    if b.kind in ("leaky_readout", "linear") and b.recurrent:
        raise PatternError(f"a {b.kind} block cannot be recurrent")


def _weight_node(w: np.ndarray, bias: np.ndarray | None) -> nir.NIRNode:
    w = np.ascontiguousarray(w)
    if bias is None:
        return nir.Linear(weight=w, metadata={})
    return nir.Affine(weight=w, bias=np.ascontiguousarray(bias), metadata={})


def _leaky(tau: np.ndarray) -> dict[str, np.ndarray]:
    return {"tau": tau, "r": np.ones_like(tau), "v_leak": np.zeros_like(tau)}


def _lif(tau: np.ndarray, v_th: np.ndarray) -> nir.LIF:
    return nir.LIF(
        **_leaky(tau),
        v_threshold=np.asarray(v_th, dtype=np.float64),
        v_reset=np.zeros_like(tau),
        metadata={},
    )


def block_metadata(b: Block, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metadata dict of a block sub-graph (see the module docstring); ``extra`` adds keys (e.g. the version)."""
    meta: dict[str, Any] = {
        BLOCK_KEY: b.kind,
        "format": FORMAT_VERSION,
        "dt": float(b.dt),
        "discretization": DISCRETIZATION,
        "recurrent": int(b.recurrent),
        "input_size": int(b.input_size),
        "hidden_size": int(b.hidden_size),
        "branches": int(b.branches),
        "bias": int(b.has_bias),
        "dtype": str(b.weight.dtype),
    }
    if b.reset is not None:
        meta["reset"] = b.reset
    if b.v_th is not None:
        meta["v_th"] = np.asarray(b.v_th)
    if b.kind == "dhlif":
        mask = b.padded_mask
        if mask is None:  # pad like DendriticLinear: zero columns up to a multiple of D
            mask = np.pad(b.mask, ((0, 0), (0, (-b.mask.shape[1]) % b.branches)))
        meta["mask"] = np.asarray(mask, dtype=np.uint8)
    if b.raw:
        meta["raw"] = {k: np.asarray(v) for k, v in b.raw.items()}
    decay = {"soma": b.soma_decay, "dend": b.dend_decay}
    decay = {k: np.asarray(v) for k, v in decay.items() if v is not None}
    if decay:
        meta["decay"] = decay
    if b.module:
        meta["module"] = b.module
    if b.options:
        meta["options"] = {k: v for k, v in b.options.items() if v is not None}
    meta.update(extra or {})
    return meta


def build_block(b: Block, extra_metadata: dict[str, Any] | None = None) -> nir.NIRNode:
    """The standard-node encoding of one layer: a ``nir.NIRGraph`` sub-graph (``linear``: one Affine/Linear node)."""
    _check_block(b)
    m, n, d = b.input_size, b.hidden_size, b.branches
    bias = b.bias if b.has_bias else None
    if b.kind == "linear":
        node = _weight_node(b.weight, bias)
        node.metadata = block_metadata(b, extra_metadata)
        return node
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array([m]))}
    edges: list[tuple[str, str]] = []
    w_ff, w_rec = b.feed_forward_weight, b.recurrent_weight
    if b.kind == "leaky_readout":
        nodes["w"] = _weight_node(w_ff, bias)
        nodes["li"] = nir.LI(**_leaky(factor_to_tau(b.soma_decay, b.dt)), metadata={})
        edges += [("input", "w"), ("w", "li"), ("li", "output")]
    elif b.kind == "vanilla_lif":
        nodes["w"] = _weight_node(w_ff, bias)
        nodes["soma"] = _lif(factor_to_tau(b.soma_decay, b.dt), b.v_th)
        edges += [("input", "w"), ("w", "soma"), ("soma", "output")]
        if b.recurrent:
            nodes["rec"] = _weight_node(w_rec, None)
            edges += [("soma", "rec"), ("rec", "soma")]
    elif d == 1:  # one-branch DH-LIF: exactly a current-based LIF
        nodes["w_0"] = _weight_node(w_ff, bias)
        tau_mem = factor_to_tau(b.soma_decay, b.dt)
        nodes["soma"] = nir.CubaLIF(
            tau_syn=factor_to_tau(b.dend_decay[:, 0], b.dt),
            tau_mem=tau_mem,
            r=np.ones_like(tau_mem),
            v_leak=np.zeros_like(tau_mem),
            v_threshold=np.asarray(b.v_th, dtype=np.float64),
            v_reset=np.zeros_like(tau_mem),
            w_in=np.ones_like(tau_mem),
            metadata={},
        )
        edges += [("input", "w_0"), ("w_0", "soma"), ("soma", "output")]
        if b.recurrent:
            nodes["rec_0"] = _weight_node(w_rec, None)
            edges += [("soma", "rec_0"), ("rec_0", "soma")]
    else:
        nodes["soma"] = _lif(factor_to_tau(b.soma_decay, b.dt), b.v_th)
        for k in range(d):
            nodes[f"w_{k}"] = _weight_node(w_ff[k::d], None if bias is None else bias[k::d])
            nodes[f"dend_{k}"] = nir.LI(**_leaky(factor_to_tau(b.dend_decay[:, k], b.dt)), metadata={})
            edges += [("input", f"w_{k}"), (f"w_{k}", f"dend_{k}"), (f"dend_{k}", "soma")]
            if b.recurrent:
                nodes[f"rec_{k}"] = _weight_node(w_rec[k::d], None)
                edges += [("soma", f"rec_{k}"), (f"rec_{k}", f"dend_{k}")]
        edges.append(("soma", "output"))
    nodes["output"] = nir.Output(output_type=np.array([n]))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=block_metadata(b, extra_metadata), type_check=True)


def build_graph(blocks: list[Block], metadata: dict[str, Any] | None = None) -> nir.NIRGraph:
    """A top-level graph ``input -> layer0 -> layer1 -> ... -> output`` from blocks (names from ``Block.name``)."""
    if not blocks:
        raise PatternError("a graph needs at least one block")
    dts = {float(b.dt) for b in blocks}
    if len(dts) != 1:
        raise PatternError(f"all blocks must share one dt, got {sorted(dts)}")
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array([blocks[0].input_size]))}
    edges: list[tuple[str, str]] = []
    prev, width = "input", blocks[0].input_size
    for i, b in enumerate(blocks):
        name = b.name or f"layer{i}"
        if name in nodes or name == "output":
            raise PatternError(f"duplicate or reserved block name {name!r}")
        if b.input_size != width:
            raise PatternError(f"block {name!r} expects {b.input_size} inputs but the previous layer gives {width}")
        nodes[name] = build_block(b, {"name": name})
        edges.append((prev, name))
        prev, width = name, b.hidden_size
    nodes["output"] = nir.Output(output_type=np.array([width]))
    edges.append((prev, "output"))
    meta = {"format": FORMAT_VERSION, "dt": dts.pop(), "discretization": DISCRETIZATION}
    meta.update(metadata or {})
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=True)


# ------------------------------------------------------------------------------------------------------ recognise


def is_block(node: nir.NIRNode) -> bool:
    """Whether ``node`` carries norse-dh block metadata."""
    meta = getattr(node, "metadata", None)  # NIRGraph(...) without metadata stores the dict class itself
    return isinstance(meta, dict) and BLOCK_KEY in meta


def _meta_int(meta: dict, key: str, where: str) -> int:
    if key not in meta:
        raise PatternError(f"{where}: metadata key {key!r} is missing")
    return int(np.asarray(meta[key]).item())


def _arr(meta: dict, key: str, where: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in meta:
        raise PatternError(f"{where}: metadata key {key!r} is missing")
    a = np.asarray(meta[key])
    if a.shape != shape:
        raise PatternError(f"{where}: metadata {key!r} must have shape {shape}, got {a.shape}")
    return a


def _decay(decay: dict, key: str, raw: dict, raw_key: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    """Per-step factors: the exact exported values (metadata ``decay``), else ``sigmoid(raw)`` in float64."""
    if key in decay:
        return _arr(decay, key, where, shape)
    if raw_key in raw:
        return 1.0 / (1.0 + np.exp(-_arr(raw, raw_key, where, shape).astype(np.float64)))
    raise PatternError(f"{where}: metadata 'decay' / 'raw' hold no {key} factors")


def _expect(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise PatternError(f"{where}: {what}")


def _node(g: nir.NIRGraph, name: str, types: tuple[type, ...], where: str) -> nir.NIRNode:
    node = g.nodes.get(name)
    _expect(
        node is not None and isinstance(node, types),
        where,
        f"expected node {name!r} of type {'/'.join(t.__name__ for t in types)}, found "
        f"{type(node).__name__ if node is not None else 'nothing'}",
    )
    return node


def _weights_of(node: nir.NIRNode, shape: tuple[int, int], where: str) -> tuple[np.ndarray, np.ndarray | None]:
    w = np.asarray(node.weight)
    _expect(w.shape == shape, where, f"weight must have shape {shape}, got {w.shape}")
    bias = np.asarray(node.bias) if isinstance(node, nir.Affine) else None
    if bias is not None:
        _expect(bias.shape == (shape[0],), where, f"bias must have shape ({shape[0]},), got {bias.shape}")
    return w, bias


def _check_tau(tau: np.ndarray, factor: np.ndarray, dt: float, where: str) -> None:
    tau = np.asarray(tau, dtype=np.float64)
    want = factor_to_tau(factor, dt)
    _expect(tau.shape == want.shape, where, f"tau must have shape {want.shape}, got {tau.shape}")
    _expect(
        bool(np.allclose(tau, want, rtol=_TAU_RTOL, atol=0.0)),
        where,
        "time constants do not match dt / (1 - sigmoid(raw)) of the metadata",
    )


def _check_neutral(node: nir.NIRNode, where: str, names: tuple[str, ...], value: float) -> None:
    for name in names:
        a = np.asarray(getattr(node, name))
        _expect(bool(np.all(a == value)), where, f"{name} must be {value} in the {DISCRETIZATION} encoding")


def _check_edges(g: nir.NIRGraph, expected: set[tuple[str, str]], where: str) -> None:
    got = {tuple(e) for e in g.edges}
    _expect(got == expected, where, f"edges {sorted(got)} differ from the expected {sorted(expected)}")
    _expect(set(g.nodes) == {n for e in expected for n in e}, where, f"unexpected nodes {sorted(g.nodes)}")


def recognise_block(node: nir.NIRNode, name: str = "") -> Block:
    """Parse a norse-dh block (a tagged sub-graph, or a tagged bare Affine/Linear) into a :class:`Block`.

    Everything the metadata claims is checked against the standard nodes: node types, connectivity, weight shapes
    and values (masked entries must be zero), biases, thresholds, ``r = 1``, ``v_leak = v_reset = 0`` and the time
    constants. Raises :class:`PatternError` naming the block and the mismatch.
    """
    where = f"block {name!r}" if name else "block"
    _expect(is_block(node), where, f"not a norse-dh block (metadata key {BLOCK_KEY!r} missing)")
    meta = node.metadata
    kind = str(meta[BLOCK_KEY])
    _expect(kind in KINDS, where, f"unknown block kind {kind!r}, expected one of {KINDS}")
    fmt = _meta_int(meta, "format", where)
    _expect(fmt == FORMAT_VERSION, where, f"format {fmt} is not supported (this reader knows {FORMAT_VERSION})")
    disc = str(meta.get("discretization", ""))
    _expect(disc == DISCRETIZATION, where, f"discretization must be {DISCRETIZATION!r}, got {disc!r}")
    dt = float(np.asarray(meta.get("dt", np.nan)).item())
    _expect(np.isfinite(dt) and dt > 0, where, f"dt must be a positive number, got {dt}")
    m, n, d = (_meta_int(meta, k, where) for k in ("input_size", "hidden_size", "branches"))
    _expect(min(m, n, d) >= 1, where, f"input_size, hidden_size and branches must be >= 1, got {m}, {n}, {d}")
    recurrent = bool(_meta_int(meta, "recurrent", where))
    has_bias = bool(_meta_int(meta, "bias", where))
    raw = {k: np.asarray(v) for k, v in dict(meta.get("raw", {})).items()}
    options = dict(meta.get("options", {}))
    module = str(meta.get("module", ""))
    reset = str(meta["reset"]) if "reset" in meta else None
    v_th = _arr(meta, "v_th", where, (n,)) if kind in ("dhlif", "vanilla_lif") else None
    if kind in ("dhlif", "vanilla_lif"):
        _expect(reset in RESET_MODES, where, f"reset must be one of {RESET_MODES}, got {reset!r}")
    bias_type = (nir.Affine,) if has_bias else (nir.Linear,)

    if kind == "linear":
        _expect(isinstance(node, bias_type), where, f"a linear block is a bare {bias_type[0].__name__} node")
        w, bias = _weights_of(node, (n, m), where)
        return Block(
            kind, m, n, 1, False, w, np.ones(w.shape, bool), bias if bias is not None else np.zeros(n, w.dtype),
            has_bias, None, None, None, None, dt, raw, None, module, options, name,
        )  # fmt: skip

    _expect(isinstance(node, nir.NIRGraph), where, f"a {kind} block must be a NIRGraph, got {type(node).__name__}")
    g: nir.NIRGraph = node
    inp = _node(g, "input", (nir.Input,), where)
    out = _node(g, "output", (nir.Output,), where)
    _expect(list(np.asarray(inp.input_type["input"])) == [m], where, f"input node must have shape ({m},)")
    _expect(list(np.asarray(out.output_type["output"])) == [n], where, f"output node must have shape ({n},)")
    cols = m + (n if recurrent else 0)
    dend_decay = None
    padded_mask = None

    decay = dict(meta.get("decay", {}))
    soma_decay = _decay(decay, "soma", raw, "tau_raw" if kind == "leaky_readout" else "soma_tau_raw", (n,), where)
    if kind == "leaky_readout":
        w, bias = _weights_of(_node(g, "w", bias_type, where), (n, m), where)
        li = _node(g, "li", (nir.LI,), where)
        _check_neutral(li, where + " node 'li'", ("r",), 1.0)
        _check_neutral(li, where + " node 'li'", ("v_leak",), 0.0)
        _check_tau(li.tau, soma_decay, dt, where + " node 'li'")
        _check_edges(g, {("input", "w"), ("w", "li"), ("li", "output")}, where)
        weight, mask = w, np.ones(w.shape, bool)
    else:
        if kind == "dhlif":
            dend_decay = _decay(decay, "dend", raw, "dend_tau_raw", (n, d), where)
            width = cols + (-cols) % d
            padded_mask = _arr(meta, "mask", where, (n * d, width)).astype(bool)
            mask = padded_mask[:, :cols]
        else:
            mask = np.ones((n, cols), bool)
        weight, bias, expected = _parse_spiking(g, kind, m, n, d, recurrent, bias_type, where)
        _check_edges(g, expected, where)
        soma = g.nodes["soma"]
        _check_neutral(soma, where + " node 'soma'", ("r",), 1.0)
        _check_neutral(soma, where + " node 'soma'", ("v_leak", "v_reset"), 0.0)
        _expect(
            bool(np.array_equal(np.asarray(soma.v_threshold), v_th.astype(np.float64))), where, "soma threshold differs"
        )
        if isinstance(soma, nir.CubaLIF):
            _check_neutral(soma, where + " node 'soma'", ("w_in",), 1.0)
            _check_tau(soma.tau_mem, soma_decay, dt, where + " node 'soma'")
            _check_tau(soma.tau_syn, dend_decay[:, 0], dt, where + " node 'soma'")
        else:
            _check_tau(soma.tau, soma_decay, dt, where + " node 'soma'")
        if kind == "dhlif" and d > 1:
            for k in range(d):
                dend = _node(g, f"dend_{k}", (nir.LI,), where)
                _check_neutral(dend, f"{where} node 'dend_{k}'", ("r",), 1.0)
                _check_neutral(dend, f"{where} node 'dend_{k}'", ("v_leak",), 0.0)
                _check_tau(dend.tau, dend_decay[:, k], dt, f"{where} node 'dend_{k}'")
        _expect(not np.any(weight[~mask]), where, "weights outside the connection mask are not zero")
    if bias is None:
        bias = np.zeros(weight.shape[0], weight.dtype)
    return Block(
        kind, m, n, d, recurrent, weight, mask, bias, has_bias, dend_decay, soma_decay, v_th, reset, dt, raw,
        padded_mask, module, options, name,
    )  # fmt: skip


def _parse_spiking(g, kind, m, n, d, recurrent, bias_type, where):
    """Weights ``(N*D, M[+N])``, bias and the expected edge set of a vanilla or DH-LIF block."""
    cols = m + (n if recurrent else 0)
    expected = {("soma", "output")}
    if kind == "vanilla_lif" or d == 1:
        soma_type = (nir.LIF,) if kind == "vanilla_lif" else (nir.CubaLIF,)
        _node(g, "soma", soma_type, where)
        wname, rname = ("w", "rec") if kind == "vanilla_lif" else ("w_0", "rec_0")
        w, bias = _weights_of(_node(g, wname, bias_type, where), (n, m), where)
        weight = np.zeros((n, cols), w.dtype)
        weight[:, :m] = w
        expected |= {("input", wname), (wname, "soma")}
        if recurrent:
            weight[:, m:], _ = _weights_of(_node(g, rname, (nir.Linear,), where), (n, n), where)
            expected |= {("soma", rname), (rname, "soma")}
        return weight, bias, expected
    _node(g, "soma", (nir.LIF,), where)
    weight, bias = None, None
    for k in range(d):
        w, b = _weights_of(_node(g, f"w_{k}", bias_type, where), (n, m), where)
        if weight is None:
            weight = np.zeros((n * d, cols), w.dtype)
            bias = None if b is None else np.zeros(n * d, b.dtype)
        weight[k::d, :m] = w
        if b is not None:
            bias[k::d] = b
        expected |= {("input", f"w_{k}"), (f"w_{k}", f"dend_{k}"), (f"dend_{k}", "soma")}
        if recurrent:
            weight[k::d, m:], _ = _weights_of(_node(g, f"rec_{k}", (nir.Linear,), where), (n, n), where)
            expected |= {("soma", f"rec_{k}"), (f"rec_{k}", f"dend_{k}")}
    return weight, bias, expected


def read_blocks(graph: nir.NIRGraph) -> list[Block]:
    """The blocks of a norse-dh graph in order, each checked by :func:`recognise_block`.

    The graph must be a chain ``input -> block -> ... -> block -> output`` of tagged blocks whose widths fit.
    Raises :class:`PatternError` otherwise (use ``is_norse_dh_graph`` first to decide between this and a generic
    standard-node reader).
    """
    inputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    outputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Output)]
    _expect(len(inputs) == 1 and len(outputs) == 1, "graph", "a norse-dh graph has exactly one Input and one Output")
    succ: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        succ.setdefault(src, []).append(dst)
    order, cur, seen = [], inputs[0], set()
    while True:
        nxt = succ.get(cur, [])
        _expect(len(nxt) == 1, "graph", f"node {cur!r} must have exactly one successor in a chain, has {nxt}")
        cur = nxt[0]
        if cur == outputs[0]:
            break
        _expect(cur not in seen, "graph", f"cycle through {cur!r} at the top level")
        seen.add(cur)
        order.append(cur)
    _expect(len(order) + 2 == len(graph.nodes), "graph", "nodes outside the input -> output chain")
    _expect(len(graph.edges) == len(order) + 1, "graph", "extra edges outside the input -> output chain")
    blocks = [recognise_block(graph.nodes[name], name) for name in order]
    width = int(np.asarray(graph.nodes[inputs[0]].input_type["input"]).prod())
    for b in blocks:
        _expect(b.input_size == width, f"block {b.name!r}", f"expects {b.input_size} inputs, previous gives {width}")
        width = b.hidden_size
    out_w = int(np.asarray(graph.nodes[outputs[0]].output_type["output"]).prod())
    _expect(out_w == width, "graph", f"output node has width {out_w}, last block gives {width}")
    return blocks


def is_norse_dh_graph(graph: nir.NIRNode) -> bool:
    """Whether every non-Input/Output top-level node of ``graph`` is a norse-dh block."""
    if not isinstance(graph, nir.NIRGraph):
        return False
    inner = [v for v in graph.nodes.values() if not isinstance(v, nir.Input | nir.Output)]
    return bool(inner) and all(is_block(v) for v in inner)


__all__ = [
    "BLOCK_KEY",
    "DISCRETIZATION",
    "FORMAT_VERSION",
    "KINDS",
    "RESET_MODES",
    "Block",
    "PatternError",
    "block_metadata",
    "build_block",
    "build_graph",
    "factor_to_tau",
    "is_block",
    "is_norse_dh_graph",
    "read_blocks",
    "recognise_block",
    "tau_to_factor",
]

"""Import NIR graphs into runnable PyTorch modules.

``import_graph(graph_or_path, dt=None)`` has two paths:

1. **norse-dh graphs** (a chain ``input -> layer -> ... -> output`` whose layers are all tagged norse-dh blocks or
   Norse nodes, as written by :func:`nir_bridge.export_model`): every block is recognised and checked by
   :func:`nir_bridge.patterns.recognise_block` and rebuilt as the same norse-dh / Norse class with the exact stored
   parameters (raw timing parameters, masks, weights, thresholds, reset mode, surrogate). The result is a
   :class:`norse_dh.modules.SequentialSNN` (or the single layer when a single layer was exported) whose outputs equal
   the original model's bit for bit.
2. **any other graph of standard nodes** (``Input``, ``Output``, ``Linear``, ``Affine``, ``Scale``, ``Threshold``,
   ``Flatten``, ``LI``, ``LIF``, ``CubaLI``, ``CubaLIF``, ``IF`` and nested ``NIRGraph``\\ s): a
   :class:`StandardGraph` module that simulates the NIR equations with forward Euler of step ``dt`` (argument, else
   the graph's ``metadata["dt"]``), per step and for each batch row:

   - ``Linear`` ``y = W x``; ``Affine`` ``y = W x + b``; ``Scale`` ``y = s x``; ``Threshold`` ``y = H(x - theta)``
     (strict ``>``); ``Flatten`` reshapes to the node's output type (dims counted without the batch dim);
   - ``LI`` ``v <- v + dt/tau (v_leak - v + r I)``, output ``v``;
   - ``LIF`` the LI update, then ``z = H(v - v_th)``, ``v <- v_reset`` where ``z``; output ``z``;
   - ``IF`` ``v <- v + dt r I``, then spike and reset as LIF;
   - ``CubaLI`` / ``CubaLIF`` ``I <- I + dt/tau_syn (-I + w_in S)`` first, then the LI / LIF update of ``v`` driven by
     the new ``I``;
   - fan-in is summed; an edge ``u -> v`` where ``v`` reaches ``u`` and ``v`` is not farther than ``u`` from the
     Input (shortest path) closes a cycle and carries ``u``'s previous-step output (zeros at t = 0), so
     recurrent loops read ``z[t-1]``, as in nirtorch and Lava; all states start at zero.

   Unsupported node types raise one :class:`UnsupportedNodeError` listing every offending node.
   A norse-dh graph run through this path computes the block's standard meaning: hard reset (exact for
   ``reset="zero"``; an approximation for "subtract" / "none"), factors ``1 - dt/tau`` up to rounding.
"""

from __future__ import annotations

import os
from collections import deque

import nir
import numpy as np
import torch
from torch import Tensor, nn

from nir_bridge.errors import NIRBridgeError, UnsupportedNodeError
from nir_bridge.io import check_shapes, read_nir
from nir_bridge.metadata import NORSE_KEY, scalar
from nir_bridge.patterns import Block, PatternError, is_block, recognise_block
from norse_dh.functional.surrogate import MultiGaussianParameters
from norse_dh.modules import (
    DHLIF,
    DHLIFCell,
    DHLIFRecurrent,
    DHLIFRecurrentCell,
    LeakyReadout,
    LeakyReadoutCell,
    SequentialSNN,
    VanillaLIF,
    VanillaLIFCell,
    VanillaLIFRecurrent,
    VanillaLIFRecurrentCell,
)

_CLASSES = {
    c.__name__: c
    for c in (
        DHLIF, DHLIFCell, DHLIFRecurrent, DHLIFRecurrentCell, VanillaLIF, VanillaLIFCell, VanillaLIFRecurrent,
        VanillaLIFRecurrentCell, LeakyReadout, LeakyReadoutCell,
    )
}  # fmt: skip
_DEFAULT_CLASS = {"dhlif": (DHLIF, DHLIFRecurrent), "vanilla_lif": (VanillaLIF, VanillaLIFRecurrent)}
STANDARD_NODES = (
    nir.Input, nir.Output, nir.Linear, nir.Affine, nir.Scale, nir.Threshold, nir.Flatten, nir.LI, nir.LIF,
    nir.CubaLI, nir.CubaLIF, nir.IF, nir.NIRGraph,
)  # fmt: skip


# --------------------------------------------------------------------------------------- norse-dh blocks -> modules


def _t(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.array(a, copy=True))


def _opt(block: Block, key: str, default):
    value = scalar(block.options, key, default)
    return value.decode() if isinstance(value, bytes) else value


def _soma_kwargs(block: Block) -> dict:
    mg = block.options.get("mg")
    return dict(
        v_th=_t(block.v_th),
        reset=block.reset,
        method=str(_opt(block, "method", "mg")),
        alpha=float(_opt(block, "alpha", 100.0)),
        mg=MultiGaussianParameters(*(float(v) for v in np.asarray(mg))) if mg is not None else None,
        init_state=str(_opt(block, "init_state", "zero")),
        dt=block.dt,
    )


def _set(param: Tensor, value: np.ndarray) -> None:
    """Replace a parameter's data by an exact copy of ``value`` (dtype included)."""
    param.data = _t(value)


def _raw(block: Block, key: str) -> np.ndarray:
    if key not in block.raw:
        raise PatternError(f"block {block.name!r}: metadata raw[{key!r}] is needed to rebuild the layer exactly")
    return block.raw[key]


def module_from_block(block: Block) -> nn.Module:
    """Rebuild the norse-dh layer (same class, same parameters) described by a recognised :class:`Block`."""
    if block.kind == "linear":
        layer = nn.Linear(block.input_size, block.hidden_size, bias=block.has_bias)
        _set(layer.weight, block.weight)
        if block.has_bias:
            _set(layer.bias, block.bias)
        return layer
    if block.module and block.module not in _CLASSES:
        raise PatternError(f"block {block.name!r}: unknown norse-dh module {block.module!r}")
    with torch.random.fork_rng(devices=[]):  # constructors draw inits we overwrite: keep the caller's RNG untouched
        if block.kind == "leaky_readout":
            cls = _CLASSES.get(block.module, LeakyReadout)
            layer = cls(
                block.input_size, block.hidden_size, tau_init=_t(_raw(block, "tau_raw")), bias=block.has_bias,
                train_tau=bool(_opt(block, "train_tau", 1)), init_state=str(_opt(block, "init_state", "zero")),
                dt=block.dt,
            )  # fmt: skip
            _set(layer.linear.weight, block.weight)
            if block.has_bias:
                _set(layer.linear.bias, block.bias)
            _set(layer.tau_raw, _raw(block, "tau_raw"))
            layer.tau_raw.requires_grad_(bool(_opt(block, "train_tau", 1)))
            return layer
        cls = _CLASSES.get(block.module) or _DEFAULT_CLASS[block.kind][int(block.recurrent)]
        soma_raw = _raw(block, "soma_tau_raw")
        if block.kind == "vanilla_lif":
            layer = cls(block.input_size, block.hidden_size, bias=block.has_bias, soma_tau_init=_t(soma_raw),
                        **_soma_kwargs(block))  # fmt: skip
            _set(layer.linear.weight, block.weight)
            if block.has_bias:
                _set(layer.linear.bias, block.bias)
        else:
            dend_raw = _raw(block, "dend_tau_raw")
            layer = cls(
                block.input_size, block.hidden_size, block.branches, mask=torch.from_numpy(block.padded_mask.copy()),
                bias=block.has_bias, group_size=int(_opt(block, "group_size", 32)), dend_tau_init=_t(dend_raw),
                soma_tau_init=_t(soma_raw), **_soma_kwargs(block),
            )  # fmt: skip
            dend = layer.dendrites
            weight = np.zeros(block.padded_mask.shape, block.weight.dtype)
            weight[:, : block.weight.shape[1]] = block.weight
            if "pad_weight" in block.options:
                weight[:, block.weight.shape[1] :] = np.asarray(block.options["pad_weight"])
            _set(dend.weight, weight)
            if block.has_bias:
                _set(dend.bias, block.bias)
            dend.mask_mode = str(_opt(block, "mask_mode", "custom"))
            _set(layer.dend_tau_raw, dend_raw)
            layer.dend_tau_raw.requires_grad_(bool(_opt(block, "train_dend_tau", 1)))
        _set(layer.soma_tau_raw, soma_raw)
        layer.soma_tau_raw.requires_grad_(bool(_opt(block, "train_soma_tau", 1)))
        layer.v_th = _t(block.v_th)
        return layer


def module_from_norse_node(node: nir.NIRNode, name: str = "") -> nn.Module:
    """Rebuild a Norse module (LIF, LIFCell, LI, LICell, LIFBoxCell, LIBoxCell) from a node tagged ``norse_module``."""
    import norse.torch as nt
    from norse.torch.functional import reset as norse_reset
    from norse.torch.functional.leaky_integrator_box import LIBoxParameters
    from norse.torch.functional.lif_box import LIFBoxParameters

    meta = node.metadata
    cls_name = str(meta[NORSE_KEY])
    classes = {
        "LIF": (nt.LIF, nt.LIFParameters, nir.CubaLIF), "LIFCell": (nt.LIFCell, nt.LIFParameters, nir.CubaLIF),
        "LI": (nt.LI, nt.LIParameters, nir.CubaLI), "LICell": (nt.LICell, nt.LIParameters, nir.CubaLI),
        "LIFBoxCell": (nt.LIFBoxCell, LIFBoxParameters, nir.LIF), "LIBoxCell": (nt.LIBoxCell, LIBoxParameters, nir.LI),
    }  # fmt: skip
    where = f"node {name!r}"
    if cls_name not in classes:
        raise PatternError(f"{where}: unknown Norse module {cls_name!r}, expected one of {sorted(classes)}")
    cls, p_cls, node_type = classes[cls_name]
    if not isinstance(node, node_type):
        raise PatternError(f"{where}: a Norse {cls_name} is encoded as {node_type.__name__}, got {type(node).__name__}")
    dtype = getattr(torch, str(scalar(meta, "dtype", "float32")))
    params, scalars = dict(meta.get("params", {})), dict(meta.get("scalar", {}))
    kwargs = {}
    for field in p_cls._fields:
        if field == "method":
            kwargs[field] = str(scalar(meta, "method", "super"))
        elif field == "reset_method":
            kwargs[field] = getattr(norse_reset, str(scalar(meta, "reset", "reset_value")))
        elif field == "alpha":
            kwargs[field] = torch.tensor(float(np.asarray(params["alpha"]).reshape(-1)[0]))
        else:
            if field not in params:
                raise PatternError(f"{where}: metadata params[{field!r}] is missing")
            value = torch.from_numpy(np.asarray(params[field])).to(dtype)
            kwargs[field] = value[0].clone() if int(scalar(scalars, field, 0)) else value
    return cls(p=p_cls(**kwargs), dt=float(scalar(meta, "module_dt")))


def _meta(node: nir.NIRNode) -> dict:
    """A node's metadata dict (``NIRGraph(...)`` without metadata stores the ``dict`` class itself)."""
    meta = getattr(node, "metadata", None)
    return meta if isinstance(meta, dict) else {}


def _chain(graph: nir.NIRGraph) -> list[str] | None:
    """The names of the inner nodes if ``graph`` is a chain ``input -> ... -> output`` of tagged layers, else None."""
    inputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    outputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Output)]
    inner = [k for k in graph.nodes if k not in inputs + outputs]
    if len(inputs) != 1 or len(outputs) != 1 or not inner:
        return None
    if not all(is_block(graph.nodes[k]) or NORSE_KEY in _meta(graph.nodes[k]) for k in inner):
        return None
    succ: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        succ.setdefault(src, []).append(dst)
    order, cur = [], inputs[0]
    while len(order) <= len(inner):
        nxt = succ.get(cur, [])
        if len(nxt) != 1:
            return None
        cur = nxt[0]
        if cur == outputs[0]:
            break
        order.append(cur)
    if sorted(order) != sorted(inner) or len(graph.edges) != len(order) + 1:
        return None
    return order


def _rebuild(graph: nir.NIRGraph, order: list[str]) -> nn.Module:
    layers = []
    for name in order:
        node = graph.nodes[name]
        if is_block(node):
            layers.append(module_from_block(recognise_block(node, name)))
        else:
            layers.append(module_from_norse_node(node, name))
    if len(layers) == 1 and str(scalar(_meta(graph), "container", "")) == "single":
        return layers[0]
    return SequentialSNN(*layers)


# ---------------------------------------------------------------------------------------- generic standard graphs


def _flatten_graph(graph: nir.NIRGraph, prefix: str = "") -> tuple[dict, list, list[str], list[str]]:
    """Inline nested graphs: ``(nodes, edges, input_names, output_names)`` with dotted names."""
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    ports: dict[str, tuple[list[str], list[str]]] = {}
    for name, node in graph.nodes.items():
        full = prefix + name
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges, sub_in, sub_out = _flatten_graph(node, full + ".")
            nodes.update(sub_nodes)
            edges += sub_edges
            ports[name] = (sub_in, sub_out)
        else:
            nodes[full] = node

    def resolve(end: str, outgoing: bool) -> list[str]:
        head, _, rest = end.partition(".")
        if head in ports:
            if rest:
                return [prefix + end]
            return ports[head][1] if outgoing else ports[head][0]
        return [prefix + end]

    for src, dst in graph.edges:
        edges += [(s, d) for s in resolve(src, True) for d in resolve(dst, False)]
    ins = [prefix + k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    outs = [prefix + k for k, v in graph.nodes.items() if isinstance(v, nir.Output)]
    return nodes, edges, ins, outs


def _param(node: nir.NIRNode, name: str, default=None) -> Tensor:
    value = getattr(node, name, default)
    return torch.as_tensor(np.asarray(value, dtype=np.float64))


def unsupported_nodes(graph: nir.NIRGraph) -> None:
    """Raise one :class:`UnsupportedNodeError` listing every node (nested ones too) of a type we cannot run."""
    nodes = _flatten_graph(graph)[0]
    bad = sorted(f"{n!r} ({type(v).__name__})" for n, v in nodes.items() if not isinstance(v, STANDARD_NODES))
    if bad:
        raise UnsupportedNodeError(
            f"graph has {len(bad)} node(s) of unsupported type: {', '.join(bad)}; supported: "
            + ", ".join(t.__name__ for t in STANDARD_NODES)
        )


class _Node(nn.Module):
    """One standard node: ``step(x, state) -> (out, state)``; parameters are float buffers."""

    def __init__(self, node: nir.NIRNode, dt: float | None, name: str) -> None:
        super().__init__()
        self.kind = type(node).__name__
        self.dt = dt
        leaky = isinstance(node, nir.LI | nir.LIF | nir.CubaLI | nir.CubaLIF | nir.IF)
        if leaky and dt is None:
            raise NIRBridgeError(
                f"node {name!r} ({self.kind}) needs a time step: pass dt= to import_graph or set graph.metadata['dt']"
            )
        names = {
            "Linear": ("weight",), "Affine": ("weight", "bias"), "Scale": ("scale",), "Threshold": ("threshold",),
            "LI": ("tau", "r", "v_leak"), "LIF": ("tau", "r", "v_leak", "v_threshold", "v_reset"),
            "IF": ("r", "v_threshold", "v_reset"), "CubaLI": ("tau_syn", "tau_mem", "r", "v_leak", "w_in"),
            "CubaLIF": ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"),
        }.get(self.kind, ())  # fmt: skip
        for p in names:
            self.register_buffer(p, _param(node, p).to(torch.get_default_dtype()))
        if isinstance(node, nir.Linear | nir.Affine) and np.asarray(node.weight).ndim != 2:
            raise UnsupportedNodeError(f"node {name!r}: only 2-D {self.kind} weights are supported")
        self.out_shape = None
        if isinstance(node, nir.Flatten):
            self.out_shape = tuple(int(s) for s in np.asarray(node.output_type["output"]))

    def step(self, x: Tensor, state: tuple) -> tuple[Tensor, tuple]:
        k = self.kind
        if k in ("Input", "Output"):
            return x, state
        if k == "Linear":
            return x @ self.weight.t(), state
        if k == "Affine":
            return x @ self.weight.t() + self.bias, state
        if k == "Scale":
            return x * self.scale, state
        if k == "Threshold":
            return (x > self.threshold).to(x.dtype), state
        if k == "Flatten":
            return x.reshape(x.shape[0], *self.out_shape), state
        dt = self.dt
        if k in ("CubaLI", "CubaLIF"):
            i = state[1] if state else torch.zeros_like(x)
            i = i + dt / self.tau_syn * (-i + self.w_in * x)
            x = i
        v = state[0] if state else torch.zeros_like(x)
        if k == "IF":
            v = v + dt * self.r * x
        else:
            tau = self.tau_mem if k.startswith("Cuba") else self.tau
            v = v + dt / tau * (self.v_leak - v + self.r * x)
        if k in ("LI", "CubaLI"):
            return v, (v, x) if k == "CubaLI" else (v,)
        z = (v > self.v_threshold).to(v.dtype)
        v = torch.where(z > 0, self.v_reset.to(v.dtype).expand_as(v), v)
        return z, (v, x) if k == "CubaLIF" else (v,)


class StandardGraph(nn.Module):
    """Forward-Euler simulator of a graph of standard NIR nodes (semantics in the module docstring).

    ``forward(x, state=None)`` takes a time-first tensor ``(T, B, *input_shape)`` and returns
    ``(out (T, B, *output_shape), state)`` where ``state`` is a dict (node states and previous outputs).
    ``dt`` defaults to ``graph.metadata["dt"]``; parameters are buffers in the default dtype.
    """

    def __init__(self, graph: nir.NIRGraph, dt: float | None = None) -> None:
        super().__init__()
        unsupported_nodes(graph)
        if dt is None and "dt" in _meta(graph):
            dt = float(scalar(_meta(graph), "dt"))
        nodes, edges, ins, outs = _flatten_graph(graph)
        if len(ins) != 1 or len(outs) != 1:
            raise NIRBridgeError(
                f"a runnable graph needs exactly one Input and one Output, got inputs {ins}, outputs {outs}"
            )
        self.input_name, self.output_name = ins[0], outs[0]
        self.names = list(nodes)
        self.steps = nn.ModuleList(_Node(nodes[n], dt, n) for n in self.names)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.order, self.inputs = self._schedule(nodes, edges)

    def _schedule(self, nodes: dict, edges: list) -> tuple[list[int], list[list[tuple[int, bool]]]]:
        """Execution order and, per node, its sources with a flag "delayed" (edge closing a cycle)."""
        succ = {n: [] for n in nodes}
        for s, d in edges:
            if s not in nodes or d not in nodes:
                raise NIRBridgeError(f"edge ({s!r}, {d!r}) references a node that does not exist")
            succ[s].append(d)
        dist = {self.input_name: 0}
        queue = deque([self.input_name])
        while queue:
            u = queue.popleft()
            for v in succ[u]:
                if v not in dist:
                    dist[v] = dist[u] + 1
                    queue.append(v)
        unreached = [n for n in nodes if n not in dist]
        if unreached:
            raise NIRBridgeError(f"nodes not reachable from the Input {self.input_name!r}: {unreached}")

        def reaches(a: str, b: str) -> bool:
            seen, stack = {a}, [a]
            while stack:
                u = stack.pop()
                if u == b:
                    return True
                for v in succ[u]:
                    if v not in seen:
                        seen.add(v)
                        stack.append(v)
            return False

        delayed = {(s, d) for s, d in edges if dist[d] <= dist[s] and reaches(d, s)}
        preds = {n: [] for n in nodes}
        indeg = {n: 0 for n in nodes}
        for s, d in edges:
            preds[d].append((self.index[s], (s, d) in delayed))
            if (s, d) not in delayed:
                indeg[d] += 1
        ready = deque(n for n in nodes if indeg[n] == 0)
        order = []
        while ready:
            u = ready.popleft()
            order.append(self.index[u])
            for v in succ[u]:
                if (u, v) not in delayed:
                    indeg[v] -= 1
                    if indeg[v] == 0:
                        ready.append(v)
        for n in nodes:
            if n != self.input_name and not preds[n]:
                raise NIRBridgeError(f"node {n!r} has no incoming edge")
        return order, [preds[n] for n in self.names]

    def forward(self, x: Tensor, state: dict | None = None) -> tuple[Tensor, dict]:
        if x.dim() < 2:
            raise ValueError(
                f"StandardGraph expects a time-first tensor (time, batch, ...), got shape {tuple(x.shape)}"
            )
        state = dict(state) if state is not None else {}
        node_states: list = list(state.get("nodes", [()] * len(self.names)))
        prev: list = list(state.get("prev_output", [None] * len(self.names)))
        outs = []
        for x_t in x.unbind(0):
            cur: list = [None] * len(self.names)
            for i in self.order:
                if i == self.index[self.input_name]:
                    inp = x_t
                else:
                    inp = None
                    for j, is_delayed in self.inputs[i]:
                        val = prev[j] if is_delayed else cur[j]
                        if val is None:  # previous output at t = 0: zeros of this node's input width
                            continue
                        inp = val if inp is None else inp + val
                    if inp is None:
                        raise NIRBridgeError(
                            f"node {self.names[i]!r} has only delayed inputs: it gets nothing at t = 0"
                        )
                cur[i], node_states[i] = self.steps[i].step(inp, node_states[i])
            prev = cur
            outs.append(cur[self.index[self.output_name]])
        return torch.stack(outs), {"nodes": node_states, "prev_output": prev}


# ---------------------------------------------------------------------------------------------------- entry point


def import_graph(graph_or_path: nir.NIRGraph | str | os.PathLike, dt: float | None = None) -> nn.Module:
    """A runnable module from a ``nir.NIRGraph`` or a NIR file path (see the module docstring for the two paths).

    Parameters:
        graph_or_path: the graph, or a path read with :func:`nir_bridge.read_nir` (shape checked).
        dt: Euler step for generic standard graphs (default: ``graph.metadata["dt"]``); ignored for norse-dh graphs,
            which carry their own.

    Raises:
        UnsupportedNodeError: the graph contains node types that cannot be run (all listed in one message).
        NIRFileError / FileNotFoundError: unreadable file or shapes that do not fit together.
        PatternError: a tagged norse-dh block contradicts its own metadata.
    """
    if isinstance(graph_or_path, str | os.PathLike):
        graph = read_nir(graph_or_path)
        unsupported_nodes(graph)
    elif isinstance(graph_or_path, nir.NIRGraph):
        graph = graph_or_path
        unsupported_nodes(graph)
        check_shapes(graph)
    else:
        raise TypeError(f"import_graph expects a nir.NIRGraph or a path, got {type(graph_or_path).__name__}")
    unsupported_nodes(graph)
    order = _chain(graph)
    if order is not None:
        return _rebuild(graph, order)
    return StandardGraph(graph, dt)

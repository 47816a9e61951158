"""The standard nodes alone (metadata ignored) say what the model computes; standard graphs from other tools run.

``simulate`` below is a small NumPy forward-Euler simulator of NIR 1.0.8 node semantics, written independently of
``nir_bridge.load``: nested graphs are inlined, fan-in is summed, and an edge leaving a spiking node (LIF, CubaLIF,
IF, Threshold) that lies on a cycle carries the previous step's output.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nir
import norse.torch as nt
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import nir_bridge as nb
from norse_dh.modules import DHLIF, DHLIFRecurrent, LeakyReadout, SequentialSNN, VanillaLIF, VanillaLIFRecurrent

SPIKING = (nir.LIF, nir.CubaLIF, nir.IF, nir.Threshold)


def _inline(graph: nir.NIRGraph, prefix: str = ""):
    nodes, edges, entry, exit_ = {}, [], {}, {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = _inline(node, f"{prefix}{name}/")
            nodes.update(sub_nodes)
            edges += sub_edges
            entry[name] = [f"{prefix}{name}/{k}" for k, v in node.nodes.items() if isinstance(v, nir.Input)]
            exit_[name] = [f"{prefix}{name}/{k}" for k, v in node.nodes.items() if isinstance(v, nir.Output)]
        else:
            nodes[prefix + name] = node
    for s, d in graph.edges:
        for s2 in exit_.get(s, [prefix + s]):
            for d2 in entry.get(d, [prefix + d]):
                edges.append((s2, d2))
    return nodes, edges


def _on_cycle(edge, edges):
    s, d = edge
    seen, todo = set(), [d]
    while todo:
        u = todo.pop()
        if u == s:
            return True
        seen.add(u)
        todo += [b for a, b in edges if a == u and b not in seen]
    return False


def simulate(graph: nir.NIRGraph, x: np.ndarray, dt: float) -> np.ndarray:
    """Run ``graph`` on ``x`` ``(T, B, M)`` with forward Euler; returns the Output node's values ``(T, B, K)``."""
    nodes, edges = _inline(graph)
    top_in = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)][0]
    top_out = [k for k, v in graph.nodes.items() if isinstance(v, nir.Output)][0]
    delayed = {e for e in edges if isinstance(nodes[e[0]], SPIKING) and _on_cycle(e, edges)}
    order, done = [], set()
    while len(order) < len(nodes):  # topological order over the undelayed edges
        for n in nodes:
            if n not in done and all(s in done for s, d in edges if d == n and (s, d) not in delayed):
                order.append(n)
                done.add(n)
    state = {n: {} for n in nodes}
    prev = {n: 0.0 for n in nodes}
    result = []
    for x_t in x:
        out = {}
        for n in order:
            node = nodes[n]
            i = x_t if n == top_in else sum((prev if (s, d) in delayed else out)[s] for s, d in edges if d == n)
            st_ = state[n]
            if isinstance(node, nir.Input | nir.Output):
                y = i
            elif isinstance(node, nir.Affine):
                y = i @ node.weight.T + node.bias
            elif isinstance(node, nir.Linear):  # (a delayed input is the scalar 0.0 at t = 0)
                y = np.broadcast_to(i, (len(x_t), node.weight.shape[1])) @ node.weight.T
            elif isinstance(node, nir.LI):
                st_["v"] = st_.get("v", 0.0) + dt / node.tau * (node.v_leak - st_.get("v", 0.0) + node.r * i)
                y = st_["v"]
            elif isinstance(node, nir.LIF | nir.CubaLIF):
                if isinstance(node, nir.CubaLIF):
                    syn = st_.get("i", 0.0)
                    st_["i"] = syn + dt / node.tau_syn * (-syn + node.w_in * i)
                    i, tau = st_["i"], node.tau_mem
                else:
                    tau = node.tau
                v = st_.get("v", 0.0)
                v = v + dt / tau * (node.v_leak - v + node.r * i)
                y = (v > node.v_threshold).astype(np.float64)
                st_["v"] = np.where(y > 0, node.v_reset, v)
            else:
                raise AssertionError(f"simulator has no rule for {type(node).__name__}")
            out[n] = y
        prev = out
        result.append(out[top_out])
    return np.stack(result)


def _graph_only(model: torch.nn.Module, dt: float) -> nir.NIRGraph:
    """Export, write, read back: the simulator gets exactly what a consumer would read."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.nir"
        nb.write_nir(nb.export_model(model, dt), path)
        return nb.read_nir(path)


@settings(max_examples=6, deadline=None)
@given(st.integers(0, 1000), st.integers(1, 4), st.sampled_from([1e-3, 2.5e-4]))
def test_standard_nodes_reproduce_the_model_for_hard_reset(seed, branches, dt):
    """reset="zero" is NIR's own LIF/CubaLIF reset: Euler on the nodes equals the model (float64, no metadata)."""
    torch.manual_seed(seed)
    kw = dict(reset="zero", v_th=0.15, soma_tau_init="small")
    model = SequentialSNN(
        DHLIF(8, 6, branches, **kw), DHLIFRecurrent(6, 5, branches, **kw), VanillaLIFRecurrent(5, 4, **kw),
        VanillaLIF(4, 4, **kw), torch.nn.Linear(4, 4), LeakyReadout(4, 3),
    ).double()  # fmt: skip
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                p.abs_().mul_(3.0)
    graph = _graph_only(model, dt)
    x = (np.random.default_rng(seed).random((25, 2, 8)) < 0.5).astype(np.float64)
    with torch.no_grad():
        layers = model.forward_all(torch.from_numpy(x))
    assert all(z.sum() > 0 for z in layers[:4])
    np.testing.assert_allclose(simulate(graph, x, dt), layers[-1].numpy(), rtol=1e-9, atol=1e-12)


def test_subtract_reset_differs_only_through_the_reset():
    """With "subtract" the nodes alone give NIR's hard reset: equal to the same model with reset="zero"."""
    torch.manual_seed(4)
    model = SequentialSNN(DHLIF(6, 5, 3, reset="subtract", v_th=0.1), LeakyReadout(5, 2)).double()
    graph = _graph_only(model, 1e-3)
    assert graph.nodes["layer0"].metadata["reset"] == "subtract"
    model[0].reset = "zero"
    x = (np.random.default_rng(0).random((20, 2, 6)) < 0.5).astype(np.float64)
    with torch.no_grad():
        expected = model(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(simulate(graph, x, 1e-3), expected, rtol=1e-9, atol=1e-12)


def test_norse_dh_standard_graph_importer_agrees_with_the_numpy_simulator():
    """``StandardGraph`` (nir_bridge's generic path) and the independent simulator agree on a DH-SRNN graph."""
    torch.manual_seed(5)
    model = SequentialSNN(DHLIFRecurrent(6, 5, 3, reset="zero", v_th=0.1), LeakyReadout(5, 2)).double()
    graph = _graph_only(model, 1e-3)
    x = (np.random.default_rng(1).random((20, 2, 6)) < 0.5).astype(np.float64)
    torch.set_default_dtype(torch.float64)
    try:
        generic = nb.StandardGraph(graph)
    finally:
        torch.set_default_dtype(torch.float32)
    ours = generic(torch.from_numpy(x))[0].detach().numpy()
    np.testing.assert_allclose(ours, simulate(graph, x, 1e-3), rtol=1e-9, atol=1e-12)


def _foreign_graph(dt: float) -> nir.NIRGraph:
    """A graph as snnTorch would write it: Affine -> CubaLIF (r = tau/dt, w_in = tau_syn/dt) -> Affine -> LIF,
    with non-zero v_leak and v_reset, no norse-dh metadata."""
    rng = np.random.default_rng(7)
    tau_syn, tau_mem = np.full(4, 5e-3), np.linspace(8e-3, 20e-3, 4)
    tau2 = np.full(3, 10e-3)
    nodes = {
        "input": nir.Input(input_type=np.array([5])),
        "fc1": nir.Affine(weight=rng.normal(0, 1, (4, 5)), bias=rng.normal(0, 0.1, 4)),
        "cuba": nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, v_leak=np.full(4, 0.05),
                            v_threshold=np.full(4, 0.5), v_reset=np.full(4, -0.1), w_in=tau_syn / dt),
        "fc2": nir.Affine(weight=np.abs(rng.normal(0, 1, (3, 4))), bias=np.zeros(3)),
        "lif": nir.LIF(tau=tau2, r=tau2 / dt, v_leak=np.zeros(3), v_threshold=np.full(3, 0.3), v_reset=np.zeros(3)),
        "output": nir.Output(output_type=np.array([3])),
    }  # fmt: skip
    edges = [("input", "fc1"), ("fc1", "cuba"), ("cuba", "fc2"), ("fc2", "lif"), ("lif", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"source": "another tool"})


def test_standard_lif_and_cubalif_graph_from_another_tool_runs_in_norse_dh():
    dt = 1e-3
    graph = _foreign_graph(dt)
    with tempfile.TemporaryDirectory() as tmp:
        nir.write(str(Path(tmp) / "g.nir"), graph)
        module = nb.import_graph(Path(tmp) / "g.nir", dt=dt)
    x = (np.random.default_rng(2).random((40, 3, 5)) < 0.6).astype(np.float32)
    out = module(torch.from_numpy(x))[0].detach().numpy()
    expected = simulate(graph, x.astype(np.float64), dt)
    assert expected.sum() > 0
    # float32 module vs float64 simulator: identical spikes on this input
    np.testing.assert_array_equal(out, expected)


def test_single_lif_node_matches_hand_derived_values():
    """Input -> LIF with tau = 2 dt, r = 1, v_th = 0.6: v = v/2 + x/2; spikes and resets by hand."""
    dt = 1e-3
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([1])),
            "lif": nir.LIF(
                tau=np.array([2e-3]), r=np.ones(1), v_leak=np.zeros(1), v_threshold=np.array([0.6]), v_reset=np.zeros(1)
            ),
            "output": nir.Output(output_type=np.array([1])),
        },  # fmt: skip
        edges=[("input", "lif"), ("lif", "output")],
        metadata={},
    )
    module = nb.import_graph(graph, dt=dt)
    x = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0, 1.0]).reshape(6, 1, 1)
    # v: 0.5, 0.75 -> spike, reset 0; 0; 0.5; 0.75 -> spike; 0.5
    expected = torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 0.0]).reshape(6, 1, 1)
    assert torch.equal(module(x)[0], expected)


def test_one_branch_export_runs_in_norse_from_nir():
    """Norse 1.1.0's ``from_nir`` runs a 1-branch DH-LIF graph (CubaLIF). With reset="zero" its spikes equal ours.

    Norse maps CubaLIF to LIBox -> LIFBox (Euler, reset to v_reset right after the spike): the same equations.
    Norse reads dt from its ``from_nir(dt=...)`` argument, not from the graph metadata.
    """
    torch.manual_seed(8)
    model = SequentialSNN(DHLIF(6, 4, 1, reset="zero", v_th=0.05, soma_tau_init="small"))
    with torch.no_grad():
        model[0].dendrites.weight.abs_().mul_(3.0)
    graph = _graph_only(model, 1e-3)
    norse_model = nt.from_nir(graph, dt=1e-3)
    x = (torch.rand(30, 2, 6) < 0.5).float()
    state, outs = None, []
    with torch.no_grad():
        for x_t in x.unbind(0):
            z, state = norse_model(x_t, state)
            outs.append(z)
        ours = model(x)[0]
    theirs = torch.stack(outs)
    assert ours.sum() > 0
    assert torch.equal(ours, theirs)

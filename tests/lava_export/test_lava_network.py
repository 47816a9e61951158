"""Graph reading, input checks, resource report, packaging rules and the import contract of lava_export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import pytest

import lava_export
from lava_export import UnsupportedNIRError, load_blocks, quantize_block, resource_report, run_network
from lava_export.network import check_inputs
from nir_bridge.patterns import Block, build_graph

ROOT = Path(lava_export.__file__).resolve().parent


def _dhlif_block(m=6, n=4, d=2, name="dh", recurrent=False, seed=0):
    rng = np.random.default_rng(seed)
    cols = m + (n if recurrent else 0)
    mask = np.zeros((n * d, cols), bool)
    for j in range(n):  # every input reaches exactly one branch of each neuron
        branch = rng.integers(0, d, cols)
        mask[j * d + branch, np.arange(cols)] = True
    w = rng.normal(size=mask.shape) * mask
    return Block(
        "dhlif", m, n, d, recurrent, w, mask, rng.normal(size=n * d) * 0.1, True, rng.uniform(0.2, 0.9, (n, d)),
        rng.uniform(0.2, 0.9, n), np.ones(n), "subtract", 1e-3, name=name,
    )  # fmt: skip


def _readout_block(m=4, k=2, name="out"):
    rng = np.random.default_rng(1)
    return Block(
        "leaky_readout", m, k, 1, False, rng.normal(size=(k, m)), np.ones((k, m), bool), np.zeros(k), True, None,
        np.full(k, 0.8), None, None, 1e-3, raw={"tau_raw": np.full(k, np.log(4.0))}, name=name,
    )  # fmt: skip


def test_unsupported_standard_nodes_are_named():
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([3])),
            "fc": nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)),
            "conv": nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)),
            "output": nir.Output(output_type=np.array([2])),
        },
        edges=[("input", "fc"), ("fc", "conv"), ("conv", "output")],
    )
    with pytest.raises(UnsupportedNIRError, match=r"'fc': Affine.*'conv': LIF.*supported"):
        load_blocks(graph)
    with pytest.raises(UnsupportedNIRError):  # before any Lava process is started
        run_network(graph, np.zeros((1, 2, 3)), timeout=5)


def test_readout_must_be_last():
    blocks = [_dhlif_block(m=6, n=4), _readout_block(m=4, k=4, name="mid"), _dhlif_block(m=4, n=3, name="dh2")]
    with pytest.raises(UnsupportedNIRError, match="'mid'.*not the last layer"):
        load_blocks(blocks)


def test_graph_round_trip_through_a_file(tmp_path):
    blocks = [_dhlif_block(recurrent=True), _readout_block()]
    path = tmp_path / "m.nir"
    nir.write(str(path), build_graph(blocks))
    loaded = load_blocks(path)
    assert [b.kind for b in loaded] == ["dhlif", "leaky_readout"]
    np.testing.assert_array_equal(loaded[0].weight, blocks[0].weight)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_blocks(tmp_path / "missing.nir")


def test_input_checks():
    assert check_inputs(np.ones((2, 3, 4), bool), 4).dtype == np.uint8
    with pytest.raises(ValueError, match=r"\(batch, time, 4\)"):
        check_inputs(np.zeros((3, 4)), 4)
    with pytest.raises(ValueError, match=r"\(batch, time, 4\)"):
        check_inputs(np.zeros((1, 3, 5)), 4)
    with pytest.raises(ValueError, match="binary"):
        check_inputs(np.full((1, 3, 4), 0.5), 4)
    with pytest.raises(ValueError, match="backend"):
        run_network([_dhlif_block()], np.zeros((1, 2, 6)), backend="loihi")


def test_resource_report_counts():
    dh, ro = _dhlif_block(m=6, n=4, d=2), _readout_block(m=4, k=2)
    rep = resource_report([dh, ro])
    layer = rep.layers[0]
    assert layer.neurons == 4 and layer.compartments == 4 * 3  # 2 branch currents + soma per neuron
    assert layer.synapses == int(np.count_nonzero(dh.weight)) <= 4 * 6  # one branch per input and neuron
    assert layer.dense_synapses == 4 * 2 * 6 and layer.fc_synapses == 4 * 6
    assert rep.neurons == 4 and rep.compartments == 12 + 2
    assert rep.synapses == layer.synapses + 8 and rep.weight_bits == 8 * rep.synapses
    assert "total: 4 spiking neurons" in rep.format()


def test_resource_report_lists_one_exponent_per_sparse_process():
    """A DH-SRNN whose branch 0 carries 40x larger weights: per-branch exponents, same synapses (disjoint parts)."""
    dh = _dhlif_block(m=6, n=4, d=2, recurrent=True)
    dh.weight[0::2] *= 40.0
    layer = resource_report([dh]).layers[0]
    q = quantize_block(dh, warn=False)
    assert len(q.weight.parts) == 2 and len(q.rec_weight.parts) == 2
    assert layer.weight_exp == q.weight.exps + q.rec_weight.exps and len(layer.sign_modes) == 4
    assert layer.synapses == int(np.count_nonzero(dh.weight))
    # each non-zero mantissa sits in exactly one part, at the position of its float weight
    owner = np.hstack([sum((p.mant != 0).astype(int) for p in m.parts) for m in (q.weight, q.rec_weight)])
    assert owner.max() == 1 and not np.any(owner[dh.weight == 0])
    assert "4 Sparse" in resource_report([dh]).format()


def test_process_packages_hold_nothing_else():
    """Lava's model discovery executes sibling modules: each process package holds process.py + models.py only."""
    for sub in ("dhlif", "readout", "source"):
        files = sorted(p.name for p in (ROOT / "procs" / sub).iterdir() if p.suffix == ".py")
        assert files == ["__init__.py", "models.py", "process.py"], files
    assert not [p for p in ROOT.rglob("*.py") if p.name.startswith(("test_", "conftest"))]


def test_import_pulls_in_neither_torch_nor_lava_runtime():
    code = (
        "import sys, multiprocessing as mp, lava_export, lava_export.quantize, lava_export.resources\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'norse_dh', 'norse')]\n"
        "assert not bad, bad\n"
        "assert 'lava.magma.core.process.process' not in sys.modules\n"
        "assert mp.get_start_method(allow_none=True) is None\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT.parent, timeout=60)
    assert out.returncode == 0, out.stderr

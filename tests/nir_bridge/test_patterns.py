"""``nir_bridge.patterns``: the pure NIR + NumPy block encoding shared with lava_export."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import nir
import numpy as np
import pytest

from nir_bridge.patterns import (
    DISCRETIZATION,
    Block,
    PatternError,
    build_block,
    build_graph,
    factor_to_tau,
    read_blocks,
    recognise_block,
    tau_to_factor,
)


def _block(kind: str, m: int, n: int, d: int, recurrent: bool, seed: int = 0, reset: str = "subtract") -> Block:
    rng = np.random.default_rng(seed)
    cols = m + (n if recurrent else 0)
    mask = rng.random((n * d, cols)) < 0.5 if kind == "dhlif" else np.ones((n * d, cols), bool)
    weight = (rng.standard_normal((n * d, cols)) * mask).astype(np.float32)
    spiking = kind in ("dhlif", "vanilla_lif")
    return Block(
        kind=kind, input_size=m, hidden_size=n, branches=d, recurrent=recurrent, weight=weight, mask=mask,
        bias=rng.standard_normal(n * d).astype(np.float32), has_bias=True,
        dend_decay=rng.random((n, d)).astype(np.float32) if kind == "dhlif" else None,
        soma_decay=rng.random(n).astype(np.float32) if kind != "linear" else None,
        v_th=rng.random(n).astype(np.float32) if spiking else None, reset=reset if spiking else None, dt=1e-3,
    )  # fmt: skip


def _stack() -> list[Block]:
    return [
        _block("dhlif", 5, 4, 3, False, 1),
        _block("dhlif", 4, 6, 2, True, 2, "zero"),
        _block("dhlif", 6, 3, 1, True, 3, "none"),
        _block("vanilla_lif", 3, 3, 1, True, 4),
        _block("linear", 3, 4, 1, False, 5),
        _block("leaky_readout", 4, 2, 1, False, 6),
    ]


def test_blocks_survive_write_and_read_exactly():
    blocks = _stack()
    with tempfile.TemporaryDirectory() as tmp:
        nir.write(str(Path(tmp) / "b.nir"), build_graph(blocks))
        graph = nir.read(str(Path(tmp) / "b.nir"))
    assert graph.metadata["discretization"] == DISCRETIZATION
    for a, b in zip(blocks, read_blocks(graph)):
        assert (a.kind, a.input_size, a.hidden_size, a.branches, a.recurrent, a.reset) == (
            b.kind, b.input_size, b.hidden_size, b.branches, b.recurrent, b.reset,
        )  # fmt: skip
        assert b.weight.dtype == np.float32
        np.testing.assert_array_equal(a.weight, b.weight)
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.bias, b.bias)
        for field in ("dend_decay", "soma_decay", "v_th"):
            if getattr(a, field) is not None:
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_dhlif_block_is_per_branch_linear_into_li_into_lif_with_recurrent_edges():
    b = _block("dhlif", 5, 4, 3, True)
    g = build_block(b)
    types = {k: type(v).__name__ for k, v in g.nodes.items()}
    assert types == {"input": "Input", "output": "Output", "soma": "LIF",
                     **{f"w_{k}": "Affine" for k in range(3)}, **{f"dend_{k}": "LI" for k in range(3)},
                     **{f"rec_{k}": "Linear" for k in range(3)}}  # fmt: skip
    assert ("soma", "rec_2") in g.edges and ("rec_2", "dend_2") in g.edges and ("dend_2", "soma") in g.edges
    np.testing.assert_array_equal(g.nodes["w_2"].weight, b.weight[2::3, :5])  # rows n * D + 2, zeros kept
    np.testing.assert_array_equal(g.nodes["rec_2"].weight, b.weight[2::3, 5:])
    np.testing.assert_allclose(g.nodes["dend_2"].tau, 1e-3 / (1 - b.dend_decay[:, 2].astype(np.float64)))
    np.testing.assert_array_equal(g.nodes["dend_2"].r, np.ones(4))
    # Euler with this tau and r = 1 is the DH-LIF branch update i <- a i + (1 - a) I
    a = tau_to_factor(g.nodes["dend_2"].tau, 1e-3)
    np.testing.assert_allclose(a, b.dend_decay[:, 2], rtol=1e-6)


def test_one_branch_block_is_a_cubalif():
    g = build_block(_block("dhlif", 5, 4, 1, False))
    assert isinstance(g.nodes["soma"], nir.CubaLIF)
    np.testing.assert_array_equal(g.nodes["soma"].w_in, np.ones(4))


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda g: g.nodes["dend_1"].tau.__imul__(1.5), "time constants"),
        (lambda g: g.nodes["w_0"].weight.__setitem__(..., 1.0), "outside the connection mask"),
        (lambda g: g.edges.remove(("dend_1", "soma")), "edges"),
        (lambda g: g.metadata.__setitem__("discretization", "exp"), "discretization"),
        (lambda g: g.metadata.__setitem__("reset", "sometimes"), "reset"),
        (lambda g: g.nodes["soma"].v_reset.__iadd__(0.5), "v_reset"),
    ],
)
def test_recognise_rejects_blocks_that_contradict_their_metadata(tamper, message):
    g = build_block(_block("dhlif", 5, 4, 3, False))
    tamper(g)
    with pytest.raises(PatternError, match=message):
        recognise_block(g, "layer0")


def test_factor_tau_conversion_and_range_check():
    f = np.array([0.0, 0.5, 0.9])
    np.testing.assert_allclose(factor_to_tau(f, 2e-3), [2e-3, 4e-3, 2e-2])
    np.testing.assert_allclose(tau_to_factor(factor_to_tau(f, 2e-3), 2e-3), f, atol=1e-15)
    with pytest.raises(PatternError, match=r"\[0, 1\)"):
        factor_to_tau(np.array([1.0]), 1e-3)


def test_read_blocks_rejects_widths_that_do_not_chain():
    a, b = _block("dhlif", 5, 4, 2, False), _block("leaky_readout", 3, 2, 1, False)
    with pytest.raises(PatternError, match="expects 3 inputs"):
        build_graph([a, b])


def test_patterns_module_imports_neither_torch_nor_norse_dh():
    code = "import sys, nir_bridge.patterns; assert 'torch' not in sys.modules and 'norse_dh' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])

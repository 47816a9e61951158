"""Exactness: export -> nir.write -> nir.read -> import reproduces norse-dh models bit for bit (float32)."""

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
from norse_dh.functional.dhlif import RESET_MODES
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


def _through_file(graph: nir.NIRGraph) -> torch.nn.Module:
    """Write with nir.write, read with nir.read (type checked), import."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.nir"
        nir.write(str(path), graph)
        return nb.import_graph(nir.read(str(path)))


def _boost(model: torch.nn.Module, gain: float = 3.0) -> None:
    """Stronger, excitatory weights so that layers spike (exactness of spike trains is tested, not of zeros)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                p.abs_().mul_(gain)


def _assert_same_state_dict(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert sa[k].dtype == sb[k].dtype, k
        assert torch.equal(sa[k], sb[k]), k


@st.composite
def stacks(draw):
    """A random SequentialSNN: 1-3 spiking layers (DH-SFNN / DH-SRNN / vanilla, any D, any reset) + readout."""
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    width = draw(st.integers(2, 9))
    inputs = width
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        hidden = draw(st.integers(1, 7))
        reset = draw(st.sampled_from(RESET_MODES))
        kind = draw(st.sampled_from(["dh_ff", "dh_rec", "vanilla_ff", "vanilla_rec"]))
        v_th = torch.rand(hidden, generator=gen) * 0.3 + 0.05
        common = dict(reset=reset, v_th=v_th, bias=draw(st.booleans()), soma_tau_init="small")
        if kind.startswith("dh"):
            branches = draw(st.integers(1, 4))
            mask = draw(st.sampled_from(["random", "contiguous", "full"]))
            cls = DHLIF if kind == "dh_ff" else DHLIFRecurrent
            layers.append(cls(width, hidden, branches, mask=mask, mask_seed=seed, dend_tau_init=(-2.0, 5.0), **common))
        else:
            cls = VanillaLIF if kind == "vanilla_ff" else VanillaLIFRecurrent
            layers.append(cls(width, hidden, **common))
        width = hidden
    if draw(st.booleans()):
        layers.append(torch.nn.Linear(width, width + 1, bias=draw(st.booleans())))
        width += 1
    layers.append(LeakyReadout(width, draw(st.integers(1, 4)), bias=draw(st.booleans())))
    model = SequentialSNN(*layers)
    _boost(model)
    return model, inputs, seed


@settings(max_examples=12, deadline=None)
@given(stacks())
def test_roundtrip_is_bit_identical_for_random_stacks(case):
    model, inputs, seed = case
    graph = nb.export_model(model, dt=1e-3)
    restored = _through_file(graph)
    assert isinstance(restored, SequentialSNN)
    assert [type(m) for m in restored] == [type(m) for m in model]
    _assert_same_state_dict(model, restored)
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(16, 3, inputs, generator=gen) < 0.5).float()
    with torch.no_grad():
        ours, theirs = model.forward_all(x), restored.forward_all(x)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype == torch.float32
        assert torch.equal(a, b)
    assert ours[0].sum() > 0, "the first layer must spike for the test to mean something"


def test_every_reset_mode_and_branch_count_spikes_identically():
    """A deterministic sweep next to the hypothesis test: DH-SFNN and DH-SRNN, D = 1..4, each reset mode."""
    torch.manual_seed(3)
    x = (torch.rand(30, 4, 10) < 0.4).float()
    for reset in RESET_MODES:
        for first, second in ((DHLIF, DHLIFRecurrent), (DHLIFRecurrent, DHLIF)):
            kw = dict(reset=reset, v_th=0.2, soma_tau_init="small")
            model = SequentialSNN(
                first(10, 8, 1, **kw), second(8, 7, 2, **kw), first(7, 6, 3, **kw), second(6, 5, 4, **kw),
                LeakyReadout(5, 3),
            )  # fmt: skip
            _boost(model)
            restored = _through_file(nb.export_model(model, dt=1e-3))
            with torch.no_grad():
                ours, theirs = model.forward_all(x), restored.forward_all(x)
            for a, b in zip(ours, theirs):
                assert torch.equal(a, b), (reset, first)
            assert all(z.sum() > 0 for z in ours[:4]), "every spiking layer must spike"


def test_cells_and_single_layers_come_back_as_the_same_class():
    torch.manual_seed(0)
    x = (torch.rand(5, 9) < 0.5).float()
    cells = [
        DHLIFCell(9, 4, 3, v_th=0.1),
        DHLIFRecurrentCell(9, 4, 2, reset="zero", v_th=0.1),
        VanillaLIFCell(9, 4, reset="none"),
        VanillaLIFRecurrentCell(9, 4),
        LeakyReadoutCell(9, 2),
    ]
    for cell in cells:
        _boost(cell)
        restored = _through_file(nb.export_model(cell, dt=5e-4))
        assert type(restored) is type(cell)
        _assert_same_state_dict(cell, restored)
        state_a = state_b = None
        for _ in range(4):  # several steps so the recurrent state matters
            out_a, state_a = cell(x, state_a)
            out_b, state_b = restored(x, state_b)
            assert torch.equal(out_a, out_b)


def test_restored_layers_keep_options_and_trainability():
    layer = DHLIFRecurrent(6, 5, 3, mask="grouped", group_size=2, reset="zero", method="super", alpha=50.0,
                           train_dend_tau=False, init_state="reference_random")  # fmt: skip
    restored = _through_file(nb.export_model(layer, dt=1e-3))
    assert restored.method == "super" and restored.alpha == 50.0 and restored.reset == "zero"
    assert restored.init_state == "reference_random"
    assert restored.dendrites.mask_mode == "grouped"
    assert not restored.dend_tau_raw.requires_grad and restored.soma_tau_raw.requires_grad
    assert torch.equal(restored.dendrites.mask, layer.dendrites.mask)


def test_float64_models_round_trip_in_float64():
    torch.manual_seed(1)
    model = SequentialSNN(DHLIF(5, 4, 2, v_th=0.1), LeakyReadout(4, 2)).double()
    _boost(model)
    restored = _through_file(nb.export_model(model, dt=1e-3))
    x = (torch.rand(20, 2, 5) < 0.5).double()
    a, b = model(x)[0], restored(x)[0]
    assert b.dtype == torch.float64 and torch.equal(a, b)


def test_norse_cells_round_trip_exactly():
    """Norse LIF / LI (sequence) and LIFBoxCell / LIBoxCell parameters come back unchanged, outputs identical."""
    torch.manual_seed(2)
    p = nt.LIFParameters(tau_mem_inv=torch.linspace(50.0, 150.0, 4), v_th=torch.tensor(0.2), v_reset=torch.tensor(-0.1))
    model = SequentialSNN(torch.nn.Linear(6, 4), nt.LIF(p), torch.nn.Linear(4, 3), nt.LI())
    restored = _through_file(nb.export_model(model, dt=1e-3))
    x = torch.rand(25, 2, 6) * 4
    a, b = model(x)[0], restored(x)[0]
    assert torch.equal(a, b)
    assert model.forward_all(x)[1].sum() > 0
    box = nt.LIFBoxCell(nt.LIFBoxCell().p._replace(v_th=torch.full((3,), 0.3)))
    restored_box = _through_file(nb.export_model(box, dt=1e-3, input_size=3))
    assert type(restored_box) is nt.LIFBoxCell
    xs = torch.rand(4, 3) * 40
    assert torch.equal(box(xs)[0], restored_box(xs)[0])
    li_box = _through_file(nb.export_model(nt.LIBoxCell(), dt=1e-3, input_size=3))
    assert torch.equal(nt.LIBoxCell()(xs)[0], li_box(xs)[0])


def test_graph_metadata_records_dt_discretisation_reset_mask_and_version():
    import norse_dh

    layer = DHLIF(7, 3, 2, reset="subtract")
    graph = nb.export_model(SequentialSNN(layer), dt=2e-3)
    assert graph.metadata["dt"] == 2e-3 and graph.metadata["discretization"] == "euler_r1"
    assert graph.metadata["norse_dh_version"] == norse_dh.__version__
    block = graph.nodes["layer0"].metadata
    assert block["reset"] == "subtract" and block["dt"] == 2e-3 and block["norse_dh_version"] == norse_dh.__version__
    np.testing.assert_array_equal(block["mask"], layer.dendrites.mask.numpy().astype(np.uint8))
    # the Linear/LI nodes hold the masked weights (zeros kept) and tau = dt / (1 - a)
    w = layer.dendrites.masked_weight().detach().numpy()
    np.testing.assert_array_equal(graph.nodes["layer0"].nodes["w_1"].weight, w[1::2, :7])
    a = layer.dend_decay.detach().numpy().astype(np.float64)
    np.testing.assert_allclose(graph.nodes["layer0"].nodes["dend_1"].tau, 2e-3 / (1 - a[:, 1]), rtol=1e-12)


def test_read_blocks_gives_lava_the_layers_exact_numbers():
    """What lava_export reads (NumPy only) equals the torch layer's effective weights and factors bit for bit."""
    torch.manual_seed(6)
    model = SequentialSNN(DHLIFRecurrent(9, 5, 3, reset="zero"), VanillaLIF(5, 4), LeakyReadout(4, 2))
    with tempfile.TemporaryDirectory() as tmp:
        nb.write_nir(nb.export_model(model, 1e-3), Path(tmp) / "m.nir")
        blocks = nb.read_blocks(nir.read(str(Path(tmp) / "m.nir")))
    dh, van, ro = blocks
    assert [b.kind for b in blocks] == ["dhlif", "vanilla_lif", "leaky_readout"]
    layer = model[0]
    np.testing.assert_array_equal(dh.weight, layer.dendrites.masked_weight().detach().numpy()[:, :14])
    np.testing.assert_array_equal(dh.mask, layer.dendrites.mask.numpy()[:, :14])
    np.testing.assert_array_equal(dh.dend_decay, layer.dend_decay.detach().numpy())
    np.testing.assert_array_equal(dh.soma_decay, layer.soma_decay.detach().numpy())
    assert dh.recurrent and dh.recurrent_weight.shape == (15, 5) and dh.reset == "zero" and dh.dt == 1e-3
    np.testing.assert_array_equal(van.weight, model[1].linear.weight.detach().numpy())
    np.testing.assert_array_equal(ro.soma_decay, model[2].decay.detach().numpy())

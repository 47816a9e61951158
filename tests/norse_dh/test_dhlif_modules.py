"""DH-LIF modules: parameters, persistence, sequence/cell agreement, Norse integration, training, errors."""

import io
import math

import pytest
import torch
from norse.torch import SequentialState

from norse_dh import (
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
from norse_dh.counting import effective_parameter_count
from norse_dh.state import detach_state
from norse_dh.timing import PRESETS, decay_to_tau

PAIRS = [
    (DHLIFCell, DHLIF, dict(branches=3)),
    (DHLIFRecurrentCell, DHLIFRecurrent, dict(branches=2)),
    (VanillaLIFCell, VanillaLIF, {}),
    (VanillaLIFRecurrentCell, VanillaLIFRecurrent, {}),
]


def spikes_in(steps=30, batch=4, inputs=10, p=0.3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, inputs, generator=g) < p).to(dtype)


@pytest.mark.parametrize(("cell_cls", "seq_cls", "kw"), PAIRS)
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_sequence_layer_equals_loop_over_cell(cell_cls, seq_cls, kw, reset):
    torch.manual_seed(1)
    seq = seq_cls(10, 6, reset=reset, **kw).double()
    cell = cell_cls(10, 6, reset=reset, **kw).double()
    with torch.no_grad():
        for name, p in seq.named_parameters():
            if name.endswith("weight"):
                p.mul_(25.0).add_(1.0)  # enough drive for many spikes
    cell.load_state_dict(seq.state_dict())
    x = spikes_in()
    z_seq, s_seq = seq(x)
    state, outs = None, []
    for x_t in x.unbind(0):
        z, state = cell(x_t, state)
        outs.append(z)
    assert z_seq.sum() > 0
    assert torch.equal(z_seq, torch.stack(outs))
    for a, b in zip(s_seq, state):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("cell_cls", "seq_cls", "kw"), PAIRS)
def test_parameters_move_save_and_pickle(cell_cls, seq_cls, kw):
    layer = seq_cls(10, 6, **kw)
    names = dict(layer.named_parameters())
    assert "soma_tau_raw" in names and "v_th" in layer.state_dict()
    if "branches" in kw:
        assert {"dend_tau_raw", "dendrites.weight", "dendrites.bias"} <= set(names)
        assert "dendrites.mask" in layer.state_dict()
    layer = layer.double()
    assert all(p.dtype == torch.float64 for p in layer.parameters())
    x = spikes_in(inputs=10)
    z, _ = layer(x)
    buf = io.BytesIO()
    torch.save(layer, buf)
    buf.seek(0)
    restored = torch.load(buf, weights_only=False)
    assert torch.equal(restored(x)[0], z)
    fresh = seq_cls(10, 6, **kw, seed=123, mask_seed=99) if "branches" in kw else seq_cls(10, 6, **kw, seed=123)
    fresh = fresh.double()
    fresh.load_state_dict(layer.state_dict())
    assert torch.equal(fresh(x)[0], z)


def test_works_inside_norse_sequential_state():
    torch.manual_seed(0)
    model = SequentialState(
        DHLIFCell(10, 8, 2), torch.nn.Linear(8, 8), DHLIFRecurrentCell(8, 5, 2), LeakyReadoutCell(5, 3)
    )
    state = None
    outs = []
    for x_t in spikes_in(dtype=torch.float32).unbind(0):
        out, state = model(x_t, state)
        outs.append(out)
    assert torch.stack(outs).shape == (30, 4, 3)
    assert [type(s).__name__ for s in state] == [
        "DHLIFState",
        None.__class__.__name__,
        "DHLIFState",
        "LeakyReadoutState",
    ]


def test_masked_weights_stay_exactly_zero_under_adam_and_adamw():
    torch.manual_seed(0)
    for opt_cls, wd in ((torch.optim.Adam, 0.0), (torch.optim.Adam, 1e-2), (torch.optim.AdamW, 1e-2)):
        layer = DHLIFRecurrent(12, 8, 4, dend_tau_init="large")
        readout = LeakyReadout(8, 2)
        opt = opt_cls(list(layer.parameters()) + list(readout.parameters()), lr=1e-2, weight_decay=wd)
        x = spikes_in(inputs=12, dtype=torch.float32)
        for _ in range(50):
            opt.zero_grad()
            z, _ = layer(x)
            m, _ = readout(z)
            loss = (m - 1.0).pow(2).mean() + 0.1 * z.mean()
            loss.backward()
            opt.step()
        masked = ~layer.dendrites.mask
        assert layer.dendrites.weight.grad[masked].abs().max() == 0
        assert layer.dendrites.weight[masked].abs().max() == 0
        assert opt.state[layer.dendrites.weight]["exp_avg"][masked].abs().max() == 0
        assert (layer.dendrites.weight[~masked] != 0).all()


def test_small_dh_sfnn_learns_a_delayed_temporal_task():
    """Cue in one of two channel groups during steps 0-4, silence, answer at the end: needs memory."""
    torch.manual_seed(0)
    steps, batch = 40, 64

    def make(n):
        labels = torch.randint(0, 2, (n,))
        x = (torch.rand(steps, n, 8) < 0.02).float()
        cue = torch.rand(5, n, 4) < 0.8
        for k in range(2):
            sel = labels == k
            x[:5, sel, 4 * k : 4 * k + 4] = cue[:, sel].float()
        return x, labels

    model = SequentialSNN(DHLIF(8, 16, 2, mask="contiguous", dend_tau_init="large"), LeakyReadout(16, 2))
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(60):
        x, y = make(batch)
        out, _ = model(x)
        loss = torch.nn.functional.cross_entropy(out[-5:].mean(0), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = make(512)
    with torch.no_grad():
        acc = (model(x)[0][-5:].mean(0).argmax(-1) == y).float().mean().item()
    assert acc > 0.9


def test_detach_state_truncates_bptt():
    layer = DHLIF(10, 6, 2)
    x = spikes_in(inputs=10, dtype=torch.float32)
    _, state = layer(x[:15])
    z2, _ = layer(x[15:], detach_state(state))
    (z2.sum() + layer(x[15:], detach_state(state))[1].u.sum()).backward()
    assert all(not t.requires_grad for t in detach_state(state))
    torch.testing.assert_close(detach_state(state).u, state.u.detach())


def test_timing_factor_presets_per_branch_lists_tensors_and_freezing():
    torch.manual_seed(0)
    layer = DHLIF(8, 50, 2, dend_tau_init=["large", "small"], soma_tau_init="medium", train_dend_tau=False)
    lo, hi = PRESETS["large"]
    assert lo <= layer.dend_tau_raw[:, 0].min() and layer.dend_tau_raw[:, 0].max() <= hi
    lo, hi = PRESETS["small"]
    assert lo <= layer.dend_tau_raw[:, 1].min() and layer.dend_tau_raw[:, 1].max() <= hi
    assert not layer.dend_tau_raw.requires_grad and layer.soma_tau_raw.requires_grad
    layer(spikes_in(inputs=8, dtype=torch.float32))[0].sum().backward()
    assert layer.dend_tau_raw.grad is None
    explicit = DHLIF(8, 3, 2, dend_tau_init=torch.tensor([1.0, -1.0]), soma_tau_init=(0.5, 0.5))
    torch.testing.assert_close(explicit.dend_decay[0], torch.sigmoid(torch.tensor([1.0, -1.0])))
    taus = explicit.time_constants(dt=1e-3)
    torch.testing.assert_close(taus["soma"], torch.full((3,), -1e-3 / math.log(1 / (1 + math.exp(-0.5)))))
    torch.testing.assert_close(taus["dend"], decay_to_tau(explicit.dend_decay.detach(), 1e-3))


def test_reference_random_initial_state():
    torch.manual_seed(0)
    x = torch.zeros(20, 4000, 5)
    for d in (1, 3):
        state = DHLIF(5, 6, d, init_state="reference_random").initial_state(x)
        assert 0 <= state.u.min() and state.u.max() < 1 and abs(state.u.mean().item() - 0.5) < 0.01
        assert ((state.z > 0) & (state.z < 1)).float().mean() > 0.99  # non-binary, as in the reference
        assert (state.i.abs().sum() > 0) == (d == 1)
    assert DHLIF(5, 6, 2).initial_state(x).u.abs().sum() == 0


def test_readout_weight_inits_follow_the_reference_scripts():
    torch.manual_seed(0)
    xavier = LeakyReadout(400, 300)  # SHD/SSC/DEAP: xavier_normal_ weights, zero bias
    assert xavier.linear.bias.abs().sum() == 0
    assert abs(xavier.linear.weight.std().item() - (2 / 700) ** 0.5) < 2e-3
    default = LeakyReadout(400, 300, weight_init="linear_default")  # XOR: nn.Linear's U(+-1/sqrt(fan_in))
    bound = 1 / 400**0.5
    for p in (default.linear.weight, default.linear.bias):
        assert p.abs().max() <= bound and p.abs().max() > 0.95 * bound
    assert abs(default.linear.weight.std().item() - bound / 3**0.5) < 2e-3


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ((DHLIF(700, 64, 8), DHLIF(64, 64, 8), LeakyReadout(64, 20)), 52_648),  # SHD 0.92105 checkpoint
        ((DHLIFRecurrent(700, 64, 2), LeakyReadout(64, 20)), 50_536),  # SHD 0.91342 checkpoint
        ((DHLIF(32, 200, 8), LeakyReadout(200, 3)), 10_406),  # DEAP arousal 0.80234 checkpoint
    ],
)
def test_effective_parameter_counts_match_released_checkpoints(layers, expected):
    assert effective_parameter_count(SequentialSNN(*layers)) == expected


@pytest.mark.parametrize(
    ("build", "exc", "match"),
    [
        (lambda: DHLIF(5, 3, 0), ValueError, "branches must be a positive int, got 0"),
        (lambda: DHLIF(5, 3, 2, reset="soft"), ValueError, "reset must be one of"),
        (lambda: DHLIF(5, 3, 2, dend_tau_init="huge"), ValueError, "preset must be one of"),
        (lambda: DHLIF(5, 3, 2, dend_tau_init=["large"]), ValueError, "one spec per branch"),
        (lambda: DHLIF(5, 3, 2, init_state="random"), ValueError, "init_state must be one of"),
        (lambda: DHLIF(5, 3, 2, v_th=torch.ones(4)), ValueError, r"v_th must be a scalar or have shape \(3,\)"),
        (lambda: DHLIF(5, 3, 2, mask=torch.ones(6, 7, dtype=torch.bool)), ValueError, "custom dendritic mask"),
        (lambda: DHLIF(0, 3, 2), ValueError, "input_size must be a positive int"),
        (lambda: LeakyReadout(4, 0), ValueError, "out_features must be a positive int"),
        (lambda: LeakyReadout(4, 2, weight_init="kaiming"), ValueError, "weight_init must be one of"),
    ],
)
def test_bad_construction_arguments_name_the_problem(build, exc, match):
    with pytest.raises(exc, match=match):
        build()


@pytest.mark.parametrize(
    ("module", "x", "exc", "match"),
    [
        (DHLIF(5, 3, 2), torch.zeros(4, 2, 6), ValueError, r"inputs=5, got \(4, 2, 6\)"),
        (DHLIF(5, 3, 2), torch.zeros(2, 5), ValueError, r"shape \(time, batch, inputs\)"),
        (DHLIFCell(5, 3, 2), torch.zeros(4, 2, 5), ValueError, r"shape \(batch, inputs\)"),
        (DHLIF(5, 3, 2), torch.zeros(4, 2, 5, dtype=torch.long), TypeError, "floating-point"),
        (DHLIF(5, 3, 2), torch.full((4, 2, 5), float("nan")), ValueError, "NaN or inf"),
        (DHLIFRecurrentCell(5, 3, 2), torch.tensor([[0.0, 1, 2, 3, float("inf")]]), ValueError, "NaN or inf"),
        (VanillaLIF(5, 3), torch.zeros(4, 2, 4), ValueError, "inputs=5"),
        (LeakyReadout(5, 3), torch.zeros(4, 2, 4), ValueError, "inputs=5"),
        (SequentialSNN(DHLIF(5, 3, 2)), torch.zeros(2, 5), ValueError, "time-first"),
    ],
)
def test_bad_inputs_name_the_problem(module, x, exc, match):
    with pytest.raises(exc, match=match):
        module(x)

"""The fast sequence path (norse_dh.kernels) against the step-by-step cells (the functional step is the reference).

Every comparison runs the sequence layer (fused C++ loop + density-dependent projection) and the matching one-step
cell looped over time with autograd, from identical parameters, and checks identical spikes, final states and
gradients of the input, every parameter and (functional tests) the threshold, to 1e-5 relative in float64.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from norse_dh.functional.dhlif import DHLIFState, SomaState, dhlif_step
from norse_dh.functional.surrogate import MultiGaussianParameters
from norse_dh.kernels import build, dhlif_loop, fused_supported, kernels_available, leaky_loop, plan_for, project
from norse_dh.kernels import projection as projection_mod
from norse_dh.modules import (
    DHLIF,
    DHLIFCell,
    DHLIFRecurrent,
    DHLIFRecurrentCell,
    LeakyReadout,
    LeakyReadoutCell,
    VanillaLIF,
    VanillaLIFCell,
    VanillaLIFRecurrent,
    VanillaLIFRecurrentCell,
)

F64 = torch.float64
RTOL = 1e-5


def _close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    scale = float(expected.detach().abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=RTOL * max(scale, 1e-12), msg=what)


def _inputs(T: int, B: int, M: int, density: float, seed: int, dtype=F64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if density >= 1.0:
        return torch.ones(T, B, M, dtype=dtype)
    spikes = (torch.rand(T, B, M, generator=g) < density).to(dtype)
    return spikes * (0.5 + torch.rand(T, B, M, generator=g).to(dtype))  # graded events exercise the values too


def _run_pair(seq, cell, x: torch.Tensor, seed: int, rng_seed: int = 123):
    """Sequence layer vs cell loop on the same parameters; returns outputs, states and gradients of both."""
    cell.load_state_dict(seq.state_dict())
    g = torch.Generator().manual_seed(seed)
    results = []
    for run in ("seq", "cell"):
        xr = x.clone().requires_grad_()
        torch.manual_seed(rng_seed)  # same draws for init_state="reference_random"
        if run == "seq":
            out, state = seq(xr)
        else:
            state, outs = None, []
            for x_t in xr.unbind(0):
                o, state = cell(x_t, state)
                outs.append(o)
            out = torch.stack(outs)
        results.append((out, state, xr))
    w_out = torch.randn(results[0][0].shape, generator=g, dtype=x.dtype)
    w_state = [torch.randn(s.shape, generator=g, dtype=x.dtype) for s in results[0][1]]
    grads = []
    for (out, state, xr), module in zip(results, (seq, cell)):
        module.zero_grad(set_to_none=True)
        loss = (out * w_out).sum() + sum((s * w).sum() for s, w in zip(state, w_state))
        loss.backward()
        grads.append({"input": xr.grad, **{n: p.grad for n, p in module.named_parameters() if p.requires_grad}})
    return results, grads


def _check_pair(results, grads) -> None:
    (out_s, state_s, _), (out_c, state_c, _) = results
    assert torch.equal(out_s, out_c), "spikes differ from the step-by-step cell"
    for name, a, b in zip(state_s._fields, state_s, state_c):
        _close(a, b, f"final state {name}")
    for name in grads[1]:
        assert grads[0][name] is not None, f"no gradient for {name}"
        _close(grads[0][name], grads[1][name], f"gradient of {name}")


def _drive(module, gain: float) -> None:
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("weight"):
                p.mul_(gain)


dims = st.fixed_dictionaries(
    {
        "T": st.integers(1, 9),
        "B": st.integers(1, 4),
        "M": st.integers(1, 13),
        "N": st.integers(1, 6),
        "D": st.integers(1, 4),
        "seed": st.integers(0, 2**16),
    }
)


def test_kernels_build_and_load():
    assert kernels_available(), f"the C++ kernels did not build: {build.build_error()}"


@settings(max_examples=40, deadline=None)
@given(
    dims=dims,
    recurrent=st.booleans(),
    reset=st.sampled_from(["subtract", "zero", "none"]),
    mask=st.sampled_from(["random", "grouped", "contiguous", "full"]),
    density=st.sampled_from([0.0, 0.1, 0.4, 1.0]),
    method=st.sampled_from(["mg", "super", "triangle", "circ"]),
    path=st.sampled_from(["auto", "events", "dense"]),
)
def test_dhlif_sequence_matches_cell(dims, recurrent, reset, mask, density, method, path):
    T, B, M, N, D, seed = (dims[k] for k in ("T", "B", "M", "N", "D", "seed"))
    kw = dict(mask=mask, group_size=2, reset=reset, method=method, alpha=0.7, v_th=0.3, seed=seed, mask_seed=seed)
    kw["soma_tau_init"] = "small"
    seq_cls, cell_cls = (DHLIFRecurrent, DHLIFRecurrentCell) if recurrent else (DHLIF, DHLIFCell)
    torch.manual_seed(seed)
    seq = seq_cls(M, N, D, **kw).double()
    cell = cell_cls(M, N, D, **kw).double()
    _drive(seq, 3.0)
    threshold = {"auto": projection_mod.EVENT_BREAK_EVEN, "events": 1.0, "dense": 0.0}[path]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(projection_mod, "EVENT_BREAK_EVEN", threshold)
        results, grads = _run_pair(seq, cell, _inputs(T, B, M, density, seed), seed)
    _check_pair(results, grads)


@settings(max_examples=25, deadline=None)
@given(
    dims=dims,
    recurrent=st.booleans(),
    reset=st.sampled_from(["subtract", "zero", "none"]),
    density=st.sampled_from([0.0, 0.2, 1.0]),
    method=st.sampled_from(["mg", "super", "triangle", "tanh", "circ", "heavi_erfc", "heaviside"]),
)
def test_vanilla_sequence_matches_cell(dims, recurrent, reset, density, method):
    T, B, M, N, seed = (dims[k] for k in ("T", "B", "M", "N", "seed"))
    kw = dict(reset=reset, method=method, alpha=0.7, v_th=0.3, soma_tau_init="small", seed=seed)
    seq_cls, cell_cls = (VanillaLIFRecurrent, VanillaLIFRecurrentCell) if recurrent else (VanillaLIF, VanillaLIFCell)
    torch.manual_seed(seed)
    seq, cell = seq_cls(M, N, **kw).double(), cell_cls(M, N, **kw).double()
    _drive(seq, 3.0)
    results, grads = _run_pair(seq, cell, _inputs(T, B, M, density, seed), seed)
    _check_pair(results, grads)


@settings(max_examples=15, deadline=None)
@given(dims=dims, density=st.sampled_from([0.0, 0.3, 1.0]), init=st.sampled_from(["zero", "reference_random"]))
def test_readout_sequence_matches_cell(dims, density, init):
    T, B, M, N, seed = (dims[k] for k in ("T", "B", "M", "N", "seed"))
    torch.manual_seed(seed)
    seq = LeakyReadout(M, N, init_state=init, seed=seed).double()
    cell = LeakyReadoutCell(M, N, init_state=init, seed=seed).double()
    results, grads = _run_pair(seq, cell, _inputs(T, B, M, density, seed), seed)
    (out_s, _, _), (out_c, _, _) = results
    _close(out_s, out_c, "readout membrane")
    for name in grads[1]:
        _close(grads[0][name], grads[1][name], f"gradient of {name}")


@pytest.mark.parametrize("density", [0.1, 0.3])  # fused event kernel (feed-forward) / projection + loop
@pytest.mark.parametrize("branches", [1, 3])
@pytest.mark.parametrize("recurrent", [False, True])
def test_reference_random_initial_state(branches, recurrent, density):
    """init_state="reference_random" (random u, non-binary z, random i for D = 1) gives the cell's draws and results."""
    seq_cls, cell_cls = (DHLIFRecurrent, DHLIFRecurrentCell) if recurrent else (DHLIF, DHLIFCell)
    kw = dict(init_state="reference_random", v_th=0.5, seed=3)
    seq, cell = seq_cls(7, 5, branches, **kw).double(), cell_cls(7, 5, branches, **kw).double()
    _drive(seq, 2.0)
    results, grads = _run_pair(seq, cell, _inputs(6, 3, 7, density, 1), 1)
    _check_pair(results, grads)


def test_functional_loop_threshold_and_state_gradients():
    """dhlif_loop against dhlif_step directly, with a learnable per-neuron threshold and given initial states."""
    T, B, N, D = 7, 3, 4, 3
    g = torch.Generator().manual_seed(0)
    I = torch.randn(T, B, N, D, generator=g, dtype=F64) * 2  # noqa: E741
    a = torch.rand(N, D, generator=g, dtype=F64)
    b = torch.rand(N, generator=g, dtype=F64)
    vth = (0.2 + torch.rand(N, generator=g, dtype=F64)).requires_grad_()
    i0 = torch.randn(B, N, D, generator=g, dtype=F64)
    u0 = torch.randn(B, N, generator=g, dtype=F64)
    z0 = torch.rand(B, N, generator=g, dtype=F64)
    mg = MultiGaussianParameters(0.5, 0.5, 0.15, 6.0)
    leaves = [t.clone().requires_grad_() for t in (I, a, b, vth, i0, u0, z0)]
    w = torch.randn(T, B, N, generator=g, dtype=F64)
    grads = []
    for fast in (True, False):
        args = [t.detach().clone().requires_grad_() for t in leaves]
        I_, a_, b_, vth_, i0_, u0_, z0_ = args
        if fast:
            z, i_T, u_T, z_T = dhlif_loop(I_, a_, b_, vth_, i0_, u0_, z0_, reset="subtract", method="mg", mg=mg)
        else:
            from norse_dh.functional.dhlif import DHLIFParameters, SomaParameters

            p = DHLIFParameters(a_, SomaParameters(b_, vth_, "subtract", "mg", 100.0, mg))
            state, zs = DHLIFState(i0_, u0_, z0_), []
            for x_t in I_.unbind(0):
                z_t, state = dhlif_step(x_t, state, p)
                zs.append(z_t)
            z, i_T, u_T, z_T = torch.stack(zs), *state
        ((z * w).sum() + i_T.sum() + (u_T**2).sum() + z_T.sum()).backward()
        grads.append((z.detach(), [t.grad for t in args]))
    assert torch.equal(grads[0][0], grads[1][0])
    for name, a_fast, a_ref in zip(("I", "a", "b", "v_th", "i0", "u0", "z0"), grads[0][1], grads[1][1]):
        _close(a_fast, a_ref, f"gradient of {name}")


def test_float32_forward_bit_identical_to_cell():
    """float32: spikes and final states of the layer (dense projection at this density, D <= 8) are bit-for-bit
    those of the cell loop; with event inputs the spikes are still identical on this case."""
    torch.manual_seed(0)
    seq, cell = DHLIF(40, 32, 4, v_th=0.2, seed=0), DHLIFCell(40, 32, 4, v_th=0.2, seed=0)
    _drive(seq, 3.0)
    cell.load_state_dict(seq.state_dict())
    for density in (0.5, 0.05):
        x = _inputs(60, 8, 40, density, 0, dtype=torch.float32)
        with torch.no_grad():
            state, outs = None, []
            for x_t in x.unbind(0):
                o, state = cell(x_t, state)
                outs.append(o)
            z_fast, state_fast = seq(x)
        z_ref = torch.stack(outs)
        assert float(z_ref.mean()) > 0.01  # the comparison is not vacuous
        assert torch.equal(z_fast, z_ref)
        if density == 0.5:
            for a, b in zip(state_fast, state):
                assert torch.equal(a, b)


@pytest.mark.parametrize("method", ["mg", "super"])
def test_float32_gradients_match_float64_cell(method):
    """float32 training path (the multi-Gaussian surrogate evaluated inside the reverse loop for "mg", the flat
    surrogate pass otherwise; event projection with its bias gradient summed in double): the gradients equal those
    of the float64 cell loop on the same float32 values to float32 accuracy (1e-4 relative)."""
    T, B, M, N, D = 40, 6, 30, 12, 3
    torch.manual_seed(1)
    kw = dict(v_th=0.3, method=method, alpha=2.0, seed=1)
    seq, cell = DHLIF(M, N, D, **kw), DHLIFCell(M, N, D, **kw).double()
    _drive(seq, 3.0)
    cell.load_state_dict({k: v.double() for k, v in seq.state_dict().items()})
    x = _inputs(T, B, M, 0.05, 3, dtype=torch.float32)
    w_out = torch.randn(T, B, N, generator=torch.Generator().manual_seed(4))
    z, _ = seq(x)
    (z * w_out).sum().backward()
    state, outs = None, []
    for x_t in x.double().unbind(0):
        o, state = cell(x_t, state)
        outs.append(o)
    z_ref = torch.stack(outs)
    assert torch.equal(z.detach().double(), z_ref.detach()) and float(z_ref.detach().mean()) > 0.01
    (z_ref * w_out.double()).sum().backward()
    ref = dict(cell.named_parameters())
    for name, p in seq.named_parameters():
        if p.requires_grad:
            g, g_ref = p.grad.double(), ref[name].grad
            scale = float(g_ref.abs().max())
            torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-4 * scale, msg=f"float32 gradient of {name}")


@pytest.mark.parametrize("path", ["events", "shared", "dense"])
@pytest.mark.parametrize("mask", ["random", "grouped", "contiguous"])
def test_projection_paths(path, mask):
    """Each projection path equals F.linear with the masked weight; masked weight entries get exactly zero gradient."""
    layer = DHLIF(10, 6, 3, mask=mask, group_size=2, seed=0).double()
    d = layer.dendrites
    x = _inputs(5, 4, 10, 0.3, 2).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    g = torch.randn(5, 4, 18, dtype=F64)
    out, used = project(x, d.weight, d.bias, plan_for(d.mask, 10, 3), mask=d.mask, branches=3, path=path)
    assert used == (path if (path != "shared" or mask != "random") else "dense")
    out.backward(g)
    grads = (x.grad, d.weight.grad.clone(), d.bias.grad.clone())
    d.zero_grad(set_to_none=True)
    ref = torch.nn.functional.linear(x_ref, d.masked_weight()[:, :10], d.bias)
    ref.backward(g)
    _close(out, ref, "projection")
    for a, b, name in zip(grads, (x_ref.grad, d.weight.grad, d.bias.grad), ("input", "weight", "bias")):
        _close(a, b, f"projection gradient of {name}")
    assert torch.all(grads[1][~d.mask] == 0)


def test_projection_auto_switches_on_density():
    layer = DHLIF(30, 4, 2, seed=0)
    d = layer.dendrites
    plan = plan_for(d.mask, 30, 2)
    sparse = _inputs(10, 5, 30, 0.02, 0, dtype=torch.float32)
    dense = _inputs(10, 5, 30, 0.9, 0, dtype=torch.float32)
    assert project(sparse, d.weight, d.bias, plan, mask=d.mask, branches=2)[1] == "events"
    assert project(dense, d.weight, d.bias, plan, mask=d.mask, branches=2)[1] == "dense"
    grouped = DHLIF(30, 4, 2, mask="grouped", group_size=2, seed=0).dendrites
    gplan = plan_for(grouped.mask, 30, 2)
    assert gplan.groups is not None and len(gplan.groups) == 2
    assert project(dense, grouped.weight, grouped.bias, gplan, mask=grouped.mask, branches=2)[1] == "shared"
    with pytest.raises(ValueError, match="path must be"):
        project(dense, d.weight, d.bias, plan, mask=d.mask, path="csr")


def test_inference_path_matches_training_path():
    """Under no_grad the loop keeps only one step of state; outputs and final states are the same."""
    seq = DHLIFRecurrent(12, 6, 2, v_th=0.3, seed=1)
    _drive(seq, 3.0)
    x = _inputs(20, 3, 12, 0.3, 4, dtype=torch.float32)
    z, state = seq(x)
    with torch.no_grad():
        z_inf, state_inf = seq(x)
    assert torch.equal(z, z_inf)
    for a, b in zip(state, state_inf):
        assert torch.equal(a, b)


def test_leaky_loop_functional():
    g = torch.Generator().manual_seed(5)
    I = torch.randn(6, 2, 3, generator=g, dtype=F64, requires_grad=True)  # noqa: E741
    b = torch.rand(3, generator=g, dtype=F64, requires_grad=True)
    m0 = torch.randn(2, 3, generator=g, dtype=F64, requires_grad=True)
    m, m_T = leaky_loop(I, b, m0)
    (m.sum() + 2 * m_T.sum()).backward()
    fast = (m.detach(), I.grad.clone(), b.grad.clone(), m0.grad.clone())
    for t in (I, b, m0):
        t.grad = None
    state, ms = m0, []
    for x_t in I.unbind(0):
        state = b * state + (1 - b) * x_t  # independent hand-written recurrence
        ms.append(state)
    ref = torch.stack(ms)
    (ref.sum() + 2 * ref[-1].sum()).backward()
    for a, r in zip(fast, (ref.detach(), I.grad, b.grad, m0.grad)):
        _close(a, r, "leaky loop")


def test_disabled_kernels_fall_back_to_reference(monkeypatch):
    """NORSE_DH_KERNELS=0: the layers run the functional loop and give the same results as the fast path."""
    seq = DHLIF(9, 4, 2, v_th=0.3, seed=2).double()
    _drive(seq, 3.0)
    x = _inputs(8, 3, 9, 0.4, 3)
    z_fast, s_fast = seq(x)
    monkeypatch.setenv("NORSE_DH_KERNELS", "0")
    assert not fused_supported([x], "mg", "subtract")
    z_ref, s_ref = seq(x)
    assert z_ref.grad_fn is not None and "DHLIFLoop" not in type(z_ref.grad_fn).__name__
    assert "DHLIFLoop" in type(z_fast.grad_fn).__name__
    assert torch.equal(z_fast, z_ref)
    for a, b in zip(s_fast, s_ref):
        _close(a, b, "state")


def test_failed_build_falls_back_cleanly(monkeypatch, tmp_path):
    """A compiler that fails: load() warns once, returns None, records why; every layer still runs (reference)."""
    fake = tmp_path / "g++"
    fake.write_text("#!/bin/sh\necho 'simulated compiler failure' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", str(fake))
    monkeypatch.setenv("NORSE_DH_KERNEL_CACHE", str(tmp_path / "cache"))
    build._reset_for_tests()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert build.load() is None
        assert any("unavailable" in str(w.message) for w in caught)
        assert "simulated compiler failure" in build.build_error()
        assert not kernels_available()
        torch.manual_seed(0)
        seq, cell = DHLIF(6, 3, 2, v_th=0.3, seed=0).double(), DHLIFCell(6, 3, 2, v_th=0.3, seed=0).double()
        _drive(seq, 3.0)
        results, grads = _run_pair(seq, cell, _inputs(5, 2, 6, 0.5, 0), 0)
        _check_pair(results, grads)
        vseq, vcell = VanillaLIFRecurrent(6, 3, v_th=0.3).double(), VanillaLIFRecurrentCell(6, 3, v_th=0.3).double()
        _check_pair(*_run_pair(vseq, vcell, _inputs(5, 2, 6, 0.5, 0), 0))
        readout = LeakyReadout(6, 2).double()
        m, _ = readout(_inputs(5, 2, 6, 0.5, 0))
        assert m.shape == (5, 2, 2)
    finally:
        monkeypatch.undo()
        build._reset_for_tests()
    assert kernels_available()


@pytest.mark.parametrize("height", [0.15, 0.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mg_surrogate_kernel_matches_functional(height, dtype):
    """The C++ multi-Gaussian (vectorised exp) equals multi_gaussian_grad, including h = 0 and far tails."""
    from norse_dh.functional.surrogate import multi_gaussian_grad
    from norse_dh.kernels.loop import DTYPES

    # |u| <= 4: every block takes the two-exponential form with the cosh series (|x s / w^2| <= 1); |u| <= 40: far
    # tails, blocks of either form
    for lim in (4.0, 40.0):
        u = torch.linspace(-lim, lim, 40000, dtype=dtype).reshape(-1, 5)
        vth = torch.tensor([0.0, 0.5, 1.0, -1.0, 3.0], dtype=dtype)
        x = (u - vth).contiguous()
        sd = torch.empty_like(x)
        getattr(build.load(), f"mg_surrogate_{DTYPES[dtype]}")(
            x.numel(), x.data_ptr(), 0.5, 0.5, height, 6.0, sd.data_ptr()
        )
        ref = multi_gaussian_grad(u - vth, MultiGaussianParameters(0.5, 0.5, height, 6.0))
        tol = 1e-6 if dtype == torch.float32 else 1e-14
        assert float((sd - ref).abs().max()) <= tol * float(ref.abs().max())


def test_mixed_dtypes_and_shapes_are_rejected_or_fall_back():
    seq = DHLIF(5, 3, 2, seed=0)  # float32 parameters
    x64 = _inputs(4, 2, 5, 0.5, 0)  # float64 input: the fast path declines, the reference loop raises like before
    assert not fused_supported([x64, seq.dendrites.weight], "mg", "subtract")
    with pytest.raises(RuntimeError):
        seq(x64)
    with pytest.raises(ValueError, match="inputs=5"):
        seq(torch.rand(4, 2, 6))
    state = SomaState(torch.zeros(2, 3), torch.zeros(2, 3))
    assert isinstance(state, SomaState)


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("branches", [1, 2, 5])
def test_fused_dhsfnn_store_and_recompute_match_cell(reset, branches, monkeypatch):
    """The fused DH-SFNN kernel (event projection + loop + surrogate in one pass; several batch tiles and checkpoint
    chunks forced by a small buffer) in both backward modes, "store" and "recompute", gives the cell's spikes and
    gradients (float64, 1e-5), and the two modes agree bit for bit."""
    from norse_dh.kernels import fused

    monkeypatch.setattr(fused, "CHUNK_BYTES", 1600)  # tiles of a few rows, checkpoints every few steps
    monkeypatch.setattr(fused, "TILE_BYTES", 1100)
    T, B, M, N = 11, 7, 9, 4
    K, Bc = fused.tiling(T, B, N, branches, 8)
    assert Bc < B and 1 < K < T and (T % K, B % Bc) != (0, 0)  # partial last chunk or tile
    kw = dict(reset=reset, v_th=0.3, soma_tau_init="small", seed=5, mask_seed=5)
    seq, cell = DHLIF(M, N, branches, **kw).double(), DHLIFCell(M, N, branches, **kw).double()
    _drive(seq, 8.0)
    x = _inputs(T, B, M, 0.12, 6)
    per_mode = {}
    for store in (True, False):
        monkeypatch.setattr(fused, "STORE", store)
        results, grads = _run_pair(seq, cell, x, 6)
        assert "FusedDHSFNN" in type(results[0][0].grad_fn).__name__
        assert float(results[1][0].detach().mean()) > 0.01  # spikes happen: the comparison is not vacuous
        _check_pair(results, grads)
        per_mode[store] = (results[0][0].detach(), grads[0])
    assert torch.equal(per_mode[True][0], per_mode[False][0])
    for name, g in per_mode[True][1].items():
        assert torch.equal(g, per_mode[False][1][name]), f"store and recompute differ in the gradient of {name}"


def test_fused_dhsfnn_float32_without_input_gradient(monkeypatch):
    """float32, input without gradient (no dI written), all-zero and dense inputs: the fused path runs where the
    events fit (else the dense projection), spikes are bit-identical to the cell and gradients close to it."""
    torch.manual_seed(2)
    seq, cell = DHLIF(20, 8, 2, v_th=0.2, seed=2), DHLIFCell(20, 8, 2, v_th=0.2, seed=2)
    _drive(seq, 3.0)
    cell.load_state_dict(seq.state_dict())
    for density, fused_expected in ((0.0, True), (0.05, True), (1.0, False)):
        x = _inputs(30, 5, 20, density, 1, dtype=torch.float32)
        seq.zero_grad(set_to_none=True)
        cell.zero_grad(set_to_none=True)
        z, _ = seq(x)
        assert ("FusedDHSFNN" in type(z.grad_fn).__name__) == fused_expected
        state, outs = None, []
        for x_t in x.unbind(0):
            o, state = cell(x_t, state)
            outs.append(o)
        z_ref = torch.stack(outs)
        assert torch.equal(z, z_ref)
        w = torch.randn(z.shape, generator=torch.Generator().manual_seed(3))
        (z * w).sum().backward()
        (z_ref * w).sum().backward()
        ref = dict(cell.named_parameters())
        for name, p in seq.named_parameters():
            scale = float(ref[name].grad.abs().max())
            torch.testing.assert_close(p.grad, ref[name].grad, rtol=1e-4, atol=1e-4 * max(scale, 1e-12))


def test_build_falls_back_to_portable_flags(monkeypatch, tmp_path):
    """A compiler that rejects -march=native: the kernels are rebuilt without it (portable) and give the same
    results as the native build."""
    import shutil

    real = shutil.which("g++") or shutil.which("c++")
    fake = tmp_path / "g++"
    fake.write_text(
        '#!/bin/sh\nfor a in "$@"; do [ "$a" = -march=native ] && { echo \'no -march=native\' >&2; exit 1; }; done\n'
        f'exec {real} "$@"\n'
    )
    fake.chmod(0o755)
    seq = DHLIF(9, 4, 2, v_th=0.3, seed=2).double()
    _drive(seq, 3.0)
    x = _inputs(8, 3, 9, 0.1, 3)
    z_native, s_native = seq(x)
    monkeypatch.setenv("CXX", str(fake))
    monkeypatch.setenv("NORSE_DH_KERNEL_CACHE", str(tmp_path / "cache"))
    build._reset_for_tests()
    try:
        assert kernels_available(), build.build_error()
        z_port, s_port = seq(x)
        assert "FusedDHSFNN" in type(z_port.grad_fn).__name__
        assert torch.equal(z_native, z_port)
        for a, b in zip(s_native, s_port):
            assert torch.equal(a, b)
    finally:
        monkeypatch.undo()
        build._reset_for_tests()
    assert kernels_available()


class _SpyLib:
    """The kernel library with the fused forward's buffer arguments recorded (which adjoint inputs it writes)."""

    def __init__(self, lib) -> None:
        self.lib, self.calls = lib, []

    def __getattr__(self, name):
        fn = getattr(self.lib, name)
        narrow = name.startswith("dhsfnn_narrow_fwd")
        if not (name.startswith("dhsfnn_fwd") or narrow):
            return fn

        def spy(*args):
            # tile kernel (..., i_ck, u_ck, e_all, sd_all, q_all, up_all, i_T, u_T, z): checkpoints / stored adjoint
            # inputs; narrow kernel (..., i_ck, u_ck, i_T, u_T, z): checkpoints only (i_ck also argument 20)
            stored = False if narrow else args[22] is not None
            self.calls.append({"checkpoints": args[20] is not None, "stored": stored, "narrow": narrow})
            return fn(*args)

        return spy


@pytest.mark.parametrize("width", [8, 16])  # float32: tile kernel / narrow kernel; float64: narrow kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_dhsfnn_no_grad_writes_nothing_for_the_backward(monkeypatch, dtype, width):
    """Under no_grad (parameters still requiring gradients) the fused forward keeps neither checkpoints nor the
    adjoint's inputs and records no graph; spikes and final states equal those of the training forward."""
    torch.manual_seed(3)  # the initial weights draw from the global generator
    seq = DHLIF(20, width, 2, v_th=0.2, seed=3).to(dtype)
    _drive(seq, 3.0)
    x = _inputs(30, 6, 20, 0.1, 2, dtype=dtype)
    spy = _SpyLib(build.load())
    monkeypatch.setitem(build._state, "lib", spy)
    z_train, s_train = seq(x)
    with torch.no_grad():
        z_inf, s_inf = seq(x)
    assert "FusedDHSFNN" in type(z_train.grad_fn).__name__ and z_inf.grad_fn is None
    assert len(spy.calls) == 2
    narrow = dtype == torch.float64 or width == 16  # widths of whole 64-byte vectors
    assert spy.calls[0]["narrow"] == spy.calls[1]["narrow"] == narrow
    assert spy.calls[0]["checkpoints"] or spy.calls[0]["stored"]  # training keeps one or the other
    assert spy.calls[1] == {"checkpoints": False, "stored": False, "narrow": narrow}
    assert float(z_inf.mean()) > 0.01 and torch.equal(z_train, z_inf)
    for a, b in zip(s_train, s_inf):
        assert torch.equal(a, b)


def test_fused_dhsfnn_store_rule(monkeypatch):
    """Per call, recompute where the repeated projection is cheap relative to the stored values (few events per
    row), store otherwise; STORE overrides; both choices give the same gradients (bit for bit)."""
    from norse_dh.kernels import fused

    monkeypatch.setattr(fused, "STORE", None)
    # delayed-XOR shape (4 events per row, 32 outputs): recompute; SHD 5 % (35 events per row, 256 outputs): store
    assert not fused.store_mode(200_000, 50_000, 16, 2)
    assert fused.store_mode(560_000, 16_000, 64, 4)
    monkeypatch.setattr(fused, "STORE", True)
    assert fused.store_mode(200_000, 50_000, 16, 2)
    monkeypatch.setattr(fused, "STORE", False)
    assert not fused.store_mode(560_000, 16_000, 64, 4)
    monkeypatch.setattr(fused, "STORE", None)
    spy = _SpyLib(build.load())
    monkeypatch.setitem(build._state, "lib", spy)
    grads = {}
    for M, density, expect_store in ((12, 0.05, False), (140, 0.13, True)):  # 0.6 / 18 events per row
        seq = DHLIF(M, 6, 4, v_th=0.3, seed=4).double()  # 6 neurons: the tile kernel (not whole vectors)
        _drive(seq, 3.0)
        x = _inputs(12, 5, M, density, 5)
        for store in (None, not expect_store):
            monkeypatch.setattr(fused, "STORE", store)
            seq.zero_grad(set_to_none=True)
            z, _ = seq(x)
            (z * torch.linspace(-1, 1, z.numel(), dtype=z.dtype).view_as(z)).sum().backward()
            assert spy.calls[-1]["stored"] == (expect_store if store is None else store)
            grads[store] = {n: p.grad.clone() for n, p in seq.named_parameters()}
        for n, g in grads[None].items():
            assert torch.equal(g, grads[not expect_store][n]), n


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("M, density", [(30, 0.1), (120, 0.12)])  # 3 / 14 events per row: flat / per-row loop
def test_fused_event_projection_bit_identical_to_event_path(dtype, M, density):
    """The fused forward (event projection accumulated in registers, flat or per-row; 36 outputs per row: vector
    blocks plus a scalar tail) gives bit for bit the spikes and final states of the unfused event projection followed
    by the loop kernel (same per-output summation order)."""
    N, D, T, B = 12, 3, 25, 9
    torch.manual_seed(7)
    seq = DHLIF(M, N, D, v_th=0.1, seed=7).to(dtype)
    _drive(seq, 5.0)
    with torch.no_grad():
        bias = seq.dendrites.bias  # a non-zero bias starts every output's sum
        bias.copy_(torch.rand(bias.shape, generator=torch.Generator().manual_seed(9), dtype=dtype) * 0.2 - 0.1)
        x = _inputs(T, B, M, density, 8, dtype=dtype)
        z, state = seq(x)
        d, p = seq.dendrites, seq.dhlif_parameters()
        ff, used = project(x, d.weight, d.bias, plan_for(d.mask, M, D), mask=d.mask, branches=D, path="events")
        assert used == "events"
        zeros = torch.zeros(B, N, dtype=dtype)
        sp = p.soma
        z_ref, i_ref, u_ref, _ = dhlif_loop(
            ff.unflatten(-1, (N, D)), p.dend_decay, sp.soma_decay, sp.v_th, torch.zeros(B, N, D, dtype=dtype),
            zeros, zeros, reset=sp.reset, method=sp.method, alpha=sp.alpha, mg=sp.mg,
        )  # fmt: skip
    assert float(z_ref.mean()) > 0.01
    assert torch.equal(z, z_ref) and torch.equal(state.i, i_ref) and torch.equal(state.u, u_ref)


@settings(max_examples=40, deadline=None)
@given(
    T=st.integers(1, 9),
    B=st.integers(1, 11),
    M=st.integers(1, 40),
    K=st.integers(1, 10),
    G=st.sampled_from([2, 4]),
    density=st.sampled_from([0.0, 0.2, 1.0]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**16),
)
def test_blocked_event_order_is_the_narrow_kernels_row_order(T, B, M, K, G, density, dtype, seed):
    """The scan's blocked order (chunks of K steps, groups of G batch rows, then steps, then rows): CSR row
    ``t0 * B + b0 * Kc + (t - t0) * nb + g`` holds exactly the events (columns, values, in column order) of input row
    ``t * B + b0 + g``, checked against the natural row order row by row, with each column ``m`` stored as
    ``m * G + g``; ``rows`` names each event's CSR row."""
    x2 = _inputs(T, B, M, density, seed, dtype=dtype).reshape(T * B, M)
    nat = projection_mod._events(x2, x2.numel(), with_rows=True)
    blk = projection_mod._events(x2, x2.numel(), with_rows=True, blocked=(B, K, G))
    assert blk[0][-1] == nat[0][-1] == int((x2 != 0).sum())
    seen = []
    for t0 in range(0, T, K):
        kc = min(T, t0 + K) - t0
        for b0 in range(0, B, G):
            nb = min(G, B - b0)
            for t in range(t0, t0 + kc):
                for g in range(nb):
                    j, r = t0 * B + b0 * kc + (t - t0) * nb + g, t * B + b0 + g
                    seen.append(j)
                    a0, a1, n0, n1 = int(blk[0][j]), int(blk[0][j + 1]), int(nat[0][r]), int(nat[0][r + 1])
                    assert torch.equal(blk[1][a0:a1], nat[1][n0:n1] * G + g)
                    assert torch.equal(blk[2][a0:a1], nat[2][n0:n1])
                    assert (blk[3][a0:a1] == j).all()
    assert sorted(seen) == list(range(T * B))
    # 0/1 input: no values written, vals None; graded input (its first non-1 value anywhere): the values all there
    spikes = (x2 != 0).to(dtype)
    ones = projection_mod._events(spikes, x2.numel(), blocked=(B, K, G), ones_as_none=True)
    assert ones[2] is None and torch.equal(ones[1], blk[1]) and torch.equal(ones[0], blk[0])
    if bool(spikes.any()):
        graded = spikes.clone()
        graded.view(-1)[int(torch.nonzero(graded.view(-1))[-1])] = 0.5  # the last event in input order
        got = projection_mod._events(graded, x2.numel(), blocked=(B, K, G), ones_as_none=True)
        expect = projection_mod._events(graded, x2.numel(), blocked=(B, K, G))
        assert got[2] is not None and torch.equal(got[2], expect[2]) and float(got[2].min()) == 0.5
    if B > 1:
        with pytest.raises(ValueError, match="B dividing"):
            projection_mod._events(x2[:-1], x2.numel(), blocked=(B, K, G))


def test_float_exp_relative_error_on_dense_grid():
    """The float kernel's exp (minimax polynomial) is within 2.5e-7 relative of exp in double over its whole range.

    With height 0 the surrogate kernel is kc * exp(cc * x * x); the argument is formed in float as the kernel does,
    so the comparison isolates the exponential (and the final product's rounding)."""
    import numpy as np

    from norse_dh.kernels.loop import DTYPES

    sigma = 0.5
    x = torch.linspace(-6.4, 6.4, 400001, dtype=torch.float32)
    sd = torch.empty_like(x)
    getattr(build.load(), f"mg_surrogate_{DTYPES[torch.float32]}")(
        x.numel(), x.data_ptr(), 1.0, sigma, 0.0, 6.0, sd.data_ptr()
    )
    kc = np.float32(1.0 / (np.sqrt(2.0 * np.pi) * sigma))
    cc = np.float32(-1.0 / (2.0 * sigma * sigma))
    xs = x.numpy()
    arg = (cc * xs) * xs  # float32, the kernel's operation order
    ref = np.float64(kc) * np.exp(arg.astype(np.float64))
    live = arg >= -80.0
    rel = np.abs(sd.numpy()[live].astype(np.float64) / ref[live] - 1.0)
    assert live.sum() > 300000 and rel.max() <= 2.5e-7
    assert (sd.numpy()[~live] == 0.0).all()  # results below ~1e-35 are exactly 0 (no denormals)


@settings(max_examples=30, deadline=None)
@given(
    T=st.integers(1, 12),
    B=st.integers(1, 9),
    M=st.integers(1, 13),
    shape=st.sampled_from([(1, 1), (1, 2), (1, 3), (1, 4), (2, 1), (2, 2)]),
    reset=st.sampled_from(["subtract", "zero", "none"]),
    mask=st.sampled_from(["random", "grouped", "contiguous", "full"]),
    density=st.sampled_from([0.0, 0.1, 0.3]),
    chunk_bytes=st.sampled_from([1, 3000, 24 * 1024]),
    spikes=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_narrow_dhsfnn_matches_cell(T, B, M, shape, reset, mask, density, chunk_bytes, spikes, seed):
    """The narrow fused kernel (N of one or two whole vectors: 8 or 16 neurons in float64; state of a few batch
    rows in registers; branch-major rows; compact projection for the contiguous mask) against the step-by-step
    cell: identical spikes, final states and gradients of the input and every parameter (float64, 1e-5), over
    batch sizes that leave partial row groups, checkpoint intervals from 1 step to the whole sequence, graded and
    0/1 inputs (then no event values are stored)."""
    from norse_dh.kernels import fused

    nv, D = shape
    N = 8 * nv
    kw = dict(mask=mask, group_size=4, reset=reset, v_th=0.3, soma_tau_init="small", seed=seed, mask_seed=seed)
    torch.manual_seed(seed)
    seq, cell = DHLIF(M, N, D, **kw).double(), DHLIFCell(M, N, D, **kw).double()
    _drive(seq, 3.0)
    spy = _SpyLib(build.load())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fused, "NARROW_CHUNK_BYTES", chunk_bytes)
        mp.setattr(projection_mod, "EVENT_BREAK_EVEN", 1.0)  # every density takes the fused event path
        mp.setitem(build._state, "lib", spy)
        x = _inputs(T, B, M, density, seed)
        x = (x != 0).to(x.dtype) if spikes else x  # 0/1 spikes: the kernels' no-values path
        results, grads = _run_pair(seq, cell, x, seed)
    assert [c["narrow"] for c in spy.calls] == [True]
    _check_pair(results, grads)


@pytest.mark.parametrize("mask", ["contiguous", "random"])  # compact / all-branch projection
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_narrow_dhsfnn_float32_matches_tile_kernel_and_cell(mask, reset, monkeypatch):
    """float32 at the delayed-XOR width (16 neurons x 2 branches): the narrow kernel's spikes and final states are
    bit-identical to the tile kernel's and the cell's; its gradients equal the tile kernel's to float32 accuracy and
    the float64 cell's to 1e-4 relative."""
    from norse_dh.kernels import fused

    T, B, M, N, D = 40, 13, 40, 16, 2
    kw = dict(mask=mask, reset=reset, v_th=1.0, dend_tau_init="large", seed=4, mask_seed=4)
    seq = DHLIF(M, N, D, **kw)
    _drive(seq, 40.0)
    x = _inputs(T, B, M, 0.1, 5, dtype=torch.float32)
    w = torch.randn(T, B, N, generator=torch.Generator().manual_seed(6))
    runs = {}
    for narrow in (True, False):
        monkeypatch.setattr(fused, "NARROW", narrow)
        seq.zero_grad(set_to_none=True)
        xr = x.clone().requires_grad_()
        z, state = seq(xr)
        ((z * w).sum() + state.i.sum() + state.u.sum()).backward()
        grads = {"input": xr.grad, **{k: p.grad.clone() for k, p in seq.named_parameters()}}
        runs[narrow] = (z.detach(), state, grads)
    assert float(runs[True][0].mean()) > 0.01
    assert torch.equal(runs[True][0], runs[False][0])
    for a, b in zip(runs[True][1], runs[False][1]):
        assert torch.equal(a, b)
    cell = DHLIFCell(M, N, D, **kw).double()
    cell.load_state_dict({k: v.double() for k, v in seq.state_dict().items()})
    state, outs = None, []
    xd = x.double().requires_grad_()
    for x_t in xd.unbind(0):
        o, state = cell(x_t, state)
        outs.append(o)
    z_ref = torch.stack(outs)
    assert torch.equal(runs[True][0].double(), z_ref)
    ((z_ref * w.double()).sum() + state.i.sum() + state.u.sum()).backward()
    ref = {"input": xd.grad, **{k: p.grad for k, p in cell.named_parameters()}}
    for name, g in runs[True][2].items():
        scale = float(ref[name].abs().max())
        torch.testing.assert_close(g, runs[False][2][name], rtol=1e-5, atol=1e-5 * max(scale, 1e-12))
        torch.testing.assert_close(g.double(), ref[name], rtol=1e-4, atol=1e-4 * max(scale, 1e-12))


def test_branch_of_only_for_one_shared_monotone_pattern():
    """The compact projection's per-input branch index exists exactly for one pattern shared by all neurons with
    nondecreasing branches along the inputs (contiguous mask), and partitions the inputs."""
    M, N, D = 23, 16, 3
    contiguous = DHLIF(M, N, D, mask="contiguous", seed=0).dendrites.mask
    branch_of = plan_for(contiguous, M, D).branch_of
    assert branch_of is not None and branch_of.dtype == torch.int32 and branch_of.shape == (M,)
    assert bool((branch_of[1:] >= branch_of[:-1]).all()) and set(branch_of.tolist()) == set(range(D))
    m3 = contiguous[:, :M].reshape(N, D, M).bool()
    assert bool(m3[:, branch_of.long(), torch.arange(M)].all())  # each input's branch, for every neuron
    for mask in ("random", "grouped", "full"):
        assert plan_for(DHLIF(M, N, D, mask=mask, seed=0).dendrites.mask, M, D).branch_of is None
    reversed_pattern = contiguous.flip(1).contiguous()  # a shared partition, but branches decrease along inputs
    assert plan_for(reversed_pattern, reversed_pattern.shape[1], D).branch_of is None


@pytest.mark.parametrize("mask", ["contiguous", "random"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_narrow_dhsfnn_carried_state_matches_cell(mask, reset):
    """A narrow layer run on a sequence in two pieces, the state of the first piece carried into the second (non-zero
    initial branch currents, membrane and spikes enter the kernel, and their gradients leave it), against the cell
    over the whole sequence: identical spikes, gradients of the input and every parameter to 1e-5 (float64)."""
    T1, T2, B, M, N, D = 7, 6, 5, 11, 8, 2
    kw = dict(mask=mask, reset=reset, v_th=0.3, soma_tau_init="small", seed=9, mask_seed=9)
    torch.manual_seed(9)
    seq, cell = DHLIF(M, N, D, **kw).double(), DHLIFCell(M, N, D, **kw).double()
    _drive(seq, 3.0)
    cell.load_state_dict(seq.state_dict())
    x = _inputs(T1 + T2, B, M, 0.1, 9)  # below the event break-even: the fused (narrow) path
    w = torch.randn(T1 + T2, B, N, generator=torch.Generator().manual_seed(10), dtype=F64)
    xs, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    from norse_dh.kernels import fused

    assert fused.narrow_vectors(N, D, F64) == 1  # 8 float64 neurons: one vector per branch
    z1, state = seq(xs[:T1])
    assert "FusedDHSFNN" in type(z1.grad_fn).__name__
    z2, _ = seq(xs[T1:], state)
    z_seq = torch.cat([z1, z2])
    state, outs = None, []
    for x_t in xc.unbind(0):
        o, state = cell(x_t, state)
        outs.append(o)
    z_cell = torch.stack(outs)
    assert float(z_cell.detach().mean()) > 0.01 and torch.equal(z_seq, z_cell)
    (z_seq * w).sum().backward()
    (z_cell * w).sum().backward()
    _close(xs.grad, xc.grad, "gradient of the input")
    ref = dict(cell.named_parameters())
    for name, p in seq.named_parameters():
        _close(p.grad, ref[name].grad, f"gradient of {name}")

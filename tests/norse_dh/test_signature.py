"""Marcus lift, signatures, Goursat-PDE signature kernels, MMD, scoring rule and the depth-3 loss."""

from __future__ import annotations

import math

import pysiglib
import pysiglib.torch_api as pst
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from norse_dh.losses import (
    RBFKernel,
    budget_counts,
    expected_signature_loss,
    make_static_kernel,
    marcus_lift,
    match_spike_counts,
    sig_kernel,
    sig_kernel_gram,
    sig_mmd2,
    sig_score,
    signature_depth3,
)

F64 = torch.float64


def _paths(n: int, length: int, d: int, seed: int, scale: float = 0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, length, d, generator=g, dtype=F64) * scale).cumsum(1)


def _tensor_signature(path: torch.Tensor, depth: int) -> list[torch.Tensor]:
    """Independent truncated signature of one piecewise-linear path: the Chen product of segment exponentials
    exp(D) = sum_m D^{(x)m} / m!, in the full tensor algebra (levels 0..depth as dense tensors)."""
    d = path.shape[-1]
    sig = [torch.ones((), dtype=path.dtype)] + [torch.zeros((d,) * m, dtype=path.dtype) for m in range(1, depth + 1)]
    for D in path.diff(dim=0):
        seg = [torch.ones((), dtype=path.dtype)]
        for m in range(1, depth + 1):
            seg.append(torch.tensordot(seg[-1], D, dims=0) / m)
        sig = [sum(torch.tensordot(sig[k], seg[m - k], dims=0) for k in range(m + 1)) for m in range(depth + 1)]
    return sig


# ------------------------------------------------------------------------------------------------------- Marcus lift
def test_marcus_lift_vertices_are_the_hand_derived_path():
    # neuron 0 fires at 0.2 and 0.7, neuron 1 at 0.5; slot 2 of neuron 0 and slots 1-2 of neuron 1 are padding
    st_ = torch.tensor([[[0.2, 0.7, 9.0], [0.5, 3.0, -1.0]]], dtype=F64)
    cnt = torch.tensor([[2, 1]])
    path = marcus_lift(st_, cnt, 1.0)
    expected = torch.tensor(
        [[0, 0, 0], [0.2, 0, 0], [0.2, 1, 0], [0.5, 1, 0], [0.5, 1, 1], [0.7, 1, 1], [0.7, 2, 1], [1.0, 2, 1]],
        dtype=F64,
    )
    torch.testing.assert_close(path[0], expected)
    scaled = marcus_lift(st_, cnt, 1.0, time_scale=2.0, count_scale=4.0)
    torch.testing.assert_close(scaled[0], expected / torch.tensor([2.0, 4.0, 4.0], dtype=F64))
    with pytest.raises(ValueError, match=r"counts must be \(B, K\)"):
        marcus_lift(st_, torch.tensor([2, 1]), 1.0)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), extra=st.integers(1, 4))
def test_padding_slots_leave_the_signature_unchanged(seed, extra):
    g = torch.Generator().manual_seed(seed)
    times = torch.rand(3, 2, 3, generator=g, dtype=F64).sort(-1).values
    cnt = torch.randint(0, 4, (3, 2), generator=g)
    a = marcus_lift(times, cnt, 1.0)
    padded = torch.cat((times, torch.full((3, 2, extra), 0.5, dtype=F64)), -1)  # more (ignored) slots
    b = marcus_lift(padded, cnt, 1.0, max_events=int(cnt.sum(1).max()) + extra)  # zero-length segments at T
    c = marcus_lift(padded, cnt, 1.0)
    assert b.shape[1] == a.shape[1] + 2 * extra
    torch.testing.assert_close(signature_depth3(a), signature_depth3(b))
    torch.testing.assert_close(signature_depth3(a), signature_depth3(c))


def test_kernel_is_differentiable_in_spike_times():
    st_ = torch.tensor([[[0.2, 0.6], [0.4, 0.9]], [[0.1, 0.3], [0.5, 0.8]]], dtype=F64, requires_grad=True)
    cnt = torch.tensor([[2, 2], [2, 1]])
    y = _paths(3, 6, 3, 0, 0.2)

    def f(t):
        return sig_kernel_gram(marcus_lift(t, cnt, 1.0), y, dyadic_order=1).sum()

    (grad,) = torch.autograd.grad(f(st_), st_)
    eps = 1e-6
    for idx in ((0, 0, 0), (0, 1, 1), (1, 0, 1)):
        e = torch.zeros_like(st_)
        e[idx] = eps
        fd = (f(st_.detach() + e) - f(st_.detach() - e)) / (2 * eps)
        assert grad[idx].item() == pytest.approx(fd.item(), rel=1e-6)
    assert grad[1, 1, 1] == 0  # padding slot (count 1) carries no gradient


# --------------------------------------------------------------------------------------------------- signatures
def test_depth3_signature_matches_tensor_algebra_and_pysiglib():
    x = _paths(4, 7, 3, 1)
    ours = signature_depth3(x)
    for b in range(4):
        ref = _tensor_signature(x[b], 3)
        torch.testing.assert_close(ours[b], torch.cat([ref[m].flatten() for m in (1, 2, 3)]))
    torch.testing.assert_close(ours, pst.sig(x, degree=3))


@pytest.mark.parametrize("dyadic_order", [0, 1, 2])
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_torch_goursat_kernel_matches_pysiglib_values_and_gradients(dyadic_order, kernel):
    x = _paths(3, 6, 2, 2).requires_grad_()
    y = _paths(4, 5, 2, 3)
    ours_k = make_static_kernel(kernel, 0.7)
    theirs_k = pysiglib.LinearKernel() if kernel == "linear" else pysiglib.RBFKernel(0.7)
    ours = sig_kernel_gram(x, y, static_kernel=ours_k, dyadic_order=dyadic_order)
    theirs = pst.sig_kernel_gram(x, y, dyadic_order=dyadic_order, static_kernel=theirs_k)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    w = torch.rand(3, 4, dtype=F64, generator=torch.Generator().manual_seed(0))
    (g1,) = torch.autograd.grad((ours * w).sum(), x)
    (g2,) = torch.autograd.grad((theirs * w).sum(), x)
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-10)
    # the pysiglib backend of our API, and the paired form, give the same numbers
    torch.testing.assert_close(
        sig_kernel_gram(x, y, static_kernel=ours_k, dyadic_order=dyadic_order, backend="pysiglib"), theirs
    )
    torch.testing.assert_close(sig_kernel(x, y[:3], static_kernel=ours_k, dyadic_order=dyadic_order), ours.diagonal())


def test_pde_kernel_converges_to_the_truncated_signature_inner_product():
    """Linear static kernel: k(x, y) = sum_m <S^m(x), S^m(y)>; for short paths levels > 8 are negligible, and the
    PDE solution approaches the tensor-algebra value as the dyadic order grows."""
    x, y = _paths(2, 5, 2, 4, 0.25), _paths(2, 4, 2, 5, 0.25)
    exact = torch.empty(2, 2, dtype=F64)
    for a in range(2):
        sa = _tensor_signature(x[a], 8)
        for b in range(2):
            sb = _tensor_signature(y[b], 8)
            exact[a, b] = sum((sa[m] * sb[m]).sum() for m in range(9))
    errs = [(sig_kernel_gram(x, y, dyadic_order=d) - exact).abs().max().item() for d in (0, 2, 4)]
    assert errs[2] < 1e-6 and errs[0] > errs[1] > errs[2]
    # the first-order scheme converges to the same limit
    assert (sig_kernel_gram(x, y, dyadic_order=5, scheme="first") - exact).abs().max() < 1e-2


# --------------------------------------------------------------------------------------------------- MMD and score
def test_unbiased_mmd_and_score_match_pysiglib_and_each_other():
    x, y = _paths(5, 6, 2, 6), _paths(6, 5, 2, 7, 0.4)
    rbf = RBFKernel(2.0)
    for kw, pkw in (({}, {}), ({"static_kernel": rbf}, {"static_kernel": pysiglib.RBFKernel(2.0)})):
        mmd = sig_mmd2(x, y, dyadic_order=1, **kw)
        torch.testing.assert_close(mmd, pst.sig_mmd(x, y, dyadic_order=1, **pkw).reshape(()))
        score = sig_score(x, y, dyadic_order=1, **kw)
        torch.testing.assert_close(score, pst.sig_score(x, y, dyadic_order=1, **pkw).mean())
        kyy = sig_kernel_gram(y, y, dyadic_order=1, **kw)
        torch.testing.assert_close(mmd, score + (kyy.sum() - kyy.trace()) / (6 * 5))  # score = MMD^2 - E k(Y, Y')
    # same law: the unbiased estimate averages to 0; different laws: clearly positive
    same = torch.stack([sig_mmd2(_paths(8, 5, 2, 100 + s), _paths(8, 5, 2, 200 + s)) for s in range(20)])
    assert abs(same.mean().item()) < 3 * same.std().item() / math.sqrt(20)
    assert sig_mmd2(_paths(8, 5, 2, 1), _paths(8, 5, 2, 2, 1.0)) > 5 * same.std()
    with pytest.raises(ValueError, match="at least 2 paths"):
        sig_mmd2(x[:1], y)


def test_expected_signature_loss_is_the_truncated_kernel_v_statistic():
    x, y = _paths(5, 6, 3, 8), _paths(4, 7, 3, 9)
    loss = expected_signature_loss(x, y)
    sx = [_tensor_signature(p, 3) for p in x]
    sy = [_tensor_signature(p, 3) for p in y]

    def k3(a, b):
        return sum((a[m] * b[m]).sum() for m in (1, 2, 3))

    v_stat = (
        sum(k3(a, b) for a in sx for b in sx) / 25
        - 2 * sum(k3(a, b) for a in sx for b in sy) / 20
        + sum(k3(a, b) for a in sy for b in sy) / 16
    )
    torch.testing.assert_close(loss, v_stat / (3 + 9 + 27))
    torch.testing.assert_close(expected_signature_loss(x, y, backend="pysiglib"), loss)


def test_match_spike_counts_caps_each_neuron_of_each_pair_at_the_smaller_count():
    a = torch.tensor([[3, 1, 0], [0, 2, 6]])
    b = torch.tensor([[2, 2, 4], [5, 4, 1]])
    ca, cb = match_spike_counts(a, b)
    assert ca.tolist() == cb.tolist() == [[2, 1, 0], [0, 2, 1]]  # hand-derived: min per (pair, neuron)


def _reference_match(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's match_spikes on lifted paths (snnax ``expected_signature_loss``): cap every count channel of
    both paths of a pair at the smaller final count (max over the path) of that channel."""
    cap = torch.minimum(x[:, :, 1:].amax(1), y[:, :, 1:].amax(1))[:, None, :]
    return (torch.cat((x[..., :1], torch.minimum(x[..., 1:], cap)), -1),
            torch.cat((y[..., :1], torch.minimum(y[..., 1:], cap)), -1))  # fmt: skip


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_matching_counts_before_the_lift_equals_the_reference_capping_of_lifted_paths(seed):
    g = torch.Generator().manual_seed(seed)
    B, K, M = 4, 3, 5
    ta, tb = (torch.rand(B, K, M, generator=g, dtype=F64).sort(-1).values for _ in range(2))
    ca, cb = torch.randint(0, M + 1, (B, K), generator=g), torch.randint(0, M + 1, (B, K), generator=g)
    ma, mb = match_spike_counts(ca, cb)
    ref_x, ref_y = _reference_match(marcus_lift(ta, ca, 1.0), marcus_lift(tb, cb, 1.0))
    torch.testing.assert_close(signature_depth3(marcus_lift(ta, ma, 1.0)), signature_depth3(ref_x))
    torch.testing.assert_close(signature_depth3(marcus_lift(tb, mb, 1.0)), signature_depth3(ref_y))
    # after matching, a pair's paths end at the same counts in every neuron
    torch.testing.assert_close(marcus_lift(ta, ma, 1.0)[:, -1, 1:], marcus_lift(tb, mb, 1.0)[:, -1, 1:])


def _reference_snnax_lift(t0: float, t1: float, times: torch.Tensor, marks: torch.Tensor) -> torch.Tensor:
    """snnax ``marcus_lift`` for one path: ``times (E,)`` of its budget of E events (inf = none), ``marks (E, K)``:
    interleave (tau, N(tau-)), (tau, N(tau)), roll by one and overwrite the first vertex with (t0, 0)."""
    fin = torch.where(torch.isfinite(times), times, torch.full_like(times, t1))[:, None]
    post = marks.cumsum(0)
    pre = torch.roll(post, 1, 0)
    pre[0] = 0
    out = torch.stack((torch.cat((fin, pre), 1), torch.cat((fin, post), 1)), 1).reshape(2 * len(times), -1)
    out = torch.roll(out, 1, 0)
    out[0] = 0
    out[0, 0] = t0
    return out


def test_snnax_compatible_lift_drops_the_last_jump_of_paths_that_used_the_budget():
    # path 0: 3 events (0.2 n0, 0.5 n1, 0.7 n0) with a budget of 3: ends at (0.7, N(0.7-)), no segment to T;
    # path 1: one event (0.4 n1): padding, ends at (T, N(T)) as the default lift.
    st_ = torch.tensor([[[0.2, 0.7], [0.5, 9.0]], [[9.0, 9.0], [0.4, 9.0]]], dtype=F64)
    cnt = torch.tensor([[2, 1], [0, 1]])
    lift = marcus_lift(st_, cnt, 1.0, max_events=3, snnax_compat=True)
    ex0 = [[0, 0, 0], [0.2, 0, 0], [0.2, 1, 0], [0.5, 1, 0], [0.5, 1, 1], [0.7, 1, 1], [0.7, 1, 1], [0.7, 1, 1]]
    ex1 = [[0, 0, 0], [0.4, 0, 0], [0.4, 0, 1], [1, 0, 1], [1, 0, 1], [1, 0, 1], [1, 0, 1], [1, 0, 1]]
    torch.testing.assert_close(lift, torch.tensor([ex0, ex1], dtype=F64))
    default = marcus_lift(st_, cnt, 1.0)
    torch.testing.assert_close(signature_depth3(lift[1:]), signature_depth3(default[1:]))
    with pytest.raises(ValueError, match="snnax_compat needs the events budget"):
        marcus_lift(st_, cnt, 1.0, snnax_compat=True)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), budget=st.integers(1, 8))
def test_snnax_compatible_lift_has_the_signature_of_the_reference_lift(seed, budget):
    g = torch.Generator().manual_seed(seed)
    B, K, M = 3, 3, 4
    times = torch.rand(B, K, M, generator=g, dtype=F64).sort(-1).values
    cnt = torch.randint(0, M + 1, (B, K), generator=g)
    ours = signature_depth3(marcus_lift(times, budget_counts(times, cnt, budget), 1.0, max_events=budget,
                                        snnax_compat=True))  # fmt: skip
    for b in range(B):
        ev = sorted((float(times[b, k, j]), k) for k in range(K) for j in range(int(cnt[b, k])))[:budget]
        t = torch.full((budget,), math.inf, dtype=F64)
        marks = torch.zeros(budget, K, dtype=F64)
        for e, (tau, k) in enumerate(ev):
            t[e], marks[e, k] = tau, 1.0
        ref = signature_depth3(_reference_snnax_lift(0.0, 1.0, t, marks)[None])
        torch.testing.assert_close(ours[b : b + 1], ref)


def test_budget_counts_keep_the_first_events_of_each_path():
    st_ = torch.tensor([[[0.1, 0.6, 0.9], [0.3, 0.4, 9.0]]], dtype=F64)  # n0: .1 .6 .9, n1: .3 .4 (slot 2 padding)
    cnt = torch.tensor([[3, 2]])
    assert budget_counts(st_, cnt, 1).tolist() == [[1, 0]]
    assert budget_counts(st_, cnt, 3).tolist() == [[1, 2]]
    assert budget_counts(st_, cnt, 4).tolist() == [[2, 2]]
    assert budget_counts(st_, cnt, 10).tolist() == [[3, 2]]
    with pytest.raises(ValueError, match="max_events"):
        budget_counts(st_, cnt, 0)


def test_bad_kernel_arguments_raise_clear_errors():
    x = _paths(2, 4, 2, 0)
    with pytest.raises(ValueError, match="backend must be one of"):
        sig_kernel_gram(x, x, backend="jax")
    with pytest.raises(ValueError, match="same number of channels"):
        sig_kernel_gram(x, _paths(2, 4, 3, 0))
    with pytest.raises(ValueError, match=r"\(batch, length, channels\)"):
        sig_kernel_gram(x[0], x)
    with pytest.raises(ValueError, match="NaN"):
        sig_kernel_gram(x * float("nan"), x)
    with pytest.raises(ValueError, match="'linear' or 'rbf'"):
        make_static_kernel("matern")
    with pytest.raises(ValueError, match="sigma must be > 0"):
        RBFKernel(0.0)

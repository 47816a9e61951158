"""Fixed-point quantisation against hand-derived integers, and against Lava's own weight clipping/truncation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lava_export.quantize import (
    SIGN_EXCITATORY,
    SIGN_INHIBITORY,
    SIGN_MIXED,
    QuantizationWarning,
    block_scale,
    quantize_bias,
    quantize_block,
    quantize_decay,
    quantize_matrix,
    quantize_weights,
    sparse_output,
)
from nir_bridge.patterns import Block


def _vanilla_block(weight, bias, v_th, soma_decay, name="l0"):
    w = np.asarray(weight, np.float64)
    n, m = w.shape
    return Block(
        "vanilla_lif", m, n, 1, False, w, np.ones(w.shape, bool), np.asarray(bias, np.float64), True, None,
        np.asarray(soma_decay, np.float64), np.asarray(v_th, np.float64), "subtract", 1e-3, name=name,
    )  # fmt: skip


def test_mixed_weights_round_to_even_mantissas():
    # q = 254 / 0.5 = 508: [254, -127, 0; 63.5, 0, 0] -> even integers (Lava drops the LSB of mixed weights)
    q = quantize_weights(np.array([[0.5, -0.25, 0.0], [0.125, 0.0, 0.0]]), 508.0)
    assert q.sign_mode == SIGN_MIXED and q.exp == 0
    np.testing.assert_array_equal(q.mant, [[254, -128, 0], [64, 0, 0]])
    assert q.zero_rows == 0 and q.nnz == 3


def test_excitatory_weights_keep_all_eight_bits():
    # q = 255: [255, 127.5 -> 128 (half to even), 0.51 -> 1, 0]
    q = quantize_weights(np.array([[1.0, 0.5], [0.002, 0.0]]), 255.0)
    assert q.sign_mode == SIGN_EXCITATORY and q.exp == 0
    np.testing.assert_array_equal(q.mant, [[255, 128], [1, 0]])


def test_inhibitory_weights():
    q = quantize_weights(np.array([[-1.0, -0.25]]), 255.0)
    assert q.sign_mode == SIGN_INHIBITORY and q.exp == 0
    np.testing.assert_array_equal(q.mant, [[-255, -64]])


def test_small_matrix_gets_a_negative_exponent():
    # max 0.5 at scale 1: log2(0.5 / 255) = -8.99 -> exponent -8, mantissas 0.5 * 256 = 128 and 64
    q = quantize_weights(np.array([[0.5, 0.25]]), 1.0)
    assert q.exp == -8
    np.testing.assert_array_equal(q.mant, [[128, 64]])


def test_large_matrix_gets_a_positive_exponent():
    # 1000 / 254 = 3.94 -> exponent 2: [250, -0.75 -> 0]
    q = quantize_weights(np.array([[1000.0, -3.0]]), 1.0)
    assert q.exp == 2 and q.sign_mode == SIGN_MIXED
    np.testing.assert_array_equal(q.mant, [[250, 0]])


def test_decays_are_12_bit_and_clamped():
    d, clamped = quantize_decay(np.array([0.0, 0.5, 0.99, 0.9999, 0.99999]))
    # 0.99 * 4096 = 4055.04; 0.9999 * 4096 = 4095.59 and 0.99999 * 4096 = 4095.96 both round to 4096 -> 4095
    np.testing.assert_array_equal(d, [0, 2048, 4055, 4095, 4095])
    assert clamped == 2
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        quantize_decay(np.array([1.0]))


def test_bias_mantissa_and_exponent():
    # max 20000 > 4095: exponent ceil(log2(20000 / 4095)) = 3; 100 / 8 = 12.5 -> 12, -625, 2500
    mant, exp, clipped = quantize_bias(np.array([100.0, -5000.0, 20000.0]))
    assert exp == 3 and clipped == 0
    np.testing.assert_array_equal(mant, [12, -625, 2500])


def test_block_scale_respects_the_17_bit_threshold():
    assert block_scale(_vanilla_block([[0.5, -0.25]], [0, 0], [1.0], [0.5])) == pytest.approx(508.0)
    # tiny weights: 254 / 1e-4 would put theta = 1 at 2.54e6 > 131071, so q = 131071
    assert block_scale(_vanilla_block([[1e-4, 0.0]], [0, 0], [1.0], [0.5])) == pytest.approx(131071.0)


def test_quantize_block_hand_derived():
    b = _vanilla_block([[0.5, -0.25], [0.125, 0.0]], [0.01, 0.0], [1.0, 0.5], [0.5, 0.9])
    q = quantize_block(b)
    assert q.scale == pytest.approx(508.0)
    assert len(q.weight.parts) == 1  # not dendritic: one Sparse
    np.testing.assert_array_equal(q.weight.parts[0].mant, [[254, -128], [64, 0]])
    np.testing.assert_array_equal(q.vth, [508, 254])
    # bias in state units: 0.01 * 508 * 64 = 325.12 -> 325, exponent 0
    np.testing.assert_array_equal(q.bias_mant, [325, 0])
    assert q.bias_exp == 0
    np.testing.assert_array_equal(q.soma_decay, [2048, 3686])  # 0.9 * 4096 = 3686.4
    assert q.dequantize_state(np.array([508 * 64])) == pytest.approx([1.0])


def test_all_zero_rows_and_clamped_decays_warn():
    b = _vanilla_block([[1.0, 0.0], [0.001, 0.0]], [0, 0], [1.0, 1.0], [0.5, 0.99995])
    with pytest.warns(QuantizationWarning) as record:
        q = quantize_block(b)
    messages = " ".join(str(r.message) for r in record)
    assert "1 of 2 weight rows" in messages and "clamped" in messages
    assert q.weight.zero_rows == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quantize_block(b, warn=False)


@settings(max_examples=25, deadline=None)
@given(
    w=arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 6)), elements=st.floats(-3, 3, width=32)),
    scale=st.floats(0.5, 2000.0),
)
def test_mantissas_survive_lavas_own_clip_and_truncate(w, scale):
    """What Lava's Sparse (fixed_pt) does to the weights on its first step leaves our mantissas unchanged."""
    from lava.utils.weightutils import SignMode, clip_weights, truncate_weights

    q = quantize_weights(w, scale)
    mode = SignMode(q.sign_mode)
    lava = truncate_weights(clip_weights(q.mant, mode, num_bits=8), mode, num_weight_bits=8)
    np.testing.assert_array_equal(lava, q.mant)
    # and the quantisation error is at most one mantissa step (2 for mixed) at the chosen exponent
    step = (2 if q.sign_mode == SIGN_MIXED else 1) * 2.0**q.exp / scale
    if q.exp > -8:
        assert np.max(np.abs(q.mant * 2.0**q.exp / scale - w)) <= step / 2 + 1e-12


def _dhlif_block(weight, branches, dend_decay):
    w = np.asarray(weight, np.float64)
    n = w.shape[0] // branches
    return Block(
        "dhlif", w.shape[1], n, branches, False, w, w != 0, np.zeros(w.shape[0]), False,
        np.asarray(dend_decay, np.float64), np.full(n, 0.5), np.ones(n), "subtract", 1e-3, name="dh",
    )  # fmt: skip


def test_branches_get_their_own_exponent_hand_derived():
    """Rows n * D + d: a slow branch 0 with large weights, a fast branch 1 with small ones (2 neurons, D = 2)."""
    w = [[8.0, -4.0, 0.0], [0.0, 0.0, 0.5], [0.0, 2.0, 0.0], [0.25, 0.0, -0.125]]
    qm = quantize_matrix(np.asarray(w), 254 / 8, 2)  # the plain scale: largest weight 8 -> mantissa 254, exponent 0
    # branch 0 (rows 0, 2): mixed, max 254 -> exponent 0; branch 1 (rows 1, 3): mixed, max 0.5 * 31.75 = 15.875
    # -> exponent ceil(log2(15.875 / 254)) = -4, mantissas 2 * round(x * 16 / 2): 0.5 -> 254, 0.25 -> 127 -> 128 (even),
    # -0.125 -> -63.5 -> -64
    assert qm.exps == (0, -4) and qm.sign_modes == (SIGN_MIXED, SIGN_MIXED)
    first, second = qm.parts
    np.testing.assert_array_equal(first.mant, [[254, -128, 0], [0, 0, 0], [0, 64, 0], [0, 0, 0]])
    np.testing.assert_array_equal(second.mant, [[0, 0, 0], [0, 0, 254], [0, 0, 0], [128, 0, -64]])
    # one matrix for the whole block would give branch 1 the mantissas 16, 8 and -4 (exponent 0): 3 to 5 bits
    single = quantize_weights(np.asarray(w), 254 / 8)
    np.testing.assert_array_equal(single.mant[[1, 3]], [[0, 0, 16], [8, 0, -4]])
    # what the port receives: Lava's floor(sum of mantissas / 16) for the negative exponent
    s = np.array([1, 0, 1])
    np.testing.assert_array_equal(qm.accumulate(s), [254, 254 >> 4, 0, (128 - 64) >> 4])
    assert qm.nnz == int(np.count_nonzero(w))

    # quantize_block raises q until the fast branch's largest weight gets mantissa 254 at exponent 0:
    # q = min(254 / 0.5, 32767 / 12 (largest row sum |8| + |-4|)) = 508; branch 0 then needs 8 * 508 / 254 = 16 = 2**4
    q = quantize_block(_dhlif_block(w, 2, [[0.99, 0.5], [0.99, 0.5]]))
    assert q.scale == pytest.approx(508.0)
    assert q.weight.exps == (4, 0)
    np.testing.assert_array_equal(q.weight.parts[0].mant[[0, 2]], [[254, -128, 0], [0, 64, 0]])
    np.testing.assert_array_equal(q.weight.parts[1].mant[[1, 3]], [[0, 0, 254], [128, 0, -64]])
    np.testing.assert_array_equal(q.vth, [508, 508])
    # the row-sum cap: 254 / 0.01 = 25400 would let row 0 (sum 12) reach 304800 > 32767 weight units
    w_small = np.array(w) * [[1], [0.02], [1], [0.02]]
    assert block_scale(_dhlif_block(w_small, 2, [[0.99, 0.5], [0.99, 0.5]])) == pytest.approx(32767 / 12)
    # D = 1 and single-exponent blocks keep the plain rule
    assert block_scale(_dhlif_block(w, 1, [[0.99], [0.99], [0.99], [0.99]])) == pytest.approx(254 / 8)


def test_branches_with_equal_exponent_share_one_sparse():
    w = [[1.0, -0.5], [-0.75, 0.25], [0.5, 1.0], [0.0, -1.0]]  # both branches mixed, both reach exponent 0
    q = quantize_block(_dhlif_block(w, 2, [[0.9, 0.1], [0.9, 0.1]]))
    assert q.weight.exps == (0,)
    np.testing.assert_array_equal(q.weight.parts[0].mant, quantize_weights(np.asarray(w), q.scale).mant)


@settings(max_examples=25, deadline=None)
@given(
    d=st.integers(1, 4),
    n=st.integers(1, 4),
    m=st.integers(1, 6),
    gains=st.lists(st.floats(0.01, 100.0), min_size=4, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_per_branch_split_is_exact_bookkeeping_and_never_coarser(d, n, m, gains, seed):
    """Parts cover disjoint rows, keep every synapse, are what Lava's Sparse keeps, and no branch gets a larger
    exponent (a coarser step) than one shared exponent would give it."""
    from lava.utils.weightutils import SignMode, clip_weights, truncate_weights

    rng = np.random.default_rng(seed)
    w = rng.normal(0, 1, (n * d, m)) * np.repeat(np.array(gains[:d])[None], n, 0).reshape(-1, 1)
    w[rng.random(w.shape) < 0.3] = 0.0
    scale = 254.0 / max(np.abs(w).max(), 1e-9)
    qm = quantize_matrix(w, scale, d)
    single = quantize_weights(w, scale)
    owner = np.zeros(w.shape, int)
    for part in qm.parts:
        owner += part.mant != 0
        mode = SignMode(part.sign_mode)
        np.testing.assert_array_equal(truncate_weights(clip_weights(part.mant, mode, 8), mode, 8), part.mant)
        assert part.exp <= single.exp
        rows = np.flatnonzero(np.any(part.mant != 0, axis=1))
        step = (2 if part.sign_mode == SIGN_MIXED else 1) * 2.0**part.exp
        if part.exp > -8 and rows.size:
            assert np.max(np.abs(part.mant[rows] * 2.0**part.exp - w[rows] * scale)) <= step / 2 + 1e-9
    assert owner.max() <= 1  # disjoint
    assert qm.nnz == int(np.sum(owner))
    s = rng.integers(0, 2, m)
    np.testing.assert_array_equal(qm.accumulate(s), sum(sparse_output(p, s) for p in qm.parts))


def test_matrix_shape_must_match_branches():
    with pytest.raises(ValueError, match=r"\(N \* 3, M\) matrix for 3 branches"):
        quantize_matrix(np.ones((4, 2)), 1.0, 3)


def test_full_scale_weight_is_not_pushed_up_one_exponent_by_rounding():
    """254 / m * m is 254 + 1 ulp for this float32 weight (a trained model's largest): still exponent 0."""
    m = float(np.float32(14.731618))
    assert m * (254.0 / m) > 254.0
    q = quantize_weights(np.array([[m, -1.0]]), 254.0 / m)
    assert q.exp == 0
    np.testing.assert_array_equal(q.mant, [[254, -18]])  # -17.24 -> even -18

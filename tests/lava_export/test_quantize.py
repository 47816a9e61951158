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
    quantize_weights,
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
    np.testing.assert_array_equal(q.weight.mant, [[254, -128], [64, 0]])
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

"""Automatic fixed-point quantisation of norse-dh blocks for Lava's ``fixed_pt`` models (pure NumPy).

Units (Loihi style, as Lava's bit-accurate LIF and Sparse). One scale ``q`` per block (layer) maps model units to
integer *weight units*; neuron state lives in *state units* = weight units << 6::

    weights   W ~ mant * 2**exp / q       8-bit mantissa per synapse, one exponent in [-8, 7] per Sparse matrix
                                          (MIXED sign: even integers in [-256, 254]; EXCITATORY [0, 255];
                                          INHIBITORY [-255, 0], exactly what Lava's Sparse keeps after its own
                                          clip_weights / truncate_weights)
    threshold theta ~ vth / q             17-bit unsigned, compared as u > vth << 6
    bias      b ~ bias_mant * 2**bias_exp / (64 q)    13-bit signed mantissa, 3-bit exponent
    decays    f ~ D / 4096                12-bit unsigned D = round(4096 f), clamped to [0, 4095]

``q = min(254 / max|W|, 131071 / max theta)`` (the block's largest weight gets a full 8-bit mantissa at exponent 0,
the threshold fits 17 bits); the recurrent matrix of a DH-SRNN layer shares ``q`` (both feed the same compartments)
and gets its own exponent. A matrix whose largest value is far below the block's maximum uses a negative exponent
(Lava sums the mantissas, then shifts right), so it keeps 8 significant bits.

Warnings (:class:`QuantizationWarning`): rows (branches) with non-zero float weights whose quantised weights are all
zero (those branches receive no input in fixed point), decays that round to 4096 and are clamped to 4095, biases
or thresholds clipped to their range.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

DECAY_BITS = 12
DECAY_UNITY = 2**DECAY_BITS
ACT_SHIFT = 6
VTH_MAX = 2**17 - 1
BIAS_MANT_MIN, BIAS_MANT_MAX = -(2**12), 2**12 - 1
BIAS_EXP_MAX = 7
WEIGHT_EXP_MIN, WEIGHT_EXP_MAX = -8, 7
# Lava SignMode values (lava.utils.weightutils.SignMode), kept as ints so this module needs no Lava import.
SIGN_MIXED, SIGN_EXCITATORY, SIGN_INHIBITORY = 1, 2, 3
_MANT_RANGE = {SIGN_MIXED: (-256, 254), SIGN_EXCITATORY: (0, 255), SIGN_INHIBITORY: (-255, 0)}


class QuantizationWarning(UserWarning):
    """A quantised parameter lost information (all-zero rows, clamped decays, clipped bias or threshold)."""


@dataclass
class QuantizedWeights:
    """One Sparse matrix in Loihi form: ``W ~ mant * 2**exp / scale``."""

    mant: np.ndarray  # int32, same shape as the float matrix
    exp: int
    sign_mode: int  # SIGN_MIXED / SIGN_EXCITATORY / SIGN_INHIBITORY
    zero_rows: int  # rows with non-zero float weights whose mantissas are all zero

    @property
    def nnz(self) -> int:
        return int(np.count_nonzero(self.mant))


@dataclass
class QuantizedBlock:
    """Integer parameters of one block for the ``fixed_pt`` models (see the module docstring)."""

    kind: str
    name: str
    scale: float  # q: weight units per model unit
    weight: QuantizedWeights  # feed-forward (N*D, M)
    rec_weight: QuantizedWeights | None  # recurrent (N*D, N)
    bias_mant: np.ndarray  # int32 (N*D,)
    bias_exp: int
    dend_decay: np.ndarray | None  # int32 (N, D), dhlif only
    soma_decay: np.ndarray | None  # int32 (N,): soma or readout decay (None for linear: decay 0)
    vth: np.ndarray | None  # int32 (N,), spiking kinds

    def dequantize_state(self, values: np.ndarray) -> np.ndarray:
        """State units -> model units (``/ (64 q)``), e.g. for the readout membrane."""
        return np.asarray(values, dtype=np.float64) / (self.scale * 2**ACT_SHIFT)


def sign_mode_of(w: np.ndarray) -> int:
    """Lava's rule (``determine_sign_mode``): all >= 0 excitatory, all <= 0 inhibitory, else mixed."""
    if w.size == 0 or np.min(w) >= 0:
        return SIGN_EXCITATORY
    if np.max(w) <= 0:
        return SIGN_INHIBITORY
    return SIGN_MIXED


def quantize_weights(w: np.ndarray, scale: float, what: str = "weights") -> QuantizedWeights:
    """8-bit mantissa and a shared exponent for ``w * scale`` (see the module docstring).

    The exponent is the smallest in [-8, 7] at which the largest magnitude fits the mantissa range of the matrix's
    sign mode; MIXED mantissas are rounded to even integers (Lava drops their least significant bit).
    """
    w = np.asarray(w, dtype=np.float64)
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{what}: weights must be finite")
    mode = sign_mode_of(w)
    lo, hi = _MANT_RANGE[mode]
    top = float(np.max(np.abs(w))) * scale if w.size else 0.0
    if top == 0.0:
        return QuantizedWeights(np.zeros(w.shape, np.int32), 0, mode, 0)
    limit = hi if mode != SIGN_INHIBITORY else -lo
    exp = math.ceil(math.log2(top / limit))
    exp = min(max(exp, WEIGHT_EXP_MIN), WEIGHT_EXP_MAX)
    x = w * scale / 2.0**exp
    mant = 2.0 * np.round(x / 2.0) if mode == SIGN_MIXED else np.round(x)
    mant = np.clip(mant, lo, hi).astype(np.int32)
    nonzero_rows = np.any(w != 0, axis=1) if w.ndim == 2 else np.zeros(0, bool)
    zero_rows = int(np.sum(nonzero_rows & ~np.any(mant != 0, axis=1))) if w.ndim == 2 else 0
    return QuantizedWeights(mant, int(exp), mode, zero_rows)


def quantize_decay(factor: np.ndarray, what: str = "decay") -> tuple[np.ndarray, int]:
    """``round(4096 f)`` clamped to the 12-bit range [0, 4095]; returns ``(ints, number clamped)``."""
    f = np.asarray(factor, dtype=np.float64)
    if np.any(~np.isfinite(f)) or np.any(f < 0) or np.any(f >= 1):
        raise ValueError(f"{what}: per-step decays must lie in [0, 1), got range [{f.min()}, {f.max()}]")
    d = np.round(f * DECAY_UNITY)
    clamped = int(np.sum(d > DECAY_UNITY - 1))
    return np.clip(d, 0, DECAY_UNITY - 1).astype(np.int32), clamped


def quantize_bias(bias_state: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Bias in state units -> ``(mant, exp, clipped)`` with a 13-bit signed mantissa and exponent in [0, 7]."""
    b = np.asarray(bias_state, dtype=np.float64)
    top = float(np.max(np.abs(b))) if b.size else 0.0
    exp = 0 if top <= BIAS_MANT_MAX else math.ceil(math.log2(top / BIAS_MANT_MAX))
    exp = min(exp, BIAS_EXP_MAX)
    x = np.round(b / 2.0**exp)
    clipped = int(np.sum((x < BIAS_MANT_MIN) | (x > BIAS_MANT_MAX)))
    return np.clip(x, BIAS_MANT_MIN, BIAS_MANT_MAX).astype(np.int32), int(exp), clipped


def block_scale(block) -> float:
    """``q = min(254 / max|W|, 131071 / max theta)`` (1 if the block has neither weights nor threshold)."""
    w_max = float(np.max(np.abs(block.weight))) if block.weight.size else 0.0
    q = 254.0 / w_max if w_max > 0 else math.inf
    if block.v_th is not None:
        th_max = float(np.max(block.v_th))
        if th_max > 0:
            q = min(q, VTH_MAX / th_max)
    return 1.0 if math.isinf(q) else q


def quantize_block(block, warn: bool = True) -> QuantizedBlock:
    """Quantise one ``nir_bridge.patterns.Block`` (warnings as described in the module docstring)."""
    where = f"block {block.name!r} ({block.kind})"
    q = block_scale(block)
    m = block.input_size
    w_ff = quantize_weights(block.weight[:, :m], q, where)
    w_rec = quantize_weights(block.weight[:, m:], q, where) if block.recurrent else None
    bias_mant, bias_exp, bias_clipped = quantize_bias(np.asarray(block.bias, np.float64) * q * 2**ACT_SHIFT)
    dend = soma = vth = None
    clamped = 0
    if block.dend_decay is not None:
        dend, c = quantize_decay(block.dend_decay, where + " dendritic decay")
        clamped += c
    if block.soma_decay is not None:
        soma, c = quantize_decay(block.soma_decay, where + " decay")
        clamped += c
    vth_clipped = 0
    if block.v_th is not None:
        th = np.asarray(block.v_th, np.float64)
        if np.any(th < 0):
            raise ValueError(f"{where}: fixed point needs non-negative thresholds, got min {th.min()}")
        x = np.round(th * q)
        vth_clipped = int(np.sum(x > VTH_MAX))
        vth = np.clip(x, 0, VTH_MAX).astype(np.int32)
    if warn:
        zero_rows = w_ff.zero_rows + (w_rec.zero_rows if w_rec is not None else 0)
        if zero_rows:
            warnings.warn(
                f"{where}: {zero_rows} of {block.weight.shape[0]} weight rows with non-zero float weights quantise "
                f"to all-zero 8-bit weights (scale {q:.4g}, exponent {w_ff.exp}); those branches get no input",
                QuantizationWarning,
                stacklevel=2,
            )
        if clamped:
            warnings.warn(
                f"{where}: {clamped} decay factors round to 4096/4096 and are clamped to 4095/4096 (12-bit range)",
                QuantizationWarning,
                stacklevel=2,
            )
        if bias_clipped or vth_clipped:
            warnings.warn(
                f"{where}: {bias_clipped} biases and {vth_clipped} thresholds exceed their 13-/17-bit range and are "
                "clipped",
                QuantizationWarning,
                stacklevel=2,
            )
    return QuantizedBlock(block.kind, block.name, q, w_ff, w_rec, bias_mant, bias_exp, dend, soma, vth)


__all__ = [
    "QuantizationWarning",
    "QuantizedBlock",
    "QuantizedWeights",
    "block_scale",
    "quantize_bias",
    "quantize_block",
    "quantize_decay",
    "quantize_weights",
    "sign_mode_of",
]

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
the threshold fits 17 bits); the recurrent matrix of a DH-SRNN layer shares ``q`` (both feed the same compartments).

**One exponent per branch.** The DH-LIF branch update ``i <- a_d i + (1 - a_d) I`` has a normalised input gain, so
a branch's trained weights scale like ``1 / (1 - a_d)``: a slow branch (``a ~ 0.99``) carries weights several
times larger than a fast one, and one exponent for the whole matrix leaves the fast branch's weights 3-5 bits
(measured on the 3000-iteration multi-timescale XOR, seed 2, grouped mask: max|W| 14.6 on the slow branch, 3.2 on
the fast one; 2.6 points of accuracy lost, all of it from the hidden weights: exact weights with every other
quantity in fixed point lose nothing, 12-bit decays, rtz12 rounding, threshold, bias and 24-bit limits at most 0.15
point each). A ``dhlif`` matrix with ``D > 1`` branches is therefore quantised per branch (rows ``n * D + d`` for
each ``d``): each branch gets the exponent its own largest weight needs and its own sign mode. Branches whose
``(exponent, sign mode)`` coincide share one ``Sparse``; the others become further ``Sparse`` processes on the same
input port (:class:`QuantizedMatrix`; Lava sums the values an input port receives). Their rows are disjoint, so
every synapse still exists once (the synapse count does not change) and each compartment receives the output of
exactly one of them: this is what Lava's ``Sparse`` computes with one exponent per process, nothing else changes.

For such a block ``q`` is raised to ``min(254 / min_d max|W_d|, 32767 / max_row sum|W_row|, 254 * 2**7 / max|W|)``
when that is larger (still capped by the threshold; the last term keeps every exponent <= 7), so that every branch's largest weight gets a full mantissa at an exponent >= 0:
a negative exponent would make Lava floor the shifted sum (a bias of half a weight unit per active step; on the
two-timescale model of the tests it made the split worse than one exponent), while the row-sum cap keeps the largest possible activation (every
input of a row spiking) within the 16-bit activation of Lava's ports, hence the 24-bit state free of wrap-around.
``D = 1`` blocks keep one matrix and the plain ``q``, bit-identical to before.

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
ACT_MAX = 2**15 - 1  # 16-bit signed activation (Lava's a_in / a_out precision)
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


def sparse_output(q: QuantizedWeights, s: np.ndarray) -> np.ndarray:
    """Lava's bit-accurate ``Sparse``: the mantissas of the active inputs summed, then shifted by the exponent."""
    acc = q.mant.astype(np.int64) @ np.asarray(s).astype(np.int64)
    return acc << q.exp if q.exp >= 0 else acc >> -q.exp


@dataclass
class QuantizedMatrix:
    """A weight matrix as one or more ``Sparse`` matrices on the same input port (disjoint rows, one exponent each).

    Every part has the full shape (zeros outside its rows; ``Sparse`` stores only the non-zero weights).
    """

    parts: list[QuantizedWeights]

    @property
    def nnz(self) -> int:
        return sum(p.nnz for p in self.parts)

    @property
    def zero_rows(self) -> int:
        return sum(p.zero_rows for p in self.parts)

    @property
    def exps(self) -> tuple[int, ...]:
        return tuple(p.exp for p in self.parts)

    @property
    def sign_modes(self) -> tuple[int, ...]:
        return tuple(p.sign_mode for p in self.parts)

    def effective(self) -> np.ndarray:
        """Quantised weights in weight units, ``sum_parts mant * 2**exp`` (float64)."""
        return sum(p.mant * 2.0**p.exp for p in self.parts)

    def accumulate(self, s: np.ndarray) -> np.ndarray:
        """What the input port receives for input spikes ``s``: the sum of the parts' :func:`sparse_output`."""
        return sum(sparse_output(p, s) for p in self.parts)


@dataclass
class QuantizedBlock:
    """Integer parameters of one block for the ``fixed_pt`` models (see the module docstring)."""

    kind: str
    name: str
    scale: float  # q: weight units per model unit
    weight: QuantizedMatrix  # feed-forward (N*D, M)
    rec_weight: QuantizedMatrix | None  # recurrent (N*D, N)
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
    exp = math.ceil(math.log2(top / limit) - 1e-9)  # 254 / m * m can be 254 + 1 ulp: that must stay exponent 0
    exp = min(max(exp, WEIGHT_EXP_MIN), WEIGHT_EXP_MAX)
    x = w * scale / 2.0**exp
    mant = 2.0 * np.round(x / 2.0) if mode == SIGN_MIXED else np.round(x)
    mant = np.clip(mant, lo, hi).astype(np.int32)
    nonzero_rows = np.any(w != 0, axis=1) if w.ndim == 2 else np.zeros(0, bool)
    zero_rows = int(np.sum(nonzero_rows & ~np.any(mant != 0, axis=1))) if w.ndim == 2 else 0
    return QuantizedWeights(mant, int(exp), mode, zero_rows)


def quantize_matrix(w: np.ndarray, scale: float, branches: int = 1, what: str = "weights") -> QuantizedMatrix:
    """Per-branch exponents for a matrix with rows ``n * branches + d`` (see "One exponent per branch" above).

    Each branch is quantised on its own (:func:`quantize_weights`); branches with equal ``(exp, sign_mode)`` are
    merged into one part (their rows are disjoint, so merging changes nothing), empty branches are dropped.
    """
    w = np.asarray(w, dtype=np.float64)
    if branches < 1 or w.ndim != 2 or w.shape[0] % branches:
        raise ValueError(f"{what}: expected a (N * {branches}, M) matrix for {branches} branches, got {w.shape}")
    if branches == 1:
        return QuantizedMatrix([quantize_weights(w, scale, what)])
    merged: dict[tuple[int, int], QuantizedWeights] = {}
    lost = 0
    for d in range(branches):
        wd = np.zeros_like(w)
        wd[d::branches] = w[d::branches]
        qd = quantize_weights(wd, scale, what)
        if qd.nnz == 0:  # nothing left to send (its all-zero rows, if any, are still counted below)
            lost += qd.zero_rows
            continue
        key = (qd.exp, qd.sign_mode)
        if key in merged:
            m = merged[key]
            merged[key] = QuantizedWeights(m.mant + qd.mant, m.exp, m.sign_mode, m.zero_rows + qd.zero_rows)
        else:
            merged[key] = qd
    parts = list(merged.values()) or [quantize_weights(np.zeros_like(w), scale, what)]
    parts[0].zero_rows += lost
    return QuantizedMatrix(parts)


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
    """The block's scale ``q`` (see the module docstring; 1 if the block has neither weights nor threshold).

    ``q = min(254 / max|W|, 131071 / max theta)``; for a ``dhlif`` block with ``D > 1`` branches it is raised to
    ``min(254 / min_d max|W_d|, 32767 / max_row sum|W_row|, 254 * 2**7 / max|W|)`` when that is larger (still
    capped by the threshold).
    """
    w = np.abs(np.asarray(block.weight, np.float64))
    w_max = float(np.max(w)) if w.size else 0.0
    q = 254.0 / w_max if w_max > 0 else math.inf
    d = block.branches if block.kind == "dhlif" else 1
    if d > 1 and w_max > 0:
        branch_max = [float(np.max(w[k::d])) for k in range(d)]
        smallest = min(b for b in branch_max if b > 0)
        q = max(q, min(254.0 / smallest, ACT_MAX / float(np.max(w.sum(1))), 254.0 * 2**WEIGHT_EXP_MAX / w_max))
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
    d = block.branches if block.kind == "dhlif" else 1
    w_ff = quantize_matrix(block.weight[:, :m], q, d, where)
    w_rec = quantize_matrix(block.weight[:, m:], q, d, where) if block.recurrent else None
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
                f"to all-zero 8-bit weights (scale {q:.4g}, exponents {list(w_ff.exps)}); those branches get no input",
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
    "QuantizedMatrix",
    "QuantizedWeights",
    "block_scale",
    "quantize_bias",
    "quantize_block",
    "quantize_decay",
    "quantize_matrix",
    "quantize_weights",
    "sign_mode_of",
    "sparse_output",
]

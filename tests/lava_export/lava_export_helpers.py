"""Shared helpers of the lava_export tests: reference models in PyTorch and an integer NumPy reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lava_export.quantize import ACT_SHIFT, DECAY_UNITY, QuantizedBlock
from nir_bridge import export_model, write_nir
from norse_dh.modules import SequentialSNN


def scale_weights(model: torch.nn.Module, gain: float, inhibitory: float = 0.25, seed: int = 0) -> torch.nn.Module:
    """Make random models spike: every weight becomes ``gain * |w|``, a fraction ``inhibitory`` negated (in place)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                sign = torch.where(torch.rand(p.shape, generator=gen, dtype=p.dtype) < inhibitory, -1.0, 1.0)
                p.copy_(gain * p.abs() * sign)
    return model


def random_spikes(batch: int, steps: int, inputs: int, rate: float, seed: int) -> np.ndarray:
    """Bernoulli spikes ``(B, T, M)`` uint8."""
    return (np.random.default_rng(seed).random((batch, steps, inputs)) < rate).astype(np.uint8)


def torch_outputs(model: SequentialSNN, x_btm: np.ndarray) -> list[np.ndarray]:
    """Every layer's output ``(B, T, ...)`` for batch-first spikes, in the model's dtype."""
    dtype = next(model.parameters()).dtype
    x = torch.as_tensor(x_btm, dtype=dtype).permute(1, 0, 2)
    with torch.no_grad():
        return [o.permute(1, 0, 2).numpy() for o in model.forward_all(x)]


def nir_file(model: torch.nn.Module, folder: Path, name: str = "model.nir", dt: float = 1e-3) -> Path:
    """torch -> nir_bridge.export_model -> NIR file."""
    return write_nir(export_model(model, dt), folder / name)


def _rtz12(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * (np.abs(x) // DECAY_UNITY)


def _sparse_out(matrix, s: np.ndarray) -> np.ndarray:
    """Lava Sparse (bit-accurate), summed over the Sparse parts of one input port: per part, the mantissas of the
    active inputs summed, then shifted by the part's exponent (arithmetic right shift = floor for negative ones)."""
    total = np.int64(0)
    for part in matrix.parts:
        acc = part.mant.astype(np.int64) @ s.astype(np.int64)
        total = total + (acc * 2**part.exp if part.exp >= 0 else np.floor_divide(acc, 2 ** (-part.exp)))
    return total


def fixed_reference(blocks, qblocks: list[QuantizedBlock], x_btm: np.ndarray):
    """Integer reference of the fixed-point network (spikes per spiking layer, raw readout), no delay, per sample."""
    b_, t_, _ = x_btm.shape
    spikes, readout = [], None
    layer_in = x_btm.astype(np.int64)
    for blk, q in zip(blocks, qblocks):
        n, d = blk.hidden_size, blk.branches
        bias = q.bias_mant.astype(np.int64).reshape(n, d) * 2**q.bias_exp
        out = np.zeros((b_, t_, n), np.int64)
        for k in range(b_):
            i = np.zeros((n, d), np.int64)
            u = np.zeros(n, np.int64)
            z = np.zeros(n, np.int64)
            for t in range(t_):
                act = _sparse_out(q.weight, layer_in[k, t])
                if blk.kind in ("leaky_readout", "linear"):
                    dec = q.soma_decay.astype(np.int64) if q.soma_decay is not None else np.zeros(n, np.int64)
                    drive = act * 2**ACT_SHIFT + bias[:, 0]
                    u = np.clip(_rtz12(dec * u + (DECAY_UNITY - dec) * drive), -(2**23 - 1), 2**23 - 1)
                    out[k, t] = u
                    continue
                if blk.recurrent:
                    act = act + _sparse_out(q.rec_weight, z)
                drive = act.reshape(n, d) * 2**ACT_SHIFT + bias
                if blk.kind == "dhlif":
                    a = q.dend_decay.astype(np.int64)
                    i = _rtz12(a * i + (DECAY_UNITY - a) * drive)
                    i = ((i + 2**23) % 2**24) - 2**23
                    soma_in = i.sum(1)
                else:
                    soma_in = drive[:, 0]
                bd = q.soma_decay.astype(np.int64)
                vth = q.vth.astype(np.int64) * 2**ACT_SHIFT
                if blk.reset == "subtract":
                    u = _rtz12(bd * u + (DECAY_UNITY - bd) * soma_in) - vth * z
                elif blk.reset == "zero":
                    u = _rtz12(bd * u * (1 - z) + (DECAY_UNITY - bd) * soma_in)
                else:
                    u = _rtz12(bd * u + (DECAY_UNITY - bd) * soma_in)
                u = np.clip(u, -(2**23 - 1), 2**23 - 1)
                z = (u > vth).astype(np.int64)
                out[k, t] = z
        if blk.kind in ("leaky_readout", "linear"):
            readout = out
        else:
            spikes.append(out.astype(np.uint8))
            layer_in = out
    return spikes, readout

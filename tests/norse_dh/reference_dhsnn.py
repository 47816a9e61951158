"""An independent NumPy re-implementation of the DH-SNN reference code (eva1801/DH-SNN, SNN_layers), for tests.

Follows the reference's own structure rather than norse_dh's: the input is zero-padded by concatenation, one dense
Linear over the full masked (N*D) x (M+pad) weight, output reshaped to (B, N, D), factors recomputed as sigmoids each
step, ``mem = mem*alpha + (1-alpha)*R*inputs - v_th*spike`` and ``spike = (mem - v_th) > 0``.
"""

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def reference_dh_sfnn(x, weight, mask, bias, tau_n, tau_m, v_th, reset="subtract", recurrent=False):
    """x: (T, B, M); weight/mask: (N*D, width); returns spikes (T, B, N) and membranes (T, B, N)."""
    steps, batch, m = x.shape
    n, d = tau_n.shape
    width = weight.shape[1]
    w = weight * mask
    d_input = np.zeros((batch, n, d))
    mem = np.zeros((batch, n))
    spike = np.zeros((batch, n))
    spikes, mems = [], []
    for t in range(steps):
        parts = [x[t], spike] if recurrent else [x[t]]
        used = sum(p.shape[1] for p in parts)
        padded = np.concatenate(parts + [np.zeros((batch, width - used))], axis=1)
        k_input = padded @ w.T + (0.0 if bias is None else bias)
        beta = sigmoid(tau_n)
        d_input = beta * d_input + (1 - beta) * k_input.reshape(batch, n, d)
        l_input = d_input.sum(axis=2)
        alpha = sigmoid(tau_m)
        if reset == "subtract":
            mem = mem * alpha + (1 - alpha) * l_input - v_th * spike
        elif reset == "zero":
            mem = mem * alpha * (1 - spike) + (1 - alpha) * l_input
        else:
            mem = mem * alpha + (1 - alpha) * l_input
        spike = (mem - v_th > 0).astype(np.float64)
        spikes.append(spike)
        mems.append(mem)
    return np.stack(spikes), np.stack(mems)

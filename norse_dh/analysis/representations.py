"""Recurrent SNN -> feed-forward layer representations (rtd_stdp.md §2.3, Option T5) and RTD matrices between them.

Option T5 unrolls the recurrent network in time as a 5-layer feed-forward network with input skips: each input is
presented for T steps split into 3 equal windows W1, W2, W3, and for N inputs

- ``L1`` = input spike counts ``sum_t x(t)`` (identical for every model that sees the same spikes),
- ``L2, L3, L4`` = recurrent-population spike counts in W1, W2, W3 (``L3`` plays the bottleneck),
- ``L5`` = readout/decoder output (logits) computed from ``[L2 | L3 | L4]``.

The input feeds every unrolled window (skips L1 -> L2, L3, L4) and the readout sees all windows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from norse_dh.analysis.rtd import ArrayLike, rtd

logger = logging.getLogger(__name__)
LAYERS = ("L1", "L2", "L3", "L4", "L5")


def window_counts(z: Tensor, windows: int = 3) -> list[Tensor]:
    """Spike counts ``(B, N)`` of ``z`` ``(T, B, N)`` in ``windows`` equal consecutive windows."""
    if z.dim() != 3:
        raise ValueError(f"spikes must have shape (T, B, N), got {tuple(z.shape)}")
    if windows < 1 or z.shape[0] % windows:
        raise ValueError(f"T={z.shape[0]} steps cannot be split into {windows} equal windows")
    return [w.sum(0) for w in z.chunk(windows, dim=0)]


def t5_representations(x: Tensor, z: Tensor, readout: ArrayLike, windows: int = 3) -> dict[str, np.ndarray]:
    """The five layer representations ``{"L1": .., "L5": ..}`` as float64 arrays with B rows each.

    ``x`` ``(T, B, M)`` input spikes, ``z`` ``(T, B, N)`` recurrent spikes, ``readout`` ``(B, K)`` readout output.
    """
    if x.shape[:2] != z.shape[:2]:
        raise ValueError(f"input {tuple(x.shape)} and recurrent spikes {tuple(z.shape)} differ in (T, B)")
    if windows != 3:
        raise ValueError(f"Option T5 has three recurrent windows (L2, L3, L4), got windows={windows}")
    readout = torch.as_tensor(readout)
    if readout.dim() != 2 or readout.shape[0] != x.shape[1]:
        raise ValueError(f"readout must have shape (B={x.shape[1]}, K), got {tuple(readout.shape)}")
    counts = window_counts(z, windows)
    arrays = [x.sum(0), *counts, readout]
    return {name: a.detach().to("cpu", torch.float64).numpy() for name, a in zip(LAYERS, arrays)}


def rtd_matrix(
    clouds: Sequence[ArrayLike] | Mapping[str, ArrayLike], constant: str = "raise", **rtd_kwargs
) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric matrix of (symmetrised, batch-averaged) RTD between all pairs of clouds; zero diagonal.

    Returns ``(mean, std)`` matrices; ``rtd_kwargs`` go to :func:`norse_dh.analysis.rtd.rtd` (use a fixed ``seed`` so
    every pair sees the same batches). A constant cloud (e.g. a layer that is silent for every sample of a batch) has
    no geometry: ``constant="raise"`` re-raises the ``ValueError``, ``constant="nan"`` logs it and enters NaN.
    """
    if constant not in ("raise", "nan"):
        raise ValueError(f"constant must be 'raise' or 'nan', got {constant!r}")
    items = list(clouds.values()) if isinstance(clouds, Mapping) else list(clouds)
    k = len(items)
    mean, std = np.zeros((k, k)), np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            try:
                r = rtd(items[i], items[j], **rtd_kwargs)
            except ValueError as err:
                if constant == "raise" or "is constant" not in str(err):
                    raise
                logger.warning("RTD between clouds %d and %d undefined: %s", i, j, err)
                mean[i, j] = mean[j, i] = std[i, j] = std[j, i] = np.nan
                continue
            mean[i, j] = mean[j, i] = r.mean
            std[i, j] = std[j, i] = r.std
    return mean, std


__all__ = ["LAYERS", "rtd_matrix", "t5_representations", "window_counts"]

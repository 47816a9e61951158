"""Marcus lift of spike trains: time-augmented counting paths with jumps replaced by straight segments.

For spike trains of ``K`` neurons on ``[t0, T]`` the path ``x_t = (t, N^1_t, ..., N^K_t)`` is cadlag; its Marcus lift
is the piecewise-linear path through the vertices (all neurons' spikes merged and sorted)::

    (t0, 0), (tau_1, N(tau_1-)), (tau_1, N(tau_1)), ..., (tau_n, N(tau_n-)), (tau_n, N(tau_n)), (T, N(T))

Each vertical segment raises one count by 1. Spike times are vertex coordinates, so any smooth function of the path
(its signature, a signature kernel) is differentiable in the spike times; counts carry no gradient. Padded slots are
placed at ``T`` with unchanged counts: zero-length segments that leave the signature unchanged.

``snnax_compat=True`` reproduces the reference code (snnax ``marcus_lift`` with its ``max_spikes`` budget of events
per sample, all neurons together): only the first ``max_events`` merged events exist (the reference simulation stops
there), and a path that used up the budget ends at the vertex *before* its last jump (the reference rolls its final
vertex out), without a segment to ``T``. Paths with fewer events are unchanged (their padding ends at ``(T, N(T))``).
"""

from __future__ import annotations

import torch
from torch import Tensor


def marcus_lift(
    spike_times: Tensor,
    counts: Tensor,
    horizon: float,
    *,
    t0: float = 0.0,
    time_scale: float = 1.0,
    count_scale: float = 1.0,
    max_events: int | None = None,
    snnax_compat: bool = False,
) -> Tensor:
    """Marcus lift ``(B, 2 n + 2, 1 + K)`` of padded spike trains.

    Parameters:
        spike_times: ``(B, K, M)``; slots ``>= counts`` are padding (any value).
        counts: ``(B, K)`` spikes per neuron (clamped to ``M``: only recorded spikes enter the path).
        horizon: ``T``, the end of the observation window.
        time_scale, count_scale: the time channel is ``(t - t0) / time_scale``, counts are divided by ``count_scale``
            (keep kernel values O(1) for PDE/RBF kernels; 1 = unscaled, as the reference code).
        max_events: number ``n`` of merged events kept per path; default: the largest total count in the batch
            (so every recorded spike enters). Events beyond it are dropped (the counts at ``T`` are those after the
            ``n``-th event).
        snnax_compat: reference-code variant (module docstring); ``max_events`` is then the events budget.

    Returns:
        The vertex sequence, channels ``(time, N^1, ..., N^K)``.
    """
    if spike_times.dim() != 3:
        raise ValueError(f"spike_times must be (B, K, M), got shape {tuple(spike_times.shape)}")
    B, K, M = spike_times.shape
    if counts.shape != (B, K):
        raise ValueError(f"counts must be (B, K) = ({B}, {K}), got {tuple(counts.shape)}")
    if snnax_compat and (max_events is None or int(max_events) < 1):
        raise ValueError(
            f"snnax_compat needs the events budget max_events >= 1 (the reference's max_spikes), got {max_events}"
        )
    if not (time_scale > 0 and count_scale > 0):
        raise ValueError(f"time_scale and count_scale must be > 0, got {time_scale}, {count_scale}")
    cnt = counts.clamp(min=0, max=M)
    valid = torch.arange(M, device=spike_times.device) < cnt[..., None]  # (B, K, M)
    T = torch.as_tensor(float(horizon), dtype=spike_times.dtype, device=spike_times.device)
    times = torch.where(valid, spike_times, T).reshape(B, K * M)
    neuron = torch.arange(K, device=spike_times.device).repeat_interleave(M).expand(B, K * M)
    n = int(cnt.sum(1).max()) if max_events is None else int(max_events)
    n = max(0, min(n, K * M))
    # Stable sort keeps padding (at T) after valid spikes at T; values carry the gradient.
    sorted_t, order = torch.sort(times, dim=1, stable=True)
    sorted_t, order = sorted_t[:, :n], order[:, :n]
    jump = torch.nn.functional.one_hot(neuron.gather(1, order), K).to(spike_times.dtype)
    jump = jump * valid.reshape(B, K * M).gather(1, order)[..., None].to(spike_times.dtype)
    after = jump.cumsum(1)  # N(tau_e) (B, n, K)
    before = after - jump  # N(tau_e-)
    tt = (sorted_t - t0) / time_scale
    pre = torch.cat((tt[..., None], before / count_scale), dim=-1)
    post = torch.cat((tt[..., None], after / count_scale), dim=-1)
    events = torch.stack((pre, post), dim=2).reshape(B, 2 * n, 1 + K)
    start = torch.zeros(B, 1, 1 + K, dtype=spike_times.dtype, device=spike_times.device)
    final_counts = cnt.to(spike_times.dtype) / count_scale
    end_t = torch.full((B, 1), (float(horizon) - t0) / time_scale, dtype=spike_times.dtype, device=spike_times.device)
    end = torch.cat((end_t, final_counts), dim=-1)[:, None, :]
    if max_events is not None:
        end = torch.cat((end_t, after[:, -1, :] / count_scale if n > 0 else final_counts * 0), dim=-1)[:, None, :]
    if snnax_compat and n == int(max_events):
        # Paths that used the whole budget: their n-th event is real; drop its jump and stop there.
        full = (cnt.sum(1) >= n)[:, None, None]
        last_pre = events[:, -2:-1, :]
        events = torch.cat((events[:, :-1, :], torch.where(full, last_pre, events[:, -1:, :])), dim=1)
        end = torch.where(full, last_pre, end)
    return torch.cat((start, events, end), dim=1)


def budget_counts(spike_times: Tensor, counts: Tensor, max_events: int) -> Tensor:
    """Per-neuron counts ``(B, K)`` among the first ``max_events`` spikes of each path (all neurons merged, by time).

    The reference simulator stops a sample after ``max_spikes`` events (all neurons together); since later events do
    not change earlier ones, keeping the first ``max_events`` recorded spikes of a path reproduces that budget.
    """
    if spike_times.dim() != 3:
        raise ValueError(f"spike_times must be (B, K, M), got shape {tuple(spike_times.shape)}")
    B, K, M = spike_times.shape
    if counts.shape != (B, K):
        raise ValueError(f"counts must be (B, K) = ({B}, {K}), got {tuple(counts.shape)}")
    if int(max_events) < 1:
        raise ValueError(f"max_events (events budget per path) must be >= 1, got {max_events}")
    cnt = counts.clamp(min=0, max=M)
    valid = torch.arange(M, device=spike_times.device) < cnt[..., None]
    times = torch.where(valid, spike_times.detach(), torch.inf).reshape(B, K * M)
    order = torch.sort(times, dim=1, stable=True).indices
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(K * M, device=order.device).expand(B, -1))
    keep = valid & (rank.reshape(B, K, M) < int(max_events))
    return keep.sum(-1).to(counts.dtype)

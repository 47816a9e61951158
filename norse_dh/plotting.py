"""Plots of a trained SNN: timing-factor histograms, spike rasters, learning curves (PNG files, no pyplot state).

- :func:`timing_factors` reads every timing factor ``sigmoid(*tau_raw)`` of a module.
- :func:`plot_timing_histograms`: one panel per factor tensor, one colour per dendritic branch, the distribution
  before training (outline) and after (filled), as in the DH-SNN paper's Fig. 3-4 (factor axis 0..1).
- :func:`plot_spike_raster`: the input and the output of every layer for one sample; spikes as dots, non-spiking
  outputs (readout membranes) as lines.
- :func:`plot_learning_curves`: loss and accuracy per epoch for each stage found in the history.

Figures are drawn with ``matplotlib.figure.Figure`` and the Agg canvas, so they are safe in worker threads and never
touch an interactive backend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor, nn

_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")


def timing_factors(module: nn.Module) -> dict[str, Tensor]:
    """``{parameter name: sigmoid(raw)}`` for every parameter whose name ends in ``tau_raw`` (CPU copies)."""
    return {
        name: torch.sigmoid(param.detach()).cpu().clone()
        for name, param in module.named_parameters()
        if name.endswith("tau_raw")
    }


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    FigureCanvasAgg(fig)
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)  # never leave a half-written PNG behind
    return path


def _columns(factor: Tensor) -> list[Tensor]:
    """Per-branch columns of an ``(N, D)`` factor; a 1-D factor is one column."""
    return [factor] if factor.dim() < 2 else list(factor.reshape(-1, factor.shape[-1]).unbind(-1))


def plot_timing_histograms(
    before: Mapping[str, Tensor],
    after: Mapping[str, Tensor] | None,
    path: str | Path,
    bins: int = 20,
    title: str | None = None,
) -> Path:
    """Histograms of timing factors per tensor and branch, before (outline) and after (filled) training."""
    names = list(before) if before else list(after or {})
    if not names:
        raise ValueError("no timing factors to plot (no parameter name ends in 'tau_raw')")
    fig = Figure(figsize=(8.0, 2.4 * len(names)), layout="constrained")
    axes = fig.subplots(len(names), 1, squeeze=False)[:, 0]
    edges = torch.linspace(0.0, 1.0, bins + 1).tolist()
    for ax, name in zip(axes, names):
        for label, factors, kw in (
            ("before", before.get(name) if before else None, dict(histtype="step", linestyle="--", linewidth=1.5)),
            ("after", after.get(name) if after else None, dict(histtype="stepfilled", alpha=0.45)),
        ):
            if factors is None:
                continue
            cols = _columns(factors)
            for d, col in enumerate(cols):
                branch = f"branch {d}" if len(cols) > 1 else name.rsplit(".", 1)[-1]
                ax.hist(col.numpy(), bins=edges, color=_COLOURS[d % len(_COLOURS)], label=f"{branch}, {label}", **kw)
        ax.set_xlim(0.0, 1.0)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("count")
        # Many branches: two legend columns outside the axes so the legend never hides the histograms.
        ax.legend(
            fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            ncol=1 + (len(ax.get_legend_handles_labels()[1]) > 8),
        )
    axes[-1].set_xlabel("timing factor sigmoid(raw) (per-step decay)")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_spike_raster(
    inputs: Tensor,
    layer_outputs: Sequence[Tensor],
    path: str | Path,
    names: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Raster of one sample: ``inputs`` ``(T, M)`` and each layer's output ``(T, N)`` (binary: dots, else lines)."""
    panels = [("input", inputs)] + [
        (names[i] if names and i < len(names) else f"layer {i}", out) for i, out in enumerate(layer_outputs)
    ]
    for name, tensor in panels:
        if tensor.dim() != 2:
            raise ValueError(f"raster panel {name!r} must be (time, units), got shape {tuple(tensor.shape)}")
    fig = Figure(figsize=(7, 1.3 + 1.6 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, tensor) in zip(axes, panels):
        values = tensor.detach().float().cpu()
        binary = bool(((values == 0) | (values == 1)).all())
        if binary:
            t, n = values.nonzero(as_tuple=True)
            ax.scatter(t.numpy(), n.numpy(), s=2, marker="|", color="black")
            ax.set_ylim(-0.5, values.shape[1] - 0.5)
            ax.set_ylabel("unit")
        else:
            for k in range(values.shape[1]):
                ax.plot(values[:, k].numpy(), linewidth=1, label=f"{k}", color=_COLOURS[k % len(_COLOURS)])
            if values.shape[1] <= 8:
                ax.legend(fontsize=7, loc="upper left", ncol=values.shape[1])
            ax.set_ylabel("value")
        ax.set_title(f"{name} ({values.shape[1]} units{', spikes' if binary else ''})", fontsize=9)
    axes[-1].set_xlabel("time step")
    axes[-1].set_xlim(0, panels[0][1].shape[0])
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_learning_curves(history: Sequence[Mapping[str, float]], path: str | Path, title: str | None = None) -> Path:
    """Loss and accuracy per epoch from rows ``{"epoch": e, "train_loss_epoch": ..., "val_acc": ..., ...}``."""
    if not history:
        raise ValueError("learning-curve history is empty")
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    keys = sorted({k for row in history for k in row if k != "epoch"})
    keys = [k for k in keys if f"{k}_epoch" not in keys]  # Lightning logs "x" and "x_epoch" for the same value
    for ax, kind in ((ax_loss, "loss"), (ax_acc, "acc")):
        for key in keys:
            if not (key.endswith(kind) or key.endswith(f"{kind}_epoch")) or key.endswith(f"{kind}_step"):
                continue
            points = [(row["epoch"], row[key]) for row in history if key in row]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", markersize=3, label=key.removesuffix("_epoch"))
        ax.set_xlabel("epoch")
        ax.set_ylabel(kind if kind == "loss" else "accuracy")
        if ax.get_legend_handles_labels()[1]:  # no labelled curves (e.g. a task logging other metrics): no legend
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


__all__ = ["plot_learning_curves", "plot_spike_raster", "plot_timing_histograms", "timing_factors"]

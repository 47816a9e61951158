"""Plots of the RTD study: RTD heat-maps and R-Cross-Barcodes (matplotlib, Agg back-end, written to files)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_rtd_heatmap(matrix: np.ndarray, labels: Sequence[str], path: str | Path, title: str = "RTD") -> Path:
    """Annotated heat-map of a square RTD matrix, saved to ``path``."""
    plt = _pyplot()
    k = len(labels)
    if matrix.shape != (k, k):
        raise ValueError(f"matrix must be ({k}, {k}) for {k} labels, got {matrix.shape}")
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * k, 0.8 + 0.55 * k))
    im = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(k), labels, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(k), labels, fontsize=7)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{matrix[i, j]:.1f}", ha="center", va="center", fontsize=6, color="w")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_barcodes(diagrams: dict[str, np.ndarray], path: str | Path, title: str = "R-Cross-Barcode (H1)") -> Path:
    """One panel per diagram: H1 bars sorted by birth, each a horizontal segment [birth, death]."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(diagrams), figsize=(3.2 * len(diagrams), 3.0), squeeze=False)
    for ax, (name, dgm) in zip(axes[0], diagrams.items()):
        dgm = dgm[np.isfinite(dgm).all(axis=1)]
        dgm = dgm[np.argsort(dgm[:, 0])]
        ax.hlines(np.arange(len(dgm)), dgm[:, 0], dgm[:, 1], lw=0.8)
        ax.set_title(f"{name}\n{len(dgm)} bars, sum {np.sum(dgm[:, 1] - dgm[:, 0]):.2f}", fontsize=8)
        ax.set_xlabel("filtration (normalised distance)", fontsize=7)
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = ["plot_barcodes", "plot_rtd_heatmap"]

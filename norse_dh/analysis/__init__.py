"""Representation analysis: Representation Topology Divergence and layer representations of recurrent SNNs."""

from norse_dh.analysis.representations import LAYERS, rtd_matrix, t5_representations, window_counts
from norse_dh.analysis.rtd import (
    BACKENDS,
    RTDResult,
    barcode_length,
    cross_barcode_matrix,
    h1_diagram,
    normalised_distances,
    r_cross_barcode,
    rtd,
    rtd_one_sided,
)

__all__ = [
    "BACKENDS",
    "LAYERS",
    "RTDResult",
    "barcode_length",
    "cross_barcode_matrix",
    "h1_diagram",
    "normalised_distances",
    "r_cross_barcode",
    "rtd",
    "rtd_matrix",
    "rtd_one_sided",
    "t5_representations",
    "window_counts",
]

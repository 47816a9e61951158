"""Losses on spike trains: Marcus lift, signatures, signature kernels (Goursat PDE), MMD, scoring rule."""

from norse_dh.losses.marcus import budget_counts, marcus_lift
from norse_dh.losses.mmd import expected_signature_loss, match_spike_counts, sig_mmd2, sig_score
from norse_dh.losses.signature import (
    BACKENDS,
    LinearKernel,
    RBFKernel,
    make_static_kernel,
    sig_kernel,
    sig_kernel_gram,
    signature_depth3,
)

__all__ = [
    "BACKENDS",
    "LinearKernel",
    "RBFKernel",
    "budget_counts",
    "expected_signature_loss",
    "make_static_kernel",
    "marcus_lift",
    "match_spike_counts",
    "sig_kernel",
    "sig_kernel_gram",
    "sig_mmd2",
    "sig_score",
    "signature_depth3",
]

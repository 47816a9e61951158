"""Losses between laws of paths: signature-kernel MMD^2, the kernel scoring rule, the depth-3 expected-signature loss.

With ``k`` a signature kernel, ``X, X'`` model paths and ``Y, Y'`` data paths::

    MMD^2(P, Q) = E k(X, X') - 2 E k(X, Y) + E k(Y, Y')          (unbiased U-statistic: Gram diagonals dropped)
    score(P, y) = E k(X, X') - 2 E k(X, y)                        (averaged over data y; MMD^2 minus a theta-free term)
    expected-signature loss = mean over words w of |w| <= 3 of (mean_b S_w(X_b) - mean_b S_w(Y_b))^2

The last is what the reference runs optimise (a biased MMD^2 of the depth-3 truncated linear signature kernel divided
by the number of words ``d + d^2 + d^3``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from norse_dh.losses.signature import LinearKernel, RBFKernel, sig_kernel_gram, signature_depth3


def _offdiag_mean(K: Tensor) -> Tensor:
    n = K.shape[0]
    if n < 2:
        raise ValueError(f"an unbiased estimate needs at least 2 paths per sample, got {n}")
    return (K.sum() - K.diagonal().sum()) / (n * (n - 1))


def sig_mmd2(
    x: Tensor,
    y: Tensor,
    *,
    static_kernel: LinearKernel | RBFKernel | None = None,
    dyadic_order: int = 0,
    backend: str = "torch",
) -> Tensor:
    """Unbiased signature-kernel ``MMD^2`` between path samples ``x (B1, L1, d)`` and ``y (B2, L2, d)``."""
    kw = dict(static_kernel=static_kernel, dyadic_order=dyadic_order, backend=backend)
    kxx = sig_kernel_gram(x, x, **kw)
    kyy = sig_kernel_gram(y, y, **kw)
    kxy = sig_kernel_gram(x, y, **kw)
    return _offdiag_mean(kxx) - 2 * kxy.mean() + _offdiag_mean(kyy)


def sig_score(
    x: Tensor,
    y: Tensor,
    *,
    static_kernel: LinearKernel | RBFKernel | None = None,
    dyadic_order: int = 0,
    backend: str = "torch",
) -> Tensor:
    """Signature-kernel scoring rule of model sample ``x`` against data ``y``, averaged over ``y``.

    ``E k(X, X') - 2 E k(X, y)``; its expectation over data equals ``MMD^2`` minus ``E k(Y, Y')``.
    """
    kw = dict(static_kernel=static_kernel, dyadic_order=dyadic_order, backend=backend)
    return _offdiag_mean(sig_kernel_gram(x, x, **kw)) - 2 * sig_kernel_gram(x, y, **kw).mean()


def expected_signature_loss(x: Tensor, y: Tensor, *, backend: str = "torch") -> Tensor:
    """Depth-3 expected-signature loss ``mean_w (E S_w(X) - E S_w(Y))^2`` over words of length 1..3.

    ``backend="pysiglib"`` computes the signatures with ``pysiglib.torch_api.sig`` (same numbers).
    """
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"x and y must have the same number of channels, got {x.shape[-1]} and {y.shape[-1]}")
    if backend == "pysiglib":
        import pysiglib.torch_api as pst

        sx, sy = pst.sig(x, degree=3), pst.sig(y, degree=3)
    elif backend == "torch":
        sx, sy = signature_depth3(x), signature_depth3(y)
    else:
        raise ValueError(f"backend must be 'torch' or 'pysiglib', got {backend!r}")
    return (sx.mean(0) - sy.mean(0)).pow(2).mean()


def match_spike_counts(counts_a: Tensor, counts_b: Tensor) -> tuple[Tensor, Tensor]:
    """Training heuristic of the reference code (snnax ``expected_signature_loss(match_spikes=True)``).

    For each pair ``b`` and each neuron ``k`` both trains keep only their first ``min(counts_a[b, k], counts_b[b, k])``
    spikes (the reference caps the count channels of both lifts at the smaller final count, neuron by neuron), so the
    paired paths have equal counts in every neuron and the loss compares spike *times* only: unequal spike numbers,
    which move the loss discontinuously and carry no gradient, are removed pair by pair.
    """
    if counts_a.shape != counts_b.shape:
        raise ValueError(f"counts must have equal shapes, got {tuple(counts_a.shape)} and {tuple(counts_b.shape)}")
    cap = torch.minimum(counts_a, counts_b)
    return cap, cap.clone()

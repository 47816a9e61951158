"""Signatures and signature kernels of piecewise-linear paths, in PyTorch with autograd.

- :func:`signature_depth3`: truncated signature levels 1..3 by Chen's identity, vectorised over segments.
- :func:`sig_kernel_gram` / :func:`sig_kernel`: the signature kernel ``k(x, y) = <S(x), S(y)>`` (optionally after a
  static kernel ``kappa`` on path values) as the solution of the Goursat PDE (Salvi et al. 2021)::

      d^2 K / ds dt = <x'(s), y'(t)>_kappa K(s, t),    K(0, .) = K(., 0) = 1,    k(x, y) = K(end, end)

  solved on the grid of path vertices, each cell refined ``2^d x 2^d`` (``d = dyadic_order``, increment products
  divided by ``4^d``), with the second-order update of sigkernel/pysiglib::

      K[a+1, b+1] = (K[a+1, b] + K[a, b+1]) * (1 + G/2 + G^2/12) - K[a, b] * (1 - G^2/12)
      G = kappa(x_{a+1}, y_{b+1}) + kappa(x_a, y_b) - kappa(x_{a+1}, y_b) - kappa(x_a, y_{b+1})

  The torch backend sweeps anti-diagonals (autograd through the sweep); the ``"pysiglib"`` backend calls
  ``pysiglib.torch_api`` (C++ forward and PDE backward). Both take and return tensors and are differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor

BACKENDS = ("torch", "pysiglib")
SCHEMES = ("second", "first")


class LinearKernel:
    """``kappa(x, y) = <x, y>``: the plain signature kernel."""

    def gram(self, x: Tensor, y: Tensor) -> Tensor:
        return x @ y.transpose(-1, -2)

    def pysiglib(self):
        import pysiglib

        return pysiglib.LinearKernel()


class RBFKernel:
    """``kappa(x, y) = exp(-|x - y|^2 / sigma)`` (pysiglib's convention for ``sigma``)."""

    def __init__(self, sigma: float = 1.0) -> None:
        if not sigma > 0:
            raise ValueError(f"RBFKernel: sigma must be > 0, got {sigma}")
        self.sigma = float(sigma)

    def gram(self, x: Tensor, y: Tensor) -> Tensor:
        d2 = (x.pow(2).sum(-1)[..., :, None] + y.pow(2).sum(-1)[..., None, :] - 2 * x @ y.transpose(-1, -2)).clamp_min(
            0
        )
        return torch.exp(-d2 / self.sigma)

    def pysiglib(self):
        import pysiglib

        return pysiglib.RBFKernel(self.sigma)


def make_static_kernel(name: str = "linear", sigma: float = 1.0) -> LinearKernel | RBFKernel:
    """``"linear"`` or ``"rbf"`` (with ``sigma``)."""
    if name == "linear":
        return LinearKernel()
    if name == "rbf":
        return RBFKernel(sigma)
    raise ValueError(f"static kernel must be 'linear' or 'rbf', got {name!r}")


def _check_paths(x: Tensor, name: str) -> None:
    if x.dim() != 3:
        raise ValueError(f"{name} must be (batch, length, channels), got shape {tuple(x.shape)}")
    if x.shape[1] < 2:
        raise ValueError(f"{name} needs at least 2 vertices per path, got length {x.shape[1]}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")


def signature_depth3(path: Tensor) -> Tensor:
    """Levels 1..3 of the signature of piecewise-linear paths ``(B, L, d)`` -> ``(B, d + d^2 + d^3)``.

    Chen's identity per segment ``D`` (old ``S1, S2`` on the right)::

        S3 += S2 (x) D + S1 (x) D(x)D / 2 + D(x)D(x)D / 6,   S2 += S1 (x) D + D(x)D / 2,   S1 += D

    summed in closed form with exclusive prefix sums (no Python loop over segments).
    """
    _check_paths(path, "path")
    B, L, d = path.shape
    D = path.diff(dim=1)  # (B, n, d)
    C1 = path[:, :-1, :] - path[:, :1, :]  # S1 before each segment
    DD = D[..., :, None] * D[..., None, :]  # (B, n, d, d)
    inc2 = C1[..., :, None] * D[..., None, :] + DD / 2  # S2 increments
    C2 = inc2.cumsum(1) - inc2  # S2 before each segment
    S1 = D.sum(1)
    S2 = inc2.sum(1)
    # S3 = sum_n (C2 + C1 (x) D / 2 + D (x) D / 6)_{ij} D_k: one batched matmul over segments.
    Z = (C2 + C1[..., :, None] * D[..., None, :] / 2 + DD / 6).reshape(B, L - 1, d * d)
    S3 = Z.transpose(1, 2) @ D
    return torch.cat((S1, S2.reshape(B, d * d), S3.reshape(B, d**3)), dim=1)


def _increment_products(x: Tensor, y: Tensor, kernel, paired: bool) -> Tensor:
    """``G[..., a, b]`` = second difference of ``kappa`` over cell ``(a, b)``: ``(B1, B2, n1, n2)`` or ``(B, n1, n2)``."""
    if paired:
        k = kernel.gram(x, y)  # (B, L1, L2)
    else:
        k = kernel.gram(x[:, None], y[None, :])  # (B1, B2, L1, L2)
    return k[..., 1:, 1:] + k[..., :-1, :-1] - k[..., 1:, :-1] - k[..., :-1, 1:]


def _skew(A: Tensor) -> Tensor:
    """``(..., n1, n2) -> (..., n1, n1 + n2 - 1)`` with ``out[..., a, q] = A[..., a, q - a]`` (0 outside)."""
    n1, n2 = A.shape[-2:]
    W = n1 + n2
    flat = torch.nn.functional.pad(A, (0, n1)).flatten(-2)[..., : n1 * (W - 1)]
    return flat.reshape(*A.shape[:-2], n1, W - 1)


def _goursat(G: Tensor, dyadic_order: int, scheme: str) -> Tensor:
    """Solves the Goursat PDE for cell products ``G (..., n1, n2)`` and returns ``K(end, end)`` ``(...)``."""
    if dyadic_order > 0:
        f = 2**dyadic_order
        G = G.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1) / float(4**dyadic_order)
    n1, n2 = G.shape[-2:]
    if scheme == "second":
        A = 1 + G / 2 + G * G / 12
        Bc = 1 - G * G / 12
    else:
        A = 1 + G / 2
        Bc = torch.ones_like(G)
    # Anti-diagonal p holds K[a, p - a] for a = 0..n1. The coefficients are skewed onto cell diagonals q = a' + b' once
    # (pad + reshape: cheap backward) and split with unbind (a per-diagonal select would allocate a full-size gradient
    # in backward at every step).
    a = torch.arange(1, n1 + 1, device=G.device)
    p = torch.arange(2, n1 + n2 + 1, device=G.device)[:, None]
    b = p - a  # (P, n1): column of K for rows a = 1..n1 on diagonal p
    valid = (b >= 1) & (b <= n2)
    A_d = _skew(A).movedim(-1, 0).contiguous().unbind(0)  # contiguous per-diagonal slices: fast elementwise ops
    B_d = _skew(Bc).movedim(-1, 0).contiguous().unbind(0)
    ones = torch.ones(*G.shape[:-2], n1 + 1, dtype=G.dtype, device=G.device)
    one = ones[..., 1:]
    prev2, prev1 = ones, ones  # diagonals p - 2 and p - 1 (p = 0 and 1 are the boundary: all ones)
    for q, (Ad, Bd) in enumerate(zip(A_d, B_d)):
        new = (prev1[..., 1:] + prev1[..., :-1]) * Ad - prev2[..., :-1] * Bd
        new = torch.where(valid[q], new, one)
        prev2, prev1 = prev1, torch.cat((ones[..., :1], new), dim=-1)
    return prev1[..., n1]


def sig_kernel_gram(
    x: Tensor,
    y: Tensor,
    *,
    static_kernel: LinearKernel | RBFKernel | None = None,
    dyadic_order: int = 0,
    backend: str = "torch",
    scheme: str = "second",
) -> Tensor:
    """Gram matrix ``(B1, B2)`` of signature kernels between paths ``x (B1, L1, d)`` and ``y (B2, L2, d)``.

    Parameters:
        static_kernel: :class:`LinearKernel` (default) or :class:`RBFKernel`.
        dyadic_order: refinement ``d`` of each PDE cell into ``2^d x 2^d``.
        backend: ``"torch"`` (anti-diagonal sweep, autograd) or ``"pysiglib"`` (``pysiglib.torch_api``).
        scheme: ``"second"`` (sigkernel/pysiglib update) or ``"first"`` (explicit first order; torch only).
    """
    return _kernel(x, y, static_kernel, dyadic_order, backend, scheme, paired=False)


def sig_kernel(
    x: Tensor,
    y: Tensor,
    *,
    static_kernel: LinearKernel | RBFKernel | None = None,
    dyadic_order: int = 0,
    backend: str = "torch",
    scheme: str = "second",
) -> Tensor:
    """Paired signature kernels ``k(x_b, y_b)`` ``(B,)`` (see :func:`sig_kernel_gram`)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"sig_kernel pairs paths: batch sizes must match, got {x.shape[0]} and {y.shape[0]}")
    return _kernel(x, y, static_kernel, dyadic_order, backend, scheme, paired=True)


def _kernel(x, y, static_kernel, dyadic_order, backend, scheme, paired) -> Tensor:
    _check_paths(x, "x")
    _check_paths(y, "y")
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"x and y must have the same number of channels, got {x.shape[-1]} and {y.shape[-1]}")
    if int(dyadic_order) < 0:
        raise ValueError(f"dyadic_order must be >= 0, got {dyadic_order}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    kernel = static_kernel if static_kernel is not None else LinearKernel()
    if backend == "pysiglib":
        if scheme != "second":
            raise ValueError("the pysiglib backend implements only scheme='second'")
        import pysiglib.torch_api as pst

        fn = pst.sig_kernel if paired else pst.sig_kernel_gram
        return fn(x, y, dyadic_order=int(dyadic_order), static_kernel=kernel.pysiglib())
    return _goursat(_increment_products(x, y, kernel, paired), int(dyadic_order), scheme)

"""Spike thresholds with surrogate gradients.

The forward pass is always the strict Heaviside ``H(x) = 1 if x > 0 else 0`` (as in Norse and the DH-SNN
reference). The backward pass is either the multi-Gaussian (MG) surrogate of the DH-SNN paper or one of Norse's
surrogates, selected by name.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from norse.torch.functional.threshold import threshold as norse_threshold
from torch import Tensor

NORSE_METHODS = ("heaviside", "super", "triangle", "tanh", "circ", "heavi_erfc")
METHODS = ("mg",) + NORSE_METHODS


class MultiGaussianParameters(NamedTuple):
    """Shape of the multi-Gaussian surrogate (Zheng et al. 2024, Methods).

    ``dS/dx = gamma * [(1 + height) N(x; 0, sigma) - height N(x; sigma, scale*sigma) - height N(x; -sigma, scale*sigma)]``

    Parameters:
        gamma: overall gain (0.5 in every reference task).
        sigma: width of the central Gaussian (0.5).
        height: weight of the negative side lobes (0.15; the paper uses 0 on S-MNIST).
        scale: width ratio of the side lobes to the centre (6).
    """

    gamma: float = 0.5
    sigma: float = 0.5
    height: float = 0.15
    scale: float = 6.0


def _gaussian(x: Tensor, mu: float, sigma: float) -> Tensor:
    return torch.exp(-((x - mu) ** 2) / (2.0 * sigma**2)) / (math.sqrt(2.0 * math.pi) * sigma)


def multi_gaussian_grad(x: Tensor, p: MultiGaussianParameters = MultiGaussianParameters()) -> Tensor:
    """The multi-Gaussian surrogate derivative at ``x = u - theta``.

    With ``height == 0`` this is the plain Gaussian ``gamma * N(x; 0, sigma)``; the zero-width side lobes are never
    evaluated (they would divide by zero when ``scale == 0``).
    """
    centre = _gaussian(x, 0.0, p.sigma)
    if p.height == 0.0:
        return p.gamma * centre
    side = p.scale * p.sigma
    lobes = _gaussian(x, p.sigma, side) + _gaussian(x, -p.sigma, side)
    return p.gamma * ((1.0 + p.height) * centre - p.height * lobes)


class HeavisideMultiGaussian(torch.autograd.Function):
    """Strict Heaviside forward, multi-Gaussian backward."""

    @staticmethod
    def forward(ctx, x: Tensor, gamma: float, sigma: float, height: float, scale: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.mg = MultiGaussianParameters(gamma, sigma, height, scale)
        return torch.gt(x, 0.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (x,) = ctx.saved_tensors
        return grad_output * multi_gaussian_grad(x, ctx.mg), None, None, None, None


def heaviside_mg(x: Tensor, p: MultiGaussianParameters = MultiGaussianParameters()) -> Tensor:
    """``H(x)`` with the multi-Gaussian surrogate gradient."""
    return HeavisideMultiGaussian.apply(x, p.gamma, p.sigma, p.height, p.scale)


def spike_fn(
    x: Tensor,
    method: str = "mg",
    alpha: float = 100.0,
    mg: MultiGaussianParameters = MultiGaussianParameters(),
) -> Tensor:
    """Spike ``H(x)`` (strict: fires iff ``x > 0``) with the surrogate named by ``method``.

    ``"mg"`` is the DH-SNN multi-Gaussian (shape ``mg``); every other name is dispatched to Norse's
    ``threshold(x, method, alpha)`` (``"super"``, ``"triangle"``, ``"tanh"``, ``"circ"``, ``"heavi_erfc"``,
    ``"heaviside"``).
    """
    if method == "mg":
        return heaviside_mg(x, mg)
    return norse_threshold(x, method, alpha)


def check_method(method: str) -> str:
    """Validate a surrogate name where it enters (constructors)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method

"""The multi-Gaussian surrogate (dhsnn.md §2) and the Norse dispatch."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from norse.torch.functional.threshold import threshold as norse_threshold

from norse_dh.functional.surrogate import MultiGaussianParameters, heaviside_mg, multi_gaussian_grad, spike_fn


@pytest.mark.parametrize(
    ("x", "expected"), [(0.0, 0.439), (0.5, 0.259), (-0.5, 0.259), (1.0, 0.044), (-1.0, 0.044), (1.5, -0.012)]
)
def test_mg_surrogate_matches_spec_values(x, expected):
    x_t = torch.tensor([x], dtype=torch.float64, requires_grad=True)
    heaviside_mg(x_t).sum().backward()
    assert x_t.grad.item() == pytest.approx(expected, abs=1e-3)


def test_mg_surrogate_zero_crossing_and_side_lobe_minimum():
    x = torch.linspace(0, 4, 40001, dtype=torch.float64)
    g = multi_gaussian_grad(x)
    crossing = x[:-1][(g[:-1] > 0) & (g[1:] <= 0)]
    assert crossing.item() == pytest.approx(1.27, abs=0.01)
    assert g.min().item() == pytest.approx(-0.016, abs=0.001)


def test_mg_with_zero_height_is_plain_gaussian_without_nan():
    p = MultiGaussianParameters(gamma=0.5, sigma=0.5, height=0.0, scale=0.0)
    x = torch.linspace(-3, 3, 101, dtype=torch.float64)
    g = multi_gaussian_grad(x, p)
    plain = 0.5 * torch.exp(-(x**2) / (2 * 0.25)) / (math.sqrt(2 * math.pi) * 0.5)
    assert torch.isfinite(g).all()
    torch.testing.assert_close(g, plain)


@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=20))
def test_forward_is_strict_heaviside(values):
    x = torch.tensor(values, dtype=torch.float64)
    for method in ("mg", "super", "triangle"):
        z = spike_fn(x, method)
        assert torch.equal(z, (x > 0).to(x.dtype))
    assert spike_fn(torch.zeros(1), "mg").item() == 0.0


def test_norse_methods_dispatch_to_norse_gradients():
    x = torch.linspace(-1, 1, 11, dtype=torch.float64, requires_grad=True)
    spike_fn(x, "super", 50.0).sum().backward()
    ours = x.grad.clone()
    x.grad = None
    norse_threshold(x, "super", 50.0).sum().backward()
    torch.testing.assert_close(ours, x.grad)


def test_unknown_method_is_rejected_by_modules():
    from norse_dh import DHLIFCell

    with pytest.raises(ValueError, match="method must be one of"):
        DHLIFCell(4, 3, 2, method="superspike")

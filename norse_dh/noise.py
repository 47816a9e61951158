"""Explicit, seedable noise for stochastic event-driven neurons (the pathwise randomness ``omega``).

A stochastic SNN path is a deterministic function of its parameters and of one noise realisation:

- Brownian increments ``dW[m] ~ N(0, dt)`` on the global grid ``t_m = m * dt``, shape ``(n_steps, B, K, 2)``
  (time-first; one 2-d Brownian motion per neuron, mixed into ``(v, i)`` by the 2x2 matrix ``Sigma``);
- Exp(1) clock thresholds ``xi[b, k, j]``, shape ``(B, K, M + 1)``: entry 0 sets the initial clock
  ``s = -(xi + alpha)``, entry ``j`` the clock after the ``j``-th spike of neuron ``k``.

Keeping both fixed while the parameters move makes the solver a smooth map, so autograd gives pathwise gradients
and central finite differences use common random numbers. :meth:`SSNNNoise.refine` halves the step on the *same*
Brownian path (Brownian bridge), for convergence studies.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


def _generator(seed: int | None, generator: torch.Generator | None, device: torch.device | str) -> torch.Generator:
    if generator is not None:
        if seed is not None:
            raise ValueError("pass either seed or generator, not both")
        return generator
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


class SSNNNoise(NamedTuple):
    """One noise realisation for ``B`` paths of a ``K``-neuron stochastic SNN.

    Parameters:
        dW: Brownian increments ``(n_steps, B, K, 2)``, each ``~ N(0, dt)``.
        xi: Exp(1) clock thresholds ``(B, K, M + 1)``.
        dt: the grid step the increments belong to.
    """

    dW: Tensor
    xi: Tensor
    dt: float

    @property
    def n_steps(self) -> int:
        return self.dW.shape[0]

    @property
    def batch_size(self) -> int:
        return self.dW.shape[1]

    @property
    def neurons(self) -> int:
        return self.dW.shape[2]

    @property
    def max_spikes(self) -> int:
        return self.xi.shape[2] - 1

    @staticmethod
    def sample(
        batch_size: int,
        neurons: int,
        n_steps: int,
        max_spikes: int,
        dt: float,
        *,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> SSNNNoise:
        """Draws a realisation; the same ``seed`` (or generator state) gives the same tensors.

        ``max_spikes`` is the number of recorded spikes per neuron ``M`` (``M + 1`` thresholds are drawn).
        """
        for name, val in (("batch_size", batch_size), ("neurons", neurons), ("n_steps", n_steps)):
            if int(val) < 1:
                raise ValueError(f"SSNNNoise.sample: {name} must be >= 1, got {val}")
        if int(max_spikes) < 1:
            raise ValueError(f"SSNNNoise.sample: max_spikes (spike budget per neuron) must be >= 1, got {max_spikes}")
        if not dt > 0:
            raise ValueError(f"SSNNNoise.sample: dt must be > 0, got {dt}")
        g = _generator(seed, generator, device)
        dW = torch.randn(n_steps, batch_size, neurons, 2, generator=g, dtype=dtype, device=device) * float(dt) ** 0.5
        u = torch.rand(batch_size, neurons, max_spikes + 1, generator=g, dtype=dtype, device=device)
        # xi = -log(U) ~ Exp(1); 1 - U keeps the argument in (0, 1] (rand may return 0).
        xi = -torch.log1p(-u)
        return SSNNNoise(dW, xi, float(dt))

    def refine(self, *, seed: int | None = None, generator: torch.Generator | None = None) -> SSNNNoise:
        """The same Brownian path on the grid of step ``dt / 2`` (Brownian bridge midpoints); thresholds kept."""
        g = _generator(seed, generator, self.dW.device)
        z = torch.randn(self.dW.shape, generator=g, dtype=self.dW.dtype, device=self.dW.device)
        first = 0.5 * self.dW + (self.dt / 4.0) ** 0.5 * z
        fine = torch.stack((first, self.dW - first), dim=1).reshape(2 * self.n_steps, *self.dW.shape[1:])
        return SSNNNoise(fine, self.xi, self.dt / 2.0)

    def to(self, *args, **kwargs) -> SSNNNoise:
        """Moves/casts the tensors (``torch.Tensor.to`` arguments)."""
        return SSNNNoise(self.dW.to(*args, **kwargs), self.xi.to(*args, **kwargs), self.dt)

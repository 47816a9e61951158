"""Fast sequence paths for the norse-dh layers (issue 3): fused C++ time loops with hand-derived backward passes
and density-dependent input projections. The functional step (``norse_dh.functional.dhlif``) stays the reference;
everything here is tested against it.

- :func:`dhlif_loop`, :func:`leaky_loop`: fused DH-LIF / LIF / leaky-integrator loops (``loop.py``).
- :func:`project`, :func:`plan_for`, :func:`full_plan`: the sequence input projection (``projection.py``).
- :func:`dhsfnn_sequence`: projection + loop fused for sparse-input DH-SFNN layers (``fused.py``).
- :func:`kernels_available`: whether the compiled kernels loaded (else the layers use the reference loop).
"""

from norse_dh.kernels import build
from norse_dh.kernels.fused import dhsfnn_sequence
from norse_dh.kernels.loop import dhlif_loop, fused_supported, leaky_loop, surrogate_derivative
from norse_dh.kernels.projection import ProjectionPlan, full_plan, plan_for, project


def kernels_available() -> bool:
    """True if the compiled CPU kernels are loaded (building them on first call)."""
    return build.load() is not None


__all__ = [
    "ProjectionPlan",
    "build",
    "dhlif_loop",
    "dhsfnn_sequence",
    "full_plan",
    "fused_supported",
    "kernels_available",
    "leaky_loop",
    "plan_for",
    "project",
    "surrogate_derivative",
]

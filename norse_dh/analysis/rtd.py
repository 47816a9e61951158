"""Representation Topology Divergence (Barannikov et al., ICML 2022), re-implemented from the maths on the CPU.

Two representations ``P`` (N x D) and ``Q`` (N x D') of the same N inputs in the same order:

1. distances ``w_ij = |p_i - p_j|``, ``w~_ij = |q_i - q_j|`` in float64, each divided by its 0.9 quantile over all
   N^2 entries (zero diagonal included). Guard: if the quantile is 0 (>= 90 % of the pairs coincide, as silent
   SNN samples give) the mean of the non-zero distances is used instead and a warning is logged; a constant cloud
   (all distances 0) raises.
2. the R-Cross-Barcode matrix on 2N vertices ``V, V'``::

       [[ 0 , w^T          ],
        [ w , min(w, w~)   ]]

   with every entry below ``1e-6 * mean(w)`` set to exactly 0;
3. ``RTD_1(P, Q)`` = total length of the finite H1 bars of its Vietoris-Rips filtration (Z/2 coefficients);
4. ``rtd(P, Q) = mean over trials of (RTD_1(P, Q) + RTD_1(Q, P)) / 2`` on random batches of ``batch`` points, the
   same indices for both clouds.

Persistence back-ends (all give the same barcode; measured in ``benchmarks/bench_rtd.py``): ``"gudhi"``
(GUDHI's Ripser fork, the default: fastest here) and ``"ripser"`` (ripser.py, a cross-check). giotto-ph is not
installed in this environment.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

BACKENDS = ("gudhi", "ripser")
ArrayLike = np.ndarray | Tensor


class RTDResult(NamedTuple):
    """Batch-averaged RTD: ``mean`` and ``std`` over trials and the per-trial values (symmetrised or one-sided)."""

    mean: float
    std: float
    per_trial: np.ndarray


def _as_cloud(x: ArrayLike, name: str) -> Tensor:
    """A finite float64 ``(N, D)`` tensor, or a clear error."""
    t = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if t.dim() == 1:
        t = t[:, None]
    if t.dim() != 2:
        raise ValueError(f"{name} must be a point cloud of shape (N, D), got shape {tuple(t.shape)}")
    if t.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 points, got {t.shape[0]}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values ({int((~torch.isfinite(t)).sum())} entries)")
    return t


def normalised_distances(x: ArrayLike, q: float = 0.9, name: str = "cloud") -> np.ndarray:
    """Euclidean distance matrix ``(N, N)`` in float64 divided by its ``q`` quantile over all N^2 entries.

    If the quantile is 0 the mean of the non-zero distances is the scale instead (logged); a cloud whose points
    all coincide raises ``ValueError`` (its geometry carries no information and RTD is undefined).
    """
    t = _as_cloud(x, name)
    # direct differences, not the |a|^2 + |b|^2 - 2ab product: exact zeros, and zero padding changes nothing
    w = torch.cdist(t, t, compute_mode="donot_use_mm_for_euclid_dist").numpy()
    # cdist is symmetric only to ~1e-15; Ripser-family back-ends need an exactly symmetric matrix (else bad_alloc).
    w = np.triu(w, 1)
    w = w + w.T
    scale = float(np.quantile(w, q))
    if not scale > 0.0:
        nonzero = w[w > 0]
        if nonzero.size == 0:
            raise ValueError(f"{name} is constant: all {w.shape[0]} points coincide, RTD is undefined")
        scale = float(nonzero.mean())
        logger.warning(
            "%s: the %.2f quantile of the distances is 0 (%.1f%% of pairs coincide); normalising by the mean "
            "non-zero distance %.4g instead",
            name,
            q,
            100.0 * (1.0 - nonzero.size / (w.size - w.shape[0])),
            scale,
        )
    return w / scale


def cross_barcode_matrix(w: np.ndarray, w_tilde: np.ndarray) -> np.ndarray:
    """The symmetric ``(2N, 2N)`` R-Cross-Barcode matrix ``[[0, w^T], [w, min(w, w~)]]`` from normalised distances.

    Entries below ``1e-6 * mean(w)`` are set to exactly 0 (as the reference construction does).
    """
    if w.shape != w_tilde.shape or w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"distance matrices must be square and of equal shape, got {w.shape} and {w_tilde.shape}")
    n = w.shape[0]
    d = np.zeros((2 * n, 2 * n), dtype=np.float64)
    d[n:, :n] = w
    d[:n, n:] = w.T
    d[n:, n:] = np.minimum(w, w_tilde)
    d[d < 1e-6 * w.mean()] = 0.0
    return d


def h1_diagram(d: np.ndarray, backend: str = "gudhi") -> np.ndarray:
    """H1 persistence diagram ``(k, 2)`` (birth, death) of the Vietoris-Rips filtration of a full distance matrix.

    Z/2 coefficients, max dimension 1, no edge collapse. ``backend`` is ``"gudhi"`` or ``"ripser"``.
    """
    if backend == "gudhi":
        from gudhi.sklearn.rips_persistence import RipsPersistence

        rp = RipsPersistence(
            homology_dimensions=1, input_type="full distance matrix", num_collapses=0, homology_coeff_field=2
        )
        dgm = rp.fit_transform([d])[0]
    elif backend == "ripser":
        from ripser import ripser

        dgm = ripser(d, maxdim=1, distance_matrix=True, coeff=2)["dgms"][1]
    else:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return np.asarray(dgm, dtype=np.float64).reshape(-1, 2)


def r_cross_barcode(x: ArrayLike, y: ArrayLike, backend: str = "gudhi", q: float = 0.9) -> np.ndarray:
    """R-Cross-Barcode_1(x, y): the H1 diagram of :func:`cross_barcode_matrix` for two clouds of equal N."""
    wx = normalised_distances(x, q, "first cloud")
    wy = normalised_distances(y, q, "second cloud")
    if wx.shape != wy.shape:
        raise ValueError(
            f"both clouds need the same number of points (same inputs), got {wx.shape[0]} and {wy.shape[0]}"
        )
    return h1_diagram(cross_barcode_matrix(wx, wy), backend)


def barcode_length(dgm: np.ndarray) -> float:
    """Total length of the finite bars (non-finite bars are dropped defensively)."""
    finite = np.isfinite(dgm).all(axis=1)
    return float((dgm[finite, 1] - dgm[finite, 0]).sum())


def rtd_one_sided(x: ArrayLike, y: ArrayLike, backend: str = "gudhi", q: float = 0.9) -> float:
    """``RTD_1(x, y)`` = sum of the H1 bar lengths of R-Cross-Barcode(x, y). Not symmetric."""
    return barcode_length(r_cross_barcode(x, y, backend, q))


def rtd(
    x: ArrayLike,
    y: ArrayLike,
    trials: int = 10,
    batch: int | None = 500,
    seed: int | None = None,
    symmetric: bool = True,
    backend: str = "gudhi",
    q: float = 0.9,
    n_jobs: int = 1,
) -> RTDResult:
    """Batch-averaged RTD of two representations of the same N inputs.

    Each trial draws ``batch`` indices without replacement (``None``: all N points, then one trial suffices) and
    uses the **same** indices for both clouds; a trial's value is ``(RTD_1(x, y) + RTD_1(y, x)) / 2`` (or the
    one-sided ``RTD_1(x, y)`` with ``symmetric=False``). ``n_jobs`` threads compute the barcodes. Raises on unequal N, ``batch > N``, NaNs and constant
    batches.
    """
    xt, yt = _as_cloud(x, "first cloud"), _as_cloud(y, "second cloud")
    n = xt.shape[0]
    if yt.shape[0] != n:
        raise ValueError(f"both clouds must hold representations of the same inputs, got {n} and {yt.shape[0]} points")
    if batch is None:
        batch = n
    if not 2 <= batch <= n:
        raise ValueError(f"batch must be in [2, N={n}], got {batch} (use batch=None for all points)")
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be >= 1, got {n_jobs}")
    rng = np.random.default_rng(seed)
    matrices = []
    for _ in range(trials):
        idx = torch.as_tensor(rng.permutation(n)[:batch])
        wx = normalised_distances(xt[idx], q, "first cloud (batch)")
        wy = normalised_distances(yt[idx], q, "second cloud (batch)")
        matrices.append(cross_barcode_matrix(wx, wy))
        if symmetric:
            matrices.append(cross_barcode_matrix(wy, wx))

    def length(d: np.ndarray) -> float:
        return barcode_length(h1_diagram(d, backend))

    if n_jobs == 1:
        lengths = [length(d) for d in matrices]
    else:  # both back-ends release the GIL inside the C++ reduction, so threads overlap
        with ThreadPoolExecutor(n_jobs) as pool:
            lengths = list(pool.map(length, matrices))
    per_trial = np.asarray(lengths).reshape(trials, 2 if symmetric else 1).mean(axis=1)
    return RTDResult(float(per_trial.mean()), float(per_trial.std()), per_trial)


__all__ = [
    "BACKENDS",
    "RTDResult",
    "barcode_length",
    "cross_barcode_matrix",
    "h1_diagram",
    "normalised_distances",
    "r_cross_barcode",
    "rtd",
    "rtd_one_sided",
]

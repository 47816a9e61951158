"""RTD: invariances, asymmetry, padding, back-end agreement, the spec's reference numbers, the clusters ranking,
bad input and the Option-T5 representations."""

import logging

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.stats import special_ortho_group

from norse_dh.analysis import (
    LAYERS,
    barcode_length,
    cross_barcode_matrix,
    h1_diagram,
    normalised_distances,
    r_cross_barcode,
    rtd,
    rtd_matrix,
    rtd_one_sided,
    t5_representations,
    window_counts,
)


def _gauss(seed: int, n: int = 80, d: int = 6) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def test_rtd_of_a_cloud_with_itself_is_exactly_zero():
    a = _gauss(0)
    assert rtd(a, a, trials=2, batch=60, seed=0).mean == 0.0
    assert rtd_one_sided(a, a) == 0.0


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 1000), scale=st.floats(0.01, 100.0), shift=st.floats(-10.0, 10.0))
def test_rtd_invariant_to_rotation_scaling_translation(seed, scale, shift):
    a, b = _gauss(seed, 60, 5), _gauss(seed + 1, 60, 7)
    r = special_ortho_group.rvs(5, random_state=seed)
    moved = scale * a @ r + shift
    assert rtd(a, moved, trials=1, batch=None).mean < 1e-8
    base = rtd(a, b, trials=2, batch=50, seed=3).mean
    assert abs(rtd(moved, b, trials=2, batch=50, seed=3).mean - base) < 1e-8
    assert base > 1.0  # independent clouds are far from equivalent


def test_rtd_is_asymmetric_one_sided():
    a, b = _gauss(1, 100, 16), _gauss(2, 100, 16)
    forward, backward = rtd_one_sided(a, b), rtd_one_sided(b, a)
    assert abs(forward - backward) > 0.1
    sym = rtd(a, b, trials=1, batch=None)
    assert sym.mean == pytest.approx(0.5 * (forward + backward), abs=1e-12)


def test_rtd_invariant_to_zero_padding():
    a, b = _gauss(3, 70, 4), _gauss(4, 70, 9)
    padded = np.concatenate([a, np.zeros((70, 52))], axis=1)
    assert rtd(a, padded, trials=1, batch=None).mean == 0.0
    assert rtd(b, padded, trials=1, batch=None).mean == rtd(b, a, trials=1, batch=None).mean


def test_backends_agree_and_stability_bound_holds():
    a, b = _gauss(5, 90, 3), _gauss(6, 90, 3)
    wa, wb = normalised_distances(a), normalised_distances(b)
    d = cross_barcode_matrix(wa, wb)
    g, r = h1_diagram(d, "gudhi"), h1_diagram(d, "ripser")
    assert len(g) == len(r) > 0
    assert barcode_length(g) == pytest.approx(barcode_length(r), abs=1e-5)
    # max bar <= max_ij (w_ij - min(w_ij, w~_ij)) (stability, rtd_stdp.md §1.6)
    assert (g[:, 1] - g[:, 0]).max() <= (wa - np.minimum(wa, wb)).max() + 1e-6


def test_cross_barcode_matrix_layout():
    w = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 0.5], [2.0, 0.5, 0.0]])
    wt = np.array([[0.0, 3.0, 1.0], [3.0, 0.0, 0.2], [1.0, 0.2, 0.0]])
    d = cross_barcode_matrix(w, wt)
    np.testing.assert_array_equal(d[:3, :3], 0.0)
    np.testing.assert_array_equal(d[3:, :3], w)
    np.testing.assert_array_equal(d[:3, 3:], w.T)
    np.testing.assert_array_equal(d[3:, 3:], np.minimum(w, wt))


def test_reference_example_of_the_rtd_readme():
    """rtd_stdp.md §4.5 fast variant: seed-7 uniform clouds, P[:500] vs Q[:500], one-sided: 615 bars, sum 35.40485."""
    rs = np.random.RandomState(7)  # the legacy stream of the reference data (np.random.seed(7))
    p, q = rs.rand(1000, 2), rs.rand(1000, 2)
    dgm = r_cross_barcode(p[:500], q[:500])
    assert len(dgm) == 615
    assert barcode_length(dgm) == pytest.approx(35.40485, abs=1e-4)
    assert (dgm[:, 1] - dgm[:, 0]).max() == pytest.approx(0.14652, abs=1e-5)


def _clusters(n_clusters: int):
    """The RTD paper's clusters benchmark: n_clusters Gaussian clusters of 5 points (seed 7) and the same clusters
    moved to k centres on a circle of radius 10."""
    rs = np.random.RandomState(7)  # the legacy stream of the paper's notebook (np.random.seed(7))
    clusters = [rs.multivariate_normal(np.zeros(2), np.eye(2), 5) for _ in range(n_clusters)]

    def moved(k: int) -> np.ndarray:
        angles = [2 * np.pi * (i % k) / k for i in range(n_clusters)]
        return np.concatenate([c + 10 * np.array([np.cos(t), np.sin(t)]) for c, t in zip(clusters, angles)])

    return np.concatenate(clusters), moved


def test_clusters_benchmark_reference_value():
    """Full-size benchmark (60 clusters x 5 points), k = 12: RTD 19.67 (rtd_stdp.md §1.6)."""
    base, moved = _clusters(60)
    assert rtd(base, moved(12), trials=1, batch=None).mean == pytest.approx(19.67, abs=0.006)


def test_clusters_benchmark_ranks_perfectly():
    """RTD(base, k clusters) increases with k: Kendall tau = 1 for k in {2, 3, 4, 5, 6, 10, 12}. Run at 24 clusters
    (120 points) to fit the test budget; the 60-cluster run (tau = 1, values of the spec) is in
    benchmarks/bench_rtd.py --clusters."""
    base, moved = _clusters(24)
    ks = [2, 3, 4, 5, 6, 10, 12]
    values = [rtd(base, moved(k), trials=1, batch=None).mean for k in ks]
    assert stats.kendalltau(values, ks).correlation == 1.0


def test_degenerate_cloud_falls_back_to_mean_nonzero_distance(caplog):
    """>= 90 % coincident points (silent SNN samples): Q_0.9 = 0, so the mean non-zero distance is the scale."""
    x = np.zeros((80, 3))
    x[:3] = [[1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0]]
    with caplog.at_level(logging.WARNING, logger="norse_dh.analysis.rtd"):
        w = normalised_distances(x)
    assert "quantile of the distances is 0" in caplog.text
    raw = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.testing.assert_allclose(w, raw / raw[raw > 0].mean(), atol=1e-12)
    assert np.isfinite(rtd(x, _gauss(0, 80, 3), trials=1, batch=None).mean)


def test_bad_input_raises():
    a = _gauss(0, 30, 3)
    with pytest.raises(ValueError, match="constant"):
        rtd(np.ones((30, 3)), a, trials=1, batch=None)
    with pytest.raises(ValueError, match="same inputs"):
        rtd(a, _gauss(1, 31, 3))
    with pytest.raises(ValueError, match="batch must be in"):
        rtd(a, a, batch=500)
    nan = a.copy()
    nan[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rtd(nan, a, batch=None)
    with pytest.raises(ValueError, match="backend"):
        rtd(a, a, batch=None, backend="giotto")
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        rtd(np.zeros((2, 3, 4)), a)


def test_batches_share_indices_and_are_seeded():
    a, b = _gauss(7, 60, 4), _gauss(8, 60, 4)
    r1, r2 = rtd(a, b, trials=3, batch=30, seed=11), rtd(a, b, trials=3, batch=30, seed=11)
    np.testing.assert_array_equal(r1.per_trial, r2.per_trial)
    # the same permutation applied to both clouds leaves every batch's geometry pair unchanged
    perm = np.random.default_rng(0).permutation(60)
    np.testing.assert_allclose(rtd(a[perm], b[perm], trials=1, batch=None).mean, rtd(a, b, trials=1, batch=None).mean)
    threaded = rtd(a, b, trials=3, batch=30, seed=11, n_jobs=2)
    np.testing.assert_allclose(threaded.per_trial, r1.per_trial, atol=1e-12)


def test_t5_representations_and_rtd_matrix():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(12, 25, 8, generator=g) < 0.3).float()
    z = (torch.rand(12, 25, 10, generator=g) < 0.2).float()
    logits = torch.randn(25, 4, generator=g)
    reps = t5_representations(x, z, logits)
    assert list(reps) == list(LAYERS)
    np.testing.assert_array_equal(reps["L1"], x.sum(0).double().numpy())
    np.testing.assert_array_equal(reps["L3"], z[4:8].sum(0).double().numpy())
    assert reps["L5"].shape == (25, 4)
    assert sum(c.sum() for c in window_counts(z)) == z.sum()
    with pytest.raises(ValueError, match="equal windows"):
        window_counts(z[:11])
    other = t5_representations(x, (torch.rand(12, 25, 10, generator=g) < 0.2).float(), logits)
    assert rtd(reps["L1"] + 0.0, other["L1"], trials=1, batch=None).mean == 0.0  # L1 is the shared input
    mean, std = rtd_matrix([reps["L2"], reps["L3"], other["L2"]], trials=1, batch=None)
    np.testing.assert_array_equal(mean, mean.T)
    assert np.all(np.diag(mean) == 0) and np.all(mean[~np.eye(3, dtype=bool)] > 0)


def test_rtd_matrix_marks_silent_layers_as_nan_on_request():
    silent = np.zeros((30, 5))
    clouds = [_gauss(0, 30, 5), silent, _gauss(1, 30, 5)]
    with pytest.raises(ValueError, match="constant"):
        rtd_matrix(clouds, trials=1, batch=None)
    mean, _ = rtd_matrix(clouds, constant="nan", trials=1, batch=None)
    assert np.isnan(mean[0, 1]) and np.isnan(mean[2, 1]) and mean[0, 2] > 0

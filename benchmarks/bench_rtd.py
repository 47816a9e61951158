"""RTD persistence back-ends on the CPU: gudhi (default) vs ripser.py, and the cost of one full RTD.

Prints, for each cloud type and size, the wall time of one one-sided R-Cross-Barcode per back-end (A/B interleaved,
median of ``--repeats``), their ratio, and the bar counts/sums (which must agree). Then one full RTD of two 500-point
clouds (10 batches of 500, both directions: 20 barcodes on 1000 vertices) with the default back-end, with 1 and 2
threads, against the plain-ripser route. ``--clusters`` also runs the RTD paper's 60-cluster benchmark (Kendall tau).
giotto-ph is not installed in this environment, so it is not measured.

    OMP_NUM_THREADS=1 python benchmarks/bench_rtd.py [--sizes 200 500] [--repeats 3] [--full] [--clusters]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from norse_dh.analysis.rtd import barcode_length, cross_barcode_matrix, h1_diagram, normalised_distances, rtd


def clouds(kind: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "uniform2d":
        return rng.random((n, 2)), rng.random((n, 2))
    if kind == "gauss64":
        return rng.normal(size=(n, 64)), rng.normal(size=(n, 64))
    if kind == "spikes100":  # Poisson spike counts, as SNN window representations
        return rng.poisson(3.0, (n, 100)).astype(float), rng.poisson(3.0, (n, 100)).astype(float)
    raise ValueError(kind)


def bench_backends(sizes: list[int], repeats: int) -> None:
    print(f"{'cloud':<10} {'N':>5} {'vertices':>8} {'gudhi s':>9} {'ripser s':>9} {'ripser/gudhi':>12}  bars  sum")
    for kind in ("uniform2d", "gauss64", "spikes100"):
        for n in sizes:
            a, b = clouds(kind, n)
            d = cross_barcode_matrix(normalised_distances(a), normalised_distances(b))
            times = {"gudhi": [], "ripser": []}
            results = {}
            for _ in range(repeats):
                for backend in ("gudhi", "ripser"):  # interleaved so contention hits both
                    t0 = time.perf_counter()
                    results[backend] = h1_diagram(d, backend)
                    times[backend].append(time.perf_counter() - t0)
            g, r = statistics.median(times["gudhi"]), statistics.median(times["ripser"])
            bars = f"{len(results['gudhi'])}/{len(results['ripser'])}"
            sums = f"{barcode_length(results['gudhi']):.6f}/{barcode_length(results['ripser']):.6f}"
            print(f"{kind:<10} {n:>5} {2 * n:>8} {g:>9.3f} {r:>9.3f} {r / g:>12.2f}  {bars}  {sums}")


def bench_full() -> None:
    a, b = clouds("spikes100", 500)
    print("\nfull RTD: two 500-point clouds (Poisson counts, 100-D), 10 batches of 500, both directions (20 barcodes)")
    for label, kw in (("gudhi, 1 thread", dict(backend="gudhi")), ("gudhi, 2 threads", dict(backend="gudhi", n_jobs=2)),
                      ("ripser, 1 thread", dict(backend="ripser"))):  # fmt: skip
        t0 = time.perf_counter()
        res = rtd(a, b, trials=10, batch=500, seed=0, **kw)
        print(f"  {label:<18} {time.perf_counter() - t0:7.1f} s   RTD = {res.mean:.4f} ± {res.std:.4f}")


def bench_clusters() -> None:
    from scipy import stats

    rs = np.random.RandomState(7)  # the legacy stream of the paper's notebook (np.random.seed(7))
    clusters = [rs.multivariate_normal(np.zeros(2), np.eye(2), 5) for _ in range(60)]
    base = np.concatenate(clusters)
    ks = [2, 3, 4, 5, 6, 10, 12]
    values = []
    t0 = time.perf_counter()
    for k in ks:
        moved = np.concatenate(
            [
                c + 10 * np.array([np.cos(2 * np.pi * (i % k) / k), np.sin(2 * np.pi * (i % k) / k)])
                for i, c in enumerate(clusters)
            ]
        )
        values.append(rtd(base, moved, trials=1, batch=None).mean)
    print(f"\nclusters benchmark (60 x 5 points, k = {ks}): RTD = {np.round(values, 2).tolist()}")
    print(f"  Kendall tau = {stats.kendalltau(values, ks).correlation:.3f}; {time.perf_counter() - t0:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 500])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="time one full RTD (10 x 500, both directions)")
    parser.add_argument("--clusters", action="store_true", help="run the RTD paper's clusters benchmark")
    args = parser.parse_args()
    bench_backends(args.sizes, args.repeats)
    if args.full:
        bench_full()
    if args.clusters:
        bench_clusters()


if __name__ == "__main__":
    main()

"""Signature-kernel back-ends: pure PyTorch (anti-diagonal Goursat sweep, Chen depth-3) vs pysiglib.torch_api.

Times forward + backward of the losses used in training, interleaving the two back-ends (A/B/A/B...) so CPU
contention hits both alike; prints absolute medians, the ratio torch/pysiglib and the shapes.
Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_signature_backends.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from norse_dh.losses.mmd import expected_signature_loss, sig_mmd2
from norse_dh.losses.signature import RBFKernel


def _time(fn, x, y) -> float:
    x = x.detach().requires_grad_(True)
    t = time.perf_counter()
    loss = fn(x, y)
    loss.backward()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    cases = []
    # Exp. 1: single neuron, M = 3 spikes -> Marcus lift length 8 in R^2; batch 128 vs 128.
    x1 = torch.randn(128, 8, 2, generator=g).cumsum(1) * 0.3
    y1 = torch.randn(128, 8, 2, generator=g).cumsum(1) * 0.3
    for d in (0, 1):
        cases.append(
            (
                f"MMD2 linear dyadic={d}",
                (128, 8, 2),
                x1,
                y1,
                lambda b, d=d: lambda x, y: sig_mmd2(x, y, dyadic_order=d, backend=b),
            )
        )
    cases.append(
        (
            "MMD2 rbf(1.0) dyadic=1",
            (128, 8, 2),
            x1,
            y1,
            lambda b: lambda x, y: sig_mmd2(x, y, static_kernel=RBFKernel(1.0), dyadic_order=1, backend=b),
        )
    )
    cases.append(
        ("expected-sig depth 3", (128, 8, 2), x1, y1, lambda b: lambda x, y: expected_signature_loss(x, y, backend=b))
    )
    # Exp. 2: 22 neurons -> 23-d Marcus paths, ~75 spikes -> length ~152.
    x2 = torch.randn(128, 152, 23, generator=g).abs().cumsum(1) * 0.05
    y2 = torch.randn(128, 152, 23, generator=g).abs().cumsum(1) * 0.05
    cases.append(
        (
            "expected-sig depth 3",
            (128, 152, 23),
            x2,
            y2,
            lambda b: lambda x, y: expected_signature_loss(x, y, backend=b),
        )
    )
    cases.append(
        ("MMD2 linear dyadic=0", (16, 152, 23), x2[:16], y2[:16], lambda b: lambda x, y: sig_mmd2(x, y, backend=b))
    )
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {args.repeats} (median fwd+bwd)")
    print(
        f"{'loss':28s} {'shape (B, L, d) each side':>26s} {'torch [s]':>10s} {'pysiglib [s]':>13s} {'torch/pysiglib':>15s}"
    )
    for name, shape, x, y, make in cases:
        times = {"torch": [], "pysiglib": []}
        for _ in range(args.repeats):
            for b in ("torch", "pysiglib"):
                times[b].append(_time(make(b), x, y))
        tt, tp = statistics.median(times["torch"]), statistics.median(times["pysiglib"])
        print(f"{name:28s} {str(shape):>26s} {tt:10.4f} {tp:13.4f} {tt / tp:15.2f}")


if __name__ == "__main__":
    main()

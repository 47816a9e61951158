"""Lava build/compile time, time per step and end-to-end time for 100 samples (issue 7 benchmark).

Models (random weights; the cost does not depend on training): delayed-XOR DH-SFNN 20 -> 16 (D = 1) + leaky readout
(T = 200), multi-timescale-XOR DH-SFNN 40 -> 16 (D = 2) + linear readout (T = 100) and an SHD-size DH-SFNN
700 -> 64 (D = 4) + leaky readout 64 -> 20 (T = --shd-steps, 1000 in the reference binning). Each model is exported
to a NIR file and run through ``lava_export.run_network`` (worker process, Lava CPU simulator). Backends
(``floating_pt`` / ``fixed_pt``) and lane settings are interleaved per repetition so machine load hits all of them
alike; the table prints the medians, and ratios against ``floating_pt`` with one lane.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_lava.py [--samples 100] [--repeats 1]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lava_export import resource_report, run_network
from nir_bridge import export_model, write_nir
from norse_dh.modules import DHLIF, LeakyReadout, SequentialSNN


def models(shd_steps: int):
    torch.manual_seed(0)
    yield "delayed-xor", SequentialSNN(DHLIF(20, 16, branches=1, seed=1), LeakyReadout(16, 2, seed=2)), 200, 0.05
    yield "multi-xor", SequentialSNN(DHLIF(40, 16, branches=2, seed=3), nn.Linear(16, 2)), 100, 0.05
    yield "shd-700-64", SequentialSNN(DHLIF(700, 64, branches=4, seed=4), LeakyReadout(64, 20, seed=5)), shd_steps, 0.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--single-lane-samples", type=int, default=10, help="samples for the one-lane runs")
    parser.add_argument("--shd-steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    configs = [("floating_pt", "auto"), ("fixed_pt", "auto"), ("floating_pt", 1), ("fixed_pt", 1)]
    with tempfile.TemporaryDirectory() as tmp:
        for name, model, steps, rate in models(args.shd_steps):
            path = write_nir(export_model(model, 1e-3), Path(tmp) / f"{name}.nir")
            rep = resource_report(path)
            print(f"\n== {name}: T = {steps}; {rep.format().splitlines()[-1]}")
            x = (rng.random((args.samples, steps, model[0].input_size)) < rate).astype(np.uint8)
            times: dict = {c: [] for c in configs}
            for _ in range(args.repeats):
                for backend, lanes in configs:  # interleaved
                    xs = x if lanes == "auto" else x[: args.single_lane_samples]
                    res = run_network(path, xs, backend, timeout=600, lanes=lanes, warn=False)
                    t = dict(res.timings)
                    t["per_sample"] = (t["total"] - t["compile"] - t["init"]) / xs.shape[0]
                    t["per_sample_step"] = t["run"] / (xs.shape[0] * steps)
                    t["samples"] = xs.shape[0]
                    times[(backend, lanes)].append(t)
            base = statistics.median(t["per_sample_step"] for t in times[("floating_pt", 1)])
            print(
                f"{'backend':<12}{'lanes':>6}{'samples':>8}{'build s':>9}{'compile s':>10}{'init s':>8}{'run s':>8}"
                f"{'stop s':>8}{'total s':>9}{'ms/step':>9}{'us/sample-step':>16}{'ratio':>7}"
            )
            for (backend, _lanes), ts in times.items():
                med = {k: statistics.median(t[k] for t in ts) for k in ts[0]}
                print(
                    f"{backend:<12}{med['lanes']:>6.0f}{med['samples']:>8.0f}{med['build']:>9.3f}{med['compile']:>10.2f}"
                    f"{med['init']:>8.2f}{med['run']:>8.2f}{med['stop']:>8.2f}{med['total']:>9.2f}"
                    f"{1e3 * med['per_step']:>9.2f}{1e6 * med['per_sample_step']:>16.1f}"
                    f"{base / med['per_sample_step']:>7.1f}"
                )
            auto = statistics.median(t["total"] for t in times[("floating_pt", "auto")])
            print(f"end to end, {args.samples} samples, floating_pt (worker start to results): {auto:.1f} s")


if __name__ == "__main__":
    main()

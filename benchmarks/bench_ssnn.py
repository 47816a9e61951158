"""Time per training step of the stochastic-SNN generative experiments, split into simulation and loss.

For Exp. 1 (single neuron, B = 128 paths in [0, 5], dt = 0.01) and Exp. 2 (4-16-2 network, B = 128 paths in [0, 1]),
at the starting parameters and at the truth, one step = simulate the model batch (forward), Marcus-lift and loss
(forward), loss backward to the spike times, simulation backward to the parameters. Prints the median of each part
and the share of the step spent in simulation and in the loss (wall clock), plus the step's process CPU time (less
sensitive to contention on a shared machine). Repetitions interleave the cases.
Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ssnn.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lightning_tasks.ssnn import SSNNDataModule, SSNNGenerativeTask


def one_step(task: SSNNGenerativeTask, data, gen: torch.Generator) -> dict[str, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    sol = task(data[0].shape[0], gen)
    t1 = time.perf_counter()
    st = sol.spike_times
    loss = task.spike_loss((st, sol.counts), data, match=task.hparams.match_spikes)
    t2 = time.perf_counter()
    (g,) = torch.autograd.grad(loss, st, retain_graph=True)
    t3 = time.perf_counter()
    st.backward(g)
    t4 = time.perf_counter()
    cpu = time.process_time() - c0
    task.zero_grad()
    return {"sim_fwd": t1 - t0, "loss_fwd": t2 - t1, "loss_bwd": t3 - t2, "sim_bwd": t4 - t3, "cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    cases = []
    for exp, loss, start in (
        ("current", "expected_signature", True),
        ("current", "expected_signature", False),
        ("current", "mmd", True),
        ("current", "mmd", False),
        ("weights", "expected_signature", True),
        ("weights", "expected_signature", False),
    ):
        dm = SSNNDataModule(exp, n_train=args.batch, n_test=2, seed=0)
        dm.setup("fit")
        task = SSNNGenerativeTask(experiment=exp, loss=loss, backend="pysiglib")
        if not start:  # at the truth
            task.ssnn.load_state_dict(dm.truth.state_dict())
        label = f"Exp.{1 if exp == 'current' else 2} {loss:18s} {'start' if start else 'truth'}"
        cases.append((label, task, dm.train_data, torch.Generator().manual_seed(0), []))
    for _ in range(args.repeats):
        for _label, task, data, gen, out in cases:
            out.append(one_step(task, data, gen))
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, medians of {args.repeats}"
    )
    print(
        f"{'case':40s} {'step [s]':>9s} {'sim fwd':>8s} {'sim bwd':>8s} {'loss f+b':>9s} {'sim %':>6s} {'loss %':>7s} {'CPU [s]':>8s}"
    )
    for label, _task, _data, _, out in cases:
        med = {k: statistics.median(o[k] for o in out) for k in out[0]}
        cpu = med.pop("cpu")
        total = sum(med.values())
        sim, lo = med["sim_fwd"] + med["sim_bwd"], med["loss_fwd"] + med["loss_bwd"]
        print(
            f"{label:40s} {total:9.3f} {med['sim_fwd']:8.3f} {med['sim_bwd']:8.3f} {lo:9.3f} "
            f"{100 * sim / total:6.1f} {100 * lo / total:7.1f} {cpu:8.3f}"
        )
    print("shapes: Exp.1 K=1, M=3, T=5, dt=0.01 (500 steps); Exp.2 K=22, M=32, T=1, dt=0.01 (100 steps)")


if __name__ == "__main__":
    main()

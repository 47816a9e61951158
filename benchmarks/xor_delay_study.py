"""Delayed spiking XOR: vanilla SFNN vs 1-branch DH-SFNN against the delay (DH-SNN paper Fig. 3b, SI Fig. S3a).

Every model is trained with real Lightning (``SNNClassifier`` + ``DelayedXORDataModule``) under the same budget and
the same settings: Adam, one learning rate for weights and timing factors, StepLR(epochs / 3, 0.1) (the paper's
StepLR(50, 0.1) over 150 epochs, scaled), ``epochs x batches_per_epoch`` fresh batches, leaky-integrator readout,
per-step CE on the scored steps. Test accuracy is measured on a fixed test set (per scored step, micro-averaged).
CPU time is the process time of ``fit`` + ``test`` of one run (run with ``OMP_NUM_THREADS=1``, one run at a time).

Results are appended as JSON lines to ``--out`` as they come, so an interrupted study keeps its finished runs and
``--table-only`` prints the table from them. Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/xor_delay_study.py --epochs 30 --batch-size 256
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import pytorch_lightning as pl
from study_runner import fit_and_test, quiet_single_thread, run_plan

from lightning_tasks.classifier import SNNClassifier
from lightning_tasks.data.xor import DelayedXORDataModule

# name -> hidden layer config (16 neurons, as the reference); soma factor init medium U(0, 4) everywhere.
MODELS: dict[str, dict] = {
    "vanilla SFNN, hard reset": dict(kind="sfnn", reset="zero"),
    "vanilla SFNN, soft reset": dict(kind="sfnn", reset="subtract"),
    "vanilla SFNN, no reset": dict(kind="sfnn", reset="none"),
    "DH-SFNN 1-branch, fixed, small init": dict(kind="dh_sfnn", dend_tau_init="small", train_dend_tau=False),
    "DH-SFNN 1-branch, fixed, medium init": dict(kind="dh_sfnn", dend_tau_init="medium", train_dend_tau=False),
    "DH-SFNN 1-branch, fixed, large init": dict(kind="dh_sfnn", dend_tau_init="large", train_dend_tau=False),
    "DH-SFNN 1-branch, learnable, small init": dict(kind="dh_sfnn", dend_tau_init="small"),
    "DH-SFNN 1-branch, learnable, medium init": dict(kind="dh_sfnn", dend_tau_init="medium"),
    "DH-SFNN 1-branch, learnable, large init": dict(kind="dh_sfnn", dend_tau_init="large"),
}
MAIN = ("DH-SFNN 1-branch, learnable, large init", "vanilla SFNN, no reset")


def train_once(model_name: str, delay: int, seed: int, args: argparse.Namespace) -> dict:
    """Train one model on one delay with one seed; returns its test accuracy and CPU seconds."""
    pl.seed_everything(seed, verbose=False)
    data = DelayedXORDataModule(
        delay=delay,
        batch_size=args.batch_size,
        batches_per_epoch=args.batches_per_epoch,
        test_size=args.test_size,
        val_size=args.test_size,
        seed=seed,
    )
    model = SNNClassifier(
        data.input_size,
        data.num_classes,
        data.num_steps,
        layers=[dict(hidden_size=16, **MODELS[model_name])],
        readout="leaky",
        aggregation="per_step",
        double_softmax=args.double_softmax,
        readout_init=args.readout_init,
        lr=args.lr,
        tau_lr_mult=1.0,
        lr_step_size=max(1, args.epochs // 3),
        lr_gamma=0.1,
        mask_seed=seed,
    )
    acc, cpu = fit_and_test(model, data, args.epochs)
    return dict(model=model_name, delay=delay, seed=seed, test_acc=acc, cpu_s=cpu)


def plan(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    """Runs in order of importance: the main rows at every delay first, then the rest at the longest delay."""
    longest = max(args.delays)
    runs = []
    for seed in args.seeds if args.seeds is not None else range(args.main_seeds):
        for delay in sorted(args.delays, reverse=True):
            runs += [(name, delay, seed) for name in (args.models or MAIN)]
    if args.models:  # an explicit model list runs just those models
        return runs
    for name in MODELS:
        if name not in MAIN:
            for delay in sorted(args.delays, reverse=True) if args.all_delays else [longest]:
                runs += [(name, delay, s) for s in range(args.other_seeds)]
    return runs


def table(rows: list[dict], args: argparse.Namespace) -> str:
    delays = sorted({r["delay"] for r in rows})
    lines = [
        "| model | " + " | ".join(f"delay {d}" for d in delays) + " | seeds | CPU s / run |",
        "|---|" + "---|" * len(delays) + "---|---|",
    ]
    for name in MODELS:
        mine = [r for r in rows if r["model"] == name]
        if not mine:
            continue
        cells, seeds = [], set()
        for d in delays:
            accs = [100 * r["test_acc"] for r in mine if r["delay"] == d]
            seeds |= {r["seed"] for r in mine if r["delay"] == d}
            if not accs:
                cells.append("")
            elif len(accs) == 1:
                cells.append(f"{accs[0]:.1f}")
            else:
                cells.append(f"{statistics.mean(accs):.1f} ± {statistics.stdev(accs):.1f} (n={len(accs)})")
        cpu = (
            statistics.mean(r["cpu_s"] for r in mine if r["delay"] == max(delays))
            if any(r["delay"] == max(delays) for r in mine)
            else float("nan")
        )
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(seeds)} | {cpu:.0f} (delay {max(delays)}) |")
    steps = args.epochs * args.batches_per_epoch
    lines.append("")
    lines.append(
        f"Test accuracy (%) over the scored steps of {args.test_size} fixed test sequences; every model: "
        f"{args.epochs} epochs x {args.batches_per_epoch} fresh batches of {args.batch_size} = {steps} Adam steps, "
        f"lr {args.lr} (timing factors too), StepLR({max(1, args.epochs // 3)} epochs, 0.1), "
        f"double_softmax={args.double_softmax}, 16 hidden neurons, leaky readout; CPU seconds with OMP_NUM_THREADS=1."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delays", type=int, nargs="+", default=[50, 100, 180])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batches-per-epoch", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-2)
    parser.add_argument("--double-softmax", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--readout-init",
        choices=["linear_default", "xavier_normal"],
        default="linear_default",
        help="readout weight init: the XOR script's nn.Linear default (default) or xavier_normal (runs before 2026-11-22)",
    )
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--main-seeds", type=int, default=3)
    parser.add_argument("--other-seeds", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds of the main rows (instead of 0..main-seeds-1)")
    parser.add_argument("--models", nargs="+", help="run only these models (default: both main rows, then the rest)")
    parser.add_argument("--all-delays", action="store_true", help="run the other models at every delay too")
    parser.add_argument("--out", type=Path, default=Path("runs/xor_delay_study.jsonl"))
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()

    quiet_single_thread()
    runs = [dict(model=name, delay=delay, seed=seed) for name, delay, seed in plan(args)]
    done = run_plan(runs, lambda model, delay, seed: train_once(model, delay, seed, args), args.out, args.table_only)
    print(table(done, args))


if __name__ == "__main__":
    main()

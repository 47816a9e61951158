"""Multi-timescale spiking XOR: the paper's Fig. 4 comparison over seeds, from the packaged YAML configs.

Every model is the one of its config in ``lightning_tasks/configs/xor/multitimescale_*.yaml`` (architecture, timing
factor init, readout, loss, optimizer, gradient clipping), trained with real Lightning under the same budget:
``epochs x batches_per_epoch`` fresh batches of ``batch_size`` (the paper: 150 x 100 x 500). Test accuracy is measured
once after training on the fixed test set (per scored step, micro-averaged); no model selection. CPU seconds are the
process time of ``fit`` + ``test`` (``OMP_NUM_THREADS=1``). Results are appended to ``--out`` as JSON lines as they
come; ``--table-only`` prints the table from them. Run::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/xor_multitimescale_study.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import pytorch_lightning as pl
import yaml
from study_runner import fit_and_test, quiet_single_thread, run_plan

from lightning_tasks.classifier import SNNClassifier
from lightning_tasks.data.xor import MultiTimescaleXORDataModule

CONFIGS = Path(__file__).resolve().parent.parent / "lightning_tasks" / "configs" / "xor"
MODELS: dict[str, str] = {
    "vanilla SFNN": "multitimescale_sfnn.yaml",
    "1-layer 1-branch DH-SFNN": "multitimescale_dh_sfnn_1branch.yaml",
    "2-branch DH-SFNN, uniform init": "multitimescale_dh_sfnn_2branch_uniform.yaml",
    "2-branch DH-SFNN, beneficial init": "multitimescale_dh_sfnn_2branch_beneficial.yaml",
    "2-layer 1-branch DH-SFNN": "multitimescale_dh_sfnn_2layer_1branch.yaml",
    "1-layer 1-branch DH-SRNN": "multitimescale_dh_srnn_1branch.yaml",
}


def train_once(name: str, seed: int, args: argparse.Namespace) -> dict:
    """Train the config's model with one seed; returns its test accuracy and CPU seconds."""
    config = yaml.safe_load((CONFIGS / MODELS[name]).read_text())
    data_args = dict(config["data"]["init_args"], batch_size=args.batch_size, seed=seed)
    data_args["batches_per_epoch"] = args.batches_per_epoch
    pl.seed_everything(seed, verbose=False)
    data = MultiTimescaleXORDataModule(**data_args)
    model = SNNClassifier(
        data.input_size, data.num_classes, data.num_steps, mask_seed=seed, **config["model"]["init_args"]
    )
    acc, cpu = fit_and_test(model, data, args.epochs, gradient_clip_val=config["trainer"].get("gradient_clip_val"))
    return dict(model=name, seed=seed, test_acc=acc, cpu_s=cpu)


def table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = ["| model | test accuracy per seed | mean +- std | CPU s / run |", "|---|---|---|---|"]
    for name in MODELS:
        mine = sorted((r for r in rows if r["model"] == name), key=lambda r: r["seed"])
        if not mine:
            continue
        accs = [100 * r["test_acc"] for r in mine]
        spread = f"{statistics.mean(accs):.1f} +- {statistics.stdev(accs):.1f}" if len(accs) > 1 else f"{accs[0]:.1f}"
        per_seed = " / ".join(f"{a:.1f}" for a in accs)
        cpu = statistics.mean(r["cpu_s"] for r in mine)
        lines.append(
            f"| {name} | {per_seed} (seeds {', '.join(str(r['seed']) for r in mine)}) | {spread} | {cpu:.0f} |"
        )
    lines.append("")
    lines.append(
        f"Every model: {args.epochs} epochs x {args.batches_per_epoch} fresh batches of {args.batch_size}, its config's "
        "optimizer settings; test accuracy (%) over the scored steps of the fixed test set after training."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), help="default: all")
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--batches-per-epoch", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("runs/xor_multitimescale_study.jsonl"))
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()

    quiet_single_thread()
    runs = [dict(model=name, seed=seed) for seed in args.seeds for name in args.models or MODELS]
    done = run_plan(runs, lambda model, seed: train_once(model, seed, args), args.out, args.table_only)
    print(table(done, args))


if __name__ == "__main__":
    main()

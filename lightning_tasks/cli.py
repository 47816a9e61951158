"""The ``norse-dh`` command: Lightning's CLI for every norse-dh task, plus ``export``, ``lava-run`` and ``demo``.

::

    norse-dh fit      --config xor/multitimescale_dh_sfnn_2branch_beneficial.yaml   # train (LightningCLI)
    norse-dh test     --config CONFIG.yaml --ckpt_path runs/.../checkpoints/best.ckpt
    norse-dh validate / predict ...                                                # Lightning's other subcommands
    norse-dh export   CKPT OUT.nir [--dt 1e-3]            # trained classifier -> NIR graph (nir_bridge)
    norse-dh lava-run MODEL.nir --config CONFIG.yaml      # the task's test set on Lava (lava_export)
    norse-dh demo     [--out DIR] [--quick]               # the end-to-end demo (scripts/demo.sh)

Models and data modules are chosen by ``class_path`` in YAML (any LightningModule / LightningDataModule); the data
module's ``input_size``, ``num_classes`` and ``num_steps`` are linked to the model's arguments of the same name. A
``--config`` path that does not exist relative to the working directory is looked up in the packaged configs
(``lightning_tasks/configs``). Runs log to CSV and TensorBoard under ``runs/<name>/version_<n>/`` with the plots of
:class:`lightning_tasks.callbacks.PlotCallback` in ``plots/``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

import lightning_tasks.classifier  # noqa: F401  (registers SNNClassifier for short class names)
import lightning_tasks.data.xor  # noqa: F401  (registers the XOR data modules)
from lightning_tasks.callbacks import PlotCallback

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DATA_LINKS = ("input_size", "num_classes", "num_steps")
EXTRA_COMMANDS = ("export", "lava-run", "demo")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable or not a Lightning checkpoint."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint on CPU, or raise :class:`CheckpointError` saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist (expected a .ckpt file written by fit)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # as Lightning loads it
    except Exception as err:  # torch raises several types for truncated / foreign files
        raise CheckpointError(
            f"checkpoint {str(path)!r} is corrupt or not a PyTorch checkpoint ({type(err).__name__}: {err})"
        ) from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        found = sorted(ckpt)[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a Lightning checkpoint: no 'state_dict' entry (found {found})"
        )
    return ckpt


def resolve_config(value: str) -> str:
    """``value`` itself if it exists, else the packaged config of that relative name (with or without .yaml)."""
    if Path(value).exists() or value.lstrip().startswith(("{", "[")) or "\n" in value:
        return value
    for candidate in (CONFIG_DIR / value, CONFIG_DIR / f"{value}.yaml"):
        if candidate.is_file():
            return str(candidate)
    return value


def _resolve_config_args(argv: Sequence[str]) -> list[str]:
    out = list(argv)
    for i, arg in enumerate(out):
        if arg in ("--config", "-c") and i + 1 < len(out):
            out[i + 1] = resolve_config(out[i + 1])
        elif arg.startswith("--config="):
            out[i] = "--config=" + resolve_config(arg.split("=", 1)[1])
    return out


def align_logger_versions(trainer: pl.Trainer) -> None:
    """Make TensorBoard share the CSV logger's ``version_<n>`` folder when both log under the same name."""
    csv = next((lg for lg in trainer.loggers if isinstance(lg, CSVLogger)), None)
    if csv is None:
        return
    for logger in trainer.loggers:
        if (
            isinstance(logger, TensorBoardLogger)
            and logger._version is None
            and Path(logger.root_dir).resolve() == Path(csv.root_dir).resolve()
        ):
            logger._version = csv.version


def default_loggers(save_dir: str = "runs", name: str = "norse-dh") -> list[dict[str, Any]]:
    return [
        {"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": save_dir, "name": name}},
        {
            "class_path": "pytorch_lightning.loggers.TensorBoardLogger",
            "init_args": {"save_dir": save_dir, "name": name},
        },
    ]


def _run_name(argv: Sequence[str]) -> str:
    """Log folder name: the stem of the last ``--config`` file given, else ``norse-dh``."""
    name = "norse-dh"
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg in ("--config", "-c") and i + 1 < len(argv) else None
        value = arg.split("=", 1)[1] if arg.startswith("--config=") else value
        if value and Path(value).suffix in (".yaml", ".yml"):
            name = Path(value).stem
    return name


# Lightning annotates the limit_*_batches as Optional[Union[int, float]] (int: batches, float: fraction), but CPython's
# typing cache returns an equal Union made earlier with float first (lightning_fabric's Optional[Union[float, int]]),
# and jsonargparse tries a Union's types in order: `--trainer.limit_train_batches=1` (one batch) became 1.0 (all of
# them). PEP 604 unions are not shared that way and keep int first.
BatchLimit = int | float | None


class NorseDHTrainer(pl.Trainer):
    """``pl.Trainer`` whose ``limit_*_batches`` parse as in the source on the command line and in YAML.

    Args:
        limit_train_batches: training batches per epoch: an int counts batches (1: one), a float is a fraction
            (1.0: all); None: all.
        limit_val_batches: validation batches per check, int or fraction as above.
        limit_test_batches: test batches, int or fraction as above.
        limit_predict_batches: prediction batches, int or fraction as above.
    """

    def __init__(
        self,
        *,
        limit_train_batches: BatchLimit = None,
        limit_val_batches: BatchLimit = None,
        limit_test_batches: BatchLimit = None,
        limit_predict_batches: BatchLimit = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            limit_train_batches=limit_train_batches,
            limit_val_batches=limit_val_batches,
            limit_test_batches=limit_test_batches,
            limit_predict_batches=limit_predict_batches,
            **kwargs,
        )


class NorseDHCLI(LightningCLI):
    """LightningCLI with subclass mode for model and data, data->model links, CSV+TensorBoard logs and plots."""

    def __init__(self, args: Sequence[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("trainer_class", NorseDHTrainer)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        if args is None:
            # Resolve in place: the DDP launcher re-runs sys.argv in its child processes.
            sys.argv[1:] = _resolve_config_args(sys.argv[1:])
            name = _run_name(sys.argv[1:])
        else:
            args = _resolve_config_args(args)
            name = _run_name(args)
        kwargs.setdefault("trainer_defaults", {"logger": default_loggers(name=name), "callbacks": [PlotCallback()]})
        super().__init__(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=run,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser) -> None:
        for attr in DATA_LINKS:
            parser.link_arguments(f"data.{attr}", f"model.init_args.{attr}", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        # Lightning reads the checkpoint's hyperparameters right after parsing; check the file first so that a
        # missing or corrupt checkpoint stops the run with the CLI's error, before anything is built.
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and str(ckpt_path) not in ("best", "last", "hpc", "registry"):
            try:
                read_checkpoint(ckpt_path)
            except CheckpointError as err:
                self._parser(subcommand).error(str(err))
        super()._parse_ckpt_path()

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        align_logger_versions(trainer)
        return trainer


# ------------------------------------------------------------------------------------------------------------ export
def load_module(checkpoint: str | Path, class_path: str | None = None) -> pl.LightningModule:
    """The LightningModule stored in a checkpoint (class from ``class_path``, the CLI's ``_class_path``, or
    :class:`~lightning_tasks.classifier.SNNClassifier`), on CPU in eval mode."""
    ckpt = read_checkpoint(checkpoint)
    hparams = ckpt.get("hyper_parameters", {}) or {}
    class_path = class_path or hparams.get("_class_path") or "lightning_tasks.classifier.SNNClassifier"
    module_name, _, class_name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise CheckpointError(f"checkpoint model class {class_path!r} cannot be imported ({err})") from err
    module = cls.load_from_checkpoint(checkpoint, map_location="cpu")
    return module.eval()


def _network_dt(network: torch.nn.Module) -> float:
    for layer in network.modules():
        if hasattr(layer, "dt") and isinstance(layer.dt, float):
            return layer.dt
    return 1e-3


def export_checkpoint(checkpoint: str | Path, output: str | Path, dt: float | None = None, class_path=None):
    """Load a trained classifier and write its network (``module.model``) as a NIR file; returns the graph."""
    module = load_module(checkpoint, class_path)
    network = getattr(module, "model", None)
    if not isinstance(network, torch.nn.Module):
        raise CheckpointError(f"{type(module).__name__} has no `model` network to export (expected module.model)")
    try:
        import nir_bridge

        export_model, write_nir = nir_bridge.export_model, nir_bridge.write_nir
    except (ImportError, AttributeError) as err:
        raise RuntimeError(f"NIR export needs nir_bridge.export_model and nir_bridge.write_nir ({err})") from err
    graph = export_model(network, dt=dt if dt is not None else _network_dt(network))
    write_nir(graph, output)
    return graph


def _export_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="norse-dh export", description="Export a trained classifier to NIR.")
    parser.add_argument("checkpoint", help="Lightning checkpoint (.ckpt) written by `norse-dh fit`")
    parser.add_argument("output", help="NIR file to write (.nir)")
    parser.add_argument("--dt", type=float, default=None, help="time step in seconds (default: the layers' dt)")
    parser.add_argument("--model-class", default=None, help="LightningModule class path (default: from checkpoint)")
    args = parser.parse_args(argv)
    if args.dt is not None and not args.dt > 0:
        parser.error(f"--dt must be > 0, got {args.dt}")
    try:
        graph = export_checkpoint(args.checkpoint, args.output, args.dt, args.model_class)
    except (CheckpointError, RuntimeError, ValueError) as err:
        parser.error(str(err))
    print(f"wrote {args.output}: {len(graph.nodes)} nodes, {len(graph.edges)} edges")
    return 0


# ---------------------------------------------------------------------------------------------------------- lava-run
def build_from_config(config: str, overrides: Sequence[str] = ()) -> NorseDHCLI:
    """Parse a task config (as ``fit`` would) and build its data module and model without running anything."""
    args = ["--config", config, *overrides, "--trainer.logger=false"]
    return NorseDHCLI(args=args, run=False, trainer_defaults={"callbacks": []}, save_config_callback=None)


def lava_run(
    nir_path: str | Path,
    config: str,
    overrides: Sequence[str] = (),
    checkpoint: str | None = None,
    backend: str = "floating_pt",
    limit: int | None = None,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """Run a task's test set through the NIR network on Lava (``lava_export.run_network``).

    Returns the Lava accuracy (readout aggregated as the task's classifier does) and Lava's timings; with the
    training ``checkpoint`` also the PyTorch accuracy on the same samples, the per-layer spike agreement and the
    prediction agreement between Lava and PyTorch.
    """
    try:
        import lava_export

        run_network = lava_export.run_network
    except (ImportError, AttributeError) as err:
        raise RuntimeError(f"lava-run needs lava_export.run_network ({err})") from err
    cli = build_from_config(config, overrides)
    data, module = cli.datamodule, cli.model
    if checkpoint is not None:
        module.load_state_dict(read_checkpoint(checkpoint)["state_dict"])
    module.eval()
    data.setup("test")
    batches = list(data.test_dataloader())
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    if limit is not None:
        x, y = x[:limit], y[:limit]
    result = run_network(str(nir_path), x.numpy(), backend=backend, timeout=timeout)
    report: dict[str, Any] = {"samples": int(x.shape[0]), "steps": int(x.shape[1]), "backend": backend}
    report["lava_seconds"] = {k: round(float(v), 3) for k, v in result.timings.items()}
    network = getattr(module, "model", None)
    with torch.no_grad():
        torch_outputs = network.forward_all(x.transpose(0, 1)) if network is not None else None
    per_layer = getattr(result, "layer_spikes", None)
    if per_layer is None:  # older result layout: `spikes` is the list of per-layer arrays
        per_layer = result.spikes if isinstance(result.spikes, list) else [result.spikes]
    lava_spikes = [torch.as_tensor(s, dtype=torch.float32).transpose(0, 1) for s in per_layer]  # (T, B, N)
    if result.readout is not None:
        readout = torch.as_tensor(result.readout, dtype=torch.float32).transpose(0, 1)
    elif network is not None and lava_spikes:  # a readout Lava does not run: apply the trained one to its spikes
        with torch.no_grad():
            readout = network[-1](lava_spikes[-1])
            readout = readout[0] if isinstance(readout, tuple) else readout
    else:
        raise RuntimeError("the Lava run returned neither readout values nor spikes to classify")
    if hasattr(module, "logits") and hasattr(module, "_targets"):
        tgt = module._targets(y.long(), readout.shape[0])
        keep = tgt != -100
        lava_pred = module.logits(readout).argmax(-1)
        report["lava_accuracy"] = float((lava_pred[keep] == tgt[keep]).float().mean())
        if checkpoint is not None and torch_outputs is not None:
            torch_pred = module.logits(torch_outputs[-1]).argmax(-1)
            report["pytorch_accuracy"] = float((torch_pred[keep] == tgt[keep]).float().mean())
            report["prediction_agreement"] = float((torch_pred[keep] == lava_pred[keep]).float().mean())
    if checkpoint is not None and torch_outputs is not None:
        spiking = [out for layer, out in zip(network, torch_outputs) if hasattr(layer, "v_th")]
        report["spike_agreement"] = [
            float((a == b).float().mean()) for a, b in zip(spiking, lava_spikes) if a.shape == b.shape
        ]
        report["spike_counts"] = {
            "pytorch": [int(a.sum()) for a in spiking],
            "lava": [int(b.sum()) for b in lava_spikes],
        }
    return report


def _lava_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="norse-dh lava-run", description="Evaluate a NIR network on Lava.")
    parser.add_argument("nir", help="NIR file written by `norse-dh export`")
    parser.add_argument("--config", required=True, help="the task config used for training (data and readout)")
    parser.add_argument("--data", default=None, help="data module instead of the config's: class path or YAML file")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, e.g. data.init_args.test_size=200",
    )
    parser.add_argument("--ckpt", default=None, help="checkpoint: also compare with the PyTorch model")
    parser.add_argument("--backend", choices=("floating_pt", "fixed_pt"), default="floating_pt")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N test samples")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before the Lava run is stopped")
    args = parser.parse_args(argv)
    if not Path(args.nir).is_file():
        parser.error(f"NIR file {args.nir!r} does not exist")
    overrides = (["--data", args.data] if args.data else []) + [f"--{kv.removeprefix('--')}" for kv in args.set]
    try:
        report = lava_run(
            args.nir, resolve_config(args.config), overrides, args.ckpt, args.backend, args.limit, args.timeout
        )
    except (CheckpointError, RuntimeError, ValueError) as err:
        parser.error(f"{type(err).__name__}: {err}")
    print(json.dumps(report, indent=2))
    return 0


# -------------------------------------------------------------------------------------------------------------- demo
DEMO_RUNS = (
    # (label, packaged config); the demo trains them shorter than the paper (see _demo_overrides)
    ("delayed XOR (delay 180), vanilla SFNN", "xor/delayed_sfnn_soft_reset.yaml"),
    ("delayed XOR (delay 180), 1-branch DH-SFNN", "xor/delayed_dh_sfnn_learnable_large.yaml"),
    ("multi-timescale XOR, 2-branch DH-SFNN (beneficial init)", "xor/multitimescale_dh_sfnn_2branch_beneficial.yaml"),
)
DEMO_STEPS = (40, 40, 128)  # epochs x fresh batches per epoch x batch size: 1600 Adam steps per model


def _demo_overrides(quick: bool) -> list[str]:
    epochs, batches, batch_size = (1, 2, 16) if quick else DEMO_STEPS
    evaluation = (32, 32) if quick else (512, 1000)
    return [
        f"--trainer.max_epochs={epochs}",
        f"--data.init_args.batch_size={batch_size}",
        f"--data.init_args.batches_per_epoch={batches}",
        f"--data.init_args.val_size={evaluation[0]}",
        f"--data.init_args.test_size={evaluation[1]}",
        f"--model.init_args.lr_step_size={max(epochs, 1) * 10}",  # no LR decay within the short run
    ]


def run_demo(out: str | Path = "runs/demo", quick: bool = False) -> dict[str, Any]:
    """Train the demo models, test them, write plots, export the DH model to NIR and run it on Lava if available."""
    out = Path(out)
    rows, results = [], {}
    for label, config in DEMO_RUNS:
        name = Path(config).stem
        args = ["fit", "--config", config, *_demo_overrides(quick)]
        start = time.perf_counter()
        cli = NorseDHCLI(args=args, trainer_defaults=_demo_trainer_defaults(out, name))
        fit_s = time.perf_counter() - start
        ckpt = cli.trainer.checkpoint_callback.best_model_path if cli.trainer.checkpoint_callback else ""
        metrics = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt or None, verbose=False)
        acc = float(metrics[0]["test_acc"])
        results[name] = {"label": label, "test_acc": acc, "fit_s": fit_s, "ckpt": ckpt, "log_dir": cli.trainer.log_dir}
        rows.append((label, acc, fit_s, cli.trainer.log_dir))
    epochs, batches, batch_size = (1, 2, 16) if quick else DEMO_STEPS
    print("\n" + "=" * 110)
    print(f"Demo: {epochs} epochs x {batches} fresh batches of {batch_size} per model (the paper: 150 x 100 x 500).")
    print("Test accuracy over the scored steps of the fixed test set; chance is 0.5.")
    print(f"{'model':58s} {'test acc':>9s} {'train s':>8s}  plots")
    for label, acc, secs, log_dir in rows:
        print(f"{label:58s} {acc:9.3f} {secs:8.0f}  {log_dir}/plots")
    print("=" * 110)
    dh = results[Path(DEMO_RUNS[-1][1]).stem]
    try:
        nir_path = out / "multitimescale_dh_sfnn.nir"
        export_checkpoint(dh["ckpt"], nir_path)
        print(f"NIR: wrote {nir_path}")
        results["nir"] = str(nir_path)
    except (RuntimeError, CheckpointError) as err:
        print(f"NIR export not run: {err}")
        return results
    try:
        report = lava_run(
            nir_path, DEMO_RUNS[-1][1], ["--data.init_args.test_size=64"], dh["ckpt"], limit=64 if not quick else 8
        )
        agreement = ", ".join(f"{a:.4f}" for a in report.get("spike_agreement", []))
        print(
            f"Lava ({report['backend']}, {report['samples']} test samples x {report['steps']} steps): accuracy "
            f"{report.get('lava_accuracy', float('nan')):.3f} vs PyTorch {report.get('pytorch_accuracy', float('nan')):.3f}; "
            f"spike agreement with PyTorch per layer: {agreement}; prediction agreement "
            f"{report.get('prediction_agreement', float('nan')):.4f}; spikes {report.get('spike_counts')}"
        )
        results["lava"] = report
    except RuntimeError as err:
        print(f"Lava run not done: {err}")
    return results


def _demo_trainer_defaults(out: Path, name: str) -> dict[str, Any]:
    return {"logger": default_loggers(str(out), name), "callbacks": [PlotCallback()]}


def _demo_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="norse-dh demo", description="End-to-end demo on the spiking XOR tasks.")
    parser.add_argument("--out", default="runs/demo", help="folder for logs, plots, checkpoints and the NIR file")
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run instead of the demo")
    args = parser.parse_args(argv)
    run_demo(args.out, args.quick)
    return 0


# -------------------------------------------------------------------------------------------------------------- main
def main(args: Sequence[str] | None = None) -> int | None:
    """Entry point of the ``norse-dh`` console script."""
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] in EXTRA_COMMANDS:
        handler = {"export": _export_main, "lava-run": _lava_main, "demo": _demo_main}[argv[0]]
        return handler(argv[1:])
    NorseDHCLI(args=None if args is None else argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())

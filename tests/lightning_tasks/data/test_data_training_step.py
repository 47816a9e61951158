"""Every benchmark config parses with the CLI, and one real training + validation + test step runs per task."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lightning_tasks.classifier import SNNClassifier
from lightning_tasks.cli import CONFIG_DIR, NorseDHCLI
from lightning_tasks.data.base import DatasetNotFoundError

BENCHMARKS = ("shd", "ssc", "gsc", "smnist", "psmnist", "deap", "neurovpr")
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.yaml") if p.name.split("_")[0] in BENCHMARKS)
TASK_CONFIGS = {
    "shd": "shd_dh_sfnn_2layer_8branch.yaml",
    "ssc": "ssc_dh_srnn_8branch.yaml",
    "gsc": "gsc_dh_sfnn_3layer_8branch.yaml",
    "smnist": "smnist_dh_srnn_2branch.yaml",
    "deap": "deap_dh_sfnn_valence.yaml",
    "neurovpr": "neurovpr_dh_sfnn_4branch.yaml",
}
# Configs not trained below are at least instantiated (data module, model, monitors).
BUILD_ONLY = [c for c in CONFIGS if c not in TASK_CONFIGS.values()]
QUIET = [
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.num_sanity_val_steps=0",
]


def build(config: str, root: Path, overrides: list[str]) -> NorseDHCLI:
    args = ["--config", config, f"--data.init_args.data_dir={root}", f"--trainer.default_root_dir={root / 'run'}"]
    # No plot callback (matplotlib costs seconds); the configs' own callbacks (ModelCheckpoint, EarlyStopping) stay.
    return NorseDHCLI(args=[*args, *QUIET, *overrides], run=False, trainer_defaults={})


def test_every_benchmark_task_has_configs():
    assert {c.split("_")[0] for c in CONFIGS} == set(BENCHMARKS)
    assert len(CONFIGS) >= 2 * len(BENCHMARKS)  # a DH model and its vanilla baseline per task


def assert_linked_and_selected_on_validation(cli: NorseDHCLI) -> None:
    data, hp = cli.datamodule, cli.model.hparams
    assert (hp.input_size, hp.num_classes, hp.num_steps) == (data.input_size, data.num_classes, data.num_steps)
    monitors = {type(cb).__name__: getattr(cb, "monitor", None) for cb in cli.trainer.callbacks}
    assert monitors["ModelCheckpoint"] == monitors["EarlyStopping"] == "val_acc"  # never the test set


@pytest.mark.parametrize("config", BUILD_ONLY)
def test_config_builds_and_links_data_to_model(config):
    """The other configs: their data and model arguments instantiate (directly, the CLI costs ~1 s per config)."""
    cfg = yaml.safe_load((CONFIG_DIR / config).read_text())
    module, _, name = cfg["data"]["class_path"].rpartition(".")
    data = getattr(importlib.import_module(module), name)(**cfg["data"]["init_args"])
    assert cfg["model"]["class_path"] == "lightning_tasks.classifier.SNNClassifier"
    links = {k: getattr(data, k) for k in ("input_size", "num_classes", "num_steps")}
    model = SNNClassifier(**links, **cfg["model"]["init_args"])
    assert sum(p.numel() for p in model.parameters()) > 0
    monitors = {c["class_path"].rpartition(".")[2]: c["init_args"]["monitor"] for c in cfg["trainer"]["callbacks"]}
    assert monitors == {"ModelCheckpoint": "val_acc", "EarlyStopping": "val_acc"}  # never the test set


def make_task_data(task: str, root: Path, w) -> list[str]:
    """Miniature dataset for ``task`` under ``root``; returns CLI overrides that keep one step cheap."""
    rng = np.random.default_rng(0)
    small = ["--data.init_args.batch_size=4"]
    if task == "shd":
        w.random_spike_h5(root / "shd_train.h5", np.repeat(np.arange(20), 10), rng)
        w.random_spike_h5(root / "shd_test.h5", np.arange(20), rng)
        return [*small, "--data.init_args.dt_ms=8"]
    if task == "ssc":
        for name in ("ssc_train.h5", "ssc_valid.h5", "ssc_test.h5"):
            w.random_spike_h5(root / name, np.arange(35), rng)
        return [*small, "--data.init_args.dt_ms=8"]
    if task == "gsc":
        w.make_gsc(root, rng)
        return [*small, "--data.init_args.silence_counts=[2, 1, 1]"]
    if task in ("smnist", "psmnist"):
        w.make_mnist(root)
        return ["--data.init_args.batch_size=2"]
    if task == "deap":
        ratings = np.array([[1.0, 9.0, 5, 5], [5.0, 5.0, 5, 5], [8.0, 2.0, 5, 5]] * 2)
        w.make_subject(root / "s01.dat", rng, ratings)
        return [*small, "--data.init_args.subjects=[1]"]
    w.make_trajectories(root, ids=(1, 2, 3, 4), sensor=(16, 24), n_files=6)
    return [
        *small,
        "--data.init_args.sensor_size=[16, 24]",
        "--data.init_args.train_trajectories=[1, 2]",
        "--data.init_args.val_trajectories=[3]",
        "--data.init_args.test_trajectories=[4]",
    ]


@pytest.mark.parametrize("task", sorted(TASK_CONFIGS))
def test_one_training_step_per_task(task, tmp_path, writers):
    overrides = make_task_data(task, tmp_path, writers)
    cli = build(TASK_CONFIGS[task], tmp_path, [*overrides, "--trainer.max_epochs=1"])
    # One batch each (set on the trainer: the CLI parses `--trainer.limit_train_batches=1` as the fraction 1.0).
    cli.trainer.limit_train_batches = cli.trainer.limit_val_batches = cli.trainer.limit_test_batches = 1
    assert_linked_and_selected_on_validation(cli)
    before = [p.detach().clone() for p in cli.model.parameters()]
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    after = list(cli.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before))  # a real optimizer step happened
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["train_loss_epoch"]) and 0.0 <= float(metrics["val_acc"]) <= 1.0
    best = cli.trainer.checkpoint_callback.best_model_path
    assert best and Path(best).is_file()  # selected on val_acc
    (result,) = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=best, verbose=False)
    assert 0.0 <= result["test_acc"] <= 1.0


def test_missing_data_stops_fit_before_any_step(tmp_path):
    cli = build("shd_dh_sfnn_2layer_8branch.yaml", tmp_path / "nowhere", [])
    with pytest.raises(
        DatasetNotFoundError, match=r"no such directory(?s:.*)Expected layout(?s:.*)shd_train\.h5(?s:.*)zenkelab"
    ):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 0

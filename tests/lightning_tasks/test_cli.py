"""The norse-dh CLI: every packaged config parses, bad configs fail before training, runs resume exactly,
checkpoints are checked, and DDP on CPU works (fit, logs, plots, export and Lava: test_demo.py)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_tasks.classifier import SNNClassifier
from lightning_tasks.cli import CONFIG_DIR, NorseDHCLI, _resolve_config_args, main, read_checkpoint

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted(p.relative_to(CONFIG_DIR).as_posix() for p in (CONFIG_DIR / "xor").glob("*.yaml"))
EXPECTED = {
    "delayed_sfnn_hard_reset",
    "delayed_sfnn_soft_reset",
    "delayed_sfnn_no_reset",
    *(f"delayed_dh_sfnn_{t}_{i}" for t in ("fixed", "learnable") for i in ("small", "medium", "large")),
    "multitimescale_sfnn",
    "multitimescale_dh_sfnn_1branch",
    "multitimescale_dh_sfnn_2branch_uniform",
    "multitimescale_dh_sfnn_2branch_beneficial",
    "multitimescale_dh_sfnn_2layer_1branch",
    "multitimescale_dh_srnn_1branch",
}


def tiny(config: str, epochs: int = 1) -> list[str]:
    steps = "--data.init_args.time_steps=30" if "delayed" in config else "--data.init_args.time_steps=40"
    return [
        "--config",
        config,
        f"--trainer.max_epochs={epochs}",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.log_every_n_steps=1",
        steps,
        "--data.init_args.batch_size=8",
        "--data.init_args.batches_per_epoch=2",
        "--data.init_args.val_size=16",
        "--data.init_args.test_size=16",
    ]


def test_paper_comparison_configs_are_all_shipped():
    assert {Path(c).stem for c in CONFIGS} == EXPECTED


def _build(cli: NorseDHCLI, args: list[str]):
    """Parse and instantiate another config with an existing CLI's parser (building a parser takes seconds)."""
    cfg = cli.parser.parse_args(_resolve_config_args(args))
    cli.config = cfg
    if hasattr(cli, "config_dump"):
        del cli.config_dump  # the instantiator stores hyperparameters from the current config's dump
    return cfg, cli.parser.instantiate_classes(cfg)


def test_every_config_builds_its_model_with_paper_settings():
    cli = NorseDHCLI(args=tiny(CONFIGS[0]), run=False)
    assert cli.model.hparams.input_size == cli.datamodule.input_size == 20
    assert cli.model.hparams.num_steps == cli.datamodule.num_steps == 30
    for config in CONFIGS:
        cfg, full = _build(cli, ["--config", str(CONFIG_DIR / config)])
        assert isinstance(full.model, SNNClassifier), config
        assert full.data.batch_size == 500 and full.data.batches_per_epoch == 100, config
        assert cfg.trainer.max_epochs == 150
        assert full.data.num_steps == (200 if "delayed" in config else 100)
        assert full.model.hparams.input_size == (20 if "delayed" in config else 40)
        assert all(layer["hidden_size"] == 16 for layer in full.model.hparams.layers)
        assert (cfg.trainer.gradient_clip_val == 20.0) == ("multitimescale" in config)
        if "beneficial" in config:
            factors = torch.sigmoid(full.model.model[0].dend_tau_raw)
            assert factors[:, 0].min() > factors[:, 1].max()
        if "fixed" in config:
            assert not full.model.model[0].dend_tau_raw.requires_grad


def test_resuming_fit_continues_the_same_run_exactly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = "xor/delayed_dh_sfnn_learnable_medium.yaml"
    straight = NorseDHCLI(args=["fit", *tiny(config, epochs=2)])
    half = NorseDHCLI(args=["fit", *tiny(config, epochs=1)])
    last = Path(half.trainer.log_dir) / "checkpoints" / "last.ckpt"
    resumed = NorseDHCLI(args=["fit", *tiny(config, epochs=2), "--ckpt_path", str(last)])
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["model.0.dendrites.weight"], half.model.state_dict()["model.0.dendrites.weight"])
    sa, sb = straight.trainer.callback_metrics, resumed.trainer.callback_metrics
    assert sa["val_acc"] == sb["val_acc"] and sa["val_loss"] == sb["val_loss"]
    # `test` through the console-script entry point, with a relative packaged config name and the checkpoint
    final = Path(resumed.trainer.log_dir) / "checkpoints" / "last.ckpt"
    assert main(["test", *tiny(config), "--ckpt_path", str(final)]) == 0
    rows = list(
        csv.DictReader(open(tmp_path / "runs" / "delayed_dh_sfnn_learnable_medium" / "version_3" / "metrics.csv"))
    )
    expected = straight.trainer.test(straight.model, datamodule=straight.datamodule, verbose=False)[0]["test_acc"]
    assert float(rows[-1]["test_acc"]) == pytest.approx(expected)


def _cli_error(args, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code != 0
    return capsys.readouterr().err


def test_invalid_configs_fail_with_the_cli_error_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = tiny("xor/delayed_sfnn_soft_reset.yaml")
    err = _cli_error(["fit", *base, "--data.init_args.delay=-5"], capsys)
    assert "delay" in err
    err = _cli_error(["fit", *base, "--model.class_path=lightning_tasks.classifier.NoSuchModel"], capsys)
    assert "NoSuchModel" in err
    err = _cli_error(["fit", *base, "--model.init_args.lr=fast"], capsys)
    assert "lr" in err
    err = _cli_error(["fit", *base, "--model.init_args.layers=[{hidden_size: 0}]"], capsys)
    assert "hidden_size" in err
    err = _cli_error(["fit", *base, "--data.init_args.noise_rate=1.5"], capsys)
    assert "noise_rate" in err
    assert not (tmp_path / "runs").exists()  # nothing was trained or logged


def test_corrupt_checkpoint_is_reported_clearly(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"this is not a checkpoint")
    err = _cli_error(["fit", *tiny("xor/delayed_sfnn_soft_reset.yaml"), "--ckpt_path", str(bad)], capsys)
    assert "corrupt" in err and "bad.ckpt" in err
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.ckpt")
    with pytest.raises(ValueError, match="not a Lightning checkpoint"):
        read_checkpoint(tmp_path / "plain.ckpt")
    err = _cli_error(["test", *tiny("xor/delayed_sfnn_soft_reset.yaml"), "--ckpt_path", "missing.ckpt"], capsys)
    assert "does not exist" in err


def test_ddp_on_two_cpu_processes_trains(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "lightning_tasks.cli", "fit", *tiny("xor/delayed_sfnn_soft_reset.yaml")]
    cmd += ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = tmp_path / "runs" / "delayed_sfnn_soft_reset" / "version_0" / "checkpoints" / "last.ckpt"
    state = read_checkpoint(ckpt)
    assert state["global_step"] == 1  # 2 batches split over 2 ranks: one optimizer step per epoch


def test_batch_limits_parse_an_integer_as_a_batch_count_and_a_float_as_a_fraction(tmp_path, monkeypatch):
    """`--trainer.limit_train_batches=1` is one batch, not 1.0 (all batches; issue 4): see NorseDHTrainer."""
    monkeypatch.chdir(tmp_path)
    limits = ["--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1.0", "--trainer.limit_test_batches=2"]
    cli = NorseDHCLI(args=["fit", *tiny("xor/delayed_sfnn_soft_reset.yaml", epochs=2), *limits])
    trainer = cli.trainer
    assert type(trainer.limit_train_batches) is int and trainer.limit_train_batches == 1
    assert type(trainer.limit_val_batches) is float and trainer.limit_val_batches == 1.0
    assert type(trainer.limit_test_batches) is int and trainer.limit_test_batches == 2
    assert trainer.limit_predict_batches == 1.0  # Lightning's default when not given
    # tiny() has 2 training batches per epoch: one of them per epoch was trained on, all (1.0) validated.
    assert trainer.num_training_batches == 1 and trainer.global_step == 2
    assert trainer.num_val_batches == [2]  # 16 validation samples in batches of 8
    args = ["fit", *tiny("xor/delayed_sfnn_soft_reset.yaml"), "--trainer.limit_train_batches=0.5"]
    assert cli.parser.parse_args(_resolve_config_args(args)).fit.trainer.limit_train_batches == 0.5

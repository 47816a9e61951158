"""The STDP/RTD study: spike encoding, the Dale's-law network under STDP, the BPTT baseline through the CLI and a
tiny end-to-end run of the study writing its tables and plots."""

import json

import numpy as np
import pytest
import torch

from lightning_tasks.stdp_rtd import (
    NetworkConfig,
    STDPConfig,
    StudyConfig,
    build_rsnn,
    encode_digits,
    main,
    train_stdp,
)


def test_encode_digits_is_a_fixed_poisson_realisation():
    a, labels = encode_digits(num_steps=9, max_prob=0.2, seed=3)
    b, _ = encode_digits(num_steps=9, max_prob=0.2, seed=3)
    assert a.shape == (1797, 9, 64) and labels.shape == (1797,)
    assert torch.equal(a, b) and set(a.unique().tolist()) <= {0.0, 1.0}
    from sklearn.datasets import load_digits

    expected = load_digits().data.mean() / 16 * 0.2  # mean spike probability per pixel and step
    assert a.mean().item() == pytest.approx(expected, rel=0.02)
    with pytest.raises(ValueError, match="max_prob"):
        encode_digits(max_prob=1.5)


def test_stdp_training_keeps_dale_law_and_connectivity():
    cfg = StudyConfig(stdp=STDPConfig(n_samples=8), network=NetworkConfig(hidden=40), n_test=50)
    from lightning_tasks.stdp_rtd import DigitsSpikes

    data = DigitsSpikes(cfg.num_steps, n_test=50)
    data.setup()
    layer0, conn, plastic = build_rsnn(64, cfg.network, seed=0)
    w0 = layer0.linear.weight.detach().clone()
    layer = train_stdp(data, cfg, seed=0, heterogeneous=True)
    w = layer.linear.weight.detach()
    assert torch.all(w[~conn] == 0.0)  # no new synapses
    assert torch.equal(w[~plastic], w0[~plastic])  # inhibitory and fixed synapses untouched
    assert torch.all(w[plastic] >= 0.0) and torch.all(w[plastic] <= cfg.stdp.w_max)
    assert not torch.equal(w[plastic], w0[plastic])
    n_exc = int(0.8 * 40)
    assert torch.all(w[:, 64 + n_exc :] <= 0.0) and torch.all(w[:, 64 : 64 + n_exc] >= 0.0)
    assert len(layer.rate_history) == 8


def test_tiny_study_end_to_end(tmp_path):
    out = tmp_path / "study"
    results = main(
        [
            "--seeds=[0, 1]",
            "--n_test=30",
            "--network.hidden=30",
            "--stdp.n_samples=6",
            "--bptt_epochs=1",
            "--bptt_samples=64",
            "--rtd_batch=25",
            "--rtd_trials=1",
            f"--out_dir={out}",
        ]
    )
    assert results["l1_rtd_sanity"] == 0.0
    names = results["names"]
    assert sorted(names) == sorted(f"{m}/s{s}" for m in ("he_stdp", "ho_stdp", "bptt") for s in (0, 1))
    for layer in ("L2", "L3", "L4", "L5"):
        m = np.asarray(results["between"][layer]["mean"])
        assert m.shape == (6, 6)
        np.testing.assert_array_equal(m, m.T)
        assert np.all(np.diag(m) == 0) and np.all(m[~np.eye(6, dtype=bool)] >= 0)
    for method in ("he_stdp", "ho_stdp", "bptt"):
        within = np.asarray(results["within"][method])
        assert within.shape == (5, 5) and within[0, 0] == 0 and within[0, 1] > 0
    for net in results["networks"].values():
        assert net["readout_acc"] > 0.3  # ten classes: chance is 0.1
    for name in ("rtd_between_L3.png", "rtd_within_he_stdp.png", "barcodes_L3.png"):
        assert (out / "plots" / name).stat().st_size > 1000
    saved = json.loads((out / "results.json").read_text())
    assert saved["summary"]["L3"]["he_stdp|ho_stdp"][2] == 2  # seed pairs (0,1) and (1,0) across the two methods
    csv_lines = (out / "rtd_table.csv").read_text().splitlines()
    assert csv_lines[0] == "layer,pair,rtd_mean,rtd_sd,n_pairs" and len(csv_lines) == 1 + 4 * 9
    assert "He != Ho" in (out / "summary.md").read_text()


def test_bptt_baseline_through_the_cli(tmp_path, monkeypatch):
    from lightning_tasks.cli import main as cli_main

    monkeypatch.chdir(tmp_path)
    cli_main(
        [
            "fit",
            "--config",
            "stdp_rtd_bptt.yaml",
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=3",
            "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=false",
            "--data.init_args.num_steps=9",
            "--data.init_args.n_test=40",
        ]
    )
    metrics = list(tmp_path.glob("runs/stdp_rtd_bptt/version_*/metrics.csv"))
    assert metrics and "val_acc" in metrics[0].read_text()

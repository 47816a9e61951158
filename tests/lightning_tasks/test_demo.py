"""The README's first command: scripts/demo.sh installs, then runs `norse-dh demo` end to end (here its quick size)."""

from __future__ import annotations

import csv
from pathlib import Path

import nir

from lightning_tasks.cli import DEMO_RUNS, main, run_demo

ROOT = Path(__file__).resolve().parents[2]


def test_demo_script_installs_first_then_runs_the_cli_demo():
    lines = [ln.strip() for ln in (ROOT / "scripts" / "demo.sh").read_text().splitlines() if ln and ln[0] != "#"]
    setup = lines.index("bash scripts/setup_venv.sh")
    demo = next(i for i, ln in enumerate(lines) if "norse-dh demo" in ln)
    assert setup < demo


def test_quick_demo_trains_tests_plots_exports_and_runs_on_lava(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    results = run_demo(tmp_path / "demo", quick=True)
    table = capsys.readouterr().out
    for label, config in DEMO_RUNS:
        run = results[Path(config).stem]
        assert label in table and 0.0 <= run["test_acc"] <= 1.0
        plots = Path(run["log_dir"]) / "plots"
        assert {p.name for p in plots.glob("*.png")} >= {"timing_factors.png", "learning_curves.png", "raster_test.png"}
    assert Path(results["nir"]).is_file()
    # what fit leaves next to the logs: CSV metrics, TensorBoard events, the config, best and last checkpoints
    run = Path(results["multitimescale_dh_sfnn_2branch_beneficial"]["log_dir"])
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert any(r.get("val_acc") for r in rows) and any(r.get("test_acc") for r in rows)
    assert (run / "config.yaml").is_file() and list(run.glob("events.out.tfevents*"))
    assert list((run / "checkpoints").glob("best-*.ckpt")) and (run / "checkpoints" / "last.ckpt").is_file()
    # the export subcommand: a NIR graph of standard nodes that nir reads back
    assert main(["export", str(run / "checkpoints" / "last.ckpt"), str(tmp_path / "again.nir")]) == 0
    graph = nir.read(tmp_path / "again.nir")
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds["layer0"] == "NIRGraph" and kinds["layer1"] == "Affine"  # DH layer subgraph, linear readout
    assert "LIF" in {type(node).__name__ for node in graph.nodes["layer0"].nodes.values()}
    lava = results["lava"]
    assert lava["samples"] == 8 and lava["spike_agreement"] == [1.0]  # one spiking layer, identical spikes
    assert lava["spike_counts"]["lava"] == lava["spike_counts"]["pytorch"]
    assert lava["prediction_agreement"] == 1.0  # floating-point Lava reproduces PyTorch
    assert "Lava (floating_pt, 8 test samples" in table

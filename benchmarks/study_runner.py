"""Plumbing shared by the XOR study scripts: quiet single-thread Lightning, results appended as JSON lines.

An interrupted study keeps its finished runs: ``run_plan`` skips every planned run whose key fields already appear
in the output file, and a study's ``--table-only`` prints the table from that file alone.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import pytorch_lightning as pl
import torch


def quiet_single_thread() -> None:
    """One intra-op thread (CPU times comparable between runs) and no Lightning chatter."""
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*GPU available but not used.*")
    torch.set_num_threads(1)


def run_plan(plan: Iterable[dict], train: Callable[..., dict], out: Path, table_only: bool = False) -> list[dict]:
    """Run ``train(**run)`` for each planned run not yet in ``out``; returns all rows (finished and new).

    Each row ``train`` returns must contain the run's own fields (its key), so that a later call can skip it.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    if table_only:
        return done
    for run in plan:
        if any(all(row.get(k) == v for k, v in run.items()) for row in done):
            continue
        row = train(**run)
        print(json.dumps(row), flush=True)
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        done.append(row)
    return done


def fit_and_test(
    model: pl.LightningModule, data: pl.LightningDataModule, epochs: int, **trainer_args
) -> tuple[float, float]:
    """Train for ``epochs`` (no validation, no checkpoints, no logger), then test once: ``(test_acc, CPU seconds)``."""
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        **trainer_args,
    )
    start = time.process_time()
    trainer.fit(model, datamodule=data)
    (result,) = trainer.test(model, datamodule=data, verbose=False)
    return float(result["test_acc"]), time.process_time() - start

"""SHD preprocessing: the reference per-sample binning loop vs norse-dh's vectorised binning and sparse cache.

Baseline: a re-implementation of the reference ``binary_image_readout`` (eva1801/DH-SNN,
``SHD/shd_generate_dataset.py``): per sample, a Python loop over 1000 bins with ``argwhere`` + ``delete``, producing
a dense float64 (1000, 700) array (the reference saves one such ``.npy`` per sample). Measured in the same run on a
synthetic file in the published Zenke-lab HDF5 format (SHD-like spike counts).

    python benchmarks/bench_data.py [--samples 8156] [--batches 5]

Also times the data loader (cached SHD data module, batch 100, T = 1000) against one training step of the SHD
DH-SFNN (700 -> 64, 4 branches + readout) on its batches, to show whether loading keeps training fed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from lightning_tasks.data.hdf5_spikes import bin_events, bin_file
from lightning_tasks.data.shd import SHDDataModule
from norse_dh import DHLIF, LeakyReadout, SequentialSNN


def reference_binary_image_readout(times: np.ndarray, units: np.ndarray, dt: float = 1e-3) -> np.ndarray:
    img = []
    for i in range(int(1 / dt)):
        idxs = np.argwhere(times <= i * dt).flatten()
        vals = units[idxs]
        vals = vals[vals > 0]
        vector = np.zeros(700)
        vector[700 - vals] = 1
        times = np.delete(times, idxs)
        units = np.delete(units, idxs)
        img.append(vector)
    return np.array(img)


def write_shd_like(path: Path, n: int, rng: np.random.Generator) -> None:
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float16))
        units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        counts = rng.integers(2000, 8000, n)  # SHD samples hold a few thousand spikes
        times[:] = [np.sort(rng.uniform(0, 1.1, k)).astype(np.float16) for k in counts]
        units[:] = [rng.integers(0, 700, k).astype(np.uint16) for k in counts]
        f["labels"] = (np.arange(n) % 20).astype(np.uint16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8156, help="the SHD training set size")
    parser.add_argument("--batches", type=int, default=5, help="loader/step batches to time")
    parser.add_argument("--reference-samples", type=int, default=20, help="the reference loop is slow: time a subset")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shd_train.h5"
        write_shd_like(path, args.samples, rng)
        with h5py.File(path) as f:
            sub_t = [f["spikes/times"][i] for i in range(args.reference_samples)]
            sub_u = [f["spikes/units"][i] for i in range(args.reference_samples)]
        t0 = time.perf_counter()
        dense = [reference_binary_image_readout(t, u.astype(np.int64)) for t, u in zip(sub_t, sub_u)]
        ref_per_sample = (time.perf_counter() - t0) / args.reference_samples
        # Same samples, reference binning rules, our vectorised code: identical frames.
        offsets, flat, _ = bin_events(sub_t, sub_u, 1.0, 1000, reference=True)
        for i, img in enumerate(dense):
            ours = np.zeros(1000 * 700)
            ours[flat[offsets[i] : offsets[i + 1]]] = 1
            assert np.array_equal(ours.reshape(1000, 700), img), "reference-binning mismatch"
        t0 = time.perf_counter()
        binned = bin_file(path, 1.0, 1000)
        ours_per_sample = (time.perf_counter() - t0) / args.samples
        ours_bytes = sum(a.nbytes for a in binned.values()) / args.samples
        (Path(tmp) / "shd_test.h5").symlink_to(path)
        loader_s, step_s, batch_shape = loader_vs_step(Path(tmp), args.batches)
    ref_bytes = 1000 * 700 * 8
    print(f"shape: {args.samples} samples, 2000-8000 spikes each, dt = 1 ms, T = 1000, 700 channels")
    print(f"reference loop : {ref_per_sample * 1e3:9.2f} ms/sample, {ref_bytes / 1e6:7.2f} MB/sample (dense float64)")
    print(f"norse-dh       : {ours_per_sample * 1e3:9.2f} ms/sample, {ours_bytes / 1e6:7.3f} MB/sample (sparse events)")
    print(f"speed-up {ref_per_sample / ours_per_sample:.0f}x, storage {ref_bytes / ours_bytes:.0f}x smaller")
    print(f"whole training set ({args.samples} samples) binned in {ours_per_sample * args.samples:.1f} s")
    print(
        f"loader {loader_s * 1e3:.0f} ms per batch {batch_shape} vs training step {step_s * 1e3:.0f} ms "
        f"(loader = {loader_s / step_s:.1%} of a step, threads = {torch.get_num_threads()})"
    )


def loader_vs_step(data_dir: Path, batches: int) -> tuple[float, float, tuple[int, ...]]:
    """Mean time per batch of the cached SHD loader, and per training step of the SHD DH-SFNN on those batches."""
    dm = SHDDataModule(str(data_dir), batch_size=100, cache_dir=str(data_dir / "cache"))
    dm.setup("fit")
    model = SequentialSNN(DHLIF(700, 64, 4, dend_tau_init="large"), LeakyReadout(64, 20))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    it = iter(dm.train_dataloader())
    next(it)  # warm-up (workers, first allocation)
    load, step = 0.0, 0.0
    for _ in range(batches):
        t0 = time.perf_counter()
        x, y = next(it)
        t1 = time.perf_counter()
        out, _ = model(x.transpose(0, 1))
        loss = torch.nn.functional.cross_entropy(out[10:].softmax(-1).sum(0), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        t2 = time.perf_counter()
        load, step = load + t1 - t0, step + t2 - t1
    return load / batches, step / batches, tuple(x.shape)


if __name__ == "__main__":
    main()

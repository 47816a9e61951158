"""Writers of miniature dataset files in the published on-disk formats (HDF5, wav, IDX, DEAP pickles, DVS tensors).

Tests get them through the ``writers`` fixture (this module), since pytest runs with ``--import-mode=importlib``.
"""

from __future__ import annotations

import gzip
import pickle
import struct
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import h5py
import numpy as np
import pytest
import soundfile as sf
import torch

from lightning_tasks.data import gsc


def write_spike_h5(path: Path, times: Sequence[Sequence[float]], units: Sequence[Sequence[int]], labels: Sequence[int]):
    """Zenke-lab layout: spikes/times vlen float16 (s), spikes/units vlen uint16, labels uint16, extra/ group."""
    n = len(labels)
    with h5py.File(path, "w") as f:
        t = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float16))
        u = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(n):
            t[i] = np.asarray(times[i], dtype=np.float16)
            u[i] = np.asarray(units[i], dtype=np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        f.create_dataset("extra/speaker", data=np.zeros(n, dtype=np.uint16))
    return path


def random_spike_h5(path: Path, labels: Sequence[int], rng: np.random.Generator, max_spikes: int = 300, t_max=1.2):
    times, units = [], []
    for _ in labels:
        k = int(rng.integers(0, max_spikes))
        times.append(np.sort(rng.uniform(0, t_max, k)))
        units.append(rng.integers(0, 700, k))
    return write_spike_h5(path, times, units, labels)


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(samples), rate, subtype="PCM_16")
    return path


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """IDX: two zero bytes, type 0x08 (ubyte), ndim, big-endian uint32 dims, raw bytes (magic 2049 / 2051)."""
    array = np.asarray(array, dtype=np.uint8)
    raw = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def write_deap(path: Path, data: np.ndarray, labels: np.ndarray) -> Path:
    """DEAP data_preprocessed_python pickle (protocol 2, as the Python-2 originals; read with latin1)."""
    with open(path, "wb") as fh:
        pickle.dump({"labels": np.asarray(labels, dtype=np.float64), "data": np.asarray(data)}, fh, protocol=2)
    return path


def write_dvs(path: Path, tensor: torch.Tensor) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tensor, path)
    return path


def make_gsc(root, rng, noise_seconds: int = 12):
    """10 words + 'bed' (unknown), 3 clips each (train/val/test), two 12 s background-noise files."""
    val, test = [], []
    t = np.arange(16000) / 16000
    for k, word in enumerate((*gsc.WORDS, "bed")):
        for j in range(3):
            n = 16000 if j != 1 else 12000  # some clips shorter than 1 s (padded)
            tone = 0.3 * np.sin(2 * np.pi * (200 + 150 * k + 40 * j) * t[:n]) + 0.01 * rng.standard_normal(n)
            rel = f"{word}/{k:02x}{j}abcde_nohash_{j}.wav"
            write_wav(root / rel, tone)
            (val if j == 1 else test if j == 2 else []).append(rel)
    for name in ("white_noise.wav", "pink_noise.wav"):
        write_wav(root / "_background_noise_" / name, 0.1 * rng.standard_normal(noise_seconds * 16000))
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    (root / "_background_noise_" / "README.md").write_text("noise")
    return root


def make_mnist(root, n_train=100, n_test=20, compress=False):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    tr_x = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    te_x = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    tr_y, te_y = np.arange(n_train) % 10, np.arange(n_test)[::-1] % 10
    write_idx(root / "train-images-idx3-ubyte", tr_x, compress)
    write_idx(root / "train-labels-idx1-ubyte", tr_y, compress)
    write_idx(root / "t10k-images-idx3-ubyte", te_x, compress)
    write_idx(root / "t10k-labels-idx1-ubyte", te_y, compress)
    return tr_x, tr_y, te_x, te_y


def known_signal(trial: int, n: int = 7680) -> np.ndarray:
    """(32, n) signal left after baseline removal: trial/channel offsets plus a slow sine."""
    t = np.arange(n)
    return 3.0 * trial + 0.5 * np.arange(32)[:, None] + np.sin(t / 50.0)[None, :]


def make_subject(path, rng, ratings):
    """(trials, 40, 8064) float64: random 3 s baseline, then tile(per-second baseline mean) + known signal."""
    data = np.zeros((len(ratings), 40, 8064))
    for k in range(len(ratings)):
        base = rng.normal(0, 20, (40, 384))
        per_second = base.reshape(40, 3, 128).mean(axis=1)
        data[k, :, :384] = base
        data[k, :, 384:] = np.tile(per_second, 60)
        data[k, :32, 384:] += known_signal(k)
    return write_deap(path, data, ratings)


def make_trajectories(root, ids=(1, 2, 3, 4), seed=0, sensor=(16, 24), n_files=10):
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for i in ids:
        for j in range(n_files):
            t = torch.randint(0, 4, (2, 5, *sensor), generator=g).to(torch.float32)
            stamp = f"{1600000000 + 100 * i + j * 1.0:.6f}"  # duration 9 s -> file j has place int(j / 9 * 100)
            write_dvs(root / f"room_v{i}" / "dvs_5ms_5seq" / f"{stamp}.pth", t)
            tensors[(i, j)] = t
    return tensors


@pytest.fixture
def writers() -> ModuleType:
    """This module: ``writers.write_spike_h5(...)`` etc."""
    return sys.modules[__name__]

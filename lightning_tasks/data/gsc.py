"""Google Speech Commands v1 (GSC): 12 classes (10 words, ``_silence_``, ``_unknown_``), log-mel + deltas, 101 steps.

Layout expected in ``data_dir`` (the extracted ``speech_commands_v0.01.tar.gz``)::

    <data_dir>/yes/<speaker>_nohash_<n>.wav ...     one folder per word (16 kHz mono wav, <= 1 s)
    <data_dir>/_background_noise_/*.wav             long noise recordings (source of _silence_)
    <data_dir>/validation_list.txt                  relative paths (word/file.wav) of the validation split
    <data_dir>/testing_list.txt                     relative paths of the test split

Labels: ``yes no up down left right on off stop go`` -> 0..9, ``_silence_`` -> 10, every other word -> 11
(``_unknown_``), as in the reference (``GSC/main_dense.py:31–48``).

Silence (project choice): 1 s crops of the background-noise files, drawn with a fixed seed; each noise file's
samples are partitioned 80/10/10 into train/validation/test regions so no silence crop is shared between splits
(the reference writes 2560 crops, uses 260 for validation and reuses those same 260 in its test set).

Features per clip (``GSC/main_dense.py:75–98``, ``GSC/data.py``): wav / max|wav|; zero-pad symmetrically to 16 000
samples; librosa mel power spectrogram (n_fft 480, hop 160, 40 mels, 20 Hz–4 kHz) -> log1p(S / max S); stacked with
its 1st and 2nd deltas -> (3, 101, 40); each (delta order, mel) row divided by its std over time. At batch time the
batch is divided by its std over (batch, time) per (delta order, mel) (the reference ``collate_fn``) and flattened
per step as [static 40 | delta 40 | delta² 40] -> inputs (B, 101, 120).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from .base import (
    BatchDataset,
    BenchmarkDataModule,
    CorruptDataError,
    DatasetNotFoundError,
    WeightedEpochSampler,
    missing_data_message,
    require_data_dir,
    require_files,
    shard,
)
from .cache import cache_key, maybe_cached, resolve_cache_dir

GSC_SOURCE = (
    "http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz (Warden 2018, Speech Commands v0.01); "
    "extract it into data_dir"
)
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE, UNKNOWN = "_silence_", "_unknown_"
CLASSES = (*WORDS, SILENCE, UNKNOWN)
NOISE_DIR = "_background_noise_"
SAMPLE_RATE = 16000
CLIP = 16000
LAYOUT = """\
  <data_dir>/<word>/*.wav            one folder per word (yes, no, up, ..., plus the other v1 words), 16 kHz mono
  <data_dir>/_background_noise_/*.wav
  <data_dir>/validation_list.txt     lines 'word/file.wav'
  <data_dir>/testing_list.txt        lines 'word/file.wav'"""

# Feature settings of the reference (part of the cache key).
FEATURES = {"sr": SAMPLE_RATE, "n_fft": 480, "hop_length": 160, "n_mels": 40, "fmin": 20.0, "fmax": 4000.0}
SPLIT_REGIONS = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}


def read_wav(path: Path | str) -> np.ndarray:
    """Mono 16 kHz wav as float64 (any PCM/float subtype); clear errors for unreadable or wrong-rate files."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float64", always_2d=False)
    except Exception as err:  # soundfile raises its own LibsndfileError / RuntimeError types
        raise CorruptDataError(
            f"{path}: cannot be read as a wav file ({err}); the file is truncated or corrupt"
        ) from err
    if rate != SAMPLE_RATE:
        raise CorruptDataError(f"{path}: sample rate {rate} Hz, expected {SAMPLE_RATE} Hz (GSC v1)")
    if data.ndim != 1:
        raise CorruptDataError(f"{path}: {data.shape[1]} channels, expected mono (GSC v1)")
    return data


def pad_center(wav: np.ndarray, size: int = CLIP) -> np.ndarray:
    """Zero-pad to ``size`` samples, (size − n) // 2 in front (reference ``Pad``)."""
    n = wav.shape[0]
    if n > size:
        raise CorruptDataError(f"clip has {n} samples, longer than {size} (1 s at 16 kHz)")
    left = (size - n) // 2
    return np.pad(wav, (left, size - n - left))


def log_mel_deltas(wav: np.ndarray) -> np.ndarray:
    """(3, 101, 40) float64 features of one clip (already padded to 16 000 samples): log-mel, Δ, ΔΔ, rescaled."""
    import librosa

    m = np.max(np.abs(wav))
    if m > 0:
        wav = wav / m
    S = librosa.feature.melspectrogram(
        y=wav,
        sr=FEATURES["sr"],
        n_fft=FEATURES["n_fft"],
        hop_length=FEATURES["hop_length"],
        n_mels=FEATURES["n_mels"],
        fmin=FEATURES["fmin"],
        fmax=FEATURES["fmax"],
    )
    M = np.max(np.abs(S))
    feat = np.log1p(S / M) if M > 0 else S
    stack = np.stack([feat.T] + [librosa.feature.delta(feat, order=k).T for k in (1, 2)])
    std = np.std(stack, axis=1, keepdims=True)
    std[std == 0] = 1.0
    return stack / std


def _features_of_file(path: str) -> np.ndarray:
    return log_mel_deltas(pad_center(read_wav(path))).astype(np.float16)


def _features_of_crop(args: tuple[str, int]) -> np.ndarray:
    path, offset = args
    return log_mel_deltas(read_wav(path)[offset : offset + CLIP]).astype(np.float16)


def silence_crops(noise_files: Sequence[Path], split: str, count: int, seed: int) -> list[tuple[str, int]]:
    """(file, offset) of ``count`` 1 s crops inside the ``split`` region of each noise file, seeded."""
    import soundfile as sf

    lo, hi = SPLIT_REGIONS[split]
    regions = []
    for p in noise_files:
        try:
            n = sf.info(str(p)).frames
        except Exception as err:
            raise CorruptDataError(f"{p}: cannot be read as a wav file ({err})") from err
        start, stop = int(lo * n), int(hi * n)
        if stop - start < CLIP:
            raise CorruptDataError(
                f"{p}: {n} samples; its {split} region [{start}, {stop}) is shorter than one 1 s clip"
            )
        regions.append((str(p), start, stop))
    rng = np.random.default_rng([seed, list(SPLIT_REGIONS).index(split)])
    out = []
    for _ in range(count):
        path, start, stop = regions[rng.integers(len(regions))]
        out.append((path, int(rng.integers(start, stop - CLIP + 1))))
    return out


def read_list(path: Path) -> list[str]:
    with open(path) as fh:
        return [line.strip() for line in fh if line.strip()]


def normalise_batch(x: torch.Tensor) -> torch.Tensor:
    """Reference ``collate_fn``: divide (B, 3, T, F) by its std over batch and time per (order, mel)."""
    std = x.std(dim=(0, 2), keepdim=True, unbiased=False)
    std = torch.where(std == 0, torch.ones_like(std), std)
    return x / std


class FeatureDataset(BatchDataset):
    """Cached (N, 3, 101, 40) float16 features; batches are normalised and flattened to (B, 101, 120)."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, batch_norm: bool = True) -> None:
        self.features = features
        self.labels = np.asarray(labels, dtype=np.int64)
        self.batch_norm = batch_norm

    def __len__(self) -> int:
        return len(self.labels)

    def get_batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.asarray(self.features[indices], dtype=np.float32))
        if self.batch_norm:
            x = normalise_batch(x)
        b, c, t, f = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, t, c * f), torch.from_numpy(self.labels[indices])


class GSCDataModule(BenchmarkDataModule):
    """GSC v1, 12 classes, (B, 101, 120) log-mel + delta features.

    Args:
        data_dir: the extracted Speech Commands v0.01 folder (see module docstring).
        silence_counts: number of silence crops in train / val / test (reference: 2300 / 260 / 260).
        silence_seed: seed of the silence crops.
        balanced_sampler: draw training batches with a class-balanced weighted sampler with replacement (reference).
        batch_norm: apply the reference's batch-level std normalisation.
        preprocess_workers: processes used to compute features on a cache miss (0: in this process).
    """

    name = "gsc"

    def __init__(
        self,
        data_dir: str | None = None,
        silence_counts: tuple[int, int, int] = (2300, 260, 260),
        silence_seed: int = 0,
        balanced_sampler: bool = True,
        batch_norm: bool = True,
        preprocess_workers: int = 0,
        batch_size: int = 200,
        num_workers: int = 0,
        cache_dir: str | None = None,
        use_cache: bool = True,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(data_dir, batch_size, num_workers, cache_dir, use_cache, pin_memory)
        if len(silence_counts) != 3 or min(silence_counts) < 0:
            raise ValueError(f"silence_counts must be three counts >= 0 (train, val, test), got {silence_counts}")
        self.silence_counts = tuple(int(c) for c in silence_counts)
        self.silence_seed = int(silence_seed)
        self.balanced_sampler = bool(balanced_sampler)
        self.batch_norm = bool(batch_norm)
        self.preprocess_workers = int(preprocess_workers)
        self.input_size = 3 * FEATURES["n_mels"]
        self.num_classes = len(CLASSES)
        self.num_steps = CLIP // FEATURES["hop_length"] + 1

    def check_data(self) -> Path:
        root = require_data_dir("GSC", self.data_dir, LAYOUT, GSC_SOURCE)
        require_files("GSC", root, ["validation_list.txt", "testing_list.txt", NOISE_DIR, *WORDS], LAYOUT, GSC_SOURCE)
        if not list((root / NOISE_DIR).glob("*.wav")):
            raise DatasetNotFoundError(
                missing_data_message("GSC", root, [f"{NOISE_DIR}/*.wav (folder is empty)"], LAYOUT, GSC_SOURCE)
            )
        return root

    def file_splits(self) -> dict[str, list[tuple[str, int]]]:
        """Relative wav paths and labels per split, following validation_list.txt / testing_list.txt."""
        root = self.check_data()
        val = set(read_list(root / "validation_list.txt"))
        test = set(read_list(root / "testing_list.txt"))
        splits: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
        for folder in folders:
            label = CLASSES.index(folder.name) if folder.name in WORDS else CLASSES.index(UNKNOWN)
            for wav in sorted(folder.glob("*.wav")):
                rel = f"{folder.name}/{wav.name}"
                split = "test" if rel in test else "val" if rel in val else "train"
                splits[split].append((rel, label))
        for name, listed in (("validation_list.txt", val), ("testing_list.txt", test)):
            present = {rel for rel, _ in splits["val" if name.startswith("val") else "test"]}
            missing = sorted(listed - present)
            if missing:
                raise DatasetNotFoundError(
                    missing_data_message("GSC", root, [f"{m} (listed in {name})" for m in missing], LAYOUT, GSC_SOURCE)
                )
        return splits

    def _map(self, fn: Any, items: list[Any]) -> list[np.ndarray]:
        if self.preprocess_workers > 0 and len(items) > 1:
            with ProcessPoolExecutor(self.preprocess_workers) as ex:
                return list(ex.map(fn, items, chunksize=64))
        return [fn(i) for i in items]

    def build_split(self, split: str, files: list[tuple[str, int]]) -> dict[str, np.ndarray]:
        """Features and labels of one split (words from the lists, silence crops from the noise files)."""
        root = self.check_data()
        noise = sorted((root / NOISE_DIR).glob("*.wav"))
        crops = silence_crops(noise, split, self.silence_counts[list(SPLIT_REGIONS).index(split)], self.silence_seed)
        feats = self._map(_features_of_file, [str(root / rel) for rel, _ in files])
        feats += self._map(_features_of_crop, crops)
        labels = [lab for _, lab in files] + [CLASSES.index(SILENCE)] * len(crops)
        x = np.stack(feats) if feats else np.zeros((0, 3, self.num_steps, FEATURES["n_mels"]), dtype=np.float16)
        return {"features": x, "labels": np.asarray(labels, dtype=np.int64)}

    def build_splits(self) -> dict[str, BatchDataset]:
        root = self.check_data()
        noise = sorted((root / NOISE_DIR).glob("*.wav"))
        out: dict[str, BatchDataset] = {}
        for split, files in self.file_splits().items():
            sources = [root / rel for rel, _ in files] + noise
            settings = {
                **FEATURES,
                "split": split,
                "silence_count": self.silence_counts[list(SPLIT_REGIONS).index(split)],
                "silence_seed": self.silence_seed,
                "silence_regions": SPLIT_REGIONS[split],
                "files": [rel for rel, _ in files],
                "dtype": "float16",
            }
            arrays = maybe_cached(
                self.use_cache,
                resolve_cache_dir(root, self.cache_dir),
                f"gsc-{split}",
                cache_key(self.name, sources, settings),
                lambda split=split, files=files: self.build_split(split, files),
                meta={"split": split, "samples": len(files)},
            )
            out[split] = FeatureDataset(arrays["features"], arrays["labels"], self.batch_norm)
        return out

    def train_sampler(self, dataset: BatchDataset) -> Sampler:
        if not self.balanced_sampler:
            return super().train_sampler(dataset)
        labels = dataset.labels
        counts = np.bincount(labels, minlength=self.num_classes).astype(np.float64)
        weights = 1.0 / counts[labels]
        # Drawn from (seed, epoch) like the plain shuffle, so resumed runs draw the same epochs (base.py).
        return WeightedEpochSampler(weights / weights.sum(), *shard(self.trainer), seed=self.epoch_seed())

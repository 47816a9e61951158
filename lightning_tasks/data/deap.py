"""DEAP EEG emotion recognition: 32 EEG channels, 3 s segments (384 steps at 128 Hz), valence/arousal classes.

Layout expected in ``data_dir`` (the ``data_preprocessed_python`` folder of DEAP)::

    <data_dir>/s01.dat ... s32.dat   Python pickles (latin-1): {'data': (40, 40, 8064), 'labels': (40, 4)}

``data``: 40 trials x 40 channels (the first 32 are EEG) x 8064 samples (3 s pre-trial baseline + 60 s at 128 Hz);
``labels``: ratings in [1, 9] for valence, arousal, dominance, liking.

Preprocessing (``deap/preprocessing.py:13–44``): the 3 s baseline is averaged into one 1 s baseline, subtracted
from every second of the remaining signal, which is cut into 3 s segments (20 per trial for 60 s) -> samples
(384 steps, 32 channels), raw µV values (no further normalisation). Each segment carries its trial's label:

- 2 classes: rating <= 5 / > 5;
- 3 classes: code thresholds (default) <= 3 / (3, 6] / > 6, or ``thresholds="paper"``: < 4 / [4, 6] / > 6;
- 4 classes: valence/arousal quadrant (valence > 5) + 2 (arousal > 5) (``dimension`` ignored).

Split (``deap/preprocessing.py:63``): per subject, stratified 90/10 train/test with ``random_state=29``; the
validation set is a stratified ``val_fraction`` of each subject's 90% (spec §12.1); subjects are pooled. Segments
are cached per subject as float16 (with the ratings); labels and splits are recomputed from the ratings.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .base import (
    BatchDataset,
    BenchmarkDataModule,
    CorruptDataError,
    require_data_dir,
    require_files,
    stratified_holdout,
)
from .cache import cache_key, maybe_cached, resolve_cache_dir

DEAP_SOURCE = (
    "https://www.eecs.qmul.ac.uk/mmv/datasets/deap/ (Koelstra et al. 2012; request access, then download "
    "data_preprocessed_python.zip and extract it)"
)
LAYOUT = "  <data_dir>/s01.dat ... s32.dat   pickle (latin-1) dict: 'data' (40, 40, 8064), 'labels' (40, 4)"
SAMPLING_RATE = 128
BASELINE_S = 3
EEG_CHANNELS = 32
DIMENSIONS = {"valence": 0, "arousal": 1}


def subject_file(subject: int) -> str:
    return f"s{subject:02d}.dat"


def load_subject(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """(data (trials, channels, samples), labels (trials, 4)) of one DEAP pickle, validated."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            obj = pickle.load(fh, encoding="latin1")
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError, IndexError) as err:
        raise CorruptDataError(f"{path}: cannot be unpickled ({err!r}); the file is truncated or corrupt") from err
    if not isinstance(obj, dict) or "data" not in obj or "labels" not in obj:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise CorruptDataError(f"{path}: expected a dict with keys 'data' and 'labels', got {keys}")
    data, labels = np.asarray(obj["data"]), np.asarray(obj["labels"])
    seg = BASELINE_S * SAMPLING_RATE
    if data.ndim != 3 or data.shape[1] < EEG_CHANNELS or data.shape[2] <= seg or (data.shape[2] - seg) % seg:
        raise CorruptDataError(
            f"{path}: 'data' has shape {data.shape}; expected (trials, >= {EEG_CHANNELS} channels, 384 + k*384 "
            "samples), e.g. (40, 40, 8064)"
        )
    if labels.ndim != 2 or labels.shape[0] != data.shape[0] or labels.shape[1] < 2:
        raise CorruptDataError(f"{path}: 'labels' has shape {labels.shape}; expected ({data.shape[0]}, 4)")
    if not np.all((labels[:, :2] >= 1) & (labels[:, :2] <= 9)):
        raise CorruptDataError(f"{path}: valence/arousal ratings (labels[:, 0:2]) must lie in [1, 9]")
    if not np.all(np.isfinite(data[:, :EEG_CHANNELS])):
        raise CorruptDataError(f"{path}: 'data' contains NaN or infinite EEG samples")
    return data, labels


def baseline_removed_segments(data: np.ndarray, segment_s: int = 3) -> np.ndarray:
    """(trials, channels, samples) -> (trials * segments, segment_s * 128, 32): baseline-corrected EEG segments.

    Segment order is trial-major (trial 0's segments first), as in the reference.
    """
    fs, seg = SAMPLING_RATE, segment_s * SAMPLING_RATE
    eeg = np.asarray(data[:, :EEG_CHANNELS], dtype=np.float64)
    trials, channels, n = eeg.shape
    base = eeg[..., : BASELINE_S * fs].reshape(trials, channels, BASELINE_S, fs).mean(axis=2)
    signal = eeg[..., BASELINE_S * fs :]
    seconds = signal.shape[-1] // fs
    corrected = (signal.reshape(trials, channels, seconds, fs) - base[:, :, None, :]).reshape(trials, channels, -1)
    segments = corrected.shape[-1] // seg
    x = corrected[..., : segments * seg].reshape(trials, channels, segments, seg)
    return x.transpose(0, 2, 3, 1).reshape(trials * segments, seg, channels)


def quantise_labels(ratings: np.ndarray, num_classes: int, dimension: str, thresholds: str = "code") -> np.ndarray:
    """Trial ratings (trials, >= 2) -> integer classes (``deap/utils.py:102–147``; paper thresholds optional)."""
    if num_classes == 4:
        return ((ratings[:, 0] > 5).astype(np.int64) + 2 * (ratings[:, 1] > 5)).astype(np.int64)
    r = ratings[:, DIMENSIONS[dimension]]
    if num_classes == 2:
        return (r > 5).astype(np.int64)
    if thresholds == "code":
        return np.where(r <= 3, 0, np.where(r <= 6, 1, 2)).astype(np.int64)
    return np.where(r < 4, 0, np.where(r <= 6, 1, 2)).astype(np.int64)


class SegmentDataset(BatchDataset):
    """Pooled per-subject float16 segments; batches (B, 384, 32) float32."""

    def __init__(self, segments: Sequence[np.ndarray], rows: np.ndarray, labels: np.ndarray) -> None:
        self.segments = list(segments)
        self.rows = np.asarray(rows, dtype=np.int64)  # (N, 2): subject position, local segment index
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def get_batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.rows[indices]
        x = np.stack([np.asarray(self.segments[s][i], dtype=np.float32) for s, i in rows])
        return torch.from_numpy(x), torch.from_numpy(self.labels[indices])


class DEAPDataModule(BenchmarkDataModule):
    """DEAP valence/arousal classification from 3 s EEG segments.

    Args:
        data_dir: the ``data_preprocessed_python`` folder.
        dimension: ``"valence"`` or ``"arousal"``.
        num_classes: 2, 3 (default, the paper's) or 4 (quadrants).
        thresholds: 3-class cut points, ``"code"`` (<= 3 / (3, 6] / > 6, default) or ``"paper"`` (< 4 / 4–6 / > 6).
        subjects: subject numbers to use (default 1..32).
        test_fraction: per-subject test share (reference 0.1) with ``test_seed`` (reference 29).
        val_fraction: share of each subject's remaining data held out for validation, with ``val_seed``.
    """

    name = "deap"

    def __init__(
        self,
        data_dir: str | None = None,
        dimension: str = "valence",
        num_classes: int = 3,
        thresholds: str = "code",
        subjects: list[int] | None = None,
        test_fraction: float = 0.1,
        test_seed: int = 29,
        val_fraction: float = 0.1,
        val_seed: int = 0,
        batch_size: int = 200,
        num_workers: int = 0,
        cache_dir: str | None = None,
        use_cache: bool = True,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(data_dir, batch_size, num_workers, cache_dir, use_cache, pin_memory)
        if dimension not in DIMENSIONS:
            raise ValueError(f"dimension must be one of {sorted(DIMENSIONS)}, got {dimension!r}")
        if num_classes not in (2, 3, 4):
            raise ValueError(f"num_classes must be 2, 3 or 4, got {num_classes}")
        if thresholds not in ("code", "paper"):
            raise ValueError(f"thresholds must be 'code' or 'paper', got {thresholds!r}")
        self.subjects = list(range(1, 33)) if subjects is None else [int(s) for s in subjects]
        if not self.subjects or any(not 1 <= s <= 99 for s in self.subjects):
            raise ValueError(f"subjects must be a non-empty list of subject numbers (1..32), got {subjects}")
        self.dimension = dimension
        self.thresholds = thresholds
        self.test_fraction, self.test_seed = float(test_fraction), int(test_seed)
        self.val_fraction, self.val_seed = float(val_fraction), int(val_seed)
        self.segment_s = 3
        self.input_size = EEG_CHANNELS
        self.num_classes = int(num_classes)
        self.num_steps = self.segment_s * SAMPLING_RATE

    def check_data(self) -> Path:
        root = require_data_dir("DEAP", self.data_dir, LAYOUT, DEAP_SOURCE)
        require_files("DEAP", root, [subject_file(s) for s in self.subjects], LAYOUT, DEAP_SOURCE)
        return root

    def subject_arrays(self, subject: int) -> dict[str, np.ndarray]:
        """Cached float16 segments and float32 ratings of one subject."""
        root = self.check_data()
        path = root / subject_file(subject)
        settings = {"segment_s": self.segment_s, "baseline_s": BASELINE_S, "channels": EEG_CHANNELS, "dtype": "float16"}

        def build() -> dict[str, np.ndarray]:
            data, ratings = load_subject(path)
            return {
                "segments": baseline_removed_segments(data, self.segment_s).astype(np.float16),
                "ratings": ratings.astype(np.float32),
            }

        return maybe_cached(
            self.use_cache,
            resolve_cache_dir(root, self.cache_dir),
            f"deap-{path.stem}",
            cache_key(self.name, [path], settings),
            build,
            meta={"source": str(path)},
        )

    def build_splits(self) -> dict[str, BatchDataset]:
        segments, parts = [], {"train": [], "val": [], "test": []}
        for pos, subject in enumerate(self.subjects):
            arrays = self.subject_arrays(subject)
            seg = arrays["segments"]
            trial_labels = quantise_labels(
                np.asarray(arrays["ratings"]), self.num_classes, self.dimension, self.thresholds
            )
            labels = np.repeat(trial_labels, len(seg) // len(trial_labels))
            rest, test = stratified_holdout(labels, self.test_fraction, self.test_seed)
            train, val = stratified_holdout(labels, self.val_fraction, self.val_seed, indices=rest)
            segments.append(seg)
            for name, idx in (("train", train), ("val", val), ("test", test)):
                parts[name].append((np.stack([np.full(len(idx), pos), idx], axis=1), labels[idx]))
        out: dict[str, BatchDataset] = {}
        for name, items in parts.items():
            rows = np.concatenate([r for r, _ in items])
            labels = np.concatenate([lab for _, lab in items])
            out[name] = SegmentDataset(segments, rows, labels)
        return out

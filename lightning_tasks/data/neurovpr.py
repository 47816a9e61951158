"""NeuroVPR (DVS place recognition): 100 place classes from pooled DVS event-count tensors, 20 steps x 2752.

Layout expected in ``data_dir`` (Zenodo 10.5281/zenodo.7825811; one folder per trajectory, named
``<trajectory_prefix><index>`` as in the reference's ``data_path + str(idx)``)::

    <data_dir>/room_v1/dvs_5ms_5seq/<timestamp>.pth   torch tensors (2, 5, H, W): polarity x 5 bins of 5 ms x sensor
    <data_dir>/room_v2/dvs_5ms_5seq/...
    ...

Each tensor file is loaded with ``torch.load(weights_only=True)``, permuted to (5, 2, H, W) and average-pooled
8 x 8 (DAVIS346: H x W = 260 x 346 -> 32 x 43); ``files_per_sample`` = 4 consecutive files (sorted by timestamp)
make one sample of 20 steps x (2·32·43 = 2752) inputs (``NeuroVPR/tool_function_bak.py:34–130``). Label = position
of the window's last file along its trajectory, ``int((t − t_first) / (t_last − t_first) · 100)`` clipped to 0..99.
Project choices: every window of consecutive files is one sample (stride ``sample_stride``) instead of a random
trajectory per item, and the trajectories of train / val / test are configurable (defaults: train 1, 2, 3, 5, 6, 7
as the reference, val 8, 9, 10, test 4). Pooled sums are cached per trajectory as uint16 when the tensors hold
event counts (float32 otherwise) and scaled by 1/64 at batch time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .base import (
    BatchDataset,
    BenchmarkDataModule,
    CorruptDataError,
    DatasetNotFoundError,
    missing_data_message,
    require_data_dir,
)
from .cache import cache_key, maybe_cached, resolve_cache_dir

NEUROVPR_SOURCE = "https://doi.org/10.5281/zenodo.7825811 (NeuroVPR, Hussaini/Yu et al.; DVS 'dvs_5ms_5seq' tensors)"
DVS_DIR = "dvs_5ms_5seq"
TENSOR_SUFFIXES = (".pth", ".pt")


def _layout(prefix: str) -> str:
    return (
        f"  <data_dir>/{prefix}<i>/{DVS_DIR}/<timestamp>.pth   torch tensor (2, 5, H, W), one folder per trajectory i\n"
        "  (H, W = sensor_size, 260 x 346 for the DAVIS346 recordings)"
    )


def trajectory_files(folder: Path) -> tuple[list[Path], np.ndarray]:
    """Tensor files of one trajectory sorted by the timestamp in their names, and those timestamps."""
    files = [p for p in (folder / DVS_DIR).iterdir() if p.suffix in TENSOR_SUFFIXES]
    stamps = []
    for p in files:
        try:
            stamps.append(float(p.stem))
        except ValueError as err:
            raise CorruptDataError(f"{p}: file name must be a timestamp (e.g. 1620000000.123.pth)") from err
    order = np.argsort(stamps, kind="stable")
    return [files[i] for i in order], np.asarray(stamps, dtype=np.float64)[order]


def load_dvs_tensor(path: Path, sensor_size: tuple[int, int], bins: int = 5) -> np.ndarray:
    """One (2, bins, H, W) tensor file as a float array, validated."""
    try:
        t = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError / UnpicklingError / EOFError for damaged files
        raise CorruptDataError(
            f"{path}: cannot be loaded as a torch tensor ({err}); the file is truncated or corrupt"
        ) from err
    if not isinstance(t, torch.Tensor):
        raise CorruptDataError(f"{path}: expected a torch.Tensor (2, {bins}, H, W), got {type(t).__name__}")
    expected = (2, bins, *sensor_size)
    if tuple(t.shape) != expected:
        raise CorruptDataError(f"{path}: tensor shape {tuple(t.shape)}, expected {expected} (polarity, bins, H, W)")
    return t.detach().to(torch.float64).numpy()


def pooled_sums(x: np.ndarray, pool: int) -> np.ndarray:
    """(2, bins, H, W) -> (bins, 2, H // pool, W // pool) sums over pool x pool blocks (avg_pool2d · pool²)."""
    c, b, h, w = x.shape
    hp, wp = h // pool, w // pool
    x = x.transpose(1, 0, 2, 3)[:, :, : hp * pool, : wp * pool]
    return x.reshape(b, c, hp, pool, wp, pool).sum(axis=(3, 5))


def topk_accuracy(logits: torch.Tensor, targets: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Share of rows whose target is among the k largest logits, per k (reference ``accuracy``)."""
    top = logits.topk(max(ks), dim=1).indices
    hit = top == targets.view(-1, 1)
    return {f"top{k}": hit[:, :k].any(dim=1).float().mean().item() for k in ks}


def topk_metrics(num_classes: int = 100, ks: Sequence[int] = (1, 5, 10)):
    """torchmetrics collection ``{top1, top5, top10}`` of micro-averaged top-k accuracy, for the classifier."""
    from torchmetrics import MetricCollection
    from torchmetrics.classification import MulticlassAccuracy

    return MetricCollection(
        {f"top{k}": MulticlassAccuracy(num_classes=num_classes, top_k=k, average="micro") for k in ks}
    )


class DVSWindowDataset(BatchDataset):
    """Windows of consecutive pooled files: inputs (B, files·bins, 2·h·w) float32."""

    def __init__(
        self,
        trajectories: Sequence[dict[str, np.ndarray]],
        windows: np.ndarray,
        labels: np.ndarray,
        scale: float,
        files: int,
    ) -> None:
        self.frames = [t["frames"] for t in trajectories]
        self.windows = np.asarray(windows, dtype=np.int64)  # (N, 2): trajectory position, first file
        self.labels = np.asarray(labels, dtype=np.int64)
        self.scale = scale
        self.files = files

    def __len__(self) -> int:
        return len(self.labels)

    def get_batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.windows[indices]
        x = np.stack([np.asarray(self.frames[t][s : s + self.files], dtype=np.float32) for t, s in w])
        b, f, bins = x.shape[:3]
        x = torch.from_numpy(x.reshape(b, f * bins, -1)) * self.scale
        return x, torch.from_numpy(self.labels[indices])


class NeuroVPRDataModule(BenchmarkDataModule):
    """NeuroVPR DVS place recognition (100 classes); inputs (B, 20, 2752) with the default sensor and pooling.

    Args:
        data_dir: folder with one sub-folder per trajectory (see module docstring).
        train_trajectories / val_trajectories / test_trajectories: trajectory indices per split.
        trajectory_prefix: folder name before the index (``room_v`` in the reference).
        sensor_size: (H, W) of the tensors (DAVIS346: 260 x 346).
        pool: average-pooling window (8).
        files_per_sample: consecutive tensor files per sample (4 -> 20 steps).
        bins_per_file: time bins per tensor file (5 for ``dvs_5ms_5seq``).
        sample_stride: step between window starts.
        num_places: number of place classes (100).
    """

    name = "neurovpr"

    def __init__(
        self,
        data_dir: str | None = None,
        train_trajectories: Sequence[int] = (1, 2, 3, 5, 6, 7),
        val_trajectories: Sequence[int] = (8, 9, 10),
        test_trajectories: Sequence[int] = (4,),
        trajectory_prefix: str = "room_v",
        sensor_size: tuple[int, int] = (260, 346),
        pool: int = 8,
        files_per_sample: int = 4,
        bins_per_file: int = 5,
        sample_stride: int = 1,
        num_places: int = 100,
        batch_size: int = 20,
        num_workers: int = 0,
        cache_dir: str | None = None,
        use_cache: bool = True,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(data_dir, batch_size, num_workers, cache_dir, use_cache, pin_memory)
        self.trajectories = {
            "train": [int(i) for i in train_trajectories],
            "val": [int(i) for i in val_trajectories],
            "test": [int(i) for i in test_trajectories],
        }
        for split, ids in self.trajectories.items():
            if not ids:
                raise ValueError(f"{split}_trajectories must name at least one trajectory")
        overlap = set(self.trajectories["train"]) & (set(self.trajectories["val"]) | set(self.trajectories["test"]))
        if overlap or set(self.trajectories["val"]) & set(self.trajectories["test"]):
            raise ValueError(f"train/val/test trajectories must be disjoint, got {self.trajectories}")
        if pool < 1 or files_per_sample < 1 or bins_per_file < 1 or sample_stride < 1 or num_places < 1:
            raise ValueError("pool, files_per_sample, bins_per_file, sample_stride and num_places must be >= 1")
        self.trajectory_prefix = trajectory_prefix
        self.sensor_size = (int(sensor_size[0]), int(sensor_size[1]))
        if self.sensor_size[0] < pool or self.sensor_size[1] < pool:
            raise ValueError(f"sensor_size {self.sensor_size} must be at least pool={pool} in both dimensions")
        self.pool = int(pool)
        self.files_per_sample = int(files_per_sample)
        self.bins_per_file = int(bins_per_file)
        self.sample_stride = int(sample_stride)
        self.input_size = 2 * (self.sensor_size[0] // self.pool) * (self.sensor_size[1] // self.pool)
        self.num_classes = int(num_places)
        self.num_steps = self.files_per_sample * self.bins_per_file

    def folder(self, index: int) -> Path:
        return Path(str(self.data_dir)).expanduser() / f"{self.trajectory_prefix}{index}"

    def check_data(self) -> Path:
        layout = _layout(self.trajectory_prefix)
        root = require_data_dir("NeuroVPR", self.data_dir, layout, NEUROVPR_SOURCE)
        missing = []
        for ids in self.trajectories.values():
            for i in ids:
                d = self.folder(i) / DVS_DIR
                if not d.is_dir() or not any(p.suffix in TENSOR_SUFFIXES for p in d.iterdir()):
                    missing.append(f"{self.trajectory_prefix}{i}/{DVS_DIR}/*.pth")
        if missing:
            raise DatasetNotFoundError(missing_data_message("NeuroVPR", root, missing, layout, NEUROVPR_SOURCE))
        return root

    def trajectory_arrays(self, index: int) -> dict[str, np.ndarray]:
        """Pooled sums (files, bins, 2, h, w) of one trajectory (cached) and its file timestamps (from the names)."""
        root = self.check_data()
        files, stamps = trajectory_files(self.folder(index))
        settings = {"sensor_size": self.sensor_size, "pool": self.pool, "bins": self.bins_per_file}

        def build() -> dict[str, np.ndarray]:
            sums = np.stack(
                [pooled_sums(load_dvs_tensor(p, self.sensor_size, self.bins_per_file), self.pool) for p in files]
            )
            counts = (
                np.all(sums >= 0) and np.all(sums == np.round(sums)) and sums.max(initial=0) <= np.iinfo(np.uint16).max
            )
            return {"frames": sums.astype(np.uint16 if counts else np.float32)}

        arrays = maybe_cached(
            self.use_cache,
            resolve_cache_dir(root, self.cache_dir),
            f"neurovpr-{self.trajectory_prefix}{index}",
            cache_key(self.name, files, settings),
            build,
            meta={"trajectory": index, "files": len(files)},
        )
        return {**arrays, "timestamps": stamps}

    def place_labels(self, stamps: np.ndarray) -> np.ndarray:
        """Place class of every file: its time position along the trajectory quantised into ``num_classes``."""
        duration = stamps[-1] - stamps[0]
        if duration <= 0:
            return np.zeros(len(stamps), dtype=np.int64)
        ids = ((stamps - stamps[0]) / duration * self.num_classes).astype(np.int64)
        return np.clip(ids, 0, self.num_classes - 1)

    def build_splits(self) -> dict[str, BatchDataset]:
        out: dict[str, BatchDataset] = {}
        for split, ids in self.trajectories.items():
            trajs, windows, labels = [], [], []
            for pos, i in enumerate(ids):
                arrays = self.trajectory_arrays(i)
                n = len(arrays["timestamps"])
                if n < self.files_per_sample:
                    raise CorruptDataError(
                        f"{self.folder(i) / DVS_DIR}: {n} tensor files, fewer than files_per_sample={self.files_per_sample}"
                    )
                starts = np.arange(0, n - self.files_per_sample + 1, self.sample_stride)
                place = self.place_labels(np.asarray(arrays["timestamps"]))
                trajs.append(arrays)
                windows.append(np.stack([np.full(len(starts), pos), starts], axis=1))
                labels.append(place[starts + self.files_per_sample - 1])
            out[split] = DVSWindowDataset(
                trajs, np.concatenate(windows), np.concatenate(labels), 1.0 / self.pool**2, self.files_per_sample
            )
        return out

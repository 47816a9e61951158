"""Spiking Heidelberg Digits (SHD): 20 classes, 700 channels, Zenke-lab HDF5 files.

Layout expected in ``data_dir``: ``shd_train.h5`` and ``shd_test.h5`` (8156 / 2264 samples; gunzip the
``.h5.gz`` downloads). No official validation set: a stratified ``val_fraction`` (default 10%) of the training file
is held out with a fixed seed (spec §12.1); model selection uses it, the test file is only for the final report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import hdf5_spikes
from .base import BatchDataset, BenchmarkDataModule, require_data_dir, require_files, stratified_holdout
from .cache import cache_key, maybe_cached, resolve_cache_dir

SHD_SOURCE = "https://zenkelab.org/datasets/ (Cramer et al. 2020, 'Heidelberg spiking data sets'), files shd_*.h5.gz"


def _layout(files: list[str]) -> str:
    lines = [
        f"  <data_dir>/{f}   HDF5: {hdf5_spikes.TIMES_KEY} (vlen float, s), {hdf5_spikes.UNITS_KEY}"
        f" (vlen int, 0..699), {hdf5_spikes.LABELS_KEY} (int)"
        for f in files
    ]
    return "\n".join(lines)


class SpikingAudioDataModule(BenchmarkDataModule):
    """Shared SHD/SSC logic: binning settings, per-file cached binning, sparse datasets."""

    name = "spiking-audio"
    files: dict[str, str] = {}
    classes = 0
    source = ""

    def __init__(
        self,
        data_dir: str | None = None,
        dt_ms: float = 1.0,
        window_ms: float | None = 1000.0,
        frames: str = "binary",
        reference_binning: bool = False,
        batch_size: int = 100,
        num_workers: int = 0,
        cache_dir: str | None = None,
        use_cache: bool = True,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(data_dir, batch_size, num_workers, cache_dir, use_cache, pin_memory)
        if frames not in ("binary", "count"):
            raise ValueError(f"frames must be 'binary' or 'count', got {frames!r}")
        if dt_ms <= 0:
            raise ValueError(f"dt_ms must be > 0 (paper: 1, 2, 4 or 8), got {dt_ms}")
        self.dt_ms = float(dt_ms)
        self.frames = frames
        self.reference_binning = bool(reference_binning)
        self.input_size = hdf5_spikes.NUM_UNITS
        self.num_classes = self.classes
        if self.reference_binning:
            if window_ms not in (None, 1000.0):
                raise ValueError("reference_binning uses the reference's fixed 1 s window; set window_ms=1000")
            if frames != "binary":
                raise ValueError("reference_binning produces binary frames only; set frames='binary'")
            self.window_ms = 1000.0
            self.num_steps = int(1.0 / (self.dt_ms * 1e-3))
        elif window_ms is None:
            # Paper wording T = T_max / dt: needs the data to know T_max.
            self.window_ms = 1000.0 * self._max_time()
            self.num_steps = max(1, int(self.window_ms // self.dt_ms) + 1)
        else:
            self.window_ms = float(window_ms)
            self.num_steps = hdf5_spikes.steps_for_window(self.dt_ms, self.window_ms)

    # -- layout ---------------------------------------------------------------------------------------------------
    def check_data(self) -> Path:
        layout = _layout(list(self.files.values()))
        root = require_data_dir(self.name.upper(), self.data_dir, layout, self.source)
        require_files(self.name.upper(), root, list(self.files.values()), layout, self.source)
        return root

    def _max_time(self) -> float:
        root = self.check_data()
        best = 0.0
        for f in self.files.values():
            with hdf5_spikes.SpikeFile(root / f) as sf:
                best = max(best, sf.max_time())
        return best

    def settings(self) -> dict[str, Any]:
        return {
            "dt_ms": self.dt_ms,
            "num_steps": self.num_steps,
            "frames": self.frames,
            "reference_binning": self.reference_binning,
            "num_units": self.input_size,
        }

    def binned(self, split_file: str) -> dict[str, Any]:
        """Binned sparse arrays of one HDF5 file (cached)."""
        root = self.check_data()
        path = root / split_file
        key = cache_key(self.name, [path], self.settings())
        return maybe_cached(
            self.use_cache,
            resolve_cache_dir(root, self.cache_dir),
            f"{self.name}-{Path(split_file).stem}",
            key,
            lambda: hdf5_spikes.bin_file(
                path,
                self.dt_ms,
                self.num_steps,
                counts=self.frames == "count",
                reference=self.reference_binning,
            ),
            meta={"source": str(path), "settings": self.settings()},
        )

    def _dataset(self, arrays: dict[str, Any], indices: Any = None) -> hdf5_spikes.SparseFrameDataset:
        return hdf5_spikes.SparseFrameDataset(arrays, self.num_steps, self.input_size, indices)


class SHDDataModule(SpikingAudioDataModule):
    """SHD: ``shd_train.h5`` (train + stratified held-out validation) and ``shd_test.h5``.

    Args:
        data_dir: folder holding ``shd_train.h5`` and ``shd_test.h5``.
        dt_ms: bin width in ms (paper: 1, 2, 4, 8).
        window_ms: time window binned from t = 0 (default 1000 ms: T = 1000 at 1 ms, reference parity); ``None``
            uses the latest spike in the data (paper's T = T_max / dt; reads the files at construction).
        frames: ``"binary"`` (any spike in the bin) or ``"count"`` (spikes per bin).
        reference_binning: reproduce the reference layout exactly (unit 0 dropped, channel = 700 − unit, a spike
            at t goes to the first bin i with t <= i·dt); for released-checkpoint parity.
        val_fraction: share of the training file held out for validation (stratified by label).
        split_seed: seed of that split.
        cache_dir: where binned data is stored (default ``<data_dir>/.norse_dh_cache`` or ``~/.cache/norse_dh``).
        use_cache: set False to bin in memory on every run.
    """

    name = "shd"
    files = {"train": "shd_train.h5", "test": "shd_test.h5"}
    classes = 20
    source = SHD_SOURCE

    def __init__(
        self,
        data_dir: str | None = None,
        dt_ms: float = 1.0,
        window_ms: float | None = 1000.0,
        frames: str = "binary",
        reference_binning: bool = False,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        batch_size: int = 100,
        num_workers: int = 0,
        cache_dir: str | None = None,
        use_cache: bool = True,
        pin_memory: bool = False,
    ) -> None:
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        self.val_fraction = float(val_fraction)
        self.split_seed = int(split_seed)
        super().__init__(
            data_dir,
            dt_ms,
            window_ms,
            frames,
            reference_binning,
            batch_size,
            num_workers,
            cache_dir,
            use_cache,
            pin_memory,
        )

    def build_splits(self) -> dict[str, BatchDataset]:
        train = self.binned(self.files["train"])
        test = self.binned(self.files["test"])
        kept, held = stratified_holdout(train["labels"], self.val_fraction, self.split_seed)
        return {
            "train": self._dataset(train, kept),
            "val": self._dataset(train, held),
            "test": self._dataset(test),
        }

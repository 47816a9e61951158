"""Zenke-lab spiking-audio HDF5 files (SHD, SSC): reading, vectorised binning, sparse frames.

File format (Cramer et al. 2020, https://zenkelab.org/datasets/): one HDF5 file per split with
``spikes/times`` (variable-length float arrays, seconds, one per sample), ``spikes/units`` (variable-length integer
arrays, cochlea channel 0..699, same lengths) and ``labels`` (integers, one per sample); an ``extra/`` group is
ignored.

Binning (project choice, spec §11 item 11): channel = unit (all 700 channels, unit 0 kept, order kept); bin index
= floor(t / dt) with bins [i·dt, (i+1)·dt) (computed on integer nanoseconds so t = k·dt lands in bin k); spikes at
or after the window end are dropped; frames are binary (any spike) or counts.

Reference binning (``reference=True``, ``SHD/shd_generate_dataset.py: binary_image_readout``): int(1/dt) bins, a
spike goes to the first bin i with t <= i·dt (comparison in the file's float dtype), so bin 0 only holds t <= 0;
unit 0 is dropped and channel = 700 − unit (reversed order, channel 0 never set); binary only.

Binned samples are stored sparsely: ``offsets`` (N+1,) int64 into ``flat`` (events,) int32 holding bin·M + channel,
plus ``counts`` (events,) uint16 for count frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import BatchDataset, CorruptDataError

NUM_UNITS = 700
TIMES_KEY = "spikes/times"
UNITS_KEY = "spikes/units"
LABELS_KEY = "labels"


class SpikeFile:
    """Validated handle on one Zenke-lab HDF5 file; ``read(start, stop)`` returns (times, units) object arrays."""

    def __init__(self, path: Path | str, num_units: int = NUM_UNITS) -> None:
        import h5py

        self.path = Path(path)
        self.num_units = num_units
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as err:
            raise CorruptDataError(
                f"{self.path}: cannot be opened as HDF5 ({err}). The file is truncated or corrupt; "
                "re-download it (sizes are listed at https://zenkelab.org/datasets/)."
            ) from err
        missing = [k for k in (TIMES_KEY, UNITS_KEY, LABELS_KEY) if k not in self._h5]
        if missing:
            self.close()
            raise CorruptDataError(
                f"{self.path}: missing HDF5 dataset(s) {missing}; expected '{TIMES_KEY}', '{UNITS_KEY}' and "
                f"'{LABELS_KEY}' (Zenke-lab SHD/SSC format)."
            )
        self.times_ds = self._h5[TIMES_KEY]
        self.units_ds = self._h5[UNITS_KEY]
        try:
            labels = np.asarray(self._h5[LABELS_KEY][()])
        except (OSError, RuntimeError) as err:
            self.close()
            raise CorruptDataError(
                f"{self.path}: cannot read '{LABELS_KEY}' ({err}); the file may be truncated."
            ) from err
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            self.close()
            raise CorruptDataError(
                f"{self.path}: '{LABELS_KEY}' must be a 1-D integer array, got shape {labels.shape} dtype {labels.dtype}"
            )
        n = len(labels)
        if self.times_ds.shape != (n,) or self.units_ds.shape != (n,):
            self.close()
            raise CorruptDataError(
                f"{self.path}: '{TIMES_KEY}' {self.times_ds.shape}, '{UNITS_KEY}' {self.units_ds.shape} and "
                f"'{LABELS_KEY}' ({n},) must have the same number of samples"
            )
        self.labels = labels.astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, start: int, stop: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Spike times and units of samples [start, stop), validated (same lengths, finite, units in range)."""
        try:
            times = list(self.times_ds[start:stop])
            units = list(self.units_ds[start:stop])
        except (OSError, RuntimeError, ValueError) as err:
            raise CorruptDataError(
                f"{self.path}: cannot read samples {start}..{stop - 1} ({err}); the file is truncated or corrupt."
            ) from err
        for i, (t, u) in enumerate(zip(times, units)):
            if t.shape != u.shape:
                raise CorruptDataError(
                    f"{self.path}: sample {start + i} has {t.size} spike times but {u.size} units (must be equal)"
                )
        if times:
            all_t = np.concatenate(times)
            all_u = np.concatenate(units)
            if all_t.size and (not np.all(np.isfinite(all_t)) or all_t.min() < 0):
                raise CorruptDataError(
                    f"{self.path}: spike times must be finite and >= 0 (samples {start}..{stop - 1})"
                )
            if all_u.size and (all_u.min() < 0 or all_u.max() >= self.num_units):
                raise CorruptDataError(
                    f"{self.path}: spike units must lie in [0, {self.num_units}), got "
                    f"[{all_u.min()}, {all_u.max()}] (samples {start}..{stop - 1})"
                )
        return times, units

    def max_time(self, chunk: int = 2048) -> float:
        """Largest spike time in the file (seconds)."""
        best = 0.0
        for s in range(0, len(self), chunk):
            times, _ = self.read(s, min(s + chunk, len(self)))
            nonempty = [t.max() for t in times if t.size]
            if nonempty:
                best = max(best, float(max(nonempty)))
        return best

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> SpikeFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def steps_for_window(dt_ms: float, window_ms: float) -> int:
    """Number of bins covering [0, window): ceil(window / dt) (exact multiples give window / dt)."""
    if dt_ms <= 0 or window_ms <= 0:
        raise ValueError(f"dt_ms and window_ms must be > 0, got dt_ms={dt_ms}, window_ms={window_ms}")
    return int(np.ceil(round(window_ms / dt_ms, 9)))


def bin_events(
    times: list[np.ndarray],
    units: list[np.ndarray],
    dt_ms: float,
    num_steps: int,
    num_units: int = NUM_UNITS,
    counts: bool = False,
    reference: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Bin spike events of N samples into sparse (T, M) frames, all samples at once.

    Returns ``offsets`` (N+1,) int64, ``flat`` int32 (bin·M + channel, sorted and unique per sample) and
    ``counts`` uint16 (spikes per (bin, channel)) when ``counts`` else None. See the module docstring for the
    project and reference binning rules.
    """
    n = len(times)
    lengths = np.fromiter((len(t) for t in times), dtype=np.int64, count=n)
    sample = np.repeat(np.arange(n, dtype=np.int64), lengths)
    if lengths.sum() == 0:
        flat = np.zeros(0, dtype=np.int32)
        return np.zeros(n + 1, dtype=np.int64), flat, (np.zeros(0, dtype=np.uint16) if counts else None)
    t_raw = np.concatenate(times)
    u = np.concatenate(units).astype(np.int64)
    if reference:
        dt = dt_ms * 1e-3
        # Reference compares `times <= i*dt` in the times' dtype (float16 in the published files).
        thresholds = np.array([i * dt for i in range(num_steps)], dtype=np.float64).astype(t_raw.dtype)
        b = np.searchsorted(thresholds, t_raw, side="left").astype(np.int64)
        keep = (b < num_steps) & (u > 0)
        channel = num_units - u
    else:
        t_ns = np.rint(t_raw.astype(np.float64) * 1e9).astype(np.int64)
        dt_ns = int(round(dt_ms * 1e6))
        b = t_ns // dt_ns
        keep = b < num_steps
        channel = u
    frame = num_steps * num_units
    key = sample[keep] * frame + b[keep] * num_units + channel[keep]
    if counts:
        key, cnt = np.unique(key, return_counts=True)
        cnt = np.minimum(cnt, np.iinfo(np.uint16).max).astype(np.uint16)
    else:
        key, cnt = np.unique(key), None
    owner = key // frame
    offsets = np.searchsorted(owner, np.arange(n + 1, dtype=np.int64), side="left").astype(np.int64)
    return offsets, (key - owner * frame).astype(np.int32), cnt


def bin_file(
    path: Path | str,
    dt_ms: float,
    num_steps: int,
    counts: bool = False,
    reference: bool = False,
    chunk: int = 1024,
) -> dict[str, np.ndarray]:
    """Bin every sample of one HDF5 file in chunks (bounded memory); arrays ready for the cache."""
    offs, flats, cnts = [np.zeros(1, dtype=np.int64)], [], []
    with SpikeFile(path) as f:
        labels = f.labels
        total = 0
        for s in range(0, len(f), chunk):
            times, units = f.read(s, min(s + chunk, len(f)))
            o, fl, c = bin_events(times, units, dt_ms, num_steps, counts=counts, reference=reference)
            offs.append(o[1:] + total)
            total += int(o[-1])
            flats.append(fl)
            if c is not None:
                cnts.append(c)
    out = {
        "offsets": np.concatenate(offs),
        "flat": np.concatenate(flats) if flats else np.zeros(0, dtype=np.int32),
        "labels": labels,
    }
    if counts:
        out["counts"] = np.concatenate(cnts) if cnts else np.zeros(0, dtype=np.uint16)
    return out


class SparseFrameDataset(BatchDataset):
    """Sparse binned spike frames; batches are densified in one scatter: inputs (B, T, M) float32."""

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        num_steps: int,
        num_units: int = NUM_UNITS,
        indices: np.ndarray | None = None,
    ) -> None:
        self.offsets = arrays["offsets"]
        self.flat = arrays["flat"]
        self.counts = arrays.get("counts")
        self.all_labels = np.asarray(arrays["labels"], dtype=np.int64)
        self.indices = np.arange(len(self.all_labels)) if indices is None else np.asarray(indices, dtype=np.int64)
        self.num_steps = num_steps
        self.num_units = num_units

    @property
    def labels(self) -> np.ndarray:
        return self.all_labels[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def get_batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.indices[indices]
        starts, stops = self.offsets[rows], self.offsets[rows + 1]
        frame = self.num_steps * self.num_units
        parts = [np.asarray(self.flat[a:b], dtype=np.int64) + i * frame for i, (a, b) in enumerate(zip(starts, stops))]
        pos = torch.from_numpy(np.concatenate(parts)) if parts else torch.zeros(0, dtype=torch.int64)
        dense = torch.zeros(len(rows) * frame, dtype=torch.float32)
        if self.counts is None:
            dense[pos] = 1.0
        else:
            vals = np.concatenate([np.asarray(self.counts[a:b]) for a, b in zip(starts, stops)])
            dense[pos] = torch.from_numpy(vals.astype(np.float32))
        x = dense.view(len(rows), self.num_steps, self.num_units)
        return x, torch.from_numpy(self.all_labels[rows])

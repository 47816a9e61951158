"""SHD/SSC: HDF5 reading, binning against hand-derived frames and the reference loop, splits, cache, errors."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_tasks.data import hdf5_spikes
from lightning_tasks.data.base import CorruptDataError, DatasetNotFoundError
from lightning_tasks.data.shd import SHDDataModule
from lightning_tasks.data.ssc import SSCDataModule

# One hand-made sample. float16 values: 0.0005 -> 0.00050020, 0.0015 -> 0.0014997, 0.001 -> 0.0010004,
# 0.9995 -> 0.99951, all away from 1/2/4/8 ms bin edges except the deliberate 0.001.
TIMES = [0.0, 0.0005, 0.001, 0.0015, 0.0015, 0.9995, 1.05]
UNITS = [10, 0, 7, 699, 699, 5, 3]


def frames(dm: SHDDataModule, split: str = "test") -> torch.Tensor:
    ds = dm.dataset(split)
    x, _ = ds.get_batch(np.arange(len(ds)))
    return x


def make_shd(w, tmp_path, n_train_per_class: int = 10, test_samples=None):
    rng = np.random.default_rng(0)
    w.random_spike_h5(tmp_path / "shd_train.h5", np.repeat(np.arange(20), n_train_per_class), rng)
    if test_samples is None:
        w.write_spike_h5(tmp_path / "shd_test.h5", [TIMES, []], [UNITS, []], [4, 19])
    else:
        w.random_spike_h5(tmp_path / "shd_test.h5", test_samples, rng)
    return tmp_path


def reference_binary_image_readout(times: np.ndarray, units: np.ndarray, dt: float = 1e-3) -> np.ndarray:
    """Literal port of the reference SHD/shd_generate_dataset.py binning loop (second implementation)."""
    img = []
    n = int(1 / dt)
    for i in range(n):
        idxs = np.argwhere(times <= i * dt).flatten()
        vals = units[idxs]
        vals = vals[vals > 0]
        vector = np.zeros(700)
        vector[700 - vals] = 1
        times = np.delete(times, idxs)
        units = np.delete(units, idxs)
        img.append(vector)
    return np.array(img)


@pytest.mark.parametrize(
    ("dt_ms", "steps", "expected"),
    [
        (1.0, 1000, {(0, 10): 1, (0, 0): 1, (1, 7): 1, (1, 699): 2, (999, 5): 1}),
        (2.0, 500, {(0, 10): 1, (0, 0): 1, (0, 7): 1, (0, 699): 2, (499, 5): 1}),
        (4.0, 250, {(0, 10): 1, (0, 0): 1, (0, 7): 1, (0, 699): 2, (249, 5): 1}),
        (8.0, 125, {(0, 10): 1, (0, 0): 1, (0, 7): 1, (0, 699): 2, (124, 5): 1}),
    ],
)
@pytest.mark.parametrize("mode", ["binary", "count"])
def test_binning_matches_hand_derived_frames(tmp_path, dt_ms, steps, expected, mode, writers):
    dm = SHDDataModule(str(make_shd(writers, tmp_path)), dt_ms=dt_ms, frames=mode, use_cache=False)
    assert (dm.input_size, dm.num_classes, dm.num_steps) == (700, 20, steps)
    x = frames(dm)
    assert x.shape == (2, steps, 700) and x.dtype == torch.float32
    want = torch.zeros(steps, 700)
    for (b, c), k in expected.items():
        want[b, c] = k if mode == "count" else 1
    torch.testing.assert_close(x[0], want, rtol=0, atol=0)  # unit 0 kept, channel order kept, 1.05 s dropped
    assert x[1].sum() == 0  # empty sample
    _, y = dm.dataset("test").get_batch(np.arange(2))
    assert y.dtype == torch.int64 and y.tolist() == [4, 19]


def test_reference_binning_hand_derived(tmp_path, writers):
    dm = SHDDataModule(str(make_shd(writers, tmp_path)), reference_binning=True, use_cache=False)
    x = frames(dm)[0]
    # t=0 -> bin 0; t=0.001 -> first i with t <= i*dt is 1; 0.0015 -> 2; channel = 700 - unit; unit 0 and
    # t=0.9995 (> 0.999, the last threshold) are dropped.
    want = torch.zeros(1000, 700)
    want[0, 690] = want[1, 693] = want[2, 1] = 1
    torch.testing.assert_close(x, want, rtol=0, atol=0)


def test_reference_binning_equals_reference_loop(tmp_path):
    rng = np.random.default_rng(5)
    times, units = [], []
    for k in (0, 40, 400, 900):
        times.append(np.sort(rng.uniform(0, 1.1, k)).astype(np.float16))
        units.append(rng.integers(0, 700, k).astype(np.uint16))
    off, flat, _ = hdf5_spikes.bin_events(times, units, 1.0, 1000, reference=True)
    for i, (t, u) in enumerate(zip(times, units)):
        dense = np.zeros(1000 * 700)
        dense[flat[off[i] : off[i + 1]]] = 1
        np.testing.assert_array_equal(dense.reshape(1000, 700), reference_binary_image_readout(t, u))


def test_count_frames_equal_per_spike_loop(tmp_path):
    rng = np.random.default_rng(7)
    t = np.sort(rng.uniform(0, 1.3, 2000)).astype(np.float16)
    u = rng.integers(0, 700, 2000)
    off, flat, cnt = hdf5_spikes.bin_events([t], [u], 4.0, 250, counts=True)
    want = np.zeros((250, 700))
    for ti, ui in zip(t.astype(np.float64), u):
        b = int(np.floor(ti * 1000.0 / 4.0))
        if b < 250:
            want[b, ui] += 1
    dense = np.zeros(250 * 700)
    dense[flat] = cnt
    np.testing.assert_array_equal(dense.reshape(250, 700), want)
    assert off.tolist() == [0, len(flat)] and flat.dtype == np.int32 and cnt.dtype == np.uint16


def test_window_none_uses_latest_spike(tmp_path, writers):
    dm = SHDDataModule(str(make_shd(writers, tmp_path)), dt_ms=8.0, window_ms=None, use_cache=False)
    with h5py.File(tmp_path / "shd_train.h5") as f:
        t_max = max(float(max(t.max() for t in f["spikes/times"][:] if t.size)), float(np.float16(1.05)))
    assert dm.num_steps == int(t_max * 1000 // 8) + 1
    x = frames(dm)
    assert x[0, int(float(np.float16(1.05)) * 1000 // 8), 3] == 1  # 1.05 s spike is now inside the window


def test_shd_validation_split_is_stratified_disjoint_and_seeded(tmp_path, writers):
    root = str(make_shd(writers, tmp_path))
    dm = SHDDataModule(root, use_cache=False)
    train, val = dm.dataset("train"), dm.dataset("val")
    assert len(train) == 180 and len(val) == 20
    assert set(train.indices).isdisjoint(val.indices)
    assert sorted(np.concatenate([train.indices, val.indices]).tolist()) == list(range(200))
    assert np.bincount(val.labels, minlength=20).tolist() == [1] * 20  # 10% of 10 per class
    again = SHDDataModule(root, use_cache=False).dataset("val")
    other = SHDDataModule(root, use_cache=False, split_seed=1).dataset("val")
    assert again.indices.tolist() == val.indices.tolist()
    assert other.indices.tolist() != val.indices.tolist()


def test_loader_batches_follow_the_contract(tmp_path, writers):
    dm = SHDDataModule(str(make_shd(writers, tmp_path)), batch_size=16, use_cache=False)
    dm.prepare_data()
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1000, 700) and x.dtype == torch.float32 and y.shape == (16,) and y.dtype == torch.int64
    assert set(torch.unique(x).tolist()) <= {0.0, 1.0}
    xs, ys = zip(*dm.val_dataloader())
    assert sum(len(b) for b in ys) == 20
    single_x, single_y = dm.dataset("val")[3]
    torch.testing.assert_close(single_x, dm.dataset("val").get_batch(np.arange(20))[0][3])


def test_cache_hit_miss_counts_binning_calls(tmp_path, monkeypatch, writers):
    root = make_shd(writers, tmp_path)
    calls = []
    real = hdf5_spikes.bin_file

    def counting(path, *args, **kwargs):
        calls.append(os.path.basename(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(hdf5_spikes, "bin_file", counting)
    cache = tmp_path / "cache"
    x1 = frames(SHDDataModule(str(root), cache_dir=str(cache)))
    assert sorted(calls) == ["shd_test.h5", "shd_train.h5"]
    x2 = frames(SHDDataModule(str(root), cache_dir=str(cache)))  # second run: no binning
    assert len(calls) == 2
    torch.testing.assert_close(x1, x2)
    frames(SHDDataModule(str(root), cache_dir=str(cache), dt_ms=2.0))  # new setting -> new cache
    assert len(calls) == 4
    frames(SHDDataModule(str(root), cache_dir=str(cache), frames="count"))
    assert len(calls) == 6
    st = os.stat(root / "shd_test.h5")
    os.utime(root / "shd_test.h5", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched source -> rebuilt
    frames(SHDDataModule(str(root), cache_dir=str(cache)))
    assert calls[6:] == ["shd_test.h5"]
    # compact storage: sparse int32 events, no float64 arrays anywhere in the cache
    stored = [np.load(p, mmap_mode="r") for p in cache.rglob("*.npy")]
    assert stored and all(a.dtype != np.float64 for a in stored)


def test_missing_data_names_layout_and_source(tmp_path, writers):
    with pytest.raises(DatasetNotFoundError, match=r"shd_train\.h5.*(?s:.*)zenkelab"):
        SHDDataModule(None).prepare_data()
    writers.write_spike_h5(tmp_path / "shd_train.h5", [[0.1]], [[1]], [0])
    with pytest.raises(DatasetNotFoundError, match=r"missing shd_test\.h5"):
        SHDDataModule(str(tmp_path)).setup("fit")
    with pytest.raises(DatasetNotFoundError, match="no such directory"):
        SHDDataModule(str(tmp_path / "nope")).prepare_data()


def test_truncated_or_malformed_file_is_named(tmp_path, writers):
    root = make_shd(writers, tmp_path)
    raw = (root / "shd_test.h5").read_bytes()
    (root / "shd_test.h5").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(CorruptDataError, match=r"shd_test\.h5.*truncated or corrupt"):
        SHDDataModule(str(root), use_cache=False).setup()
    with h5py.File(root / "shd_test.h5", "w") as f:
        f.create_dataset("labels", data=np.zeros(1, dtype=np.uint16))
    with pytest.raises(CorruptDataError, match=r"spikes/times"):
        SHDDataModule(str(root), use_cache=False).setup()
    writers.write_spike_h5(root / "shd_test.h5", [[0.1, 0.2]], [[3, 700]], [0])
    with pytest.raises(CorruptDataError, match=r"units must lie in \[0, 700\)"):
        SHDDataModule(str(root), use_cache=False).setup()


def test_ssc_uses_its_own_three_files(tmp_path, writers):
    rng = np.random.default_rng(3)
    for name, n in (("ssc_train.h5", 70), ("ssc_valid.h5", 35), ("ssc_test.h5", 36)):
        writers.random_spike_h5(tmp_path / name, np.arange(n) % 35, rng)
    dm = SSCDataModule(str(tmp_path), dt_ms=4.0, cache_dir=str(tmp_path / "c"))
    assert (dm.input_size, dm.num_classes, dm.num_steps) == (700, 35, 250)
    assert [len(dm.dataset(s)) for s in ("train", "val", "test")] == [70, 35, 36]
    x, y = dm.dataset("val").get_batch(np.arange(35))
    assert y.tolist() == list(range(35)) and x.shape == (35, 250, 700)
    with pytest.raises(DatasetNotFoundError, match=r"ssc_valid\.h5"):
        os.remove(tmp_path / "ssc_valid.h5")
        SSCDataModule(str(tmp_path)).prepare_data()


@settings(max_examples=25, deadline=None)
@given(
    spikes=st.lists(st.tuples(st.floats(0.0, 1.5, allow_nan=False), st.integers(0, 699)), min_size=0, max_size=60),
    dt_ms=st.sampled_from([1.0, 2.0, 4.0, 8.0]),
)
def test_count_frames_conserve_spikes_and_binary_is_their_support(spikes, dt_ms):
    t = np.array([s[0] for s in spikes], dtype=np.float16)
    u = np.array([s[1] for s in spikes], dtype=np.int64)
    steps = hdf5_spikes.steps_for_window(dt_ms, 1000.0)
    _, flat_c, cnt = hdf5_spikes.bin_events([t], [u], dt_ms, steps, counts=True)
    _, flat_b, _ = hdf5_spikes.bin_events([t], [u], dt_ms, steps)
    in_window = int(np.sum(np.rint(t.astype(np.float64) * 1e9) < steps * round(dt_ms * 1e6)))
    assert int(cnt.sum()) == in_window  # every spike inside the window is counted exactly once
    np.testing.assert_array_equal(flat_b, flat_c)  # binary frame = support of the count frame
    assert np.all(np.diff(flat_c) > 0) and (flat_c.size == 0 or flat_c.max() < steps * 700)

"""DEAP: pickle reading, baseline removal, 3 s segments, label thresholds, per-subject splits, cache, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.model_selection import train_test_split

from lightning_tasks.data import deap
from lightning_tasks.data.base import CorruptDataError, DatasetNotFoundError
from lightning_tasks.data.deap import DEAPDataModule, baseline_removed_segments, quantise_labels

TRIALS = 6
RATINGS = np.array(
    [[1.0, 9.0, 5, 5], [3.0, 6.5, 5, 5], [3.5, 6.0, 5, 5], [4.0, 4.0, 5, 5], [6.0, 3.5, 5, 5], [6.5, 1.0, 5, 5]]
)


def reference_baseline_removal(data):
    """Literal port of deap/preprocessing.py baseline_removal (second implementation)."""
    preprocessed = []
    for ins in range(data.shape[0]):
        preprocessed_ins = []
        for c in range(data.shape[1]):
            signal = data[ins, c]
            all_baseline = np.split(signal[: 3 * 128], 3)
            signal = signal[3 * 128 :]
            baseline_per_second = np.mean(all_baseline, axis=0)
            baseline_to_remove = np.tile(baseline_per_second, int(len(signal) / 128))
            preprocessed_ins.append((signal - baseline_to_remove).reshape(-1, 3 * 128))
        preprocessed.append(preprocessed_ins)
    return np.array(preprocessed).transpose(0, 2, 1, 3)


def test_baseline_removal_hand_derived_and_reference_loop():
    rng = np.random.default_rng(0)
    data = rng.normal(0, 10, (2, 40, 8064))
    ours = baseline_removed_segments(data)
    assert ours.shape == (40, 384, 32)
    ref = reference_baseline_removal(data[:, :32]).reshape(40, 32, 384).transpose(0, 2, 1)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-9)
    # hand-derived: segment s of trial k, step t, channel c = data[k, c, 384 + 384 s + t] - baseline mean
    k, s, t, c = 1, 7, 100, 5
    base = data[k, c, :384].reshape(3, 128).mean(axis=0)[(384 * s + t) % 128]
    assert ours[k * 20 + s, t, c] == pytest.approx(data[k, c, 384 + 384 * s + t] - base)


def test_label_thresholds_code_paper_two_and_four_classes():
    r = np.array([[1.0, 9.0], [3.0, 5.0], [3.5, 5.5], [4.0, 1.0], [6.0, 6.0], [6.5, 2.0], [9.0, 7.0]])
    assert quantise_labels(r, 3, "valence", "code").tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert quantise_labels(r, 3, "valence", "paper").tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert quantise_labels(r, 3, "arousal", "code").tolist() == [2, 1, 1, 0, 1, 0, 2]
    assert quantise_labels(r, 2, "valence").tolist() == [0, 0, 0, 0, 1, 1, 1]
    assert quantise_labels(r, 2, "arousal").tolist() == [1, 0, 1, 0, 1, 0, 1]
    assert quantise_labels(r, 4, "valence").tolist() == [2, 0, 2, 0, 3, 1, 3]


def test_datamodule_segments_labels_and_reference_split(tmp_path, writers):
    rng = np.random.default_rng(1)
    for s in (1, 2):
        writers.make_subject(tmp_path / f"s{s:02d}.dat", rng, RATINGS)
    dm = DEAPDataModule(str(tmp_path), subjects=[1, 2], cache_dir=str(tmp_path / "c"), batch_size=50)
    assert (dm.input_size, dm.num_classes, dm.num_steps) == (32, 3, 384)
    ds = {s: dm.dataset(s) for s in ("train", "val", "test")}
    n = 2 * TRIALS * 20
    assert sum(len(d) for d in ds.values()) == n and len(ds["test"]) == 2 * 12 and len(ds["val"]) == 2 * 11
    keys = [set(map(tuple, d.rows.tolist())) for d in ds.values()]
    assert keys[0].isdisjoint(keys[1]) and keys[0].isdisjoint(keys[2]) and keys[1].isdisjoint(keys[2])
    # hand-derived values: segment s of trial k is known_signal(k)[:, 384 s : 384 (s + 1)].T (float16 storage)
    x, y = ds["test"].get_batch(np.arange(len(ds["test"])))
    assert x.shape == (24, 384, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    for i, (_subject, local) in enumerate(ds["test"].rows):
        k, s = divmod(int(local), 20)
        want = writers.known_signal(k)[:, 384 * s : 384 * (s + 1)].T
        np.testing.assert_allclose(x[i].numpy(), want, rtol=2e-3, atol=2e-2)
        assert y[i] == [0, 0, 1, 1, 1, 2][k]  # code thresholds on valence
    # per-subject test split equals the reference's train_test_split(..., random_state=29) on the segment data
    seg = baseline_removed_segments(np.asarray(deap.load_subject(tmp_path / "s01.dat")[0]))
    labels = np.repeat(quantise_labels(RATINGS, 3, "valence"), 20)
    _, ref_test, _, ref_y = train_test_split(seg, labels, test_size=0.1, stratify=labels, shuffle=True, random_state=29)
    ours = x[ds["test"].rows[:, 0] == 0].numpy().astype(np.float16)
    assert {r.tobytes() for r in ref_test.astype(np.float16)} == {r.tobytes() for r in ours}
    assert sorted(ref_y.tolist()) == sorted(y[ds["test"].rows[:, 0] == 0].tolist())
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (50, 384, 32) and yb.shape == (50,)


def test_label_options_reuse_the_cached_segments(tmp_path, writers, monkeypatch):
    writers.make_subject(tmp_path / "s03.dat", np.random.default_rng(2), RATINGS)
    calls = []
    real = deap.load_subject
    monkeypatch.setattr(deap, "load_subject", lambda p: calls.append(p) or real(p))
    kw = {"subjects": [3], "cache_dir": str(tmp_path / "c")}
    a = DEAPDataModule(str(tmp_path), **kw).dataset("test")
    b = DEAPDataModule(str(tmp_path), dimension="arousal", num_classes=2, **kw).dataset("test")
    c = DEAPDataModule(str(tmp_path), thresholds="paper", **kw).dataset("test")
    assert len(calls) == 1  # one preprocessing; labels come from the cached ratings
    assert set(b.labels.tolist()) == {0, 1} and set(a.labels.tolist()) == set(c.labels.tolist()) == {0, 1, 2}
    assert DEAPDataModule(str(tmp_path), num_classes=4, **kw).num_classes == 4
    stored = [np.load(p) for p in (tmp_path / "c").rglob("segments.npy")]
    assert stored[0].dtype == np.float16 and stored[0].shape == (TRIALS * 20, 384, 32)


def test_missing_and_corrupt_subject_files(tmp_path, writers):
    writers.make_subject(tmp_path / "s01.dat", np.random.default_rng(3), RATINGS)
    with pytest.raises(DatasetNotFoundError, match=r"s02\.dat(?s:.*)data_preprocessed_python"):
        DEAPDataModule(str(tmp_path), subjects=[1, 2]).prepare_data()
    raw = (tmp_path / "s01.dat").read_bytes()
    (tmp_path / "s01.dat").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptDataError, match=r"s01\.dat: cannot be unpickled"):
        DEAPDataModule(str(tmp_path), subjects=[1], use_cache=False).setup()
    writers.write_deap(tmp_path / "s01.dat", np.zeros((2, 40, 1000)), np.ones((2, 4)))
    with pytest.raises(CorruptDataError, match=r"'data' has shape \(2, 40, 1000\)"):
        DEAPDataModule(str(tmp_path), subjects=[1], use_cache=False).setup()
    writers.write_deap(tmp_path / "s01.dat", np.zeros((2, 40, 8064)), np.zeros((2, 4)))
    with pytest.raises(CorruptDataError, match=r"must lie in \[1, 9\]"):
        DEAPDataModule(str(tmp_path), subjects=[1], use_cache=False).setup()
    with pytest.raises(ValueError, match="dimension"):
        DEAPDataModule(str(tmp_path), dimension="dominance")

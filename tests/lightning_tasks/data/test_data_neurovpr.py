"""NeuroVPR: DVS tensor files per trajectory, 8x8 pooling, windows of 4 files, place labels, top-k metrics."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lightning_tasks.data import neurovpr
from lightning_tasks.data.base import CorruptDataError, DatasetNotFoundError
from lightning_tasks.data.neurovpr import NeuroVPRDataModule, pooled_sums, topk_accuracy, topk_metrics

SENSOR = (16, 24)  # small sensor for speed; pooled 8x8 -> (2, 3), input 2 * 2 * 3 = 12
N_FILES = 10


class NotATensor:
    """A class torch.load(weights_only=True) must refuse to unpickle."""


def kw(tmp_path, **extra):
    return {
        "train_trajectories": [1, 2],
        "val_trajectories": [3],
        "test_trajectories": [4],
        "sensor_size": SENSOR,
        "cache_dir": str(tmp_path / "c"),
        **extra,
    }


def test_paper_shapes_from_the_davis346_sensor():
    dm = NeuroVPRDataModule("unused")
    assert (dm.input_size, dm.num_classes, dm.num_steps) == (2752, 100, 20)
    x = torch.randint(0, 5, (2, 5, 260, 346)).to(torch.float32)
    ours = pooled_sums(x.numpy().astype(np.float64), 8) / 64
    ref = F.avg_pool2d(x.permute(1, 0, 2, 3), 8)  # reference: permute to (5, 2, H, W), avg_pool2d(8)
    assert ours.shape == (5, 2, 32, 43)
    np.testing.assert_allclose(ours, ref.numpy(), rtol=1e-6)


def test_windows_pooling_and_place_labels(tmp_path, writers):
    tensors = writers.make_trajectories(tmp_path, sensor=SENSOR, n_files=N_FILES)
    dm = NeuroVPRDataModule(str(tmp_path), **kw(tmp_path))
    assert (dm.input_size, dm.num_steps) == (12, 20)
    test = dm.dataset("test")
    assert len(test) == N_FILES - 4 + 1 and len(dm.dataset("train")) == 2 * 7 and len(dm.dataset("val")) == 7
    x, y = test.get_batch(np.arange(len(test)))
    assert x.shape == (7, 20, 12) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert y.tolist() == [min(int((s + 3) / 9 * 100), 99) for s in range(7)]  # label of the window's last file
    for s in (0, 4):
        want = torch.cat([F.avg_pool2d(tensors[(4, s + f)].permute(1, 0, 2, 3), 8) for f in range(4)])
        torch.testing.assert_close(x[s], want.reshape(20, 12))
    stored = [np.load(p) for p in (tmp_path / "c").rglob("frames.npy")]
    assert len(stored) == 4 and all(a.dtype == np.uint16 for a in stored)  # integer event counts: compact
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (14 if dm.batch_size > 14 else dm.batch_size, 20, 12)


def test_cache_hit_loads_no_tensor_files(tmp_path, writers, monkeypatch):
    writers.make_trajectories(tmp_path, sensor=SENSOR, n_files=N_FILES)
    calls = collections.Counter()
    real = neurovpr.load_dvs_tensor
    monkeypatch.setattr(neurovpr, "load_dvs_tensor", lambda p, *a: calls.update([p.parent.parent.name]) or real(p, *a))
    NeuroVPRDataModule(str(tmp_path), **kw(tmp_path)).setup()
    assert sum(calls.values()) == 4 * N_FILES
    NeuroVPRDataModule(str(tmp_path), **kw(tmp_path)).setup()
    assert sum(calls.values()) == 4 * N_FILES
    NeuroVPRDataModule(str(tmp_path), **kw(tmp_path, pool=4)).setup()  # new pooling -> new cache
    assert sum(calls.values()) == 8 * N_FILES


def test_topk_accuracy_hand_derived_and_torchmetrics_agree():
    logits = torch.tensor([[0.1, 0.9, 0.0, 0.2], [0.8, 0.1, 0.05, 0.3], [0.1, 0.2, 0.3, 0.4]])
    targets = torch.tensor([1, 3, 0])
    acc = topk_accuracy(logits, targets, ks=(1, 2, 4))
    assert acc == {"top1": pytest.approx(1 / 3), "top2": pytest.approx(2 / 3), "top4": pytest.approx(1.0)}
    g = torch.Generator().manual_seed(0)
    big, tgt = torch.randn(64, 100, generator=g), torch.randint(0, 100, (64,), generator=g)
    metrics = topk_metrics(100)
    out = {k: v.item() for k, v in metrics(big, tgt).items()}
    assert out == pytest.approx(topk_accuracy(big, tgt))


def test_missing_and_corrupt_tensor_files(tmp_path, writers):
    writers.make_trajectories(tmp_path, ids=(1, 2, 4), sensor=SENSOR, n_files=N_FILES)
    with pytest.raises(DatasetNotFoundError, match=r"room_v3/dvs_5ms_5seq/\*\.pth(?s:.*)zenodo\.7825811"):
        NeuroVPRDataModule(str(tmp_path), **kw(tmp_path)).prepare_data()
    writers.make_trajectories(tmp_path, ids=(3,), sensor=SENSOR, n_files=N_FILES)
    folder = tmp_path / "room_v3" / "dvs_5ms_5seq"
    victim = sorted(folder.iterdir())[2]
    raw = victim.read_bytes()
    victim.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CorruptDataError, match=rf"{victim.name}: cannot be loaded"):
        NeuroVPRDataModule(str(tmp_path), **kw(tmp_path, use_cache=False)).setup()
    torch.save(torch.zeros(2, 5, 8, 8), victim)
    with pytest.raises(CorruptDataError, match=r"tensor shape \(2, 5, 8, 8\), expected \(2, 5, 16, 24\)"):
        NeuroVPRDataModule(str(tmp_path), **kw(tmp_path, use_cache=False)).setup()
    torch.save({"a": torch.zeros(1)}, victim)
    with pytest.raises(CorruptDataError, match=rf"{victim.name}: expected a torch.Tensor"):
        NeuroVPRDataModule(str(tmp_path), **kw(tmp_path, use_cache=False)).setup()
    torch.save(NotATensor(), victim)  # a pickled class outside torch's allowlist: weights_only refuses it
    with pytest.raises(CorruptDataError, match=rf"{victim.name}: cannot be loaded"):
        NeuroVPRDataModule(str(tmp_path), **kw(tmp_path, use_cache=False)).setup()
    with pytest.raises(ValueError, match="disjoint"):
        NeuroVPRDataModule(str(tmp_path), train_trajectories=[1, 4], test_trajectories=[4])

"""GSC v1: folder/list layout, 12-class labels, silence crops, log-mel + delta features, batch normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch
from torch.utils.data import WeightedRandomSampler

from lightning_tasks.data import gsc
from lightning_tasks.data.base import CorruptDataError, DatasetNotFoundError
from lightning_tasks.data.gsc import CLASSES, GSCDataModule, log_mel_deltas, pad_center, silence_crops

NOISE_SECONDS = 12


def independent_features(wav: np.ndarray) -> np.ndarray:
    """Second implementation: numpy STFT (Hann, centred, zero padding) + mel matrix + Savitzky-Golay deltas."""
    import librosa

    wav = wav / np.max(np.abs(wav))
    padded = np.pad(wav, 240)
    frames = np.stack([padded[i * 160 : i * 160 + 480] for i in range(101)])
    spec = np.abs(np.fft.rfft(frames * scipy.signal.get_window("hann", 480), axis=1)) ** 2  # (101, 241)
    mel = librosa.filters.mel(sr=16000, n_fft=480, n_mels=40, fmin=20, fmax=4000)
    S = (spec @ mel.T).T  # (40, 101)
    feat = np.log1p(S / S.max())
    d1 = scipy.signal.savgol_filter(feat, 9, polyorder=1, deriv=1, axis=-1, mode="interp")
    d2 = scipy.signal.savgol_filter(feat, 9, polyorder=2, deriv=2, axis=-1, mode="interp")
    stack = np.stack([feat.T, d1.T, d2.T])
    return stack / stack.std(axis=1, keepdims=True)


def test_pad_center_puts_half_the_padding_in_front():
    np.testing.assert_array_equal(pad_center(np.ones(5), 10), [0, 0, 1, 1, 1, 1, 1, 0, 0, 0])
    with pytest.raises(CorruptDataError, match="longer than"):
        pad_center(np.ones(11), 10)


def test_features_match_independent_implementation():
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    wav = np.sin(2 * np.pi * 700 * t) * np.hanning(16000) + 0.05 * rng.standard_normal(16000)
    ours = log_mel_deltas(wav)
    assert ours.shape == (3, 101, 40)
    np.testing.assert_allclose(ours, independent_features(wav), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours.std(axis=1), 1.0, rtol=1e-9)  # per-(order, mel) rescale over time


def test_datamodule_layout_labels_splits_and_batches(tmp_path, writers):
    rng = np.random.default_rng(1)
    root = writers.make_gsc(tmp_path / "gsc", rng, NOISE_SECONDS)
    dm = GSCDataModule(str(root), silence_counts=(4, 2, 3), batch_size=8, cache_dir=str(tmp_path / "c"))
    assert (dm.input_size, dm.num_classes, dm.num_steps) == (120, 12, 101)
    splits = dm.file_splits()
    assert [len(splits[s]) for s in ("train", "val", "test")] == [11, 11, 11]
    assert {rel.split("/")[0]: lab for rel, lab in splits["val"]} == {
        **{w: i for i, w in enumerate(gsc.WORDS)},
        "bed": 11,
    }
    assert all(rel.split("_")[-1] == "1.wav" for rel, _ in splits["val"])  # validation_list.txt honoured
    ds = {s: dm.dataset(s) for s in ("train", "val", "test")}
    assert [len(ds[s]) for s in ds] == [15, 13, 14]  # + silence crops
    assert (ds["test"].labels == CLASSES.index("_silence_")).sum() == 3
    x, y = ds["val"].get_batch(np.arange(13))
    assert x.shape == (13, 101, 120) and x.dtype == torch.float32 and y.dtype == torch.int64
    # batch normalisation: stored (3, 101, 40) features / std over (batch, time) per (order, mel), order-major
    f = torch.from_numpy(np.asarray(ds["val"].features, dtype=np.float32))
    want = f / f.std(dim=(0, 2), keepdim=True, unbiased=False)
    torch.testing.assert_close(x, want.permute(0, 2, 1, 3).reshape(13, 101, 120))
    # stored features equal the independent pipeline on the padded wav (float16 storage precision)
    rel, _ = splits["val"][0]
    wav, _ = sf.read(str(root / rel), dtype="float64")
    np.testing.assert_allclose(
        np.asarray(ds["val"].features[0], np.float64), independent_features(pad_center(wav)), rtol=2e-3, atol=2e-3
    )
    sampler = dm.train_sampler(ds["train"])
    assert isinstance(sampler, WeightedRandomSampler) and sampler.num_samples == 15
    w = sampler.weights.numpy()
    per_class = np.bincount(ds["train"].labels, weights=w, minlength=12)
    np.testing.assert_allclose(per_class, per_class[0])  # every class equally likely
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (8, 101, 120) and yb.shape == (8,)


def test_silence_crops_come_from_disjoint_regions(tmp_path, writers):
    rng = np.random.default_rng(2)
    noise = [writers.write_wav(tmp_path / f"n{i}.wav", rng.standard_normal(NOISE_SECONDS * 16000)) for i in range(2)]
    n = NOISE_SECONDS * 16000
    bounds = {"train": (0, int(0.8 * n)), "val": (int(0.8 * n), int(0.9 * n)), "test": (int(0.9 * n), n)}
    for split, (lo, hi) in bounds.items():
        crops = silence_crops(noise, split, 50, seed=0)
        assert len(crops) == 50 and {p for p, _ in crops} == {str(p) for p in noise}
        assert all(lo <= off and off + 16000 <= hi for _, off in crops)
    assert silence_crops(noise, "val", 5, 0) == silence_crops(noise, "val", 5, 0) != silence_crops(noise, "val", 5, 1)


def test_cache_hit_skips_feature_extraction(tmp_path, writers, monkeypatch):
    root = writers.make_gsc(tmp_path / "gsc", np.random.default_rng(3), NOISE_SECONDS)
    calls = []
    real = gsc._features_of_file
    monkeypatch.setattr(gsc, "_features_of_file", lambda p: calls.append(p) or real(p))
    kw = {"silence_counts": (1, 1, 1), "cache_dir": str(tmp_path / "c")}
    a = GSCDataModule(str(root), **kw).dataset("test")
    assert len(calls) == 33
    b = GSCDataModule(str(root), **kw).dataset("test")
    assert len(calls) == 33
    np.testing.assert_array_equal(a.features, b.features)
    GSCDataModule(str(root), **{**kw, "silence_counts": (1, 1, 2)}).dataset("test")
    assert len(calls) == 33 + 11  # only the test split's settings changed


def test_missing_layout_and_corrupt_wav_errors(tmp_path, writers):
    root = writers.make_gsc(tmp_path / "gsc", np.random.default_rng(4), NOISE_SECONDS)
    (root / "testing_list.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"testing_list\.txt(?s:.*)speech_commands_v0\.01"):
        GSCDataModule(str(root)).prepare_data()
    (root / "testing_list.txt").write_text("yes/missing_nohash_0.wav\n")
    with pytest.raises(DatasetNotFoundError, match=r"yes/missing_nohash_0\.wav \(listed in testing_list\.txt\)"):
        GSCDataModule(str(root), use_cache=False).setup()
    (root / "testing_list.txt").write_text("")
    bad = root / "no" / "00bad_nohash_0.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    with pytest.raises(CorruptDataError, match=r"00bad_nohash_0\.wav: cannot be read as a wav"):
        GSCDataModule(str(root), use_cache=False, silence_counts=(0, 0, 0)).setup()
    writers.write_wav(bad, np.zeros(8000), rate=8000)
    with pytest.raises(CorruptDataError, match="sample rate 8000"):
        GSCDataModule(str(root), use_cache=False, silence_counts=(0, 0, 0)).setup()

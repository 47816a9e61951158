"""S-MNIST / PS-MNIST: IDX parsing (plain and gzip), normalisation, permutation, split, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_tasks.data.base import CorruptDataError, DatasetNotFoundError
from lightning_tasks.data.mnist import SequentialMNISTDataModule, permutation, read_idx


def test_idx_header_magic_numbers(tmp_path, writers):
    p = writers.write_idx(tmp_path / "x-idx3-ubyte", np.zeros((2, 28, 28), dtype=np.uint8))
    raw = p.read_bytes()
    assert int.from_bytes(raw[:4], "big") == 2051 and int.from_bytes(raw[4:8], "big") == 2
    assert read_idx(p, 3).shape == (2, 28, 28)
    q = writers.write_idx(tmp_path / "y-idx1-ubyte", np.arange(3))
    assert int.from_bytes(q.read_bytes()[:4], "big") == 2049
    np.testing.assert_array_equal(read_idx(q, 1), [0, 1, 2])


@pytest.mark.parametrize("compress", [False, True])
def test_sequences_are_normalised_pixels_in_row_major_order(tmp_path, writers, compress):
    _, _, te_x, te_y = writers.make_mnist(tmp_path, compress=compress)
    dm = SequentialMNISTDataModule(str(tmp_path))
    assert (dm.input_size, dm.num_classes, dm.num_steps) == (1, 10, 784)
    x, y = dm.dataset("test").get_batch(np.arange(20))
    assert x.shape == (20, 784, 1) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert y.tolist() == te_y.tolist()
    # hand-derived: step 28*r + c holds pixel (r, c) as (p / 255 - 0.1307) / 0.3081
    assert x[3, 28 * 5 + 7, 0].item() == pytest.approx((te_x[3, 5, 7] / 255 - 0.1307) / 0.3081, abs=1e-6)
    torch.testing.assert_close(x[:, :, 0], torch.from_numpy((te_x.reshape(20, 784) / 255 - 0.1307) / 0.3081).float())


def test_permuted_uses_fixed_seeded_permutation(tmp_path, writers):
    writers.make_mnist(tmp_path)
    plain = SequentialMNISTDataModule(str(tmp_path)).dataset("test").get_batch(np.arange(4))[0]
    dm = SequentialMNISTDataModule(str(tmp_path), permuted=True)
    perm = dm.perm
    assert sorted(perm.tolist()) == list(range(784)) and perm.tolist() != list(range(784))
    torch.manual_seed(0)
    assert perm.tolist() == torch.randperm(784).tolist()  # the reference's draw after torch.manual_seed(0)
    permuted = dm.dataset("test").get_batch(np.arange(4))[0]
    torch.testing.assert_close(permuted, plain[:, perm])
    assert SequentialMNISTDataModule(str(tmp_path), permuted=True).perm.tolist() == perm.tolist()
    assert permutation(1).tolist() != perm.tolist()


def test_validation_is_a_stratified_holdout_of_train(tmp_path, writers):
    tr_x, tr_y, _, _ = writers.make_mnist(tmp_path)
    dm = SequentialMNISTDataModule(str(tmp_path), val_fraction=0.2, batch_size=32)
    tr, va = dm.dataset("train"), dm.dataset("val")
    assert len(tr) == 80 and len(va) == 20
    assert np.bincount(va.labels).tolist() == [2] * 10
    rows = {r.tobytes() for r in np.concatenate([tr.pixels, va.pixels])}
    assert len(rows) == 100 and {r.tobytes() for r in tr.pixels}.isdisjoint({r.tobytes() for r in va.pixels})
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (32, 784, 1) and yb.shape == (32,)


def test_missing_truncated_and_wrong_magic(tmp_path, writers):
    with pytest.raises(DatasetNotFoundError, match=r"train-images-idx3-ubyte(?s:.*)yann\.lecun"):
        SequentialMNISTDataModule(str(tmp_path)).prepare_data()
    writers.make_mnist(tmp_path)
    p = tmp_path / "t10k-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(CorruptDataError, match=r"t10k-images-idx3-ubyte: .* truncated or corrupt"):
        SequentialMNISTDataModule(str(tmp_path)).setup()
    writers.write_idx(p, np.zeros(20, dtype=np.uint8))  # a labels file (magic 2049) where images belong
    with pytest.raises(CorruptDataError, match=r"1 dimensions, expected 3 \(magic 2051\)"):
        SequentialMNISTDataModule(str(tmp_path)).setup()
    g = writers.write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(20), compress=True)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    g.write_bytes(g.read_bytes()[:10])
    writers.make_mnist(tmp_path / "x")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes((tmp_path / "x" / "t10k-images-idx3-ubyte").read_bytes())
    with pytest.raises(CorruptDataError, match=r"t10k-labels-idx1-ubyte\.gz: cannot be read"):
        SequentialMNISTDataModule(str(tmp_path)).setup()

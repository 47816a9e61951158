"""Fixed-point Lava models: bit-exact against an integer NumPy reference, close to floating point; runner errors."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from lava_export import LavaRunError, LavaTimeoutError, quantize_block, run_network
from lava_export.quantize import QuantizedMatrix, quantize_weights
from lava_export.runner import run_job, write_job
from nir_bridge.patterns import Block
from tests.lava_export.lava_export_helpers import fixed_reference, random_spikes


def _blocks(seed=0):
    """DH-SRNN (3 branches, subtract) -> vanilla LIF (zero reset) -> leaky readout, with lively random weights."""
    rng = np.random.default_rng(seed)
    m, n, d, n2, k = 10, 8, 3, 6, 2
    cols = m + n
    mask = np.zeros((n * d, cols), bool)
    for j in range(n):
        mask[j * d + rng.integers(0, d, cols), np.arange(cols)] = True
    w = np.abs(rng.normal(0.45, 0.3, mask.shape)) * np.where(rng.random(mask.shape) < 0.2, -1, 1) * mask
    dh = Block(
        "dhlif", m, n, d, True, w, mask, rng.normal(0, 0.05, n * d), True, rng.uniform(0.3, 0.95, (n, d)),
        rng.uniform(0.5, 0.95, n), np.ones(n), "subtract", 1e-3, name="dh",
    )  # fmt: skip
    w2 = np.abs(rng.normal(0.5, 0.3, (n2, n)))
    van = Block(
        "vanilla_lif", n, n2, 1, False, w2, np.ones(w2.shape, bool), np.zeros(n2), True, None,
        rng.uniform(0.5, 0.9, n2), np.full(n2, 0.8), "zero", 1e-3, name="lif",
    )  # fmt: skip
    w3 = rng.normal(0, 1, (k, n2))
    ro = Block(
        "leaky_readout", n2, k, 1, False, w3, np.ones(w3.shape, bool), np.array([0.1, -0.1]), True, None,
        np.array([0.8, 0.6]), None, None, 1e-3, name="out",
    )  # fmt: skip
    return [dh, van, ro]


def test_fixed_point_is_bit_exact_and_close_to_float():
    blocks = _blocks()
    x = random_spikes(3, 60, 10, 0.3, seed=1)
    fixed = run_network(blocks, x, "fixed_pt", timeout=120)
    qblocks = [quantize_block(b, warn=False) for b in blocks]
    spikes, raw = fixed_reference(blocks, qblocks, x)
    for layer, (want, got) in enumerate(zip(spikes, fixed.layer_spikes)):
        assert want.sum() >= 20, f"layer {layer} too silent"
        np.testing.assert_array_equal(got, want, err_msg=f"layer {layer}")
    np.testing.assert_array_equal(fixed.readout_raw, raw)
    np.testing.assert_allclose(fixed.readout, raw / (qblocks[-1].scale * 64))

    flt = run_network(blocks, x, "floating_pt", timeout=120)
    agreement = [float(np.mean(a == b)) for a, b in zip(fixed.layer_spikes, flt.layer_spikes)]
    print(f"fixed vs float spike agreement per layer: {agreement}")
    assert min(agreement) >= 0.9
    counts = [(int(a.sum()), int(b.sum())) for a, b in zip(fixed.layer_spikes, flt.layer_spikes)]
    assert all(abs(a - b) <= 0.15 * b for a, b in counts), counts


def _two_timescale_blocks(seed=0):
    """A DH-SRNN whose slow branch 0 (a ~ 0.99) has weights ~25x those of its fast branch 1 (as a trained DH-LIF's
    normalised input gain makes them), then a linear readout."""
    rng = np.random.default_rng(seed)
    m, n, d = 12, 6, 2
    cols = m + n
    mask = np.zeros((n * d, cols), bool)
    branch = np.r_[np.zeros(m // 2, int), np.ones(m - m // 2, int), rng.integers(0, d, n)]  # inputs 0-5 -> slow
    for j in range(n):
        mask[j * d + branch, np.arange(cols)] = True
    w = rng.normal(0.3, 0.5, mask.shape) * mask
    w[0::d] *= 25.0  # the slow branch integrates rare spikes (see the input rates in the test)
    decay = np.stack([rng.uniform(0.985, 0.995, n), rng.uniform(0.2, 0.6, n)], 1)
    dh = Block(
        "dhlif", m, n, d, True, w, mask, np.zeros(n * d), False, decay, rng.uniform(0.3, 0.8, n), np.full(n, 0.6),
        "subtract", 1e-3, name="dh",
    )  # fmt: skip
    w2 = rng.normal(0, 1, (2, n))
    ro = Block(
        "linear", n, 2, 1, False, w2, np.ones(w2.shape, bool), np.array([0.1, -0.1]), True, None, None, None, None,
        1e-3, name="out",
    )  # fmt: skip
    return [dh, ro]


def test_branches_with_different_exponents_run_as_several_sparse_processes():
    """Per-branch exponents: the DH-LIF matrices split into Sparse processes on one port, bit-exact against the
    integer reference, and closer to floating point than one shared exponent."""
    blocks = _two_timescale_blocks()
    qblocks = [quantize_block(b, warn=False) for b in blocks]
    assert len(qblocks[0].weight.parts) == 2 and len(qblocks[0].rec_weight.parts) == 2
    assert qblocks[0].weight.exps[1] < qblocks[0].weight.exps[0]
    x = random_spikes(4, 80, 12, 0.3, seed=4)
    x[:, :, :6] &= random_spikes(4, 80, 6, 0.1, seed=5)  # slow-branch inputs at rate 0.03
    fixed = run_network(blocks, x, "fixed_pt", timeout=120)
    spikes, raw = fixed_reference(blocks, qblocks, x)
    assert spikes[0].sum() >= 50
    np.testing.assert_array_equal(fixed.layer_spikes[0], spikes[0])
    np.testing.assert_array_equal(fixed.readout_raw, raw)

    flt = run_network(blocks, x, "floating_pt", timeout=120)
    shared = dataclasses.replace(
        qblocks[0],
        weight=QuantizedMatrix([quantize_weights(blocks[0].weight[:, :12], qblocks[0].scale)]),
        rec_weight=QuantizedMatrix([quantize_weights(blocks[0].weight[:, 12:], qblocks[0].scale)]),
    )
    old, _ = fixed_reference(blocks, [shared, qblocks[1]], x)
    split_agree = float(np.mean(spikes[0] == flt.layer_spikes[0]))
    shared_agree = float(np.mean(old[0] == flt.layer_spikes[0]))
    print(f"float/fixed spike agreement: per-branch exponents {split_agree:.4f}, one exponent {shared_agree:.4f}")
    assert split_agree >= 0.95 and split_agree > shared_agree


def test_timeout_kills_the_worker():
    x = random_spikes(1, 20, 10, 0.3, seed=2)
    with pytest.raises(LavaTimeoutError, match=r"did not finish within 0.2 s"):
        run_network(_blocks(), x, timeout=0.2)


def test_failure_inside_a_lava_process_is_reported_not_hung(tmp_path):
    """A ProcessModel that raises (here: its record path is a directory) stops the run with its traceback."""
    blocks = _blocks()
    write_job(tmp_path, blocks, random_spikes(1, 10, 10, 0.3, seed=3), "floating_pt", None)
    os.makedirs(tmp_path / "records" / "00_dh.npy")
    with pytest.raises(LavaRunError, match=r"(?s)process model raised.*IsADirectoryError"):
        run_job(tmp_path, timeout=120)


def test_worker_error_is_reported(tmp_path):
    (tmp_path / "job.pkl").write_bytes(b"not a pickle")
    with pytest.raises(LavaRunError, match=r"(?s)exit status 1.*UnpicklingError"):
        run_job(tmp_path, timeout=60)


def test_runs_after_torch_threads_and_a_spawn_start_method(tmp_path):
    """Lava forces ``fork``; the worker process keeps it away from a caller that already set ``spawn`` (as
    Lightning may) and runs torch's thread pool."""
    import pickle
    import subprocess
    import sys

    blocks = _blocks()
    (tmp_path / "blocks.pkl").write_bytes(pickle.dumps(blocks))
    code = (
        "import multiprocessing as mp, pickle, sys, numpy as np, torch\n"
        "mp.set_start_method('spawn')\n"
        "torch.set_num_threads(2); torch.ones(256, 256) @ torch.ones(256, 256)\n"
        "from lava_export import run_network\n"
        f"blocks = pickle.load(open({str(tmp_path / 'blocks.pkl')!r}, 'rb'))\n"
        "x = (np.random.default_rng(0).random((2, 20, 10)) < 0.3).astype(np.uint8)\n"
        "r = run_network(blocks, x, timeout=120)\n"
        "assert mp.get_start_method() == 'spawn'\n"
        "print('spikes', int(r.output_spikes.sum()), r.readout.shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "spikes" in out.stdout and "(2, 20, 2)" in out.stdout

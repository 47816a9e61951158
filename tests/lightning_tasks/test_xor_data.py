"""The spiking XOR generators and data modules follow dhsnn.md §7.1/§7.2 step by step and channel by channel."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_tasks.data.xor import (
    IGNORE_INDEX,
    DelayedXORDataModule,
    EpochBatchSampler,
    MultiTimescaleXORDataModule,
    delayed_xor,
    multitimescale_xor,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_delayed_xor_shapes_dtypes_and_scored_steps():
    x, y = delayed_xor(8, gen())
    assert x.shape == (8, 200, 20) and x.dtype == torch.float32
    assert y.shape == (8, 200) and y.dtype == torch.int64
    scored = (y[0] != IGNORE_INDEX).nonzero().flatten().tolist()
    assert scored == list(range(191, 200))  # reference: i > T - (pos + 1) * coding_time = 190
    assert ((y == IGNORE_INDEX).all(0) == (torch.arange(200) <= 190)).all()
    assert set(x.unique().tolist()) <= {0.0, 1.0}


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), time_steps=st.integers(20, 120), coding=st.integers(1, 10))
def test_delayed_xor_label_is_xor_of_the_two_pattern_rates(seed, time_steps, coding):
    # Without noise and with rates 0/1 a pattern window is all-zero (low) or all-one (high): the label is checkable.
    if time_steps < 2 * coding:
        return
    x, y = delayed_xor(16, gen(seed), time_steps, 5, (0.0, 1.0), 0.0, coding)
    first = x[:, :coding].mean((1, 2))
    second = x[:, time_steps - coding :].mean((1, 2))
    assert set(first.tolist()) <= {0.0, 1.0} and set(second.tolist()) <= {0.0, 1.0}
    assert x[:, coding : time_steps - coding].sum() == 0  # silent delay
    expected = (first.long() ^ second.long()).unsqueeze(1).expand(-1, coding - 1)
    assert torch.equal(y[:, time_steps - coding + 1 :], expected)


def test_multitimescale_xor_layout_matches_reference():
    x, y = multitimescale_xor(32, gen(1), noise_rate=0.0, channel_rate=(0.0, 1.0))
    assert x.shape == (32, 100, 40) and y.shape == (32, 100)
    # Scored steps: i > 10 and (i - 10) % 15 > 5 -> 6 patterns x 9 steps.
    expected_scored = [i for i in range(100) if i > 10 and (i - 10) % 15 > 5]
    assert (y[0] != IGNORE_INDEX).nonzero().flatten().tolist() == expected_scored and len(expected_scored) == 54
    signal1 = x[:, :10, :20].mean((1, 2))
    assert x[:, 10:, :20].sum() == 0 and x[:, :10, 20:].sum() == 0
    for k in range(6):
        on = slice(10 + 15 * k + 5, 10 + 15 * (k + 1))
        silent = slice(10 + 15 * k, 10 + 15 * k + 5)
        assert x[:, silent, 20:].sum() == 0
        signal2 = x[:, on, 20:].mean((1, 2))
        assert set(signal2.tolist()) <= {0.0, 1.0}
        label = (signal1.long() ^ signal2.long()).unsqueeze(1)
        steps = y[:, 10 + 15 * k + 6 : 10 + 15 * (k + 1)]
        assert torch.equal(steps, label.expand_as(steps))


def test_spike_rates_match_the_configured_rates():
    x, _ = delayed_xor(4000, gen(2), time_steps=40, channel_size=20)
    window = x[:, :10]  # rate 0.2 or 0.6 each, OR-ed with 1% noise: mean 0.4 + small noise contribution
    per_sample = window.mean((1, 2))
    low, high = per_sample[per_sample < 0.4], per_sample[per_sample >= 0.4]
    p_low, p_high = 1 - 0.8 * 0.99, 1 - 0.4 * 0.99  # P(spike) = 1 - (1 - rate)(1 - noise)
    assert abs(low.mean().item() - p_low) < 0.01 and abs(high.mean().item() - p_high) < 0.01
    assert abs(x[:, 10:30].mean().item() - 0.01) < 0.002  # background noise
    assert abs(len(low) / len(per_sample) - 0.5) < 0.05


def test_data_module_contract_attributes_and_batches():
    dm = DelayedXORDataModule(time_steps=60, batch_size=4, batches_per_epoch=3, val_size=10, test_size=6)
    assert (dm.input_size, dm.num_classes, dm.num_steps, dm.delay) == (20, 2, 60, 40)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 3
    x, y = batches[0]
    assert x.shape == (4, 60, 20) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(dm.val_dataloader().dataset) == 10
    mt = MultiTimescaleXORDataModule(batch_size=2, batches_per_epoch=1, val_size=2, test_size=2)
    assert (mt.input_size, mt.num_classes, mt.num_steps, mt.num_patterns) == (40, 2, 100, 6)


def test_deterministic_per_seed_fresh_per_epoch_fixed_eval_sets():
    def make(seed):
        return DelayedXORDataModule(
            time_steps=30, batch_size=4, batches_per_epoch=2, val_size=8, test_size=8, seed=seed
        )

    a, b, c = make(0), make(0), make(1)
    loader_a, loader_b = a.train_dataloader(), b.train_dataloader()
    epoch0 = [x for x, _ in loader_a]
    assert all(torch.equal(p, q) for p, (q, _) in zip(epoch0, loader_b))
    loader_a.sampler.set_epoch(1)
    epoch1 = [x for x, _ in loader_a]
    assert not torch.equal(epoch0[0], epoch1[0])  # fresh data every epoch
    assert not torch.equal(epoch0[0], epoch0[1])
    assert torch.equal(a.fixed_split("val").tensors[0], b.fixed_split("val").tensors[0])
    assert not torch.equal(a.fixed_split("val").tensors[0], a.fixed_split("test").tensors[0])
    assert not torch.equal(a.fixed_split("test").tensors[0], c.fixed_split("test").tensors[0])


def test_delay_and_rates_are_configurable_and_checked():
    dm = DelayedXORDataModule(delay=50, coding_time=5)
    assert dm.num_steps == 60 and dm.delay == 50
    with pytest.raises(ValueError, match="delay"):
        DelayedXORDataModule(delay=-1)
    with pytest.raises(ValueError, match="time_steps"):
        DelayedXORDataModule(time_steps=15)
    with pytest.raises(ValueError, match="channel_rate"):
        DelayedXORDataModule(channel_rate=(0.2, 1.5))
    with pytest.raises(ValueError, match="time_steps"):
        MultiTimescaleXORDataModule(time_steps=20)
    x, _ = delayed_xor(2000, gen(3), time_steps=20, channel_rate=(0.0, 0.3), noise_rate=0.0)
    rates = x[:, :10].mean((1, 2))
    assert abs(rates[rates > 0].mean().item() - 0.3) < 0.01


def test_epoch_sampler_partitions_batches_across_ranks():
    samplers = [EpochBatchSampler(7, num_replicas=3, rank=r) for r in range(3)]
    for s in samplers:
        s.set_epoch(4)
    keys = [k for s in samplers for k in s]
    assert sorted(keys) == [(4, i) for i in range(7)]
    assert [len(s) for s in samplers] == [3, 2, 2]

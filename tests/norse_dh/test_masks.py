"""Dendritic connection masks (dhsnn.md §3): coverage, sharing, determinism, errors."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from norse_dh.masks import dendritic_mask, padded_width

sizes = st.tuples(st.integers(1, 40), st.integers(1, 20), st.integers(1, 6))


@given(sizes, st.integers(0, 1000))
def test_random_mask_puts_each_input_on_exactly_one_branch(shape, seed):
    m, n, d = shape
    mask = dendritic_mask(m, n, d, "random", seed=seed)
    width = padded_width(m, d)
    assert mask.shape == (n * d, width) and width % d == 0 and 0 <= width - m < d
    per_neuron = mask.view(n, d, width)
    assert torch.equal(per_neuron.sum(1), torch.ones(n, width, dtype=torch.long))  # one branch per input
    assert torch.equal(per_neuron.sum(2), torch.full((n, d), width // d))  # equal branch sizes


@given(sizes, st.integers(1, 9), st.integers(0, 1000))
def test_grouped_mask_shares_patterns_within_groups(shape, group, seed):
    m, n, d = shape
    mask = dendritic_mask(m, n, d, "grouped", group_size=group, seed=seed).view(n, d, -1)
    assert torch.equal(mask.sum(1), torch.ones(n, mask.shape[-1], dtype=torch.long))
    for start in range(0, n, group):
        block = mask[start : start + group]
        assert torch.equal(block, block[:1].expand_as(block))


def test_grouped_groups_differ_and_random_neurons_differ():
    grouped = dendritic_mask(100, 64, 4, "grouped", group_size=32, seed=1).view(64, 4, -1)
    assert not torch.equal(grouped[0], grouped[32])
    rand = dendritic_mask(100, 8, 4, "random", seed=1).view(8, 4, -1)
    assert len({tuple(r.flatten().tolist()) for r in rand}) == 8


@given(sizes, st.integers(0, 100))
def test_same_seed_same_mask(shape, seed):
    m, n, d = shape
    assert torch.equal(dendritic_mask(m, n, d, seed=seed), dendritic_mask(m, n, d, seed=seed))


def test_contiguous_mask_is_the_xor_block_layout():
    mask = dendritic_mask(40, 3, 2, "contiguous").view(3, 2, 40)
    expected = torch.zeros(2, 40, dtype=torch.bool)
    expected[0, :20] = True  # Signal 1 -> branch 0
    expected[1, 20:] = True  # Signal 2 -> branch 1
    assert all(torch.equal(mask[n], expected) for n in range(3))


def test_full_mask_connects_every_real_input_to_every_branch():
    mask = dendritic_mask(7, 2, 3, "full")
    assert mask.shape == (6, 9) and mask[:, :7].all() and not mask[:, 7:].any()


@given(st.integers(4, 30), st.integers(1, 4), st.floats(0.05, 1.0))
def test_sparsity_wraps_around_the_whole_permutation(m, d, sparsity):
    width = padded_width(m, d)
    mask = dendritic_mask(m, 3, d, "random", seed=0, sparsity=sparsity).view(3, d, width)
    take = int(width * sparsity)
    assert torch.equal(mask.sum(2), torch.full((3, d), take))
    if take * d >= width:  # overlapping branches must still jointly cover every input (the reference drops one)
        assert mask.any(1).all()


def test_custom_mask_is_padded_and_validated():
    custom = torch.zeros(2 * 2, 3, dtype=torch.bool)
    custom[0::2, :2] = True
    custom[1::2, 2] = True
    mask = dendritic_mask(3, 2, 2, custom)
    assert mask.shape == (4, 4) and not mask[:, 3].any()
    with pytest.raises(ValueError, match=r"shape \(4, 3\) or \(4, 4\)"):
        dendritic_mask(3, 2, 2, torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool tensor"):
        dendritic_mask(3, 2, 2, torch.ones(4, 3))
    uncovered = custom.clone()
    uncovered[:, 2] = False
    with pytest.raises(ValueError, match="input 2 unconnected"):
        dendritic_mask(3, 2, 2, uncovered)
    assert dendritic_mask(3, 2, 2, uncovered, require_coverage=False).sum() == 4  # 2 neurons x 2 inputs


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(in_features=3, out_features=2, branches=0), "branches must be a positive int"),
        (dict(in_features=0, out_features=2, branches=1), "in_features must be a positive int"),
        (dict(in_features=3, out_features=2, branches=1, mode="diagonal"), "mask mode must be one of"),
        (dict(in_features=3, out_features=2, branches=1, sparsity=1.5), r"sparsity must be in \(0, 1\]"),
        (dict(in_features=3, out_features=2, branches=1, mode="grouped", group_size=0), "group_size"),
    ],
)
def test_bad_mask_arguments_name_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dendritic_mask(**kwargs)

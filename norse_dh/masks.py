"""Dendritic connection masks: which input reaches which branch of which neuron.

A mask is a boolean tensor of shape ``(N * D, M + pad)`` with rows neuron-major (``row = n * D + d``, the layout of
the reference Linear whose output is reshaped to ``(B, N, D)``) and ``pad = (-M) % D`` zero columns so that the
padded width divides into D equal branches (reference layout, kept for checkpoint compatibility). Padding columns
carry no input; they only decide which branches get one slot fewer.

Modes:

- ``"random"``: per neuron, a seeded random permutation of the ``M + pad`` columns split into D equal parts; every
  input reaches exactly one branch of each neuron.
- ``"grouped"``: hardware variant (TianjicX); groups of ``group_size`` consecutive neurons share one permutation, so
  branch d of the whole group reads the same inputs. A trailing partial group gets its own shared permutation (the
  reference leaves those neurons unconnected).
- ``"contiguous"``: branch d reads the contiguous block ``[d (M+pad)/D, (d+1) (M+pad)/D)`` (the XOR tasks).
- ``"full"``: every input reaches every branch (padding columns stay disabled).
- a user-given boolean tensor of shape ``(N*D, M+pad)`` or ``(N*D, M)`` (then zero-padded); by default every input
  must reach at least one branch of each neuron (``require_coverage``).

``sparsity`` (SI Fig. S10) lets each branch take ``int((M+pad) * sparsity)`` inputs starting at its offset in the
permutation, wrapping around the whole permutation (the reference drops one input at the wrap; fixed here).
"""

from __future__ import annotations

import torch
from torch import Tensor

MASK_MODES = ("random", "grouped", "contiguous", "full")


def padded_width(in_features: int, branches: int) -> int:
    """``M + pad`` with ``pad = (-M) % D`` so that the width is a multiple of D."""
    return in_features + (-in_features) % branches


def _branch_rows(perm: Tensor, branches: int, width: int, sparsity: float | None) -> Tensor:
    """Rows ``(D, width)`` for one neuron from a column permutation."""
    rows = torch.zeros(branches, width, dtype=torch.bool)
    part = width // branches
    take = part if sparsity is None else int(width * sparsity)
    for d in range(branches):
        idx = (torch.arange(take) + d * part) % width  # wraps around the whole permutation
        rows[d, perm[idx]] = True
    return rows


def dendritic_mask(
    in_features: int,
    out_features: int,
    branches: int,
    mode: str | Tensor = "random",
    group_size: int = 32,
    seed: int | None = 0,
    sparsity: float | None = None,
    require_coverage: bool = True,
) -> Tensor:
    """Build a ``(out_features * branches, padded_width)`` boolean dendritic mask (see the module docstring)."""
    for name, value in (("in_features", in_features), ("out_features", out_features), ("branches", branches)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    width = padded_width(in_features, branches)
    rows = out_features * branches
    if isinstance(mode, Tensor):
        return _check_custom_mask(mode, rows, out_features, in_features, width, require_coverage)
    if mode not in MASK_MODES:
        raise ValueError(f"mask mode must be one of {MASK_MODES} or a bool tensor, got {mode!r}")
    if sparsity is not None and not 0.0 < sparsity <= 1.0:
        raise ValueError(f"sparsity must be in (0, 1], got {sparsity!r}")
    if mode == "full":
        full = torch.zeros(rows, width, dtype=torch.bool)
        full[:, :in_features] = True  # padding columns never carry input: leave them out
        return full
    if mode == "contiguous":
        block = _branch_rows(torch.arange(width), branches, width, sparsity)
        return block.repeat(out_features, 1)
    if mode == "grouped" and (not isinstance(group_size, int) or group_size < 1):
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    share = group_size if mode == "grouped" else 1
    out = torch.empty(out_features, branches, width, dtype=torch.bool)
    for start in range(0, out_features, share):
        perm = torch.randperm(width, generator=gen)
        out[start : start + share] = _branch_rows(perm, branches, width, sparsity)
    return out.reshape(rows, width)


def _check_custom_mask(
    mask: Tensor, rows: int, out_features: int, in_features: int, width: int, require_coverage: bool
) -> Tensor:
    if mask.dtype != torch.bool:
        raise TypeError(f"a custom dendritic mask must be a bool tensor, got dtype {mask.dtype}")
    if mask.dim() != 2 or mask.shape[0] != rows or mask.shape[1] not in (in_features, width):
        raise ValueError(
            f"a custom dendritic mask must have shape ({rows}, {in_features}) or ({rows}, {width}) "
            f"(neurons*branches, inputs [+pad]), got {tuple(mask.shape)}"
        )
    if mask.shape[1] == in_features and width != in_features:
        mask = torch.cat([mask, mask.new_zeros(rows, width - in_features)], dim=1)
    if require_coverage:
        branches = rows // out_features
        covered = mask[:, :in_features].view(out_features, branches, in_features).any(1)
        if not bool(covered.all()):
            neuron, inp = (~covered).nonzero()[0].tolist()
            raise ValueError(
                f"custom dendritic mask leaves input {inp} unconnected to every branch of neuron {neuron} "
                f"({int((~covered).sum())} such input/neuron pairs); every input must reach at least one branch "
                "of each neuron (pass require_coverage=False to allow it)"
            )
    return mask.clone()

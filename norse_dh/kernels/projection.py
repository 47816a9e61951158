"""Input projection of a whole sequence: ``(T*B, M) -> (T*B, P)`` through a masked weight, chosen by input density.

Three paths, all computing ``x @ (W * mask)[:, :M]^T + bias`` and the gradients of ``W`` (masked entries get
exactly zero), ``bias`` and ``x``:

- **events** (spike inputs below the measured break-even density): the C++ kernel lists the input's non-zeros once
  (CSR arrays, AVX-512 compress where available; kept for the backward instead of the dense input) and adds, per
  event ``(r, m, v)``, ``v`` times row ``m`` of the transposed masked weight into output row ``r``; the weight
  gradient adds ``v`` times output-gradient row ``r`` into row ``m``. Work is ``nnz * P`` multiply-adds on
  contiguous, fully vectorised rows. Measured alternatives: ``torch.sparse_csr`` needs ``to_sparse_csr`` on the
  dense spike tensor (80-320 ms for 16000x700, more than the dense product) and its transposed product for the
  weight gradient was slower than dense above ~5 % density; a per-synapse scatter over only the enabled synapses
  (``nnz * N`` multiply-adds for partition masks) did 4x fewer multiply-adds but was 2.7x slower (scalar
  gather/scatter), so the row form is used.
- **shared** (inputs above break-even, masks whose neurons share patterns: ``"grouped"``, ``"contiguous"``): one
  dense product per (pattern, branch) over that branch's input columns, so the work is ``R * M * N`` (a vanilla
  layer), not ``D`` times it.
- **dense**: one GEMM over the whole sequence with the masked dense weight (random masks at high density).

The input gradient (needed only when the input comes from a trainable layer) is one dense product ``G @ W``.
"""

from __future__ import annotations

import os
import weakref

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from norse_dh.kernels import build
from norse_dh.kernels.loop import DTYPES

# Input density below which the event path runs. Measured with ``benchmarks/bench_dhsnn.py --projection``
# (1 thread, 16000x700 inputs -> 256 outputs, forward + weight gradient): see the module docstring and the report.
EVENT_BREAK_EVEN = float(os.environ.get("NORSE_DH_EVENT_BREAK_EVEN", "0.15"))


class ProjectionPlan:
    """Mask-derived structure of one weight layout ``(P, W)`` whose first ``in_features`` columns are used.

    Attributes:
        groups: for masks whose neurons share few patterns and whose branches partition the inputs
            (``"grouped"``, ``"contiguous"``), ``[(neurons, [input columns of branch d])]``; else None.
        branch_of: for a mask whose neurons all share one pattern in which each input reaches exactly one branch,
            with a branch index that never decreases along the inputs (``"contiguous"``), that index per input
            (int32, ``(in_features,)``); else None. The narrow fused kernel then projects each input event into its
            own branch only.
    """

    def __init__(self, mask: Tensor, in_features: int, branches: int) -> None:
        mask = mask.detach().to("cpu", torch.bool)
        self.out_features = mask.shape[0]
        self.in_features = in_features
        self.groups = _shared_groups(mask[:, :in_features], branches)
        self.branch_of = _monotone_branch_of(self.groups, in_features)


def _monotone_branch_of(groups: list[tuple[Tensor, list[Tensor]]] | None, in_features: int) -> Tensor | None:
    """Branch index per input if all neurons share one pattern (a single group) that gives every input a branch,
    with branch indices nondecreasing along the inputs."""
    if groups is None or len(groups) != 1:
        return None
    branch_of = torch.full((in_features,), -1, dtype=torch.int32)
    for d, cols in enumerate(groups[0][1]):
        branch_of[cols] = d
    monotone = bool((branch_of[1:] >= branch_of[:-1]).all())
    return branch_of if monotone and bool((branch_of >= 0).all()) else None


def _shared_groups(sub: Tensor, branches: int) -> list[tuple[Tensor, list[Tensor]]] | None:
    """``[(neurons, [input columns of branch d])]`` if neurons share few patterns and branches partition inputs."""
    P, M = sub.shape
    if branches < 2 or P % branches:
        return None
    pat = sub.reshape(P // branches, branches, M)
    if (pat.sum(1) > 1).any():  # an input reaching two branches of a neuron: not a partition
        return None
    uniq, inverse = torch.unique(pat.reshape(P // branches, -1), dim=0, return_inverse=True)
    if uniq.shape[0] * 2 > P // branches:
        return None
    groups = []
    for u in range(uniq.shape[0]):
        neurons = (inverse == u).nonzero().flatten()
        blocks = [uniq[u].view(branches, M)[d].nonzero().flatten() for d in range(branches)]
        groups.append((neurons, blocks))
    return groups


_plans: dict = {}  # mask key -> (weakref to the mask, plan)
_full_plans: dict = {}  # unmasked Linear shapes -> plan


def plan_for(mask: Tensor, in_features: int, branches: int) -> ProjectionPlan:
    """Cached :class:`ProjectionPlan` (keyed by the mask's storage and version: rebuilt if the mask changes).

    The entry also holds a weak reference to the mask it was built from: a freed mask whose memory is reused by a
    new mask of the same shape has the same storage key, and must not get the old plan.
    """
    key = (mask.data_ptr(), mask._version, tuple(mask.shape), in_features, branches)
    entry = _plans.get(key)
    if entry is None or entry[0]() is not mask:
        if len(_plans) > 64:
            _plans.clear()
        entry = _plans[key] = (weakref.ref(mask), ProjectionPlan(mask, in_features, branches))
    return entry[1]


def full_plan(out_features: int, in_features: int, width: int | None = None) -> ProjectionPlan:
    """Plan of an unmasked Linear ``(out_features, width)`` whose first ``in_features`` columns are used."""
    width = in_features if width is None else width
    key = ("full", out_features, in_features, width)
    plan = _full_plans.get(key)
    if plan is None:
        ones = torch.ones(out_features, width, dtype=torch.bool)
        plan = _full_plans[key] = ProjectionPlan(ones, in_features, 1)
    return plan


class _EventLinear(torch.autograd.Function):
    """``x @ wt + bias`` from the events of ``x`` (CSR arrays made by the C++ kernel); returns None if ``x`` has
    more than ``cap`` non-zeros (the caller then takes a dense path)."""

    @staticmethod
    def forward(ctx, x, wt, bias, events):
        lib = build.load()
        suf = DTYPES[x.dtype]
        rowptr, cols, vals = events
        R, M = x.shape
        P = wt.shape[1]
        wt = wt.contiguous()
        bias_c = bias.contiguous() if bias is not None else None
        out = torch.empty((R, P), dtype=x.dtype)
        getattr(lib, f"ev_rows_fwd_{suf}")(
            R, P, rowptr.data_ptr(), cols.data_ptr(), vals.data_ptr(), wt.data_ptr(),
            bias_c.data_ptr() if bias_c is not None else None, out.data_ptr(),
        )  # fmt: skip
        ctx.has_bias = bias is not None
        ctx.save_for_backward(rowptr, cols, vals, wt if ctx.needs_input_grad[0] else None)
        ctx.shape = (R, M, P)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        lib = build.load()
        rowptr, cols, vals, wt = ctx.saved_tensors
        R, M, P = ctx.shape
        g = g.contiguous()
        gx = g @ wt.t() if ctx.needs_input_grad[0] else None
        gwt = gb = None
        want_b = ctx.has_bias and ctx.needs_input_grad[2]
        if ctx.needs_input_grad[1]:
            gwt = torch.empty((M, P), dtype=g.dtype)
            gb64 = torch.empty(P, dtype=torch.float64) if want_b else None  # summed in the same pass over g
            getattr(lib, f"ev_rows_wgrad_{DTYPES[g.dtype]}")(
                R,
                M,
                P,
                rowptr.data_ptr(),
                cols.data_ptr(),
                vals.data_ptr(),
                g.data_ptr(),
                gwt.data_ptr(),
                gb64.data_ptr() if want_b else None,
            )
            gb = gb64.to(g.dtype) if want_b else None
        elif want_b:
            gb = g.sum(0)
        return gx, gwt, gb, None


def _events(
    x2: Tensor,
    cap: int,
    with_rows: bool = False,
    blocked: tuple[int, int, int] | None = None,
    ones_as_none: bool = False,
) -> tuple[Tensor | None, ...] | None:
    """CSR arrays ``(rowptr, cols, vals)`` of ``x2`` (plus each event's CSR row if ``with_rows``), or None if it
    has more than ``cap`` non-zeros. ``blocked = (B, K, G)``: the rows of ``x2 = (T*B, M)`` in the narrow fused
    kernel's order (chunks of K steps, groups of G batch rows, steps, rows; ``events`` in ``_loops.cpp``), each
    event's column ``m`` stored as ``m * G + g`` with ``g`` its row within the group. ``ones_as_none``: ``vals`` is
    None when every value is 1 (0/1 spikes; then the scan does not write them)."""
    R, M = x2.shape
    if blocked is not None and (min(blocked) < 1 or R % blocked[0]):
        raise ValueError(f"blocked event order needs (B, K, G) >= 1 with B dividing the {R} rows, got {blocked}")
    x2 = x2.contiguous()
    rowptr = torch.empty(R + 1, dtype=torch.int64)
    cols = torch.empty(cap + 16, dtype=torch.int32)
    vals = torch.empty(cap + 16, dtype=x2.dtype)
    rows = torch.empty(cap + 16, dtype=torch.int32) if with_rows else None
    ones = torch.zeros(1, dtype=torch.int32) if ones_as_none else None
    lib = build.load()
    nnz = getattr(lib, f"events_{DTYPES[x2.dtype]}")(
        R, M, x2.data_ptr(), rowptr.data_ptr(), cols.data_ptr(), vals.data_ptr(),
        rows.data_ptr() if with_rows else None, cap, *(blocked or (1, 1, 0)),
        ones.data_ptr() if ones_as_none else None,
    )  # fmt: skip
    if nnz > cap:
        return None
    vals_out = None if ones_as_none and bool(ones[0]) else vals[:nnz]
    return (rowptr, cols[:nnz], vals_out) + ((rows[:nnz],) if with_rows else ())


def _shared_linear(x: Tensor, w_eff: Tensor, bias: Tensor | None, plan: ProjectionPlan, branches: int) -> Tensor:
    """Dense products per (pattern, branch) block: vanilla-layer work for grouped/contiguous masks.

    The input is transposed once so that each pattern's columns are gathered as contiguous rows (a column
    ``index_select`` on the ``(R, M)`` input was measured 5x slower); the blocks are assembled with one ``cat`` per
    branch and one ``stack`` (writing them into slices of a buffer made autograd clone the full gradient per slice).
    """
    R = x.shape[0]
    P = plan.out_features
    n_total = P // branches
    w3 = w_eff.reshape(n_total, branches, -1)
    x_t = x.t().contiguous()  # (M, R)
    per_branch: list[list[Tensor]] = [[] for _ in range(branches)]
    order = []
    for neurons, blocks in plan.groups:
        w_g = w3.index_select(0, neurons)
        for d, cols in enumerate(blocks):
            per_branch[d].append(torch.mm(x_t.index_select(0, cols).t(), w_g[:, d].index_select(1, cols).t()))
        order.append(neurons)
    out = torch.stack([torch.cat(ys, 1) for ys in per_branch], -1)  # (R, N in group order, D)
    perm = torch.cat(order)
    if not torch.equal(perm, torch.arange(n_total)):
        out = out.index_select(1, torch.argsort(perm))
    out = out.reshape(R, P)
    return out + bias if bias is not None else out


def project(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    plan: ProjectionPlan,
    *,
    mask: Tensor | None = None,
    branches: int = 1,
    path: str = "auto",
) -> tuple[Tensor, str]:
    """``x (..., M) -> (..., P)`` with the masked ``weight (P, W>=M)``; returns ``(out, path used)``.

    ``path``: ``"auto"`` (events below :data:`EVENT_BREAK_EVEN` input density, else shared or dense),
    ``"events"``, ``"shared"`` or ``"dense"``.
    """
    if path not in ("auto", "events", "shared", "dense"):
        raise ValueError(f"path must be 'auto', 'events', 'shared' or 'dense', got {path!r}")
    lead = x.shape[:-1]
    M = plan.in_features
    x2 = x.reshape(-1, M)
    lib_ok = x.device.type == "cpu" and x.dtype in DTYPES and weight.dtype == x.dtype and build.load() is not None
    if path == "events" and not lib_ok:
        raise RuntimeError("the event projection needs the CPU kernels and matching float32/float64 dtypes")
    w_eff = weight * mask if mask is not None else weight
    w_eff = w_eff[:, :M]
    events = None
    if path in ("auto", "events") and lib_ok:
        cap = x2.numel() if path == "events" else int(EVENT_BREAK_EVEN * x2.numel())
        events = _events(x2.detach(), cap)
    if events is not None:
        out, path = _EventLinear.apply(x2, w_eff.t(), bias, events), "events"
    elif plan.groups is not None and path in ("auto", "shared"):
        out, path = _shared_linear(x2, w_eff, bias, plan, branches), "shared"
    else:
        out, path = F.linear(x2, w_eff, bias), "dense"
    return out.reshape(*lead, plan.out_features), path

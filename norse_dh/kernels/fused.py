"""The fused DH-SFNN sequence: event projection, dendrites, soma and surrogate in one C++ loop per direction.

For a feed-forward DH-LIF layer with sparse (event) input and the multi-Gaussian surrogate, the separate
projection + loop of :func:`norse_dh.kernels.project` / :func:`norse_dh.kernels.dhlif_loop` streams several
``(T, B, N*D)`` arrays through memory (the projection output ``I``, the branch currents ``i`` kept for the backward,
the gradient ``dI`` and its re-read by the weight-gradient kernel) and makes several passes. Here instead
(``_loops.cpp``, ``dhsfnn_fwd`` / ``dhsfnn_bwd``), per step, tiles of ``Bc`` batch rows (one tile step's arrays
L1-sized) run in turn:

- forward: each tile step's projection is built from the input's events (CSR with row indices, made once by the
  AVX-512 scan) with each row's sums held in registers (bias, then the events in CSR order) and consumed at once by
  flat, vectorised dendrite/soma loops over the tile. Training also keeps what the adjoint reads, either all of it
  (``store``: ``e = i[t-1] - I[t]``, the surrogate at ``u[t] - theta``, ``u[t-1] - c[t]``) or only a state
  checkpoint every ``K`` steps (``recompute``: the backward re-runs each chunk's forward, bit-identical, into an
  L2-sized buffer; about 5x less memory). :func:`store_mode` picks per call: recompute where the repeated projection
  is cheap relative to the stored values (few events per row: the delayed-XOR shape, SHD 1 %), store otherwise;
  ``NORSE_DH_FUSED_RECOMPUTE=1`` / ``=0`` forces one. Without grad mode nothing of this is kept;
- backward: the adjoint recursion of :mod:`norse_dh.kernels.loop` per tile step, with each row's ``dI`` added
  straight into the weight and bias gradients through the row's events (float partial sums per tile, flushed to
  double accumulators per chunk). ``dI`` is written out only when the input needs a gradient (``dx = dI @ W``, one
  GEMM). The multi-Gaussian surrogate takes two exponentials (side lobes as ``exp(cs (x^2 + s^2)) 2 cosh(x s / w^2)``
  with a short cosh series where ``|x s / w^2| <= 1``).

The recursion and operation order are those of the unfused path: the forward is bit-identical to the unfused event
projection + :func:`norse_dh.functional.dhlif.dhlif_step` and the gradients equal the step-by-step cell's, tested in
``tests/norse_dh/test_kernels.py``. Measured (1 thread, shared 2-core machine, ``bench_dhsnn.py --reps 5``, process
CPU time, ms per training step, before -> after this version): delayed XOR (B=500, T=100, 40->16x2, 10 %)
10.9 -> 8.0 (7.9x the per-step reference; the issue's 10x is not reached: the event scan ~0.8 ms, forward ~2 ms,
backward with recompute ~4 ms, the bench's loss and glue ~1 ms remain), 22 -> 11 MB; SHD 5 % 52.7 -> 45.6 (0.34x the
dense floor), SHD 1 % 23.4 -> 20.7 (29 instead of 51 MB), grouped 5 % 44.3 -> 33.3; forward only (no grad) SHD 5 %
22.3 -> 11.1. Later (same measure, the two libraries interleaved in one process): flat single-pass tile loops (the
branch adjoint without de-interleaving, the soma phases in one loop), straight-line weight-gradient updates, a
degree-6 minimax float exp and one row-index store per 16 events in the scan took the delayed-XOR fused fwd+bwd 5-7 %
down (7.5 -> 7.0 ms, 8.0 -> 7.6 ms in two runs; the bench's column (c) about 7.8 ms, 8.0x); SHD unchanged within
noise.

Narrow layers (``narrow_fwd`` / ``narrow_bwd``; N of one or two whole 64-byte vectors, at most 4 vectors of branch
values per row: 16 or 32 float32 neurons, 8 or 16 float64; :func:`narrow_vectors`): at these widths the tile loops'
loads, stores and loop set-up per step cost more than the arithmetic. The narrow kernels keep the state of 2-4 batch
rows and the per-neuron factors in registers through a chunk of K steps, lay a row's branch values out branch-major
(the branch sum and the broadcast of a neuron's adjoint to its branches are plain vector operations), and with the
contiguous mask (one branch pattern shared by all neurons, branch index nondecreasing along the inputs:
``ProjectionPlan.branch_of``) project each input event into its own branch only (N instead of N*D multiply-adds).
Chunks run in order over all row groups, so each chunk's events and spike rows are read nearly in memory order.
Training always recomputes (checkpoints every K steps, the chunk's forward re-run in L1 buffers, the adjoint with
the carried adjoints and the parameter-gradient partial sums in registers). Same arithmetic order: the forward is
bit-identical to the tile kernel and the cell. Measured at the delayed-XOR shape (bench column (c), 1 thread,
process CPU time): 7.3-8.3 -> 6.1-6.5 ms, together with an FMA-evaluated surrogate (0.78 -> 0.57 ms for its 800k
values; gradients only, compared to a tolerance) and a faster event scan (plain instead of masked loads of the
line-straddling 40-float rows, prefetch 2 kB ahead: 0.52 -> 0.41 ms from cache, 0.74 -> 0.5 ms from memory). Then
each step's projection is issued one step ahead of the state update that reads it (software pipelining: the forward
kernel alone 1.17 -> 0.76 ms); column (c) over 14 later runs 6.1-8.0 ms (cold caches after the interleaved baselines;
5.6-5.9 ms back to back), 7.98-10.46x the per-step reference, median 9.94x. Then the events come from the scan in
the narrow kernels' own row order (``blocked``: chunks of K steps, groups of G batch rows, steps, rows; in input-row
order a group walked the event arrays with a stride of B rows per step, which no prefetcher followed: the forward
kernel took 1.4-2.0 ms at B = 100-500 against 0.6 ms at B = 4): forward kernel 1.4-2.0 -> 0.7 ms (no grad),
backward 2.8 -> 2.2 ms, the scan 0.1-0.2 ms slower (strided input rows; each chunk's rows prefetched while the chunk
before is scanned). Less memory traffic after that: the event's row within its group coded into its column index
(``m * G + g``: no row-index array), no event values for 0/1 spike input, and the adjoint's z[t-1] from the chunk's
recompute instead of the strided z rows (training step at that shape, measured alone: 5.0-5.3 -> 4.7-5.0 ms), and
the spikes stored non-temporally (the bench's column (c) 5.3-5.6 -> 5.2-5.3 ms).
``NORSE_DH_NARROW=0`` turns the narrow kernels off.
"""

from __future__ import annotations

import ctypes
import os

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from norse_dh.functional.surrogate import MultiGaussianParameters
from norse_dh.kernels import build
from norse_dh.kernels import projection as _projection
from norse_dh.kernels.loop import DTYPES, RESET_CODES, _vth_vector

# Bytes of the recompute buffer of one (tile, chunk) (i[t-1] - I[t], surrogate, u[t-1] - c[t] of its rows): L2-sized.
CHUNK_BYTES = int(os.environ.get("NORSE_DH_CHUNK_BYTES", 192 * 1024))
# Bytes of the arrays one tile step works on (branch input, currents and their factors, soma values): L1-sized.
TILE_BYTES = int(os.environ.get("NORSE_DH_TILE_BYTES", 32 * 1024))
# Training keeps the adjoint's inputs (store) or state checkpoints every K steps, re-running the forward per chunk in
# the backward (recompute: about 5x less memory for this layer). None chooses per call (:func:`store_mode`);
# NORSE_DH_FUSED_RECOMPUTE=1 / =0 forces recompute / store.
_ENV = os.environ.get("NORSE_DH_FUSED_RECOMPUTE")
STORE: bool | None = None if _ENV not in ("0", "1") else _ENV == "0"
# Recompute when the projection work it repeats (events x N*D multiply-adds) is at most this many times the values
# that storing writes and reads back (N*D + 3N per row and step). Measured (1 thread, per training step, the two
# modes interleaved): recompute 10-13 % faster at the delayed-XOR shape (ratio 1.6), equal at SHD 1 % (ratio 4, with
# 5x less memory), equal to 10 % slower at SHD 5 % random / grouped (ratio 20).
RECOMPUTE_RATIO = 8.0


def _p(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def store_mode(nnz: int, rows: int, N: int, D: int) -> bool:
    """Whether training stores the adjoint's inputs (True) or recomputes them per chunk in the backward (False)."""
    if STORE is not None:
        return STORE
    return nnz * N * D > RECOMPUTE_RATIO * rows * (N * D + 3 * N)


def tiling(T: int, B: int, N: int, D: int, itemsize: int) -> tuple[int, int]:
    """``(K, Bc)``: tiles of Bc batch rows whose step fits :data:`TILE_BYTES`, checkpoints every K steps with K * Bc
    rows filling :data:`CHUNK_BYTES`. Measured against the former fixed K = 4 (K * Bc rows in 128 kB): delayed-XOR
    training step 8 % faster in recompute mode (K = 19, Bc = 32 instead of K = 4, Bc = 102), SHD unchanged within
    noise (K = 21, Bc = 5)."""
    rows = max(1, CHUNK_BYTES // ((N * D + 3 * N) * itemsize))
    bc = min(B, rows, max(1, TILE_BYTES // ((4 * N * D + 8 * N) * itemsize)))
    return max(1, min(T, rows // bc)), bc


def _gradients(need, dtype, dx, gwt, gbias, ga, gb, gvth, gi0, gu0, gz0) -> tuple:
    """The backward's return tuple for ``(x2, w_eff, bias, a, b, vth, i0, u0, z0, <2 non-tensor arguments>)``: the
    weight gradient back from the transposed layout, the double parameter accumulators in the layer's dtype."""
    return (
        dx,
        gwt.t() if need[1] else None,
        gbias.to(dtype) if gbias is not None else None,
        ga.to(dtype) if need[3] else None,
        gb.to(dtype) if need[4] else None,
        gvth.to(dtype) if need[5] else None,
        gi0 if need[6] else None,
        gu0 if need[7] else None,
        gz0 if need[8] else None,
        None,
        None,
    )


class _FusedDHSFNN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2, w_eff, bias, a, b, vth, i0, u0, z0, events, cfg):
        lib = build.load()
        suf = DTYPES[x2.dtype]
        rowptr, cols, vals, rows = events if len(events) == 4 else (*events, None)  # (narrow: no rows)
        T, B = cfg["T"], cfg["B"]
        N, D = a.shape
        wt = w_eff.t().contiguous()  # (M, N*D): one contiguous row per input channel
        bias_c = bias.contiguous() if bias is not None else None
        a_c, b_c, vth_c = a.contiguous(), b.contiguous(), vth.contiguous()
        i0_c, u0_c, z0_c = i0.contiguous(), u0.contiguous(), z0.contiguous()
        # needs_input_grad reflects the inputs' requires_grad, not the grad mode: under no_grad it can be True while
        # no backward will ever run, so the caller decides (cfg["train"]) and nothing for the adjoint is kept then
        train = cfg["train"] and any(ctx.needs_input_grad)
        opts = dict(dtype=x2.dtype, device=x2.device)
        if cfg["narrow"]:
            return _narrow_forward(
                ctx, lib, suf, train, events, wt, bias_c, a_c, b_c, vth_c, i0_c, u0_c, z0_c, cfg, opts
            )
        K, Bc = tiling(T, B, N, D, x2.element_size())
        store = train and store_mode(cols.numel(), T * B, N, D)
        chunks = -(-T // K)
        i_ck = torch.empty((chunks, B, N, D), **opts) if train and not store else None
        u_ck = torch.empty((chunks, B, N), **opts) if train and not store else None
        e_all = torch.empty((T, B, N, D), **opts) if store else None
        sd_all = torch.empty((T, B, N), **opts) if store else None
        q_all = torch.empty((T, B, N), **opts) if store else None
        up_all = torch.empty((T, B, N), **opts) if store and cfg["reset"] == RESET_CODES["zero"] else None
        i_T = torch.empty((B, N, D), **opts)
        u_T = torch.empty((B, N), **opts)
        z = torch.empty((T, B, N), **opts)
        mg = cfg["mg"]
        mg_params = (ctypes.c_double * 4)(mg.gamma, mg.sigma, mg.height, mg.scale)
        getattr(lib, f"dhsfnn_fwd_{suf}")(
            cfg["reset"], T, B, N, D, K, Bc, _p(rowptr), _p(rows), _p(cols), _p(vals), _p(wt), _p(bias_c), _p(a_c), _p(b_c),
            _p(vth_c), ctypes.addressof(mg_params), _p(i0_c), _p(u0_c), _p(z0_c), _p(i_ck), _p(u_ck), _p(e_all),
            _p(sd_all), _p(q_all), _p(up_all), _p(i_T), _p(u_T), _p(z),
        )  # fmt: skip
        if train:
            ctx.save_for_backward(
                rowptr, rows, cols, vals, wt, bias_c, a_c, b_c, vth_c, z0_c, i_ck, u_ck, e_all, sd_all, q_all, up_all, z
            )
            ctx.cfg = cfg
            ctx.dims = (T, B, x2.shape[1], N, D, K, Bc)
        return z, i_T, u_T, z[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, gz, gi_T, gu_T, gz_T):
        lib = build.load()
        if ctx.cfg["narrow"]:
            return _narrow_backward(ctx, lib, gz, gi_T, gu_T, gz_T)
        saved = ctx.saved_tensors
        rowptr, rows, cols, vals, wt, bias, a, b, vth, z0, i_ck, u_ck, e_all, sd_all, q_all, up_all, z = saved
        T, B, M, N, D, K, Bc = ctx.dims
        cfg = ctx.cfg
        need = ctx.needs_input_grad
        suf = DTYPES[z.dtype]
        opts = dict(dtype=z.dtype, device=z.device)
        gz, gi_T, gu_T, gz_T = (g.contiguous() if g is not None else None for g in (gz, gi_T, gu_T, gz_T))
        mg = cfg["mg"]
        mg_params = (ctypes.c_double * 4)(mg.gamma, mg.sigma, mg.height, mg.scale)
        ga = torch.empty((N, D), dtype=torch.float64)  # parameter gradients accumulated in double
        gb = torch.empty(N, dtype=torch.float64)
        gvth = torch.empty(N, dtype=torch.float64)
        gbias = torch.empty(N * D, dtype=torch.float64) if bias is not None and need[2] else None
        gwt = torch.empty((M, N * D), **opts) if need[1] else None
        gI = torch.empty((T, B, N, D), **opts) if need[0] else None  # only for the input gradient
        gi0 = torch.empty((B, N, D), **opts)
        gu0 = torch.empty((B, N), **opts)
        gz0 = torch.empty((B, N), **opts)
        getattr(lib, f"dhsfnn_bwd_{suf}")(
            cfg["reset"], T, B, M, N, D, K, Bc, _p(rowptr), _p(rows), _p(cols), _p(vals), _p(wt), _p(bias), _p(a), _p(b),
            _p(vth), ctypes.addressof(mg_params), _p(z0), _p(i_ck), _p(u_ck), _p(e_all), _p(sd_all), _p(q_all),
            _p(up_all), _p(z), _p(gz), _p(gi_T), _p(gu_T), _p(gz_T), _p(gI),
            _p(gwt), _p(gbias), _p(ga), _p(gb), _p(gvth), _p(gi0), _p(gu0), _p(gz0),
        )  # fmt: skip
        dx = gI.view(T * B, N * D) @ wt.t() if need[0] else None
        return _gradients(need, z.dtype, dx, gwt, gbias, ga, gb, gvth, gi0, gu0, gz0)


# Narrow kernel (``narrow_fwd`` / ``narrow_bwd`` in _loops.cpp): state checkpoints every K steps with K chosen so that
# the backward's per-chunk buffers (4 rows x (N*D + 3N) values per step) fill NARROW_CHUNK_BYTES (L1-sized).
NARROW_CHUNK_BYTES = 24 * 1024
# (vectors of N per branch, max branches) with a compiled narrow kernel: N of 1 vector with D <= 4, 2 vectors with D <= 2
_NARROW_MAX_D = {1: 4, 2: 2}
NARROW = os.environ.get("NORSE_DH_NARROW", "1") != "0"
_ITEMSIZE = {torch.float32: 4, torch.float64: 8}


def narrow_vectors(N: int, D: int, dtype: torch.dtype) -> int:
    """Vectors per branch (N / lanes) if the narrow kernel handles this width, else 0 (64-byte vectors: 16 float32,
    8 float64 lanes)."""
    if dtype not in _ITEMSIZE:
        return 0
    lanes = 64 // _ITEMSIZE[dtype]
    nv = N // lanes if N % lanes == 0 else 0
    return nv if NARROW and STORE is not True and D <= _NARROW_MAX_D.get(nv, 0) else 0


def _narrow_chunk(T: int, N: int, D: int, itemsize: int) -> int:
    return max(1, min(T, NARROW_CHUNK_BYTES // (4 * (N * D + 3 * N) * itemsize)))


def _narrow_forward(ctx, lib, suf, train, events, wt, bias, a, b, vth, i0, u0, z0, cfg, opts):
    """:class:`_FusedDHSFNN`'s forward through the narrow kernel (``cfg["narrow"]`` vectors per branch): state
    checkpoints every K steps when training, nothing else kept."""
    rowptr, cols, vals = events[:3]  # cols: input m and row in the group g as m * G + g (blocked order)
    T, B, nv, bof = cfg["T"], cfg["B"], cfg["narrow"], cfg["branch_of"]
    N, D = a.shape
    M = wt.shape[0]
    K = cfg["K"]  # the chunk length of the blocked event order
    chunks = -(-T // K)
    i_ck = torch.empty((chunks, B, N * D), **opts) if train else None
    u_ck = torch.empty((chunks, B, N), **opts) if train else None
    i_T = torch.empty((B, N, D), **opts)
    u_T = torch.empty((B, N), **opts)
    z = torch.empty((T, B, N), **opts)
    done = getattr(lib, f"dhsfnn_narrow_fwd_{suf}")(
        cfg["reset"], nv, D, T, B, M, K, _p(rowptr), _p(cols), _p(vals), _p(bof), _p(wt), _p(bias), _p(a),
        _p(b), _p(vth), _p(i0), _p(u0), _p(z0), _p(i_ck), _p(u_ck), _p(i_T), _p(u_T), _p(z),
    )  # fmt: skip
    if not done:
        raise RuntimeError(f"no narrow DH-SFNN kernel for N={N}, D={D} ({suf})")
    if train:
        ctx.save_for_backward(rowptr, cols, vals, bof, wt, bias, a, b, vth, z0, i_ck, u_ck, z)
        ctx.cfg = cfg
        ctx.dims = (T, B, M, N, D, K)
    return z, i_T, u_T, z[-1].clone()


def _narrow_backward(ctx, lib, gz, gi_T, gu_T, gz_T):
    """:class:`_FusedDHSFNN`'s backward through the narrow kernel (recompute per chunk, adjoint in registers)."""
    rowptr, cols, vals, bof, wt, bias, a, b, vth, z0, i_ck, u_ck, z = ctx.saved_tensors
    T, B, M, N, D, K = ctx.dims
    cfg, need, suf = ctx.cfg, ctx.needs_input_grad, DTYPES[z.dtype]
    opts = dict(dtype=z.dtype, device=z.device)
    gz, gi_T, gu_T, gz_T = (g.contiguous() if g is not None else None for g in (gz, gi_T, gu_T, gz_T))
    mg = cfg["mg"]
    mg_params = (ctypes.c_double * 4)(mg.gamma, mg.sigma, mg.height, mg.scale)
    ga = torch.empty((N, D), dtype=torch.float64)
    gb = torch.empty(N, dtype=torch.float64)
    gvth = torch.empty(N, dtype=torch.float64)
    gbias = torch.empty(N * D, dtype=torch.float64) if bias is not None and need[2] else None
    gwt = torch.empty((M, N * D), **opts) if need[1] else None
    gI = torch.empty((T * B, D * N), **opts) if need[0] else None  # branch-major rows: only for the input gradient
    gi0 = torch.empty((B, N, D), **opts)
    gu0 = torch.empty((B, N), **opts)
    gz0 = torch.empty((B, N), **opts)
    getattr(lib, f"dhsfnn_narrow_bwd_{suf}")(
        cfg["reset"], cfg["narrow"], D, T, B, M, K, _p(rowptr), _p(cols), _p(vals), _p(bof), _p(wt),
        _p(bias), _p(a), _p(b), _p(vth), ctypes.addressof(mg_params), _p(z0), _p(i_ck), _p(u_ck), _p(z), _p(gz),
        _p(gi_T), _p(gu_T), _p(gz_T), _p(gI), _p(gwt), _p(gbias), _p(ga), _p(gb), _p(gvth), _p(gi0), _p(gu0), _p(gz0),
    )  # fmt: skip
    # dx = dI @ W with dI branch-major: the weight's columns (n, d) taken in (d, n) order
    dx = gI @ wt.view(M, N, D).transpose(1, 2).reshape(M, D * N).t() if need[0] else None
    return _gradients(need, z.dtype, dx, gwt, gbias, ga, gb, gvth, gi0, gu0, gz0)


def dhsfnn_sequence(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    mask: Tensor | None,
    dend_decay: Tensor,
    soma_decay: Tensor,
    v_th: Tensor | float,
    i0: Tensor,
    u0: Tensor,
    z0: Tensor,
    *,
    reset: str = "subtract",
    mg: MultiGaussianParameters = MultiGaussianParameters(),
) -> tuple[Tensor, Tensor, Tensor, Tensor] | None:
    """Fused DH-SFNN layer over ``x (T, B, M)`` with the masked ``weight (N*D, W >= M)``: ``(z, i_T, u_T, z_T)``.

    Returns None (nothing computed) when the input has more non-zeros than the event break-even
    (:data:`norse_dh.kernels.projection.EVENT_BREAK_EVEN`): the caller then uses a dense projection. Callers check
    :func:`norse_dh.kernels.fused_supported` first; the surrogate is the multi-Gaussian with parameters ``mg``.
    """
    T, B, M = x.shape
    N, D = dend_decay.shape
    x2 = x.reshape(T * B, M)
    nv = narrow_vectors(N, D, x.dtype)
    # the narrow kernel reads the events in its own row order (chunks of K steps, groups of G batch rows)
    K = _narrow_chunk(T, N, D, x.element_size()) if nv else 0
    blocked = (B, K, build.load().dhsfnn_narrow_group(nv, D)) if nv else None
    cap = int(_projection.EVENT_BREAK_EVEN * x2.numel())
    # the narrow kernels take vals = None as "every value 1" (0/1 spikes: the scan then writes no values)
    events = _projection._events(x2.detach(), cap, with_rows=not nv, blocked=blocked, ones_as_none=bool(nv))
    if events is None:
        return None
    w_eff = (weight * mask if mask is not None else weight)[:, :M]
    vth = _vth_vector(v_th, soma_decay, soma_decay.shape[0])
    inputs = (x2, w_eff, bias, dend_decay, soma_decay, vth, i0, u0, z0)
    train = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in inputs)
    # one shared, monotone branch pattern ("contiguous"): each input event feeds only its branch (narrow kernel)
    branch_of = _projection.plan_for(mask, M, D).branch_of if nv and mask is not None and D > 1 else None
    cfg = dict(reset=RESET_CODES[reset], mg=mg, T=T, B=B, K=K, train=train, narrow=nv, branch_of=branch_of)
    return _FusedDHSFNN.apply(*inputs, events, cfg)

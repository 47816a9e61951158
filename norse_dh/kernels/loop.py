"""Fused DH-LIF / LIF / leaky-integrator time loops with hand-derived backward passes.

Forward (per batch row, neuron n, branch d; ``I`` already contains the recurrent input ``z[t-1] @ W_rec^T``)::

    i[t] = a i[t-1] + (1 - a) I[t]        c[t] = sum_d i[t]
    u[t] = b u[t-1] + (1 - b) c[t] - theta z[t-1]        ("subtract"; "zero": b u[t-1] (1 - z[t-1]) + (1 - b) c[t])
    z[t] = H(u[t] - theta)

Backward (adjoints ``G``; ``s' `` the surrogate at ``u[t] - theta``; ``Cz, Cu, Ci`` the adjoints arriving from step
t+1, starting from the final-state gradients)::

    Gz = dL/dz[t] + Cz          Gu = Cu + Gz s'          dtheta -= Gz s'
    subtract: Cu <- b Gu,   Cz <- -theta Gu,   db += Gu (u[t-1] - c[t]),   dtheta -= Gu z[t-1]
    zero:     Cu <- b (1 - z[t-1]) Gu,   Cz <- -b u[t-1] Gu,   db += Gu (u[t-1] (1 - z[t-1]) - c[t])
    none:     Cu <- b Gu,   Cz <- 0,   db += Gu (u[t-1] - c[t])
    Gi = Ci + (1 - b) Gu        dI[t] = (1 - a) Gi        da += Gi (i[t-1] - I[t])        Ci <- a Gi
    recurrent: Cz += dI[t] @ W_rec (one GEMM per step);  dW_rec = sum_t dI[t]^T z[t-1] (one GEMM after the loop)

Gradient flows through the reset term exactly as autograd does through the functional step.

Why a C++ loop (measured, 1 thread, 2-core machine): the reference formulation spends its time in ~15 small
PyTorch ops and their autograd nodes per step, and batching the projection while keeping the recurrences as Python
loops was 2.6x *slower* (dhsnn.md section 10). ``torch.utils.cpp_extension`` took 56 s to build a one-function
module (``torch/extension.h`` + pybind11), too slow to build on first use in CI. TorchScript and ``torch.compile``
were not timed here: TorchScript still runs one op per step, and ``torch.compile`` must unroll or break the T-step
loop (Norse's own C++/compile comparison is in norse.md section 6). The kernels here are plain C++ on raw pointers,
compiled with ``g++`` in a few seconds and called through ``ctypes``: each step is a few flat, vectorised loops over
``B*N*D`` values, with no allocation and no autograd node per step.

The surrogate derivative ``s'``: the multi-Gaussian is evaluated inside the reverse loop, row by row from
``u[t] - theta`` (same arithmetic as the flat ``mg_surrogate`` kernel, so no ``(T, B, N)`` array of it and of
``u - theta`` is written and read again); every other method is one vectorised pass before the loop through the
backward of :func:`norse_dh.functional.surrogate.spike_fn` itself, so all of Norse's surrogates are supported. Saved for
backward: ``I``, ``i`` ``(T, B, N, D)``, ``u`` and ``z`` ``(T, B, N)``, the minimum the adjoint recursion reads (the
step-by-step loop keeps about five tensors of that size per step). Under ``no_grad`` only one step of state is kept.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from norse_dh.functional.surrogate import METHODS, MultiGaussianParameters, spike_fn
from norse_dh.kernels import build

RESET_CODES = {"subtract": 0, "zero": 1, "none": 2}
DTYPES = {torch.float32: "f32", torch.float64: "f64"}


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def surrogate_derivative(x: Tensor, method: str, alpha: float, mg: MultiGaussianParameters) -> Tensor:
    """``dH/dx`` of :func:`norse_dh.functional.surrogate.spike_fn` at every ``x``, from its own backward.

    One vectorised pass over all steps (``(T, B, N)``), using the very surrogate code of the functional step, so
    every method (the MG surrogate and all of Norse's) is supported and cannot drift from the reference.
    """
    if method == "heaviside":  # Norse's plain Heaviside has no gradient at all
        return torch.zeros_like(x)
    with torch.enable_grad():
        leaf = x.detach().requires_grad_()
        (grad,) = torch.autograd.grad(spike_fn(leaf, method, alpha, mg), leaf, torch.ones_like(leaf))
    return grad


def fused_supported(tensors: list[Tensor | None], method: str, reset: str) -> bool:
    """True if the C++ loop can run these tensors (CPU, one float dtype) with this surrogate and reset."""
    if method not in METHODS or reset not in RESET_CODES:
        return False
    ts = [t for t in tensors if t is not None]
    dtype = ts[0].dtype
    if dtype not in DTYPES or any(t.device.type != "cpu" or t.dtype != dtype for t in ts):
        return False
    return build.load() is not None


class _DHLIFLoop(torch.autograd.Function):
    """Autograd wrapper of the fused loop; ``a``/``i0`` are None for the soma-only (vanilla LIF) loop."""

    @staticmethod
    def forward(ctx, I, a, b, vth, i0, u0, z0, wrt, cfg):  # noqa: N803 (I is the paper's name)
        lib = build.load()
        suf = DTYPES[I.dtype]
        T, B, N = I.shape[0], I.shape[1], b.shape[0]
        has_dend = a is not None
        D = a.shape[-1] if has_dend else 1
        train = any(ctx.needs_input_grad)
        I = I.contiguous()
        a_c = a.contiguous() if has_dend else None
        b_c, vth_c = b.contiguous(), vth.contiguous()
        i0_c = i0.contiguous() if has_dend else None
        u0_c, z0_c = u0.contiguous(), z0.contiguous()
        wrt_c = wrt.contiguous() if wrt is not None else None
        steps = T if train else 1
        opts = dict(dtype=I.dtype, device=I.device)
        i_all = torch.empty((steps, B, N, D), **opts) if has_dend else None
        u_all = torch.empty((steps, B, N), **opts)
        z = torch.empty((T, B, N), **opts)
        itot = torch.empty((T, B, N, D) if has_dend else (T, B, N), **opts) if wrt is not None else None
        getattr(lib, f"dhlif_fwd_{suf}")(
            T, B, N, D, RESET_CODES[cfg["reset"]], int(has_dend), int(train),
            _ptr(I), _ptr(itot), _ptr(a_c), _ptr(b_c), _ptr(vth_c), _ptr(i0_c), _ptr(u0_c), _ptr(z0_c), _ptr(wrt_c),
            _ptr(i_all), _ptr(u_all), _ptr(z),
        )  # fmt: skip
        if train:
            total = itot if itot is not None else I
            ctx.save_for_backward(total, i_all, u_all, z, a_c, b_c, vth_c, i0_c, u0_c, z0_c, wrt_c)
            ctx.cfg = cfg
            ctx.dims = (T, B, N, D, has_dend)
        i_T = i_all[-1].clone() if has_dend else None
        return z, i_T, u_all[-1].clone(), z[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, gz, gi_T, gu_T, gz_T):
        lib = build.load()
        total, i_all, u_all, z, a, b, vth, i0, u0, z0, wrt = ctx.saved_tensors
        T, B, N, D, has_dend = ctx.dims
        cfg = ctx.cfg
        suf = DTYPES[total.dtype]
        cont = [g.contiguous() if g is not None else None for g in (gz, gi_T, gu_T, gz_T)]
        opts = dict(dtype=total.dtype, device=total.device)
        mg_params = None
        if cfg["method"] == "mg":  # the paper's surrogate, evaluated per row inside the C++ loop from u - theta
            mg = cfg["mg"]
            mg_params = torch.tensor([mg.gamma, mg.sigma, mg.height, mg.scale], dtype=torch.float64)
            sd = None
        else:  # every other surrogate: one vectorised pass through the functional code's own backward
            sd = surrogate_derivative((u_all - vth).contiguous(), cfg["method"], cfg["alpha"], cfg["mg"]).contiguous()
        gI = torch.empty_like(total)
        ga = torch.empty((N, D), dtype=torch.float64) if has_dend else None  # double accumulators
        gb = torch.empty(N, dtype=torch.float64)
        gvth = torch.empty(N, dtype=torch.float64)
        gi0 = torch.empty((B, N, D), **opts) if has_dend else torch.empty(0, **opts)
        gu0 = torch.empty((B, N), **opts)
        gz0 = torch.empty((B, N), **opts)
        gemm = build.gemm_pointer(total.dtype) if wrt is not None else None
        getattr(lib, f"dhlif_bwd_{suf}")(
            T, B, N, D, RESET_CODES[cfg["reset"]], int(has_dend),
            _ptr(sd), _ptr(mg_params), _ptr(total), _ptr(i_all), _ptr(u_all), _ptr(z), _ptr(a), _ptr(b), _ptr(vth), _ptr(i0),
            _ptr(u0), _ptr(z0), _ptr(wrt), ctypes.c_void_p(gemm) if gemm else None,
            *[_ptr(g) for g in cont], _ptr(gI), _ptr(ga), _ptr(gb), _ptr(gvth), _ptr(gi0), _ptr(gu0), _ptr(gz0),
        )  # fmt: skip
        g_wrt = None
        if wrt is not None and ctx.needs_input_grad[7]:
            # dW_rec^T = sum_t z[t-1]^T dI[t]: one product over all steps after the loop
            z_prev = torch.cat([z0.unsqueeze(0), z[:-1]]).reshape(T * B, N)
            g_wrt = z_prev.t() @ gI.reshape(T * B, N * D)
        need = ctx.needs_input_grad
        return (
            gI,
            ga.to(total.dtype) if has_dend and need[1] else None,
            gb.to(total.dtype) if need[2] else None,
            gvth.to(total.dtype) if need[3] else None,
            gi0 if has_dend and need[4] else None,
            gu0 if need[5] else None,
            gz0 if need[6] else None,
            g_wrt,
            None,
        )


def _vth_vector(v_th: Tensor | float, like: Tensor, n: int) -> Tensor:
    v = torch.as_tensor(v_th, dtype=like.dtype, device=like.device)
    return v.expand(n) if v.dim() == 0 else v


def dhlif_loop(
    dend_input: Tensor,
    dend_decay: Tensor | None,
    soma_decay: Tensor,
    v_th: Tensor | float,
    i0: Tensor | None,
    u0: Tensor,
    z0: Tensor,
    *,
    w_rec_t: Tensor | None = None,
    reset: str = "subtract",
    method: str = "mg",
    alpha: float = 100.0,
    mg: MultiGaussianParameters = MultiGaussianParameters(),
) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    """Run the fused loop; returns ``(z (T,B,N), i_T, u_T, z_T)``.

    ``dend_input`` is ``(T, B, N, D)`` (or ``(T, B, N)`` soma input with ``dend_decay = i0 = None``: vanilla LIF);
    ``w_rec_t`` ``(N, N*D)`` adds ``z[t-1] @ w_rec_t`` to each step's input. Callers check
    :func:`fused_supported` first.
    """
    n = soma_decay.shape[0]
    cfg = {"reset": reset, "method": method, "alpha": alpha, "mg": mg}
    vth = _vth_vector(v_th, soma_decay, n)
    return _DHLIFLoop.apply(dend_input, dend_decay, soma_decay, vth, i0, u0, z0, w_rec_t, cfg)


class _LeakyLoop(torch.autograd.Function):
    @staticmethod
    def forward(ctx, I, b, m0):  # noqa: N803
        lib = build.load()
        suf = DTYPES[I.dtype]
        T, B, K = I.shape
        I, b, m0 = I.contiguous(), b.contiguous(), m0.contiguous()
        m = torch.empty_like(I)
        getattr(lib, f"leaky_fwd_{suf}")(T, B, K, _ptr(I), _ptr(b), _ptr(m0), _ptr(m))
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(I, b, m0, m)
        return m, m[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, gm, gm_T):
        lib = build.load()
        I, b, m0, m = ctx.saved_tensors
        T, B, K = I.shape
        suf = DTYPES[I.dtype]
        gm = gm.contiguous() if gm is not None else None
        gm_T = gm_T.contiguous() if gm_T is not None else None
        gI = torch.empty_like(I)
        gb = torch.empty(K, dtype=torch.float64)
        gm0 = torch.empty_like(m0)
        getattr(lib, f"leaky_bwd_{suf}")(
            T, B, K, _ptr(I), _ptr(b), _ptr(m0), _ptr(m), _ptr(gm), _ptr(gm_T), _ptr(gI), _ptr(gb), _ptr(gm0)
        )
        return gI, gb.to(I.dtype) if ctx.needs_input_grad[1] else None, gm0 if ctx.needs_input_grad[2] else None


def leaky_loop(readout_input: Tensor, decay: Tensor, m0: Tensor) -> tuple[Tensor, Tensor]:
    """``m[t] = b m[t-1] + (1 - b) I[t]`` over ``(T, B, K)``; returns ``(m (T,B,K), m_T)``."""
    return _LeakyLoop.apply(readout_input, decay, m0)

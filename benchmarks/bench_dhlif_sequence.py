"""Training-step speed of the norse-dh DH-LIF sequence layers against the reference DH-SNN formulation.

Compares, per shape, forward + backward of one layer (loss = weighted sum of the output spikes):

- ``reference``: a faithful re-implementation of the reference DH-SFNN / DH-SRNN step (eva1801/DH-SNN
  ``SHD/SNN_layers/spike_dense.py:143-156``, ``spike_rnn.py:169-182``): per step ``torch.cat`` zero padding (and the
  previous spikes for DH-SRNN), one dense Linear over the masked ``(N*D) x (M+pad)`` weight, ``sigmoid(tau)``
  recomputed, the branch and soma updates and the ``ActFun_adp`` multi-Gaussian surrogate, looped in Python;
- ``ours``: ``norse_dh.modules.DHLIF`` / ``DHLIFRecurrent`` (fast path of ``norse_dh.kernels``);
- ``dense floor``: the forward product of all steps and its weight-gradient product alone (what any dense
  implementation must at least do);
- ``norse LIF`` (D = 1 row): ``nn.Linear`` over the sequence + Norse's ``LIF`` layer of the same width.

Timings interleave the variants (A/B/A/B...) so machine contention hits all equally; medians are printed with the
ratios, the thread count and the peak tensor memory of one step (torch profiler memory events). The default clock
is the process CPU time (``--clock cpu``): with one thread it is the work done, and it stays meaningful on a
shared, oversubscribed machine where wall-clock times inflate with the load; ``--clock wall`` gives wall time.
``ours`` runs with ``check_finite = False`` (the reference has no such check); the cost of the layers' default
NaN/inf input check is printed separately.

    python benchmarks/bench_dhlif_sequence.py            # default shapes, ~1-2 min on 1 thread
    python benchmarks/bench_dhlif_sequence.py --quick    # CI-size shapes, a few seconds
    python benchmarks/bench_dhlif_sequence.py --full     # adds B=100, T=1000, D=8 (slow)
    python benchmarks/bench_dhlif_sequence.py --projection   # event vs dense projection break-even
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from norse_dh.kernels import kernels_available, plan_for, project
from norse_dh.modules import DHLIF, DHLIFRecurrent

# ----------------------------------------------------------------------------------------------------------------
# Reference formulation (re-implemented from the reference code; comments give its file and lines)
# ----------------------------------------------------------------------------------------------------------------
GAMMA, LENS, HIGHT, SCALE, R_M = 0.5, 0.5, 0.15, 6.0, 1.0  # spike_neuron.py l.11-13, 37-38


def _gaussian(x: Tensor, mu: float = 0.0, sigma: float = 0.5) -> Tensor:  # spike_neuron.py l.20-22
    return torch.exp(-((x - mu) ** 2) / (2 * sigma**2)) / torch.sqrt(2 * torch.tensor(math.pi)) / sigma


class ActFunADP(torch.autograd.Function):  # spike_neuron.py l.26-56, surrograte_type = 'MG'
    @staticmethod
    def forward(ctx, inp):
        ctx.save_for_backward(inp)
        return inp.gt(0).float() if inp.dtype == torch.float32 else inp.gt(0).to(inp.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (inp,) = ctx.saved_tensors
        grad_input = grad_output.clone()
        temp = (
            _gaussian(inp, mu=0.0, sigma=LENS) * (1.0 + HIGHT)
            - _gaussian(inp, mu=LENS, sigma=SCALE * LENS) * HIGHT
            - _gaussian(inp, mu=-LENS, sigma=SCALE * LENS) * HIGHT
        )
        return grad_input * temp.float() * GAMMA if inp.dtype == torch.float32 else grad_input * temp * GAMMA


def mem_update_pra(inputs, mem, spike, v_th, tau_m):  # spike_neuron.py l.60-69 (soft reset)
    alpha = torch.sigmoid(tau_m)
    mem = mem * alpha + (1 - alpha) * R_M * inputs - v_th * spike
    inputs_ = mem - v_th
    spike = ActFunADP.apply(inputs_)
    return mem, spike


class ReferenceDHLayer(nn.Module):
    """``spike_dense_test_denri_wotanh_R`` (recurrent=False) / ``spike_rnn_test_denri_wotanh_R`` (recurrent=True)."""

    def __init__(self, ours: DHLIF | DHLIFRecurrent, recurrent: bool) -> None:
        super().__init__()
        d = ours.dendrites
        self.recurrent = recurrent
        self.input_dim, self.output_dim, self.branch = ours.input_size, ours.hidden_size, ours.branches
        width = d.weight.shape[1]
        used = self.input_dim + (self.output_dim if recurrent else 0)
        self.pad = width - used
        self.dense = nn.Linear(width, self.output_dim * self.branch)  # l.82 / spike_rnn.py l.125
        with torch.no_grad():
            self.dense.weight.copy_(d.masked_weight())  # apply_mask(): weight.data * mask (l.141-142)
            self.dense.bias.copy_(d.bias)
        self.tau_n = nn.Parameter(ours.dend_tau_raw.detach().clone())
        self.tau_m = nn.Parameter(ours.soma_tau_raw.detach().clone())
        self.v_th = 1.0

    def set_neuron_state(self, batch: int) -> None:  # l.109-119 with zero state (project default)
        self.mem = torch.zeros(batch, self.output_dim)
        self.spike = torch.zeros(batch, self.output_dim)
        self.d_input = torch.zeros(batch, self.output_dim, self.branch)

    def forward(self, input_spike: Tensor) -> Tensor:  # l.143-156 / spike_rnn.py l.169-182
        beta = torch.sigmoid(self.tau_n)
        padding = torch.zeros(input_spike.size(0), self.pad)
        if self.recurrent:
            k_input = torch.cat((input_spike.float(), self.spike, padding), 1)
        else:
            k_input = torch.cat((input_spike.float(), padding), 1)
        self.d_input = beta * self.d_input + (1 - beta) * self.dense(k_input).reshape(-1, self.output_dim, self.branch)
        l_input = self.d_input.sum(dim=2, keepdim=False)
        self.mem, self.spike = mem_update_pra(l_input, self.mem, self.spike, self.v_th, self.tau_m)
        return self.spike


def reference_run(layer: ReferenceDHLayer, x: Tensor) -> Tensor:
    """The reference scripts' Python time loop (``SHD/main_dense_denri.py:83-92``)."""
    layer.set_neuron_state(x.shape[1])
    return torch.stack([layer(x_t) for x_t in x.unbind(0)])


# ----------------------------------------------------------------------------------------------------------------
# Benchmark driver
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Shape:
    name: str
    B: int
    T: int
    M: int
    N: int
    D: int
    density: float
    mask: str = "random"
    recurrent: bool = False


CLOCK = {"cpu": time.process_time, "wall": time.perf_counter}
clock = time.process_time


def _median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1e3


def peak_memory_mb(fn) -> float:
    """Peak of live tensor memory during ``fn()`` (MB): allocations and frees recorded by the profiler, attributed
    to the op in which they happen (``self_cpu_memory_usage``), accumulated in time order."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.events() if e.self_cpu_memory_usage != 0]
    events.sort(key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak / 2**20


def _inputs(s: Shape, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(s.T, s.B, s.M, generator=g) < s.density).float()


def _loss_weights(s: Shape) -> Tensor:
    return torch.randn(s.T, s.B, s.N, generator=torch.Generator().manual_seed(1))


def bench_shape(s: Shape, reps: int, memory: bool, forward_only: bool = False) -> dict:
    torch.manual_seed(0)
    cls = DHLIFRecurrent if s.recurrent else DHLIF
    ours = cls(s.M, s.N, branches=s.D, mask=s.mask, dend_tau_init="large", v_th=1.0, seed=0)
    with torch.no_grad():
        ours.dendrites.weight.mul_(40.0)  # drive for 1-10 % hidden firing rates (printed as "rate")
    ours.check_finite = False
    ref = ReferenceDHLayer(ours, s.recurrent)
    x = _inputs(s)
    w_out = _loss_weights(s)
    w_eff = ours.dendrites.masked_weight()[:, : s.M].detach().clone().requires_grad_()
    g_out = torch.randn(s.T * s.B, s.N * s.D)

    def run_ours():
        if forward_only:
            with torch.no_grad():
                return ours(x)[0]
        z, _ = ours(x)
        (z * w_out).sum().backward()
        return z

    def run_ref():
        if forward_only:
            with torch.no_grad():
                return reference_run(ref, x)
        z = reference_run(ref, x)
        (z * w_out).sum().backward()
        return z

    x2 = x.reshape(-1, s.M)

    def run_floor():
        out = x2 @ w_eff.t()
        if not forward_only:
            _ = g_out.t() @ x2  # the weight-gradient product
        return out

    variants = {"reference": run_ref, "ours": run_ours, "dense floor": run_floor}
    for fn in variants.values():  # warm-up (builds the kernels and the mask plan)
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(reps):
        for k, fn in variants.items():
            ours.zero_grad(set_to_none=True)
            ref.zero_grad(set_to_none=True)
            t0 = clock()
            fn()
            times[k].append(clock() - t0)
    res = {k: _median_ms(v) for k, v in times.items()}
    with torch.no_grad():
        z_ours = ours(x)[0]
        res["rate"] = float(z_ours.mean())
        res["spikes equal"] = bool(torch.equal(z_ours, reference_run(ref, x)))
    if memory:
        res["mem ours"] = peak_memory_mb(run_ours)
        res["mem reference"] = peak_memory_mb(run_ref)
    return res


def bench_d1_vs_norse(B: int, T: int, M: int, N: int, density: float, reps: int) -> dict:
    """D = 1 DH-LIF layer against nn.Linear + Norse's LIF (same width), forward + backward."""
    from norse.torch import LIF, LIFParameters

    torch.manual_seed(0)
    s = Shape("d1", B, T, M, N, 1, density)
    ours = DHLIF(M, N, branches=1, seed=0)
    ours.check_finite = False
    lin = nn.Linear(M, N)
    lif = LIF(LIFParameters(v_th=torch.tensor(0.1)))
    x, w_out = _inputs(s), _loss_weights(s)

    def run_ours():
        z, _ = ours(x)
        (z * w_out).sum().backward()

    def run_norse():
        z, _ = lif(lin(x))
        (z * w_out).sum().backward()

    variants = {"norse LIF": run_norse, "ours D=1": run_ours}
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(reps):
        for k, fn in variants.items():
            t0 = clock()
            fn()
            times[k].append(clock() - t0)
    return {k: _median_ms(v) for k, v in times.items()}


def bench_projection(reps: int) -> None:
    """Event-driven vs dense vs shared-pattern projection (forward + weight gradient) across input densities."""
    R, M, N, D = 16000, 700, 64, 4
    layers = {"random": DHLIF(M, N, branches=D, seed=0), "grouped": DHLIF(M, N, branches=D, mask="grouped", seed=0)}
    g = torch.randn(R, N * D)
    print(f"projection {R}x{M} -> {N}x{D}, forward + weight gradient, ms (median of {reps})")
    print(f"{'density':>8} {'dense':>8} {'events':>8} {'shared(grouped)':>16}")
    for dens in (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5):
        x = (torch.rand(R, M) < dens).float()

        def run(path, layer, x=x):
            d = layer.dendrites
            d.weight.grad = None
            out, used = project(x, d.weight, d.bias, plan_for(d.mask, M, D), mask=d.mask, branches=D, path=path)
            assert used == path
            out.backward(g)

        fns = {
            "dense": lambda: run("dense", layers["random"]),
            "events": lambda: run("events", layers["random"]),
            "shared": lambda: run("shared", layers["grouped"]),
        }
        times: dict[str, list[float]] = {k: [] for k in fns}
        for fn in fns.values():
            fn()
        for _ in range(reps):
            for k, fn in fns.items():
                t0 = clock()
                fn()
                times[k].append(clock() - t0)
        m = {k: _median_ms(v) for k, v in times.items()}
        print(f"{dens:8.2f} {m['dense']:8.1f} {m['events']:8.1f} {m['shared']:16.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, 2 repetitions (CI)")
    ap.add_argument("--full", action="store_true", help="also the B=100, T=1000, D=8 shape")
    ap.add_argument("--projection", action="store_true", help="event vs dense projection break-even only")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--clock", choices=sorted(CLOCK), default="cpu", help="process CPU time (default) or wall time")
    args = ap.parse_args()
    global clock
    clock = CLOCK[args.clock]
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, fused kernels: {kernels_available()}, "
        f"clock: {args.clock}"
    )
    if args.projection:
        bench_projection(args.reps or 3)
        return
    if args.quick:
        shapes = [
            Shape("SHD-like small", 8, 50, 100, 16, 4, 0.05),
            Shape("XOR-like small", 50, 40, 40, 16, 2, 0.1, mask="contiguous"),
            Shape("DH-SRNN small", 8, 50, 100, 16, 2, 0.05, recurrent=True),
        ]
        reps = args.reps or 2
    else:
        shapes = [
            Shape("SHD 5%", 64, 250, 700, 64, 4, 0.05),
            Shape("SHD 1%", 64, 250, 700, 64, 4, 0.01),
            Shape("SHD 20%", 64, 250, 700, 64, 4, 0.20),
            Shape("SHD grouped 5%", 64, 250, 700, 64, 4, 0.05, mask="grouped"),
            Shape("XOR", 500, 100, 40, 16, 2, 0.1, mask="contiguous"),
            Shape("DH-SRNN 5%", 64, 250, 700, 64, 2, 0.05, recurrent=True),
        ]
        if args.full:
            shapes.append(Shape("SHD script T=1000 D=8", 100, 1000, 700, 64, 8, 0.02))
        reps = args.reps or 5
    head = (
        f"{'shape':24} {'B':>4} {'T':>5} {'M->N':>9} {'D':>2} {'dens':>5} {'mask':>10} | {'ref ms':>8} {'ours ms':>8}"
    )
    head += f" {'floor ms':>8} | {'ref/ours':>8} {'ours/floor':>10} | {'mem ref MB':>10} {'mem ours MB':>11} spikes=="
    print(head)
    for s in shapes:
        r = bench_shape(s, reps, memory=not args.no_memory)
        mn = f"{s.M}{'+' + str(s.N) if s.recurrent else ''}->{s.N}"
        print(
            f"{s.name:24} {s.B:4d} {s.T:5d} {mn:>9} {s.D:2d} {s.density:5.2f} {s.mask:>10} | "
            f"{r['reference']:8.1f} {r['ours']:8.1f} {r['dense floor']:8.1f} | {r['reference'] / r['ours']:8.2f} "
            f"{r['ours'] / r['dense floor']:10.2f} | {r.get('mem reference', float('nan')):10.1f} "
            f"{r.get('mem ours', float('nan')):11.1f} {r['spikes equal']} (rate {r['rate']:.3f})",
            flush=True,
        )
    fshape = shapes[0]
    r = bench_shape(fshape, reps, memory=False, forward_only=True)
    print(
        f"forward only ({fshape.name}): reference {r['reference']:.1f} ms, ours {r['ours']:.1f} ms, "
        f"ratio {r['reference'] / r['ours']:.2f}"
    )
    x = _inputs(fshape)
    t_check = []
    for _ in range(reps):
        t0 = clock()
        bool(torch.isfinite(x).all())
        t_check.append(clock() - t0)
    print(f"default NaN/inf input check of the layers ({fshape.name} input): {_median_ms(t_check):.1f} ms per call")
    if args.quick:
        d1 = bench_d1_vs_norse(8, 50, 100, 16, 0.05, reps)
    else:
        d1 = bench_d1_vs_norse(64, 250, 700, 64, 0.05, reps)
    print(
        f"D=1 layer vs nn.Linear + norse LIF (fwd+bwd): norse {d1['norse LIF']:.1f} ms, ours {d1['ours D=1']:.1f} ms,"
        f" ratio {d1['norse LIF'] / d1['ours D=1']:.2f}"
    )


if __name__ == "__main__":
    main()

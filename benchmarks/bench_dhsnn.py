"""Training-step speed of the norse-dh DH-SNN layers (issue 3): per-step baseline, Norse's LIF, ours, dense floor.

For every shape of the issue, forward + backward of one layer (loss = weighted sum of the output spikes), ms per
training step of:

- (a) ``per-step``: a faithful re-implementation of the reference DH-SFNN / DH-SRNN step (eva1801/DH-SNN
  ``SHD/SNN_layers/spike_dense.py:143-156``, ``spike_rnn.py:169-182``): per step ``torch.cat`` zero padding (and the
  previous spikes for DH-SRNN), one dense Linear over the masked ``(N*D) x (M+pad)`` weight, ``sigmoid(tau)``
  recomputed, the branch and soma updates and the ``ActFun_adp`` multi-Gaussian surrogate, looped in Python;
- (b) ``norse LIF``: Norse's vanilla layer of the same width, ``nn.Linear(M, N)`` over the sequence + ``norse.torch.LIF``
  (DH-SRNN: ``norse.torch.LIFRecurrent(M, N)``);
- (c) ``ours``: ``norse_dh.modules.DHLIF`` / ``DHLIFRecurrent`` (the fast path of ``norse_dh.kernels``: for sparse
  input below the event break-even the fused DH-SFNN kernel of ``norse_dh/kernels/fused.py``, else projection + loop);
- (d) ``dense floor``: the forward product of all steps and its weight-gradient product alone, over the masked
  ``(N*D) x M`` weight (what any dense implementation must at least do);

with the peak tensor memory of one step of (a), (b), (c) (profiler memory events), the ratios, and the issue's
targets checked at the end. Timings interleave the variants (a, b, c, d, a, b, ...) so machine contention hits all
equally; medians are printed. The default clock is the process CPU time (``--clock cpu``): with one thread it is
the work done, and it stays meaningful on a shared, oversubscribed machine where wall-clock times inflate with the
load; ``--clock wall`` gives wall time. ``ours`` runs with ``check_finite = False`` (the reference has no such
check); the cost of the layers' default NaN/inf input check is printed separately.

    python benchmarks/bench_dhsnn.py               # all shapes but B=100, T=1000, D=8; ~1-2 min on 1 thread
    python benchmarks/bench_dhsnn.py --full        # adds the B=100, T=1000, 700->64, D=8, 2 % shape (slow)
    python benchmarks/bench_dhsnn.py --only XOR    # shapes whose name contains XOR
    python benchmarks/bench_dhsnn.py --quick       # CI-size shapes, a few seconds
    python benchmarks/bench_dhsnn.py --projection  # event vs dense vs shared projection break-even
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from norse_dh.kernels import kernels_available, plan_for, project
from norse_dh.modules import DHLIF, DHLIFRecurrent
from norse_dh.modules.soma import check_input

# ----------------------------------------------------------------------------------------------------------------
# (a) Per-step baseline: the reference formulation (re-implemented from the reference code; comments give its lines)
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


def _interleaved(variants: dict, reps: int, before=None) -> dict[str, float]:
    """Median ms per call of each variant, timed round-robin (a, b, c, a, b, c, ...) after one warm-up call each."""
    for fn in variants.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(reps):
        for k, fn in variants.items():
            if before is not None:
                before()
            t0 = clock()
            fn()
            times[k].append(clock() - t0)
    return {k: _median_ms(v) for k, v in times.items()}


def _norse_layer(s: Shape) -> nn.Module:
    """Norse's vanilla LIF layer of the same width: Linear + LIF (DH-SRNN: LIFRecurrent), time-first."""
    from norse.torch import LIF, LIFParameters, LIFRecurrent

    p = LIFParameters(v_th=torch.tensor(0.1))
    if s.recurrent:
        return LIFRecurrent(s.M, s.N, p)
    lin, lif = nn.Linear(s.M, s.N), LIF(p)

    class _LinLIF(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin, self.lif = lin, lif

        def forward(self, x: Tensor) -> tuple[Tensor, object]:
            return self.lif(self.lin(x))

    return _LinLIF()


def bench_shape(s: Shape, reps: int, memory: bool, forward_only: bool = False) -> dict:
    torch.manual_seed(0)
    cls = DHLIFRecurrent if s.recurrent else DHLIF
    ours = cls(s.M, s.N, branches=s.D, mask=s.mask, dend_tau_init="large", v_th=1.0, seed=0)
    with torch.no_grad():
        ours.dendrites.weight.mul_(40.0)  # drive for 1-10 % hidden firing rates (printed as "rate")
    ours.check_finite = False
    ref = ReferenceDHLayer(ours, s.recurrent)
    norse = _norse_layer(s)
    x = _inputs(s)
    w_out = _loss_weights(s)
    w_eff = ours.dendrites.masked_weight()[:, : s.M].detach().clone().requires_grad_()
    g_out = torch.randn(s.T * s.B, s.N * s.D)

    def train_step(fn):
        def run():
            if forward_only:
                with torch.no_grad():
                    return fn()
            z = fn()
            (z * w_out).sum().backward()
            return z

        return run

    x2 = x.reshape(-1, s.M)

    def run_floor():
        out = x2 @ w_eff.t()
        if not forward_only:
            _ = g_out.t() @ x2  # the weight-gradient product
        return out

    variants = {
        "per-step": train_step(lambda: reference_run(ref, x)),
        "norse LIF": train_step(lambda: norse(x)[0]),
        "ours": train_step(lambda: ours(x)[0]),
        "dense floor": run_floor,
    }

    def zero():
        for m in (ours, ref, norse):
            m.zero_grad(set_to_none=True)

    res = _interleaved(variants, reps, before=zero)
    with torch.no_grad():
        z_ours = ours(x)[0]
        res["rate"] = float(z_ours.mean())
        res["spikes equal"] = bool(torch.equal(z_ours, reference_run(ref, x)))
    if memory:
        # The profiler's event log of the Python time loops (a), (b) at T*B >= 1e5 (the T=1000 shape) outgrows the
        # machine's memory and the process is killed, so there only (c) is profiled.
        for k in ("per-step", "norse LIF", "ours") if s.T * s.B < 100_000 else ("ours",):
            zero()
            res["mem " + k] = peak_memory_mb(variants[k])
    return res


def bench_d1_vs_norse(s: Shape, reps: int) -> dict:
    """D = 1 DH-LIF layer against nn.Linear + Norse's LIF (same width), forward + backward."""
    torch.manual_seed(0)
    ours = DHLIF(s.M, s.N, branches=1, seed=0)
    ours.check_finite = False
    norse = _norse_layer(s)
    x, w_out = _inputs(s), _loss_weights(s)

    def run_ours():
        z, _ = ours(x)
        (z * w_out).sum().backward()

    def run_norse():
        z, _ = norse(x)
        (z * w_out).sum().backward()

    return _interleaved({"norse LIF": run_norse, "ours D=1": run_ours}, reps)


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
        m = _interleaved(fns, reps)
        print(f"{dens:8.2f} {m['dense']:8.1f} {m['events']:8.1f} {m['shared']:16.1f}", flush=True)


def _shape_str(s: Shape) -> str:
    mn = f"{s.M}{'+' + str(s.N) if s.recurrent else ''}->{s.N}"
    return f"B={s.B}, T={s.T}, {mn}, D={s.D}, {s.mask}, {s.density:.0%}"


def _check(name: str, value: float, op: str, bound: float) -> str:
    ok = value >= bound if op == ">=" else value <= bound
    return f"  [{'met' if ok else 'NOT met'}] {name}: {value:.2f} (target {op} {bound})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, 2 repetitions (CI)")
    ap.add_argument("--full", action="store_true", help="also the B=100, T=1000, D=8 shape")
    ap.add_argument("--only", default=None, help="run only the shapes whose name contains this text")
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
        f"torch {torch.__version__}, {platform.machine()} CPU, threads {torch.get_num_threads()}, "
        f"fused kernels: {kernels_available()}, clock: {args.clock} (median of the interleaved repetitions)"
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
        d1_shape = Shape("D=1", 8, 50, 100, 16, 1, 0.05)
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
        shapes.append(Shape("SHD T=1000 D=8 2%", 100, 1000, 700, 64, 8, 0.02))
        d1_shape = Shape("D=1", 64, 250, 700, 64, 1, 0.05)
        reps = args.reps or 5
    skipped = []
    if not args.quick and not args.full:
        skipped = [s.name for s in shapes if "T=1000" in s.name]
        shapes = [s for s in shapes if "T=1000" not in s.name]
    if args.only:
        shapes = [s for s in shapes if args.only in s.name]
    print(f"ms per training step (forward + backward), {reps} interleaved repetitions; peak tensor memory in MB")
    head = (
        f"| {'shape':18} | {'B, T, M->N, D, mask, density':40} | {'(a) per-step':>12} | {'(b) norse LIF':>13} | "
        f"{'(c) ours':>8} | {'(d) dense floor':>15} | {'a/c':>6} | {'c/d':>5} | {'c/b':>5} | "
        f"{'mem a/b/c MB':>17} | spikes a==c, rate |"
    )
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    results = {}
    for s in shapes:
        r = results[s.name] = bench_shape(s, reps, memory=not args.no_memory)
        mem = "/".join(f"{r.get('mem ' + k, float('nan')):.0f}" for k in ("per-step", "norse LIF", "ours"))
        print(
            f"| {s.name:18} | {_shape_str(s):40} | {r['per-step']:12.1f} | {r['norse LIF']:13.1f} | "
            f"{r['ours']:8.1f} | {r['dense floor']:15.1f} | {r['per-step'] / r['ours']:6.2f} | "
            f"{r['ours'] / r['dense floor']:5.2f} | {r['ours'] / r['norse LIF']:5.2f} | {mem:>17} | "
            f"{r['spikes equal']}, {r['rate']:.3f} |",
            flush=True,
        )
    if skipped:
        print(f"(not run: {', '.join(skipped)}; pass --full to include it)")
    fshape = next((s for s in shapes if s.name.startswith("SHD 5")), shapes[0])
    fwd = bench_shape(fshape, reps, memory=False, forward_only=True)
    print(
        f"forward only ({fshape.name}): per-step {fwd['per-step']:.1f} ms, norse LIF {fwd['norse LIF']:.1f} ms, "
        f"ours {fwd['ours']:.1f} ms, dense floor {fwd['dense floor']:.1f} ms; per-step/ours "
        f"{fwd['per-step'] / fwd['ours']:.2f}"
    )
    x = _inputs(fshape)
    probe = DHLIF(fshape.M, fshape.N, branches=fshape.D, seed=0)
    t_check = []
    for _ in range(reps):
        t0 = clock()
        check_input(probe, x, 3, fshape.M, "input sequence")  # what the layers run when check_finite is True
        t_check.append(clock() - t0)
    print(f"default NaN/inf input check of the layers ({fshape.name} input): {_median_ms(t_check):.1f} ms per call")
    d1 = bench_d1_vs_norse(d1_shape, reps)
    print(
        f"D=1 layer vs nn.Linear + norse LIF ({_shape_str(d1_shape)}, fwd+bwd): norse {d1['norse LIF']:.1f} ms, "
        f"ours {d1['ours D=1']:.1f} ms, norse/ours {d1['norse LIF'] / d1['ours D=1']:.2f}"
    )
    if args.quick or args.only:
        return
    print(f"targets of issue 3 (this run, {torch.get_num_threads()} thread(s)):")
    r = results
    checks = [
        ("XOR per-step/ours", r["XOR"]["per-step"] / r["XOR"]["ours"], ">=", 10),
        ("SHD 5% per-step/ours", r["SHD 5%"]["per-step"] / r["SHD 5%"]["ours"], ">=", 2.5),
        ("SHD 5% ours/dense floor", r["SHD 5%"]["ours"] / r["SHD 5%"]["dense floor"], "<=", 0.8),
        ("SHD 20% ours/dense floor", r["SHD 20%"]["ours"] / r["SHD 20%"]["dense floor"], "<=", 1.2),
        ("grouped per-step/ours", r["SHD grouped 5%"]["per-step"] / r["SHD grouped 5%"]["ours"], ">=", 3),
        ("DH-SRNN per-step/ours", r["DH-SRNN 5%"]["per-step"] / r["DH-SRNN 5%"]["ours"], ">=", 2),
        ("D=1 norse/ours", d1["norse LIF"] / d1["ours D=1"], ">=", 1.0),
        ("forward-only SHD per-step/ours", fwd["per-step"] / fwd["ours"], ">=", 3),
    ]
    for c in checks:
        print(_check(*c))


if __name__ == "__main__":
    main()

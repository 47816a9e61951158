"""``run_network``: run a NIR graph on Lava's CPU simulator in a separate worker process, bounded by a timeout.

The graph is read and checked, and (fixed point) quantised, in the calling process, so unsupported graphs and
quantisation warnings surface there without starting Lava. The worker is a fresh interpreter
(``python -m lava_export.worker``) in its own process session: Lava's ``fork`` start method, its one-OS-process-per-
Lava-process runtime and its shared memory never touch the caller (pytest, Lightning scripts, a process where torch
already started threads or CUDA). A worker failure raises :class:`LavaRunError` with the worker's error output; a
worker that runs past ``timeout`` is killed with its whole process group and raises :class:`LavaTimeoutError`.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lava_export.errors import LavaRunError, LavaTimeoutError
from lava_export.network import SPIKING_KINDS, check_inputs, load_blocks
from lava_export.quantize import QuantizedBlock, quantize_block

BACKENDS = ("floating_pt", "fixed_pt")
MAX_INPUT_BYTES = 2**28  # samples per worker run: at most 256 MiB of uint8 input (larger batches run in chunks)
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass
class LavaRunResult:
    """Outputs of a Lava run, aligned step for step with PyTorch (``(B, T, ...)`` per sample, no delay shift).

    Attributes:
        layer_spikes: per spiking layer, ``(B, T, N)`` uint8 spike trains.
        readout: readout values ``(B, T, K)`` float64 in model units (fixed point: dequantised), or None.
        readout_raw: fixed point only: the integer readout membrane (state units), else None.
        layer_names: block names, spiking layers first in order, then the readout if any.
        backend: ``"floating_pt"`` or ``"fixed_pt"``.
        timings: seconds for ``build``, ``compile``, ``init`` (runtime start), ``run``, ``stop`` and ``total``
            (worker start to result, in the caller), the number of Lava ``steps``, ``per_step`` (run / steps),
            ``lanes`` and ``worker_runs`` (summed over the worker runs of a chunked batch).
        quantized: the quantised blocks used (fixed point), else None.
    """

    layer_spikes: list[np.ndarray]
    readout: np.ndarray | None
    readout_raw: np.ndarray | None
    layer_names: list[str]
    backend: str
    timings: dict[str, float] = field(default_factory=dict)
    quantized: list[QuantizedBlock] | None = None

    @property
    def spikes(self) -> np.ndarray:
        """Spikes of the last spiking layer ``(B, T, N)`` (what a readout reads)."""
        return self.layer_spikes[-1]

    output_spikes = spikes


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the worker's process group (Lava's forked children included), then SIGKILL it, then reap the worker.

    The worker is reaped only after the SIGKILL, so its process-group id cannot have been reused in between.
    """
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is not None:
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, ChildProcessError):
        pass
    proc.wait()


def _tail(path: Path, chars: int = 4000) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-chars:].strip()


def run_network(
    graph_or_path,
    inputs: np.ndarray,
    backend: str = "floating_pt",
    timeout: float = 600.0,
    *,
    lanes: int | str = "auto",
    warn: bool = True,
) -> LavaRunResult:
    """Run a norse-dh NIR graph on Lava for a batch of spike inputs; returns spikes and readout values per sample.

    Parameters:
        graph_or_path: ``nir.NIRGraph``, path to a ``.nir`` file, or a list of ``nir_bridge.patterns.Block``.
        inputs: binary spikes of shape ``(B, T, M)`` (batch-first; PyTorch's time-first ``(T, B, M)`` transposed).
            All samples run in one compiled network (lanes side by side, each lane's samples concatenated in time
            with state resets); batches over 256 MiB of input run in several worker runs.
        backend: ``"floating_pt"`` (float64, equal to PyTorch) or ``"fixed_pt"`` (Loihi-style integers, automatic
            quantisation, see :mod:`lava_export.quantize`).
        timeout: seconds for the whole call (worker start, compile, run, stop; all chunks together).
        lanes: samples simulated side by side (block-diagonal copies of the network, see :mod:`lava_export.build`);
            ``"auto"`` picks :func:`auto_lanes`. Outputs do not depend on it, only the time does.
        warn: emit :class:`~lava_export.quantize.QuantizationWarning` for lossy quantisation (fixed point).

    Raises:
        UnsupportedNIRError: the graph has nodes or a topology lava_export cannot map.
        ValueError: bad inputs (shape, non-binary) or backend.
        LavaTimeoutError: the worker ran past ``timeout`` (it and its Lava processes were killed).
        LavaRunError: Lava failed; the message carries the worker's traceback.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not (isinstance(timeout, int | float) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    blocks = load_blocks(graph_or_path)
    x = check_inputs(inputs, blocks[0].input_size)
    quantized = [quantize_block(b, warn=warn) for b in blocks] if backend == "fixed_pt" else None
    if lanes == "auto":
        lanes = auto_lanes(blocks, x.shape[0])
    if not (isinstance(lanes, int | np.integer) and lanes >= 1):
        raise ValueError(f"lanes must be a positive int or 'auto', got {lanes!r}")
    start = time.perf_counter()
    deadline = time.monotonic() + timeout
    b, t, m = x.shape
    per_run = max(1, MAX_INPUT_BYTES // (t * m))  # bounds the memory of one worker
    chunks = []
    for lo in range(0, b, per_run):
        xs = x[lo : lo + per_run]
        what = f"Lava run ({backend}, {xs.shape[0]} samples x {t} steps, {len(blocks)} layers)"
        with tempfile.TemporaryDirectory(prefix="lava_export_") as job_dir:
            write_job(job_dir, blocks, xs, backend, quantized, int(min(lanes, xs.shape[0])))
            chunks.append(run_job(job_dir, timeout, what, deadline=deadline))
    timings: dict[str, float] = {}
    for data in chunks:
        for k, v in zip(data["timing_names"].tolist(), data["timing_values"].tolist()):
            timings[k] = timings.get(k, 0.0) + v
    timings["per_step"] = timings["run"] / timings["steps"]
    timings["total"] = time.perf_counter() - start
    timings["lanes"] = float(min(int(lanes), b))
    timings["worker_runs"] = float(len(chunks))
    spiking = [blk for blk in blocks if blk.kind in SPIKING_KINDS]
    names = [blk.name or f"layer{i}" for i, blk in enumerate(blocks)]

    def cat(key: str):
        return np.concatenate([d[key] for d in chunks]) if key in chunks[0] else None

    return LavaRunResult(
        layer_spikes=[cat(f"spikes_{i}") for i in range(len(spiking))],
        readout=cat("readout"),
        readout_raw=cat("readout_raw"),
        layer_names=names,
        backend=backend,
        timings=timings,
        quantized=quantized,
    )


def auto_lanes(blocks, batch: int, budget: int = 2_000_000) -> int:
    """Lanes for a batch: as many as the batch, while the block-diagonal weights hold at most ``budget`` synapses.

    A step costs Lava's fixed synchronisation overhead plus one sparse product per connection, which grows with
    the synapses held; about 2 million keeps the product below the overhead-dominated regime's few milliseconds."""
    nnz = max(1, sum(int(np.count_nonzero(b.weight)) for b in blocks))
    return max(1, min(batch, budget // nnz))


def write_job(job_dir: str | os.PathLike, blocks, inputs: np.ndarray, backend: str, quantized, lanes: int = 1) -> None:
    """Write the worker's job file ``job.pkl`` (blocks, uint8 inputs, backend, quantised blocks, lanes)."""
    job = {"blocks": blocks, "inputs": inputs, "backend": backend, "quantized": quantized, "lanes": lanes}
    with open(Path(job_dir) / "job.pkl", "wb") as f:
        pickle.dump(job, f)


def run_job(
    job_dir: str | os.PathLike, timeout: float, what: str = "Lava run", deadline: float | None = None
) -> dict[str, np.ndarray]:
    """Run the worker on a prepared job folder; returns the arrays of its ``result.npz``.

    ``deadline`` (``time.monotonic()`` value, default now + ``timeout``) lets several runs share one timeout.

    Polls the worker every 50 ms: a ProcessModel that failed (its ``*.error.txt`` report appears under
    ``records/``) stops the run at once with :class:`LavaRunError` (Lava 0.10 itself would wait forever); past
    ``timeout`` the worker and its Lava processes are killed and :class:`LavaTimeoutError` is raised.
    """
    job = Path(job_dir)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    deadline = time.monotonic() + timeout if deadline is None else deadline
    with open(job / "stdout.txt", "wb") as out, open(job / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lava_export.worker", str(job)],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # own process group: killing it also ends Lava's forked children
        )
        try:
            while True:
                try:
                    rc = proc.wait(timeout=0.05)
                    break
                except subprocess.TimeoutExpired:
                    pass
                reports = sorted((job / "records").glob("*.error.txt"))
                if reports:
                    time.sleep(0.2)  # let the report be written completely
                    _kill_group(proc)
                    raise LavaRunError(
                        f"{what} failed: a Lava process model raised an error; the worker and its Lava processes "
                        f"were stopped.\n{reports[0].name}:\n{_tail(reports[0])}"
                    )
                if time.monotonic() > deadline:
                    _kill_group(proc)
                    raise LavaTimeoutError(
                        f"{what} did not finish within {timeout} s; the worker and its Lava processes were killed. "
                        f"Worker output so far: {_tail(job / 'stderr.txt', 1500) or '(none)'}"
                    )
        except BaseException:
            if proc.returncode is None:
                _kill_group(proc)
            raise
    if rc != 0 or not (job / "result.npz").exists():
        raise LavaRunError(f"{what} failed in its worker process (exit status {rc}):\n{_tail(job / 'stderr.txt')}")
    with np.load(job / "result.npz") as res:
        return {k: res[k] for k in res.files}


__all__ = ["BACKENDS", "LavaRunResult", "auto_lanes", "run_job", "run_network", "write_job"]

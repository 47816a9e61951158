"""Worker entry point of :func:`lava_export.run_network`: ``python -m lava_export.worker JOB_DIR``.

Runs in a fresh interpreter (Lava forces the ``fork`` start method and starts one OS process per Lava process), so
the caller's threads, CUDA context or start method never meet Lava. Reads ``JOB_DIR/job.pkl`` (blocks, quantised
blocks, inputs, backend), builds and runs the network, writes ``JOB_DIR/result.npz`` and exits 0; on failure the
traceback goes to stderr and the exit status is 1. Importing this module has no side effects.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback


def run_job(job_dir: str) -> None:
    """Build, run and save one job (see the module docstring)."""
    import numpy as np

    from lava_export.build import build_network

    with open(os.path.join(job_dir, "job.pkl"), "rb") as f:
        job = pickle.load(f)
    record_dir = os.path.join(job_dir, "records")
    os.makedirs(record_dir, exist_ok=True)
    net = build_network(
        job["blocks"],
        job["inputs"],
        job["backend"],
        record_dir=record_dir,
        quantized=job["quantized"],
        warn=False,
        lanes=job.get("lanes", 1),
    )
    out = net.run()
    arrays = {f"spikes_{i}": s for i, s in enumerate(out["spikes"])}
    if out["readout"] is not None:
        arrays["readout"] = out["readout"]
    if out["readout_raw"] is not None:
        arrays["readout_raw"] = out["readout_raw"]
    timings = out["timings"]
    arrays["timing_names"] = np.array(list(timings))
    arrays["timing_values"] = np.array([float(v) for v in timings.values()])
    tmp = os.path.join(job_dir, "result.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, os.path.join(job_dir, "result.npz"))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m lava_export.worker JOB_DIR", file=sys.stderr)
        return 2
    try:
        run_job(args[0])
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

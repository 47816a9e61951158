"""Sample batching and recording shared by the lava_export process models (NumPy only, no Lava import).

Samples are concatenated in time: a process at pipeline depth ``offset`` (number of connection processes between
the input and it, each adding Lava's one-step delay) sees step ``t`` of sample ``k`` at Lava time step
``offset + k * period + t + 1``. It idles before that, resets its state at every sample start and records its
output of the ``num_samples * period`` valid steps.

Lava 0.10's runtime waits forever when a ProcessModel raises, so the models report failures themselves:
:meth:`SampleClock.report` writes the traceback next to the record (``<record_path>.error.txt``), where the runner
finds it and stops the worker at once instead of waiting for the timeout.
"""

from __future__ import annotations

import traceback

import numpy as np


class SampleClock:
    """Per-process view of the concatenated samples (built from the Process's ``proc_params``)."""

    def __init__(self, proc_params, width: int, dtype) -> None:
        self.period = int(proc_params["period"])
        self.offset = int(proc_params["offset"])
        self.num_steps = int(proc_params["num_steps"])
        self.valid = int(proc_params["num_samples"]) * self.period
        self.path = str(proc_params["record_path"])
        self.record = np.zeros((self.valid, width), dtype=dtype) if self.path else None

    def local(self, time_step: int) -> int:
        """Index of the step within the concatenated samples (negative before the first sample arrives)."""
        return time_step - 1 - self.offset

    def is_sample_start(self, local: int) -> bool:
        return local >= 0 and local % self.period == 0

    def store(self, local: int, time_step: int, values: np.ndarray) -> None:
        """Record ``values`` at a valid step; save the record at the last Lava step."""
        if self.record is None:
            return
        if 0 <= local < self.valid:
            self.record[local] = values
        if time_step == self.num_steps:
            np.save(self.path, self.record)

    def report(self, error: BaseException) -> None:
        """Write ``error``'s traceback to ``<record_path>.error.txt`` (the runner watches for it)."""
        if self.path:
            with open(self.path + ".error.txt", "w") as f:
                f.write("".join(traceback.format_exception(error)))

"""Shared test settings: deterministic hypothesis profile, one torch thread (CI has 2 cores)."""

import os

import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "norse_dh",
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "norse_dh"))
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

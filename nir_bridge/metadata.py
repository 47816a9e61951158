"""Graph-level metadata written by the exporter and checked by the importer (plain dicts, HDF5-safe: no ``None``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from nir_bridge.patterns import DISCRETIZATION, FORMAT_VERSION

NORSE_KEY = "norse_module"  # tag of a bare standard node that stands for a Norse module (LIF, LI, LIFBoxCell, ...)
CONTAINERS = ("SequentialSNN", "single")


def graph_metadata(dt: float, version: str, container: str) -> dict[str, Any]:
    """Top-level metadata: ``dt``, ``discretization``, ``format``, ``norse_dh_version`` and ``container``."""
    if container not in CONTAINERS:
        raise ValueError(f"container must be one of {CONTAINERS}, got {container!r}")
    return {
        "dt": float(dt),
        "discretization": DISCRETIZATION,
        "format": FORMAT_VERSION,
        "norse_dh_version": version,
        "container": container,
    }


def find_none(meta: Any, path: str = "metadata") -> list[str]:
    """Paths of ``None`` values inside a (nested) metadata dict: HDF5 cannot store them."""
    if meta is None:
        return [path]
    if isinstance(meta, dict):
        return [p for k, v in meta.items() for p in find_none(v, f"{path}[{k!r}]")]
    return []


def scalar(meta: dict, key: str, default: Any = None) -> Any:
    """A metadata value as a Python scalar (HDF5 gives back numpy scalars)."""
    if key not in meta:
        return default
    value = meta[key]
    if isinstance(value, np.ndarray | np.generic):
        return value.item() if value.size == 1 else value
    return value

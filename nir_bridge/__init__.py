"""NIR bridge: norse-dh models to and from NIR graphs of standard nodes, exactly.

- :func:`export_model` (model, dt) -> ``nir.NIRGraph``; :func:`write_nir` writes it atomically;
- :func:`read_nir` reads a file with clear errors; :func:`import_graph` rebuilds a runnable module.

The encoding (which standard nodes a DH-LIF layer becomes, and the metadata) is :mod:`nir_bridge.patterns`, the
pure NIR + NumPy contract shared with ``lava_export``. Names are imported lazily so that
``import nir_bridge.patterns`` pulls in neither torch nor norse_dh.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "export_model": "nir_bridge.export",
    "read_nir": "nir_bridge.io",
    "write_nir": "nir_bridge.io",
    "import_graph": "nir_bridge.load",
    "StandardGraph": "nir_bridge.load",
    "Block": "nir_bridge.patterns",
    "PatternError": "nir_bridge.patterns",
    "read_blocks": "nir_bridge.patterns",
    "recognise_block": "nir_bridge.patterns",
    "NIRBridgeError": "nir_bridge.errors",
    "NIRFileError": "nir_bridge.errors",
    "UnsupportedModuleError": "nir_bridge.errors",
    "UnsupportedNodeError": "nir_bridge.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'nir_bridge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)

"""lava_export: run norse-dh NIR graphs as Lava processes, in floating point and Loihi-style fixed point.

NIR is the contract: this package reads NIR graphs (``nir_bridge.patterns``) and never imports torch or norse_dh.
``compat`` (the Python 3.11 shim) is imported first, before anything can import Lava.

Public API:
    run_network(graph_or_path, inputs, backend="floating_pt", timeout=600.0) -> LavaRunResult
        the safe entry point: Lava runs in a worker process, bounded by the timeout.
    build_network(...)  (lava_export.build; imports Lava, for use inside a process dedicated to Lava)
    load_blocks, resource_report, quantize_block, errors.
"""

from lava_export import compat  # noqa: F401  (must stay first: Python 3.11 shim before any lava import)
from lava_export.errors import LavaExportError, LavaRunError, LavaTimeoutError, UnsupportedNIRError
from lava_export.network import load_blocks
from lava_export.quantize import QuantizationWarning, QuantizedBlock, QuantizedMatrix, quantize_block, quantize_matrix
from lava_export.resources import ResourceReport, resource_report
from lava_export.runner import LavaRunResult, run_network


def build_network(*args, **kwargs):
    """Build Lava processes for a graph and a spike batch (see :func:`lava_export.build.build_network`).

    Imports Lava on first use; Lava forces the ``fork`` start method, so prefer :func:`run_network`, which keeps
    Lava in a worker process.
    """
    from lava_export.build import build_network as _build

    return _build(*args, **kwargs)


__all__ = [
    "LavaExportError",
    "LavaRunError",
    "LavaRunResult",
    "LavaTimeoutError",
    "QuantizationWarning",
    "QuantizedBlock",
    "QuantizedMatrix",
    "ResourceReport",
    "UnsupportedNIRError",
    "build_network",
    "load_blocks",
    "quantize_block",
    "quantize_matrix",
    "resource_report",
    "run_network",
]

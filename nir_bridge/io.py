"""Reading and writing NIR files with clear errors; writes are atomic (temp file in the target folder + rename)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nir

from nir_bridge.errors import NIRFileError
from nir_bridge.metadata import find_none


def _none_values(graph: nir.NIRNode, path: str = "graph") -> list[str]:
    found = find_none(getattr(graph, "metadata", {}) or {}, f"{path}.metadata")
    for name, node in getattr(graph, "nodes", {}).items():
        found += _none_values(node, f"{path}.{name}")
    return found


def write_nir(graph: nir.NIRGraph, path: str | os.PathLike) -> Path:
    """Write ``graph`` to ``path`` (HDF5, gzip) atomically; returns the path.

    The graph goes to a temporary file next to ``path`` which is renamed over it only after ``nir.write`` finished,
    so an existing file is never half overwritten and a failure leaves no new file behind.

    Raises:
        TypeError: ``graph`` is not a ``nir.NIRGraph``.
        NIRFileError: the folder does not exist or is not writable, metadata holds ``None``, or writing failed.
    """
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"write_nir expects a nir.NIRGraph, got {type(graph).__name__}")
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise NIRFileError(f"cannot write NIR graph to {path}: it is a directory, expected a file path like model.nir")
    if not folder.is_dir():
        raise NIRFileError(f"cannot write NIR graph to {path}: folder {folder} does not exist or is not a directory")
    if not os.access(folder, os.W_OK):
        raise NIRFileError(f"cannot write NIR graph to {path}: folder {folder} is not writable")
    nones = _none_values(graph)
    if nones:
        raise NIRFileError(f"cannot write NIR graph: HDF5 cannot store None values, found at {', '.join(nones)}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        nir.write(tmp, graph)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, Exception):
            raise NIRFileError(
                f"writing NIR graph to {path} failed ({type(err).__name__}: {err}); no file written"
            ) from err
        raise
    return path


def read_nir(path: str | os.PathLike, type_check: bool = True) -> nir.NIRGraph:
    """Read a NIR file, checking that the shapes of connected nodes fit together (``type_check``).

    Raises:
        FileNotFoundError: no file at ``path``.
        NIRFileError: the file is not HDF5 (corrupt or truncated), is HDF5 without a NIR graph, holds unknown node
            types, or its node shapes do not fit together.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"NIR file {path} does not exist (expected an HDF5 file written by nir.write)")
    if path.is_dir():
        raise NIRFileError(f"NIR path {path} is a directory, expected an HDF5 file written by nir.write")
    import h5py

    try:
        with h5py.File(path, "r") as f:
            keys = set(f.keys())
    except OSError as err:
        raise NIRFileError(f"{path} is not a readable NIR file: not valid HDF5 (truncated or corrupt): {err}") from err
    if "node" not in keys:
        raise NIRFileError(f"{path} is HDF5 but holds no NIR graph (expected a 'node' group, found {sorted(keys)})")
    try:
        graph = nir.read(str(path), type_check=False)
    except (OSError, KeyError, AssertionError, TypeError, AttributeError, ValueError) as err:
        raise NIRFileError(
            f"{path} is not a valid NIR graph ({type(err).__name__}: {err}); the file may be truncated or corrupt, or "
            "use node types unknown to nir"
        ) from err
    if not isinstance(graph, nir.NIRGraph):
        raise NIRFileError(f"{path} holds a single {type(graph).__name__} node, expected a NIRGraph")
    if type_check:
        check_shapes(graph, str(path))
    return graph


def check_shapes(graph: nir.NIRGraph, where: str = "graph") -> None:
    """Run nir's structure and type checks; raise :class:`NIRFileError` with nir's message if shapes do not fit."""
    try:
        graph.validate_structure()
        graph.infer_types()
        graph.check_types()
    except (ValueError, KeyError, AssertionError, TypeError, AttributeError) as err:
        raise NIRFileError(f"{where}: the graph's node shapes or edges do not fit together: {err}") from err

"""On-disk cache of preprocessed data: one directory of ``.npy`` arrays per (sources, settings) key.

- Key: SHA-256 of the dataset name, a format version, the identity of every source file (path, size, mtime in ns;
  or a content hash) and every preprocessing setting. Changing a setting or touching a source gives a new key.
- Atomic: arrays are written into ``.tmp-<key>-<pid>-<random>/`` beside the entry and the directory is renamed into
  place only when complete, so an interrupted run leaves nothing under the final name. An entry that fails to load
  (disk damage, manual edits) is discarded and rebuilt.
- Compact: callers store bits (``np.packbits``), sparse events or small integer/float16 arrays, never dense float64.
- Loaded with ``mmap_mode="r"``: a large cache costs no memory until a batch touches it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

CACHE_FORMAT_VERSION = 1
META_FILE = "meta.json"


def file_identity(path: Path | str, content_hash: bool = False) -> list[Any]:
    """Identity of one source file: [absolute path, size, mtime_ns] or [absolute path, size, sha256]."""
    p = Path(path).resolve()
    st = p.stat()
    if content_hash:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return [str(p), st.st_size, h.hexdigest()]
    return [str(p), st.st_size, st.st_mtime_ns]


def cache_key(
    dataset: str, sources: Iterable[Path | str], settings: Mapping[str, Any], content_hash: bool = False
) -> str:
    """Hex digest identifying preprocessed data: dataset name + format version + source identities + settings."""
    payload = {
        "dataset": dataset,
        "version": CACHE_FORMAT_VERSION,
        "sources": [file_identity(s, content_hash) for s in sources],
        "settings": dict(settings),
    }
    text = json.dumps(payload, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray | tuple | set):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cache setting of type {type(obj).__name__} is not JSON-serialisable: {obj!r}")


def resolve_cache_dir(data_dir: Path | str, cache_dir: Path | str | None) -> Path:
    """``cache_dir`` if given; else ``<data_dir>/.norse_dh_cache`` when writable, else ``~/.cache/norse_dh``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    local = Path(data_dir) / ".norse_dh_cache"
    if os.access(local if local.exists() else Path(data_dir), os.W_OK):
        return local
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "norse_dh"


def _write_entry(tmp: Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
    for name, arr in arrays.items():
        if not name.isidentifier():
            raise ValueError(f"cache array name must be an identifier, got {name!r}")
        arr = np.asarray(arr)
        if arr.dtype == np.float64:
            raise TypeError(f"refusing to cache {name!r} as dense float64; convert to a compact dtype first")
        if arr.dtype == object:
            raise TypeError(f"cache array {name!r} has dtype object; store flat arrays plus offsets instead")
        with open(tmp / f"{name}.npy", "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
    with open(tmp / META_FILE, "w") as fh:
        json.dump({**meta, "arrays": sorted(arrays)}, fh, default=_json_default)
        fh.flush()
        os.fsync(fh.fileno())


def _read_entry(path: Path) -> dict[str, np.ndarray]:
    with open(path / META_FILE) as fh:
        meta = json.load(fh)
    return {name: np.load(path / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in meta["arrays"]}


def cached_arrays(
    cache_root: Path | str,
    name: str,
    key: str,
    build: Callable[[], Mapping[str, np.ndarray]],
    meta: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """Return the arrays stored under ``<cache_root>/<name>-<key[:20]>``, building and storing them on a miss.

    ``build`` is called only on a miss (or when the stored entry is unreadable). Arrays come back memory-mapped.
    """
    root = Path(cache_root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{name}-{key[:20]}"
    if final.is_dir():
        try:
            return _read_entry(final)
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as err:
            warnings.warn(f"discarding unreadable cache entry {final} ({err}); rebuilding", stacklevel=2)
            shutil.rmtree(final, ignore_errors=True)
    arrays = build()
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-{key[:20]}-{os.getpid()}-", dir=root))
    try:
        _write_entry(tmp, arrays, {"key": key, **(meta or {})})
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished the same entry first: keep theirs (identical content by construction).
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _read_entry(final)


def maybe_cached(
    enabled: bool,
    cache_root: Path | str,
    name: str,
    key: str,
    build: Callable[[], Mapping[str, np.ndarray]],
    meta: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """``cached_arrays`` when ``enabled``, else just ``build()`` (no disk access)."""
    if not enabled:
        return {k: np.asarray(v) for k, v in build().items()}
    return cached_arrays(cache_root, name, key, build, meta)

"""Build and load the fused CPU kernels (``_loops.cpp``) on first use.

Choice (measured on the 2-core development machine): a ``torch.utils.cpp_extension`` build includes
``torch/extension.h`` and pybind11 and took 56 s for a one-function module; the kernels here need neither (they work
on raw pointers), so they are compiled with plain ``g++`` into a shared library in about 2-4 s and called through
``ctypes``. The library is cached under the repository's ignored ``build/norse_dh_kernels/`` (or
``~/.cache/norse_dh/kernels`` when the package is installed read-only), keyed by a hash of the source, the flags, the
compiler and the CPU, so a changed source or a different machine rebuilds.

If anything fails (no compiler, a build error, a missing symbol), :func:`load` returns ``None`` once and the layers
use the pure-PyTorch reference path; :func:`build_error` says why. ``NORSE_DH_KERNELS=0`` disables the kernels.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("_loops.cpp")
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-shared", "-fPIC", "-std=c++17"]
# GCC gives up vectorising loops that touch more than 10 possibly-aliasing arrays unless allowed more checks
GCC_FLAGS = ["--param=vect-max-version-for-alias-checks=200"]
ABI = 10

_state: dict = {"lib": None, "tried": False, "error": None, "gemm": {}}


def _cpu_signature() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags"))][:2]
        return "\n".join(lines)
    except OSError:
        return platform.processor()


def cache_dir() -> Path:
    """Where the compiled library is kept: ``<repo>/build/norse_dh_kernels`` if writable, else ``~/.cache``."""
    env = os.environ.get("NORSE_DH_KERNEL_CACHE")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").exists() and os.access(repo, os.W_OK):
        return repo / "build" / "norse_dh_kernels"
    return Path.home() / ".cache" / "norse_dh" / "kernels"


def _compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def _flags(version: str) -> list[str]:
    return FLAGS + (GCC_FLAGS if ("GCC" in version or "g++" in version) and "clang" not in version else [])


def _build(target: Path, cxx: str, flags: list[str]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        cmd = [cxx, *flags, "-o", tmp, str(SOURCE)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            raise RuntimeError(f"kernel build failed ({' '.join(cmd)}):\n{res.stderr[-2000:]}")
        os.replace(tmp, target)  # atomic: concurrent processes never load a half-written library
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _gemm_pointer(name: str) -> int | None:
    """Address of the BLAS ``sgemm_``/``dgemm_`` that ships inside libtorch_cpu (MKL), or None."""
    if name not in _state["gemm"]:
        ptr = None
        try:
            lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
            ptr = ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
        except (OSError, AttributeError):
            ptr = None
        _state["gemm"][name] = ptr
    return _state["gemm"][name]


def gemm_pointer(dtype: torch.dtype) -> int | None:
    return _gemm_pointer("sgemm_" if dtype == torch.float32 else "dgemm_")


def _declare(lib: ctypes.CDLL) -> None:
    i64, i32, p, d = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p, ctypes.c_double
    for suf in ("f32", "f64"):
        getattr(lib, f"dhlif_fwd_{suf}").argtypes = [i64, i64, i64, i64, i32, i32, i32] + [p] * 12
        getattr(lib, f"dhlif_bwd_{suf}").argtypes = [i64, i64, i64, i64, i32, i32] + [p] * 25
        getattr(lib, f"leaky_fwd_{suf}").argtypes = [i64, i64, i64] + [p] * 4
        getattr(lib, f"leaky_bwd_{suf}").argtypes = [i64, i64, i64] + [p] * 9
        getattr(lib, f"events_{suf}").argtypes = [i64, i64, p, p, p, p, p, i64, i64, i64, i64, p]
        getattr(lib, f"events_{suf}").restype = i64
        getattr(lib, f"mg_surrogate_{suf}").argtypes = [i64, p, d, d, d, d, p]
        getattr(lib, f"ev_rows_fwd_{suf}").argtypes = [i64, i64] + [p] * 6
        getattr(lib, f"ev_rows_wgrad_{suf}").argtypes = [i64, i64, i64] + [p] * 6
        getattr(lib, f"dhsfnn_fwd_{suf}").argtypes = [i32] + [i64] * 6 + [p] * 22
        getattr(lib, f"dhsfnn_bwd_{suf}").argtypes = [i32] + [i64] * 7 + [p] * 31
        getattr(lib, f"dhsfnn_narrow_fwd_{suf}").argtypes = [i32] + [i64] * 6 + [p] * 17
        getattr(lib, f"dhsfnn_narrow_bwd_{suf}").argtypes = [i32] + [i64] * 6 + [p] * 27
        getattr(lib, f"dhsfnn_narrow_fwd_{suf}").restype = i32
        getattr(lib, f"dhsfnn_narrow_bwd_{suf}").restype = i32
        for name in (
            "dhlif_fwd",
            "dhlif_bwd",
            "leaky_fwd",
            "leaky_bwd",
            "ev_rows_fwd",
            "ev_rows_wgrad",
            "mg_surrogate",
            "dhsfnn_fwd",
            "dhsfnn_bwd",
        ):
            getattr(lib, f"{name}_{suf}").restype = None
    lib.norse_dh_kernels_abi.restype = i32
    lib.dhsfnn_narrow_group.argtypes = [i64, i64]
    lib.dhsfnn_narrow_group.restype = i32


def load() -> ctypes.CDLL | None:
    """The compiled kernel library (building it on first use), or None if disabled or the build failed."""
    if os.environ.get("NORSE_DH_KERNELS", "1") == "0":
        return None
    if _state["tried"]:
        return _state["lib"]
    _state["tried"] = True
    try:
        cxx = _compiler()
        if cxx is None:
            raise RuntimeError("no C++ compiler found (set CXX or install g++)")
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=60).stdout
        flags = _flags(version)
        key = hashlib.sha256(
            "\0".join([SOURCE.read_text(), " ".join(flags), version, _cpu_signature(), str(ABI)]).encode()
        ).hexdigest()[:16]
        target = cache_dir() / f"norse_dh_loops_{key}.so"
        if not target.exists():
            try:
                _build(target, cxx, flags)
            except RuntimeError:  # e.g. a compiler without -march=native: a portable build (scalar / SSE2 loops)
                _build(target, cxx, [f for f in flags if not f.startswith("-march")])
            for old in target.parent.glob("norse_dh_loops_*.so"):  # libraries of older sources or flags
                if old != target:
                    old.unlink(missing_ok=True)
        lib = ctypes.CDLL(str(target))
        _declare(lib)
        if lib.norse_dh_kernels_abi() != ABI:
            raise RuntimeError("kernel library ABI mismatch")
        _state["lib"] = lib
    except Exception as err:  # any failure means: use the reference path
        _state["error"] = f"{type(err).__name__}: {err}"
        msg = f"norse_dh fused kernels unavailable, using the PyTorch reference loop ({_state['error']})"
        warnings.warn(msg, stacklevel=2)
        _state["lib"] = None
    return _state["lib"]


def build_error() -> str | None:
    """Why the kernels are unavailable (None if they loaded or were never tried)."""
    return _state["error"]


def _reset_for_tests() -> None:
    """Forget the loaded library so the next :func:`load` retries (tests of the fallback)."""
    _state.update(lib=None, tried=False, error=None)

"""Python 3.11 shim for lava-nc 0.10.0 (specs/nir_lava.md §1.2); imported by ``lava_export/__init__`` first.

lava-nc 0.10.0 declares ``python <3.11``. On 3.11 ``import lava.magma.compiler.var_model`` fails with ``ValueError:
mutable default <class 'ByteEncoder'> for field x is not allowed``, because 3.11 rejects unhashable dataclass
defaults and ``CoreEncoder``/``ChipEncoder``/``AxonEncoder`` use a ``ByteEncoder()`` instance as one. The shim makes
``ByteEncoder`` hashable (``unsafe_hash=True``) while that one module is imported, which passes the check and keeps
the 3.10 semantics; site-packages is never modified. It is a no-op on 3.10 and when the module is already loaded.

Importing ``var_model`` does not import Lava's runtime, so it does not set the multiprocessing start method (that
happens on ``import lava.magma.core.process.process``, which only the runner's worker subprocess does).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

_VAR_MODEL = "lava.magma.compiler.var_model"


def install_shim() -> bool:
    """Import Lava's ``var_model`` under the patched ``dataclass``; returns True if Lava is importable."""
    if importlib.util.find_spec("lava") is None:
        return False
    if sys.version_info < (3, 11) or _VAR_MODEL in sys.modules:
        return True
    original = dataclasses.dataclass

    def patched(cls=None, /, **kwargs):
        def wrap(c):
            if c.__module__ == _VAR_MODEL and c.__name__ == "ByteEncoder":
                kwargs.setdefault("unsafe_hash", True)
            return original(c, **kwargs)

        return wrap if cls is None else wrap(cls)

    dataclasses.dataclass = patched
    try:
        importlib.import_module(_VAR_MODEL)
    finally:
        dataclasses.dataclass = original
    return True


LAVA_AVAILABLE = install_shim()

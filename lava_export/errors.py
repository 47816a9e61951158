"""Errors raised by lava_export."""

from __future__ import annotations


class LavaExportError(Exception):
    """Base class of lava_export errors."""


class UnsupportedNIRError(LavaExportError, ValueError):
    """The NIR graph holds a node, block kind or topology that lava_export cannot map to Lava (the message names
    the node and lists what is supported)."""


class LavaRunError(LavaExportError, RuntimeError):
    """The Lava simulation failed in its worker process (the message carries the worker's error output)."""


class LavaTimeoutError(LavaRunError, TimeoutError):
    """The Lava simulation did not finish within the timeout; its worker and Lava processes were killed."""

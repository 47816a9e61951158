"""Errors raised by the NIR bridge (all ``ValueError`` subclasses, so callers may catch broadly)."""

from __future__ import annotations


class NIRBridgeError(ValueError):
    """Base class of every nir_bridge error."""


class UnsupportedModuleError(NIRBridgeError):
    """A model contains a module that has no NIR mapping (the message names it and lists what is supported)."""


class UnsupportedNodeError(NIRBridgeError):
    """A graph contains node types the importer cannot run (the message lists all of them at once)."""


class NIRFileError(NIRBridgeError):
    """A NIR file is missing, unreadable, truncated, corrupt, or holds a graph whose shapes do not fit together."""

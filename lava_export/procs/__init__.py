"""Custom Lava processes of lava_export, one sub-package each (Process in ``process.py``, models in ``models.py``).

Lava's ProcessModel discovery executes every module next to a Process and in its parent package, so these
packages hold nothing else (no tests, no scripts, no side effects on import). The runner bypasses the discovery
altogether with ``exception_proc_model_map`` keyed by Process instance.
"""

"""Lightning data modules, one file per dataset.

Contract shared by every module here: batches are ``(inputs, targets)`` with ``inputs`` float32, batch-first
``(B, T, M)``; ``targets`` int64, either ``(B,)`` (one label per sequence) or ``(B, T)`` per-step labels with ``-100``
on the steps that are not scored. Each module exposes ``input_size``, ``num_classes`` and ``num_steps`` after
construction; the ``norse-dh`` CLI links them to the model's arguments of the same names.
"""

from lightning_tasks.data.xor import IGNORE_INDEX, DelayedXORDataModule, MultiTimescaleXORDataModule

__all__ = ["IGNORE_INDEX", "DelayedXORDataModule", "MultiTimescaleXORDataModule"]

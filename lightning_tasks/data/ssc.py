"""Spiking Speech Commands (SSC): 35 classes, 700 channels, Zenke-lab HDF5 files with an official validation split.

Layout expected in ``data_dir``: ``ssc_train.h5``, ``ssc_valid.h5``, ``ssc_test.h5`` (75 466 / 9 981 / 20 382
samples). Binning and options as for SHD (``lightning_tasks.data.shd``); model selection uses ``ssc_valid.h5``.
"""

from __future__ import annotations

from .base import BatchDataset
from .shd import SpikingAudioDataModule

SSC_SOURCE = "https://zenkelab.org/datasets/ (Cramer et al. 2020, 'Heidelberg spiking data sets'), files ssc_*.h5.gz"


class SSCDataModule(SpikingAudioDataModule):
    """SSC: ``ssc_train.h5`` / ``ssc_valid.h5`` / ``ssc_test.h5``; arguments as ``SHDDataModule`` minus the split."""

    name = "ssc"
    files = {"train": "ssc_train.h5", "val": "ssc_valid.h5", "test": "ssc_test.h5"}
    classes = 35
    source = SSC_SOURCE

    def build_splits(self) -> dict[str, BatchDataset]:
        return {split: self._dataset(self.binned(f)) for split, f in self.files.items()}

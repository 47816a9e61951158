"""Thin ``nn.Module`` wrappers owning the learnable parameters."""

from norse_dh.modules.dendritic_linear import DendriticLinear
from norse_dh.modules.dhlif import DHLIF, DHLIFCell, DHLIFRecurrent, DHLIFRecurrentCell
from norse_dh.modules.plasticity import STDP, STDPLearner
from norse_dh.modules.readout import LeakyReadout, LeakyReadoutCell
from norse_dh.modules.sequential import SequentialSNN, is_stateful
from norse_dh.modules.ssnn import SSNN, SSNNCell, feedforward_mask
from norse_dh.modules.vanilla import VanillaLIF, VanillaLIFCell, VanillaLIFRecurrent, VanillaLIFRecurrentCell

__all__ = [
    "SSNN",
    "SSNNCell",
    "feedforward_mask",
    "STDP",
    "STDPLearner",
    "DHLIF",
    "DHLIFCell",
    "DHLIFRecurrent",
    "DHLIFRecurrentCell",
    "DendriticLinear",
    "LeakyReadout",
    "LeakyReadoutCell",
    "SequentialSNN",
    "VanillaLIF",
    "VanillaLIFCell",
    "VanillaLIFRecurrent",
    "VanillaLIFRecurrentCell",
    "is_stateful",
]

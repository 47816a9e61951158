"""norse-dh: dendritic-heterogeneity LIF neurons and friends for Norse.

>>> from norse_dh import DHLIFCell
"""

from norse_dh.functional import (
    DHLIFParameters,
    DHLIFState,
    MultiGaussianParameters,
    STDPParameters,
    dhlif_step,
    stdp_step,
)
from norse_dh.kernels import kernels_available
from norse_dh.masks import dendritic_mask
from norse_dh.modules import (
    DHLIF,
    SSNN,
    STDP,
    DendriticLinear,
    DHLIFCell,
    DHLIFRecurrent,
    DHLIFRecurrentCell,
    LeakyReadout,
    LeakyReadoutCell,
    SequentialSNN,
    SSNNCell,
    STDPLearner,
    VanillaLIF,
    VanillaLIFCell,
    VanillaLIFRecurrent,
    VanillaLIFRecurrentCell,
)
from norse_dh.noise import SSNNNoise

__version__ = "0.1.0"

__all__ = [
    "SSNN",
    "SSNNCell",
    "SSNNNoise",
    "STDP",
    "STDPLearner",
    "STDPParameters",
    "kernels_available",
    "stdp_step",
    "DHLIF",
    "DHLIFCell",
    "DHLIFParameters",
    "DHLIFRecurrent",
    "DHLIFRecurrentCell",
    "DHLIFState",
    "DendriticLinear",
    "LeakyReadout",
    "LeakyReadoutCell",
    "MultiGaussianParameters",
    "SequentialSNN",
    "VanillaLIF",
    "VanillaLIFCell",
    "VanillaLIFRecurrent",
    "VanillaLIFRecurrentCell",
    "__version__",
    "dendritic_mask",
    "dhlif_step",
]

"""Pure step functions with NamedTuple parameters and states (Norse style)."""

from norse_dh.functional.dhlif import (
    RESET_MODES,
    DHLIFParameters,
    DHLIFState,
    LeakyReadoutState,
    SomaParameters,
    SomaState,
    dendrite_step,
    dhlif_step,
    leaky_readout_step,
    soma_step,
)
from norse_dh.functional.stdp import (
    HomeostasisParameters,
    STDPParameters,
    STDPState,
    adaptive_threshold_step,
    normalise_incoming,
    stdp_initial_state,
    stdp_step,
)
from norse_dh.functional.surrogate import MultiGaussianParameters, heaviside_mg, multi_gaussian_grad, spike_fn

__all__ = [
    "HomeostasisParameters",
    "STDPParameters",
    "STDPState",
    "adaptive_threshold_step",
    "normalise_incoming",
    "stdp_initial_state",
    "stdp_step",
    "RESET_MODES",
    "DHLIFParameters",
    "DHLIFState",
    "LeakyReadoutState",
    "MultiGaussianParameters",
    "SomaParameters",
    "SomaState",
    "dendrite_step",
    "dhlif_step",
    "heaviside_mg",
    "leaky_readout_step",
    "multi_gaussian_grad",
    "soma_step",
    "spike_fn",
]

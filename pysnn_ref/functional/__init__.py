"""Pure forward/backward pairs, CS231n style: ``(out, cache) = f_forward(...)``,
``grads = f_backward(dout, cache)``.  Each function's docstring names its paper and equation."""

from .flows import FlowState, lif_forward_flows, ssf_gain, ssf_R
from .neuron import NeuronParams, lif_backward, lif_forward, make_neuron_params
from .surrogate import Surrogate, get_surrogate
from .synaptic import SynapticParams, make_synaptic_params, synaptic_backward, synaptic_forward

__all__ = [
    "FlowState", "lif_forward_flows", "ssf_gain", "ssf_R",
    "NeuronParams", "lif_backward", "lif_forward", "make_neuron_params",
    "Surrogate", "get_surrogate",
    "SynapticParams", "make_synaptic_params", "synaptic_backward", "synaptic_forward",
]

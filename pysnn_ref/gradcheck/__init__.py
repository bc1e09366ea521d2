"""Gradient checks: every hand-written backward against central finite differences.

==================  ==========================================================================
``finite_diff``     the two primitives: ``numerical_gradient`` and ``rel_error``
``layers``          the layer cases (linear, conv, pooling, batch norm, flatten, add, LSTM)
``networks``        neuron and whole-network cases, method gradients, the FDG cosine, the CLI
``__main__``        ``python -m pysnn_ref.gradcheck``
==================  ==========================================================================
"""

from .finite_diff import numerical_gradient, rel_error
from .layers import layer_gradcheck_cases
from .networks import (
    TOLERANCE,
    all_gradcheck_cases,
    check_neuron,
    cosine,
    cosine_vs,
    finite_difference_gradient,
    main,
    method_gradients,
    named_parameters,
    network_gradcheck_cases,
    neuron_gradcheck_cases,
    preserved_state,
)

__all__ = ["rel_error", "numerical_gradient", "check_neuron", "neuron_gradcheck_cases",
           "named_parameters", "method_gradients", "finite_difference_gradient", "cosine",
           "cosine_vs", "network_gradcheck_cases", "layer_gradcheck_cases",
           "all_gradcheck_cases", "main", "TOLERANCE", "preserved_state"]

"""Gradient checks: every hand-written backward against central finite differences (float64).

``numerical_gradient(f, x, df)`` perturbs each element of ``x`` by ``±h`` and returns
``Σ (f(x+h) − f(x−h)) · df / 2h`` -- the gradient of ``<f(x), df>`` with respect to ``x``,
which is exactly what a hand-written backward returns for upstream gradient ``df``.
``rel_error`` is the largest difference relative to the arrays' scale,
``max|a−b| / max(1e-8, max|a| + max|b|)``.

==================  ==========================================================================
``finite_diff``     the two primitives ``numerical_gradient`` and ``rel_error``; ``TOLERANCE``
``layers``          the layer cases (linear, conv, pooling, batch norm, flatten, add, LSTM)
``neurons``         the spiking neurons' cases (LIF / IF and the current-based LIF: every reset x
                    surrogate x lam)
``networks``        whole networks: method gradients, the FDG, network cases
``cosine``          gradient cosine similarity vs BPTT or the FDG (Dspike Sec. 4.2)
``online``          OTTT / SLTT networks vs their cut per-step objective
``__main__``        ``python -m pysnn_ref.gradcheck``: all of the above, one row per case
==================  ==========================================================================
"""

from .cosine import cosine, cosine_vs
from .finite_diff import TOLERANCE, numerical_gradient, rel_error
from .layers import layer_gradcheck_cases
from .networks import (
    PreservedState,
    encode_once,
    finite_difference_gradient,
    method_gradients,
    network_gradcheck_cases,
)
from .neurons import check_neuron, check_synaptic, neuron_gradcheck_cases

__all__ = ["TOLERANCE", "rel_error", "numerical_gradient", "check_neuron", "check_synaptic",
           "neuron_gradcheck_cases", "method_gradients", "finite_difference_gradient", "cosine",
           "cosine_vs", "network_gradcheck_cases", "layer_gradcheck_cases", "PreservedState",
           "encode_once"]

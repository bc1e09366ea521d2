"""The spiking neurons' gradient checks: :func:`~pysnn_ref.functional.neuron.lif_backward` and
the current-based neuron's :func:`~pysnn_ref.functional.synaptic.synaptic_backward` vs central
finite differences of the smooth-mode forward, for every reset x surrogate x (lam < 1, lam = 1),
float64.
"""

from __future__ import annotations

import numpy as np

from ..backend import get_backend, to_numpy
from ..functional.neuron import lif_backward, lif_forward
from ..functional.surrogate import SURROGATE_KINDS
from ..functional.synaptic import synaptic_backward, synaptic_forward
from .finite_diff import numerical_gradient, rel_error

__all__ = ["check_neuron", "check_synaptic", "neuron_gradcheck_cases"]

# --------------------------------------------------------------------------------------------
# Neuron checks: every reset x surrogate x (lam < 1, lam = 1), smooth mode, float64.
# --------------------------------------------------------------------------------------------

def check_neuron(reset: str, surrogate: str, lam: float, *, T: int = 5, shape: tuple = (3, 4),
                 v_th: float = 1.0, detach_reset: bool = False, seed: int = 0,
                 device: str = "cpu") -> float:
    """Max relative error between :func:`lif_backward` and finite differences of the smooth
    forward, for a loss ``sum(o * G)`` with random G.  The analytic gradient runs on
    ``device``; the finite differences always run on the CPU in float64."""
    rng = np.random.default_rng(seed)
    I = rng.normal(0.6, 0.8, size=(T, *shape))
    G = rng.normal(size=(T, *shape))
    kw = dict(lam=lam, v_th=v_th, reset=reset, surrogate=surrogate, smooth=True,
              detach_reset=detach_reset)
    be = get_backend(device)
    o, cache = lif_forward(be.asarray(I), **kw)
    dI = to_numpy(lif_backward(be.asarray(G), cache))
    num = numerical_gradient(lambda: lif_forward(I, **kw)[0], I, G)
    return rel_error(dI, num)


def check_synaptic(reset: str, surrogate: str, alpha: float, lam: float, *, T: int = 6,
                   shape: tuple = (3, 4), v_th: float = 1.0, seed: int = 0,
                   device: str = "cpu") -> float:
    """Max relative error between :func:`synaptic_backward` (current-based LIF, two adjoints)
    and finite differences of the smooth forward, for the loss ``sum(o * G)`` with random G
    (float64; the finite differences on the CPU)."""
    rng = np.random.default_rng(seed)
    I = rng.normal(0.3, 0.6, size=(T, *shape))
    G = rng.normal(size=(T, *shape))
    kw = dict(alpha=alpha, lam=lam, v_th=v_th, reset=reset, surrogate=surrogate, smooth=True)
    be = get_backend(device)
    o, cache = synaptic_forward(be.asarray(I), **kw)
    dI = to_numpy(synaptic_backward(be.asarray(G), cache))
    num = numerical_gradient(lambda: synaptic_forward(I, **kw)[0], I, G)
    return rel_error(dI, num)


def neuron_gradcheck_cases(device: str = "cpu") -> list[tuple[str, str, float]]:
    """(case, parameter, max rel. error) for every neuron configuration: LIF / IF, and the
    current-based LIF (every surrogate at alpha = 0.6, lam = 0.8; alpha = lam = 1)."""
    rows = []
    for reset in ("hard", "soft"):
        for sg in SURROGATE_KINDS:
            for lam in (0.8, 1.0):
                name = f"{'LIF' if lam < 1 else 'IF'} reset={reset} surrogate={sg} lam={lam}"
                rows.append((name, "I", check_neuron(reset, sg, lam, device=device)))
    for reset in ("hard", "soft"):
        for sg, alpha, lam in [*((s, 0.6, 0.8) for s in SURROGATE_KINDS), ("sigmoid", 1.0, 1.0)]:
            name = f"SynapticLIF reset={reset} surrogate={sg} alpha={alpha} lam={lam}"
            rows.append((name, "I", check_synaptic(reset, sg, alpha, lam, device=device)))
    return rows

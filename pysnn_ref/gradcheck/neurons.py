"""The spiking neuron's gradient checks: :func:`~pysnn_ref.functional.neuron.lif_backward` vs
central finite differences of the smooth-mode forward, for every reset x surrogate x
(lam < 1, lam = 1), float64.
"""

from __future__ import annotations

import numpy as np

from ..backend import get_backend, to_numpy
from ..functional.neuron import lif_backward, lif_forward
from ..functional.surrogate import SURROGATE_KINDS
from .finite_diff import numerical_gradient, rel_error

__all__ = ["check_neuron", "neuron_gradcheck_cases"]

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


def neuron_gradcheck_cases(device: str = "cpu") -> list[tuple[str, str, float]]:
    """(case, parameter, max rel. error) for every neuron configuration."""
    rows = []
    for reset in ("hard", "soft"):
        for sg in SURROGATE_KINDS:
            for lam in (0.8, 1.0):
                name = f"{'LIF' if lam < 1 else 'IF'} reset={reset} surrogate={sg} lam={lam}"
                rows.append((name, "I", check_neuron(reset, sg, lam, device=device)))
    return rows

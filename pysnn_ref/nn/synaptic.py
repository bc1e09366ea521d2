"""The current-based (synaptic) LIF layer, :class:`SynapticLIF`
(:mod:`pysnn_ref.functional.synaptic`): a second-order spiking neuron for BPTT networks.
"""

from __future__ import annotations

from typing import Any

from ..functional.surrogate import Surrogate
from ..functional.synaptic import make_synaptic_params, synaptic_backward, synaptic_forward_p
from .module import SpikingModule

__all__ = ["SynapticLIF"]


class SynapticLIF(SpikingModule):
    """Current-based LIF neurons (snnTorch's ``Synaptic``; Neftci, Mostafa & Zenke, IEEE SPM
    2019; Zenke & Ganguli 2018): a synaptic current that decays by ``alpha`` and integrates the
    input, a membrane that decays by ``lam`` and integrates the synaptic current::

        syn[t] = alpha syn[t-1] + I[t];   u[t] = lam v[t-1] + syn[t];   o[t] = H(u[t] - v_th)

    with the hard or soft reset of :class:`LIF` (SSF Eqs. 6-7 / 16-17); ``alpha = 0`` is the
    LIF.  A drop-in for :class:`LIF` in a :class:`Sequential` or as the ``neuron`` factory of
    :func:`pysnn_ref.models.make_model`.

    BPTT only (``bptt_only``): the flow methods (ASF, SSF, DSR, rate-BP) are built on a neuron
    whose membrane integrates its input directly (their flow mappings, SSF Eqs. 14 / 19, and ASF's
    equivalent network); for this neuron they are not derived, and
    :meth:`~pysnn_ref.methods.Method.check_network` refuses them.
    """

    bptt_only = True

    def __init__(self, alpha: float = 0.5, lam: float = 0.5, v_th: float = 1.0,
                 reset: str = "hard", surrogate: str | Surrogate = "triangle",
                 detach_reset: bool = False, smooth: bool = False) -> None:
        super().__init__()
        self.p = make_synaptic_params(alpha=alpha, lam=lam, v_th=v_th, reset=reset,
                                      surrogate=surrogate, smooth=smooth,
                                      detach_reset=detach_reset)
        self._rate: Any = 0.0

    def set_surrogate(self, surrogate: Surrogate) -> None:
        """Use ``surrogate`` for the BPTT backward from now on (the forward is unchanged)."""
        q = self.p.lif
        self.p = make_synaptic_params(alpha=self.p.alpha, lam=q.lam, v_th=q.v_th,
                                      reset=q.reset, surrogate=surrogate, smooth=q.smooth,
                                      detach_reset=q.detach_reset)

    def forward(self, x: Any) -> Any:
        """Spikes ``o`` (T, B, ...) for the input current ``x``; the membrane is cached."""
        o, self._cache = synaptic_forward_p(x, self.p)
        self._rate = o.mean()  # stays on the device until read
        return o

    def backward(self, dy: Any, need_dx: bool = True) -> Any:
        """dL/dI from dL/do by the two-adjoint BPTT recurrence (no parameters to update)."""
        dI = synaptic_backward(dy, self._cache)
        self._cache = None
        return dI

    def flow_begin(self, method: str, opts: dict) -> None:
        """Flow methods are refused (see the class docstring)."""
        raise ValueError(f"SynapticLIF supports method 'bptt' only, got {method!r}: the flow "
                         "methods' mappings are derived for a neuron that integrates its input "
                         "directly")

    def __repr__(self) -> str:
        q = self.p.lif
        return (f"SynapticLIF(alpha={self.p.alpha:g}, lam={q.lam:g}, v_th={q.v_th:g}, "
                f"reset={q.reset}, surrogate={q.surrogate})")

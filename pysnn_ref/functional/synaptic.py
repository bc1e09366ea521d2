"""Current-based (synaptic) LIF neurons: a second-order neuron, forward and exact BPTT backward.

The LIF neuron of :mod:`pysnn_ref.functional.neuron` integrates its input current directly.  A
*current-based* neuron puts a synapse between the input and the membrane: the input charges a
synaptic current ``syn`` that decays by ``alpha`` per step, and the membrane integrates that
current.  In discrete time, for every neuron independently::

    syn[t] = alpha * syn[t-1] + I[t]       syn[-1] = 0      synaptic current
    u[t]   = lam * v[t-1] + syn[t]         v[-1] = 0        membrane before reset
    o[t]   = H(u[t] - v_th)                                 spike (surrogate's primitive in
                                                            smooth mode)
    hard reset: v[t] = u[t] * (1 - o[t])   soft reset: v[t] = u[t] - v_th * o[t]

This is snnTorch's ``Synaptic`` neuron (Eshraghian et al., "Training Spiking Neural Networks
Using Lessons From Deep Learning", Proc. IEEE 2023: syn = alpha syn + input, mem = beta mem +
syn, with beta = lam) and the discrete-time current-based LIF of Neftci, Mostafa & Zenke
("Surrogate Gradient Learning in Spiking Neural Networks", IEEE Signal Processing Magazine 2019)
and Zenke & Ganguli ("SuperSpike", Neural Computation 2018), where the synaptic current is the
exponentially decaying trace of the input spikes.  (Neftci et al. feed I[n] into U[n+1], one
step later; here, as in snnTorch, u[t] integrates syn[t] of the same step, so that
``alpha = 0`` is exactly the LIF neuron of SSF Eqs. 6-7 / 16-17.)  The response of the membrane
to one input spike is then the difference of two exponentials, (lam^(t+1) - alpha^(t+1)) /
(lam - alpha) -- the smooth, delayed post-synaptic potential of an alpha-kernel synapse
(lam^t (t + 1) when alpha = lam), instead of the LIF's instantaneous jump.

Backward (exact BPTT, two adjoints; derivation in docs/derivations.md, loops in
:func:`pysnn_ref.kernels.reference.synaptic_backward`), with g[t] = dL/do[t] from above::

    dL/do[t]   = g[t] + dL/du[t+1] * (-lam * u[t])          (hard;  -lam * v_th for soft)
    dL/du[t]   = dL/do[t] * sigma'(u[t] - v_th) + dL/du[t+1] * lam * (1 - o[t])  (hard; * lam soft)
    dL/dsyn[t] = dL/du[t] + alpha * dL/dsyn[t+1]
    dL/dI[t]   = dL/dsyn[t]

The membrane adjoint is the LIF's (SSF Eqs. 8-10, exact form); the synaptic adjoint is the
same leaky filter run backwards in time.  ``detach_reset=True`` drops the reset term
(``-lam u[t]`` / ``-lam v_th``), as for the LIF.  Only the membrane ``u`` is cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import backend
from .._check import check_in_range, check_time_major
from .neuron import NeuronParams, make_neuron_params
from .surrogate import Surrogate

__all__ = ["SynapticParams", "make_synaptic_params", "SynapticCache", "synaptic_forward",
    "synaptic_forward_p", "synaptic_backward"]


@dataclass(frozen=True)
class SynapticParams:
    """Everything that defines a current-based LIF neuron: the synaptic decay ``alpha`` and the
    membrane's :class:`~pysnn_ref.functional.neuron.NeuronParams` (lam, v_th, reset, ...)."""

    alpha: float
    lif: NeuronParams


def make_synaptic_params(*, alpha: float, lam: float, v_th: float, reset: str = "hard",
                         surrogate: str | Surrogate = "triangle", smooth: bool = False,
                         detach_reset: bool = False) -> SynapticParams:
    """Validate the hyper-parameters: ``alpha`` in [0, 1], ``lam`` in (0, 1], ``v_th`` > 0, a
    known reset and surrogate (``ValueError`` naming the parameter otherwise)."""
    alpha = check_in_range("alpha", alpha, 0.0, 1.0, lo_open=False)
    return SynapticParams(alpha, make_neuron_params(lam=lam, v_th=v_th, reset=reset,
                                                    surrogate=surrogate, smooth=smooth,
                                                    detach_reset=detach_reset))


class SynapticCache(NamedTuple):
    """What :func:`synaptic_backward` needs: the membrane before reset ``u`` (T, B, ...) and the
    neuron parameters (the synaptic current is not needed: it enters u linearly)."""

    u: Any
    p: SynapticParams


def synaptic_forward(I: Any, *, alpha: float, lam: float, v_th: float, reset: str = "hard",
                     surrogate: str | Surrogate = "triangle", smooth: bool = False,
                     detach_reset: bool = False) -> tuple[Any, SynapticCache]:
    """Run current-based LIF neurons over time (module docstring for the equations).

    Inputs:
      I: input current, time-major ``(T, B, ...)``, float32 or float64.
      alpha: synaptic current decay per step in [0, 1] (0: the plain LIF);
      lam: membrane decay per step in (0, 1];  v_th: firing threshold > 0.
      reset: "hard" or "soft";  surrogate: name, "name:param" or :class:`Surrogate`;
      smooth: spike with the surrogate's primitive (gradient checks);
      detach_reset: drop the reset path from the backward.
    Returns ``(o, cache)``: spikes shaped like ``I`` and the cache for :func:`synaptic_backward`.
    """
    p = make_synaptic_params(alpha=alpha, lam=lam, v_th=v_th, reset=reset, surrogate=surrogate,
                             smooth=smooth, detach_reset=detach_reset)
    return synaptic_forward_p(I, p)


def synaptic_forward_p(I: Any, p: SynapticParams) -> tuple[Any, SynapticCache]:
    """:func:`synaptic_forward` with already-validated :class:`SynapticParams` (used by layers)."""
    check_time_major("I", I)
    T, q = I.shape[0], p.lif
    K = backend.kernels_for(I)
    o, u = K.synaptic_forward(I.reshape(T, -1), p.alpha, q.lam, q.v_th, q.soft, q.smooth,
                              q.surrogate.kind, q.surrogate.a)
    return o.reshape(I.shape), SynapticCache(u.reshape(I.shape), p)


def synaptic_backward(do: Any, cache: SynapticCache) -> Any:
    """Exact BPTT through the neuron: ``dI`` = dL/dI from ``do`` = dL/do (shaped like the
    spikes), by the two-adjoint recurrence of the module docstring."""
    u, p = cache
    q = p.lif
    check_time_major("do", do)
    if tuple(do.shape) != tuple(u.shape):
        raise ValueError(f"do must have shape {tuple(u.shape)}, got {tuple(do.shape)}")
    T = u.shape[0]
    dI = backend.kernels_for(u).synaptic_backward(
        do.reshape(T, -1), u.reshape(T, -1), p.alpha, q.lam, q.v_th, q.soft, q.smooth,
        q.detach_reset, q.surrogate.kind, q.surrogate.a)
    return dI.reshape(u.shape)

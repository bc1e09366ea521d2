"""Rate-based backpropagation: the spiking forward, then one backward through a rate network.

Paper: "Advancing Training Efficiency of Deep Spiking Neural Networks through Rate-based
Backpropagation", Yu, Wang, Xu, Zhang, Hu, Yan, Liu, Lin -- NeurIPS 2024, arXiv 2410.11488.
Authors' code: GitHub ``Tab-ct/rate-based-backpropagation`` (``model/layer.py`` ``LIFLayer``,
``calcu_sg_and_elig``).  The paper body was not available to us: the formulas are the code's,
in the library's notation, and equation numbers are not given.

Pass 1, the full spiking forward (no graph kept), per neuron (LIF of
:mod:`pysnn_ref.functional.neuron`; ``kappa[t] = du[t]/dc`` for a shift c of every step's input)::

    r = (1/T) sum_t o[t]                         the firing rate
    e = (1/T) sum_t kappa[t] sigma'(u[t] - v_th) its eligibility, = dr/dc exactly in smooth mode
    kappa[0] = 1,   kappa[t+1] = 1 + lam kappa[t] rho[t],   rho[t] = dv[t]/du[t]:
      soft reset: rho = 1 - v_th sigma'_t   (detach_reset: 1)
      hard reset: rho = (1 - o[t]) - u[t] sigma'_t   (detach_reset: 1 - o[t])

Pass 2, the rate network: each weight layer maps rates, ``Ibar^{l+1} = W r^l + b`` (exactly the
time mean of the spiking layer's currents, a linear map of the spikes), and each neuron's rate
responds to its mean input with slope e.  Backward (:func:`rate_backward`)::

    dL/dIbar = e dL/dr,     dW = dL/dIbar^{l+1} (r^l)^T,     dL/dr^l = W^T dL/dIbar^{l+1}

Exact gradient of: the loss of the linearised rate network whose neurons output
``r = r0 + e (Ibar - Ibar0)`` with r0, e, Ibar0 frozen at pass 1's values (without BatchNorm;
at T = 1 it is BPTT).  **Forward keeps** r and e per neuron (and a weight layer its input's
rate): nothing of length T; the backward costs one step's worth, whatever T.

**Where the authors' code differs, and which we follow:** the code's non-detached soft reset
uses rho = lam (1 - sigma'_t), missing the factor v_th (the same at v_th = 1); its hard reset
uses the non-detached rho even when the reset is detached, and assumes v_reset = 0; its
sigma' is the sigmoid surrogate with slope 4.  We take rho = dv[t]/du[t] of the forward as
configured (so e = dr/dc exactly), with any surrogate.  The code also scales the gradient by
1/T (``CustomEvaluator``), leaving the loss value unchanged; we return the plain gradient of the
rate network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .. import backend
from .._check import check_float_array, check_time_major
from .neuron import NeuronParams

__all__ = ["RateState", "RateCache", "rate_forward_chunk", "rate_finish", "rate_forward",
    "rate_backward"]


@dataclass
class RateState:
    """Per-neuron state of a streamed pass 1: membrane ``v``, ``kappa`` (du/dc, starts at 1),
    the sums ``sO = sum_t o[t]`` and ``sE = sum_t kappa[t] sigma'_t``; ``steps`` seen."""

    v: Any
    kappa: Any
    sO: Any
    sE: Any
    steps: int = 0

    @classmethod
    def zeros(cls, shape: tuple[int, ...], dtype: Any, xp: Any = np) -> RateState:
        """The state before the first step (kappa = 1, the rest 0) in the layer's dtype."""
        z = lambda: xp.zeros(shape, dtype=dtype)  # noqa: E731
        return cls(z(), xp.ones(shape, dtype=dtype), z(), z())


class RateCache(NamedTuple):
    """What :func:`rate_backward` needs: the firing rate ``r`` and its eligibility ``e``
    (B, ...), both already divided by T."""

    r: Any
    e: Any


def rate_forward_chunk(I: Any, state: RateState, p: NeuronParams) -> Any:
    """Pass 1 over one chunk ``I`` (Tc, B, ...), updating ``state`` in place.  Returns the
    chunk's spikes; :func:`rate_finish` then gives the cache."""
    check_time_major("I", I)
    if tuple(I.shape[1:]) != tuple(state.v.shape):
        raise ValueError(f"I must have shape (Tc, {tuple(state.v.shape)}), got {tuple(I.shape)}")
    Tc = I.shape[0]
    K = backend.family_kernels_for(I)
    o = K.rate_forward(I.reshape(Tc, -1), state.v.reshape(-1), state.kappa.reshape(-1),
                       state.sO.reshape(-1), state.sE.reshape(-1), p.lam, p.v_th, p.soft,
                       p.smooth, p.detach_reset, p.surrogate.kind, p.surrogate.a)
    state.steps += Tc
    return o.reshape(I.shape)


def rate_finish(state: RateState) -> RateCache:
    """``(r, e) = (sO / T, sE / T)`` after a streamed pass 1."""
    if state.steps < 1:
        raise ValueError("state has seen no time steps: run rate_forward_chunk first")
    T = state.sO.dtype.type(state.steps)
    return RateCache(state.sO / T, state.sE / T)


def rate_forward(I: Any, p: NeuronParams) -> tuple[Any, RateCache]:
    """Pass 1 over all steps of ``I`` (T, B, ...): ``(o, cache)`` -- the spikes and the
    :class:`RateCache` (r, e).  ``p``: validated
    :class:`~pysnn_ref.functional.neuron.NeuronParams` (its reset, ``detach_reset``,
    surrogate and smooth mode are used)."""
    check_time_major("I", I)
    state = RateState.zeros(tuple(I.shape[1:]), I.dtype, backend.array_module(I))
    o = rate_forward_chunk(I, state, p)
    return o, rate_finish(state)


def rate_backward(dr: Any, cache: RateCache) -> Any:
    """The rate network's neuron backward: ``dL/dIbar = e * dL/dr`` (B, ...).

    A time-major layer below that wants per-step gradients takes ``dL/dI[t] = dL/dIbar / T``
    (Ibar is the mean of the I[t])."""
    r, e = cache
    check_float_array("dr", dr, min_ndim=1)
    if tuple(dr.shape) != tuple(e.shape):
        raise ValueError(f"dr must have shape {tuple(e.shape)}, got {tuple(dr.shape)}")
    return e * dr.astype(e.dtype, copy=False)

"""Spiking flows: the time-collapsed statistics that ASF and SSF train with.

Both methods run the spiking network forward as usual but keep, per neuron, only running sums
over time instead of the T-step history, and then back-propagate once through an *equivalent rate
network* whose neurons map an input flow FI to an output flow FO.

* **ASF** (Wu et al., AAAI 2021; Eqs. 7-12): accumulated flows ``FI = sum_t I[t]``,
  ``FO = sum_t o[t]`` (accumulator decay ``w = 1``); the mapping's slope is a layer-wise scale
  factor ``S = sum FO / sum FI`` (Eq. 12).  See :func:`asf_scale_paper`, :func:`asf_scale_code`.
* **SSF** (Wang et al., ICCV 2023; Eqs. 11-19): stabilized flows, lam^(T-t)-weighted means
  ``FI = sum_t lam^(T-t) I[t] / sum_t lam^(T-t)`` and likewise FO (decay ``w = lam``); the
  average spiking electricity ``R = sum_t lam^(T-t) o[t] u[t] / (v_th sum_t lam^(T-t) o[t])``;
  hard reset ``FO = max(0, FI / (R v_th))`` with dFO/dFI = 0 where R > 2 (Eq. 14); soft reset
  ``FO = clamp(FI / v_th, 0, 1)`` (Eq. 19).  See :func:`ssf_R` and :func:`ssf_gain`.

**Our choice where the SSF paper is silent:** R is 0/0 for a neuron (or group) that never fired.
We set R = 1 there -- the value of a neuron that loses exactly v_th per spike -- so a silent
neuron whose mean input is positive still passes gradient 1/v_th and can learn to fire, while
one with FI <= 0 passes none (the max(0, .) of Eq. 14).  This mirrors DSR's masked clamp
backward (Meng et al. 2022; github.com/qymeng94/DSR), which passes gradient wherever
0 < rate_in < v_th regardless of firing.  ``tests/test_flows.py`` pins this rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import backend
from .._check import check_choice, check_time_major
from .neuron import NeuronParams

__all__ = ["R_GRANULARITIES", "flow_norm", "decayed_sum", "weighted_time_mean", "FlowState",
    "lif_forward_flows", "ssf_R", "ssf_gain", "ASF_RTOL", "asf_scale_paper", "asf_scale_code"]

R_GRANULARITIES = ("neuron", "channel", "sample", "layer")


def flow_norm(w: float, steps: int) -> float:
    """sum_{t<n} w^t = (1 - w^n) / (1 - w) for n = ``steps`` (n for w = 1): the total weight of
    decayed sums over n steps (SSF Eq. 11's denominator; ASF's plain sum for w = 1)."""
    if w == 1.0:
        return float(steps)
    return (1.0 - w ** steps) / (1.0 - w)


def decayed_sum(acc: Any, x: Any, w: float) -> Any:
    """Continue ``acc = sum_t w^(T-1-t) x[t]`` over one more time chunk ``x`` (Tc, ...)."""
    xp = backend.array_module(x)
    Tc = x.shape[0]
    wt = xp.asarray(w ** np.arange(Tc - 1, -1, -1), dtype=x.dtype)
    s = xp.tensordot(wt, x, axes=(0, 0))
    return s if acc is None else acc * x.dtype.type(w ** Tc) + s


def weighted_time_mean(g: Any, w: float) -> Any:
    """sum_t w^(T-1-t) g[t] / sum_t w^(T-1-t): how a spiking layer collapses per-step gradients
    (SSF's dL/dFO, Sec. 3.3; uniform mean for w = 1, ASF)."""
    T = g.shape[0]
    if w == 1.0:
        return g.mean(axis=0)
    xp = backend.array_module(g)
    wt = xp.asarray(w ** np.arange(T - 1, -1, -1), dtype=g.dtype)
    return xp.tensordot(wt / wt.sum(), g, axes=(0, 0))


@dataclass
class FlowState:
    """Running state of one spiking layer during a streamed forward pass (per sample/neuron).

    ``v``: membrane after reset of the last step seen; ``sI``, ``sO``, ``sOU``: the decayed sums
    of I[t], o[t] and o[t] u[t]; ``w``: their decay per step; ``steps``: time steps seen.
    """

    v: Any
    sI: Any
    sO: Any
    sOU: Any
    w: float
    steps: int = 0

    @classmethod
    def zeros(cls, shape: tuple[int, ...], dtype: Any, xp: Any, w: float) -> FlowState:
        """Zero state in the layer's ``dtype`` -- the BPTT kernels carry the membrane in that
        dtype too, so the streamed forward matches the BPTT forward bit for bit."""
        z = lambda: xp.zeros(shape, dtype=dtype)  # noqa: E731
        return cls(z(), z(), z(), z(), float(w))

    @classmethod
    def like(cls, I: Any, w: float) -> FlowState:
        """Zero state for the neurons that the input ``I`` (T, B, ...) drives: shape
        ``I.shape[1:]``, ``I``'s dtype and ``I``'s device (NumPy or CuPy).  ``w`` is the decay
        of the sums: 1 for ASF's accumulated flows (ASF Eq. 7), lam for SSF's stabilized flows
        (SSF Sec. 3.3).
        """
        check_time_major("I", I)
        return cls.zeros(tuple(I.shape[1:]), I.dtype, backend.array_module(I), w)

    def norm(self) -> float:
        """sum_{t<T} w^t, the total weight of the decayed sums (T for w = 1)."""
        return flow_norm(self.w, self.steps)

    def FI(self) -> Any:
        """Input flow: the weighted mean of I[t] (SSF); multiply by T for ASF's sum."""
        return self.sI / self.norm()

    def FO(self) -> Any:
        """Output flow: the weighted mean of o[t], the (weighted) firing rate."""
        return self.sO / self.norm()


def lif_forward_flows(I: Any, state: FlowState, p: NeuronParams) -> Any:
    """Advance LIF neurons over one time chunk ``I`` (Tc, B, ...), updating ``state`` in place.

    The dynamics are exactly those of :func:`pysnn_ref.functional.neuron.lif_forward`; nothing
    of length T is stored, only the running sums.  Returns the chunk's spikes.
    """
    check_time_major("I", I)
    if tuple(I.shape[1:]) != tuple(state.v.shape):
        raise ValueError(f"I must have shape (Tc, {tuple(state.v.shape)}), got {tuple(I.shape)}")
    Tc = I.shape[0]
    K = backend.kernels_for(I)
    o = K.lif_forward_flows(I.reshape(Tc, -1), state.v.reshape(-1), p.lam, p.v_th, p.soft,
                            p.smooth, p.surrogate.kind, p.surrogate.a, state.w,
                            state.sI.reshape(-1), state.sO.reshape(-1), state.sOU.reshape(-1))
    state.steps += Tc
    return o.reshape(I.shape)


def _group_axes(ndim: int, granularity: str) -> tuple[int, ...]:
    """Axes of a (B, C, ...) flow tensor that one R value is shared over."""
    if granularity == "neuron":
        return ()
    if granularity == "channel":
        return tuple(range(2, ndim))
    if granularity == "sample":
        return tuple(range(1, ndim))
    return tuple(range(ndim))  # layer


def ssf_R(state: FlowState, v_th: float, granularity: str = "neuron") -> Any:
    """Average spiking electricity R (SSF Sec. 3.3) at the chosen granularity (SSF Table 3).

    ``granularity``: "neuron" (per neuron per sample, the default), "channel" (per sample and
    channel), "sample" (per sample), "layer" (one scalar).  R = 1 where nothing fired (our rule,
    see the module docstring).  Returns an array broadcastable to the flow shape (B, ...).
    """
    check_choice("r_granularity", granularity, R_GRANULARITIES)
    axes = _group_axes(state.sO.ndim, granularity)
    sO = state.sO.sum(axis=axes, keepdims=True) if axes else state.sO
    sOU = state.sOU.sum(axis=axes, keepdims=True) if axes else state.sOU
    # R = sOU / (v_th sO) where the neuron fired, 1 where it stayed silent (sO = 0, so sOU = 0):
    # the 0/1 mask is added to both sides rather than chosen by xp.where, which NumPy runs
    # element by element with a branch (3 ms over 0.8 M neurons of a random firing pattern)
    silent = (sO <= 0).astype(sO.dtype)
    return ((sOU + silent) / (v_th * sO + silent)).astype(state.sO.dtype)


def ssf_gain(state: FlowState, p: NeuronParams, granularity: str = "neuron",
             r_max: float = 2.0) -> Any:
    """dFO/dFI of the SSF mapping for every neuron (SSF Eqs. 14, 19), shape (B, ...)."""
    FI = state.FI()
    xp = backend.array_module(FI)
    R = xp.broadcast_to(ssf_R(state, p.v_th, granularity), FI.shape)
    return backend.kernels_for(FI).ssf_gain(FI, R, p.v_th, p.soft, r_max)


#: :func:`asf_scale_paper`: S is defined only where sum FI > ASF_RTOL * sum abs(FI).
ASF_RTOL = 1e-3


def asf_scale_paper(sum_FO: float, sum_FI: float, previous: float,
                    sum_abs_FI: float | None = None, rtol: float = ASF_RTOL) -> float:
    """ASF Eq. 12: the layer-wise scale factor S = sum FO / sum FI.

    The sums run over every neuron of the layer and every sample of the forward passes gathered
    since the last refresh.  **Guard** (our rule; Eq. 12 has none): S is taken only where the
    layer's net input is clearly positive, ``sum FI > rtol * sum abs(FI)``, and ``previous`` is
    kept otherwise.  Where the inputs cancel -- behind BatchNorm with beta = 0, sum FI is 0 up
    to float round-off while sum abs(FI) is large -- the ratio is undefined, not large: without
    the guard a round-off epsilon of either sign decides between S = previous and S ~ 1e8
    (docs/benchmarks.md, "Flow memory with BatchNorm"; docs/methods.md, "ASF").  ``rtol`` is
    the fraction of the inputs' size that must survive the cancellation; ``sum_abs_FI=None``
    (no size given) falls back to the bare ``sum FI > 0``.

    Sums on the device (0-d arrays, :func:`pysnn_ref.backend.as_scalar`) give S as a 0-d
    device array, computed without a host sync.
    """
    floor = 0.0 if sum_abs_FI is None else rtol * sum_abs_FI
    if backend.is_gpu_array(sum_FI):
        xp = backend.array_module(sum_FI)
        ok = sum_FI > floor
        return xp.where(ok, sum_FO / xp.where(ok, sum_FI, 1.0), previous)
    if not sum_FI > floor:
        return previous
    return float(sum_FO / sum_FI)


def asf_scale_code(FO: Any, FI: Any, previous: float) -> float:
    """The ASF authors' estimator (github.com/neural-lab/ASF-BP: ``ave`` + EMA), one batch.

    Only elements whose accumulated input is at least their spike count enter the ratio
    (mask ``FI >= FO``); a masked input sum below 1e-3 gives S_new = 1; then
    S = 0.6 S_new + 0.4 S_previous.  Device arrays give S as a 0-d device array (no host sync).
    """
    xp = backend.array_module(FO)
    c = FI >= FO
    if backend.is_gpu_array(FO):
        den = backend.as_scalar(xp.sum(xp.where(c, FI, 0.0)))
        small = den < 1e-3
        s_new = small + ~small * (backend.as_scalar(xp.sum(xp.where(c, FO, 0.0))) / (den + small))
        return 0.6 * s_new + 0.4 * previous
    den = float(xp.sum(xp.where(c, FI, 0.0)))
    s_new = 1.0 if den < 1e-3 else float(xp.sum(xp.where(c, FO, 0.0))) / den
    return 0.6 * s_new + 0.4 * previous

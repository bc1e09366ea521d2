"""DSR: differentiation on spike representation (forward, backward, threshold gradient).

Paper: "Training High-Performance Low-Latency Spiking Neural Networks by Differentiation on
Spike Representation", Meng, Xiao, Yan, Wang, Lin, Luo -- CVPR 2022, arXiv 2205.00459.
Authors' code: GitHub ``qymeng94/DSR``, ``cifar/modules/neuron.py`` (``IFFunction``,
``LIFFunction``, ``weight_rate_spikes``).  The paper body was not available to us: the formulas
below are the authors' code read in the library's notation, and equation numbers are not given.

Forward, for every neuron (time-major I (T, B, ...); IF is ``lam = 1``)::

    u[t] = lam v[t-1] + I[t]                     v[-1] = 0
    o[t] = v_th H(u[t] - alpha v_th)             spikes of amplitude v_th; alpha < 1: early firing
    v[t] = u[t] - o[t]                           soft reset (DSR defines no hard reset)

Spike representation: with weights w_t = lam^(T-1-t) and W = sum_t w_t, the weighted firing
rate is ``a = sum_t w_t o[t] / W = Ibar_w - v[T-1] / W`` (unroll the soft reset), where
``Ibar_w = sum_t w_t I[t] / W``; as the leftover charge v[T-1] is bounded, ``a ~ clamp(Ibar_w,
0, v_th)``.  DSR back-propagates through that clamp -- the exact gradient of the **clamp
network** whose layers output ``a = clamp(Ibar_w, 0, v_th)`` at every step::

    G        = sum_t dL/do[t]                     (the representation's gradient)
    dL/dI[t] = 1[0 <= Ibar_w <= v_th] G w_t / W   (uniform 1/T for IF: no recursion over time)
    dL/dv_th = sum over the layer of G 1[Ibar_w > v_th]      (threshold training)

alpha enters the forward only.  **Forward keeps** ``Ibar_w`` per neuron, nothing of length T
(the layer below needs only its input's weighted mean too: dW = sum_t dI[t] x[t]^T =
(m G) xbar_w^T).

**Where the authors' code differs, and which we follow:**

* LIF form: the code charges ``u = lam v + (1 - lam) I[t]`` with lam = exp(-dt/tau) and outputs
  ``o[t] / dt``; that is our neuron with its input scaled by (1 - lam) and its output by 1/dt,
  factors a weight layer absorbs.  We keep the library's ``u = lam v + I`` (one LIF everywhere),
  so the clamp is ``clamp(Ibar_w, 0, v_th)``, not the code's ``clamp(Ibar_w / tau, 0, v_th/dt)``
  (and our dL/dv_th has no factor dt).
* LIF spreading: the code takes ``G = T sum_t w_t dL/do[t] / W`` and spreads it uniformly
  (``/T``).  For IF the two are identical.  For LIF, when dL/do is the same at every step (every
  hidden layer of the clamp network) G and dL/dv_th agree, but G is spread by 1/T instead of
  w_t / W, so the layer below gets its weight gradient from its input's plain mean instead of
  its weighted mean -- the same in the clamp network, whose hidden inputs are constant in time,
  not in the spiking network; at a readout of the weighted rate G itself differs (a factor
  T sum w_t^2 / W^2, 1.08 at the code's defaults).  ``spread="exact"`` (default) is the clamp
  network's exact gradient; ``spread="authors"`` reproduces the code.
* BatchNorm: the code folds time into batch (statistics over T*B) and sends its dL/dI[t],
  uniform in t, through the ordinary per-step BN backward.  The library's collapsed BN backward
  is that exactly when dL/dI[t] is the same at every step: IF neurons, or ``spread="authors"``;
  the exact spread with lam < 1 is refused with BN (docs/methods.md, "DSR and BatchNorm").
* "DSR-noF" (the SSF paper's Table 2: DSR without its firing-mechanism modification) is
  ``alpha = 1`` with threshold training kept.
* Threshold training: v_th is a parameter; before every forward the code sets
  ``v_th <- max(v_th, v_th_bound)`` (:func:`bound_threshold`; bound 5e-4 in the code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .. import backend
from .._check import check_choice, check_in_range, check_positive, check_time_major

__all__ = ["DSR_SPREADS", "DSRParams", "make_dsr_params", "weight_norm", "DSRState", "DSRCache",
    "dsr_forward_chunk", "dsr_finish", "dsr_forward", "dsr_forward_p", "representation",
    "step_weights", "dsr_gain", "dsr_backward", "bound_threshold"]

DSR_SPREADS = ("exact", "authors")


@dataclass(frozen=True)
class DSRParams:
    """A DSR neuron: decay ``lam`` (1 = IF), threshold ``v_th``, early-firing factor ``alpha``
    and how the backward spreads the representation's gradient over the steps."""

    lam: float
    v_th: float
    alpha: float = 1.0
    spread: str = "exact"


def make_dsr_params(*, lam: float = 1.0, v_th: float = 1.0, alpha: float = 1.0,
                    spread: str = "exact") -> DSRParams:
    """Validate: ``lam`` in (0, 1], ``v_th`` > 0, ``alpha`` in (0, 1], ``spread`` known."""
    return DSRParams(check_in_range("lam", lam, 0.0, 1.0), check_positive("v_th", v_th),
                     check_in_range("alpha", alpha, 0.0, 1.0),
                     check_choice("spread", spread, DSR_SPREADS))


def weight_norm(lam: float, T: int) -> float:
    """W = sum_{t<T} lam^t, the total weight of the representation (T for IF)."""
    return float(T) if lam == 1.0 else (1.0 - lam ** T) / (1.0 - lam)


@dataclass
class DSRState:
    """What a streamed DSR forward carries from one time chunk to the next, per neuron: the
    membrane ``v`` and ``sI = sum_t lam^(T-1-t) I[t]``; ``steps`` seen so far."""

    v: Any
    sI: Any
    steps: int = 0

    @classmethod
    def zeros(cls, shape: tuple[int, ...], dtype: Any, xp: Any = np) -> DSRState:
        """Zero state in the layer's dtype."""
        return cls(xp.zeros(shape, dtype=dtype), xp.zeros(shape, dtype=dtype))


class DSRCache(NamedTuple):
    """What :func:`dsr_backward` needs: ``Ibar`` = Ibar_w per neuron (B, ...), the neuron's
    parameters and T."""

    Ibar: Any
    p: DSRParams
    T: int


def dsr_forward_chunk(I: Any, state: DSRState, p: DSRParams) -> Any:
    """Advance DSR neurons over one chunk ``I`` (Tc, B, ...), updating ``state`` in place.
    Returns the chunk's spikes (amplitude v_th).  :func:`dsr_finish` then gives the cache."""
    check_time_major("I", I)
    if tuple(I.shape[1:]) != tuple(state.v.shape):
        raise ValueError(f"I must have shape (Tc, {tuple(state.v.shape)}), got {tuple(I.shape)}")
    Tc = I.shape[0]
    K = backend.family_kernels_for(I)
    o = K.dsr_forward(I.reshape(Tc, -1), state.v.reshape(-1), state.sI.reshape(-1), p.lam,
                      p.v_th, p.alpha)
    state.steps += Tc
    return o.reshape(I.shape)


def dsr_finish(state: DSRState, p: DSRParams) -> DSRCache:
    """The cache of a streamed forward: ``Ibar_w = sI / W`` (nothing else is kept)."""
    if state.steps < 1:
        raise ValueError("state has seen no time steps: run dsr_forward_chunk first")
    W = weight_norm(p.lam, state.steps)
    return DSRCache(state.sI / state.sI.dtype.type(W), p, state.steps)


def dsr_forward(I: Any, *, lam: float = 1.0, v_th: float = 1.0, alpha: float = 1.0,
                spread: str = "exact") -> tuple[Any, DSRCache]:
    """Run DSR neurons (IF for ``lam = 1``) over all steps of ``I`` (T, B, ...).

    Inputs: ``I`` float32/float64, time-major; ``lam`` in (0, 1]; ``v_th`` > 0 (the threshold
    and the spike amplitude); ``alpha`` in (0, 1] (fire at alpha v_th; 1 = "DSR-noF");
    ``spread``: "exact" or "authors" (see the module docstring).
    Returns ``(o, cache)``: spikes shaped like ``I`` with values in {0, v_th}.
    """
    return dsr_forward_p(I, make_dsr_params(lam=lam, v_th=v_th, alpha=alpha, spread=spread))


def dsr_forward_p(I: Any, p: DSRParams) -> tuple[Any, DSRCache]:
    """:func:`dsr_forward` with validated :class:`DSRParams` (one chunk of all T steps)."""
    check_time_major("I", I)
    state = DSRState.zeros(tuple(I.shape[1:]), I.dtype, backend.array_module(I))
    o = dsr_forward_chunk(I, state, p)
    return o, dsr_finish(state, p)


def representation(Ibar: Any, v_th: float) -> Any:
    """The spike representation the backward differentiates, ``a = clamp(Ibar_w, 0, v_th)``."""
    xp = backend.array_module(Ibar)
    return xp.clip(Ibar, 0.0, v_th)


def step_weights(T: int, lam: float, spread: str) -> tuple[np.ndarray, np.ndarray]:
    """``(gw, c)``, each (T,): G = sum_t gw[t] dL/do[t] and dL/dI[t] = m G c[t].

    exact:   gw = 1,       c[t] = lam^(T-1-t) / W   (dIbar_w / dI[t])
    authors: gw = T c_ex,  c = 1/T                  (the code's weighted G, spread uniformly)
    """
    w = lam ** np.arange(T - 1, -1, -1, dtype=np.float64)
    c_ex = w / w.sum()
    if spread == "exact":
        return np.ones(T), c_ex
    return T * c_ex, np.full(T, 1.0 / T)


def dsr_gain(cache: DSRCache) -> Any:
    """The clamp's slope ``m = 1[0 <= Ibar_w <= v_th]`` per neuron (B, ...): dL/dIbar_w =
    m dL/da -- the collapsed form of :func:`dsr_backward` (as the flow methods' gain)."""
    Ibar, p, _ = cache
    return ((Ibar >= 0) & (Ibar <= p.v_th)).astype(Ibar.dtype)


def dsr_backward(do: Any, cache: DSRCache) -> tuple[Any, float]:
    """Backward through the spike representation: ``(dI, dv_th)`` from ``do`` = dL/do (T, B, ...).

    dI (T, B, ...) is the exact gradient of the clamp network (see the module docstring) for
    ``spread="exact"``; ``dv_th`` is dL/dv_th summed over the layer (a float)."""
    Ibar, p, T = cache
    check_time_major("do", do)
    shape = (T, *Ibar.shape)
    if tuple(do.shape) != shape:
        raise ValueError(f"do must have shape {shape}, got {tuple(do.shape)}")
    gw, c = step_weights(T, p.lam, p.spread)
    xp = backend.array_module(Ibar)
    K = backend.family_kernels_for(Ibar)
    dI, dv_th = K.dsr_backward(do.reshape(T, -1), Ibar.reshape(-1),
                               xp.asarray(gw, dtype=Ibar.dtype), xp.asarray(c, dtype=Ibar.dtype),
                               p.v_th)
    return dI.reshape(shape), float(dv_th)


def bound_threshold(v_th: float, v_th_bound: float = 5e-4) -> float:
    """Threshold training's lower bound, applied before every forward (authors' code):
    ``v_th <- max(v_th, v_th_bound)``; no gradient flows through it."""
    check_positive("v_th_bound", v_th_bound)
    return max(float(v_th), float(v_th_bound))

"""Online neurons: OTTT (OTTT_A / OTTT_O) and SLTT / SLTT-K -- BPTT without the neuron's past.

Papers:

* OTTT: "Online Training Through Time for Spiking Neural Networks", Xiao, Meng, Zhang, Wang,
  Lin -- NeurIPS 2022, arXiv 2210.04195.  Authors' code: GitHub ``pkuxmq/OTTT-SNN``
  (``modules/neuron.py`` ``OnlineLIFNode``, ``models/spiking_vgg.py`` ``WrapedSNNOp``).
* SLTT: "Towards Memory- and Time-Efficient Backpropagation for Training Spiking Neural
  Networks", Meng, Xiao, Yan, Wang, Lin, Luo -- ICCV 2023, arXiv 2302.14311.  Authors' code:
  GitHub ``qymeng94/SLTT`` (``modules/neuron.py`` ``SLTTNeuron``, ``train_SLTTK.py``).

The paper bodies were not available to us: the formulas are the authors' code in the library's
notation (the OTTT trace is OTTT Sec. 4.1 in the code's form).

Forward: the LIF neuron of :mod:`pysnn_ref.functional.neuron`, run step by step (or a chunk of
steps) with its state carried::

    u[t] = lam v[t-1] + I[t]      o[t] = H(u[t] - v_th)
    hard reset: v[t] = u[t] (1 - o[t])       soft reset: v[t] = u[t] - v_th o[t]
    OTTT's presynaptic trace: a_hat[t] = lam a_hat[t-1] + o[t]

Backward, each step on its own, right after that step's loss L[t] (no recursion over time)::

    dL/dI[t] = dL/do[t] sigma'(u[t] - v_th)

-- BPTT's recurrence (:func:`pysnn_ref.kernels.reference.lif_backward`) with every term through
v[t-1] dropped: v[t-1] (reset included) is a constant, ``sg(v[t-1])``.

The weight layers differ:

* **SLTT**: ``I^{l+1}[t] = W o[t] + b``; dW += dL/dI^{l+1}[t] o[t]^T (the ordinary layer).
* **OTTT**: value ``W o[t] + b``, gradient through ``W a_hat[t] + b`` (the code's ``Replace``):
  dW += dL/dI^{l+1}[t] a_hat[t]^T, and dL/do[t] = W^T dL/dI^{l+1}[t] as usual.  In the code the
  first layer (image input) is not traced, the readout layer is.  Give
  :func:`pysnn_ref.functional.linear.linear_backward` a cache whose ``x`` is the trace.
* **OTTT_A / OTTT_O**: where the optimizer steps -- once per batch on the gradient summed over
  the steps (A, "accumulate") or after every step (O, "online", the code's
  ``--online_update``).  Both use the trace.  (The weight gradient through o[t] instead of the
  trace is SLTT's.)
* **SLTT-K**: only K steps, drawn without replacement (``torch.randperm(T)[:K]`` in the code,
  :func:`sample_steps`), get a loss and a backward; the others run forward only.

Exact gradient of (tests/test_family_online.py, float64 smooth mode): SLTT --
``sum_{t in S} L[t]`` with every neuron's ``v[t-1]`` frozen at its forward value (S = all steps,
or SLTT-K's K); OTTT -- ``sum_t L[t]`` with ``v[t-1]`` and ``a_hat[t-1]`` frozen and each traced
layer computing ``W (lam sg(a_hat[t-1]) + o[t]) + b - sg(W lam a_hat[t-1])`` (the value is
``W o[t] + b``, the weight sees the trace).  At T = 1 both equal BPTT.

**Forward keeps** per neuron the membrane ``v`` (and the trace for OTTT) between steps, and for
the backward of a step only that step's ``u`` -- memory independent of T when the steps are
streamed one at a time (:func:`online_forward` with a :class:`OnlineState`).  Run over a whole
sequence at once it keeps ``u`` (T, B, ...), like BPTT, with the same gradient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .. import backend
from .._check import check_int, check_time_major
from .neuron import NeuronParams

__all__ = ["OnlineState", "OnlineCache", "online_forward", "online_backward", "sample_steps"]


@dataclass
class OnlineState:
    """Per-neuron state between steps: the membrane after reset ``v`` and, for OTTT, the
    presynaptic trace ``a_hat`` (None for SLTT); ``steps`` seen so far."""

    v: Any
    a_hat: Any | None = None
    steps: int = 0

    @classmethod
    def zeros(cls, shape: tuple[int, ...], dtype: Any, xp: Any = np,
              trace: bool = False) -> OnlineState:
        """Zero state (and zero trace if ``trace``) in the layer's dtype."""
        return cls(xp.zeros(shape, dtype=dtype), xp.zeros(shape, dtype=dtype) if trace else None)


class OnlineCache(NamedTuple):
    """What :func:`online_backward` needs: the membrane before reset ``u`` of the chunk's steps
    (Tc, B, ...) and the neuron parameters (the surrogate and v_th)."""

    u: Any
    p: NeuronParams


def online_forward(I: Any, p: NeuronParams, state: OnlineState | None = None
                   ) -> tuple[Any, Any | None, OnlineCache, OnlineState]:
    """Run LIF neurons over a chunk ``I`` (Tc, B, ...) -- one step for online training, all T
    for a whole sequence -- continuing ``state`` (updated in place; a new zero state without a
    trace if None).

    ``p``: validated :class:`~pysnn_ref.functional.neuron.NeuronParams` (``p.detach_reset`` is
    irrelevant: the backward never reaches the reset).  Returns ``(o, a_hat, cache, state)``:
    the spikes, OTTT's trace after each step (None if the state has no trace), the cache of
    :func:`online_backward` and the state."""
    check_time_major("I", I)
    if state is None:
        state = OnlineState.zeros(tuple(I.shape[1:]), I.dtype, backend.array_module(I))
    if tuple(I.shape[1:]) != tuple(state.v.shape):
        raise ValueError(f"I must have shape (Tc, {tuple(state.v.shape)}), got {tuple(I.shape)}")
    Tc = I.shape[0]
    xp = backend.array_module(I)
    tr = state.a_hat.reshape(-1) if state.a_hat is not None else xp.empty(0, I.dtype)
    K = backend.family_kernels_for(I)
    o, u, a_hat = K.online_forward(I.reshape(Tc, -1), state.v.reshape(-1), tr, p.lam, p.v_th,
                                   p.soft, p.smooth, p.surrogate.kind, p.surrogate.a)
    state.steps += Tc
    a_out = a_hat.reshape(I.shape) if state.a_hat is not None else None
    return o.reshape(I.shape), a_out, OnlineCache(u.reshape(I.shape), p), state


def online_backward(do: Any, cache: OnlineCache, steps: Any = None) -> Any:
    """``dL/dI[t] = dL/do[t] sigma'(u[t] - v_th)`` for the chunk's steps (OTTT, SLTT).

    ``steps`` (SLTT-K): indices of the chunk's steps that take part; the others get dI = 0 and
    cost nothing.  Returns dI shaped like ``do``."""
    u, p = cache
    check_time_major("do", do)
    if tuple(do.shape) != tuple(u.shape):
        raise ValueError(f"do must have shape {tuple(u.shape)}, got {tuple(do.shape)}")
    K = backend.family_kernels_for(u)
    Tc = u.shape[0]
    if steps is None:
        return K.online_backward(do.reshape(Tc, -1), u.reshape(Tc, -1), p.v_th, p.surrogate.kind,
                                 p.surrogate.a).reshape(u.shape)
    idx = np.asarray(steps, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= Tc):
        raise ValueError(f"steps must be indices in [0, {Tc}), got {idx.tolist()}")
    xp = backend.array_module(u)
    dI = xp.zeros(u.shape, dtype=u.dtype)
    if idx.size:
        n = int(np.prod(u.shape[1:]))
        dI[idx] = K.online_backward(do[idx].reshape(idx.size, n), u[idx].reshape(idx.size, n),
                                    p.v_th, p.surrogate.kind, p.surrogate.a).reshape(
                                        (idx.size, *u.shape[1:]))
    return dI


def sample_steps(T: int, K: int, rng: np.random.Generator) -> np.ndarray:
    """SLTT-K's steps: K of the T steps drawn without replacement (the code's
    ``torch.randperm(T)[:K]``), sorted.  ``K = T`` is plain SLTT."""
    T = check_int("T", T)
    K = check_int("K", K)
    if K > T:
        raise ValueError(f"K must be an integer in [1, T = {T}], got {K}")
    return np.sort(rng.permutation(T)[:K])

"""Section 2c -- the current-based (synaptic) LIF neuron under BPTT: forward and the exact
backward with its two adjoints (:func:`pysnn_ref.kernels.reference.synaptic_forward` /
:func:`~pysnn_ref.kernels.reference.synaptic_backward` are the loops these compile).

Layout as in :mod:`pysnn_ref.kernels.cpu.neuron`: neurons are split into blocks of
:data:`~pysnn_ref.kernels.cpu.neuron.BLOCK`, ``prange`` runs the blocks in parallel, and each
thread runs the whole time loop over its block, walking one contiguous time row at a time, with
the two states (syn, v) forward and the two adjoints (dL/du, dL/dsyn) backward held in block
buffers.  The membrane step is the LIF kernel's own :func:`lif_step_row` (one definition of the
update), fed the synaptic current instead of the input, and its adjoint the LIF kernel's
:func:`bptt_row`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .neuron import BLOCK, bptt_row, grad_row, lif_step_row

__all__ = ["synaptic_forward", "synaptic_backward"]


@njit(cache=True, parallel=True)
def _synaptic_forward(I, alpha, lam, v_th, soft, smooth, kind, a, o, u):
    """syn[t] = alpha syn[t-1] + I[t], then the LIF step of section 2 on syn[t]; o, u (T, N)."""
    T, N = I.shape
    s = I.dtype.type(1.0 if soft else 0.0)
    for blk in prange((N + BLOCK - 1) // BLOCK):
        n0 = blk * BLOCK
        m = min(N, n0 + BLOCK) - n0
        syn = np.zeros(m, I.dtype)
        v = np.zeros(m, I.dtype)
        for t in range(T):
            It = I[t, n0:n0 + m]
            for j in range(m):
                syn[j] = alpha * syn[j] + It[j]
            lif_step_row(syn, v, m, lam, v_th, s, smooth, kind, a, u[t, n0:n0 + m],
                         o[t, n0:n0 + m])


@njit(cache=True, parallel=True)
def _synaptic_backward(do, u, alpha, lam, v_th, soft, smooth, detach_reset, kind, a, dI):
    """The two-adjoint BPTT recurrence backwards in time, dI (T, N) written row by row: the
    membrane adjoint is the LIF kernel's own step (:func:`bptt_row`, section 2), then

    dL/dsyn[t] = dL/du[t] + alpha ds                                         ds = dL/dsyn[t+1]
    """
    T, N = u.shape
    s = u.dtype.type(1.0 if soft else 0.0)
    c = u.dtype.type(0.0 if detach_reset else 1.0)
    for blk in prange((N + BLOCK - 1) // BLOCK):
        n0 = blk * BLOCK
        m = min(N, n0 + BLOCK) - n0
        dn = np.zeros(m, u.dtype)
        ds = np.zeros(m, u.dtype)
        g = np.empty(m, u.dtype)
        for t in range(T - 1, -1, -1):
            ut = u[t, n0:n0 + m]
            grad_row(ut, v_th, kind, a, m, g)
            bptt_row(do[t, n0:n0 + m], ut, m, lam, v_th, s, c, smooth, kind, a, dn, g)
            dIt = dI[t, n0:n0 + m]
            for j in range(m):  # g = dL/du[t]
                ds[j] = g[j] + alpha * ds[j]
                dIt[j] = ds[j]


def synaptic_forward(I, alpha, lam, v_th, soft, smooth, kind, a):
    """Current-based LIF forward, ``(o, u)``; see
    :func:`pysnn_ref.kernels.reference.synaptic_forward`.  A time-broadcast ``I`` is copied out
    (the synaptic current grows over the steps, so there is no one-row shortcut)."""
    I = np.ascontiguousarray(I)
    o = np.empty(I.shape, I.dtype)
    u = np.empty(I.shape, I.dtype)
    f = I.dtype.type
    _synaptic_forward(I, f(alpha), f(lam), f(v_th), bool(soft), bool(smooth), int(kind), f(a),
                      o, u)
    return o, u


def synaptic_backward(do, u, alpha, lam, v_th, soft, smooth, detach_reset, kind, a):
    """Exact BPTT, ``dI`` (T, N); see :func:`pysnn_ref.kernels.reference.synaptic_backward`."""
    u = np.ascontiguousarray(u)
    do = np.ascontiguousarray(do, dtype=u.dtype)
    f = u.dtype.type
    dI = np.empty(u.shape, u.dtype)
    _synaptic_backward(do, u, f(alpha), f(lam), f(v_th), bool(soft), bool(smooth),
                       bool(detach_reset), int(kind), f(a), dI)
    return dI

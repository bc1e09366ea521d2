"""Section 2c -- the current-based (synaptic) LIF neuron under BPTT: forward and the exact
backward with its two adjoints (:func:`pysnn_ref.kernels.reference.synaptic_forward` /
:func:`~pysnn_ref.kernels.reference.synaptic_backward` are the loops these compile).

Layout as in :mod:`pysnn_ref.kernels.cpu.neuron`: neurons are split into blocks of
:data:`~pysnn_ref.kernels.cpu.neuron.BLOCK`, ``prange`` runs the blocks in parallel, and each
thread runs the whole time loop over its block, walking one contiguous time row at a time, with
the two states (syn, v) forward and the two adjoints (dL/du, dL/dsyn) backward held in block
buffers.  The membrane step is the LIF kernel's own :func:`lif_step_row` (one definition of the
update), fed the synaptic current instead of the input.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .neuron import BLOCK, lif_step_row
from .surrogate import grad_t, spike_t

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
    """The two-adjoint BPTT recurrence backwards in time, dI (T, N) written row by row:

    dL/du[t]   = (do[t] - c lam r dn) sigma'(u[t] - v_th) + lam keep dn      dn = dL/du[t+1]
    dL/dsyn[t] = dL/du[t] + alpha ds                                         ds = dL/dsyn[t+1]

    r = u[t] (hard) or v_th (soft), keep = 1 - o[t] (hard) or 1 (soft), c = 0 with detach_reset.
    """
    T, N = u.shape
    one = u.dtype.type(1.0)
    s = u.dtype.type(1.0 if soft else 0.0)
    c = u.dtype.type(0.0 if detach_reset else 1.0)
    for blk in prange((N + BLOCK - 1) // BLOCK):
        n0 = blk * BLOCK
        m = min(N, n0 + BLOCK) - n0
        dn = np.zeros(m, u.dtype)
        ds = np.zeros(m, u.dtype)
        for t in range(T - 1, -1, -1):
            ut = u[t, n0:n0 + m]
            dot = do[t, n0:n0 + m]
            dIt = dI[t, n0:n0 + m]
            for j in range(m):
                u_t = ut[j]
                x = u_t - v_th
                o_t = spike_t(x, smooth, kind, a)
                r = s * v_th + (one - s) * u_t
                keep = one - (one - s) * o_t
                d_u = (dot[j] - c * lam * r * dn[j]) * grad_t(x, kind, a) + lam * keep * dn[j]
                d_s = d_u + alpha * ds[j]
                dn[j] = d_u
                ds[j] = d_s
                dIt[j] = d_s


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

"""Numba CPU kernels of the T-independent family (DSR, OTTT / SLTT, rate-based backprop).

The computations of :mod:`pysnn_ref.kernels.reference_family`, fast, with the same signatures;
``tests/test_family_kernels.py`` asserts equality (float64 to 1e-10, float32 to float32
round-off).  As in :mod:`pysnn_ref.kernels.cpu`: every kernel is ``@njit(cache=True)``, runs
``prange`` over blocks of neurons with the time loop inside (the innermost loop walks one
contiguous time row of the block, so memory is streamed), and the LIF step and the surrogate
gradient row are kernels/cpu's own (:func:`pysnn_ref.kernels.cpu.neuron.lif_step_row`,
:func:`~pysnn_ref.kernels.cpu.neuron.grad_row`, on the reference's scalar formulas compiled per
dtype in kernels/cpu/surrogate.py), so a float32 kernel does float32 maths and each formula has
one compiled form.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# the one LIF step and the one sigma' row of kernels/cpu (whose surrogates are the reference's
# scalars compiled per dtype, kernels/cpu/surrogate.py): online rows = BPTT's, bit for bit
from .cpu.neuron import grad_row, lif_step_row

__all__ = ["BLOCK", "dsr_forward", "dsr_backward", "online_forward", "online_backward",
    "rate_forward"]

BLOCK = 2048

# --------------------------------------------------------------------------------------------
# 1. DSR
# --------------------------------------------------------------------------------------------

@njit(cache=True, parallel=True)
def _dsr_forward(I, v, sI, lam, v_th, alpha, o):
    Tc, N = I.shape
    zero = I.dtype.type(0.0)
    fire = alpha * v_th
    for blk in prange((N + BLOCK - 1) // BLOCK):
        n0 = blk * BLOCK
        m = min(N, n0 + BLOCK) - n0
        vb = v[n0:n0 + m].copy()
        sb = sI[n0:n0 + m].copy()
        for t in range(Tc):
            It = I[t, n0:n0 + m]
            ot = o[t, n0:n0 + m]
            for j in range(m):
                u_t = lam * vb[j] + It[j]
                o_t = v_th if u_t >= fire else zero
                vb[j] = u_t - o_t
                sb[j] = lam * sb[j] + It[j]
                ot[j] = o_t
        v[n0:n0 + m] = vb
        sI[n0:n0 + m] = sb


def dsr_forward(I, v, sI, lam, v_th, alpha):
    """DSR neurons over a chunk; see :func:`pysnn_ref.kernels.reference_family.dsr_forward`."""
    I = np.ascontiguousarray(I)
    o = np.empty(I.shape, I.dtype)
    f = I.dtype.type
    _dsr_forward(I, v, sI, f(lam), f(v_th), f(alpha), o)
    return o


@njit(cache=True, parallel=True)
def _dsr_backward(do, Ibar, gw, c, v_th, dI, part):
    T, N = do.shape
    zero = do.dtype.type(0.0)
    for blk in prange((N + BLOCK - 1) // BLOCK):
        n0 = blk * BLOCK
        m = min(N, n0 + BLOCK) - n0
        G = np.zeros(m, do.dtype)
        for t in range(T):
            dt = do[t, n0:n0 + m]
            for j in range(m):
                G[j] += gw[t] * dt[j]
        acc = 0.0
        for j in range(m):
            ib = Ibar[n0 + j]
            if ib > v_th:
                acc += G[j]
            if not (zero <= ib <= v_th):
                G[j] = zero
        for t in range(T):
            dIt = dI[t, n0:n0 + m]
            for j in range(m):
                dIt[j] = G[j] * c[t]
        part[blk] = acc


def dsr_backward(do, Ibar, gw, c, v_th):
    """``(dI, dv_th)``; see :func:`pysnn_ref.kernels.reference_family.dsr_backward`."""
    do = np.ascontiguousarray(do, dtype=Ibar.dtype)
    f = Ibar.dtype.type
    dI = np.empty(do.shape, Ibar.dtype)
    part = np.zeros((do.shape[1] + BLOCK - 1) // BLOCK)
    _dsr_backward(do, np.ascontiguousarray(Ibar), np.ascontiguousarray(gw, dtype=Ibar.dtype),
                  np.ascontiguousarray(c, dtype=Ibar.dtype), f(v_th), dI, part)
    return dI, float(part.sum())


# --------------------------------------------------------------------------------------------
# 2. Online neurons (OTTT, SLTT)
# --------------------------------------------------------------------------------------------

@njit(cache=True, parallel=True)
def _online_forward(I, v, tr, lam, v_th, soft, smooth, kind, a, o, u, a_hat):
    Tc, N = I.shape
    trace = tr.shape[0] == N
    s = I.dtype.type(1.0 if soft else 0.0)
    for blk in prange((N + BLOCK - 1) // BLOCK):
        n0 = blk * BLOCK
        m = min(N, n0 + BLOCK) - n0
        vb = v[n0:n0 + m].copy()
        tb = tr[n0:n0 + m].copy() if trace else np.empty(0, I.dtype)
        for t in range(Tc):
            ot = o[t, n0:n0 + m]
            lif_step_row(I[t, n0:n0 + m], vb, m, lam, v_th, s, smooth, kind, a,
                             u[t, n0:n0 + m], ot)
            if trace:
                at = a_hat[t, n0:n0 + m]
                for j in range(m):
                    tb[j] = lam * tb[j] + ot[j]
                    at[j] = tb[j]
        v[n0:n0 + m] = vb
        if trace:
            tr[n0:n0 + m] = tb


def online_forward(I, v, tr, lam, v_th, soft, smooth, kind, a):
    """``(o, u, a_hat)`` of one chunk; see
    :func:`pysnn_ref.kernels.reference_family.online_forward`."""
    I = np.ascontiguousarray(I)
    Tc, N = I.shape
    o = np.empty(I.shape, I.dtype)
    u = np.empty(I.shape, I.dtype)
    a_hat = np.empty((Tc, N if tr.shape[0] == N else 0), I.dtype)
    f = I.dtype.type
    _online_forward(I, v, tr, f(lam), f(v_th), bool(soft), bool(smooth), int(kind), f(a), o, u,
                    a_hat)
    return o, u, a_hat


@njit(cache=True, parallel=True)
def _online_backward(do, u, v_th, kind, a, dI):
    T, N = u.shape
    for blk in prange((N + BLOCK - 1) // BLOCK):
        n0 = blk * BLOCK
        m = min(N, n0 + BLOCK) - n0
        for t in range(T):
            dIt = dI[t, n0:n0 + m]
            grad_row(u[t, n0:n0 + m], v_th, kind, a, m, dIt)  # sigma'(u - v_th), vectorised
            dt = do[t, n0:n0 + m]
            for j in range(m):
                dIt[j] *= dt[j]


def online_backward(do, u, v_th, kind, a):
    """``dI = do sigma'(u - v_th)``; see
    :func:`pysnn_ref.kernels.reference_family.online_backward`."""
    do = np.ascontiguousarray(do, dtype=u.dtype)
    u = np.ascontiguousarray(u)
    dI = np.empty(u.shape, u.dtype)
    f = u.dtype.type
    _online_backward(do, u, f(v_th), int(kind), f(a), dI)
    return dI


# --------------------------------------------------------------------------------------------
# 3. Rate-based backpropagation
# --------------------------------------------------------------------------------------------

@njit(cache=True, parallel=True)
def _rate_forward(I, v, kappa, sO, sE, lam, v_th, soft, smooth, detach_reset, kind, a, o):
    """Per step and block: the LIF step (lif_step_row), sigma' of the row (grad_row), then
    the sums and kappa without branches -- with s = 1 (soft) / 0 (hard) and c = 0 (detached) /
    1, rho = s (1 - c v_th sg) + (1 - s)((1 - o) - c u sg)."""
    Tc, N = I.shape
    one = I.dtype.type(1.0)
    s = I.dtype.type(1.0 if soft else 0.0)
    c = I.dtype.type(0.0 if detach_reset else 1.0)
    for blk in prange((N + BLOCK - 1) // BLOCK):
        n0 = blk * BLOCK
        m = min(N, n0 + BLOCK) - n0
        vb = v[n0:n0 + m].copy()
        kb = kappa[n0:n0 + m].copy()
        so = sO[n0:n0 + m].copy()
        se = sE[n0:n0 + m].copy()
        ub = np.empty(m, I.dtype)
        g = np.empty(m, I.dtype)
        for t in range(Tc):
            ot = o[t, n0:n0 + m]
            lif_step_row(I[t, n0:n0 + m], vb, m, lam, v_th, s, smooth, kind, a, ub, ot)
            grad_row(ub, v_th, kind, a, m, g)
            for j in range(m):
                sg = g[j]
                o_t = ot[j]
                so[j] += o_t
                se[j] += kb[j] * sg
                rho = s * (one - c * v_th * sg) + (one - s) * ((one - o_t) - c * ub[j] * sg)
                kb[j] = one + lam * kb[j] * rho
        v[n0:n0 + m] = vb
        kappa[n0:n0 + m] = kb
        sO[n0:n0 + m] = so
        sE[n0:n0 + m] = se


def rate_forward(I, v, kappa, sO, sE, lam, v_th, soft, smooth, detach_reset, kind, a):
    """Spikes of one chunk, rate/eligibility sums in place; see
    :func:`pysnn_ref.kernels.reference_family.rate_forward`."""
    I = np.ascontiguousarray(I)
    o = np.empty(I.shape, I.dtype)
    f = I.dtype.type
    _rate_forward(I, v, kappa, sO, sE, f(lam), f(v_th), bool(soft), bool(smooth),
                  bool(detach_reset), int(kind), f(a), o)
    return o

"""Numba CPU kernels of the T-independent family (DSR, OTTT / SLTT, rate-based backprop).

The computations of :mod:`pysnn_ref.kernels.reference_family`, fast, with the same signatures;
``tests/test_family_kernels.py`` asserts equality (float64 to 1e-10, float32 to float32
round-off).  As in :mod:`pysnn_ref.kernels.cpu`: every kernel is ``@njit(cache=True)``, runs
``prange`` over blocks of neurons with the time loop inside (the innermost loop walks one
contiguous time row of the block, so memory is streamed), and the surrogate formulas are the
reference module's scalar functions compiled per dtype (:func:`pysnn_ref.kernels.retype.retyped`)
so a float32 kernel does float32 maths.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from . import reference as _ref
from .cpu.neuron import lif_step_row  # the one LIF step: online rows = BPTT's, bit for bit
from .retype import retyped

__all__ = ["BLOCK", "dsr_forward", "dsr_backward", "online_forward", "online_backward",
    "rate_forward"]

BLOCK = 2048

_TWINS = {name: (retyped(getattr(_ref, name), np.float32), retyped(getattr(_ref, name), np.float64))
          for name in ("surrogate_primitive_scalar", "surrogate_grad_scalar", "heaviside")}


def _primitive(x, kind, a):
    """reference.surrogate_primitive_scalar in the dtype of x (in Numba code)."""
    return _ref.surrogate_primitive_scalar(x, kind, a)


def _grad(x, kind, a):
    """reference.surrogate_grad_scalar in the dtype of x (in Numba code)."""
    return _ref.surrogate_grad_scalar(x, kind, a)


overload(_primitive)(lambda x, kind, a:
                     _TWINS["surrogate_primitive_scalar"][0 if x == types.float32 else 1])
overload(_grad)(lambda x, kind, a: _TWINS["surrogate_grad_scalar"][0 if x == types.float32 else 1])


def _heaviside(x):
    """reference.heaviside in the dtype of x (in Numba code)."""
    return _ref.heaviside(x)


overload(_heaviside)(lambda x: _TWINS["heaviside"][0 if x == types.float32 else 1])


@njit(cache=True, inline="always")
def _spike(x, smooth, kind, a):
    """reference.spike_scalar: the Heaviside (H(0) = 1), or the primitive in smooth mode."""
    if smooth:
        return _primitive(x, kind, a)
    return _heaviside(x)


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


@njit(cache=True, inline="always")
def _online_grad_row(dt, ut, v_th, kind, a, m, dIt):
    """``dIt[j] = dt[j] sigma'(ut[j] - v_th)`` over a block; the surrogate is dispatched once,
    outside the loop (a constant kind in each branch), so that every loop vectorises (as
    kernels/cpu's _grad_row)."""
    if kind == _ref.RECTANGULAR:
        for j in range(m):
            dIt[j] = dt[j] * _grad(ut[j] - v_th, _ref.RECTANGULAR, a)
    elif kind == _ref.TRIANGLE:
        for j in range(m):
            dIt[j] = dt[j] * _grad(ut[j] - v_th, _ref.TRIANGLE, a)
    elif kind == _ref.SIGMOID:
        for j in range(m):
            dIt[j] = dt[j] * _grad(ut[j] - v_th, _ref.SIGMOID, a)
    elif kind == _ref.ATAN:
        for j in range(m):
            dIt[j] = dt[j] * _grad(ut[j] - v_th, _ref.ATAN, a)
    else:
        for j in range(m):
            dIt[j] = dt[j] * _grad(ut[j] - v_th, kind, a)


@njit(cache=True, parallel=True)
def _online_backward(do, u, v_th, kind, a, dI):
    T, N = u.shape
    for blk in prange((N + BLOCK - 1) // BLOCK):
        n0 = blk * BLOCK
        m = min(N, n0 + BLOCK) - n0
        for t in range(T):
            _online_grad_row(do[t, n0:n0 + m], u[t, n0:n0 + m], v_th, kind, a, m,
                             dI[t, n0:n0 + m])


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

@njit(cache=True, inline="always")
def _sg_row(ut, v_th, kind, a, m, g):
    """``g[j] = sigma'(ut[j] - v_th)``, the surrogate dispatched once outside the loop."""
    if kind == _ref.RECTANGULAR:
        for j in range(m):
            g[j] = _grad(ut[j] - v_th, _ref.RECTANGULAR, a)
    elif kind == _ref.TRIANGLE:
        for j in range(m):
            g[j] = _grad(ut[j] - v_th, _ref.TRIANGLE, a)
    elif kind == _ref.SIGMOID:
        for j in range(m):
            g[j] = _grad(ut[j] - v_th, _ref.SIGMOID, a)
    elif kind == _ref.ATAN:
        for j in range(m):
            g[j] = _grad(ut[j] - v_th, _ref.ATAN, a)
    else:
        for j in range(m):
            g[j] = _grad(ut[j] - v_th, kind, a)


@njit(cache=True, parallel=True)
def _rate_forward(I, v, kappa, sO, sE, lam, v_th, soft, smooth, detach_reset, kind, a, o):
    """Per step and block: the LIF step (lif_step_row), sigma' of the row (_sg_row), then
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
            _sg_row(ub, v_th, kind, a, m, g)
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

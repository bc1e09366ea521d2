"""Numba CPU kernels: the computations of :mod:`pysnn_ref.kernels.reference`, fast.

Same signatures as the reference module; tests assert equality (float64, rel <= 1e-10).
Every kernel is ``@njit(cache=True)`` so the JIT compile cost is paid once per machine, and the
hot loops run ``prange`` over independent neurons/rows with the time loop fused inside each one,
kept in registers.  The scalar surrogate formulas are the reference module's own Python functions
compiled with ``njit`` -- one definition of each formula.

Sections: 1. surrogate functions; 2. LIF/IF neuron (BPTT); 3. LIF/IF streaming with spiking flows;
4. flow gains; 5. im2col / col2im; 6. pooling.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import reference as _ref

# --------------------------------------------------------------------------------------------
# 1. Surrogate functions (compiled from the reference module's scalar definitions).
# --------------------------------------------------------------------------------------------

SURROGATE_KINDS = _ref.SURROGATE_KINDS
_primitive = njit(cache=True, inline="always")(_ref.surrogate_primitive_scalar)
_grad = njit(cache=True, inline="always")(_ref.surrogate_grad_scalar)
_heaviside = njit(cache=True, inline="always")(_ref.heaviside)


@njit(cache=True, inline="always")
def _spike(x, smooth, kind, a):
    if smooth:
        return _primitive(x, kind, a)
    return _heaviside(x)


@njit(cache=True, parallel=True)
def _surrogate_primitive_flat(x, kind, a, out):
    for i in prange(x.size):
        out[i] = _primitive(x[i], kind, a)


@njit(cache=True, parallel=True)
def _surrogate_grad_flat(x, kind, a, out):
    for i in prange(x.size):
        out[i] = _grad(x[i], kind, a)


def surrogate_primitive(x, kind, a):
    """Elementwise surrogate primitive over an array (see the reference module)."""
    xf = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(xf)
    _surrogate_primitive_flat(xf, kind, x.dtype.type(a), out)
    return out.reshape(x.shape)


def surrogate_grad(x, kind, a):
    """Elementwise surrogate gradient over an array (see the reference module)."""
    xf = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(xf)
    _surrogate_grad_flat(xf, kind, x.dtype.type(a), out)
    return out.reshape(x.shape)


# --------------------------------------------------------------------------------------------
# 2. LIF / IF neuron, BPTT: one fused time loop per neuron, prange over neurons.
# --------------------------------------------------------------------------------------------

@njit(cache=True, parallel=True)
def _lif_forward(I, lam, v_th, soft, smooth, kind, a, o, u):
    T, N = I.shape
    for n in prange(N):
        v = 0.0 * v_th
        for t in range(T):
            u_t = lam * v + I[t, n]
            o_t = _spike(u_t - v_th, smooth, kind, a)
            if soft:
                v = u_t - v_th * o_t
            else:
                v = u_t * (1.0 - o_t)
            u[t, n] = u_t
            o[t, n] = o_t


@njit(cache=True, parallel=True)
def _lif_backward(do, u, lam, v_th, soft, smooth, detach_reset, kind, a, dI):
    T, N = u.shape
    for n in prange(N):
        du_next = 0.0 * v_th
        for t in range(T - 1, -1, -1):
            u_t = u[t, n]
            x = u_t - v_th
            sg = _grad(x, kind, a)
            do_t = do[t, n]
            if soft:
                if not detach_reset:
                    do_t += du_next * (-lam * v_th)
                du_t = do_t * sg + du_next * lam
            else:
                o_t = _spike(x, smooth, kind, a)
                if not detach_reset:
                    do_t += du_next * (-lam * u_t)
                du_t = do_t * sg + du_next * lam * (1.0 - o_t)
            dI[t, n] = du_t
            du_next = du_t


def lif_forward(I, lam, v_th, soft, smooth, kind, a):
    """LIF forward, ``(o, u)``; see :func:`pysnn_ref.kernels.reference.lif_forward`."""
    I = np.ascontiguousarray(I)
    o = np.empty_like(I)
    u = np.empty_like(I)
    f = I.dtype.type
    _lif_forward(I, f(lam), f(v_th), bool(soft), bool(smooth), int(kind), f(a), o, u)
    return o, u


def lif_backward(do, u, lam, v_th, soft, smooth, detach_reset, kind, a):
    """Exact BPTT, ``dI``; see :func:`pysnn_ref.kernels.reference.lif_backward`."""
    do = np.ascontiguousarray(do, dtype=u.dtype)
    dI = np.empty_like(u)
    f = u.dtype.type
    _lif_backward(do, u, f(lam), f(v_th), bool(soft), bool(smooth), bool(detach_reset),
                  int(kind), f(a), dI)
    return dI


# --------------------------------------------------------------------------------------------
# 3. LIF / IF streaming over a time chunk with spiking-flow accumulators (ASF / SSF).
# --------------------------------------------------------------------------------------------

@njit(cache=True, parallel=True)
def _lif_forward_flows(I, v, lam, v_th, soft, smooth, kind, a, w, sI, sO, sOU, o):
    Tc, N = I.shape
    for n in prange(N):
        vn = v[n]
        si = sI[n]
        so = sO[n]
        sou = sOU[n]
        for t in range(Tc):
            i_t = I[t, n]
            u_t = lam * vn + i_t
            o_t = _spike(u_t - v_th, smooth, kind, a)
            if soft:
                vn = u_t - v_th * o_t
            else:
                vn = u_t * (1.0 - o_t)
            si = w * si + i_t
            so = w * so + o_t
            sou = w * sou + o_t * u_t
            o[t, n] = o_t
        v[n] = vn
        sI[n] = si
        sO[n] = so
        sOU[n] = sou


def lif_forward_flows(I, v, lam, v_th, soft, smooth, kind, a, w, sI, sO, sOU):
    """Streamed LIF chunk with flow sums; see the reference module.  Returns ``o``."""
    I = np.ascontiguousarray(I)
    o = np.empty_like(I)
    f = I.dtype.type
    _lif_forward_flows(I, v, f(lam), f(v_th), bool(soft), bool(smooth), int(kind), f(a), f(w),
                       sI, sO, sOU, o)
    return o


# --------------------------------------------------------------------------------------------
# 4. Flow gains (SSF Eqs. 14, 19).
# --------------------------------------------------------------------------------------------

@njit(cache=True, parallel=True)
def _ssf_gain(FI, R, v_th, soft, r_max, gain):
    for i in prange(FI.size):
        fi = FI[i]
        if soft:
            gain[i] = 1.0 / v_th if (fi > 0.0 and fi < v_th) else 0.0
        else:
            r = R[i]
            gain[i] = 1.0 / (r * v_th) if (fi > 0.0 and r <= r_max) else 0.0


def ssf_gain(FI, R, v_th, soft, r_max):
    """SSF dFO/dFI; see :func:`pysnn_ref.kernels.reference.ssf_gain`."""
    FIf = np.ascontiguousarray(FI).reshape(-1)
    Rf = np.ascontiguousarray(np.broadcast_to(R, FI.shape), dtype=FI.dtype).reshape(-1)
    gain = np.empty_like(FIf)
    f = FI.dtype.type
    _ssf_gain(FIf, Rf, f(v_th), bool(soft), f(r_max), gain)
    return gain.reshape(FI.shape)

"""Sections 3 and 4 -- LIF / IF streaming over a time chunk with the spiking-flow accumulators
(ASF / SSF), and SSF's flow gain (SSF Eqs. 14, 19).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .neuron import BLOCK
from .surrogate import primitive_t

__all__ = ["lif_forward_flows", "ssf_gain"]

# --------------------------------------------------------------------------------------------
# 3. LIF / IF streaming over a time chunk with spiking-flow accumulators (ASF / SSF).
# --------------------------------------------------------------------------------------------

@njit(cache=True, parallel=True)
def _lif_forward_flows(I, v, lam, v_th, soft, smooth, kind, a, w, sI, sO, sOU, o):
    Tc, N = o.shape
    static = I.shape[0] == 1  # one current row for every step of the chunk
    s = I.dtype.type(1.0 if soft else 0.0)
    one = I.dtype.type(1.0)
    zero = I.dtype.type(0.0)
    for blk in prange((N + BLOCK - 1) // BLOCK):
        n0 = blk * BLOCK
        m = min(N, n0 + BLOCK) - n0
        vb = v[n0:n0 + m].copy()
        si = sI[n0:n0 + m].copy()
        so = sO[n0:n0 + m].copy()
        sou = sOU[n0:n0 + m].copy()
        for t in range(Tc):
            It = I[0 if static else t, n0:n0 + m]
            ot = o[t, n0:n0 + m]
            for j in range(m):
                i_t = It[j]
                u_t = lam * vb[j] + i_t
                if smooth:
                    o_t = primitive_t(u_t - v_th, kind, a)
                else:
                    o_t = one if u_t >= v_th else zero
                vb[j] = u_t - o_t * (s * v_th + (one - s) * u_t)
                si[j] = w * si[j] + i_t
                so[j] = w * so[j] + o_t
                sou[j] = w * sou[j] + o_t * u_t
                ot[j] = o_t
        v[n0:n0 + m] = vb
        sI[n0:n0 + m] = si
        sO[n0:n0 + m] = so
        sOU[n0:n0 + m] = sou


def lif_forward_flows(I, v, lam, v_th, soft, smooth, kind, a, w, sI, sO, sOU):
    """Streamed LIF chunk with flow sums; see the reference module.  Returns ``o``.
    A time-broadcast chunk ``I`` is read as its one row, as in :func:`lif_forward`."""
    o = np.empty(I.shape, I.dtype)
    I = np.ascontiguousarray(I[:1] if I.shape[0] > 1 and I.strides[0] == 0 else I)
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


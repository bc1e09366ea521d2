"""Section 8 -- the spiking LSTM cell, one time step.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange
from numba.extending import overload

from .. import reference as _ref
from .surrogate import grad_t, make_twins, spike_t, twin

__all__ = ["lstm_cell_forward", "lstm_cell_backward"]

# --------------------------------------------------------------------------------------------
# 8. Spiking LSTM cell, one time step (reference module, section 8): one fused pass per neuron,
#    prange over the B*H neurons; the scalar cell formulas are the reference module's own
#    functions, compiled in the array's dtype as the surrogates are (section 1).
# --------------------------------------------------------------------------------------------

def _sigmoid(x):
    """reference.sigmoid_scalar in the dtype of x (in Numba code; see section 1)."""
    return _ref.sigmoid_scalar(x)


def _lstm_cell(zi, zf, zg, zo, c_prev, v_th, smooth, kind, a):
    """reference.lstm_cell_scalar in the dtype of zi (in Numba code; see section 1)."""
    return _ref.lstm_cell_scalar(zi, zf, zg, zo, c_prev, v_th, smooth, kind, a)


def _lstm_cell_bwd(ds, dc_next, i, f, g, o, c_prev, c, v_th, kind, a):
    """reference.lstm_cell_backward_scalar in the dtype of ds (in Numba code; see section 1)."""
    return _ref.lstm_cell_backward_scalar(ds, dc_next, i, f, g, o, c_prev, c, v_th, kind, a)


make_twins("sigmoid_scalar")
make_twins("lstm_cell_scalar", sigmoid_scalar=_sigmoid, spike_scalar=spike_t)
make_twins("lstm_cell_backward_scalar", surrogate_grad_scalar=grad_t)
overload(_sigmoid)(lambda x: twin("sigmoid_scalar", x))
overload(_lstm_cell)(lambda zi, zf, zg, zo, c_prev, v_th, smooth, kind, a:
                     twin("lstm_cell_scalar", zi))
overload(_lstm_cell_bwd)(lambda ds, dc_next, i, f, g, o, c_prev, c, v_th, kind, a:
                         twin("lstm_cell_backward_scalar", ds))


@njit(cache=True, parallel=True)
def _lstm_cell_forward(z, c_prev, v_th, smooth, kind, a, A, c, s):
    B, H = c_prev.shape
    for n in prange(B * H):
        b = n // H
        h = n - b * H
        i, f, g, o, c_t, s_t = _lstm_cell(z[b, h], z[b, H + h], z[b, 2 * H + h],
                                          z[b, 3 * H + h], c_prev[b, h], v_th, smooth, kind, a)
        A[b, h] = i
        A[b, H + h] = f
        A[b, 2 * H + h] = g
        A[b, 3 * H + h] = o
        c[b, h] = c_t
        s[b, h] = s_t


@njit(cache=True, parallel=True)
def _lstm_cell_backward(ds, dc_next, A, c_prev, c, v_th, kind, a, dz, dc_carry):
    B, H = c_prev.shape
    for n in prange(B * H):
        b = n // H
        h = n - b * H
        dzi, dzf, dzg, dzo, dcc = _lstm_cell_bwd(
            ds[b, h], dc_next[b, h], A[b, h], A[b, H + h], A[b, 2 * H + h], A[b, 3 * H + h],
            c_prev[b, h], c[b, h], v_th, kind, a)
        dz[b, h] = dzi
        dz[b, H + h] = dzf
        dz[b, 2 * H + h] = dzg
        dz[b, 3 * H + h] = dzo
        dc_carry[b, h] = dcc


def lstm_cell_forward(z, c_prev, v_th, smooth, kind, a):
    """One spiking LSTM step, ``(A, c, s)``; see the reference module's ``lstm_cell_forward``.
    A read-only ``z`` (the first step of a time-broadcast input) is copied, so that Numba
    compiles one specialisation, not a second one for read-only arrays."""
    z = np.ascontiguousarray(z)
    if not z.flags.writeable:
        z = z.copy()
    c_prev = np.ascontiguousarray(c_prev, dtype=z.dtype)
    A = np.empty_like(z)
    c = np.empty_like(c_prev)
    s = np.empty_like(c_prev)
    f = z.dtype.type  # scalars in the array's dtype: the cell's maths stays in it
    _lstm_cell_forward(z, c_prev, f(v_th), bool(smooth), int(kind), f(a), A, c, s)
    return A, c, s


def lstm_cell_backward(ds, dc_next, A, c_prev, c, v_th, kind, a):
    """Its adjoint, ``(dz, dc_carry)``; see the reference module's ``lstm_cell_backward``."""
    f = A.dtype
    ds, dc_next, A, c_prev, c = (np.ascontiguousarray(v, dtype=f)
                                 for v in (ds, dc_next, A, c_prev, c))
    dz = np.empty_like(A)
    dc_carry = np.empty_like(c_prev)
    _lstm_cell_backward(ds, dc_next, A, c_prev, c, A.dtype.type(v_th), int(kind),
                        A.dtype.type(a), dz, dc_carry)
    return dz, dc_carry


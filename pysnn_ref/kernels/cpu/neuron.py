"""Sections 2 and 2b -- the LIF / IF neuron under BPTT (forward, backward, time-summed
backward) and LIF fused with the k x k average pooling above it.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .. import reference as _ref
from .pool import pool_plane_t, spread_plane_t
from .surrogate import grad_t, primitive_t

__all__ = ["BLOCK", "lif_step_row", "grad_row", "lif_forward", "lif_forward_count", "lif_backward",
    "lif_backward_time_sum", "lif_avgpool_forward", "lif_avgpool_backward",
    "lif_avgpool_backward_time_sum"]

# --------------------------------------------------------------------------------------------
# 2. LIF / IF neuron, BPTT: one fused time loop per block of neurons, prange over blocks.
# --------------------------------------------------------------------------------------------

# Neurons are processed in blocks of BLOCK: one thread takes a block and runs the time loop
# over it, the innermost loop walking the block's neurons along one contiguous time row, so every
# access streams through the cache (a thread walking one neuron down its column would touch a new
# cache line at every step).  The reset and the detach switch are folded into coefficients, and
# the surrogate dispatch is hoisted out of the recurrence (at each step the backward first writes
# sigma'(u - v_th) of the block's row in a loop of its own, grad_row, then runs the recurrence
# over that row, bptt_row, while it is in cache), so the inner loops have no branches and
# vectorise.  Arithmetic stays in the input dtype (the surrogates too: section 1).
#   hard reset: v = u - o*u,      dL/do = do - c*lam*u*dn,      dL/du = dL/do*sg + lam*(1-o)*dn
#   soft reset: v = u - o*v_th,   dL/do = do - c*lam*v_th*dn,   dL/du = dL/do*sg + lam*dn
# with c = 0 for detach_reset, written once as r = s*v_th + (1-s)*u, keep = 1 - (1-s)*o.

BLOCK = 2048


@njit(cache=True, inline="always")
def lif_step_row(It, v, m, lam, v_th, s, smooth, kind, a, ut, ot):
    """One step of the LIF recurrence over a block of m neurons: ``ut = lam v + It`` (the
    membrane before reset), ``ot`` the spike, ``v`` the membrane after reset (in place).  The
    one place these operations are written, so a membrane recomputed later is bit-equal."""
    one = It.dtype.type(1.0)
    zero = It.dtype.type(0.0)
    if smooth:
        for j in range(m):
            u_t = lam * v[j] + It[j]
            o_t = primitive_t(u_t - v_th, kind, a)
            v[j] = u_t - o_t * (s * v_th + (one - s) * u_t)
            ut[j] = u_t
            ot[j] = o_t
    else:
        for j in range(m):
            u_t = lam * v[j] + It[j]
            o_t = one if u_t >= v_th else zero
            v[j] = u_t - o_t * (s * v_th + (one - s) * u_t)
            ut[j] = u_t
            ot[j] = o_t


@njit(cache=True, inline="always")
def _membrane_block(I, n0, m, lam, v_th, s, smooth, kind, a, ub, ob):
    """Recompute the membrane ``ub[t] = u[t, n0:n0+m]`` of every step t < ub.shape[0] from a
    static current row ``I[0]``, with the forward's own step (so bit-equal to the u it would
    have stored); ``ob`` (m,) takes the spikes and is left holding the last step's."""
    v = np.zeros(m, I.dtype)
    for t in range(ub.shape[0]):
        lif_step_row(I[0, n0:n0 + m], v, m, lam, v_th, s, smooth, kind, a, ub[t], ob)


@njit(cache=True, parallel=True)
def _lif_forward(I, lam, v_th, soft, smooth, kind, a, o, u, count):
    """With ``u`` of 0 rows the membrane is not stored (a static ``I``: the backward
    recomputes it, see _lif_backward).  With ``count`` of one entry per block, each block's sum
    of its spikes (float64) is written there, summed while the row is in cache -- the layer's
    firing rate without a second pass over the (T, N) spikes."""
    T, N = o.shape
    keep = u.shape[0] > 0
    counting = count.shape[0] > 0
    static = I.shape[0] == 1  # one current row for every step (time-broadcast input)
    s = I.dtype.type(1.0 if soft else 0.0)
    for blk in prange((N + BLOCK - 1) // BLOCK):
        n0 = blk * BLOCK
        m = min(N, n0 + BLOCK) - n0
        v = np.zeros(m, I.dtype)
        ub = np.empty(0 if keep else m, I.dtype)
        acc = np.zeros(m if counting else 0)  # per-neuron sums (float64): independent lanes
        for t in range(T):
            ut = u[t, n0:n0 + m] if keep else ub
            ot = o[t, n0:n0 + m]
            lif_step_row(I[0 if static else t, n0:n0 + m], v, m, lam, v_th, s, smooth, kind, a,
                         ut, ot)
            if counting:  # a vector add (one scalar sum would be a serial chain: 2x slower)
                for j in range(m):
                    acc[j] += ot[j]
        if counting:
            c = 0.0
            for j in range(m):
                c += acc[j]
            count[blk] = c


@njit(cache=True, inline="always")
def grad_row(ut, v_th, kind, a, m, g):
    """``g[j] = sigma'(ut[j] - v_th)`` over a block of m neurons.  The surrogate is dispatched
    once, outside the loop (a constant kind in each branch), so that every loop vectorises;
    ``grad_t`` with a variable kind inside a block loop does not (3.5x slower, measured)."""
    if kind == _ref.RECTANGULAR:
        for j in range(m):
            g[j] = grad_t(ut[j] - v_th, _ref.RECTANGULAR, a)
    elif kind == _ref.TRIANGLE:
        for j in range(m):
            g[j] = grad_t(ut[j] - v_th, _ref.TRIANGLE, a)
    elif kind == _ref.SIGMOID:
        for j in range(m):
            g[j] = grad_t(ut[j] - v_th, _ref.SIGMOID, a)
    elif kind == _ref.ATAN:
        for j in range(m):
            g[j] = grad_t(ut[j] - v_th, _ref.ATAN, a)
    else:
        for j in range(m):
            g[j] = grad_t(ut[j] - v_th, kind, a)


@njit(cache=True, inline="always")
def bptt_row(d_o, ut, m, lam, v_th, s, c, smooth, kind, a, dn, g):
    """One step t of the BPTT recurrence over a block of m neurons: on entry ``g`` holds
    sigma'(u[t] - v_th) and ``dn`` dL/du[t+1]; on exit both hold dL/du[t] (= dL/dI[t])."""
    one = ut.dtype.type(1.0)
    zero = ut.dtype.type(0.0)
    if smooth:
        for j in range(m):
            u_t = ut[j]
            o_t = primitive_t(u_t - v_th, kind, a)
            d_next = dn[j]
            r = s * v_th + (one - s) * u_t
            keep = one - (one - s) * o_t
            d_u = (d_o[j] - c * lam * r * d_next) * g[j] + lam * keep * d_next
            g[j] = d_u
            dn[j] = d_u
    else:
        for j in range(m):
            u_t = ut[j]
            o_t = one if u_t >= v_th else zero
            d_next = dn[j]
            # hard: dL/do = do - c lam u dn;    dL/du = dL/do sg + lam (1 - o) dn
            # soft: dL/do = do - c lam v_th dn; dL/du = dL/do sg + lam dn
            r = s * v_th + (one - s) * u_t
            keep = one - (one - s) * o_t
            d_u = (d_o[j] - c * lam * r * d_next) * g[j] + lam * keep * d_next
            g[j] = d_u
            dn[j] = d_u


@njit(cache=True, parallel=True)
def _lif_backward(do, u, lam, v_th, soft, smooth, detach_reset, kind, a, dI):
    """BPTT recurrence, dI (T, N) written row by row: sigma'(u - v_th) first, then the
    recurrence over it in place.  With ``u`` of one row and T = ``dI.shape[0]`` > 1, ``u`` is
    the static current (the forward did not store the membrane): each block recomputes its T
    rows of u into a buffer that stays in cache (_membrane_block).  ``do`` of one row: the same
    dL/do at every step (a loss on the time-mean output, :func:`grad_rows`)."""
    T, N = dI.shape
    d1 = do.shape[0] == 1
    recompute = u.shape[0] == 1 and T > 1
    s = u.dtype.type(1.0 if soft else 0.0)
    c = u.dtype.type(0.0 if detach_reset else 1.0)
    for blk in prange((N + BLOCK - 1) // BLOCK):
        n0 = blk * BLOCK
        m = min(N, n0 + BLOCK) - n0
        dn = np.zeros(m, u.dtype)
        ub = np.empty((T if recompute else 0, m), u.dtype)
        if recompute:
            _membrane_block(u, n0, m, lam, v_th, s, smooth, kind, a, ub, dn)
            dn[:] = 0
        for t in range(T - 1, -1, -1):
            ut = ub[t] if recompute else u[t, n0:n0 + m]
            grad_row(ut, v_th, kind, a, m, dI[t, n0:n0 + m])
            bptt_row(do[0 if d1 else t, n0:n0 + m], ut, m, lam, v_th, s, c, smooth, kind, a, dn,
                      dI[t, n0:n0 + m])


@njit(cache=True, parallel=True)
def _lif_backward_time_sum(do, u, T, lam, v_th, soft, smooth, detach_reset, kind, a, dI_sum):
    """The recurrence of _lif_backward keeping only ``dI_sum = sum_t dI[t]``: each step's
    sigma' goes into a block buffer (its own loop, which vectorises) and dI is never written.
    ``u`` of one row: the static current, as in _lif_backward; ``do`` of one row: the same
    dL/do at every one of the T steps."""
    N = dI_sum.shape[0]
    d1 = do.shape[0] == 1
    recompute = u.shape[0] == 1 and T > 1
    s = u.dtype.type(1.0 if soft else 0.0)
    c = u.dtype.type(0.0 if detach_reset else 1.0)
    for blk in prange((N + BLOCK - 1) // BLOCK):
        n0 = blk * BLOCK
        m = min(N, n0 + BLOCK) - n0
        dn = np.zeros(m, u.dtype)
        g = np.empty(m, u.dtype)
        acc = np.zeros(m, u.dtype)
        ub = np.empty((T if recompute else 0, m), u.dtype)
        if recompute:
            _membrane_block(u, n0, m, lam, v_th, s, smooth, kind, a, ub, g)
        for t in range(T - 1, -1, -1):
            ut = ub[t] if recompute else u[t, n0:n0 + m]
            grad_row(ut, v_th, kind, a, m, g)
            bptt_row(do[0 if d1 else t, n0:n0 + m], ut, m, lam, v_th, s, c, smooth, kind, a, dn,
                      g)
            for j in range(m):
                acc[j] += g[j]
        dI_sum[n0:n0 + m] = acc


def _lif_forward_host(I, lam, v_th, soft, smooth, kind, a, counting):
    T = I.shape[0]
    static = T > 1 and I.strides[0] == 0
    o = np.empty(I.shape, I.dtype)
    I = np.ascontiguousarray(I[:1] if static else I)
    u = np.empty((0 if static else T, I.shape[1]), I.dtype)
    count = np.zeros((I.shape[1] + BLOCK - 1) // BLOCK if counting else 0)
    f = I.dtype.type
    _lif_forward(I, f(lam), f(v_th), bool(soft), bool(smooth), int(kind), f(a), o, u, count)
    return o, (I if static else u), float(count.sum())


def lif_forward(I, lam, v_th, soft, smooth, kind, a):
    """LIF forward, ``(o, u)``; see :func:`pysnn_ref.kernels.reference.lif_forward`.

    A time-broadcast ``I`` (axis 0 of stride 0: direct encoding through a first layer that ran
    once) is read as its one row, not copied out T times, and the membrane is not stored: ``u``
    is then that row (1, N), from which :func:`lif_backward` recomputes the membrane."""
    o, u, _ = _lif_forward_host(I, lam, v_th, soft, smooth, kind, a, False)
    return o, u


def lif_forward_count(I, lam, v_th, soft, smooth, kind, a):
    """:func:`lif_forward` plus the sum of the spikes (a float), counted by the kernel while
    each row is in cache: ``(o, u, spikes)``.  ``spikes / o.size`` is the layer's firing rate,
    without a second pass over the spikes (``o.mean()`` read all of them again: 0.54 ms for
    the MLP's (20, 64, 800) spikes, as long as the LIF forward itself)."""
    return _lif_forward_host(I, lam, v_th, soft, smooth, kind, a, True)


def grad_rows(do, dtype):
    """The upstream gradient ``do`` (T, N) as the kernels read it: contiguous, in ``dtype``; a
    time-broadcast ``do`` (axis 0 of stride 0: a loss on the time-mean output gives every step
    the same dL/do) as its one row, not copied out T times.  Returns ``(rows, T)``."""
    T = do.shape[0]
    if T > 1 and do.strides[0] == 0:
        do = do[:1]
    return np.ascontiguousarray(do, dtype=dtype), T


def lif_backward(do, u, lam, v_th, soft, smooth, detach_reset, kind, a):
    """Exact BPTT, ``dI`` (T, N); see :func:`pysnn_ref.kernels.reference.lif_backward`.  ``u``
    is what :func:`lif_forward` returned (the membrane, or the static current's row); ``do``
    may be time-broadcast (:func:`grad_rows`)."""
    do, T = grad_rows(do, u.dtype)
    u = np.ascontiguousarray(u)
    f = u.dtype.type
    dI = np.empty((T, u.shape[1]), u.dtype)
    _lif_backward(do, u, f(lam), f(v_th), bool(soft), bool(smooth), bool(detach_reset),
                  int(kind), f(a), dI)
    return dI


def lif_backward_time_sum(do, u, lam, v_th, soft, smooth, detach_reset, kind, a):
    """``sum_t dI[t]`` (N,) of :func:`lif_backward`, without writing dI (T, N): all that a layer
    below with a time-broadcast input needs for its weight gradient."""
    do, T = grad_rows(do, u.dtype)
    u = np.ascontiguousarray(u)
    f = u.dtype.type
    dI_sum = np.empty(u.shape[1], u.dtype)
    _lif_backward_time_sum(do, u, T, f(lam), f(v_th), bool(soft), bool(smooth), bool(detach_reset),
                           int(kind), f(a), dI_sum)
    return dI_sum


# --------------------------------------------------------------------------------------------
# 2b. LIF + k x k average pooling fused (BPTT, non-overlapping windows, stride = k).
#     The forward pools the spikes of each step while they are still in the thread's block
#     buffer, so the (T, N) spike tensor is never written to memory (the backward recomputes
#     the spike from u); the backward reads the pooled gradient and spreads it over the window
#     (dL/do = dpool / k^2, 0 for inputs in dropped trailing rows/columns) inside the BPTT
#     recurrence.  Equal to lif_forward + avgpool2d_forward and avgpool2d_backward +
#     lif_backward (same formulas, same summation order; tests/test_perf_fused.py).
#     Blocks are whole (H, W) planes, so a window never straddles two threads.
# --------------------------------------------------------------------------------------------

@njit(cache=True, parallel=True)
def _lif_avgpool_forward(I, lam, v_th, soft, smooth, kind, a, H, W, k, u, out, count):
    """With ``u`` of 0 rows the membrane is not stored (a block buffer takes each step's u):
    the backward then recomputes it from a static ``I`` (see _lif_avgpool_backward)."""
    T = out.shape[0]
    N = I.shape[1]
    keep = u.shape[0] > 0
    HW = H * W
    PO = (H // k) * (W // k)
    per = max(1, BLOCK // HW)  # planes per block
    nplanes = N // HW
    static = I.shape[0] == 1
    s = I.dtype.type(1.0 if soft else 0.0)
    scale = I.dtype.type(1.0 / (k * k))
    for blk in prange((nplanes + per - 1) // per):
        p0 = blk * per
        np_ = min(nplanes, p0 + per) - p0
        n0 = p0 * HW
        m = np_ * HW
        v = np.zeros(m, I.dtype)
        ob = np.empty(m, I.dtype)
        ub = np.empty(0 if keep else m, I.dtype)
        tot = 0.0
        for t in range(T):
            ut = u[t, n0:n0 + m] if keep else ub
            lif_step_row(I[0 if static else t, n0:n0 + m], v, m, lam, v_th, s, smooth, kind, a,
                          ut, ob)
            out_t = out[t]
            for q in range(np_):
                tot += pool_plane_t(ob, q * HW, H, W, k, scale, out_t, (p0 + q) * PO)
        count[blk] = tot


@njit(cache=True, parallel=True)
def _lif_avgpool_backward(dp, u, T, lam, v_th, soft, smooth, detach_reset, kind, a, H, W, k,
                          dI, dI_sum):
    """BPTT recurrence of _lif_backward with dL/do read from the pooled gradient ``dp``.  With
    ``dI`` (T, N): written row by row as in _lif_backward.  With ``dI`` of 0 rows (the time-sum
    variant): each step's sigma' goes into a block buffer and only ``dI_sum = sum_t dI[t]`` is
    written.
    With ``u`` of one row and T = ``dp.shape[0]`` > 1, ``u`` is the static current I (the
    forward did not store the membrane): each block first recomputes its T rows of u from it,
    into a buffer that stays in cache, with the forward's own step (lif_step_row).  ``dp`` of
    one row: the same pooled gradient at every one of the T steps, spread once."""
    d1 = dp.shape[0] == 1
    N = u.shape[1]
    recompute = u.shape[0] == 1 and T > 1
    HW = H * W
    PO = (H // k) * (W // k)
    per = max(1, BLOCK // HW)
    nplanes = N // HW
    s = u.dtype.type(1.0 if soft else 0.0)
    c = u.dtype.type(0.0 if detach_reset else 1.0)
    scale = u.dtype.type(1.0 / (k * k))
    total = dI.shape[0] == 0
    for blk in prange((nplanes + per - 1) // per):
        p0 = blk * per
        np_ = min(nplanes, p0 + per) - p0
        n0 = p0 * HW
        m = np_ * HW
        dn = np.zeros(m, u.dtype)
        dob = np.zeros(m, u.dtype)  # dL/do of the step; dropped rows/columns stay 0
        g = np.empty(m, u.dtype)
        acc = np.zeros(m if total else 0, u.dtype)
        ub = np.empty((T if recompute else 0, m), u.dtype)
        if recompute:
            _membrane_block(u, n0, m, lam, v_th, s, smooth, kind, a, ub, dob)
            dob[:] = 0
        for t in range(T - 1, -1, -1):
            ut = ub[t] if recompute else u[t, n0:n0 + m]
            if t == T - 1 or not d1:
                dpt = dp[0 if d1 else t]
                for q in range(np_):
                    spread_plane_t(dpt, (p0 + q) * PO, H, W, k, scale, dob, q * HW)
            if total:
                grad_row(ut, v_th, kind, a, m, g)
                bptt_row(dob, ut, m, lam, v_th, s, c, smooth, kind, a, dn, g)
                for j in range(m):
                    acc[j] += g[j]
            else:
                grad_row(ut, v_th, kind, a, m, dI[t, n0:n0 + m])
                bptt_row(dob, ut, m, lam, v_th, s, c, smooth, kind, a, dn, dI[t, n0:n0 + m])
        if total:
            dI_sum[n0:n0 + m] = acc


def lif_avgpool_forward(I, lam, v_th, soft, smooth, kind, a, H, W, k):
    """LIF over ``I`` (T, N) (N = planes * H * W, planes of H x W neurons), then k x k average
    pooling with stride k of every step's spikes: ``(pooled (T, planes * OH * OW), u,
    spike_count)``.  The spikes themselves are not returned (``o = u >= v_th``).

    ``u`` is the membrane (T, N), except for a time-broadcast ``I`` (axis 0 of stride 0: direct
    encoding through a first layer that ran once): then the membrane is not stored and ``u`` is
    I's one row (1, N), from which :func:`lif_avgpool_backward` recomputes it -- T times less
    memory, and the (T, N) write and read are gone."""
    T, N = I.shape
    HW = int(H) * int(W)
    nplanes = N // HW
    OH, OW = int(H) // int(k), int(W) // int(k)
    static = T > 1 and I.strides[0] == 0
    I = np.ascontiguousarray(I[:1] if static else I)
    u = np.empty((0 if static else T, N), I.dtype)
    out = np.empty((T, nplanes * OH * OW), I.dtype)
    per = max(1, BLOCK // HW)
    count = np.zeros((nplanes + per - 1) // per, np.float64)
    f = I.dtype.type
    _lif_avgpool_forward(I, f(lam), f(v_th), bool(soft), bool(smooth), int(kind), f(a), int(H),
                         int(W), int(k), u, out, count)
    return out, (I if static else u), float(count.sum())


def lif_avgpool_backward(dp, u, lam, v_th, soft, smooth, detach_reset, kind, a, H, W, k):
    """dI (T, N) of :func:`lif_avgpool_forward` from the pooled gradient ``dp`` (T, ...);
    ``u`` is what the forward returned (the membrane, or the static current's row); ``dp`` may
    be time-broadcast (:func:`grad_rows`)."""
    dp, T = grad_rows(dp, u.dtype)
    f = u.dtype.type
    dI = np.empty((T, u.shape[1]), u.dtype)
    _lif_avgpool_backward(dp, u, T, f(lam), f(v_th), bool(soft), bool(smooth), bool(detach_reset),
                          int(kind), f(a), int(H), int(W), int(k), dI, dI[0, :0])
    return dI


def lif_avgpool_backward_time_sum(dp, u, lam, v_th, soft, smooth, detach_reset, kind, a, H, W,
                                  k):
    """``sum_t dI[t]`` (N,) of :func:`lif_avgpool_backward`, without writing dI (T, N)."""
    dp, T = grad_rows(dp, u.dtype)
    f = u.dtype.type
    dI_sum = np.empty(u.shape[1], u.dtype)
    _lif_avgpool_backward(dp, u, T, f(lam), f(v_th), bool(soft), bool(smooth), bool(detach_reset),
                          int(kind), f(a), int(H), int(W), int(k), np.empty((0, u.shape[1]),
                          u.dtype), dI_sum)
    return dI_sum


"""Numba CPU kernels: the computations of :mod:`pysnn_ref.kernels.reference`, fast.

Same signatures as the reference module; tests assert equality (float64, rel <= 1e-10).
Every kernel is ``@njit(cache=True)`` so the JIT compile cost is paid once per machine, and the
hot loops run ``prange`` over independent neurons/rows with the time loop fused inside each one,
kept in registers.  The scalar surrogate formulas are the reference module's own Python functions
compiled with ``njit`` -- one definition of each formula.

Sections: 1. surrogate functions; 2. LIF/IF neuron (BPTT); 2b. LIF + average pooling fused;
3. LIF/IF streaming with spiking flows; 4. flow gains; 5. im2col / col2im; 5b. convolution
(im2col fused with the GEMMs) and the threaded GEMM; 6. pooling; 8. spiking LSTM cell (numbered
as in the reference); 9. Adam's update.
"""

from __future__ import annotations

import ctypes
import os
import sys

import numpy as np
from numba import get_num_threads, njit, prange, types, uintp
from numba.extending import overload

from .. import reference as _ref
from ..retype import retyped

#: glibc's ``mallopt`` parameters (<malloc.h>) and the values :func:`tune_malloc` sets
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES = 32 << 20, 256 << 20


def tune_malloc() -> bool:
    """Keep freed arrays of up to 32 MiB on glibc's heap for the next training step.

    A step allocates and frees the same arrays every time.  glibc's default adapts its two
    thresholds as blocks are freed (the mmap threshold rises to the last freed mapped block, up to
    32 MiB, and the heap is trimmed once 2x that is free at its top), so with the allocation
    pattern of a step, or of two methods timed in turn, the heap is given back and every new array
    starts again with page faults and the kernel zeroing each 4 KiB page.  Fixed thresholds stop
    that: blocks up to ``MMAP_THRESHOLD_BYTES`` (glibc's own adaptive maximum) come from the heap,
    and it is trimmed only above ``TRIM_THRESHOLD_BYTES`` free.  Measured (2-core Xeon, T = 20,
    B = 64, bptt and ssf timed in turn): the MLP's bptt step 6.9 -> 4.2 ms, the conv net's 110-116
    -> 95-98 ms; peak resident memory of ``bench --vs-torch`` at T = 40 1.83 -> 2.01 GB.

    On by default; ``PYSNN_MALLOC=default`` (read at this module's import) leaves glibc alone.
    (An earlier setting, ``M_MMAP_MAX = 0``, put blocks of every size on the heap: with PyTorch in
    the same process it fragmented to 14.6 GB resident and was dropped; a 128 MiB threshold
    measured no faster than 32 MiB.)  glibc only; returns whether it was applied."""
    if os.environ.get("PYSNN_MALLOC", "bounded") == "default" \
            or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and \
            bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False


MALLOC_TUNED = tune_malloc()

# --------------------------------------------------------------------------------------------
# 1. Surrogate functions (compiled from the reference module's scalar definitions).
# --------------------------------------------------------------------------------------------

# A float literal is float64 in Numba's typing, so the reference's formulas compiled as they are
# would run a float32 kernel's surrogate in float64 (a conversion per operand, scalar float64
# division, loops that vectorise poorly).  Each formula is therefore compiled twice, with its
# literals in float32 and in float64 (kernels/retype.py, the CUDA kernels' way), and the twin is
# picked at compile time by the type of x: a float32 kernel does float32 maths.  Measured: the
# time-summed LIF backward over 16 M float32 neuron-steps 10.1 -> 6.8 ms.

SURROGATE_KINDS = _ref.SURROGATE_KINDS
_TWINS: dict = {}


def _make_twins(name, **callees):
    """Compile-time twins of reference scalar ``name``: its float32 and float64 retyped copies
    (``callees``: the compiled stand-ins of the reference scalars it calls)."""
    fn = getattr(_ref, name)
    _TWINS[name] = (retyped(fn, np.float32, **callees), retyped(fn, np.float64, **callees))


def _twin(name, x):
    """The twin of reference formula ``name`` for a scalar of Numba type ``x``."""
    return _TWINS[name][0] if x == types.float32 else _TWINS[name][1]


for _name in ("surrogate_primitive_scalar", "surrogate_grad_scalar", "heaviside"):
    _make_twins(_name)


def _primitive(x, kind, a):
    """reference.surrogate_primitive_scalar in the dtype of x (in Numba code; see above)."""
    return _ref.surrogate_primitive_scalar(x, kind, a)


def _grad(x, kind, a):
    """reference.surrogate_grad_scalar in the dtype of x (in Numba code; see above)."""
    return _ref.surrogate_grad_scalar(x, kind, a)


def _heaviside(x):
    """reference.heaviside in the dtype of x (in Numba code; see above)."""
    return _ref.heaviside(x)


overload(_primitive)(lambda x, kind, a: _twin("surrogate_primitive_scalar", x))
overload(_grad)(lambda x, kind, a: _twin("surrogate_grad_scalar", x))
overload(_heaviside)(lambda x: _twin("heaviside", x))


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
# 2. LIF / IF neuron, BPTT: one fused time loop per block of neurons, prange over blocks.
# --------------------------------------------------------------------------------------------

# Neurons are processed in blocks of BLOCK: one thread takes a block and runs the time loop
# over it, the innermost loop walking the block's neurons along one contiguous time row, so every
# access streams through the cache (a thread walking one neuron down its column would touch a new
# cache line at every step).  The reset and the detach switch are folded into coefficients, and
# the surrogate dispatch is hoisted out of the recurrence (at each step the backward first writes
# sigma'(u - v_th) of the block's row in a loop of its own, _grad_row, then runs the recurrence
# over that row, _bptt_row, while it is in cache), so the inner loops have no branches and
# vectorise.  Arithmetic stays in the input dtype (the surrogates too: section 1).
#   hard reset: v = u - o*u,      dL/do = do - c*lam*u*dn,      dL/du = dL/do*sg + lam*(1-o)*dn
#   soft reset: v = u - o*v_th,   dL/do = do - c*lam*v_th*dn,   dL/du = dL/do*sg + lam*dn
# with c = 0 for detach_reset, written once as r = s*v_th + (1-s)*u, keep = 1 - (1-s)*o.

BLOCK = 2048


@njit(cache=True, inline="always")
def _lif_step_row(It, v, m, lam, v_th, s, smooth, kind, a, ut, ot):
    """One step of the LIF recurrence over a block of m neurons: ``ut = lam v + It`` (the
    membrane before reset), ``ot`` the spike, ``v`` the membrane after reset (in place).  The
    one place these operations are written, so a membrane recomputed later is bit-equal."""
    one = It.dtype.type(1.0)
    zero = It.dtype.type(0.0)
    if smooth:
        for j in range(m):
            u_t = lam * v[j] + It[j]
            o_t = _primitive(u_t - v_th, kind, a)
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
        _lif_step_row(I[0, n0:n0 + m], v, m, lam, v_th, s, smooth, kind, a, ub[t], ob)


@njit(cache=True, parallel=True)
def _lif_forward(I, lam, v_th, soft, smooth, kind, a, o, u):
    """With ``u`` of 0 rows the membrane is not stored (a static ``I``: the backward
    recomputes it, see _lif_backward)."""
    T, N = o.shape
    keep = u.shape[0] > 0
    static = I.shape[0] == 1  # one current row for every step (time-broadcast input)
    s = I.dtype.type(1.0 if soft else 0.0)
    for blk in prange((N + BLOCK - 1) // BLOCK):
        n0 = blk * BLOCK
        m = min(N, n0 + BLOCK) - n0
        v = np.zeros(m, I.dtype)
        ub = np.empty(0 if keep else m, I.dtype)
        for t in range(T):
            ut = u[t, n0:n0 + m] if keep else ub
            _lif_step_row(I[0 if static else t, n0:n0 + m], v, m, lam, v_th, s, smooth, kind, a,
                          ut, o[t, n0:n0 + m])


@njit(cache=True, inline="always")
def _grad_row(ut, v_th, kind, a, m, g):
    """``g[j] = sigma'(ut[j] - v_th)`` over a block of m neurons.  The surrogate is dispatched
    once, outside the loop (a constant kind in each branch), so that every loop vectorises;
    ``_grad`` with a variable kind inside a block loop does not (3.5x slower, measured)."""
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


@njit(cache=True, inline="always")
def _bptt_row(d_o, ut, m, lam, v_th, s, c, smooth, kind, a, dn, g):
    """One step t of the BPTT recurrence over a block of m neurons: on entry ``g`` holds
    sigma'(u[t] - v_th) and ``dn`` dL/du[t+1]; on exit both hold dL/du[t] (= dL/dI[t])."""
    one = ut.dtype.type(1.0)
    zero = ut.dtype.type(0.0)
    if smooth:
        for j in range(m):
            u_t = ut[j]
            o_t = _primitive(u_t - v_th, kind, a)
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
    recurrence over it in place.  With ``u`` of one row and T = ``do.shape[0]`` > 1, ``u`` is
    the static current (the forward did not store the membrane): each block recomputes its T
    rows of u into a buffer that stays in cache (_membrane_block)."""
    T, N = do.shape
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
            _grad_row(ut, v_th, kind, a, m, dI[t, n0:n0 + m])
            _bptt_row(do[t, n0:n0 + m], ut, m, lam, v_th, s, c, smooth, kind, a, dn,
                      dI[t, n0:n0 + m])


@njit(cache=True, parallel=True)
def _lif_backward_time_sum(do, u, lam, v_th, soft, smooth, detach_reset, kind, a, dI_sum):
    """The recurrence of _lif_backward keeping only ``dI_sum = sum_t dI[t]``: each step's
    sigma' goes into a block buffer (its own loop, which vectorises) and dI is never written.
    ``u`` of one row: the static current, as in _lif_backward."""
    T, N = do.shape
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
            _grad_row(ut, v_th, kind, a, m, g)
            _bptt_row(do[t, n0:n0 + m], ut, m, lam, v_th, s, c, smooth, kind, a, dn, g)
            for j in range(m):
                acc[j] += g[j]
        dI_sum[n0:n0 + m] = acc


def lif_forward(I, lam, v_th, soft, smooth, kind, a):
    """LIF forward, ``(o, u)``; see :func:`pysnn_ref.kernels.reference.lif_forward`.

    A time-broadcast ``I`` (axis 0 of stride 0: direct encoding through a first layer that ran
    once) is read as its one row, not copied out T times, and the membrane is not stored: ``u``
    is then that row (1, N), from which :func:`lif_backward` recomputes the membrane."""
    T = I.shape[0]
    static = T > 1 and I.strides[0] == 0
    o = np.empty(I.shape, I.dtype)
    I = np.ascontiguousarray(I[:1] if static else I)
    u = np.empty((0 if static else T, I.shape[1]), I.dtype)
    f = I.dtype.type
    _lif_forward(I, f(lam), f(v_th), bool(soft), bool(smooth), int(kind), f(a), o, u)
    return o, (I if static else u)


def lif_backward(do, u, lam, v_th, soft, smooth, detach_reset, kind, a):
    """Exact BPTT, ``dI`` (T, N); see :func:`pysnn_ref.kernels.reference.lif_backward`.  ``u``
    is what :func:`lif_forward` returned (the membrane, or the static current's row)."""
    do = np.ascontiguousarray(do, dtype=u.dtype)
    u = np.ascontiguousarray(u)
    f = u.dtype.type
    dI = np.empty(do.shape, u.dtype)
    _lif_backward(do, u, f(lam), f(v_th), bool(soft), bool(smooth), bool(detach_reset),
                  int(kind), f(a), dI)
    return dI


def lif_backward_time_sum(do, u, lam, v_th, soft, smooth, detach_reset, kind, a):
    """``sum_t dI[t]`` (N,) of :func:`lif_backward`, without writing dI (T, N): all that a layer
    below with a time-broadcast input needs for its weight gradient."""
    do = np.ascontiguousarray(do, dtype=u.dtype)
    u = np.ascontiguousarray(u)
    f = u.dtype.type
    dI_sum = np.empty(u.shape[1], u.dtype)
    _lif_backward_time_sum(do, u, f(lam), f(v_th), bool(soft), bool(smooth), bool(detach_reset),
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

@njit(cache=True, inline="always")
def _pool_plane_t(ob, b0, H, W, k, scale, out_t, o0):
    """Window sums of one spike plane ``ob[b0:b0+H*W]`` into ``out_t[o0:o0+OH*OW]`` (the
    window order of the reference's slice sums; 2 x 2 written out); returns the plane's spike
    sum (the pooled ones plus any in dropped trailing rows/columns)."""
    OH = H // k
    OW = W // k
    tot = 0.0
    for oh in range(OH):
        r0 = uintp(b0 + oh * k * W)
        d0 = uintp(o0 + oh * OW)
        if k == 2:
            r1 = r0 + uintp(W)
            for ow in range(OW):
                a0 = r0 + uintp(2 * ow)
                a1 = r1 + uintp(2 * ow)
                acc = ob[a0] + ob[a0 + uintp(1)] + ob[a1] + ob[a1 + uintp(1)]
                out_t[d0 + uintp(ow)] = acc * scale
                tot += acc
        else:
            for ow in range(OW):
                i0 = r0 + uintp(ow * k)
                acc = ob[i0]
                for kh in range(k):
                    for kw in range(k):
                        if kh > 0 or kw > 0:
                            acc += ob[i0 + uintp(kh * W + kw)]
                out_t[d0 + uintp(ow)] = acc * scale
                tot += acc
    if OH * k < H or OW * k < W:
        for h in range(H):
            for w in range(W):
                if h >= OH * k or w >= OW * k:
                    tot += ob[uintp(b0 + h * W + w)]
    return tot


@njit(cache=True, inline="always")
def _spread_plane_t(dpt, o0, H, W, k, scale, dob, b0):
    """The pooling backward of one plane: ``dob[b0 + window] = dpt[o0 + window index] / k^2``
    (entries of dropped trailing rows/columns are left as they are: 0)."""
    OH = H // k
    OW = W // k
    for oh in range(OH):
        r0 = uintp(b0 + oh * k * W)
        d0 = uintp(o0 + oh * OW)
        if k == 2:  # written out: the loops vectorise
            r1 = r0 + uintp(W)
            for ow in range(OW):
                g = dpt[d0 + uintp(ow)] * scale
                a0 = r0 + uintp(2 * ow)
                a1 = r1 + uintp(2 * ow)
                dob[a0] = g
                dob[a0 + uintp(1)] = g
                dob[a1] = g
                dob[a1 + uintp(1)] = g
            continue
        for ow in range(OW):
            g = dpt[d0 + uintp(ow)] * scale
            i0 = r0 + uintp(ow * k)
            for kh in range(k):
                for kw in range(k):
                    dob[i0 + uintp(kh * W + kw)] = g


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
            _lif_step_row(I[0 if static else t, n0:n0 + m], v, m, lam, v_th, s, smooth, kind, a,
                          ut, ob)
            out_t = out[t]
            for q in range(np_):
                tot += _pool_plane_t(ob, q * HW, H, W, k, scale, out_t, (p0 + q) * PO)
        count[blk] = tot


@njit(cache=True, parallel=True)
def _lif_avgpool_backward(dp, u, lam, v_th, soft, smooth, detach_reset, kind, a, H, W, k, dI,
                          dI_sum):
    """BPTT recurrence of _lif_backward with dL/do read from the pooled gradient ``dp``.  With
    ``dI`` (T, N): written row by row as in _lif_backward.  With ``dI`` of 0 rows (the time-sum
    variant): each step's sigma' goes into a block buffer and only ``dI_sum = sum_t dI[t]`` is
    written.
    With ``u`` of one row and T = ``dp.shape[0]`` > 1, ``u`` is the static current I (the
    forward did not store the membrane): each block first recomputes its T rows of u from it,
    into a buffer that stays in cache, with the forward's own step (_lif_step_row)."""
    T = dp.shape[0]
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
            dpt = dp[t]
            for q in range(np_):
                _spread_plane_t(dpt, (p0 + q) * PO, H, W, k, scale, dob, q * HW)
            if total:
                _grad_row(ut, v_th, kind, a, m, g)
                _bptt_row(dob, ut, m, lam, v_th, s, c, smooth, kind, a, dn, g)
                for j in range(m):
                    acc[j] += g[j]
            else:
                _grad_row(ut, v_th, kind, a, m, dI[t, n0:n0 + m])
                _bptt_row(dob, ut, m, lam, v_th, s, c, smooth, kind, a, dn, dI[t, n0:n0 + m])
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
    ``u`` is what the forward returned (the membrane, or the static current's row)."""
    dp = np.ascontiguousarray(dp, dtype=u.dtype)
    f = u.dtype.type
    T = dp.shape[0]
    dI = np.empty((T, u.shape[1]), u.dtype)
    _lif_avgpool_backward(dp, u, f(lam), f(v_th), bool(soft), bool(smooth), bool(detach_reset),
                          int(kind), f(a), int(H), int(W), int(k), dI, dI[0, :0])
    return dI


def lif_avgpool_backward_time_sum(dp, u, lam, v_th, soft, smooth, detach_reset, kind, a, H, W,
                                  k):
    """``sum_t dI[t]`` (N,) of :func:`lif_avgpool_backward`, without writing dI (T, N)."""
    dp = np.ascontiguousarray(dp, dtype=u.dtype)
    f = u.dtype.type
    dI_sum = np.empty(u.shape[1], u.dtype)
    _lif_avgpool_backward(dp, u, f(lam), f(v_th), bool(soft), bool(smooth), bool(detach_reset),
                          int(kind), f(a), int(H), int(W), int(k), np.empty((0, u.shape[1]),
                          u.dtype), dI_sum)
    return dI_sum


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
                    o_t = _primitive(u_t - v_th, kind, a)
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


# --------------------------------------------------------------------------------------------
# 5. im2col / col2im (layout and formulas: reference module, section 5).
#    prange over the N*C (image, channel) planes: each plane's rows of ``cols`` are written by
#    one thread (im2col), and each plane of ``dx`` is summed by one thread (col2im), so there
#    are no races.  The loop over ``ow`` runs only over the in-bounds range, so it is a plain
#    copy/add (contiguous for stride 1) that LLVM vectorises.  Indexing: the kernels address
#    flat 1-D views with *unsigned* offsets (``uintp``); with signed indices Numba must handle
#    negative (wrap-around) indices on every access, which blocks vectorisation and made these
#    kernels 3-4x slower.  A convolution with stride 1 and KW = 2*pad + 1 (3x3 with padding 1:
#    every layer of the models here) takes a faster route: each column row is then the whole
#    plane shifted by a constant, one contiguous run (_im2col_plane_same, _col2im_plane_same;
#    1280 images of 16x14x14, 3x3: 12.1 -> 4.7 ms per im2col pass on 2 threads).
#
#    Threads: these kernels alternate with BLAS calls (chunk by chunk in functional/conv.py);
#    see pysnn_ref.backend for the thread policy (passive OpenMP waiting, one BLAS thread).
# --------------------------------------------------------------------------------------------



@njit(cache=True, inline="always")
def _ow_range(kw, stride, pad, W, OW):
    """The ``ow`` with 0 <= ow*stride + kw - pad < W, as ``lo <= ow < hi`` (lo <= hi <= OW)."""
    t = pad - kw
    lo = (t + stride - 1) // stride if t > 0 else 0
    if lo > OW:
        lo = OW
    hi = (W - 1 + pad - kw) // stride + 1
    if hi > OW:
        hi = OW
    if hi < lo:
        hi = lo
    return lo, hi


@njit(cache=True, inline="always")
def _same_rows(H, KH, pad, kh, OH):
    """The output rows ``lo <= oh < hi`` whose input row ``oh + kh - pad`` lies in the plane
    (stride 1)."""
    lo = max(0, pad - kh)
    hi = min(OH, H + pad - kh)
    return lo, max(lo, hi)


@njit(cache=True, inline="always")
def _same_run(lo, hi, W, kh, kw, pad, x0):
    """The contiguous run of column row (kh, kw) of a stride-1, KW = 2 pad + 1 convolution:
    ``(q0, n, s0)``, its ``n`` entries from ``q0`` read the plane from flat offset ``s0`` (the
    output rows ``lo <= oh < hi`` inside the plane, less the wrapped entries at both ends)."""
    q0 = lo * W + max(0, pad - kw)
    q1 = hi * W - max(0, kw - pad)
    return q0, max(0, q1 - q0), uintp(max(0, x0 + q0 + (kh - pad) * W + kw - pad))


@njit(cache=True, inline="always")
def _zero_wrapped(cf, d, lo, hi, W, kw, pad):
    """Zero the ``|kw - pad|`` entries per output row of column row ``cf[d:]`` that the constant
    shift of :func:`_same_run` wrapped around from the neighbouring input row."""
    left, right = max(0, pad - kw), max(0, kw - pad)
    for oh in range(lo, hi):
        r = d + uintp(oh * W)
        for j in range(left):
            cf[r + uintp(j)] = 0
        for j in range(W - right, W):
            cf[r + uintp(j)] = 0


@njit(cache=True, inline="always")
def _im2col_plane_same(xf, x0, H, W, KH, KW, pad, OH, cf, r0):
    """:func:`_im2col_plane` for stride 1 and ``KW = 2 pad + 1`` (so OW = W, a "same"
    convolution along the width): column row (kh, kw) is then the flat plane shifted by the
    constant ``(kh - pad) W + (kw - pad)``, so it is one contiguous copy instead of one short
    copy per output row, followed by zeros for the rows above/below the plane and for the
    ``|kw - pad|`` entries per row that the shift wrapped around from the neighbouring row."""
    P = OH * W
    for kh in range(KH):
        lo, hi = _same_rows(H, KH, pad, kh, OH)
        for kw in range(KW):
            d = uintp((r0 + kh * KW + kw) * P)
            for q in range(lo * W):
                cf[d + uintp(q)] = 0
            for q in range(hi * W, P):
                cf[d + uintp(q)] = 0
            q0, n, s0 = _same_run(lo, hi, W, kh, kw, pad, x0)
            for j in range(n):
                cf[d + uintp(q0 + j)] = xf[s0 + uintp(j)]
            _zero_wrapped(cf, d, lo, hi, W, kw, pad)


@njit(cache=True, inline="always")
def _im2col_plane(xf, x0, H, W, KH, KW, stride, pad, OH, OW, cf, r0):
    """The KH*KW column rows of one (H, W) plane ``xf[x0:]``, written from row ``r0`` of ``cf``."""
    if stride == 1 and KW == 2 * pad + 1:
        _im2col_plane_same(xf, x0, H, W, KH, KW, pad, OH, cf, r0)
        return
    P = OH * OW
    for kh in range(KH):
        for kw in range(KW):
            row = r0 + kh * KW + kw
            lo, hi = _ow_range(kw, stride, pad, W, OW)
            for oh in range(OH):
                ih = oh * stride + kh - pad
                d = uintp(row * P + oh * OW)
                if ih < 0 or ih >= H:
                    for ow in range(OW):
                        cf[d + uintp(ow)] = 0
                    continue
                for ow in range(lo):
                    cf[d + uintp(ow)] = 0
                s0 = uintp(x0 + ih * W + lo * stride + kw - pad)
                dl = d + uintp(lo)
                if stride == 1:
                    for j in range(hi - lo):
                        cf[dl + uintp(j)] = xf[s0 + uintp(j)]
                else:
                    for j in range(hi - lo):
                        cf[dl + uintp(j)] = xf[s0 + uintp(j * stride)]
                for ow in range(hi, OW):
                    cf[d + uintp(ow)] = 0


@njit(cache=True, inline="always")
def _col2im_plane_same(cf, r0, H, W, KH, KW, pad, OH, df, x0):
    """:func:`_col2im_plane` for stride 1 and ``KW = 2 pad + 1``, the adjoint of
    :func:`_im2col_plane_same`: the wrapped entries of each column row are set to 0 **in cf**,
    then the row is added to the plane in one contiguous run (the zeros add nothing), in the
    same (kh, kw) order as the general routine, so the sums are bit-equal to it."""
    P = OH * W
    for kh in range(KH):
        lo, hi = _same_rows(H, KH, pad, kh, OH)
        for kw in range(KW):
            d = uintp((r0 + kh * KW + kw) * P)
            _zero_wrapped(cf, d, lo, hi, W, kw, pad)
            q0, n, s0 = _same_run(lo, hi, W, kh, kw, pad, x0)
            for j in range(n):
                df[s0 + uintp(j)] += cf[d + uintp(q0 + j)]


@njit(cache=True, inline="always")
def _col2im_plane(cf, r0, H, W, KH, KW, stride, pad, OH, OW, df, x0):
    """Overwrite the (H, W) plane ``df[x0:]`` with the sum of its KH*KW column rows from ``r0``.
    For stride 1 and ``KW = 2 pad + 1`` the wrapped entries of those rows in ``cf`` are set to 0
    on the way (:func:`_col2im_plane_same`)."""
    P = OH * OW
    for i in range(H * W):
        df[uintp(x0 + i)] = 0
    if stride == 1 and KW == 2 * pad + 1:
        _col2im_plane_same(cf, r0, H, W, KH, KW, pad, OH, df, x0)
        return
    for kh in range(KH):
        for kw in range(KW):
            row = r0 + kh * KW + kw
            lo, hi = _ow_range(kw, stride, pad, W, OW)
            for oh in range(OH):
                ih = oh * stride + kh - pad
                if ih < 0 or ih >= H:
                    continue
                dl = uintp(row * P + oh * OW + lo)
                s0 = uintp(x0 + ih * W + lo * stride + kw - pad)
                if stride == 1:
                    for j in range(hi - lo):
                        df[s0 + uintp(j)] += cf[dl + uintp(j)]
                else:
                    for j in range(hi - lo):
                        df[s0 + uintp(j * stride)] += cf[dl + uintp(j)]


@njit(cache=True, parallel=True)
def _im2col(x, KH, KW, stride, pad, cols):
    N, C, H, W = x.shape
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (W + 2 * pad - KW) // stride + 1
    xf = x.reshape(-1)
    cf = cols.reshape(-1)
    for nc in prange(N * C):
        _im2col_plane(xf, nc * H * W, H, W, KH, KW, stride, pad, OH, OW, cf, nc * KH * KW)


@njit(cache=True, parallel=True)
def _col2im(cols, KH, KW, stride, pad, dx):
    N, C, H, W = dx.shape
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (W + 2 * pad - KW) // stride + 1
    cf = cols.reshape(-1)
    df = dx.reshape(-1)
    for nc in prange(N * C):
        _col2im_plane(cf, nc * KH * KW, H, W, KH, KW, stride, pad, OH, OW, df, nc * H * W)


def im2col(x, KH, KW, stride, pad):
    """x (N, C, H, W) -> cols (N, C*KH*KW, OH*OW); see the reference module's ``im2col``."""
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    OH = _ref.conv_out_size(H, KH, stride, pad)
    OW = _ref.conv_out_size(W, KW, stride, pad)
    cols = np.empty((N, C * KH * KW, OH * OW), dtype=x.dtype)
    _im2col(x, int(KH), int(KW), int(stride), int(pad), cols)
    return cols


def col2im(cols, x_shape, KH, KW, stride, pad):
    """The adjoint of :func:`im2col`, dx with shape ``x_shape``; see the reference module.
    (``cols`` is copied: the plane routine may zero some of its entries, see _col2im_plane.)"""
    cols = np.array(cols, order="C", copy=True)
    dx = np.empty(tuple(int(s) for s in x_shape), dtype=cols.dtype)
    _col2im(cols, int(KH), int(KW), int(stride), int(pad), dx)
    return dx


# --------------------------------------------------------------------------------------------
# 5b. Convolution, im2col fused with the GEMMs (functional/conv.py on the CPU), and the
#     fully connected layer's GEMM split over the threads (functional/linear.py).
#
#    The images are split into one contiguous block per Numba thread.  Each thread unfolds one
#    image at a time into its own column buffer (C*KH*KW x OH*OW, a few hundred KB: it stays in
#    the core's cache) and multiplies it right away through ``np.dot`` (BLAS sgemm/dgemm, one
#    BLAS thread per Numba thread), so the (N, C*KH*KW, OH*OW) column tensor is never written
#    to memory and both cores run GEMMs.  The weight gradient is summed per thread, then over
#    the threads.  The formulas are those of functional/conv.py's docstring, image by image.
# --------------------------------------------------------------------------------------------

_numba_blas: list = []


def _limit_numba_blas() -> None:
    """One thread for the BLAS that Numba's ``np.dot`` calls (SciPy's OpenBLAS, not NumPy's):
    the kernels below call it from every Numba thread at once.  Checked at every call (a ctypes
    read), so that a later ``threadpoolctl`` limit on all BLAS libraries cannot undo it."""
    if not _numba_blas:
        import scipy.linalg.cython_blas  # noqa: F401  (loads the library np.dot binds to)
        from threadpoolctl import ThreadpoolController

        _numba_blas.extend(lib for lib in ThreadpoolController().lib_controllers
                           if lib.user_api == "blas"
                           and "scipy.libs" in lib.filepath.replace("\\", "/"))
        _numba_blas.append(None)  # discovered (possibly nothing to limit)
    for lib in _numba_blas:
        if lib is not None and lib.get_num_threads() != 1:
            lib.set_num_threads(1)


@njit(cache=True, inline="always")
def _block(t, n, nth):
    """Items ``lo <= i < hi`` of thread ``t`` when ``n`` items are split into ``nth`` blocks."""
    return t * n // nth, (t + 1) * n // nth


@njit(cache=True, inline="always")
def _image_columns(xf, n, C, H, W, KH, KW, stride, pad, OH, OW, cf):
    """im2col of image ``n`` of the flat (N, C, H, W) input ``xf`` into the flat buffer ``cf``."""
    for c in range(C):
        _im2col_plane(xf, (n * C + c) * H * W, H, W, KH, KW, stride, pad, OH, OW, cf, c * KH * KW)


@njit(cache=True, parallel=True)
def _conv_forward_fused(x, W2, b, KH, KW, stride, pad, nth, out):
    """``out[n] = W2 @ cols[n] + b`` (``b`` of 0 entries: no bias), the bias added while the
    image's output is still in cache."""
    N, C, H, W = x.shape
    Kc = W2.shape[1]
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (W + 2 * pad - KW) // stride + 1
    xf = x.reshape(-1)
    for t in prange(nth):
        cols = np.empty((Kc, OH * OW), dtype=x.dtype)
        cf = cols.reshape(-1)
        lo, hi = _block(t, N, nth)
        for n in range(lo, hi):
            _image_columns(xf, n, C, H, W, KH, KW, stride, pad, OH, OW, cf)
            on = out[n]
            np.dot(W2, cols, on)  # out[n] = W2 @ cols[n]
            for f in range(b.shape[0]):
                bf = b[f]
                for q in range(OH * OW):
                    on[f, q] += bf


@njit(cache=True, parallel=True)
def _conv_backward_fused(d, x, W2, KH, KW, stride, pad, need_dW, need_dx, dW2T, db, dx):
    """dW2^T (summed per thread into ``dW2T[t]``), the bias gradient (per thread into ``db[t]``,
    float64: each image's column sums of ``dout[n]^T``, taken while it is in cache) and dx."""
    N, F, P = d.shape
    Kc = W2.shape[1]
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    OH = (H + 2 * pad - KH) // stride + 1
    OW = (W + 2 * pad - KW) // stride + 1
    nth = dW2T.shape[0]
    W2T = np.ascontiguousarray(W2.T)
    xf = x.reshape(-1)
    dxf = dx.reshape(-1)
    for t in prange(nth):
        cols = np.empty((Kc, P), dtype=d.dtype)
        cf = cols.reshape(-1)
        dT = np.empty((P, F), dtype=d.dtype)
        part = np.empty((Kc, F), dtype=d.dtype)
        colsum = np.empty(F, dtype=d.dtype)
        acc = dW2T[t]
        acc[:] = 0
        db[t][:] = 0
        lo, hi = _block(t, N, nth)
        for n in range(lo, hi):
            if need_dW:  # dW2^T += cols[n] @ dout[n]^T;  db += sum over q of dout[n][:, q]
                _image_columns(xf, n, C, H, W, KH, KW, stride, pad, OH, OW, cf)
                dT[:] = d[n].T
                np.dot(cols, dT, part)
                acc += part
                colsum[:] = 0
                for q in range(P):  # along F: independent sums, so the loop vectorises
                    for f in range(F):
                        colsum[f] += dT[q, f]
                for f in range(F):
                    db[t, f] += colsum[f]
            if need_dx:  # dcols = W2^T @ dout[n]; dx[n] = col2im(dcols)
                np.dot(W2T, d[n], cols)
                for c in range(C):
                    _col2im_plane(cf, c * KH * KW, H, W, KH, KW, stride, pad, OH, OW,
                                  dxf, (n * C + c) * H * W)


def conv2d_forward_images(x, W, b, stride, pad):
    """x (N, C, H, W), W (F, C, KH, KW), b (F,) or None -> out (N, F, OH, OW) =
    W2 @ im2col(x)[n] + b for every n, im2col fused with the GEMM per image."""
    _limit_numba_blas()
    x = np.ascontiguousarray(x)
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    OH = _ref.conv_out_size(H, KH, stride, pad)
    OW = _ref.conv_out_size(Wd, KW, stride, pad)
    out = np.empty((N, F, OH * OW), dtype=x.dtype)
    W2 = np.ascontiguousarray(W.reshape(F, -1), dtype=x.dtype)
    nth = max(1, min(get_num_threads(), N))  # one block of images per thread
    b = np.empty(0, x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    _conv_forward_fused(x, W2, b, int(KH), int(KW), int(stride), int(pad), nth, out)
    return out.reshape(N, F, OH, OW)


def conv2d_backward_images(d, x, W, x_shape, stride, pad, need_dW, need_dx):
    """The gradients of :func:`conv2d_forward_images` for d = dout (N, F, OH, OW):
    ``(dW, db, dx)``, dW (F, C, KH, KW) and db (F,) = the sum of d over (n, oh, ow) from ``x``
    (unused, may be None, when not ``need_dW``; both None then) and dx with shape ``x_shape``
    (None when not ``need_dx``)."""
    _limit_numba_blas()
    d = np.ascontiguousarray(d)
    N, F = d.shape[:2]
    _, C, H, Wd = x_shape
    KH, KW = W.shape[2:]
    W2 = np.ascontiguousarray(W.reshape(F, -1), dtype=d.dtype)
    nth = max(1, min(get_num_threads(), N))
    dW2T = np.empty((nth, W2.shape[1], F), dtype=d.dtype)
    db = np.empty((nth, F), dtype=np.float64)
    # unused inputs/outputs are empty arrays of the same type (the kernel reads C, H, W from dx)
    dx = np.empty((N if need_dx else 0, C, H, Wd), dtype=d.dtype)
    xin = np.ascontiguousarray(x) if need_dW else np.empty((0, C, H, Wd), dtype=d.dtype)
    _conv_backward_fused(d.reshape(N, F, -1), xin, W2, int(KH), int(KW), int(stride), int(pad),
                         bool(need_dW), bool(need_dx), dW2T, db, dx)
    if not need_dW:
        return None, None, (dx if need_dx else None)
    dW = dW2T.sum(axis=0).T.reshape(W.shape)
    return dW, db.sum(axis=0).astype(d.dtype), (dx if need_dx else None)


@njit(cache=True, parallel=True)
def _matmul_rows(a, b, nth, out):
    for t in prange(nth):
        i0, i1 = _block(t, a.shape[0], nth)
        if i1 > i0:
            np.dot(a[i0:i1], b, out[i0:i1])


@njit(cache=True, parallel=True)
def _matmul_inner(aT, b, nth, parts):
    for t in prange(nth):
        k0, k1 = _block(t, aT.shape[0], nth)
        if k1 > k0:
            np.dot(aT[k0:k1].T, b[k0:k1], parts[t])
        else:
            parts[t][:] = 0


#: products below this many multiply-adds stay one NumPy call (a thread launch costs more)
MATMUL_SPLIT_MACS = 1 << 22


def matmul(a, b):
    """``a @ b`` for 2-D float arrays of one dtype, split over the Numba threads, one BLAS thread
    each (functional/linear.py on the CPU: both cores run the GEMM, and BLAS's own thread pool
    does not spin between the Numba kernels).  The rows of ``a`` are split; a short wide ``a``
    whose transpose is contiguous (a weight gradient ``dout^T @ x`` with few outputs) has its
    inner dimension split instead, with one partial product per thread, then summed.  Small
    products are one ``a @ b``."""
    M, K = a.shape
    N = b.shape[1]
    nth = max(1, min(get_num_threads(), max(M, K)))
    if nth == 1 or M * K * N < MATMUL_SPLIT_MACS or a.dtype != b.dtype:
        return a @ b
    _limit_numba_blas()
    if not (b.flags.c_contiguous or b.flags.f_contiguous):
        b = np.ascontiguousarray(b)
    if M < 16 * nth and K >= 16 * nth and a.T.flags.c_contiguous and b.flags.c_contiguous:
        parts = np.empty((nth, M, N), dtype=a.dtype)
        _matmul_inner(a.T, b, nth, parts)
        return parts.sum(axis=0)
    a = np.ascontiguousarray(a)
    out = np.empty((M, N), dtype=a.dtype)
    _matmul_rows(a, b, min(nth, M), out)
    return out


# --------------------------------------------------------------------------------------------
# 6. Pooling (reference module, section 6): prange over the N*C planes, flat unsigned offsets
#    as in section 5; the first maximum of a window wins (strict ">").
# --------------------------------------------------------------------------------------------

@njit(cache=True, parallel=True)
def _maxpool2d_forward(x, k, stride, out, idx):
    N, C, H, W = x.shape
    _, _, OH, OW = out.shape
    xf = x.reshape(-1)
    of = out.reshape(-1)
    jf = idx.reshape(-1)
    for nc in prange(N * C):
        x0 = uintp(nc * H * W)
        o0 = uintp(nc * OH * OW)
        for oh in range(OH):
            for ow in range(OW):
                i0 = oh * stride * W + ow * stride
                best = xf[x0 + uintp(i0)]
                best_i = i0
                for kh in range(k):
                    for kw in range(k):
                        i = i0 + kh * W + kw
                        v = xf[x0 + uintp(i)]
                        if v > best:
                            best = v
                            best_i = i
                o = o0 + uintp(oh * OW + ow)
                of[o] = best
                jf[o] = best_i


@njit(cache=True, parallel=True)
def _maxpool2d_backward(dout, idx, dx):
    N, C, H, W = dx.shape
    _, _, OH, OW = dout.shape
    gf = dout.reshape(-1)
    jf = idx.reshape(-1)
    df = dx.reshape(-1)
    for nc in prange(N * C):
        x0 = uintp(nc * H * W)
        o0 = uintp(nc * OH * OW)
        for i in range(H * W):
            df[x0 + uintp(i)] = 0
        for j in range(OH * OW):
            o = o0 + uintp(j)
            df[x0 + uintp(jf[o])] += gf[o]


def maxpool2d_forward(x, k, stride):
    """``(out, idx)`` of k x k max pooling; see the reference module's ``maxpool2d_forward``."""
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    OH = _ref.conv_out_size(H, k, stride, 0)
    OW = _ref.conv_out_size(W, k, stride, 0)
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    idx = np.empty((N, C, OH, OW), dtype=np.int32)
    _maxpool2d_forward(x, int(k), int(stride), out, idx)
    return out, idx


def maxpool2d_backward(dout, idx, x_shape, k, stride):
    """Scatter ``dout`` to the window maxima; see the reference module."""
    dout = np.ascontiguousarray(dout)
    idx = np.ascontiguousarray(idx, dtype=np.int32)
    dx = np.empty(tuple(int(s) for s in x_shape), dtype=dout.dtype)
    _maxpool2d_backward(dout, idx, dx)
    return dx


@njit(cache=True, parallel=True)
def _avgpool2d_forward(x, k, stride, scale, out):
    N, C, H, W = x.shape
    _, _, OH, OW = out.shape
    if stride == k:  # non-overlapping windows: section 2b's flat plane routine (same sums)
        xf = x.reshape(-1)
        of = out.reshape(-1)
        for nc in prange(N * C):
            _pool_plane_t(xf, nc * H * W, H, W, k, scale, of, nc * OH * OW)
        return
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        xp_ = x[n, c]
        op = out[n, c]
        for oh in range(OH):
            for ow in range(OW):
                h0, w0 = oh * stride, ow * stride
                acc = xp_[h0, w0]
                for kh in range(k):
                    for kw in range(k):
                        if kh > 0 or kw > 0:
                            acc += xp_[h0 + kh, w0 + kw]
                op[oh, ow] = acc * scale


@njit(cache=True, parallel=True)
def _avgpool2d_backward(dout, k, stride, scale, dx):
    N, C, H, W = dx.shape
    _, _, OH, OW = dout.shape
    if stride == k:  # non-overlapping windows: section 2b's flat plane routine
        gf = dout.reshape(-1)
        df = dx.reshape(-1)
        for nc in prange(N * C):
            if OH * k < H or OW * k < W:
                for i in range(H * W):
                    df[nc * H * W + i] = 0
            _spread_plane_t(gf, nc * OH * OW, H, W, k, scale, df, nc * H * W)
        return
    for nc in prange(N * C):
        n, c = nc // C, nc % C
        gp = dout[n, c]
        dp = dx[n, c]
        dp[:, :] = 0
        for kh in range(k):
            for kw in range(k):
                for oh in range(OH):
                    for ow in range(OW):
                        dp[oh * stride + kh, ow * stride + kw] += gp[oh, ow] * scale


def avgpool2d_forward(x, k, stride):
    """k x k average pooling of (N, C, H, W) images, one pass (the window sum in the order of
    :func:`pysnn_ref.functional.pool.avgpool2d_forward`'s slice sums, then the 1/k^2 scale)."""
    x = np.ascontiguousarray(x)
    N, C, H, W = x.shape
    OH = _ref.conv_out_size(H, k, stride, 0)
    OW = _ref.conv_out_size(W, k, stride, 0)
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    _avgpool2d_forward(x, int(k), int(stride), x.dtype.type(1.0 / (k * k)), out)
    return out


def avgpool2d_backward(dout, x_shape, k, stride):
    """dx of :func:`avgpool2d_forward`: every input gets dout/k^2 of each window holding it."""
    dout = np.ascontiguousarray(dout)
    dx = np.empty(tuple(int(s) for s in x_shape), dtype=dout.dtype)
    _avgpool2d_backward(dout, int(k), int(stride), dout.dtype.type(1.0 / (k * k)), dx)
    return dx


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


_make_twins("sigmoid_scalar")
_make_twins("lstm_cell_scalar", sigmoid_scalar=_sigmoid, spike_scalar=_spike)
_make_twins("lstm_cell_backward_scalar", surrogate_grad_scalar=_grad)
overload(_sigmoid)(lambda x: _twin("sigmoid_scalar", x))
overload(_lstm_cell)(lambda zi, zf, zg, zo, c_prev, v_th, smooth, kind, a:
                     _twin("lstm_cell_scalar", zi))
overload(_lstm_cell_bwd)(lambda ds, dc_next, i, f, g, o, c_prev, c, v_th, kind, a:
                         _twin("lstm_cell_backward_scalar", ds))


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


# --------------------------------------------------------------------------------------------
# 9. Optimizer updates: SGD's and Adam's formulas of pysnn_ref/optim.py in one fused pass over
#    each parameter (NumPy needs three and ten), prange over its entries.  The hyper-parameters
#    arrive in the parameter's dtype and every operation runs in the order of optim.py's NumPy
#    code, so the results are bit-equal to it (tests/test_optim.py).  Measured on an 800 x 784
#    float32 weight (median of 200, hot in cache): Adam 1.7 ms -> 0.5 ms per step (AMD EPYC);
#    SGD with momentum 0.58 ms -> 0.12 ms (Intel Xeon; on the EPYC 0.22 -> 0.21 ms).
# --------------------------------------------------------------------------------------------

@njit(cache=True, parallel=True)
def _adam_update(p, g, m, v, step_size, b1, one_b1, b2, one_b2, sqrt_bc2, eps, wd):
    use_wd = wd != 0
    for i in prange(p.size):
        gi = g[i] + wd * p[i] if use_wd else g[i]
        mi = m[i] * b1 + one_b1 * gi
        vi = v[i] * b2 + one_b2 * (gi * gi)
        m[i] = mi
        v[i] = vi
        p[i] -= step_size * (mi / (np.sqrt(vi) / sqrt_bc2 + eps))


#: parameters with fewer entries keep optim.py's NumPy code: a parallel launch costs ~70-90 us
#: (measured: SGD 7.5 us NumPy vs 91 us fused at 15,680 entries, 188 vs 128 us at 262,144)
FUSED_UPDATE_MIN_SIZE = 1 << 17


@njit(cache=True, parallel=True)
def _sgd_update(p, g, buf, lr, mu, wd, first, nesterov):
    use_wd = wd != 0
    use_mu = mu != 0
    for i in prange(p.size):
        gi = g[i] + wd * p[i] if use_wd else g[i]
        if use_mu:
            bi = gi if first else buf[i] * mu + gi
            buf[i] = bi
            gi = gi + mu * bi if nesterov else bi
        p[i] -= lr * gi


def sgd_update(p, g, buf, lr, mu, wd, first, nesterov):
    """In place: SGD's momentum buffer ``buf`` (ignored when ``mu`` is 0; on the ``first`` step
    it is set to the gradient) and ``p``; see :class:`pysnn_ref.optim.SGD`."""
    f = p.dtype.type
    _sgd_update(p.reshape(-1), g.reshape(-1), buf.reshape(-1), f(lr), f(mu), f(wd), bool(first),
                bool(nesterov))


def adam_update(p, g, m, v, step_size, b1, b2, sqrt_bc2, eps, wd):
    """In place: Adam's moments ``m``, ``v`` and ``p``; see :class:`pysnn_ref.optim.Adam`."""
    f = p.dtype.type
    _adam_update(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), f(step_size),
                 f(b1), f(1.0 - b1), f(b2), f(1.0 - b2), f(sqrt_bc2), f(eps), f(wd))

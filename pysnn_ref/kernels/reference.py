"""Reference kernels: the equations as plain, loop-by-loop NumPy/Python code.

This module is the teaching text of pysnn_ref. Each function is written to be read next to the
paper it cites -- one neuron at a time, one time step at a time, no vectorisation tricks. It is
slow. :mod:`pysnn_ref.kernels.cpu` (Numba) and :mod:`pysnn_ref.kernels.cuda` (numba.cuda)
implement the same signatures and are tested equal to this module.

Conventions: neuron tensors are ``(T, N)`` -- time steps by neurons (batch and features flattened
together). Surrogates are passed as ``(kind, a)``: an integer from :data:`SURROGATE_KINDS` and the
surrogate's one parameter.

Sections: 1. surrogate functions; 2. LIF/IF neuron (BPTT); 2c. current-based (synaptic) LIF
(BPTT); 3. LIF/IF neuron streaming with spiking flows (ASF/SSF); 4. flow gains; 5. im2col /
col2im; 6. pooling; 7. recomposed computing (window-partition supplement, Algorithm 1);
8. spiking LSTM cell (same supplement, Eq. 1).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["PROVIDES", "SURROGATE_KINDS", "heaviside", "surrogate_primitive_scalar",
    "surrogate_grad_scalar", "spike_scalar", "surrogate_primitive", "surrogate_grad",
    "membrane_step_scalar", "membrane_adjoint_scalar", "lif_forward", "lif_backward",
    "synaptic_forward", "synaptic_backward", "lif_forward_flows",
    "ssf_gain", "conv_out_size", "im2col",
    "col2im", "maxpool2d_forward", "maxpool2d_backward", "recompose_forward",
    "recompose_backward", "sigmoid_scalar", "lstm_cell_scalar", "lstm_cell_backward_scalar",
    "lstm_cell_forward", "lstm_cell_backward"]

#: the fast paths of :data:`pysnn_ref.kernels.FAST_PATHS` this set has (the others run the
#: callers' NumPy code, which is the reference)
PROVIDES = frozenset({"lstm_cell_forward", "lstm_cell_backward"})

# --------------------------------------------------------------------------------------------
# 1. Surrogate functions.  x = u - v_th, the membrane's distance above threshold.
#    The scalar functions below are the ONE definition of each formula: the Numba and CUDA
#    kernels compile these same Python functions (njit / cuda.jit(device=True)).
# --------------------------------------------------------------------------------------------

RECTANGULAR, TRIANGLE, SIGMOID, ATAN, DSPIKE = 0, 1, 2, 3, 4
SURROGATE_KINDS = {"rectangular": RECTANGULAR, "triangle": TRIANGLE, "sigmoid": SIGMOID,
                   "atan": ATAN, "dspike": DSPIKE}


def heaviside(x):
    """Eq. 5/7 of SSF: a spike when the membrane reaches the threshold, H(0) = 1."""
    return 1.0 if x >= 0.0 else 0.0


def surrogate_primitive_scalar(x, kind, a):
    """The smooth function whose derivative is the surrogate (used as the spike in smooth mode).

    Per surrogate kind::

        rectangular (Dspike Eq. 7, width a):   hard sigmoid  clip(x/a + 1/2, 0, 1)
        triangle    (TET Eq. 5, gamma = a):    piecewise quadratic, 0 below -a, 1 above a
        sigmoid     (slope k = a):             1 / (1 + exp(-a x))
        atan        (alpha = a):               atan(pi/2 a x) / pi + 1/2
        dspike      (Dspike Eqs. 11-12, b = a, centred on the threshold, window width 1):
                                     (tanh(b x) + tanh(b/2)) / (2 tanh(b/2)), clipped to [0, 1]
    """
    if kind == RECTANGULAR:
        return min(1.0, max(0.0, x / a + 0.5))
    if kind == TRIANGLE:
        if x <= -a:
            return 0.0
        if x >= a:
            return 1.0
        if x < 0.0:
            return (x + a) * (x + a) / (2.0 * a * a)
        return 1.0 - (a - x) * (a - x) / (2.0 * a * a)
    if kind == SIGMOID:
        return 1.0 / (1.0 + math.exp(-a * x))
    if kind == ATAN:
        return math.atan(0.5 * math.pi * a * x) / math.pi + 0.5
    # DSPIKE
    if x < -0.5:
        return 0.0
    if x > 0.5:
        return 1.0
    return (math.tanh(a * x) + math.tanh(0.5 * a)) / (2.0 * math.tanh(0.5 * a))


def surrogate_grad_scalar(x, kind, a):
    """The surrogate gradient d o / d u, the derivative of :func:`surrogate_primitive_scalar`.

    Per surrogate kind::

        rectangular: 1/a if |x| < a/2 else 0                    (Dspike Eq. 7)
        triangle:    max(0, a - |x|) / a^2                      (TET Eq. 5)
        sigmoid:     a s (1 - s),  s = sigmoid(a x)
        atan:        a/2 / (1 + (pi/2 a x)^2)
        dspike:      b (1 - tanh^2(b x)) / (2 tanh(b/2)) for |x| <= 1/2, else 0   (Dspike Eq. 12)
    """
    if kind == RECTANGULAR:
        return 1.0 / a if abs(x) < 0.5 * a else 0.0
    if kind == TRIANGLE:
        return max(0.0, a - abs(x)) / (a * a)
    if kind == SIGMOID:
        s = 1.0 / (1.0 + math.exp(-a * x))
        return a * s * (1.0 - s)
    if kind == ATAN:
        z = 0.5 * math.pi * a * x
        return 0.5 * a / (1.0 + z * z)
    # DSPIKE
    if abs(x) > 0.5:
        return 0.0
    th = math.tanh(a * x)
    return a * (1.0 - th * th) / (2.0 * math.tanh(0.5 * a))


def spike_scalar(x, smooth, kind, a):
    """The neuron's output for membrane distance x: Heaviside, or the primitive in smooth mode."""
    if smooth:
        return surrogate_primitive_scalar(x, kind, a)
    return heaviside(x)


def surrogate_primitive(x, kind, a):
    """Elementwise :func:`surrogate_primitive_scalar` over an array."""
    out = np.empty_like(x)
    for i, xi in enumerate(x.flat):
        out.flat[i] = surrogate_primitive_scalar(xi, kind, a)
    return out


def surrogate_grad(x, kind, a):
    """Elementwise :func:`surrogate_grad_scalar` over an array."""
    out = np.empty_like(x)
    for i, xi in enumerate(x.flat):
        out.flat[i] = surrogate_grad_scalar(xi, kind, a)
    return out


# --------------------------------------------------------------------------------------------
# 2. LIF / IF neuron, BPTT.  SSF Eqs. 6-7 (hard reset), 16-17 (soft reset); IF is lam = 1.
# --------------------------------------------------------------------------------------------

def membrane_step_scalar(v, I_t, lam, v_th, soft, smooth, kind, a):
    """One step of one neuron: ``(u_t, o_t, v_t)`` from the membrane ``v`` after the previous
    step's reset and the input ``I_t`` (SSF Eqs. 6-7 hard, 16-17 soft)::

        u_t = lam v + I_t      o_t = H(u_t - v_th)
        hard: v_t = u_t (1 - o_t)        soft: v_t = u_t - v_th o_t

    The ONE definition of the step: every forward here calls it and the CUDA kernels compile
    it (``cuda.jit(device=True)``)."""
    u_t = lam * v + I_t
    o_t = spike_scalar(u_t - v_th, smooth, kind, a)
    if soft:
        return u_t, o_t, u_t - v_th * o_t
    return u_t, o_t, u_t * (1.0 - o_t)


def membrane_adjoint_scalar(do_t, u_t, du_next, lam, v_th, soft, smooth, detach_reset, kind, a):
    """One step of the exact BPTT adjoint of one neuron: dL/du[t] from ``do_t`` = dL/do[t]
    (from the layer above) and ``du_next`` = dL/du[t+1] (SSF Eqs. 8-10, see
    :func:`lif_backward`).  The ONE definition: the backward passes here call it and the CUDA
    kernels compile it."""
    x = u_t - v_th
    sg = surrogate_grad_scalar(x, kind, a)
    if soft:
        if not detach_reset:
            do_t += du_next * (-lam * v_th)
        return do_t * sg + du_next * lam
    o_t = spike_scalar(x, smooth, kind, a)
    if not detach_reset:
        do_t += du_next * (-lam * u_t)
    return do_t * sg + du_next * lam * (1.0 - o_t)


def lif_forward(I, lam, v_th, soft, smooth, kind, a):
    """LIF forward over T steps for N independent neurons.  Returns ``(o, u)``, both (T, N).

    u[t] = lam * v[t-1] + I[t],        v[-1] = 0 so u[0] = I[0]         (SSF Eq. 6 / 16)
    o[t] = H(u[t] - v_th)                                               (SSF Eq. 7 / 17)
    hard reset: v[t] = u[t] (1 - o[t])       soft reset: v[t] = u[t] - v_th o[t]

    ``u`` (the membrane before reset) is all the backward needs.
    """
    T, N = I.shape
    o = np.empty_like(I)
    u = np.empty_like(I)
    for n in range(N):
        v = 0.0
        for t in range(T):
            u_t, o_t, v = membrane_step_scalar(v, I[t, n], lam, v_th, soft, smooth, kind, a)
            u[t, n] = u_t
            o[t, n] = o_t
    return o, u


def lif_backward(do, u, lam, v_th, soft, smooth, detach_reset, kind, a):
    """Exact BPTT through the LIF recurrence, backwards in time.  Returns dI (T, N).

    With du_next = dL/du[t+1] (zero after the last step) and sg = sigma'(u[t] - v_th)::

        hard reset:  dL/do[t] = do[t] + du_next * (-lam * u[t])
                     dL/du[t] = dL/do[t] * sg + du_next * lam * (1 - o[t])
        soft reset:  dL/do[t] = do[t] + du_next * (-lam * v_th)
                     dL/du[t] = dL/do[t] * sg + du_next * lam
        dL/dI[t] = dL/du[t]                                                  (SSF Eq. 10)

    SSF's printed Eq. 8 multiplies the reset term by only the spike path of dL/du[t] (the
    gradient reaching u[t] through o[t] and the next layer); the exact factor, used here, is the
    whole dL/du[t], including the path through the membrane recurrence.
    ``detach_reset`` drops the reset term from dL/do[t] (the spike is treated as a constant in
    the reset, as in SpyTorch/SpikingJelly's option), which is no longer the exact gradient.
    """
    T, N = u.shape
    dI = np.empty_like(u)
    for n in range(N):
        du_next = 0.0
        for t in range(T - 1, -1, -1):
            du_next = membrane_adjoint_scalar(do[t, n], u[t, n], du_next, lam, v_th, soft,
                                              smooth, detach_reset, kind, a)
            dI[t, n] = du_next
    return dI


# --------------------------------------------------------------------------------------------
# 2c. Current-based (synaptic) LIF, BPTT.  A second state, the synaptic current syn, filters the
#     input before the membrane integrates it (snnTorch's ``Synaptic`` neuron; the discrete-time
#     model of Neftci, Mostafa & Zenke, IEEE SPM 2019).  alpha = 0 is the LIF of section 2.
# --------------------------------------------------------------------------------------------

def synaptic_forward(I, alpha, lam, v_th, soft, smooth, kind, a):
    """Current-based LIF forward over T steps for N neurons.  Returns ``(o, u)``, both (T, N).

    syn[t] = alpha * syn[t-1] + I[t]   syn[-1] = 0   synaptic current (decay alpha)
    u[t]   = lam * v[t-1] + syn[t]     v[-1] = 0     membrane before reset (decay lam)
    o[t]   = H(u[t] - v_th)
    hard reset: v[t] = u[t] (1 - o[t])       soft reset: v[t] = u[t] - v_th o[t]

    The backward needs only ``u``: the synaptic current is linear in I.
    """
    T, N = I.shape
    o = np.empty_like(I)
    u = np.empty_like(I)
    for n in range(N):
        syn = 0.0
        v = 0.0
        for t in range(T):
            syn = alpha * syn + I[t, n]
            u_t, o_t, v = membrane_step_scalar(v, syn, lam, v_th, soft, smooth, kind, a)
            u[t, n] = u_t
            o[t, n] = o_t
    return o, u


def synaptic_backward(do, u, alpha, lam, v_th, soft, smooth, detach_reset, kind, a):
    """Exact BPTT through :func:`synaptic_forward` with two adjoints.  Returns dI (T, N).

    du_next = dL/du[t+1], ds_next = dL/dsyn[t+1] (both zero after the last step)::

      membrane adjoint (as in lif_backward):
        hard: dL/do[t] = do[t] - du_next lam u[t];  dL/du[t] = dL/do[t] sg + du_next lam (1 - o[t])
        soft: dL/do[t] = do[t] - du_next lam v_th;  dL/du[t] = dL/do[t] sg + du_next lam
      synaptic adjoint (syn[t] reaches u[t] with weight 1 and syn[t+1] with weight alpha):
        dL/dsyn[t] = dL/du[t] + alpha ds_next
      dL/dI[t] = dL/dsyn[t]

    ``detach_reset`` drops the reset term -du_next lam u[t] (hard) / -du_next lam v_th (soft),
    as in :func:`lif_backward`.
    """
    T, N = u.shape
    dI = np.empty_like(u)
    for n in range(N):
        du_next = 0.0
        ds_next = 0.0
        for t in range(T - 1, -1, -1):
            du_t = membrane_adjoint_scalar(do[t, n], u[t, n], du_next, lam, v_th, soft, smooth,
                                           detach_reset, kind, a)
            ds_t = du_t + alpha * ds_next
            dI[t, n] = ds_t
            du_next = du_t
            ds_next = ds_t
    return dI


# --------------------------------------------------------------------------------------------
# 3. LIF / IF neuron streamed over a chunk of time steps, accumulating spiking flows.
#    Used by the "asf" and "ssf" methods: no per-step state is kept, only running sums.
# --------------------------------------------------------------------------------------------

def lif_forward_flows(I, v, lam, v_th, soft, smooth, kind, a, w, sI, sO, sOU):
    """Run the neuron over one chunk I (Tc, N), carrying the state ``v`` (N,) in place.

    The same dynamics as :func:`lif_forward`; ``v`` is the membrane after reset of the previous
    step (zeros before the first chunk). Alongside, three running sums (N,) are updated in place
    with decay ``w`` per step, so that after the last step they hold
    sI = sum_t w^(T-1-t) I[t],  sO = sum_t w^(T-1-t) o[t],  sOU = sum_t w^(T-1-t) o[t] u[t]
    (ASF Eq. 7 uses w = 1; SSF Sec. 3.3 uses w = lam).  Returns the spikes o (Tc, N).
    """
    Tc, N = I.shape
    o = np.empty_like(I)
    for n in range(N):
        vn = v[n]
        for t in range(Tc):
            u_t, o_t, vn = membrane_step_scalar(vn, I[t, n], lam, v_th, soft, smooth, kind, a)
            sI[n] = w * sI[n] + I[t, n]
            sO[n] = w * sO[n] + o_t
            sOU[n] = w * sOU[n] + o_t * u_t
            o[t, n] = o_t
        v[n] = vn
    return o


# --------------------------------------------------------------------------------------------
# 4. Flow gains: d FO / d FI of the stabilized spiking flow mapping (SSF Eqs. 14 and 19).
# --------------------------------------------------------------------------------------------

def ssf_gain(FI, R, v_th, soft, r_max):
    """The SSF mapping's derivative dFO/dFI, elementwise over arrays of the same shape.

    Per reset::

        hard reset (Eq. 14):  FO = max(0, FI / (R v_th))  ->  gain = 1/(R v_th) where FI > 0,
                              and 0 where R > r_max (the paper's cutoff, r_max = 2)
        soft reset (Eq. 19):  FO = clamp(FI / v_th, 0, 1) ->  gain = 1/v_th where 0 < FI < v_th
    """
    gain = np.empty_like(FI)
    for i in range(FI.size):
        fi = FI.flat[i]
        if soft:
            g = 1.0 / v_th if 0.0 < fi < v_th else 0.0
        else:
            r = R.flat[i]
            g = 1.0 / (r * v_th) if (fi > 0.0 and r <= r_max) else 0.0
        gain.flat[i] = g
    return gain


# --------------------------------------------------------------------------------------------
# 5. im2col / col2im: a convolution as one matrix product (Chellapilla et al. 2006; Caffe).
#    x (N, C, H, W) -> cols (N, C*KH*KW, OH*OW).  Row r = (c, kh, kw) in C order, so the weight
#    W (F, C, KH, KW) reshaped to (F, C*KH*KW) multiplies every image's columns:
#    out[n] = W2 @ cols[n] is (F, OH*OW) -- already NCHW.  Column p = (oh, ow).
#    OH = (H + 2 pad - KH) // stride + 1 (floor: trailing rows that do not fill a window are
#    dropped, as in PyTorch); likewise OW.
# --------------------------------------------------------------------------------------------

def conv_out_size(size, k, stride, pad):
    """Output length of a sliding window: floor((size + 2 pad - k) / stride) + 1."""
    return (size + 2 * pad - k) // stride + 1


def im2col(x, KH, KW, stride, pad):
    """Unfold every receptive field of ``x`` (N, C, H, W) into a column.

    cols[n, (c*KH + kh)*KW + kw, oh*OW + ow] = xpad[n, c, oh*stride + kh, ow*stride + kw]

    where xpad is ``x`` with ``pad`` zeros on each side of H and W.  Returns (N, C*KH*KW, OH*OW).
    """
    N, C, H, W = x.shape
    OH = conv_out_size(H, KH, stride, pad)
    OW = conv_out_size(W, KW, stride, pad)
    cols = np.zeros((N, C * KH * KW, OH * OW), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for kh in range(KH):
                for kw in range(KW):
                    row = (c * KH + kh) * KW + kw
                    for oh in range(OH):
                        for ow in range(OW):
                            ih = oh * stride + kh - pad
                            iw = ow * stride + kw - pad
                            if 0 <= ih < H and 0 <= iw < W:  # else: a padding zero
                                cols[n, row, oh * OW + ow] = x[n, c, ih, iw]
    return cols


def col2im(cols, x_shape, KH, KW, stride, pad):
    """The adjoint of :func:`im2col`: add every column entry back onto the pixel it came from.

    dx[n, c, ih, iw] = sum of cols[n, (c*KH + kh)*KW + kw, oh*OW + ow] over all (kh, kw, oh, ow)
    with oh*stride + kh - pad = ih and ow*stride + kw - pad = iw.  Entries that came from the
    padding are dropped.  Returns dx with shape ``x_shape`` = (N, C, H, W).
    """
    N, C, H, W = x_shape
    OH = conv_out_size(H, KH, stride, pad)
    OW = conv_out_size(W, KW, stride, pad)
    dx = np.zeros(x_shape, dtype=cols.dtype)
    for n in range(N):
        for c in range(C):
            for kh in range(KH):
                for kw in range(KW):
                    row = (c * KH + kh) * KW + kw
                    for oh in range(OH):
                        for ow in range(OW):
                            ih = oh * stride + kh - pad
                            iw = ow * stride + kw - pad
                            if 0 <= ih < H and 0 <= iw < W:
                                dx[n, c, ih, iw] += cols[n, row, oh * OW + ow]
    return dx


# --------------------------------------------------------------------------------------------
# 6. Pooling.  Max pooling over k x k windows moved by ``stride`` (no padding, floor mode).
#    idx[n, c, oh, ow] = ih * W + iw of the window's maximum (flat index in the (H, W) plane),
#    int32.  Ties: the FIRST maximum in row-major window order wins (strict ">"), so exactly one
#    input per window receives the gradient.
# --------------------------------------------------------------------------------------------

def maxpool2d_forward(x, k, stride):
    """out[n, c, oh, ow] = max over the window x[n, c, oh*s : oh*s + k, ow*s : ow*s + k].

    Returns ``(out, idx)``: out (N, C, OH, OW) and the int32 flat plane index of each maximum.
    """
    N, C, H, W = x.shape
    OH = conv_out_size(H, k, stride, 0)
    OW = conv_out_size(W, k, stride, 0)
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    idx = np.empty((N, C, OH, OW), dtype=np.int32)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    best_i = oh * stride * W + ow * stride
                    best = x[n, c, oh * stride, ow * stride]
                    for kh in range(k):
                        for kw in range(k):
                            ih = oh * stride + kh
                            iw = ow * stride + kw
                            if x[n, c, ih, iw] > best:  # strict: the first maximum wins
                                best = x[n, c, ih, iw]
                                best_i = ih * W + iw
                    out[n, c, oh, ow] = best
                    idx[n, c, oh, ow] = best_i
    return out, idx


def maxpool2d_backward(dout, idx, x_shape, k, stride):
    """Route each output gradient to the input that won its window:
    dx[n, c].flat[idx[n, c, oh, ow]] += dout[n, c, oh, ow]  (overlapping windows add up).
    ``k`` and ``stride`` are not needed by the loop; they are part of the shared signature."""
    N, C, H, W = x_shape
    _, _, OH, OW = dout.shape
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                for ow in range(OW):
                    i = idx[n, c, oh, ow]
                    dx[n, c, i // W, i % W] += dout[n, c, oh, ow]
    return dx


# --------------------------------------------------------------------------------------------
# 7. Recomposed computing (window-partition supplement, Algorithm 1).  Four dilated windows
#    G1 (top-left), G2 (top-right), G3 (bottom-left), G4 (bottom-right), each M x M with
#    M = 3L/4, are put back on the L x L map; where windows overlap (width w_o = 2M - L) the
#    values are averaged: weight 1/2 where two windows cover a pixel, 1/4 in the centre.
# --------------------------------------------------------------------------------------------

def recompose_forward(G1, G2, G3, G4):
    """Algorithm 1 "Weighted-Condense": (N, M, M) x 4 -> (N, L, L), L = 4M/3, pixel by pixel."""
    N, M = G1.shape[0], G1.shape[1]
    L = 4 * M // 3
    off = L - M                                   # window origin of G2/G4 (cols), G3/G4 (rows)
    origins = ((0, 0), (0, off), (off, 0), (off, off))
    out = np.zeros((N, L, L), dtype=G1.dtype)
    count = np.zeros((L, L))
    for G, (r0, c0) in zip((G1, G2, G3, G4), origins, strict=True):
        for n in range(N):
            for i in range(M):
                for j in range(M):
                    out[n, r0 + i, c0 + j] += G[n, i, j]
        for i in range(M):
            for j in range(M):
                count[r0 + i, c0 + j] += 1.0
    for n in range(N):
        for r in range(L):
            for c in range(L):
                out[n, r, c] /= count[r, c]
    return out


def recompose_backward(dX, M):
    """Adjoint of :func:`recompose_forward`: dG_k[i, j] = dX[window k pixel] / coverage count."""
    N, L = dX.shape[0], dX.shape[1]
    off = L - M
    origins = ((0, 0), (0, off), (off, 0), (off, off))
    count = np.zeros((L, L))
    for r0, c0 in origins:
        for i in range(M):
            for j in range(M):
                count[r0 + i, c0 + j] += 1.0
    grads = []
    for r0, c0 in origins:
        dG = np.zeros((N, M, M), dtype=dX.dtype)
        for n in range(N):
            for i in range(M):
                for j in range(M):
                    dG[n, i, j] = dX[n, r0 + i, c0 + j] / count[r0 + i, c0 + j]
        grads.append(dG)
    return tuple(grads)


# --------------------------------------------------------------------------------------------
# 8. Spiking LSTM cell (the LSNN of the window-partition supplement, Sec. 3.1 Eq. 1), one time
#    step, elementwise.  z (B, 4H) holds the gate pre-activations in the order (i, f, g, o):
#    z[:, 0:H] -> input gate, z[:, H:2H] -> forget gate, z[:, 2H:3H] -> candidate, z[:, 3H:4H]
#    -> output gate (PyTorch's order).  The GEMMs that make z live in functional/lstm.py.
#    The scalar functions are the ONE definition of the cell's formulas; kernels/cpu/
#    compiles these same functions.
# --------------------------------------------------------------------------------------------

def sigmoid_scalar(x):
    """The logistic function 1 / (1 + exp(-x)), in the form that never overflows."""
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def lstm_cell_scalar(zi, zf, zg, zo, c_prev, v_th, smooth, kind, a):
    """One neuron, one step of the spiking LSTM cell.  Returns ``(i, f, g, o, c, s)``.

    gates (Eq. L2):      i = sigma(z_i)  f = sigma(z_f)  g = tanh(z_g)  o = sigma(z_o)
    cell (Eq. L3):       c = f c_prev + i g
    membrane (Eq. L4):   u = o tanh(c)         in (-1, 1)
    spike (Eq. L4):      s = H(u - v_th)       (the surrogate's primitive in smooth mode)
    """
    i = sigmoid_scalar(zi)
    f = sigmoid_scalar(zf)
    g = math.tanh(zg)
    o = sigmoid_scalar(zo)
    c = f * c_prev + i * g
    u = o * math.tanh(c)
    s = spike_scalar(u - v_th, smooth, kind, a)
    return i, f, g, o, c, s


def lstm_cell_backward_scalar(ds, dc_next, i, f, g, o, c_prev, c, v_th, kind, a):
    """The adjoint of :func:`lstm_cell_scalar` for one neuron.  Returns
    ``(dz_i, dz_f, dz_g, dz_o, dc_carry)``.

    ``ds`` = dL/ds[t] (from the layer above and from the recurrence), ``dc_next`` = the part of
    dL/dc[t] that comes through c[t+1] (already multiplied by f[t+1]; 0 at the last step).

    du = ds sigma'(u - v_th)                          (Eq. B2; sigma' the surrogate gradient)
    do = du tanh(c)
    dc = du o (1 - tanh^2 c) + dc_next
    dz_i = dc g i (1 - i)      dz_f = dc c_prev f (1 - f)                   (Eq. B3)
    dz_g = dc i (1 - g^2)      dz_o = do o (1 - o)
    dc_carry = dc f            (what dL/dc[t-1] receives through c[t])
    """
    tc = math.tanh(c)
    du = ds * surrogate_grad_scalar(o * tc - v_th, kind, a)
    do = du * tc
    dc = du * o * (1.0 - tc * tc) + dc_next
    return (dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g),
            do * o * (1.0 - o), dc * f)


def lstm_cell_forward(z, c_prev, v_th, smooth, kind, a):
    """One step of the spiking LSTM cell for B samples x H neurons, loop by loop.

    ``z`` (B, 4H) gate pre-activations (i, f, g, o), ``c_prev`` (B, H) the cell state before the
    step.  Returns ``(A, c, s)``: the gates after their activations (B, 4H), in z's layout, the
    new cell state c (B, H) and the spikes s (B, H).
    """
    B, H = c_prev.shape
    A = np.empty_like(z)
    c = np.empty_like(c_prev)
    s = np.empty_like(c_prev)
    for b in range(B):
        for h in range(H):
            i, f, g, o, c_t, s_t = lstm_cell_scalar(
                z[b, h], z[b, H + h], z[b, 2 * H + h], z[b, 3 * H + h], c_prev[b, h],
                v_th, smooth, kind, a)
            A[b, h], A[b, H + h], A[b, 2 * H + h], A[b, 3 * H + h] = i, f, g, o
            c[b, h] = c_t
            s[b, h] = s_t
    return A, c, s


def lstm_cell_backward(ds, dc_next, A, c_prev, c, v_th, kind, a):
    """The adjoint of :func:`lstm_cell_forward` for one step.  Returns ``(dz, dc_carry)``:
    dz (B, 4H) = dL/dz[t] and dc_carry (B, H) = dL/dc[t] f[t], the cell gradient step t-1
    receives.  ``A``, ``c_prev``, ``c``: the step's gates, previous and new cell state."""
    B, H = c_prev.shape
    dz = np.empty_like(A)
    dc_carry = np.empty_like(c_prev)
    for b in range(B):
        for h in range(H):
            dzi, dzf, dzg, dzo, dcc = lstm_cell_backward_scalar(
                ds[b, h], dc_next[b, h], A[b, h], A[b, H + h], A[b, 2 * H + h],
                A[b, 3 * H + h], c_prev[b, h], c[b, h], v_th, kind, a)
            dz[b, h], dz[b, H + h], dz[b, 2 * H + h], dz[b, 3 * H + h] = dzi, dzf, dzg, dzo
            dc_carry[b, h] = dcc
    return dz, dc_carry

"""Section 6 -- max and average pooling.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uintp

from .. import reference as _ref

__all__ = ["pool_plane_t", "spread_plane_t", "maxpool2d_forward", "maxpool2d_backward",
    "avgpool2d_forward", "avgpool2d_backward"]

# --------------------------------------------------------------------------------------------
# 6. Pooling (reference module, section 6): prange over the N*C planes, flat unsigned offsets
#    as in section 5; the first maximum of a window wins (strict ">").
# --------------------------------------------------------------------------------------------

# The window sums of one plane and their adjoint, shared with the fused LIF + pooling kernels
# (neuron.py, section 2b).

@njit(cache=True, inline="always")
def pool_plane_t(ob, b0, H, W, k, scale, out_t, o0):
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
def spread_plane_t(dpt, o0, H, W, k, scale, dob, b0):
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
            pool_plane_t(xf, nc * H * W, H, W, k, scale, of, nc * OH * OW)
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
            spread_plane_t(gf, nc * OH * OW, H, W, k, scale, df, nc * H * W)
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


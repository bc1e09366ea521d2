"""2-D convolution (cross-correlation, as in every deep-learning library), NCHW, im2col + GEMM.

Forward, for input x (N, C, H, W), weight W (F, C, KH, KW), bias b (F,), stride s, padding p::

    out[n, f, oh, ow] = b[f] + sum_{c, kh, kw} W[f, c, kh, kw] * xpad[n, c, oh*s + kh, ow*s + kw]

with OH = floor((H + 2p - KH) / s) + 1 (likewise OW).  Spiking inputs are time-major
(T, B, C, H, W) and are folded into N = T*B images, so one GEMM serves every time step -- the
convolutional layers of all the papers (SSF Sec. 4, ASF Sec. 4, TET SNN-5/VGGSNN, Dspike).

How it is computed (Chellapilla et al. 2006; Caffe): :func:`~pysnn_ref.kernels.reference.im2col`
unfolds each image into ``cols[n]`` (C*KH*KW, OH*OW), so with ``W2 = W.reshape(F, C*KH*KW)``::

    forward:  out[n]   = W2 @ cols[n]                   (F, OH*OW) -- already NCHW, no transpose
    backward: dW2     += dout[n] @ cols[n]^T            (F, C*KH*KW)
              dcols[n] = W2^T @ dout[n];  dx[n] = col2im(dcols[n])
              db       = sum over n, oh, ow of dout

The three products are BLAS GEMMs.  On the CPU im2col is fused with them
(:func:`pysnn_ref.kernels.cpu.conv2d_forward_images` / ``conv2d_backward_images``): each Numba
thread takes a block of images and, one image at a time, unfolds it into its own small column
buffer and multiplies it at once (one BLAS thread per Numba thread), so the columns never leave
the core's cache and both cores run GEMMs.  Elsewhere (the reference kernels, the GPU) images
are processed in chunks of about :data:`CHUNK_BYTES` (:data:`GPU_CHUNK_BYTES`) of columns,
batched through ``matmul``.  Either way the cache keeps only the layer input, and the backward
recomputes im2col.

Static input (direct encoding): a time-broadcast 5-D input (``x.strides[0] == 0``) is the same
image at every step; the forward convolves ``x[0]`` once and returns a read-only broadcast view,
and the backward computes dW from ``x[0]`` and ``sum_t dout[t]`` (B images instead of T*B).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import backend
from .._check import check_float_array, check_int, check_same_shape
from ..kernels import provides
from ..kernels.reference import conv_out_size
from .linear import is_time_broadcast

__all__ = ["CHUNK_BYTES", "GPU_CHUNK_BYTES", "Conv2dCache", "conv_out_size", "conv2d_forward",
    "conv2d_backward", "conv2d_backward_time_sum"]

#: bytes of im2col columns per chunk of images on the CPU: small enough to stay in the L2/L3
#: cache between im2col and the GEMMs that read it (about 9 images of 16x28x28 with a 3x3 kernel)
CHUNK_BYTES = 4 << 20
#: the same on the GPU, where fewer, larger launches are better
GPU_CHUNK_BYTES = 256 << 20


class Conv2dCache(NamedTuple):
    """What :func:`conv2d_backward` needs: the layer input (not its columns), the weight, whether
    there is a bias, stride and padding.  The flow methods build one with ``sum_t x[t]``."""

    x: Any
    W: Any
    has_bias: bool
    stride: int
    padding: int


def _check(x: Any, W: Any, b: Any, stride: Any, padding: Any) -> tuple[int, int]:
    check_float_array("x", x)
    if x.ndim not in (4, 5):
        raise ValueError("x must be (N, C, H, W) or time-major (T, B, C, H, W), got shape "
                         f"{tuple(x.shape)}")
    check_float_array("W", W, ndim=4)
    if W.dtype != x.dtype:
        raise ValueError(f"W must have the dtype of x ({x.dtype}), got {W.dtype}")
    s = check_int("stride", stride, minimum=1)
    p = check_int("padding", padding, minimum=0)
    C, H, Wd = x.shape[-3:]
    if 0 in x.shape:
        raise ValueError(f"x must hold at least one image of at least 1x1 pixels in every "
                         f"channel, got shape {tuple(x.shape)}")
    if p > max(H, Wd) + max(W.shape[2:]):
        raise ValueError(f"padding must be at most max(H, W) + kernel size "
                         f"({max(H, Wd) + max(W.shape[2:])}) for x of shape {tuple(x.shape)}, "
                         f"got {p}")
    if W.shape[1] != C:
        raise ValueError(f"W must have {C} input channels (axis 1) to match x of shape "
                         f"{tuple(x.shape)}, got W of shape {tuple(W.shape)}")
    KH, KW = W.shape[2:]
    if KH < 1 or KW < 1 or W.shape[0] < 1:
        raise ValueError(f"W must have non-empty (F, C, KH, KW), got {tuple(W.shape)}")
    if conv_out_size(H, KH, s, p) < 1 or conv_out_size(Wd, KW, s, p) < 1:
        raise ValueError(f"W's kernel {KH}x{KW} does not fit the input {H}x{Wd} with padding {p}: "
                         "expected KH <= H + 2*padding and KW <= W + 2*padding")
    if b is not None:
        check_float_array("b", b, ndim=1)
        check_same_shape("b", b, (W.shape[0],))
        if b.dtype != x.dtype:
            raise ValueError(f"b must have the dtype of x ({x.dtype}), got {b.dtype}")
    return s, p


def _images(x: Any) -> Any:
    """(N, C, H, W) view of x: time-major (T, B, C, H, W) folded to T*B images, C-contiguous."""
    xp = backend.array_module(x)
    if x.ndim == 5:
        x = x.reshape(-1, *x.shape[2:])
    return xp.ascontiguousarray(x)


def _chunk(xp: Any, per_image_bytes: int) -> int:
    budget = CHUNK_BYTES if xp.__name__ == "numpy" else GPU_CHUNK_BYTES
    return max(1, budget // max(1, per_image_bytes))


def _columns(K: Any, x4: Any, KH: int, KW: int, s: int, p: int) -> Any:
    """im2col of a chunk; a 1x1 convolution with stride 1 and no padding needs no copy."""
    if KH == 1 and KW == 1 and s == 1 and p == 0:
        return x4.reshape(x4.shape[0], x4.shape[1], -1)
    return K.im2col(x4, KH, KW, s, p)


def _forward_images(x4: Any, W: Any, b: Any, s: int, p: int) -> Any:
    xp = backend.array_module(x4)
    K = backend.kernels_for(x4)
    N, C, H, Wd = x4.shape
    F, _, KH, KW = W.shape
    OH, OW = conv_out_size(H, KH, s, p), conv_out_size(Wd, KW, s, p)
    if provides(K, "conv2d_forward_images"):  # CPU: im2col fused with the GEMM, per image
        return K.conv2d_forward_images(x4, W, b, s, p)
    W2 = W.reshape(F, -1)
    out = xp.empty((N, F, OH, OW), dtype=x4.dtype)
    o3 = out.reshape(N, F, OH * OW)
    nb = _chunk(xp, W2.shape[1] * OH * OW * x4.itemsize)
    bcol = None if b is None else b[:, None]
    for n0 in range(0, N, nb):
        n1 = min(N, n0 + nb)
        cols = _columns(K, x4[n0:n1], KH, KW, s, p)
        o = o3[n0:n1]
        xp.matmul(W2, cols, out=o)  # (F, K) @ (m, K, P) -> (m, F, P): batched GEMM
        if bcol is not None:
            o += bcol
    return out


def conv2d_forward(x: Any, W: Any, b: Any | None, stride: int = 1, padding: int = 0
                   ) -> tuple[Any, Conv2dCache]:
    """2-D convolution forward (im2col + GEMM).

    Inputs:
      x: (N, C, H, W) or time-major (T, B, C, H, W), float32/float64.  A time-broadcast 5-D input
        (``x.strides[0] == 0``) is convolved once and the output is a **read-only** broadcast view.
      W: (F, C, KH, KW), same dtype.  b: (F,) or None.
      stride: int >= 1.  padding: int >= 0 (zeros on every side).
    Returns:
      ``(out, cache)``: out (N, F, OH, OW) or (T, B, F, OH, OW); cache a :class:`Conv2dCache`.
    """
    s, p = _check(x, W, b, stride, padding)
    cache = Conv2dCache(x, W, b is not None, s, p)
    xp = backend.array_module(x)
    if is_time_broadcast(x):
        out0 = _forward_images(xp.ascontiguousarray(x[0]), W, b, s, p)
        return xp.broadcast_to(out0, (x.shape[0], *out0.shape)), cache
    out = _forward_images(_images(x), W, b, s, p)
    if x.ndim == 5:
        out = out.reshape(*x.shape[:2], *out.shape[1:])
    return out, cache


def _backward_images(d4: Any, x4: Any | None, W: Any, x_shape: tuple, s: int, p: int,
                     need_dW: bool, need_dx: bool) -> tuple[Any, Any, Any]:
    """Chunked backward over images: dW2 (F, C*KH*KW) and db from (d4, x4); dx from d4 alone."""
    xp = backend.array_module(d4)
    K = backend.kernels_for(d4)
    N, F, OH, OW = d4.shape
    _, C, H, Wd = x_shape
    KH, KW = W.shape[2:]
    if provides(K, "conv2d_backward_images"):  # CPU: im2col fused with the GEMMs, per image
        return K.conv2d_backward_images(d4, x4, W, x_shape, s, p, need_dW, need_dx)
    P = OH * OW
    W2 = W.reshape(F, -1)
    W2T = W2.T
    Kc = W2.shape[1]
    d3 = d4.reshape(N, F, P)
    nb = _chunk(xp, Kc * P * d4.itemsize)
    dW2 = xp.zeros((F, Kc), dtype=d4.dtype) if need_dW else None
    db = xp.zeros(F, dtype=d4.dtype) if need_dW else None
    dx = xp.empty((N, C, H, Wd), dtype=d4.dtype) if need_dx else None
    one_by_one = KH == 1 and KW == 1 and s == 1 and p == 0
    for n0 in range(0, N, nb):
        n1 = min(N, n0 + nb)
        m = n1 - n0
        dc = d3[n0:n1]
        if need_dW:
            cols = _columns(K, x4[n0:n1], KH, KW, s, p)
            # dW2 += sum_n dc[n] @ cols[n]^T as ONE GEMM over the chunk, (F, m*P) @ (m*P, K):
            # no (m, K, F) batch of per-image products (3.6 GB per layer for VGGSNN's 512C3 on
            # CIFAR at T*B = 384, issue 22); tensordot's operand copies are at most one chunk
            # of columns and of dout
            dW2 += xp.tensordot(dc, cols, axes=([0, 2], [0, 2]))
            db += dc.sum(axis=(0, 2))
        if need_dx:
            dcols = xp.matmul(W2T, dc)  # (K, F) @ (m, F, P) -> (m, K, P)
            if one_by_one:
                dx[n0:n1] = dcols.reshape(m, C, H, Wd)
            else:
                dx[n0:n1] = K.col2im(dcols, (m, C, H, Wd), KH, KW, s, p)
    return (None if dW2 is None else dW2.reshape(W.shape)), db, dx


def conv2d_backward(dout: Any, cache: Conv2dCache, need_dx: bool = True
                    ) -> tuple[Any | None, Any, Any | None]:
    """Gradients of :func:`conv2d_forward`: ``(dx, dW, db)``.

    ``dx`` has the shape of ``cache.x`` (None if ``need_dx`` is False); ``db`` is None without a
    bias.  im2col is recomputed from ``cache.x`` in chunks of images.  For a time-broadcast
    ``cache.x``, dW and db come from ``x[0]`` and ``sum_t dout[t]`` (B images instead of T*B);
    ``dx`` stays the exact per-step gradient (``col2im(W^T dout[t])`` differs from step to step).
    """
    x, W, has_bias, s, p = cache
    check_float_array("dout", dout)
    F = W.shape[0]
    OH = conv_out_size(x.shape[-2], W.shape[2], s, p)
    OW = conv_out_size(x.shape[-1], W.shape[3], s, p)
    check_same_shape("dout", dout, (*x.shape[:-3], F, OH, OW))
    if dout.dtype != x.dtype:
        dout = dout.astype(x.dtype)
    d4 = _images(dout)
    if is_time_broadcast(x):
        dW, db = conv2d_backward_time_sum(dout.sum(axis=0), cache)
        dx = None
        if need_dx:
            _, _, dx = _backward_images(d4, None, W, (d4.shape[0], *x.shape[2:]), s, p,
                                        need_dW=False, need_dx=True)
    else:
        x4 = _images(x)
        dW, db, dx = _backward_images(d4, x4, W, x4.shape, s, p, need_dW=True, need_dx=need_dx)
    if dx is not None:
        dx = dx.reshape(x.shape)
    return dx, dW, (db if has_bias else None)


def conv2d_backward_time_sum(ds: Any, cache: Conv2dCache) -> tuple[Any, Any | None]:
    """``(dW, db)`` of a time-broadcast (static) input from ``ds = sum_t dout[t]`` alone
    (B images instead of T*B), as :func:`pysnn_ref.functional.linear.linear_backward_time_sum`;
    :func:`conv2d_backward` uses it.  No ``dx``: that needs each step."""
    x, W, has_bias, s, p = cache
    if not is_time_broadcast(x):
        raise ValueError("cache.x must be a time-broadcast input (axis 0 of stride 0)")
    xp = backend.array_module(x)
    check_float_array("ds", ds)
    F = W.shape[0]
    OH = conv_out_size(x.shape[-2], W.shape[2], s, p)
    OW = conv_out_size(x.shape[-1], W.shape[3], s, p)
    check_same_shape("ds", ds, (*x.shape[1:-3], F, OH, OW))
    x0 = xp.ascontiguousarray(x[0])
    dW, db, _ = _backward_images(xp.ascontiguousarray(ds, dtype=x.dtype), x0, W, x0.shape, s, p,
                                 need_dW=True, need_dx=False)
    return dW, (db if has_bias else None)

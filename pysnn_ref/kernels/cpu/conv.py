"""Sections 5 and 5b -- im2col / col2im, the convolution with im2col fused into the GEMMs, and
the fully connected layer's GEMM split over the threads.
"""

from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit, prange, uintp

from .. import reference as _ref

__all__ = ["im2col", "col2im", "limit_numba_blas", "thread_block", "conv2d_forward_images",
    "conv2d_backward_images", "MATMUL_SPLIT_MACS", "matmul"]

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


def limit_numba_blas() -> None:
    """One thread for the BLAS that Numba's ``np.dot`` calls (SciPy's OpenBLAS, not NumPy's):
    the kernels below call it from every Numba thread at once.  Checked at every call (a ctypes
    read), so that a later ``threadpoolctl`` limit on all BLAS libraries cannot undo it."""
    if not _numba_blas:
        # lazy: the BLAS that Numba's np.dot binds to is found once, at the first threaded GEMM
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
def thread_block(t, n, nth):
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
        lo, hi = thread_block(t, N, nth)
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
        lo, hi = thread_block(t, N, nth)
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
    limit_numba_blas()
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
    limit_numba_blas()
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
        i0, i1 = thread_block(t, a.shape[0], nth)
        if i1 > i0:
            np.dot(a[i0:i1], b, out[i0:i1])


@njit(cache=True, parallel=True)
def _matmul_inner(aT, b, nth, parts):
    for t in prange(nth):
        k0, k1 = thread_block(t, aT.shape[0], nth)
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
    limit_numba_blas()
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


"""im2col / col2im / max-pooling kernels: Numba (kernels/cpu/) equal to the reference loops
(kernels/reference.py), the adjoint identity, and the convolution against scipy's correlation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate

import pysnn_ref.functional.conv as conv_mod
from pysnn_ref import backend
from pysnn_ref.functional.conv import conv2d_backward, conv2d_forward
from pysnn_ref.functional.pool import maxpool2d_backward, maxpool2d_forward
from pysnn_ref.gradcheck import rel_error
from pysnn_ref.kernels import cpu, reference

# (N, C, H, W, KH, KW, stride, pad): odd sizes, strides 1-3, padding 0-2, non-square kernels,
# a kernel larger than the input (fits only thanks to the padding), 1x1
GEOMETRIES = [
    (2, 3, 5, 5, 3, 3, 1, 1),
    (2, 2, 7, 6, 3, 3, 2, 0),
    (1, 2, 5, 4, 2, 3, 2, 2),
    (3, 1, 9, 8, 3, 2, 3, 1),
    (2, 2, 3, 3, 5, 5, 1, 2),
    (1, 3, 4, 4, 1, 1, 2, 0),
    (1, 2, 6, 7, 4, 4, 1, 0),
    # stride 1 with KW = 2 * pad + 1: the contiguous-run route of the plane routines
    (2, 2, 4, 6, 1, 3, 1, 1),
    (2, 2, 6, 5, 5, 3, 1, 1),
    (1, 2, 2, 9, 5, 5, 1, 2),
    (1, 2, 3, 5, 1, 1, 1, 0),
]


@pytest.mark.parametrize("geom", GEOMETRIES)
def test_im2col_col2im_numba_equal_reference(geom):
    N, C, H, W, KH, KW, s, p = geom
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, C, H, W))
    ref = reference.im2col(x, KH, KW, s, p)
    OH, OW = reference.conv_out_size(H, KH, s, p), reference.conv_out_size(W, KW, s, p)
    assert ref.shape == (N, C * KH * KW, OH * OW)
    assert np.array_equal(cpu.im2col(x, KH, KW, s, p), ref)  # a copy: exact
    cols = rng.normal(size=ref.shape)
    kept = cols.copy()
    assert rel_error(cpu.col2im(cols, x.shape, KH, KW, s, p),
                     reference.col2im(cols, x.shape, KH, KW, s, p)) <= 1e-10
    assert np.array_equal(cols, kept)  # the plane routine zeroes entries of a copy, not these


@pytest.mark.parametrize("geom", GEOMETRIES[:4])
def test_col2im_is_adjoint_of_im2col(geom):
    """<im2col(x), c> = <x, col2im(c)>: col2im is exactly the transpose of the linear map."""
    N, C, H, W, KH, KW, s, p = geom
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N, C, H, W))
    cols = cpu.im2col(x, KH, KW, s, p)
    c = rng.normal(size=cols.shape)
    lhs = np.sum(cols * c)
    rhs = np.sum(x * cpu.col2im(c, x.shape, KH, KW, s, p))
    assert abs(lhs - rhs) <= 1e-10 * (abs(lhs) + 1)


def test_kernels_float32_match_reference():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 7, 5)).astype(np.float32)
    cols = cpu.im2col(x, 3, 3, 2, 1)
    assert cols.dtype == np.float32
    np.testing.assert_array_equal(cols, reference.im2col(x, 3, 3, 2, 1))
    d = cpu.col2im(cols, x.shape, 3, 3, 2, 1)
    assert d.dtype == np.float32
    np.testing.assert_allclose(d, reference.col2im(cols, x.shape, 3, 3, 2, 1), rtol=1e-6)
    out, idx = cpu.maxpool2d_forward(x, 2, 2)
    assert out.dtype == np.float32 and idx.dtype == np.int32


@pytest.mark.parametrize("shape,k,s", [((2, 3, 5, 4), 2, 2), ((1, 2, 7, 7), 3, 2),
                                       ((2, 1, 6, 5), 2, 1), ((1, 1, 4, 4), 4, 4)])
def test_maxpool_numba_equal_reference(shape, k, s):
    rng = np.random.default_rng(3)
    # integer values: many ties, so this also checks that both pick the same (first) maximum
    x = rng.integers(0, 4, size=shape).astype(np.float64)
    out_r, idx_r = reference.maxpool2d_forward(x, k, s)
    out_c, idx_c = cpu.maxpool2d_forward(x, k, s)
    np.testing.assert_array_equal(out_c, out_r)
    np.testing.assert_array_equal(idx_c, idx_r)
    d = rng.normal(size=out_r.shape)
    assert rel_error(cpu.maxpool2d_backward(d, idx_c, shape, k, s),
                     reference.maxpool2d_backward(d, idx_r, shape, k, s)) <= 1e-10


def test_maxpool_first_maximum_wins_and_overlaps_add():
    x = np.array([[[[1.0, 3.0, 3.0],
                    [3.0, 0.0, 2.0],
                    [0.0, 1.0, 3.0]]]])
    for K in (reference, cpu):
        out, idx = K.maxpool2d_forward(x, 2, 1)
        np.testing.assert_array_equal(out[0, 0], [[3.0, 3.0], [3.0, 3.0]])
        # window (0,0): 3 at flat 1 comes before the 3 at flat 3; window (0,1): flat 1 before 2
        np.testing.assert_array_equal(idx[0, 0], [[1, 1], [3, 8]])
        dx = K.maxpool2d_backward(np.ones((1, 1, 2, 2)), idx, x.shape, 2, 1)
        np.testing.assert_array_equal(dx[0, 0], [[0, 2, 0], [1, 0, 0], [0, 0, 1]])


def _scipy_conv(x, W, b, s, p):
    """Independent reference: scipy's N-d correlation of the padded image, then subsampling."""
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    out = np.stack([np.stack([correlate(xp[n], W[f], mode="valid")[0] + b[f]
                              for f in range(W.shape[0])]) for n in range(x.shape[0])])
    return out[:, :, ::s, ::s]


@pytest.mark.parametrize("geom", GEOMETRIES)
def test_conv_forward_matches_scipy_correlation(geom):
    N, C, H, W, KH, KW, s, p = geom
    rng = np.random.default_rng(4)
    x = rng.normal(size=(N, C, H, W))
    Wt = rng.normal(size=(3, C, KH, KW))
    b = rng.normal(size=3)
    out, _ = conv2d_forward(x, Wt, b, s, p)
    ref = _scipy_conv(x, Wt, b, s, p)[:, :, :out.shape[2], :out.shape[3]]
    assert out.shape == (N, 3, reference.conv_out_size(H, KH, s, p),
                         reference.conv_out_size(W, KW, s, p))
    assert rel_error(out, ref) <= 1e-10


def _assert_conv_equals_reference(x, Wt, b, s, p, rng, tol):
    """conv2d_forward / conv2d_backward on the default (Numba) kernels equal the reference
    kernels' for one random dout: out, dx, dW, db (None where the other is None)."""
    out, cache = conv2d_forward(x, Wt, b, s, p)
    d = rng.normal(size=out.shape)
    grads = conv2d_backward(d, cache)
    with backend.use_cpu_kernels("reference"):
        out_r, cache_r = conv2d_forward(x, Wt, b, s, p)
        grads_r = conv2d_backward(d, cache_r)
    assert rel_error(out, out_r) <= tol
    for g, gr in zip(grads, grads_r, strict=True):
        assert (g is None) == (gr is None)
        if g is not None:
            assert rel_error(g, gr) <= tol


def test_conv_reference_kernels_equal_numba_path():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 2, 6, 5))
    _assert_conv_equals_reference(x, rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3), 2, 1,
                                  rng, 1e-10)
    with backend.use_cpu_kernels("reference"):
        mp_r = maxpool2d_forward(x, 2, 2)
        dmp_r = maxpool2d_backward(mp_r[0], mp_r[1])
    mp = maxpool2d_forward(x, 2, 2)
    np.testing.assert_array_equal(mp[0], mp_r[0])
    np.testing.assert_array_equal(maxpool2d_backward(mp[0], mp[1]), dmp_r)


def test_conv_chunking_gives_the_same_result(monkeypatch):
    """Many small chunks (with a remainder) equal one chunk: forward, dW, db, dx."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(7, 2, 5, 5))
    Wt = rng.normal(size=(3, 2, 3, 3))
    b = rng.normal(size=3)
    d = rng.normal(size=(7, 3, 5, 5))
    # the chunked im2col + GEMM path is the one of the kernel modules without a fused
    # convolution (reference here, numba.cuda on the GPU)
    with backend.use_cpu_kernels("reference"):
        out1, c1 = conv2d_forward(x, Wt, b, 1, 1)
        g1 = conv2d_backward(d, c1)
        per_image = 2 * 9 * 25 * 8
        monkeypatch.setattr(conv_mod, "CHUNK_BYTES", 3 * per_image)  # chunks of 3, 3, 1 images
        assert conv_mod._chunk(np, per_image) == 3
        out2, c2 = conv2d_forward(x, Wt, b, 1, 1)
        g2 = conv2d_backward(d, c2)
    assert rel_error(out1, out2) <= 1e-12
    for a, bb in zip(g1, g2, strict=True):
        assert rel_error(a, bb) <= 1e-12


def test_chunked_conv_backward_needs_no_per_image_dw_scratch():
    # issue 22: the chunked path (reference kernels here, the GPU's) summed dW over a
    # (chunk, C*KH*KW, F) batch of per-image products: 3.6 GB per layer for VGGSNN's 512C3 at
    # T*B = 384. One GEMM per chunk needs at most a copy of the chunk's dout and columns.
    import tracemalloc

    rng = np.random.default_rng(4)
    N, C, F, H = 16, 4, 256, 4                      # many filters, small images: F >> OH*OW
    x = rng.normal(size=(N, C, H, H))
    Wt = rng.normal(size=(F, C, 3, 3))
    d = rng.normal(size=(N, F, H, H))
    scratch = N * (C * 9) * F * 8                   # the old (chunk, K, F) float64 buffer
    with backend.use_cpu_kernels("reference"):
        _, c = conv2d_forward(x, Wt, None, 1, 1)
        conv2d_backward(d, c)                       # warm-up
        tracemalloc.start()
        _, dW, _ = conv2d_backward(d, c)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < scratch, (peak, scratch)
    cols = cpu.im2col(x, 3, 3, 1, 1)                # dW = sum_n dout[n] @ cols[n]^T
    ref = np.einsum("nfp,nkp->fk", d.reshape(N, F, -1), cols).reshape(Wt.shape)
    assert rel_error(dW, ref) < 1e-12


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("geom", GEOMETRIES)
def test_fused_conv_kernels_equal_reference_path(geom, threads):
    """kernels/cpu/ section 5b (im2col fused with the GEMMs, per image, one block of images per
    Numba thread, per-thread dW sums) equals the reference im2col + GEMM path: out, dx, dW, db,
    float64 and float32, a batch not divisible by the thread count, and dW-only / dx-only."""
    import numba

    N, C, H, W, KH, KW, s, p = geom
    N += 3
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N, C, H, W))
    Wt = rng.normal(size=(4, C, KH, KW))
    b = rng.normal(size=4)
    with backend.use_cpu_kernels("reference"):
        out_r, cache_r = conv2d_forward(x, Wt, b, s, p)
        d = rng.normal(size=out_r.shape)
        dx_r, dW_r, db_r = conv2d_backward(d, cache_r)
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
            out, cache = conv2d_forward(x.astype(dtype), Wt.astype(dtype), b.astype(dtype), s, p)
            dx, dW, db = conv2d_backward(d.astype(dtype), cache)
            assert out.dtype == dx.dtype == dW.dtype == dtype
            for got, ref in ((out, out_r), (dx, dx_r), (dW, dW_r), (db, db_r)):
                assert rel_error(got, ref) <= tol
        dW_only, db_only, dx_none = cpu.conv2d_backward_images(d, x, Wt, x.shape, s, p, True,
                                                               False)
        dW_none, db_none, dx_only = cpu.conv2d_backward_images(d, None, Wt, x.shape, s, p,
                                                               False, True)
        assert dx_none is None and dW_none is None and db_none is None
        assert rel_error(dW_only, dW_r) <= 1e-12 and rel_error(dx_only, dx_r) <= 1e-12
        assert rel_error(db_only, db_r) <= 1e-12
    finally:
        numba.set_num_threads(before)


def test_fused_conv_static_input_and_time_major():
    """A time-broadcast (direct-encoding) input and a (T, B, ...) input through the fused path
    equal the reference path, including dW from sum_t dout[t] and the per-step dx."""
    rng = np.random.default_rng(8)
    x0 = rng.normal(size=(3, 2, 6, 6))
    Wt = rng.normal(size=(5, 2, 3, 3))
    xs = [np.broadcast_to(x0, (4, *x0.shape)), rng.normal(size=(4, 3, 2, 6, 6))]
    for x in xs:
        _assert_conv_equals_reference(x, Wt, None, 1, 1, rng, 1e-12)


@pytest.mark.parametrize("threads", [1, 2])
def test_threaded_matmul_equals_numpy(threads):
    """kernels.cpu.matmul (functional/linear.py's GEMM on the CPU) equals ``a @ b`` for the
    three layouts of a fully connected layer (x @ W^T, dout @ W, dout^T @ x), with the rows split
    (wide outputs), the inner dimension split (a weight gradient with 10 outputs), a product too
    small to split, and an odd row count."""
    import numba

    rng = np.random.default_rng(9)
    x = rng.normal(size=(67, 784))
    W = rng.normal(size=(800, 784))
    W10 = rng.normal(size=(10, 800))
    g = rng.normal(size=(67, 800))
    o = rng.normal(size=(5120, 800))
    g10 = rng.normal(size=(5120, 10))
    cases = [(x, W.T), (g, W), (g.T, x), (o, W10.T), (g10.T, o), (g10, W10), (x[:3], W.T[:, :5])]
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        for a, b in cases:
            for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
                a_, b_ = a.astype(dtype), b.astype(dtype)
                if a.flags.f_contiguous and not a.flags.c_contiguous:  # keep the transposed layout
                    a_ = np.ascontiguousarray(a.T.astype(dtype)).T
                if b.flags.f_contiguous and not b.flags.c_contiguous:
                    b_ = np.ascontiguousarray(b.T.astype(dtype)).T
                got = cpu.matmul(a_, b_)
                assert got.shape == (a.shape[0], b.shape[1]) and got.dtype == dtype
                assert rel_error(got, a_ @ b_) <= tol
    finally:
        numba.set_num_threads(before)

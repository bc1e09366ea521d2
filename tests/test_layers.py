"""Layers of pysnn_ref.functional other than the neurons: finite-difference gradient checks,
the static-input fast path, batch-norm statistics, pooling values, float32 runs, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from pysnn_ref import backend
from pysnn_ref.functional.batchnorm import batchnorm_backward, batchnorm_forward
from pysnn_ref.functional.conv import Conv2dCache, conv2d_backward, conv2d_forward
from pysnn_ref.functional.linear import LinearCache, linear_backward, linear_forward
from pysnn_ref.functional.pool import (
    avgpool2d_backward,
    avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
)
from pysnn_ref.functional.shape import add_backward, add_forward, flatten_backward, flatten_forward
from pysnn_ref.gradcheck import rel_error
from pysnn_ref.gradcheck.layers import layer_gradcheck_cases

# --------------------------------------------------------------------------------------------
# Finite differences (float64) for every backward
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gradcheck_rows():
    return layer_gradcheck_cases()


def test_every_layer_backward_matches_finite_differences(gradcheck_rows):
    bad = [r for r in gradcheck_rows if not r[2] <= 1e-6]
    assert not bad, f"rel. error > 1e-6: {bad}"


def test_gradcheck_covers_every_layer_and_parameter(gradcheck_rows):
    names = {(case.split()[0], p) for case, p, _ in gradcheck_rows}
    for layer, params in [("linear", "xWb"), ("conv2d", "xWb"), ("avgpool", "x"),
                          ("maxpool", "x"), ("residual", "ab")]:
        for p in params:
            assert (layer, p) in names, (layer, p)
    for layer in ("batchnorm", "tdBN"):
        for p in ("x", "gamma", "beta"):
            assert (layer, p) in names
    cases = {case for case, _, _ in gradcheck_rows}
    assert any("eval" in c for c in cases) and any("train" in c for c in cases)
    assert any("static" in c and "conv2d" in c for c in cases)
    assert any("stride 2" in c for c in cases) and any("time-major" in c for c in cases)


# --------------------------------------------------------------------------------------------
# Static-input (time-broadcast) fast path == materialised input
# --------------------------------------------------------------------------------------------

def _static_pair(layer: str, dtype=np.float64):
    rng = np.random.default_rng(0)
    T = 4
    if layer == "linear":
        x0 = rng.normal(size=(3, 6)).astype(dtype)
        W = rng.normal(size=(5, 6)).astype(dtype)
        b = rng.normal(size=5).astype(dtype)
        return T, x0, W, b, linear_forward, linear_backward, {}
    x0 = rng.normal(size=(2, 3, 6, 6)).astype(dtype)
    W = rng.normal(size=(4, 3, 3, 3)).astype(dtype)
    b = rng.normal(size=4).astype(dtype)
    return T, x0, W, b, conv2d_forward, conv2d_backward, {"stride": 2, "padding": 1}


@pytest.mark.parametrize("layer", ["linear", "conv2d"])
def test_static_input_fast_path_equals_materialised_input(layer):
    T, x0, W, b, fwd, bwd, kw = _static_pair(layer)
    xs = np.broadcast_to(x0, (T, *x0.shape))
    xm = np.ascontiguousarray(xs)
    assert xs.strides[0] == 0 and xm.strides[0] != 0
    out_s, cache_s = fwd(xs, W, b, **kw)
    out_m, cache_m = fwd(xm, W, b, **kw)
    assert out_s.shape == out_m.shape
    assert out_s.strides[0] == 0 and not out_s.flags.writeable  # one GEMM, read-only view
    assert rel_error(out_s, out_m) <= 1e-12
    d = np.random.default_rng(1).normal(size=out_m.shape)
    dx_s, dW_s, db_s = bwd(d, cache_s)
    dx_m, dW_m, db_m = bwd(d, cache_m)
    assert rel_error(dW_s, dW_m) <= 1e-12
    assert rel_error(db_s, db_m) <= 1e-12
    assert rel_error(dx_s, dx_m) <= 1e-12  # dx stays the exact per-step gradient
    dx_n, dW_n, _ = bwd(d, cache_s, need_dx=False)
    assert dx_n is None and rel_error(dW_n, dW_m) <= 1e-12


def test_static_fast_path_float32():
    T, x0, W, b, fwd, bwd, kw = _static_pair("conv2d", np.float32)
    xs = np.broadcast_to(x0, (T, *x0.shape))
    out, cache = fwd(xs, W, b, **kw)
    dx, dW, db = bwd(np.ones(out.shape, np.float32), cache)
    assert out.dtype == dW.dtype == db.dtype == dx.dtype == np.float32
    out_m, cache_m = fwd(np.ascontiguousarray(xs), W, b, **kw)
    np.testing.assert_allclose(out, out_m, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dW, bwd(np.ones(out.shape, np.float32), cache_m)[1], rtol=1e-4)


# --------------------------------------------------------------------------------------------
# Linear / conv details
# --------------------------------------------------------------------------------------------

def test_linear_forward_values_and_optional_outputs():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 4))
    W = rng.normal(size=(5, 4))
    out, cache = linear_forward(x, W, None)
    np.testing.assert_allclose(out, np.einsum("tbi,ji->tbj", x, W), rtol=1e-12)
    assert isinstance(cache, LinearCache) and cache.has_bias is False
    dx, dW, db = linear_backward(np.ones_like(out), cache, need_dx=False)
    assert dx is None and db is None and dW.shape == W.shape


def test_linear_backward_accepts_a_user_built_cache():
    """The flow methods call backward with a time-summed input in a cache they build."""
    rng = np.random.default_rng(3)
    xsum = rng.normal(size=(3, 4))
    W = rng.normal(size=(2, 4))
    G = rng.normal(size=(3, 2))
    dx, dW, db = linear_backward(G, LinearCache(xsum, W, True))
    np.testing.assert_allclose(dW, G.T @ xsum)
    np.testing.assert_allclose(dx, G @ W)
    np.testing.assert_allclose(db, G.sum(0))


def test_conv_user_built_cache_and_shapes():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 3, 2, 5, 5))  # (T, B, C, H, W)
    W = rng.normal(size=(4, 2, 3, 3))
    out, cache = conv2d_forward(x, W, None, stride=2, padding=1)
    assert out.shape == (2, 3, 4, 3, 3) and isinstance(cache, Conv2dCache)
    dx, dW, db = conv2d_backward(np.ones_like(out), cache)
    assert dx.shape == x.shape and dW.shape == W.shape and db is None
    xs = x.sum(axis=0)  # flow-mode cache: (B, C, H, W) time sum
    G = rng.normal(size=(3, 4, 3, 3))
    _, dW2, _ = conv2d_backward(G, Conv2dCache(xs, W, False, 2, 1))
    _, dW3, _ = conv2d_backward(np.broadcast_to(G, (2, *G.shape)), cache)
    assert rel_error(dW2, dW3) <= 1e-12  # sum_t dout^T x[t] = G^T sum_t x[t]


@pytest.mark.parametrize("layer", ["linear", "conv2d", "bn", "avgpool", "maxpool"])
def test_float32_runs_close_to_float64(layer):
    rng = np.random.default_rng(5)
    if layer == "linear":
        arrs = [rng.normal(size=(2, 3, 8)), rng.normal(size=(4, 8)), rng.normal(size=4)]
        f = lambda a: linear_forward(*a)
        b = linear_backward
    elif layer == "conv2d":
        arrs = [rng.normal(size=(2, 3, 2, 6, 6)), rng.normal(size=(4, 2, 3, 3)),
                rng.normal(size=4)]
        f = lambda a: conv2d_forward(*a, stride=1, padding=1)
        b = conv2d_backward
    elif layer == "bn":
        arrs = [rng.normal(size=(2, 3, 4, 5)), rng.normal(size=4), rng.normal(size=4)]
        f = lambda a: batchnorm_forward(*a, None, None, training=True, scale=0.5)
        b = batchnorm_backward
    elif layer == "avgpool":
        arrs = [rng.normal(size=(2, 3, 2, 6, 6))]
        f = lambda a: avgpool2d_forward(a[0], 3, 2)
        b = lambda d, c: (avgpool2d_backward(d, c),)
    else:
        arrs = [rng.normal(size=(2, 3, 2, 6, 6))]
        f = lambda a: maxpool2d_forward(a[0], 2)
        b = lambda d, c: (maxpool2d_backward(d, c),)
    out64, c64 = f(arrs)
    a32 = [a.astype(np.float32) for a in arrs]
    out32, c32 = f(a32)
    d = rng.normal(size=out64.shape)
    g64 = b(d, c64)
    g32 = b(d.astype(np.float32), c32)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-4)
    for x32, x64 in zip(g32, g64, strict=True):
        if x64 is not None:
            assert x32.dtype == np.float32
            np.testing.assert_allclose(x32, x64, rtol=1e-3, atol=1e-3)


# --------------------------------------------------------------------------------------------
# Pooling values
# --------------------------------------------------------------------------------------------

def test_avgpool_values_crop_and_backward():
    x = np.arange(2 * 5 * 5, dtype=np.float64).reshape(1, 2, 5, 5)
    out, cache = avgpool2d_forward(x, 2)
    assert out.shape == (1, 2, 2, 2)  # the fifth row/column is dropped (floor mode)
    np.testing.assert_allclose(out[0, 0], [[3.0, 5.0], [13.0, 15.0]])
    dx = avgpool2d_backward(np.ones_like(out), cache)
    assert dx.shape == x.shape
    np.testing.assert_allclose(dx[0, 0, :4, :4], 0.25)
    assert np.all(dx[0, :, 4, :] == 0) and np.all(dx[0, :, :, 4] == 0)
    # overlapping windows: the centre pixel of a 3x3 input belongs to all four 2x2 windows
    out, cache = avgpool2d_forward(np.ones((1, 1, 3, 3)), 2, stride=1)
    np.testing.assert_allclose(out, 1.0)
    np.testing.assert_allclose(avgpool2d_backward(np.ones((1, 1, 2, 2)), cache)[0, 0],
                               [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])


def test_maxpool_time_major_folds_time_into_batch():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(3, 2, 2, 4, 4))
    out, cache = maxpool2d_forward(x, 2)
    ref = x.reshape(3, 2, 2, 2, 2, 2, 2).max(axis=(4, 6))
    np.testing.assert_array_equal(out, ref)
    assert cache.idx.dtype == np.int32
    dx = maxpool2d_backward(np.ones_like(out), cache)
    assert dx.shape == x.shape and dx.sum() == out.size
    np.testing.assert_array_equal(x[dx == 1].reshape(-1).size, out.size)


# --------------------------------------------------------------------------------------------
# Batch norm / tdBN statistics
# --------------------------------------------------------------------------------------------

def test_batchnorm_training_statistics_and_running_update():
    rng = np.random.default_rng(7)
    x = rng.normal(2.0, 3.0, size=(4, 5, 3, 2, 2))  # (T, B, C, H, W)
    C = 3
    gamma, beta = np.ones(C), np.zeros(C)
    rm, rv = np.zeros(C), np.ones(C)
    y, _ = batchnorm_forward(x, gamma, beta, rm, rv, training=True, momentum=0.1)
    xc = np.moveaxis(x, 2, 0).reshape(C, -1)  # per channel: over T x B x H x W
    np.testing.assert_allclose(np.moveaxis(y, 2, 0).reshape(C, -1).mean(1), 0, atol=1e-12)
    np.testing.assert_allclose(np.moveaxis(y, 2, 0).reshape(C, -1).var(1),
                               xc.var(1) / (xc.var(1) + 1e-5), rtol=1e-10)
    np.testing.assert_allclose(rm, 0.1 * xc.mean(1), rtol=1e-12)
    np.testing.assert_allclose(rv, 0.9 + 0.1 * xc.var(1, ddof=1), rtol=1e-12)  # unbiased


def test_tdbn_scale_and_eval_mode():
    rng = np.random.default_rng(8)
    x = rng.normal(1.0, 2.0, size=(6, 4))  # (N, C)
    gamma, beta = rng.normal(size=4), rng.normal(size=4)
    rm, rv = rng.normal(size=4), rng.uniform(0.5, 2, 4)
    y1, _ = batchnorm_forward(x, gamma, beta, None, None, training=True, time_major=False)
    y2, _ = batchnorm_forward(x, gamma, beta, None, None, training=True, time_major=False,
                              scale=0.35)
    np.testing.assert_allclose(y2 - beta, 0.35 * (y1 - beta), rtol=1e-12)  # x_hat scaled
    ye, cache = batchnorm_forward(x, gamma, beta, rm, rv, training=False, time_major=False,
                                  scale=0.35)
    np.testing.assert_allclose(ye, gamma * 0.35 * (x - rm) / np.sqrt(rv + 1e-5) + beta)
    rm0 = rm.copy()
    batchnorm_forward(x, gamma, beta, rm, rv, training=False, time_major=False)
    np.testing.assert_array_equal(rm, rm0)  # eval mode leaves the running stats alone
    dx, dg, db = batchnorm_backward(np.ones_like(x), cache)
    np.testing.assert_allclose(dx, np.broadcast_to(gamma * 0.35 / np.sqrt(rv + 1e-5), x.shape))


# --------------------------------------------------------------------------------------------
# Shape layers
# --------------------------------------------------------------------------------------------

def test_flatten_and_add():
    x = np.arange(2 * 3 * 2 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2, 2)
    y, c = flatten_forward(x)
    assert y.shape == (2, 3, 8)
    np.testing.assert_array_equal(flatten_backward(y, c), x)
    y1, c1 = flatten_forward(x[0], start_dim=1)
    assert y1.shape == (3, 8)
    a, b = np.ones((2, 3)), np.full((2, 3), 2.0)
    s, ca = add_forward(a, b)
    np.testing.assert_array_equal(s, 3.0)
    da, db = add_backward(np.full((2, 3), 5.0), ca)
    np.testing.assert_array_equal(da, 5.0)
    np.testing.assert_array_equal(db, 5.0)


# --------------------------------------------------------------------------------------------
# Bad input -> ValueError naming the parameter
# --------------------------------------------------------------------------------------------

X4 = np.zeros((2, 3, 5, 5))
W4 = np.zeros((4, 3, 3, 3))


@pytest.mark.parametrize("call,param", [
    (lambda: linear_forward(np.zeros((2, 3)), np.zeros((4, 5)), None), "W"),
    (lambda: linear_forward(np.zeros((2, 3), np.int64), np.zeros((4, 3)), None), "x"),
    (lambda: linear_forward(np.zeros((2, 3)), np.zeros((4, 3), np.float32), None), "W"),
    (lambda: linear_forward(np.zeros((2, 3)), np.zeros((4, 3)), np.zeros(3)), "b"),
    (lambda: linear_forward([[1.0]], np.zeros((1, 1)), None), "x"),
    (lambda: linear_backward(np.zeros((2, 5)), LinearCache(np.zeros((2, 3)), np.zeros((4, 3)),
                                                           True)), "dout"),
    (lambda: conv2d_forward(np.zeros((3, 5, 5)), W4, None), "x"),
    (lambda: conv2d_forward(np.zeros((2, 2, 5, 5)), W4, None), "W"),
    (lambda: conv2d_forward(X4, np.zeros((4, 3, 3)), None), "W"),
    (lambda: conv2d_forward(X4, W4, None, stride=0), "stride"),
    (lambda: conv2d_forward(X4, W4, None, stride=1.5), "stride"),
    (lambda: conv2d_forward(X4, W4, None, padding=-1), "padding"),
    (lambda: conv2d_forward(X4, np.zeros((4, 3, 7, 7)), None), "W"),
    (lambda: conv2d_forward(X4, W4, np.zeros(3)), "b"),
    (lambda: conv2d_backward(np.zeros((2, 4, 4, 4)), Conv2dCache(X4, W4, False, 1, 1)), "dout"),
    (lambda: avgpool2d_forward(X4, 0), "kernel_size"),
    (lambda: avgpool2d_forward(X4, 6), "kernel_size"),
    (lambda: avgpool2d_forward(X4, 2, stride=0), "stride"),
    (lambda: maxpool2d_forward(np.zeros((5, 5)), 2), "x"),
    (lambda: maxpool2d_backward(np.zeros((2, 3, 3, 3)), maxpool2d_forward(X4, 2)[1]), "dout"),
    (lambda: batchnorm_forward(X4, np.ones(3), np.zeros(3), None, None, training=True), "gamma"),
    (lambda: batchnorm_forward(X4, np.ones(3), np.zeros(3), None, None, training=False,
                               time_major=False), "running_mean"),
    (lambda: batchnorm_forward(X4, np.ones(3), np.zeros(3), np.zeros(2), np.ones(3),
                               training=True, time_major=False), "running_mean"),
    (lambda: batchnorm_forward(X4, np.ones(3), np.zeros(3), None, None, training=True,
                               time_major=False, momentum=1.5), "momentum"),
    (lambda: batchnorm_forward(X4, np.ones(3), np.zeros(3), None, None, training=True,
                               time_major=False, eps=0), "eps"),
    (lambda: batchnorm_forward(X4, np.ones(3), np.zeros(3), None, None, training=True,
                               time_major=False, scale=-1), "scale"),
    (lambda: batchnorm_forward(np.zeros((1, 3)), np.ones(3), np.zeros(3), None, None,
                               training=True, time_major=False), "x"),
    (lambda: flatten_forward(X4, start_dim=4), "start_dim"),
    (lambda: add_forward(np.zeros((2, 3)), np.zeros((3, 2))), "b"),
    (lambda: add_backward(np.zeros((3, 2)), add_forward(np.zeros((2, 3)),
                                                        np.zeros((2, 3)))[1]), "dout"),
])
def test_bad_input_raises_value_error_naming_the_parameter(call, param):
    with pytest.raises(ValueError, match=rf"^{param}\b"):
        call()


@pytest.mark.parametrize("k,s", [(2, None), (3, 2), (2, 1), (3, 3)])
def test_avgpool_numba_kernel_equals_array_code(k, s):
    """The Numba average pooling (CPU default) equals the NumPy slice sums bit for bit: the flat
    plane routine (stride = k, here with dropped trailing rows/columns) and the generic loop."""
    rng = np.random.default_rng(3)
    x = rng.random((3, 2, 4, 11, 9)).astype(np.float32)
    out, cache = avgpool2d_forward(x, k, s)
    d = rng.standard_normal(out.shape).astype(np.float32)
    dx = avgpool2d_backward(d, cache)
    with backend.use_cpu_kernels("reference"):
        out_r, cache_r = avgpool2d_forward(x, k, s)
        dx_r = avgpool2d_backward(d, cache_r)
    assert np.array_equal(out, out_r) and np.array_equal(dx, dx_r)

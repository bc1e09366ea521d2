"""Fused fast kernels (issue 14) equal to the plain composition of the reference kernels.

LIF + average pooling (kernels/cpu/ section 2b): forward = reference LIF then reference
pooling, backward = reference pooling backward then reference LIF backward; and the layer
wiring (Sequential links a LIF to the AvgPool2d above it) gives the unfused network's outputs
and gradients.  Finite differences through the fused path: gradcheck's network case."""

from __future__ import annotations

import numpy as np
import pytest

from pysnn_ref import backend, nn
from pysnn_ref.functional.pool import avgpool2d_backward, avgpool2d_forward
from pysnn_ref.gradcheck.finite_diff import rel_error
from pysnn_ref.kernels import cpu, reference

# (T, B, C, H, W, k): exact fit, dropped trailing rows/columns, k = 3, planes larger than BLOCK
SHAPES = [(4, 2, 3, 6, 6, 2), (3, 2, 2, 5, 7, 2), (2, 1, 3, 7, 6, 3), (3, 1, 1, 48, 50, 2)]


def _reference_lif_pool(I, dp, lam, soft, smooth, detach, kind, a, k):
    T = I.shape[0]
    o, u = reference.lif_forward(I.reshape(T, -1), lam, 1.0, soft, smooth, kind, a)
    with backend.use_cpu_kernels("reference"):
        pooled, cache = avgpool2d_forward(o.reshape(I.shape), k)
        do = avgpool2d_backward(dp, cache)
    dI = reference.lif_backward(do.reshape(T, -1), u, lam, 1.0, soft, smooth, detach, kind, a)
    return pooled, u.reshape(I.shape), dI.reshape(I.shape), o.sum()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("soft,smooth,detach,kind", [(False, False, False, 0),
                                                     (True, False, True, 1),
                                                     (False, True, False, 2),
                                                     (True, True, False, 0)])
def test_lif_avgpool_kernel_equals_reference_composition(shape, soft, smooth, detach, kind):
    T, B, C, H, W, k = shape
    rng = np.random.default_rng(sum(shape) + kind)
    I = rng.normal(0.8, 1.0, (T, B, C, H, W))
    lam, a = 0.7, 0.9
    dp = rng.normal(size=(T, B, C, H // k, W // k))
    pooled_r, u_r, dI_r, n_r = _reference_lif_pool(I, dp, lam, soft, smooth, detach, kind, a, k)
    pooled, u, n = cpu.lif_avgpool_forward(I.reshape(T, -1), lam, 1.0, soft, smooth, kind, a,
                                           H, W, k)
    assert rel_error(pooled.reshape(pooled_r.shape), pooled_r) <= 1e-12
    assert rel_error(u.reshape(I.shape), u_r) <= 1e-12
    assert abs(n - n_r) <= 1e-9 * max(1.0, n_r)
    assert 0 < n_r < I.size  # the test inputs both fire and stay silent
    dI = cpu.lif_avgpool_backward(dp.reshape(T, -1), u, lam, 1.0, soft, smooth, detach, kind, a,
                                  H, W, k)
    assert rel_error(dI.reshape(I.shape), dI_r) <= 1e-12


def test_lif_avgpool_static_input_float32():
    """A time-broadcast current (direct encoding) is read as one row; float32 bit-equal."""
    rng = np.random.default_rng(5)
    T, B, C, H, W = 5, 2, 3, 8, 8
    I0 = rng.normal(0.8, 1.0, (B, C, H, W)).astype(np.float32)
    I = np.broadcast_to(I0, (T, *I0.shape))
    dp = rng.normal(size=(T, B, C, 4, 4)).astype(np.float32)
    pooled_r, u_r, dI_r, _ = _reference_lif_pool(np.ascontiguousarray(I), dp, 0.5, False,
                                                 False, False, 0, 1.0, 2)
    pooled, u, _ = cpu.lif_avgpool_forward(I.reshape(T, -1), 0.5, 1.0, False, False, 0, 1.0,
                                           H, W, 2)
    assert pooled.dtype == np.float32
    np.testing.assert_array_equal(pooled.reshape(pooled_r.shape), pooled_r)
    dI = cpu.lif_avgpool_backward(dp.reshape(T, -1), u, 0.5, 1.0, False, False, False, 0, 1.0,
                                  H, W, 2)
    np.testing.assert_array_equal(dI.reshape(I.shape), dI_r)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("soft,smooth,detach,kind", [(False, False, False, 0),
                                                     (True, False, True, 1),
                                                     (False, True, False, 2),
                                                     (True, True, False, 3),
                                                     (False, False, True, 4)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lif_avgpool_static_input_recomputes_the_membrane(shape, soft, smooth, detach, kind,
                                                          dtype):
    """A time-broadcast current is not stored as T membrane rows: the forward returns its one
    row, and the backward (per step and summed over T) recomputes u from it -- bit-equal to the
    run on the same current materialised T times, where u is stored."""
    T, B, C, H, W, k = shape
    rng = np.random.default_rng(sum(shape) + 10 * kind)
    I0 = rng.normal(0.8, 1.0, (B, C, H, W)).astype(dtype)
    I = np.broadcast_to(I0, (T, *I0.shape)).reshape(T, -1)
    dp = rng.normal(size=(T, B * C * (H // k) * (W // k))).astype(dtype)
    args = (0.7, 1.0, soft, smooth, kind, 0.9)
    pooled_s, u_s, n_s = cpu.lif_avgpool_forward(np.ascontiguousarray(I), *args, H, W, k)
    pooled, u, n = cpu.lif_avgpool_forward(I, *args, H, W, k)
    assert u.shape == (1, I.shape[1]) and u_s.shape == I.shape
    np.testing.assert_array_equal(u[0], I0.reshape(-1))
    np.testing.assert_array_equal(pooled, pooled_s)
    assert n == n_s and 0 < n < I.size
    bargs = (0.7, 1.0, soft, smooth, detach, kind, 0.9, H, W, k)
    dI = cpu.lif_avgpool_backward(dp, u, *bargs)
    np.testing.assert_array_equal(dI, cpu.lif_avgpool_backward(dp, u_s, *bargs))
    dI_sum = cpu.lif_avgpool_backward_time_sum(dp, u, *bargs)
    np.testing.assert_array_equal(dI_sum, cpu.lif_avgpool_backward_time_sum(dp, u_s, *bargs))


def test_static_input_layer_keeps_one_step_of_current():
    """In a network, the fused LIF above a static-input conv keeps (1, B, C, H, W) in its cache,
    not the (T, ...) membrane, and the shape check of the backward still applies."""
    from pysnn_ref.functional.neuron import lif_avgpool_backward

    net = _net(np.random.default_rng(3), 2)
    x = np.broadcast_to(np.random.default_rng(4).normal(0.8, 1.0, (2, 2, 7, 7)), (6, 2, 2, 7, 7))
    net.forward(x)
    cache = net.layers[1]._cache
    assert cache.u.shape == (1, 2, 3, 7, 7) and cache.T == 6
    with pytest.raises(ValueError, match=r"dp must have shape \(6, 2, 3, 3, 3\)"):
        lif_avgpool_backward(np.zeros((5, 2, 3, 3, 3)), cache)


def _net(rng, k, stride=None):
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, rng=rng, dtype=np.float64),
                         nn.LIF(lam=0.6, v_th=1.0), nn.AvgPool2d(k, stride), nn.Flatten(),
                         nn.Linear(3 * (7 // k) ** 2 if stride is None else 3 * 9, 4, rng=rng,
                                   dtype=np.float64))


@pytest.mark.parametrize("k,stride", [(2, None), (3, None), (3, 2)])
def test_sequential_fused_equals_unfused(k, stride):
    """The layer wiring: outputs, firing rate and all gradients equal the reference kernels'
    unfused run (stride != k is not fused and must still be right)."""
    rng = np.random.default_rng(7)
    x = rng.normal(0.8, 1.0, (4, 2, 2, 7, 7))
    dy = rng.normal(size=(4, 2, 4))
    results = []
    for kernels in ("numba", "reference"):
        net = _net(np.random.default_rng(3), k, stride)
        with backend.use_cpu_kernels(kernels):
            y = net.forward(x)
            dx = net.backward(dy)
        results.append((y, dx, net.layers[0].W.grad, net.layers[1].firing_rate))
        assert net.layers[1]._cache is None
    (y, dx, gW, rate), (y_r, dx_r, gW_r, rate_r) = results
    assert rel_error(y, y_r) <= 1e-12 and rel_error(dx, dx_r) <= 1e-12
    assert rel_error(gW, gW_r) <= 1e-12 and abs(rate - rate_r) <= 1e-12 and rate > 0


def test_hooked_lif_is_not_fused():
    """A LIF with a forward hook (nn.SpikeMonitor, torch_ref.compare_spikes) is left out of the
    fusion plan, so the hook sees its spikes; without the hook the pair is fused; the outputs
    are equal either way."""
    net = _net(np.random.default_rng(1), 2)
    x = np.random.default_rng(2).normal(0.8, 1.0, (3, 2, 2, 7, 7))
    assert net.fusion_plan() == [1]
    y_fused = net.forward(x)
    with nn.SpikeMonitor(net) as mon:
        assert net.fusion_plan() == []
        y = net.forward(x)
    assert net.fusion_plan() == [1]
    seen = mon.spikes
    assert len(seen) == 1 and seen[0].shape == (3, 2, 3, 7, 7)
    assert set(np.unique(seen[0])) <= {0.0, 1.0}
    assert np.array_equal(y, y_fused)


def test_malloc_setting_is_on_unless_default():
    """tune_malloc runs at the first use of the CPU kernels (glibc) when PYSNN_MALLOC is unset or
    "bounded", and not with PYSNN_MALLOC=default; the mmap threshold stays at glibc's own
    adaptive maximum (32 MiB), below the trim threshold."""
    import os
    import platform
    import subprocess
    import sys

    code = ("from pysnn_ref import backend; from pysnn_ref.kernels import cpu; "
            "assert cpu.malloc_tuned() is None; backend.get_backend('cpu'); "
            "print(cpu.malloc_tuned())")
    out = {}
    for value in ("bounded", "default", None):
        env = {k: v for k, v in os.environ.items() if k != "PYSNN_MALLOC"}
        if value is not None:
            env["PYSNN_MALLOC"] = value
        out[value] = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                    text=True, check=True).stdout.strip()
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert out["default"] == "False"
    assert out["bounded"] == out[None] == str(glibc)
    assert cpu.MMAP_THRESHOLD_BYTES == 32 << 20 < cpu.TRIM_THRESHOLD_BYTES


# --------------------------------------------------------------------------------------------
# Time-summed BPTT backward (a weight layer with a static input below a LIF)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("soft,smooth,detach,kind", [(False, False, False, 0),
                                                     (True, False, True, 1),
                                                     (False, True, False, 2),
                                                     (True, False, False, 3),
                                                     (False, False, True, 4)])
def test_lif_backward_time_sum_kernels_equal_reference_sum(soft, smooth, detach, kind):
    """kernels/cpu/'s ``*_time_sum`` kernels = the reference dI summed over the steps, for
    every surrogate (each has its own vectorised branch), with blocks wider than BLOCK."""
    rng = np.random.default_rng(kind)
    T, lam, a = 6, 0.7, 0.9
    I = rng.normal(0.8, 1.0, (T, cpu.BLOCK + 300))
    do = rng.normal(size=I.shape)
    _, u = reference.lif_forward(I, lam, 1.0, soft, smooth, kind, a)
    dI_r = reference.lif_backward(do, u, lam, 1.0, soft, smooth, detach, kind, a)
    dsum = cpu.lif_backward_time_sum(do, u, lam, 1.0, soft, smooth, detach, kind, a)
    assert dsum.shape == (I.shape[1],) and rel_error(dsum, dI_r.sum(axis=0)) <= 1e-12
    T, B, C, H, W, k = SHAPES[-1]
    I = rng.normal(0.8, 1.0, (T, B, C, H, W))
    dp = rng.normal(size=(T, B, C, H // k, W // k))
    *_, dI_r, _ = _reference_lif_pool(I, dp, lam, soft, smooth, detach, kind, a, k)
    _, u, _ = cpu.lif_avgpool_forward(I.reshape(T, -1), lam, 1.0, soft, smooth, kind, a, H, W, k)
    dsum = cpu.lif_avgpool_backward_time_sum(dp.reshape(T, -1), u, lam, 1.0, soft, smooth,
                                             detach, kind, a, H, W, k)
    assert rel_error(dsum.reshape(I.shape[1:]), dI_r.sum(axis=0)) <= 1e-12


@pytest.mark.parametrize("soft,smooth,detach,kind", [(False, False, False, 0),
                                                     (True, False, True, 1),
                                                     (False, True, False, 2),
                                                     (True, True, False, 3),
                                                     (False, False, True, 4)])
def test_lif_static_current_recomputed_membrane_equals_reference(soft, smooth, detach, kind):
    """The plain LIF kernels with a time-broadcast current: the forward stores only its row,
    and the backward (per step and summed) recomputes u -- equal to the reference's run on the
    materialised current, for every surrogate."""
    rng = np.random.default_rng(20 + kind)
    T, lam, a = 6, 0.7, 0.9
    I0 = rng.normal(0.8, 1.0, cpu.BLOCK + 300)
    I = np.broadcast_to(I0, (T, I0.size))
    do = rng.normal(size=I.shape)
    o_r, u_r = reference.lif_forward(np.ascontiguousarray(I), lam, 1.0, soft, smooth, kind, a)
    dI_r = reference.lif_backward(do, u_r, lam, 1.0, soft, smooth, detach, kind, a)
    o, u = cpu.lif_forward(I, lam, 1.0, soft, smooth, kind, a)
    assert u.shape == (1, I0.size) and rel_error(o, o_r) <= 1e-12
    args = (lam, 1.0, soft, smooth, detach, kind, a)
    assert rel_error(cpu.lif_backward(do, u, *args), dI_r) <= 1e-12
    assert rel_error(cpu.lif_backward_time_sum(do, u, *args), dI_r.sum(axis=0)) <= 1e-12


def _count_time_sums(monkeypatch):
    calls = []

    def counting(name):
        kernel = getattr(cpu, name)

        def counted(*args):
            calls.append(name)
            return kernel(*args)
        return counted

    for name in ("lif_backward_time_sum", "lif_avgpool_backward_time_sum"):
        monkeypatch.setattr(cpu, name, counting(name))
    return calls


@pytest.mark.parametrize("model", ["conv", "mlp"])
def test_static_input_network_takes_the_time_sum(model, monkeypatch):
    """Direct encoding, no input gradient: the LIF above the first weight layer hands down
    sum_t dI (the fused LIF + pooling kernel for the conv net, the plain one for the MLP) and
    every gradient equals the reference kernels' per-step run; with the input gradient asked
    for, the per-step path runs and gives dx."""
    rng = np.random.default_rng(4)
    x = np.broadcast_to(rng.normal(0.8, 1.0, (2, 2, 7, 7)), (4, 2, 2, 7, 7))
    dy = rng.normal(size=(4, 2, 4))

    def build():
        r = np.random.default_rng(3)
        if model == "conv":
            return _net(r, 2)
        return nn.Sequential(nn.Flatten(), nn.Linear(98, 6, rng=r, dtype=np.float64),
                             nn.LIF(lam=0.6), nn.Linear(6, 4, rng=r, dtype=np.float64))

    calls = _count_time_sums(monkeypatch)
    grads = {}
    for kernels, need_dx in (("numba", False), ("reference", False), ("numba", True)):
        net = build()
        with backend.use_cpu_kernels(kernels):
            net.forward(x)
            dx = net.backward(dy, need_dx=need_dx)
        assert (dx is None) == (not need_dx)
        grads[kernels, need_dx] = [p.grad for p in net.parameters()]
        expected = 1 if (kernels, need_dx) == ("numba", False) else 0
        assert len(calls) == expected, (kernels, need_dx, calls)
        calls.clear()
        assert all(layer._cache is None for layer in net.layers
                   if isinstance(layer, (nn.LIF, nn.Linear, nn.Conv2d)))
    for other in (("reference", False), ("numba", True)):
        for g, g_r in zip(grads["numba", False], grads[other], strict=True):
            assert rel_error(g, g_r) <= 1e-12


def test_time_sum_backward_needs_a_static_input():
    from pysnn_ref.functional.conv import conv2d_backward_time_sum, conv2d_forward
    from pysnn_ref.functional.linear import linear_backward_time_sum, linear_forward

    rng = np.random.default_rng(0)
    _, cache = linear_forward(rng.normal(size=(3, 2, 5)), rng.normal(size=(4, 5)), None)
    with pytest.raises(ValueError, match="^cache.x must be a time-broadcast"):
        linear_backward_time_sum(np.zeros((2, 4)), cache)
    _, cache = conv2d_forward(rng.normal(size=(3, 2, 1, 5, 5)), rng.normal(size=(4, 1, 3, 3)),
                              None)
    with pytest.raises(ValueError, match="^cache.x must be a time-broadcast"):
        conv2d_backward_time_sum(np.zeros((2, 4, 3, 3)), cache)
    x = np.broadcast_to(rng.normal(size=(2, 5)), (3, 2, 5))
    _, cache = linear_forward(x, rng.normal(size=(4, 5)), None)
    with pytest.raises(ValueError, match="^ds must have shape"):
        linear_backward_time_sum(np.zeros((3, 4)), cache)


def test_openmp_wait_policy_follows_blas_threads():
    """With one BLAS thread (the default) GNU OpenMP's own wait policy is kept; with more BLAS
    threads (or BLAS left alone, 0) Numba's idle workers are made to sleep (PASSIVE), through the
    environment variable or a later set_blas_threads call; an explicit user setting wins."""
    import os
    import subprocess
    import sys

    code = ("import os, pysnn_ref.backend as b; a = os.environ.get('OMP_WAIT_POLICY'); "
            "b.set_blas_threads(int(os.environ.get('LATER', '1'))); "
            "print(a, os.environ.get('OMP_WAIT_POLICY'))")

    def run(**env):
        base = {k: v for k, v in os.environ.items()
                if k not in ("OMP_WAIT_POLICY", "PYSNN_BLAS_THREADS")}
        return subprocess.run([sys.executable, "-c", code], env={**base, **env},
                              capture_output=True, text=True, check=True).stdout.split()

    assert run() == ["None", "None"]
    assert run(PYSNN_BLAS_THREADS="2") == ["PASSIVE", "PASSIVE"]
    assert run(PYSNN_BLAS_THREADS="0") == ["PASSIVE", "PASSIVE"]
    assert run(LATER="2") == ["None", "PASSIVE"]
    assert run(PYSNN_BLAS_THREADS="2", OMP_WAIT_POLICY="ACTIVE") == ["ACTIVE", "ACTIVE"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("static", [True, False])
@pytest.mark.parametrize("smooth", [False, True])
def test_lif_forward_count_equals_forward_and_counts_spikes(dtype, static, smooth):
    """kernels.cpu.lif_forward_count: the spikes and membrane of lif_forward bit for bit, plus
    their sum (several blocks, a partial last one, a static and a per-step current); nn.LIF's
    firing rate from it equals o.mean() exactly (float32 arithmetic as numpy's mean)."""
    rng = np.random.default_rng(2)
    N = 2 * cpu.BLOCK + 17
    I0 = rng.normal(0.6, 1.0, (1 if static else 6, N)).astype(dtype)
    I = np.broadcast_to(I0, (6, N)) if static else I0
    o, u = cpu.lif_forward(I, 0.5, 1.0, False, smooth, 2, 1.0)
    o2, u2, spikes = cpu.lif_forward_count(I, 0.5, 1.0, False, smooth, 2, 1.0)
    assert np.array_equal(o, o2) and np.array_equal(u, u2)
    assert spikes == pytest.approx(o.astype(np.float64).sum(), rel=1e-12) and spikes > 0
    lif = nn.LIF(smooth=smooth)
    y = lif.forward(I.reshape(6, 1, N))
    if not smooth:  # 0/1 spikes: the float32 sum is exact, so the rate is o.mean() to the bit
        assert lif.spike_rate == y.mean() and lif.spike_rate.dtype == dtype
    assert lif.firing_rate == pytest.approx(float(y.mean()), rel=1e-6)

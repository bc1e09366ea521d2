"""Flow methods (ASF, SSF) with BatchNorm / tdBN in training: two-pass streaming.

* The streamed forward (statistics passes, then the normalised pass) equals the BPTT forward,
  running statistics included.
* The collapsed BN backward equals the previous, per-step computation (per-step BN backward on
  the whole (T, B, ...) input, per-step weight-layer backward, collapse at each spiking layer)
  to float64 round-off -- written out here layer by layer on BPTT caches.
* Finite differences (float64, smooth mode) of the equivalent per-step rate network.
* Peak memory of a training step stays flat in T (tracemalloc), while the per-step fallback's
  grows.
"""

import numpy as np
import pytest

from pysnn_ref import nn
from pysnn_ref.bench.measure import _tracemalloc_peak
from pysnn_ref.data import PoissonEncoder
from pysnn_ref.functional.batchnorm import batchnorm_forward
from pysnn_ref.functional.loss import sdt_loss_backward, sdt_loss_forward
from pysnn_ref.gradcheck import numerical_gradient, rel_error
from pysnn_ref.methods import make_method

F64 = np.float64


def _net(lam=0.8, smooth=False, alpha=None, seed=1, C=3, H=6):
    """conv-BN-LIF-AP-conv-BN-LIF-flatten-FC-BN-LIF-FC: BN under a conv at the input, under a
    conv behind a pool, and under a biased Linear."""
    rng = np.random.default_rng(seed)
    lif = lambda: nn.LIF(lam=lam, v_th=1.0, surrogate="sigmoid", smooth=smooth)  # noqa: E731
    bn = lambda c: nn.BatchNorm(c, alpha=alpha, dtype=F64)  # noqa: E731
    net = nn.Sequential(
        nn.Conv2d(1, C, 3, padding=1, bias=False, rng=rng, dtype=F64), bn(C), lif(),
        nn.AvgPool2d(2),
        nn.Conv2d(C, C, 3, padding=1, bias=False, rng=rng, dtype=F64), bn(C), lif(),
        nn.Flatten(),
        nn.Linear(C * (H // 2) ** 2, 5, rng=rng, dtype=F64), bn(5), lif(),
        nn.Linear(5, 4, rng=rng, dtype=F64))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm):
            m.gamma.data[...] = rng.uniform(0.8, 1.6, m.gamma.data.shape)
            m.beta.data[...] = rng.uniform(0.2, 0.8, m.beta.data.shape)
    return net


def _grads(net, method, X, labels, **opts):
    m = make_method(method, **opts)
    net.zero_grad()
    y = m.forward(net, X)
    loss, cache = sdt_loss_forward(y, labels)
    m.backward(net, sdt_loss_backward(cache))
    grads = {f"{i}.{p.name}": p.grad.copy() for i, layer in enumerate(net.layers)
             for p in layer.own_parameters()}
    return y, loss, grads


def _data(T=7, B=3, H=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 2, (T, B, 1, H, H)), rng.integers(0, 4, B)


def _wmean(g, w):
    wt = w ** np.arange(g.shape[0] - 1, -1, -1)
    return np.tensordot(wt / wt.sum(), g, axes=(0, 0))


def _per_step_reference(net_flow, X, labels, alpha):
    """The previous computation: BPTT forward (caches of the whole T-step tensors), then the
    flow rule backward with per-step gradients everywhere except at the spiking layers, which
    collapse by their flow weights and multiply by the gain of the flow run."""
    net = _net(alpha=alpha)
    net.fuse = False  # the plain LIF forward (no LIF + pooling fusion)
    y = make_method("bptt").forward(net, X)
    _, cache = sdt_loss_forward(y, labels)
    T = X.shape[0]
    d = sdt_loss_backward(cache)
    lifs = [layer for layer in net_flow.layers if isinstance(layer, nn.LIF)]
    w_top = lifs[-1].flow_decay
    d = np.repeat(_wmean(d, w_top)[None], T, 0)
    for i in range(len(net.layers) - 1, -1, -1):
        layer, flow_layer = net.layers[i], net_flow.layers[i]
        if isinstance(layer, nn.LIF):
            d = np.repeat((_wmean(d, flow_layer.flow_decay) * flow_layer.flow_gain)[None], T, 0)
        else:
            d = layer.backward(d, need_dx=i > 0)
    grads = {f"{i}.{p.name}": p.grad.copy() for i, layer in enumerate(net.layers)
             for p in layer.own_parameters()}
    stats = [(m.running_mean.copy(), m.running_var.copy()) for m in net.modules()
             if isinstance(m, nn.BatchNorm)]
    return y, grads, stats


@pytest.mark.parametrize("method,alpha", [("ssf", None), ("asf", None), ("ssf", 0.7)])
def test_streamed_equals_per_step_computation(method, alpha):
    X, labels = _data()
    net = _net(alpha=alpha)
    y, _, g = _grads(net, method, X, labels, time_chunk=3)  # 7 steps: chunks 3, 3, 1
    assert all(m._streamed for m in net.modules() if isinstance(m, nn.BatchNorm))
    assert not any(getattr(m, "_steps", None) for m in net.modules())
    y_ref, g_ref, stats = _per_step_reference(net, X, labels, alpha)
    assert np.max(np.abs(y - y_ref)) < 1e-12
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm)]
    for bn, (rm, rv) in zip(bns, stats, strict=True):
        assert rel_error(bn.running_mean, rm) < 1e-12 and rel_error(bn.running_var, rv) < 1e-12
    scale = max(np.abs(v).max() for v in g.values())
    for k in g_ref:
        if np.abs(g_ref[k]).max() < 1e-12 * scale:  # zero up to round-off (bias before BN;
            # beta under ASF's layer-wide gain, where sum_b of the gradient from above is 0)
            assert np.abs(g[k]).max() < 1e-12 * scale and np.abs(g_ref[k]).max() < 1e-12 * scale
        else:
            assert rel_error(g[k], g_ref[k]) < 1e-10, k


def _surrogate_loss(net, flow, X, labels, points):
    """The equivalent per-step rate network of the flow rule: weight layers and BN (batch
    statistics) on every step; spiking layer k replaced by
    ``o[s] = o0[s] + gain * (w^(T-1-s) / sum w) * sum_t (I[t] - I0[t])``, linearised at the real
    network's operating point (o0: its spikes; gain and flow weights of the flow run), whose
    input gradient is ``gain * (flow-weighted mean of dL/do)`` at every step -- the flow rule."""
    x = X
    T = X.shape[0]
    k = 0
    for layer, fl in zip(net.layers, flow.layers, strict=True):
        if isinstance(layer, nn.LIF):
            if len(points) == k:  # first call: record the operating point
                points.append((x.copy(), layer.forward(x)))
            I0, o0 = points[k]
            wt = fl.flow_decay ** np.arange(T - 1, -1, -1)
            wt = (wt / wt.sum()).reshape(-1, *(1,) * (x.ndim - 1))
            x = o0 + fl.flow_gain * wt * (x - I0).sum(0)
            k += 1
        elif isinstance(layer, nn.BatchNorm):
            x = batchnorm_forward(x, layer.gamma.data, layer.beta.data, None, None,
                                  training=True, eps=layer.eps, scale=layer.scale)[0]
        else:
            x = layer.forward(x)
    return sdt_loss_forward(x, labels)[0]


@pytest.mark.parametrize("method", ["ssf", "asf"])
def test_finite_differences_smooth_mode(method):
    X, labels = _data(T=5, B=3, H=4, seed=3)
    flow = _net(smooth=True, H=4, C=2, alpha=0.9)
    _, _, g = _grads(flow, method, X, labels, time_chunk=2)
    assert any(np.any(lf.flow_gain != 0) for lf in flow.layers if isinstance(lf, nn.LIF))
    net = _net(smooth=True, H=4, C=2, alpha=0.9)  # same weights; its BN keeps no running stats
    points: list = []
    f = lambda: _surrogate_loss(net, flow, X, labels, points)  # noqa: E731
    f()
    for i, layer in enumerate(net.layers):
        for p in layer.own_parameters():
            num = numerical_gradient(f, p.data)
            key = f"{i}.{p.name}"
            if np.abs(num).max() < 1e-9:  # the bias before a BN
                assert np.abs(g[key]).max() < 1e-9, key
            else:
                assert rel_error(g[key], num) < 1e-6, key


def _step_peak(T, fallback=False, monkeypatch=None):
    rng = np.random.default_rng(4)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False, rng=rng, dtype=F64), nn.BatchNorm(8, dtype=F64),
        nn.LIF(lam=0.8), nn.AvgPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1, bias=False, rng=rng, dtype=F64), nn.BatchNorm(8, dtype=F64),
        nn.LIF(lam=0.8), nn.Flatten(), nn.Linear(8 * 36, 4, rng=rng, dtype=F64))
    x = rng.uniform(0, 2, (4, 1, 12, 12))
    labels = rng.integers(0, 4, 4)
    m = make_method("ssf", time_chunk=4)
    from pysnn_ref.data import DirectEncoder

    enc = DirectEncoder()

    def step():
        net.zero_grad()
        y = m.forward(net, x, T, enc)
        _, cache = sdt_loss_forward(y, labels)
        m.backward(net, sdt_loss_backward(cache))

    if fallback:
        monkeypatch.setattr(nn.BatchNorm, "pair_below", lambda self, layer, below: None)
    return _tracemalloc_peak(step)


def test_peak_memory_flat_in_T(monkeypatch):
    """T = 40 vs T = 4 at most 1.3x (issue 14 item 3); the per-step fallback's grows."""
    ratio = _step_peak(40) / _step_peak(4)
    assert ratio <= 1.3, ratio
    ratio_fb = _step_peak(40, True, monkeypatch) / _step_peak(4, True, monkeypatch)
    assert ratio_fb > 3.0, ratio_fb


def test_poisson_input_is_replayed_in_every_pass():
    """Every pass sees the same spikes: the streamed forward equals BPTT on the same encoding,
    and the encoder advances by one forward's draws, as without BN."""
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (3, 1, 6, 6))
    T = 6
    net = _net()
    y = make_method("ssf", time_chunk=4).forward(net, x, T, enc := PoissonEncoder(seed=2))
    ref_enc = PoissonEncoder(seed=2)
    y_ref = make_method("bptt").forward(_net(), ref_enc.encode(x, T))
    assert np.max(np.abs(y - y_ref)) < 1e-12
    assert np.array_equal(enc.encode(x, 2), ref_enc.encode(x, 2))


def test_bn_not_under_a_weight_layer_falls_back_per_step():
    """LIF -> BN (no weight layer directly below): the per-step fallback, same gradients as the
    explicit per-step computation of test_methods.py's rule."""
    rng = np.random.default_rng(6)
    mk = lambda: nn.Sequential(  # noqa: E731
        nn.Conv2d(1, 2, 3, padding=1, rng=np.random.default_rng(1), dtype=F64),
        nn.LIF(lam=0.9), nn.BatchNorm(2, dtype=F64), nn.Flatten(),
        nn.Linear(2 * 16, 4, rng=np.random.default_rng(2), dtype=F64))
    X = rng.uniform(0, 2, (5, 3, 1, 4, 4))
    labels = rng.integers(0, 4, 3)
    a = mk()
    _, _, g1 = _grads(a, "ssf", X, labels, time_chunk=2)
    assert not a.layers[2]._streamed
    b = mk()
    _, _, g2 = _grads(b, "ssf", X, labels, time_chunk=5)
    for k in g1:
        assert rel_error(g1[k], g2[k]) < 1e-10, k


@pytest.mark.parametrize("method", ["ssf", "asf"])
def test_residual_block_streams_and_equals_fallback(method, monkeypatch):
    """conv-BN-LIF-[conv-BN-LIF-conv-BN + conv-BN shortcut]-LIF: every BN streams (the spiking
    layer below the block collapses main's and the shortcut's gradients); same gradients as the
    per-step fallback forced on every BN."""
    rng = np.random.default_rng(7)
    X = rng.uniform(0, 2, (5, 2, 1, 4, 4))
    labels = rng.integers(0, 4, 2)

    def mk():
        r = np.random.default_rng(3)
        cb = lambda ci, co, k: [nn.Conv2d(ci, co, k, padding=k // 2, bias=False, rng=r,  # noqa: E731
                                          dtype=F64), nn.BatchNorm(co, dtype=F64)]
        main = nn.Sequential(*cb(2, 3, 3), nn.LIF(lam=0.8), *cb(3, 3, 3))
        return nn.Sequential(*cb(1, 2, 3), nn.LIF(lam=0.8),
                             nn.Residual(main, nn.Sequential(*cb(2, 3, 1))), nn.LIF(lam=0.8),
                             nn.Flatten(), nn.Linear(48, 4, rng=r, dtype=F64))

    def grads(net):
        _grads(net, method, X, labels, time_chunk=2)

        return {k: p.grad.copy() for k, p in net.named_parameters().items()}

    net = mk()
    g = grads(net)
    assert all(m._streamed for m in net.modules() if isinstance(m, nn.BatchNorm))
    monkeypatch.setattr(nn.BatchNorm, "pair_below", lambda self, layer, below: None)
    ref_net = mk()
    g_ref = grads(ref_net)
    assert not any(m._streamed for m in ref_net.modules() if isinstance(m, nn.BatchNorm))
    scale = max(np.abs(v).max() for v in g_ref.values())
    for k in g_ref:
        if np.abs(g_ref[k]).max() < 1e-12 * scale:
            assert np.abs(g[k]).max() < 1e-12 * scale, k
        else:
            assert rel_error(g[k], g_ref[k]) < 1e-10, k


def test_chunk_moments_make_no_float64_copy_of_the_input():
    # issue 22: the moments used to copy the whole (T, B, C, H, W) tensor to float64 (2x a
    # float32 input); now the sums accumulate in float64 and M2 needs one temporary in x's dtype
    import tracemalloc

    from pysnn_ref.functional.batchnorm import chunk_moments

    rng = np.random.default_rng(0)
    x = (1000.0 + rng.normal(0, 3.0, size=(4, 8, 6, 16, 16))).astype(np.float32)
    ref = x.astype(np.float64)
    axes = (0, 1, 3, 4)
    chunk_moments(x, 2)                          # warm-up (imports, caches)
    tracemalloc.start()
    m = chunk_moments(x, 2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1.3 * x.nbytes, (peak, x.nbytes)
    assert m.n == x.size // 6 and m.mean.dtype == np.float64 and m.M2.dtype == np.float64
    mean = ref.mean(axis=axes)
    M2 = ((ref - mean.reshape(1, 1, 6, 1, 1)) ** 2).sum(axis=axes)
    assert rel_error(m.mean, mean) < 1e-14
    assert rel_error(m.M2, M2) < 1e-6            # float32 differences (x - mean rounded)
    m64 = chunk_moments(ref, 2)                  # float64 input: the float64 result as before
    assert rel_error(m64.mean, mean) < 1e-15 and rel_error(m64.M2, M2) < 1e-13

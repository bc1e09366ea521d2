"""BPTT, ASF and SSF on whole networks.

* BPTT in smooth mode is the exact gradient: finite differences on whole networks.
* All three methods against independent, plainly written NumPy versions of the paper equations
  (written here from the papers, sharing no code with the library).
* ASF/SSF are the exact gradients of their equivalent rate networks: finite differences there.
* Flow mode keeps nothing of length T and streams in chunks: chunking does not change anything.
"""

import numpy as np
import pytest

from pysnn_ref import nn
from pysnn_ref.functional.loss import sdt_loss_backward, sdt_loss_forward
from pysnn_ref.gradcheck import numerical_gradient, rel_error
from pysnn_ref.gradcheck.flows import operating_points, rate_network_loss
from pysnn_ref.methods import make_method


def _mlp(lam, reset, surrogate="sigmoid", smooth=False, seed=0, sizes=(6, 9, 4)):
    rng = np.random.default_rng(seed)
    net = nn.Sequential(
        nn.Linear(sizes[0], sizes[1], rng=rng, dtype=np.float64),
        nn.LIF(lam=lam, v_th=1.0, reset=reset, surrogate=surrogate, smooth=smooth),
        nn.Linear(sizes[1], sizes[2], rng=rng, dtype=np.float64),
    )
    for p in net.parameters():
        p.data[...] = rng.normal(0, 0.8, p.data.shape)
    return net


def _grads(net, method, X, labels, **opts):
    m = make_method(method, **opts)
    net.zero_grad()
    y = m.forward(net, X)
    loss, cache = sdt_loss_forward(y, labels)
    m.backward(net, sdt_loss_backward(cache))
    return loss, {f"{i}.{p.name}": p.grad.copy() for i, layer in enumerate(net.layers)
                  for p in layer.own_parameters()}


# ---------------------------------------------------------------------------------------------
# Independent plain-NumPy versions of the equations (Linear -> LIF -> Linear, SDT loss).
# ---------------------------------------------------------------------------------------------

def _softmax_ce_grad(z, labels):
    z = z - z.max(1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    p[np.arange(len(labels)), labels] -= 1
    return p / len(labels)


def _sg(x, k=4.0):
    s = 1 / (1 + np.exp(-k * x))
    return k * s * (1 - s)


def _indep_forward(X, W1, b1, lam, soft, v_th=1.0):
    T = X.shape[0]
    I = np.stack([X[t] @ W1.T + b1 for t in range(T)])
    u = np.zeros_like(I)
    o = np.zeros_like(I)
    v = np.zeros_like(I[0])
    for t in range(T):
        u[t] = lam * v + I[t]
        o[t] = (u[t] >= v_th).astype(float)
        v = u[t] - v_th * o[t] if soft else u[t] * (1 - o[t])
    return I, u, o


def independent_grads(method, X, labels, W1, b1, W2, b2, lam, soft, v_th=1.0,
                      asf_variant="paper"):
    T = X.shape[0]
    I, u, o = _indep_forward(X, W1, b1, lam, soft, v_th)
    y = np.stack([o[t] @ W2.T + b2 for t in range(T)])
    gz = _softmax_ce_grad(y.mean(0), labels)          # dL/d mean_t y
    dy = np.repeat(gz[None] / T, T, axis=0)            # dL/dy[t]
    dW2 = sum(dy[t].T @ o[t] for t in range(T))
    db2 = dy.sum((0, 1))
    do = np.stack([dy[t] @ W2 for t in range(T)])
    if method == "bptt":                              # SSF Eqs. 8-10, exact form
        dI = np.zeros_like(I)
        du_next = np.zeros_like(I[0])
        for t in range(T - 1, -1, -1):
            reset_term = -lam * v_th if soft else -lam * u[t]
            dO = do[t] + du_next * reset_term
            keep = lam if soft else lam * (1 - o[t])
            dI[t] = dO * _sg(u[t] - v_th) + du_next * keep
            du_next = dI[t]
    elif method == "ssf":                             # SSF Eqs. 13-15, 19
        w = lam ** np.arange(T - 1, -1, -1)[:, None, None]
        FI = (w * I).sum(0) / w.sum()
        dFO = (w * do).sum(0) / w.sum()
        if soft:
            gain = np.where((FI > 0) & (FI < v_th), 1 / v_th, 0.0)
        else:
            so, sou = (w * o).sum(0), (w * o * u).sum(0)
            R = np.where(so > 0, sou / np.where(so > 0, v_th * so, 1), 1.0)
            gain = np.where((FI > 0) & (R <= 2), 1 / (R * v_th), 0.0)
        dI = np.repeat((dFO * gain)[None], T, axis=0)
    else:                                             # ASF Eqs. 7, 10-12
        FI, FO = I.sum(0), o.sum(0)
        dFO = do.mean(0)   # all equal under SDT; dL/dFO is the per-step gradient
        if asf_variant == "paper":
            S = FO.sum() / FI.sum() if FI.sum() > 0 else 1.0  # keep S = 1 if undefined
            gain = S
        else:
            c = FI >= FO
            s_new = FO[c].sum() / FI[c].sum() if FI[c].sum() >= 1e-3 else 1.0
            S = 0.6 * s_new + 0.4 * 1.0
            gain = S * (FI > 0)
        dI = np.repeat((dFO * gain)[None], T, axis=0)
    dW1 = sum(dI[t].T @ X[t] for t in range(T))
    db1 = dI.sum((0, 1))
    return {"0.W": dW1, "0.b": db1, "2.W": dW2, "2.b": db2}


@pytest.mark.parametrize("method", ["bptt", "ssf", "asf"])
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("lam", [0.7, 1.0])
def test_methods_match_independent_numpy(method, reset, lam):
    rng = np.random.default_rng(5)
    T, B = 6, 5
    X = rng.normal(0.5, 1.0, (T, B, 6))
    labels = rng.integers(0, 4, B)
    net = _mlp(lam, reset)
    _, g = _grads(net, method, X, labels, **({"time_chunk": 4} if method != "bptt" else {}))
    W1, b1, W2, b2 = (p.data for p in net.parameters())
    ref = independent_grads(method, X, labels, W1, b1, W2, b2, lam, reset == "soft")
    for k in ref:
        assert rel_error(g[k], ref[k]) < 1e-9, k


def test_asf_code_variant_matches_independent():
    rng = np.random.default_rng(6)
    X = rng.normal(0.4, 1.0, (5, 4, 6))
    labels = rng.integers(0, 4, 4)
    net = _mlp(1.0, "hard")
    _, g = _grads(net, "asf", X, labels, asf_variant="code")
    W1, b1, W2, b2 = (p.data for p in net.parameters())
    ref = independent_grads("asf", X, labels, W1, b1, W2, b2, 1.0, False, asf_variant="code")
    for k in ref:
        assert rel_error(g[k], ref[k]) < 1e-9, k


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("lam", [0.8, 1.0])
def test_bptt_whole_mlp_finite_differences(reset, lam):
    rng = np.random.default_rng(7)
    X = rng.normal(0.5, 1.0, (5, 3, 6))
    labels = rng.integers(0, 4, 3)
    net = _mlp(lam, reset, smooth=True)
    _, g = _grads(net, "bptt", X, labels)
    m = make_method("bptt")
    for i, layer in enumerate(net.layers):
        for p in layer.own_parameters():
            num = numerical_gradient(lambda: sdt_loss_forward(m.forward(net, X), labels)[0],
                                     p.data)
            assert rel_error(g[f"{i}.{p.name}"], num) < 1e-6


def _conv_net(lam, seed=0):
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, rng=rng, dtype=np.float64),
        nn.LIF(lam=lam, v_th=1.0),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(3 * 3 * 3, 5, rng=rng, dtype=np.float64),
        nn.LIF(lam=lam, v_th=1.0),
        nn.Linear(5, 4, rng=rng, dtype=np.float64),
    )


@pytest.mark.parametrize("method", ["ssf", "asf"])
@pytest.mark.parametrize("net_kind", ["mlp", "conv"])
def test_flow_methods_are_exact_gradients_of_rate_network(method, net_kind):
    rng = np.random.default_rng(8)
    T, B = 6, 4
    if net_kind == "mlp":
        net = _mlp(0.9, "hard", sizes=(6, 8, 4))
        X = rng.normal(0.6, 1.0, (T, B, 6))
    else:
        net = _conv_net(0.9)
        X = rng.uniform(0, 2, (T, B, 1, 6, 6))
    labels = rng.integers(0, 4, B)
    _, g = _grads(net, method, X, labels, time_chunk=4)
    gains = [layer.flow_gain for layer in net.layers if isinstance(layer, nn.LIF)]
    assert any(np.any(gv != 0) for gv in gains)
    points = operating_points(net, X)
    for i, layer in enumerate(net.layers):
        for p in layer.own_parameters():
            num = numerical_gradient(lambda: rate_network_loss(net, X, labels, gains, points),
                                     p.data)
            assert rel_error(g[f"{i}.{p.name}"], num) < 1e-6, (i, p.name)


@pytest.mark.parametrize("method", ["ssf", "asf"])
def test_time_chunk_does_not_change_flow_gradients(method):
    rng = np.random.default_rng(9)
    X = rng.uniform(0, 2, (7, 3, 1, 6, 6))
    labels = rng.integers(0, 4, 3)
    out = []
    for chunk in (1, 3, 7):
        net = _conv_net(0.8)
        out.append(_grads(net, method, X, labels, time_chunk=chunk))
    for loss, g in out[1:]:
        assert abs(loss - out[0][0]) < 1e-12
        for k in g:
            assert rel_error(g[k], out[0][1][k]) < 1e-10


def test_flow_forward_equals_bptt_forward():
    rng = np.random.default_rng(10)
    X = rng.uniform(0, 2, (5, 3, 1, 6, 6))
    net = _conv_net(0.8)
    y_b = make_method("bptt").forward(net, X)
    y_s = make_method("ssf", time_chunk=2).forward(net, X)
    assert np.array_equal(y_b, y_s)


def test_flow_mode_keeps_no_per_step_state():
    rng = np.random.default_rng(11)
    X = rng.uniform(0, 2, (8, 3, 1, 6, 6))
    net = _conv_net(0.8)
    m = make_method("ssf", time_chunk=2)
    m.forward(net, X)
    for layer in net.layers:
        for name, val in vars(layer).items():
            if isinstance(val, np.ndarray):
                assert val.ndim == 0 or val.shape[0] != 8 or name in ("W",), (layer, name)
        assert not getattr(layer, "_steps", [])


@pytest.mark.parametrize("method", ["ssf", "asf"])
def test_maxpool_and_batchnorm_fall_back_per_step(method):
    """Non-collapsible layers: their backward runs per step, the rest stays collapsed, and the
    result equals an explicit per-step computation of the same flow rule."""
    rng = np.random.default_rng(12)
    mk = lambda: nn.Sequential(  # noqa: E731
        nn.Conv2d(1, 3, 3, padding=1, bias=False, rng=np.random.default_rng(1),
                  dtype=np.float64),
        nn.BatchNorm(3, dtype=np.float64), nn.LIF(lam=0.9), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(27, 4, rng=np.random.default_rng(2), dtype=np.float64))
    X = rng.uniform(0, 2, (5, 3, 1, 6, 6))
    labels = rng.integers(0, 4, 3)
    net = mk()
    _, g = _grads(net, method, X, labels)
    # BN under a conv streams now (collapsed BN backward, tests/test_flow_bn_stream.py)
    assert not net.layers[0].keep_steps and net.layers[1]._streamed
    assert not net.layers[5].keep_steps
    # explicit: run BPTT forward, then apply the flow rule by hand at the LIF layer
    net2 = mk()
    bp = make_method("bptt")
    y = bp.forward(net2, X)
    lif = net2.layers[2]
    _, cache = sdt_loss_forward(y, labels)
    dy = sdt_loss_backward(cache)
    T = X.shape[0]
    gtop = dy.mean(0)[None].repeat(T, 0)
    d = gtop
    for layer in net2.layers[:2:-1]:
        d = layer.backward(d)
    # collapse at the LIF with the flow gain computed by the flow run
    gain = net.layers[2].flow_gain
    w = 0.9 if method == "ssf" else 1.0
    wt = w ** np.arange(T - 1, -1, -1)
    G = np.tensordot(wt / wt.sum(), d, axes=(0, 0)) * gain
    d = net2.layers[1].backward(np.repeat(G[None], T, 0))
    net2.layers[0].backward(d)
    del lif
    for i in (0, 1, 5):
        for p in net2.layers[i].own_parameters():
            assert rel_error(g[f"{i}.{p.name}"], p.grad) < 1e-9, (i, p.name)


def test_ssf_R_granularities_and_silent_rule():
    rng = np.random.default_rng(13)
    X = rng.normal(0.3, 1.0, (6, 4, 6))
    labels = rng.integers(0, 4, 4)
    X[:, :, :] = X
    grads = {}
    for gran in ("neuron", "channel", "sample", "layer"):
        net = _mlp(0.9, "hard")
        net.layers[0].W.data[:2] = -5.0  # two neurons never fire
        net.layers[0].b.data[:2] = 0.5   # ... but have positive mean input in some samples
        grads[gran] = _grads(net, "ssf", X, labels, r_granularity=gran)[1]
        gain = net.layers[1].flow_gain
        FI_pos = None
        if gran == "neuron":
            # silent neurons: R = 1 (our rule), gain = 1/v_th exactly where FI > 0, else 0
            FI = (X @ net.layers[0].W.data.T + net.layers[0].b.data)
            w = 0.9 ** np.arange(5, -1, -1)[:, None, None]
            FI_pos = ((w * FI).sum(0) / w.sum())[:, :2] > 0
            assert np.all(gain[:, :2][FI_pos] == 1.0) and np.all(gain[:, :2][~FI_pos] == 0)
    assert rel_error(grads["neuron"]["0.W"], grads["layer"]["0.W"]) > 1e-6


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="sgd"), "method"),
    (dict(name="asf", asf_refresh=0), "asf_refresh"),
    (dict(name="ssf", r_granularity="pixel"), "r_granularity"),
    (dict(name="asf", asf_variant="blog"), "asf_variant"),
    (dict(name="ssf", asf_variant="paper"), "asf_variant"),
    (dict(name="asf", r_granularity="neuron"), "r_granularity"),
    (dict(name="ssf", time_chunk=0), "time_chunk"),
])
def test_bad_method_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_method(**kwargs)


def test_detach_reset_with_flow_method_is_rejected():
    net = nn.Sequential(nn.Linear(3, 4, dtype=np.float64), nn.LIF(detach_reset=True),
                        nn.Linear(4, 2, dtype=np.float64))
    m = make_method("ssf")
    with pytest.raises(ValueError, match="detach_reset"):
        m.check_network(net)


def test_flow_forward_equals_bptt_forward_float32():
    rng = np.random.default_rng(14)
    X = rng.uniform(0, 2, (9, 3, 1, 6, 6)).astype(np.float32)
    net = _conv_net(0.8)
    for p in net.parameters():
        p.data = p.data.astype(np.float32)
        p.grad = p.grad.astype(np.float32)
    y_b = make_method("bptt").forward(net, X)
    y_s = make_method("ssf", time_chunk=4).forward(net, X)
    assert y_b.dtype == np.float32 and np.array_equal(y_b, y_s)


@pytest.mark.parametrize("method", ["ssf", "asf"])
def test_maxpool_above_lif_collapses_exactly(method):
    """conv -> LIF -> MaxPool: the pool keeps one flow-weighted winner map, not per-step
    winners, and gives the same gradients as the per-step backward (explicit test above) for
    every chunk size."""
    rng = np.random.default_rng(15)
    mk = lambda: nn.Sequential(  # noqa: E731
        nn.Conv2d(1, 3, 3, padding=1, rng=np.random.default_rng(1), dtype=np.float64),
        nn.LIF(lam=0.8), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(27, 4, rng=np.random.default_rng(2), dtype=np.float64))
    X = rng.uniform(0, 2, (7, 3, 1, 6, 6))
    labels = rng.integers(0, 4, 3)
    out = []
    for chunk in (1, 3, 7):
        net = mk()
        out.append(_grads(net, method, X, labels, time_chunk=chunk)[1])
        pool = net.layers[2]
        assert pool._count_mode and not pool._caches and pool._C.shape == (3, 3, 6, 6)
        assert not net.layers[0].keep_steps
    # per-step reference: the same network with the pool's collapse disabled
    net = mk()
    m = make_method(method, time_chunk=3)
    net.plan_flow(False)
    net.layers[2]._below_lif = None
    net.plan_flow = lambda per_step=False: per_step  # keep the per-step plan
    for layer in net.layers[:2]:
        layer.keep_steps = True
    net.layers[2].flow_out_per_step(False)
    y = m.forward(net, X)
    _, cache = sdt_loss_forward(y, labels)
    m.backward(net, sdt_loss_backward(cache))
    ref = {f"{i}.{p.name}": p.grad for i, layer in enumerate(net.layers)
           for p in layer.own_parameters()}
    for g in out:
        for k in ref:
            assert rel_error(g[k], ref[k]) < 1e-10, k

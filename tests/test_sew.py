"""SEW connect functions and blocks (SEW-ResNet, Fang et al., NeurIPS 2021, Table 1 / Eq. 5): the
functions on spikes, their backward and the SEWResidual block's BPTT backward as exact gradients
(finite differences, float64, smooth mode), the ADD block's flow gradients as the exact gradients
of its equivalent rate network, and AND / IAND refused by the flow methods."""

from __future__ import annotations

import numpy as np
import pytest

from pysnn_ref import nn
from pysnn_ref.functional.loss import sdt_loss_backward, sdt_loss_forward
from pysnn_ref.functional.sew import sew_connect_backward, sew_connect_forward
from pysnn_ref.gradcheck.finite_diff import numerical_gradient, rel_error
from pysnn_ref.methods import make_method


@pytest.mark.parametrize("g, table", [
    ("ADD", {(0, 0): 0, (0, 1): 1, (1, 0): 1, (1, 1): 2}),
    ("AND", {(0, 0): 0, (0, 1): 0, (1, 0): 0, (1, 1): 1}),
    ("IAND", {(0, 0): 0, (0, 1): 1, (1, 0): 0, (1, 1): 0}),
])
def test_truth_tables_on_spikes(g, table):
    A = np.array([a for a, _ in table], dtype=np.float32)
    S = np.array([s for _, s in table], dtype=np.float32)
    O, _ = sew_connect_forward(A, S, g)
    np.testing.assert_array_equal(O, np.array(list(table.values()), dtype=np.float32))


@pytest.mark.parametrize("g", ["ADD", "AND", "IAND"])
def test_backward_is_the_exact_gradient(g):
    rng = np.random.default_rng(0)
    A, S = rng.uniform(-1, 2, (2, 3, 4, 5, 5)), rng.uniform(-1, 2, (2, 3, 4, 5, 5))
    dO = rng.normal(size=A.shape)
    _, cache = sew_connect_forward(A, S, g)
    dA, dS = sew_connect_backward(dO, cache)
    f = lambda: sew_connect_forward(A, S, g)[0]    # noqa: E731
    assert rel_error(dA, numerical_gradient(f, A, dO)) < 1e-9
    assert rel_error(dS, numerical_gradient(f, S, dO)) < 1e-9


def test_identity_is_reachable():
    """g(A, S) = S with A = 0 (ADD, IAND) or A = 1 (AND): why the SEW block can learn identity."""
    S = (np.random.default_rng(1).random((4, 6)) < 0.5).astype(np.float64)
    for g, a in (("ADD", 0.0), ("IAND", 0.0), ("AND", 1.0)):
        np.testing.assert_array_equal(sew_connect_forward(np.full_like(S, a), S, g)[0], S)


def test_bad_input_names_the_parameter():
    a = np.zeros((2, 3))
    with pytest.raises(ValueError, match="g must be one of"):
        sew_connect_forward(a, a, "OR")
    with pytest.raises(ValueError, match="S"):
        sew_connect_forward(a, np.zeros((2, 4)), "ADD")
    with pytest.raises(ValueError, match="dtype"):
        sew_connect_forward(a, a.astype(np.float32), "AND")
    _, cache = sew_connect_forward(a, a, "AND")
    with pytest.raises(ValueError, match="dO"):
        sew_connect_backward(np.zeros((3, 3)), cache)


# --------------------------------------------------------------------------------------------
# The SEWResidual block (nn/sew.py)
# --------------------------------------------------------------------------------------------

F64 = np.float64


def _lif(smooth=True):
    return nn.LIF(lam=0.8, v_th=1.0, surrogate="sigmoid", smooth=smooth)


def _conv_sew_net(g, seed=0):
    """conv-BN-SN, SEW(g) block with identity shortcut, SEW(g) block downsampling (conv1x1
    stride 2 + BN + SN shortcut), linear classifier; smooth spikes."""
    r = np.random.default_rng(seed)
    cb = lambda ci, co, k, s=1: [nn.Conv2d(ci, co, k, stride=s, padding=k // 2, bias=False,  # noqa: E731
                                           rng=r, dtype=F64), nn.BatchNorm(co, dtype=F64)]
    b1 = nn.SEWResidual(nn.Sequential(*cb(2, 2, 3), _lif(), *cb(2, 2, 3), _lif()), None, g)
    b2 = nn.SEWResidual(nn.Sequential(*cb(2, 3, 3, 2), _lif(), *cb(3, 3, 3), _lif()),
                        nn.Sequential(*cb(2, 3, 1, 2), _lif()), g)
    return nn.Sequential(*cb(1, 2, 3), _lif(), b1, b2, nn.Flatten(),
                         nn.Linear(3 * 2 * 2, 4, rng=r, dtype=F64))


def _directional(loss, w, v, h=1e-5):
    """Central difference of ``loss`` along direction ``v`` of array ``w`` (changed in place,
    restored)."""
    w0 = w.copy()
    w[...] = w0 + h * v
    lp = loss()
    w[...] = w0 - h * v
    lm = loss()
    w[...] = w0
    return (lp - lm) / (2 * h)


@pytest.mark.parametrize("g", ["ADD", "AND", "IAND"])
def test_sew_block_bptt_is_the_exact_gradient(g):
    """Smooth mode, float64: every parameter's and the input's BPTT gradient against central
    differences of the SDT loss through two SEW blocks (identity and downsampling shortcut),
    along three random directions per array (each element alone costs 2 forwards per
    element: ~800 forwards; the directional form checks every element at once)."""
    net = _conv_sew_net(g)
    rng = np.random.default_rng(1)
    x = rng.normal(1.5, 1.0, (3, 2, 1, 4, 4))
    labels = rng.integers(0, 4, 2)

    def loss():
        return sdt_loss_forward(net.forward(x), labels)[0]

    net.zero_grad()
    _, cache = sdt_loss_forward(net.forward(x), labels)
    dx = net.backward(sdt_loss_backward(cache))
    arrays = [(k, p.grad.copy(), p.data) for k, p in net.named_parameters().items()]
    for k, grad, w in [*arrays, ("x", dx, x)]:
        assert np.abs(grad).max() > 0, k
        for _ in range(3):
            v = rng.normal(size=w.shape)
            a, b = float(np.sum(grad * v)), _directional(loss, w, v)
            assert abs(a - b) <= 1e-6 * (abs(a) + abs(b)) + 1e-11, (k, a, b)


def _mlp_sew_net(shortcut, seed=0):
    r = np.random.default_rng(seed)
    lin = lambda i, o: nn.Linear(i, o, rng=r, dtype=F64)  # noqa: E731
    short = nn.Sequential(lin(5, 5), nn.LIF(lam=0.9)) if shortcut else None
    net = nn.Sequential(lin(6, 5), nn.LIF(lam=0.9),
                        nn.SEWResidual(nn.Sequential(lin(5, 5), nn.LIF(lam=0.9)), short, "ADD"),
                        lin(5, 4))
    for p in net.parameters():
        p.data[...] = r.normal(0, 0.8, p.data.shape)
    return net


def _rate_loss(net, X, labels, lifs, gains, points):
    """The equivalent rate network: time-mean input; each LIF replaced by its flow mapping
    linearised at the real network's operating point (value = mean spike rate, slope = flow
    gain); the ADD block adds the two branches' rates."""
    at = {id(n): (g, p) for n, g, p in zip(lifs, gains, points, strict=True)}

    def run(layer, x):
        if isinstance(layer, nn.SEWResidual):
            a = run(layer.main, x)
            return a + (x if layer.shortcut is None else run(layer.shortcut, x))
        if isinstance(layer, nn.Sequential):
            for sub in layer.layers:
                x = run(sub, x)
            return x
        if isinstance(layer, nn.LIF):
            gain, (FI0, FO0) = at[id(layer)]
            return FO0 + gain * (x - FI0)
        return x @ layer.W.data.T + layer.b.data

    return sdt_loss_forward(run(net, X.mean(0))[None], labels)[0]


@pytest.mark.parametrize("method", ["ssf", "asf"])
@pytest.mark.parametrize("shortcut", [False, True])
def test_sew_add_flow_is_the_exact_gradient_of_the_rate_network(method, shortcut):
    rng = np.random.default_rng(8)
    T, B = 6, 4
    X = rng.normal(0.6, 1.0, (T, B, 6))
    labels = rng.integers(0, 4, B)
    net = _mlp_sew_net(shortcut)
    lifs = nn.spiking_layers(net)
    points = []
    hooks = [n.register_forward_hook(lambda m, x, y: points.append((x.mean(0), y.mean(0))))
             for n in lifs]
    make_method("bptt").forward(net, X)
    for h in hooks:
        h.remove()
    m = make_method(method, time_chunk=4)
    net.zero_grad()
    _, cache = sdt_loss_forward(m.forward(net, X), labels)
    m.backward(net, sdt_loss_backward(cache))
    gains = [n.flow_gain for n in lifs]
    assert all(np.any(gv != 0) for gv in gains)
    for k, p in net.named_parameters().items():
        num = numerical_gradient(lambda: _rate_loss(net, X, labels, lifs, gains, points), p.data)
        assert rel_error(p.grad, num) < 1e-6, k


@pytest.mark.parametrize("g", ["AND", "IAND"])
@pytest.mark.parametrize("method", ["asf", "ssf"])
def test_flow_methods_refuse_and_iand(g, method):
    net = _conv_sew_net(g)
    assert "no flow form" in net.layers[3].bptt_only_reason
    x = np.random.default_rng(0).random((2, 2, 1, 4, 4))
    with pytest.raises(ValueError, match=f"cannot train this block: SEW connect function {g} "
                                         "multiplies two spike trains"):
        make_method(method).forward(net, x)


def test_sew_block_bad_g():
    with pytest.raises(ValueError, match="g must be one of"):
        nn.SEWResidual(nn.Sequential(_lif()), None, "OR")


def test_zero_pad_then_maxpool_equals_padded_pool_on_spikes():
    """ZeroPad2d(1) + MaxPool2d(3, 2) = PyTorch's MaxPool2d(3, 2, padding=1) on spikes (>= 0):
    checked against a plain loop with -inf padding; backward = the interior of the gradient."""
    rng = np.random.default_rng(3)
    x = (rng.random((2, 1, 3, 6, 6)) < 0.4).astype(F64)
    y = nn.MaxPool2d(3, 2)(nn.ZeroPad2d(1)(x))
    xp = np.pad(x, [(0, 0)] * 3 + [(1, 1), (1, 1)], constant_values=-np.inf)
    ref = np.stack([np.stack([xp[..., 2 * i:2 * i + 3, 2 * j:2 * j + 3].max((-1, -2))
                              for j in range(3)], -1) for i in range(3)], -2)
    np.testing.assert_array_equal(y, ref)
    pad = nn.ZeroPad2d(1)
    pad(x)
    d = rng.normal(size=(2, 1, 3, 8, 8))
    np.testing.assert_array_equal(pad.backward(d), d[..., 1:7, 1:7])

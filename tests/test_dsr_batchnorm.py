"""DSR (Meng et al., CVPR 2022) with BatchNorm in training (issue 25): the flow-mode gradients
(collapsed BN backward where BN sits on a weight layer, the per-step fallback where it sits on a
residual sum) equal an independent per-step reference -- the authors' computation: time folded
into batch, BN statistics over T*B, every layer's per-step activations kept, the DSR neuron's
dL/dI[t] from :func:`~pysnn_ref.functional.dsr.dsr_backward` at every step, and the ordinary
per-step conv / BN / linear backward (float64, rtol 1e-9).  Plus streamed-vs-fallback agreement
and the refusals (rate-BP with BN; DSR's exact spread with lam < 1 and BN)."""

import numpy as np
import pytest

from pysnn_ref import nn
from pysnn_ref.functional.batchnorm import batchnorm_backward, batchnorm_forward
from pysnn_ref.functional.conv import conv2d_backward, conv2d_forward
from pysnn_ref.functional.dsr import dsr_backward, dsr_forward_p, make_dsr_params
from pysnn_ref.functional.linear import linear_backward, linear_forward
from pysnn_ref.functional.pool import avgpool2d_backward, avgpool2d_forward
from pysnn_ref.methods import make_method
from pysnn_ref.models import preact_resnet18

F64 = np.float64


# ---------------------------------------------------------------------------------------------
# the per-step reference: a walk over the modules with the functional forward/backward pairs
# ---------------------------------------------------------------------------------------------

class _Ref:
    """Forward over all T steps at once keeping every layer's cache; backward per step."""

    def __init__(self, alpha: float, spread: str) -> None:
        self.alpha, self.spread = alpha, spread
        self.grads: dict[int, np.ndarray] = {}   # id(parameter) -> gradient
        self.tape: list = []

    def _add(self, p, g) -> None:
        if p is not None and g is not None:
            self.grads[id(p)] = self.grads.get(id(p), 0.0) + g

    def forward(self, m, x):
        if isinstance(m, nn.Sequential):
            for layer in m.layers:
                x = self.forward(layer, x)
            return x
        if isinstance(m, nn.Residual):
            a = self.forward(m.main, x)
            b = x if m.shortcut is None else self.forward(m.shortcut, x)
            return a + b
        if isinstance(m, nn.Conv2d):
            y, c = conv2d_forward(x, m.W.data, None if m.b is None else m.b.data, m.stride,
                                  m.padding)
        elif isinstance(m, nn.Linear):
            y, c = linear_forward(x, m.W.data, None if m.b is None else m.b.data)
        elif isinstance(m, nn.BatchNorm):
            y, c = batchnorm_forward(x, m.gamma.data, m.beta.data, m.running_mean.copy(),
                                     m.running_var.copy(), training=True, momentum=m.momentum,
                                     eps=m.eps, scale=m.scale, time_major=True)
        elif isinstance(m, nn.LIF):
            v_th = m.p.v_th if m.v_th_param is None else max(float(m.v_th_param.data[0]), 5e-4)
            p = make_dsr_params(lam=m.p.lam, v_th=v_th, alpha=self.alpha, spread=self.spread)
            y, c = dsr_forward_p(x, p)
        elif isinstance(m, nn.AvgPool2d):
            y, c = avgpool2d_forward(x, m.k, m.stride)
        elif isinstance(m, nn.Flatten):
            y, c = x.reshape(*x.shape[:2], -1), x.shape
        else:
            raise TypeError(type(m))
        self.tape.append((m, c))
        return y

    def backward(self, m, dy):
        if isinstance(m, nn.Sequential):
            for layer in reversed(m.layers):
                dy = self.backward(layer, dy)
            return dy
        if isinstance(m, nn.Residual):
            ds = dy if m.shortcut is None else self.backward(m.shortcut, dy)  # taped last
            return self.backward(m.main, dy) + ds
        mod, c = self.tape.pop()
        assert mod is m
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fn = conv2d_backward if isinstance(m, nn.Conv2d) else linear_backward
            dx, dW, db = fn(dy, c, need_dx=True)
            self._add(m.W, dW)
            self._add(m.b, db)
            return dx
        if isinstance(m, nn.BatchNorm):
            dx, dgamma, dbeta = batchnorm_backward(dy, c)
            self._add(m.gamma, dgamma)
            self._add(m.beta, dbeta)
            return dx
        if isinstance(m, nn.LIF):
            dI, dv = dsr_backward(dy, c)
            self._add(m.v_th_param, None if m.v_th_param is None else np.array([dv]))
            return dI
        if isinstance(m, nn.AvgPool2d):
            return avgpool2d_backward(dy, c)
        return dy.reshape(c)  # Flatten

    def run(self, net, x, dy):
        y = self.forward(net, x)
        self.backward(net, dy)
        assert not self.tape
        return y


def _flow_grads(net, method, x, dy):
    net.zero_grad()
    y = method.forward(net, x)
    method.backward(net, dy)
    return y, {id(p): p.grad.copy() for p in net.parameters()}


def _compare(net, method, x, dy, ref, rtol=1e-9):
    """Flow-mode forward and gradients against the reference: every parameter, rtol 1e-9 of
    the largest entry of that parameter's reference gradient."""
    y, got = _flow_grads(net, method, x, dy)
    y_ref = ref.run(net, x, dy)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    checked = 0
    for p in net.parameters():
        want = ref.grads[id(p)]
        scale = max(np.abs(want).max(), 1e-30)
        np.testing.assert_allclose(got[id(p)], want, rtol=0, atol=rtol * scale + 1e-13,
                                   err_msg=p.name)  # floor: a bias under BN gets ~1e-16
        checked += int(scale > 1e-10)
    assert checked >= len(net.parameters()) // 2  # most gradients are not trivially zero
    return got


def _conv_net(lam, rng):
    """Conv-BN-IF-Conv-BN-IF-AvgPool-Flatten-Linear: both BNs streamed (BN on a weight layer)."""
    def sn():
        return nn.LIF(lam, 0.8, reset="soft")
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, rng=rng, dtype=F64), nn.BatchNorm(4, dtype=F64), sn(),
        nn.Conv2d(4, 6, 3, padding=1, rng=rng, dtype=F64), nn.BatchNorm(6, dtype=F64), sn(),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(6 * 2 * 2, 3, rng=rng, dtype=F64))


def _residual_net(lam, rng):
    """preact_resnet18's block shape: BN after the residual sum (the per-step fallback), a
    streamed BN inside the main branch, a projection shortcut, a spiking output layer."""
    def sn():
        return nn.LIF(lam, 0.8, reset="soft")
    main = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, rng=rng, dtype=F64),
                         nn.BatchNorm(4, dtype=F64), sn(),
                         nn.Conv2d(4, 4, 3, padding=1, rng=rng, dtype=F64))
    main2 = nn.Sequential(nn.Conv2d(4, 5, 3, padding=1, rng=rng, dtype=F64),
                          nn.BatchNorm(5, dtype=F64), sn(),
                          nn.Conv2d(5, 5, 3, padding=1, rng=rng, dtype=F64))
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False, rng=rng, dtype=F64),
        nn.BatchNorm(4, dtype=F64), sn(), nn.Residual(main),
        nn.BatchNorm(4, dtype=F64), sn(),
        nn.Residual(main2, nn.Sequential(nn.Conv2d(4, 5, 1, rng=rng, dtype=F64))),
        nn.BatchNorm(5, dtype=F64), sn(), nn.AvgPool2d(4), sn(), nn.Flatten(),
        nn.Linear(5, 3, rng=rng, dtype=F64), nn.BatchNorm(3, dtype=F64), sn())


def _data(rng, T, B=3, C=2, H=4, classes=3, uniform=True):
    x = rng.normal(0.3, 1.0, (T, B, C, H, H))
    dy = rng.normal(size=(B, classes))
    dy = np.broadcast_to(dy / T, (T, B, classes)).copy() if uniform else \
        rng.normal(size=(T, B, classes))
    return x, dy


CASES = [(1.0, "exact", 0.5), (1.0, "authors", 1.0), (0.8, "authors", 0.5)]


@pytest.mark.parametrize("lam, spread, alpha", CASES)
@pytest.mark.parametrize("chunk", [2, 5])
def test_conv_bn_net_equals_per_step_reference(lam, spread, alpha, chunk):
    """Conv-BN-IF net, readout Linear, a loss on the mean output (dL/dy the same at every
    step): every parameter's DSR gradient equals the per-step reference."""
    rng = np.random.default_rng(1)
    net = _conv_net(lam, rng)
    m = make_method("dsr", dsr_alpha=alpha, dsr_spread=spread, time_chunk=chunk)
    m.check_network(net)
    x, dy = _data(rng, 5)
    _compare(net, m, x, dy, _Ref(alpha, spread))


@pytest.mark.parametrize("lam, spread, alpha", CASES)
def test_residual_bn_after_sum_equals_per_step_reference(lam, spread, alpha):
    """A preact block pair with BN after the residual sums (per-step fallback), threshold
    training on, a spiking output layer and dL/dy different at every step (the spiking output
    needs only sum_t dL/do[t])."""
    rng = np.random.default_rng(2)
    net = _residual_net(lam, rng)
    m = make_method("dsr", dsr_alpha=alpha, dsr_spread=spread, dsr_train_threshold=True,
                    time_chunk=3)
    m.check_network(net)
    for i, n in enumerate(nn.spiking_layers(net)):  # thresholds differ per layer
        n.v_th_param.data[...] = 0.5 + 0.1 * i
    x, dy = _data(rng, 6, uniform=False)
    got = _compare(net, m, x, dy, _Ref(alpha, spread))
    assert all(np.abs(got[id(n.v_th_param)]).max() > 0 for n in nn.spiking_layers(net)[:3])


def test_streamed_and_fallback_bn_backward_agree():
    """The same network and batch twice: BN on a conv (streamed, collapsed BN backward), then
    BN on ``conv(x) + zero_conv(x)`` (a residual sum: the per-step fallback) -- equal
    gradients of the shared layers, and the output the same."""
    rng = np.random.default_rng(3)
    x, dy = _data(rng, 5)
    runs = []
    for fallback in (False, True):
        r = np.random.default_rng(5)
        conv = nn.Conv2d(2, 4, 3, padding=1, rng=r, dtype=F64)
        bn, lin = nn.BatchNorm(4, dtype=F64), nn.Linear(4 * 16, 3, rng=r, dtype=F64)
        first = conv
        if fallback:
            zero = nn.Conv2d(2, 4, 1, dtype=F64)
            zero.W.data[...] = 0.0
            first = nn.Residual(nn.Sequential(conv), nn.Sequential(zero))
        net = nn.Sequential(first, bn, nn.IF(0.8, reset="soft"),
                            nn.Conv2d(4, 4, 3, padding=1, rng=r, dtype=F64),
                            nn.BatchNorm(4, dtype=F64), nn.IF(0.8, reset="soft"),
                            nn.Flatten(), lin)
        m = make_method("dsr", dsr_alpha=0.5, time_chunk=2)
        m.check_network(net)
        y, g = _flow_grads(net, m, x, dy)
        shared = [conv.W, bn.gamma, bn.beta, lin.W, lin.b]  # conv.b under BN: dL/db = 0
        runs.append((y, [g[id(p)] for p in shared]))
    (y0, g0), (y1, g1) = runs
    np.testing.assert_allclose(y1, y0, rtol=0, atol=1e-12)
    for a, b in zip(g0, g1, strict=True):
        assert np.abs(a).max() > 1e-6
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-9 * np.abs(a).max())


def test_preact_resnet18_dsr_trains_a_step():
    """The bench's network (tiny image): dsr with BN in training checks, runs forward and
    backward, every weight gets a finite gradient."""
    net = preact_resnet18((3, 8, 8), 10, lambda: nn.IF(1.0, reset="soft"), dtype=F64)
    m = make_method("dsr", dsr_alpha=0.5, dsr_train_threshold=True)
    m.check_network(net)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 2, 3, 8, 8))
    _, g = _flow_grads(net, m, x, rng.normal(size=(3, 2, 10)))
    assert all(np.isfinite(v).all() for v in g.values())


def test_rate_with_batchnorm_is_refused():
    rng = np.random.default_rng(0)
    net = _conv_net(1.0, rng)
    with pytest.raises(ValueError, match="BatchNorm"):
        make_method("rate").check_network(net)


def test_dsr_exact_spread_with_lif_and_batchnorm_is_refused():
    """lam < 1 with the exact spread: dL/dI[t] ~ lam^(T-1-t), not the same at every step."""
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="dsr_spread"):
        make_method("dsr").check_network(_conv_net(0.8, rng))
    make_method("dsr", dsr_spread="authors").check_network(_conv_net(0.8, rng))
    make_method("dsr").check_network(_conv_net(1.0, rng))
    net = _conv_net(0.8, rng)
    net.eval()  # eval mode too: dgamma would need the lam-weighted sum of x_hat
    with pytest.raises(ValueError, match="dsr_spread"):
        make_method("dsr").check_network(net)

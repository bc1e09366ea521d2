"""A time-broadcast output gradient (a loss on the time-mean output, SDT) taken as one row.

``sdt_loss_backward`` returns ``dL/dy[t]`` as a read-only view of one row (the same at every
step); the output Linear then computes ``dW = d^T sum_t x[t]`` and ``dx = d W`` once
(functional/linear.py), and the CPU LIF backward kernels read that one row at every step
instead of a copied-out (T, N) gradient (kernels/cpu/neuron.py ``grad_rows``).  Each path is
tested equal to the same computation on the materialised (contiguous) gradient."""

from __future__ import annotations

import numpy as np
import pytest

from pysnn_ref import models, nn
from pysnn_ref.functional.linear import linear_backward, linear_forward
from pysnn_ref.functional.loss import sdt_loss_backward, sdt_loss_forward
from pysnn_ref.kernels import cpu, reference

T, B = 5, 3


def _uniform(rng, shape):
    """A time-broadcast (T, ...) gradient and its materialised copy."""
    row = rng.normal(size=shape[1:])
    return np.broadcast_to(row, shape), np.ascontiguousarray(np.broadcast_to(row, shape))


def test_sdt_gradient_is_a_read_only_broadcast_of_one_row():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(T, B, 4))
    _, cache = sdt_loss_forward(y, np.array([0, 3, 1]))
    dy = sdt_loss_backward(cache)
    assert dy.shape == (T, B, 4) and dy.strides[0] == 0 and not dy.flags.writeable
    # the gradient of CE(mean_t y) by finite differences, at one entry of each step
    eps = 1e-6
    for t in range(T):
        yp = y.copy()
        yp[t, 1, 2] += eps
        ym = y.copy()
        ym[t, 1, 2] -= eps
        lp = sdt_loss_forward(yp, np.array([0, 3, 1]))[0]
        lm = sdt_loss_forward(ym, np.array([0, 3, 1]))[0]
        assert abs((lp - lm) / (2 * eps) - dy[t, 1, 2]) < 1e-8


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("need_dx", [True, False])
def test_linear_backward_of_a_uniform_dout_equals_the_materialised_one(bias, need_dx):
    rng = np.random.default_rng(1)
    x = (rng.random((T, B, 7)) < 0.3).astype(np.float64)
    W = rng.normal(size=(4, 7))
    b = rng.normal(size=4) if bias else None
    _, cache = linear_forward(x, W, b)
    d_b, d_full = _uniform(rng, (T, B, 4))
    dx1, dW1, db1 = linear_backward(d_b, cache, need_dx)
    dx0, dW0, db0 = linear_backward(d_full, cache, need_dx)
    np.testing.assert_allclose(dW1, dW0, rtol=1e-12, atol=1e-14)
    if bias:
        np.testing.assert_allclose(db1, db0, rtol=1e-12, atol=1e-14)
    else:
        assert db1 is None and db0 is None
    if need_dx:
        assert dx1.strides[0] == 0  # passed down as one row
        np.testing.assert_allclose(dx1, dx0, rtol=1e-12, atol=1e-14)
    else:
        assert dx1 is None


@pytest.mark.parametrize("static", [False, True])
@pytest.mark.parametrize("soft,smooth,detach,kind", [(False, False, False, 1),
                                                     (True, True, True, 0)])
def test_lif_backward_kernels_read_one_row_of_a_uniform_do(static, soft, smooth, detach, kind):
    rng = np.random.default_rng(2)
    I = rng.normal(0.8, 1.0, (1 if static else T, 40))
    if static:
        I = np.broadcast_to(I, (T, 40))
    _, u = cpu.lif_forward(I, 0.6, 1.0, soft, smooth, kind, 1.0)
    do_b, do_full = _uniform(rng, (T, 40))
    args = (0.6, 1.0, soft, smooth, detach, kind, 1.0)
    np.testing.assert_array_equal(cpu.lif_backward(do_b, u, *args),
                                  cpu.lif_backward(do_full, u, *args))
    np.testing.assert_array_equal(cpu.lif_backward_time_sum(do_b, u, *args),
                                  cpu.lif_backward_time_sum(do_full, u, *args))
    if not static:  # and the reference kernel on the broadcast view agrees
        np.testing.assert_allclose(cpu.lif_backward(do_b, u, *args),
                                   reference.lif_backward(do_b, u, *args), rtol=1e-12)


@pytest.mark.parametrize("static", [False, True])
def test_lif_avgpool_backward_spreads_a_uniform_dp_once(static):
    rng = np.random.default_rng(3)
    H = W = 6
    N = 2 * 3 * H * W
    I = rng.normal(0.8, 1.0, (1 if static else T, N))
    if static:
        I = np.broadcast_to(I, (T, N))
    args = (0.5, 1.0, False, False, 1, 1.0)
    _, u, _ = cpu.lif_avgpool_forward(I, *args, H, W, 2)
    dp_b, dp_full = _uniform(rng, (T, 2 * 3 * 3 * 3))
    bargs = (0.5, 1.0, False, False, False, 1, 1.0, H, W, 2)
    np.testing.assert_array_equal(cpu.lif_avgpool_backward(dp_b, u, *bargs),
                                  cpu.lif_avgpool_backward(dp_full, u, *bargs))
    np.testing.assert_array_equal(cpu.lif_avgpool_backward_time_sum(dp_b, u, *bargs),
                                  cpu.lif_avgpool_backward_time_sum(dp_full, u, *bargs))


@pytest.mark.parametrize("model", ["mlp", "lenet", "resnet", "vgg7"])
def test_network_bptt_gradients_with_the_broadcast_sdt_gradient(model):
    """The whole BPTT backward of a network from SDT's one-row gradient equals the backward
    from the same gradient materialised (T, B, classes), parameter by parameter."""
    rng = np.random.default_rng(4)
    x = rng.random((B, 1, 12, 12))
    grads = []
    for materialise in (False, True):
        net = models.make_model(model, (1, 12, 12), 10, lambda: nn.LIF(0.5, 0.5), seed=0,
                                dtype=np.float64)
        y = net.forward(np.broadcast_to(x, (T, *x.shape)))
        _, cache = sdt_loss_forward(y, np.array([1, 2, 3]))
        dy = sdt_loss_backward(cache)
        net.backward(np.ascontiguousarray(dy) if materialise else dy, need_dx=False)
        grads.append([p.grad.copy() for p in net.parameters()])
    for g1, g0 in zip(*grads, strict=True):
        np.testing.assert_allclose(g1, g0, rtol=1e-11, atol=1e-14)
    assert any(np.abs(g).max() > 0 for g in grads[0])

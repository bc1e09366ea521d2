"""DSR (Meng et al., CVPR 2022): the backward is the exact gradient of the clamp network (inputs,
weights and the threshold; finite differences, float64), the spiking rate approaches the
representation it differentiates, the authors' spreading, bad input."""

import numpy as np
import pytest

from pysnn_ref.functional.dsr import (
    DSRState,
    bound_threshold,
    dsr_backward,
    dsr_finish,
    dsr_forward,
    dsr_forward_chunk,
    dsr_gain,
    make_dsr_params,
    representation,
)
from pysnn_ref.functional.linear import linear_backward, linear_forward
from pysnn_ref.gradcheck.finite_diff import numerical_gradient, rel_error


def _away_from_kinks(I, lam, v_th, margin=0.05):
    """Keep the neurons whose weighted mean input is not within ``margin`` of 0 or v_th (the
    clamp's kinks, where a finite difference straddles two slopes)."""
    T = I.shape[0]
    w = lam ** np.arange(T - 1, -1, -1)
    Ib = np.tensordot(w / w.sum(), I, axes=1)
    ok = (np.abs(Ib) > margin) & (np.abs(Ib - v_th) > margin)
    return np.ascontiguousarray(I[:, ok])


def _clamp_layer(I, lam, v_th):
    """The clamp network's layer, written independently: a = clamp(sum_t w_t I[t] / W, 0, v_th)."""
    T = I.shape[0]
    w = lam ** np.arange(T - 1, -1, -1)
    return np.clip(np.tensordot(w / w.sum(), I, axes=1), 0.0, v_th)


@pytest.mark.parametrize("lam", [1.0, 0.7])
def test_dsr_backward_is_the_exact_gradient_of_the_clamp_layer(lam):
    """L = sum_t <c[t], a>, a = clamp(Ibar_w, 0, v_th) broadcast to every step: dsr_backward's
    dI and dv_th equal central differences of L in I and in v_th."""
    rng = np.random.default_rng(0)
    T, v_th = 5, 0.8
    I = _away_from_kinks(rng.normal(0.4, 0.8, (T, 60)), lam, v_th)
    assert I.shape[1] > 30
    c = rng.normal(size=I.shape)
    _, cache = dsr_forward(I, lam=lam, v_th=v_th, alpha=0.5)
    dI, dv = dsr_backward(c, cache)
    assert (dsr_gain(cache) == 0).any() and (dsr_gain(cache) == 1).any()
    num = numerical_gradient(lambda: (c * _clamp_layer(I, lam, v_th)).sum(), I)
    assert rel_error(dI, num) < 1e-8
    vt = np.array([v_th])
    num_v = numerical_gradient(lambda: (c * _clamp_layer(I, lam, vt[0])).sum(), vt)
    assert dv != 0.0 and abs(dv - num_v[0]) < 1e-6 * max(1.0, abs(dv))


@pytest.mark.parametrize("lam", [1.0, 0.8])
def test_two_layer_clamp_network_gradient(lam):
    """x (time-varying) -> Linear -> DSR -> Linear -> DSR -> readout L = 0.5 |a2 - y|^2, the
    clamp network (each DSR layer outputs a = clamp(Ibar_w, 0, v_th) at every step, the readout
    is the weighted rate).  dsr_backward chained with linear_backward gives every weight's and
    threshold's exact gradient."""
    rng = np.random.default_rng(1)
    T, B, n0, n1, n2 = 4, 3, 5, 6, 4
    x = rng.normal(0.3, 1.0, (T, B, n0))
    W1, W2 = rng.normal(0, 0.6, (n1, n0)), rng.normal(0, 0.6, (n2, n1))
    th = np.array([0.9, 0.7])
    y = rng.uniform(0, 0.5, (B, n2))
    w = lam ** np.arange(T - 1, -1, -1)
    w = w / w.sum()

    def loss():
        a1 = _clamp_layer(x @ W1.T, lam, th[0])
        a2 = _clamp_layer(np.broadcast_to(a1 @ W2.T, (T, B, n2)), lam, th[1])
        return 0.5 * ((a2 - y) ** 2).sum()

    I1, c1 = linear_forward(x, W1, None)
    _, d1 = dsr_forward(I1, lam=lam, v_th=th[0])
    a1 = np.broadcast_to(representation(d1.Ibar, th[0]), (T, B, n1)).copy()
    I2, c2 = linear_forward(a1, W2, None)
    _, d2 = dsr_forward(I2, lam=lam, v_th=th[1])
    a2 = representation(d2.Ibar, th[1])
    do2 = w[:, None, None] * (a2 - y)                   # d/do2[t] of the weighted-rate readout
    dI2, dth2 = dsr_backward(do2, d2)
    do1, dW2, _ = linear_backward(dI2, c2)
    dI1, dth1 = dsr_backward(do1, d1)
    _, dW1, _ = linear_backward(dI1, c1, need_dx=False)
    for got, param in ((dW1, W1), (dW2, W2), (np.array([dth1, dth2]), th)):
        num = numerical_gradient(loss, param)
        assert rel_error(got, num) < 1e-7, (rel_error(got, num), param.shape)
    assert np.abs(dW1).max() > 0 and np.abs(dW2).max() > 0


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_if_spike_rate_approaches_the_representation(alpha):
    """IF, constant input: the spike rate (amplitude v_th) is within v_th / T of
    clamp(I, 0, v_th), the representation the backward differentiates (alpha = 1 is DSR-noF)."""
    rng = np.random.default_rng(2)
    T, v_th = 40, 0.6
    I0 = rng.uniform(-0.5, 1.2, 500)
    o, cache = dsr_forward(np.broadcast_to(I0, (T, 500)).copy(), lam=1.0, v_th=v_th,
                           alpha=alpha)
    assert set(np.unique(o)) == {0.0, v_th}
    err = np.abs(o.mean(0) - np.clip(I0, 0, v_th))
    assert err.max() <= v_th / T + 1e-12
    np.testing.assert_allclose(cache.Ibar, I0, rtol=1e-12)


def test_authors_spread_equals_exact_where_it_should():
    """The authors' LIF backward (T-weighted G, spread 1/T) equals the exact one for IF; for LIF
    with an upstream gradient that is the same at every step it has the same G (the time sum of
    dI) and dL/dv_th but spreads G uniformly instead of by w_t / W; at a weighted-rate readout
    G is T sum w^2 / W^2 times larger (the authors' readout factor)."""
    rng = np.random.default_rng(3)
    T = 6
    I = rng.normal(0.5, 0.5, (T, 2, 40))
    for lam in (1.0, 0.8):
        _, ce = dsr_forward(I, lam=lam, v_th=1.0, spread="exact")
        _, ca = dsr_forward(I, lam=lam, v_th=1.0, spread="authors")
        g = np.broadcast_to(rng.normal(size=(2, 40)), (T, 2, 40)).copy()
        ge, ga = dsr_backward(g, ce), dsr_backward(g, ca)
        assert rel_error(ge[0].sum(0), ga[0].sum(0)) < 1e-12 and abs(ge[1] - ga[1]) < 1e-9
        if lam == 1.0:
            assert rel_error(ge[0], ga[0]) < 1e-12
        else:
            assert rel_error(ge[0], ga[0]) > 1e-2
    w = 0.8 ** np.arange(T - 1, -1, -1)
    w = w / w.sum()
    do = w[:, None, None] * np.ones((T, 2, 40))         # readout of the weighted rate
    (de, _), (da, _) = dsr_backward(do, ce), dsr_backward(do, ca)
    m = dsr_gain(ce) > 0
    assert m.any()
    np.testing.assert_allclose(da.sum(0)[m] / de.sum(0)[m], T * (w ** 2).sum(), rtol=1e-12)


def test_streamed_chunks_equal_one_pass():
    rng = np.random.default_rng(4)
    I = rng.normal(0.5, 1.0, (7, 3, 20))
    p = make_dsr_params(lam=0.9, v_th=1.0, alpha=0.3)
    o, cache = dsr_forward(I, lam=0.9, v_th=1.0, alpha=0.3)
    st = DSRState.zeros((3, 20), I.dtype)
    parts = [dsr_forward_chunk(I[t0:t0 + 3], st, p) for t0 in (0, 3, 6)]
    assert np.array_equal(np.concatenate(parts), o)
    assert rel_error(dsr_finish(st, p).Ibar, cache.Ibar) < 1e-14


@pytest.mark.parametrize("kwargs,name", [
    (dict(lam=1.5), "lam"), (dict(v_th=0.0), "v_th"), (dict(alpha=0.0), "alpha"),
    (dict(alpha=1.2), "alpha"), (dict(spread="uniform"), "spread")])
def test_bad_parameters_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        dsr_forward(np.zeros((3, 2, 4)), **kwargs)


def test_bad_arrays_name_themselves():
    with pytest.raises(ValueError, match="I must"):
        dsr_forward(np.zeros(4))
    with pytest.raises(ValueError, match="I must"):
        dsr_forward(np.zeros((3, 4), dtype=np.int64))
    _, cache = dsr_forward(np.zeros((3, 2, 4)))
    with pytest.raises(ValueError, match="do must have shape"):
        dsr_backward(np.zeros((2, 2, 4)), cache)
    p = make_dsr_params()
    with pytest.raises(ValueError, match="I must have shape"):
        dsr_forward_chunk(np.zeros((3, 2, 5)), DSRState.zeros((2, 4), np.float64), p)
    with pytest.raises(ValueError, match="no time steps"):
        dsr_finish(DSRState.zeros((2, 4), np.float64), p)
    with pytest.raises(ValueError, match="v_th_bound"):
        bound_threshold(0.3, -1.0)
    assert bound_threshold(1e-5, 5e-4) == 5e-4 and bound_threshold(0.3) == 0.3

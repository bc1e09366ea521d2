"""Rate-based backpropagation (Yu et al., NeurIPS 2024): the eligibility e is the exact derivative
of the firing rate with respect to a shift of every step's input (finite differences, float64,
smooth mode, every reset / detach combination); the backward is the exact gradient of the
linearised rate network; T = 1 is BPTT; streaming; bad input."""

import numpy as np
import pytest

from pysnn_ref.functional.linear import LinearCache, linear_backward
from pysnn_ref.functional.neuron import lif_backward, lif_forward, make_neuron_params
from pysnn_ref.functional.rate import (
    RateState,
    rate_backward,
    rate_finish,
    rate_forward,
    rate_forward_chunk,
)
from pysnn_ref.gradcheck.finite_diff import numerical_gradient, rel_error

LAM, V_TH = 0.6, 0.8


def _rate(I, c, soft, o_frozen=None):
    """Independent forward: the smooth-mode (sigmoid, slope 4) firing rate of LIF neurons fed
    I[t] + c; with ``o_frozen`` the reset uses those spikes as constants (detach_reset)."""
    v = np.zeros(I.shape[1:])
    r, os_ = 0.0, []
    for t in range(I.shape[0]):
        u = LAM * v + I[t] + c
        o = 1.0 / (1.0 + np.exp(-4.0 * (u - V_TH)))
        os_.append(o)
        oo = o if o_frozen is None else o_frozen[t]
        v = u - V_TH * oo if soft else u * (1.0 - oo)
        r = r + o
    return r / I.shape[0], np.array(os_)


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("detach", [False, True])
def test_eligibility_is_the_exact_derivative_of_the_rate(reset, detach):
    rng = np.random.default_rng(20 + 2 * detach + (reset == "soft"))
    T, N = 7, 40
    I = rng.normal(0.5, 0.8, (T, N))
    p = make_neuron_params(lam=LAM, v_th=V_TH, reset=reset, surrogate="sigmoid:4", smooth=True,
                           detach_reset=detach)
    _, cache = rate_forward(I, p)
    c = np.zeros(N)
    r0, o0 = _rate(I, c, reset == "soft")
    assert rel_error(cache.r, r0) < 1e-12
    frozen = o0 if detach else None
    num = numerical_gradient(lambda: _rate(I, c, reset == "soft", frozen)[0].sum(), c)
    assert rel_error(cache.e, num) < 1e-8
    if not detach:  # the reset's path matters: the detached eligibility is a different number
        pd = make_neuron_params(lam=LAM, v_th=V_TH, reset=reset, surrogate="sigmoid:4",
                                smooth=True, detach_reset=True)
        assert rel_error(rate_forward(I, pd)[1].e, cache.e) > 1e-3


def test_backward_is_the_exact_gradient_of_the_linearised_rate_network():
    """Two layers, real (Heaviside) spikes in pass 1.  The rate network: r_l = r_l0 + e_l (Ibar_l
    - Ibar_l0) with r0, e, Ibar0 frozen at pass 1, Ibar_1 = xbar W1^T + b1, Ibar_2 = r_1 W2^T + b2,
    L = 0.5 |r_2 - y|^2.  rate_backward chained with linear_backward on rates equals central
    differences in every weight and bias."""
    rng = np.random.default_rng(7)
    T, B, n0, n1, n2 = 6, 3, 5, 7, 4
    x = rng.normal(0.5, 1.0, (T, B, n0))
    W1, b1 = rng.normal(0, 0.8, (n1, n0)), rng.normal(0, 0.3, n1)
    W2, b2 = rng.normal(0, 0.8, (n2, n1)), rng.normal(0, 0.3, n2)
    y = rng.uniform(0, 1, (B, n2))
    p = make_neuron_params(lam=0.5, v_th=0.5, reset="soft", surrogate="sigmoid:4")
    I1 = x @ W1.T + b1
    o1, c1 = rate_forward(I1, p)
    I2 = o1 @ W2.T + b2
    _, c2 = rate_forward(I2, p)
    xbar = x.mean(0)
    Ib1_0, Ib2_0 = I1.mean(0), I2.mean(0)
    np.testing.assert_allclose(Ib2_0, c1.r @ W2.T + b2, rtol=1e-12)  # exact: a linear map
    assert (c1.e > 0).any() and (c2.e > 0).any()

    def loss():
        r1 = c1.r + c1.e * (xbar @ W1.T + b1 - Ib1_0)
        r2 = c2.r + c2.e * (r1 @ W2.T + b2 - Ib2_0)
        return 0.5 * ((r2 - y) ** 2).sum()

    dI2 = rate_backward(c2.r - y, c2)
    dr1, dW2, db2 = linear_backward(dI2, LinearCache(c1.r, W2, True))
    _, dW1, db1 = linear_backward(rate_backward(dr1, c1), LinearCache(xbar, W1, True),
                                  need_dx=False)
    for got, q in ((dW1, W1), (db1, b1), (dW2, W2), (db2, b2)):
        num = numerical_gradient(loss, q)
        assert np.abs(num).max() > 1e-4 and rel_error(got, num) < 1e-8


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("smooth", [False, True])
def test_T1_is_bptt(reset, smooth):
    rng = np.random.default_rng(8)
    I = rng.normal(0.8, 1.0, (1, 3, 50))
    do = rng.normal(size=I.shape)
    p = make_neuron_params(lam=0.5, v_th=1.0, reset=reset, smooth=smooth)
    o, cache = rate_forward(I, p)
    ob, bcache = lif_forward(I, lam=0.5, v_th=1.0, reset=reset, smooth=smooth)
    assert np.array_equal(o, ob) and np.array_equal(cache.r, o[0])
    assert rel_error(rate_backward(do[0], cache), lif_backward(do, bcache)[0]) < 1e-12


def test_streamed_chunks_equal_one_pass():
    rng = np.random.default_rng(9)
    I = rng.normal(0.5, 1.0, (7, 2, 30))
    p = make_neuron_params(lam=0.7, v_th=1.0, reset="hard")
    o, cache = rate_forward(I, p)
    st = RateState.zeros((2, 30), I.dtype)
    parts = [rate_forward_chunk(I[t0:t0 + 2], st, p) for t0 in range(0, 7, 2)]
    got = rate_finish(st)
    assert np.array_equal(np.concatenate(parts), o)
    assert rel_error(got.r, cache.r) < 1e-14 and rel_error(got.e, cache.e) < 1e-14


def test_bad_input_names_the_parameter():
    p = make_neuron_params(lam=0.5, v_th=1.0)
    with pytest.raises(ValueError, match="I must"):
        rate_forward(np.zeros(3), p)
    with pytest.raises(ValueError, match="I must have shape"):
        rate_forward_chunk(np.zeros((2, 3, 4)), RateState.zeros((3, 5), np.float64), p)
    with pytest.raises(ValueError, match="no time steps"):
        rate_finish(RateState.zeros((3, 5), np.float64))
    _, cache = rate_forward(np.zeros((2, 3, 4)), p)
    with pytest.raises(ValueError, match="dr must have shape"):
        rate_backward(np.zeros((3, 5)), cache)
    with pytest.raises(ValueError, match="dr must"):
        rate_backward([1.0], cache)

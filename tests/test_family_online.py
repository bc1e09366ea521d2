"""OTTT (Xiao et al., NeurIPS 2022) and SLTT / SLTT-K (Meng et al., ICCV 2023): the per-step
backward is the exact gradient of the per-step loss with the neuron's temporal dependency cut
(finite differences, float64, smooth mode), run one step at a time as online training does;
T = 1 is BPTT; bad input."""

import numpy as np
import pytest

from pysnn_ref.functional.linear import LinearCache, linear_backward, linear_forward
from pysnn_ref.functional.neuron import lif_backward, lif_forward, make_neuron_params
from pysnn_ref.functional.online import (
    OnlineState,
    online_backward,
    online_forward,
    sample_steps,
)
from pysnn_ref.gradcheck.finite_diff import numerical_gradient, rel_error

LAM, V_TH, K_SIG = 0.6, 0.5, 4.0


def _sigma(x):
    """The smooth-mode spike of the sigmoid surrogate (slope 4), written independently."""
    return 1.0 / (1.0 + np.exp(-K_SIG * x))


def _reset(u, o, soft):
    return u - V_TH * o if soft else u * (1.0 - o)


def _frozen_state(x, P, soft):
    """Base-point forward of the 3-layer net: per step, each neuron's v[t-1] and trace
    a_hat[t-1] (the values the cut objective freezes)."""
    T, B = x.shape[:2]
    W1, b1, W2, b2 = P[:4]
    v1, v2 = np.zeros((B, W1.shape[0])), np.zeros((B, W2.shape[0]))
    a1, a2 = np.zeros_like(v1), np.zeros_like(v2)
    rec = []
    for t in range(T):
        rec.append((v1.copy(), v2.copy(), a1.copy(), a2.copy()))
        u1 = LAM * v1 + x[t] @ W1.T + b1
        o1 = _sigma(u1 - V_TH)
        u2 = LAM * v2 + o1 @ W2.T + b2
        o2 = _sigma(u2 - V_TH)
        v1, v2 = _reset(u1, o1, soft), _reset(u2, o2, soft)
        a1, a2 = LAM * a1 + o1, LAM * a2 + o2
    return rec


def _cut_objective(x, tgt, P, P0, rec, steps, ottt):
    """sum_{t in steps} 0.5 |y[t] - tgt[t]|^2 with v[t-1] (and the trace a_hat[t-1]) frozen at
    ``rec``; OTTT's traced layers compute W (lam a_hat[t-1] + o[t]) + b - W0 lam a_hat[t-1]
    (value W o[t] + b, the weight seeing the trace), W0 the base weight."""
    W1, b1, W2, b2, W3, b3 = P
    L = 0.0
    for t in steps:
        v1, v2, a1, a2 = rec[t]
        o1 = _sigma(LAM * v1 + x[t] @ W1.T + b1 - V_TH)
        pre1 = LAM * a1 + o1 if ottt else o1
        I2 = pre1 @ W2.T + b2 - (LAM * a1 @ P0[2].T if ottt else 0.0)
        o2 = _sigma(LAM * v2 + I2 - V_TH)
        pre2 = LAM * a2 + o2 if ottt else o2
        y = pre2 @ W3.T + b3 - (LAM * a2 @ P0[4].T if ottt else 0.0)
        L += 0.5 * ((y - tgt[t]) ** 2).sum()
    return L


def _online_grads(x, tgt, P, p, steps, ottt):
    """Online training, one step at a time: forward step t, then (for t in ``steps``) its loss's
    backward, weight gradients summed over the steps (OTTT_A; OTTT_O would step the optimizer
    after each).  OTTT's traced layers back-propagate with the trace as their input."""
    W1, b1, W2, b2, W3, b3 = P
    T, B = x.shape[:2]
    st1 = OnlineState.zeros((B, W1.shape[0]), x.dtype, trace=ottt)
    st2 = OnlineState.zeros((B, W2.shape[0]), x.dtype, trace=ottt)
    grads = [np.zeros_like(q) for q in P]
    for t in range(T):
        I1, c1 = linear_forward(x[t:t + 1], W1, b1)
        o1, a1, k1, _ = online_forward(I1, p, st1)
        I2, c2 = linear_forward(o1, W2, b2)
        o2, a2, k2, _ = online_forward(I2, p, st2)
        y, c3 = linear_forward(o2, W3, b3)
        if t not in steps:
            continue                                     # SLTT-K: forward only
        if ottt:
            c2, c3 = LinearCache(a1, W2, True), LinearCache(a2, W3, True)
        do2, dW3, db3 = linear_backward(y - tgt[t:t + 1], c3)
        do1, dW2, db2 = linear_backward(online_backward(do2, k2), c2)
        _, dW1, db1 = linear_backward(online_backward(do1, k1), c1, need_dx=False)
        for g, d in zip(grads, (dW1, db1, dW2, db2, dW3, db3), strict=True):
            g += d
    return grads


@pytest.mark.parametrize("ottt", [False, True], ids=["sltt", "ottt"])
@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("K", [None, 2])
def test_online_backward_is_the_exact_gradient_of_the_cut_objective(ottt, reset, K):
    rng = np.random.default_rng(10 + 2 * ottt + (reset == "soft"))
    T, B, n0, n1, n2, n3 = 5, 2, 4, 5, 4, 3
    x = rng.normal(0.5, 1.0, (T, B, n0))
    tgt = rng.normal(size=(T, B, n3))
    P = [rng.normal(0, 0.8, (n1, n0)), rng.normal(0, 0.3, n1), rng.normal(0, 0.8, (n2, n1)),
         rng.normal(0, 0.3, n2), rng.normal(0, 0.8, (n3, n2)), rng.normal(0, 0.3, n3)]
    P0 = [q.copy() for q in P]
    steps = range(T) if K is None else sample_steps(T, K, rng)
    p = make_neuron_params(lam=LAM, v_th=V_TH, reset=reset, surrogate="sigmoid:4", smooth=True)
    got = _online_grads(x, tgt, P, p, set(int(s) for s in steps), ottt)
    rec = _frozen_state(x, P0, reset == "soft")
    for g, q in zip(got, P, strict=True):
        num = numerical_gradient(lambda: _cut_objective(x, tgt, P, P0, rec, steps, ottt), q)
        assert np.abs(num).max() > 1e-3
        assert rel_error(g, num) < 1e-7, rel_error(g, num)


def test_ottt_and_sltt_differ_and_neither_is_bptt():
    """The objectives differ: OTTT's weight gradient sees the trace, SLTT's the spike; both drop
    the temporal term BPTT keeps (T > 1)."""
    rng = np.random.default_rng(3)
    I = rng.normal(0.6, 1.0, (6, 2, 30))
    do = rng.normal(size=I.shape)
    p = make_neuron_params(lam=0.8, v_th=1.0, reset="soft", surrogate="sigmoid")
    _, _, cache, _ = online_forward(I, p)
    _, bcache = lif_forward(I, lam=0.8, v_th=1.0, reset="soft", surrogate="sigmoid")
    assert rel_error(online_backward(do, cache), lif_backward(do, bcache)) > 1e-2
    st = OnlineState.zeros((2, 30), I.dtype, trace=True)
    o, a_hat, _, _ = online_forward(I, p, st)
    assert a_hat is not None and not np.allclose(a_hat, o)
    np.testing.assert_allclose(a_hat[-1], st.a_hat)


@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("smooth", [False, True])
def test_T1_is_bptt(reset, smooth):
    """At T = 1 there is no past to cut: the online backward is BPTT's."""
    rng = np.random.default_rng(4)
    I = rng.normal(0.8, 1.0, (1, 3, 50))
    do = rng.normal(size=I.shape)
    p = make_neuron_params(lam=0.5, v_th=1.0, reset=reset, smooth=smooth)
    o, _, cache, _ = online_forward(I, p)
    ob, bcache = lif_forward(I, lam=0.5, v_th=1.0, reset=reset, smooth=smooth)
    assert np.array_equal(o, ob)
    assert rel_error(online_backward(do, cache), lif_backward(do, bcache)) < 1e-12


def test_sltt_k_steps():
    rng = np.random.default_rng(5)
    S = sample_steps(8, 3, rng)
    assert len(S) == 3 and len(set(S.tolist())) == 3 and list(S) == sorted(S)
    assert 0 <= S.min() and S.max() < 8
    assert list(sample_steps(4, 4, rng)) == [0, 1, 2, 3]
    I = rng.normal(0.6, 1.0, (8, 2, 10))
    do = rng.normal(size=I.shape)
    p = make_neuron_params(lam=0.7, v_th=1.0)
    _, _, cache, _ = online_forward(I, p)
    full, part = online_backward(do, cache), online_backward(do, cache, steps=S)
    assert np.array_equal(part[S], full[S])
    rest = np.setdiff1d(np.arange(8), S)
    assert not part[rest].any() and full[rest].any()


def test_bad_input_names_the_parameter():
    p = make_neuron_params(lam=0.5, v_th=1.0)
    with pytest.raises(ValueError, match="I must"):
        online_forward(np.zeros(4), p)
    with pytest.raises(ValueError, match="I must have shape"):
        online_forward(np.zeros((1, 2, 4)), p, OnlineState.zeros((2, 5), np.float64))
    _, _, cache, _ = online_forward(np.zeros((3, 2, 4)), p)
    with pytest.raises(ValueError, match="do must have shape"):
        online_backward(np.zeros((2, 2, 4)), cache)
    with pytest.raises(ValueError, match="steps must be"):
        online_backward(np.zeros((3, 2, 4)), cache, steps=[0, 3])
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="K must"):
        sample_steps(4, 5, rng)
    with pytest.raises(ValueError, match="K must"):
        sample_steps(4, 0, rng)
    with pytest.raises(ValueError, match="T must"):
        sample_steps(0, 1, rng)

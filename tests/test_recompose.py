"""Algorithm 1 "Recomposed Computing" (window-partition supplement): forward, backward, FD."""

import numpy as np
import pytest

from pysnn_ref.functional import recompose as R
from pysnn_ref.kernels import reference as ref


def _windows(rng, lead, M):
    return [rng.standard_normal(lead + (M, M)) for _ in range(4)]


def test_sizes():
    assert R.recompose_sizes(3) == (4, 2)
    assert R.recompose_sizes(12) == (16, 8)
    for bad in (0, 4, 2.0, -3):
        with pytest.raises(ValueError, match="M"):
            R.recompose_sizes(bad)


def test_matches_algorithm1_as_written():
    # The two-stage cat/average of Algorithm 1 literally (width first, then height).
    rng = np.random.default_rng(0)
    M = 6
    G1, G2, G3, G4 = _windows(rng, (2, 3), M)
    L, wo = R.recompose_sizes(M)
    h = wo // 2

    def pair(A, B, ax):
        sl = lambda a, b: tuple([slice(None)] * (ax % 4) + [slice(a, b)])  # noqa: E731
        cover = (A[sl(h, 3 * h)] + B[sl(0, wo)]) / 2
        return np.concatenate([A[sl(0, h)], cover, B[sl(wo, 3 * h)]], axis=ax)

    G = pair(pair(G1, G2, 3), pair(G3, G4, 3), 2)
    assert G.shape == (2, 3, L, L)
    np.testing.assert_allclose(R.recompose_forward(G1, G2, G3, G4), G, rtol=0, atol=1e-15)


def test_fast_equals_reference_loop():
    rng = np.random.default_rng(1)
    M = 9
    Gs = _windows(rng, (5,), M)
    np.testing.assert_allclose(R.recompose_forward(*Gs), ref.recompose_forward(*Gs),
                               rtol=0, atol=1e-15)
    dX = rng.standard_normal((5, 12, 12))
    for a, b in zip(R.recompose_backward(dX, M), ref.recompose_backward(dX, M), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-15)


def test_weights_one_half_quarter():
    ones = [np.ones((1, 3, 3))] * 4
    X = R.recompose_forward(*ones)
    np.testing.assert_array_equal(X, np.ones((1, 4, 4)))
    # a spike only in G1's centre-overlap pixel: 1/4 there ("median spike" 0.25)
    G1 = np.zeros((1, 3, 3))
    G1[0, 1, 1] = 1.0
    z = np.zeros((1, 3, 3))
    X = R.recompose_forward(G1, z, z, z)
    assert X[0, 1, 1] == 0.25 and X.sum() == 0.25
    assert R.region_threshold(X, 0.1)[0, 1, 1] == 1.0


def test_backward_finite_difference_float64():
    rng = np.random.default_rng(2)
    M = 6
    Gs = _windows(rng, (2,), M)
    W = rng.standard_normal((2, 8, 8))              # loss = sum(W * X)
    dGs = R.recompose_backward(W, M)
    eps = 1e-6
    for k in range(4):
        for idx in [(0, 0, 0), (1, 2, 3), (0, 5, 5), (1, 3, 1)]:
            Gp = [g.copy() for g in Gs]
            Gm = [g.copy() for g in Gs]
            Gp[k][idx] += eps
            Gm[k][idx] -= eps
            fd = (np.sum(W * R.recompose_forward(*Gp)) - np.sum(W * R.recompose_forward(*Gm))
                  ) / (2 * eps)
            assert dGs[k][idx] == pytest.approx(fd, rel=1e-7, abs=1e-9)


def test_bad_inputs():
    a = np.zeros((2, 3, 3))
    with pytest.raises(ValueError, match="G2"):
        R.recompose_forward(a, np.zeros((2, 6, 6)), a, a)
    with pytest.raises(ValueError, match="G1"):
        R.recompose_forward(np.zeros((2, 3, 4)), a, a, a)
    with pytest.raises(ValueError, match="M"):
        R.recompose_forward(*[np.zeros((2, 4, 4))] * 4)
    with pytest.raises(ValueError, match="dX"):
        R.recompose_backward(np.zeros((2, 5, 5)), 3)
    with pytest.raises(ValueError, match="th_r"):
        R.region_threshold(a, 1.5)


def test_window_layer_backward_fd_and_bptt_only():
    from pysnn_ref.nn import Conv2d, Sequential, WindowRecompose

    rng = np.random.default_rng(3)
    layer = WindowRecompose(Sequential(Conv2d(1, 2, 3, padding=1, rng=rng, dtype=np.float64)),
                            th_r=None)
    x = rng.standard_normal((2, 2, 1, 8, 8))
    W = rng.standard_normal((2, 2, 2, 8, 8))
    layer.forward(x)
    dx = layer.backward(W)
    eps = 1e-6
    for idx in [(0, 0, 0, 0, 0), (1, 1, 0, 4, 3), (0, 1, 0, 7, 7)]:
        xp_, xm = x.copy(), x.copy()
        xp_[idx] += eps
        xm[idx] -= eps
        fd = (np.sum(W * layer.forward(xp_)) - np.sum(W * layer.forward(xm))) / (2 * eps)
        assert dx[idx] == pytest.approx(fd, rel=1e-6, abs=1e-9)
    with pytest.raises(ValueError, match="bptt"):
        layer.flow_begin("ssf", {})

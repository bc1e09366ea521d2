"""Losses of pysnn_ref.functional.loss: finite-difference gradients, plain-loop values, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pysnn_ref.functional.loss import (
    accuracy,
    asf_mse_loss_backward,
    asf_mse_loss_forward,
    log_softmax,
    predict,
    sdt_loss_backward,
    sdt_loss_forward,
    tet_loss_backward,
    tet_loss_forward,
)
from pysnn_ref.gradcheck import numerical_gradient, rel_error

T, B, C = 3, 4, 5


@pytest.fixture
def case() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.normal(0.0, 1.5, size=(T, B, C))
    labels = np.array([0, 3, 4, 3])
    return y, labels


# ----------------------------------------------------------------------------------------------
# independent plain-loop values
# ----------------------------------------------------------------------------------------------

def _ce_loop(z: list[float], k: int) -> float:
    """-log softmax(z)[k], written with math only."""
    return -(z[k] - math.log(sum(math.exp(v) for v in z)))


def sdt_loop(y: np.ndarray, labels: np.ndarray) -> float:
    T_, B_, C_ = y.shape
    total = 0.0
    for b in range(B_):
        z = [sum(y[t, b, c] for t in range(T_)) / T_ for c in range(C_)]
        total += _ce_loop(z, int(labels[b]))
    return total / B_


def tet_loop(y: np.ndarray, labels: np.ndarray, lam: float, phi: float) -> float:
    T_, B_, C_ = y.shape
    l_tet = 0.0
    for t in range(T_):
        ce_t = sum(_ce_loop(list(y[t, b]), int(labels[b])) for b in range(B_)) / B_
        l_tet += ce_t
    l_tet /= T_                                                   # Eq. 9
    l_mse = 0.0
    for t in range(T_):
        mse_t = sum((y[t, b, c] - phi) ** 2 for b in range(B_) for c in range(C_)) / (B_ * C_)
        l_mse += mse_t
    l_mse /= T_                                                   # Eq. 12
    return (1 - lam) * l_tet + lam * l_mse                        # Eq. 13


def asf_loop(y: np.ndarray, labels: np.ndarray, v_th: float) -> float:
    T_, B_, C_ = y.shape
    total = 0.0
    for b in range(B_):
        for c in range(C_):
            u = sum(y[t, b, c] for t in range(T_))
            target = 1.0 if c == labels[b] else 0.0
            total += 0.5 * (target - u / (T_ * v_th)) ** 2
    return total / B_


def test_sdt_value_matches_loop(case):
    y, labels = case
    loss, _ = sdt_loss_forward(y, labels)
    assert loss == pytest.approx(sdt_loop(y, labels), rel=1e-12)


@pytest.mark.parametrize("lam,phi", [(0.05, 1.0), (0.0, 1.0), (1.0, 0.5), (0.3, -0.2)])
def test_tet_value_matches_loop(case, lam, phi):
    y, labels = case
    loss, cache = tet_loss_forward(y, labels, lam=lam, phi=phi)
    assert loss == pytest.approx(tet_loop(y, labels, lam, phi), rel=1e-12)
    assert (1 - lam) * cache["l_tet"] + lam * cache["l_mse"] == pytest.approx(loss, rel=1e-12)


@pytest.mark.parametrize("v_th", [1.0, 2.0, 0.3])
def test_asf_value_matches_loop(case, v_th):
    y, labels = case
    loss, _ = asf_mse_loss_forward(y, labels, v_th=v_th)
    assert loss == pytest.approx(asf_loop(y, labels, v_th), rel=1e-12)


def test_asf_perfect_membrane_gives_zero_loss():
    # u_T = T * v_th * onehot  ->  u_T / (T v_th) = Y exactly
    v_th, labels = 2.0, np.array([1, 0])
    y = np.zeros((4, 2, 3))
    y[:, 0, 1] = v_th
    y[:, 1, 0] = v_th
    loss, cache = asf_mse_loss_forward(y, labels, v_th=v_th)
    assert loss == 0.0
    assert np.all(asf_mse_loss_backward(cache) == 0.0)


def test_tet_upper_bounds_sdt(case):
    # TET paper Lemma 4.1: L_SDT <= L_TET (lam = 0)
    y, labels = case
    assert sdt_loss_forward(y, labels)[0] <= tet_loss_forward(y, labels, lam=0.0)[0]


def test_single_step_tet_without_mse_equals_sdt(case):
    y, labels = case
    y1 = y[:1]
    assert tet_loss_forward(y1, labels, lam=0.0)[0] == pytest.approx(
        sdt_loss_forward(y1, labels)[0], rel=1e-14)


def test_log_softmax_is_stable_for_huge_logits():
    z = np.array([[1000.0, 0.0, -1000.0]])
    out = log_softmax(z, axis=1)
    assert np.all(np.isfinite(out))
    assert out[0, 0] == pytest.approx(0.0, abs=1e-12)
    y = np.array([[[1e4, -1e4]]])
    loss, cache = sdt_loss_forward(y, np.array([1]))
    assert loss == pytest.approx(2e4)
    assert np.all(np.isfinite(sdt_loss_backward(cache)))


# ----------------------------------------------------------------------------------------------
# finite-difference gradients (float64)
# ----------------------------------------------------------------------------------------------

LOSSES = {
    "sdt": (lambda y, lab: sdt_loss_forward(y, lab), sdt_loss_backward),
    "tet": (lambda y, lab: tet_loss_forward(y, lab, lam=0.3, phi=0.7), tet_loss_backward),
    "tet_default": (lambda y, lab: tet_loss_forward(y, lab), tet_loss_backward),
    "asf": (lambda y, lab: asf_mse_loss_forward(y, lab, v_th=0.8), asf_mse_loss_backward),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradient_matches_finite_differences(case, name):
    y, labels = case
    fwd, bwd = LOSSES[name]
    _, cache = fwd(y, labels)
    dy = bwd(cache)
    assert dy.shape == y.shape and dy.dtype == y.dtype
    num = numerical_gradient(lambda: fwd(y, labels)[0], y, h=1e-5)
    assert rel_error(dy, num) <= 1e-7


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_float32_runs_and_matches_float64(case, name):
    y, labels = case
    fwd, bwd = LOSSES[name]
    l64, c64 = fwd(y, labels)
    l32, c32 = fwd(y.astype(np.float32), labels)
    d32 = bwd(c32)
    assert d32.dtype == np.float32
    assert l32 == pytest.approx(l64, rel=1e-5)
    np.testing.assert_allclose(d32, bwd(c64), rtol=1e-4, atol=1e-7)


def test_tet_backward_is_repeatable(case):
    y, labels = case
    _, cache = tet_loss_forward(y, labels)
    np.testing.assert_array_equal(tet_loss_backward(cache), tet_loss_backward(cache))


# ----------------------------------------------------------------------------------------------
# prediction
# ----------------------------------------------------------------------------------------------

def test_predict_and_accuracy_use_time_average():
    # step 0 alone would say class 0; the average over time says class 1
    y = np.zeros((2, 2, 3))
    y[0, 0] = [3.0, 2.0, 0.0]
    y[1, 0] = [-2.0, 2.0, 0.0]
    y[:, 1, 2] = 1.0
    pred = predict(y)
    assert pred.dtype == np.int64
    np.testing.assert_array_equal(pred, [1, 2])
    assert accuracy(y, np.array([1, 2])) == 1.0
    assert accuracy(y, np.array([0, 2])) == 0.5


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fwd", [sdt_loss_forward, tet_loss_forward, asf_mse_loss_forward])
def test_bad_inputs_name_the_parameter(case, fwd):
    y, labels = case
    with pytest.raises(ValueError, match="^y "):
        fwd(y[0], labels)                                  # 2-D
    with pytest.raises(ValueError, match="^y "):
        fwd(np.zeros((T, B, C), dtype=np.int64), labels)   # not float
    with pytest.raises(ValueError, match="^labels .*shape"):
        fwd(y, labels[:-1])
    with pytest.raises(ValueError, match="^labels .*integer"):
        fwd(y, labels.astype(np.float64))
    with pytest.raises(ValueError, match=r"^labels must lie in \[0, 5\)"):
        fwd(y, np.array([0, 1, 5, 2]))
    with pytest.raises(ValueError, match="^labels "):
        fwd(y, np.array([0, -1, 2, 2]))
    with pytest.raises(ValueError, match="^labels "):
        fwd(y, [0, 1, 2, 3])


def test_bad_hyperparameters(case):
    y, labels = case
    for lam in (-0.1, 1.5, float("nan"), "x"):
        with pytest.raises(ValueError, match="^lam "):
            tet_loss_forward(y, labels, lam=lam)
    with pytest.raises(ValueError, match="^phi "):
        tet_loss_forward(y, labels, phi=float("inf"))
    for v_th in (0.0, -1.0, None):
        with pytest.raises(ValueError, match="^v_th "):
            asf_mse_loss_forward(y, labels, v_th=v_th)
    with pytest.raises(ValueError, match="^y "):
        predict(np.zeros((2, 3)))

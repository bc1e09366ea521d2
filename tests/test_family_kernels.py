"""The family's Numba kernels (kernels/cpu_family.py) equal the plain loops
(kernels/reference_family.py): float64 to 1e-10, float32 to float32 round-off; streaming a
sequence in chunks equals running it at once; the functional layer picks the set through
backend.family_kernels_for."""

import numpy as np
import pytest

from pysnn_ref import backend
from pysnn_ref.gradcheck.finite_diff import rel_error
from pysnn_ref.kernels import cpu_family, reference_family

N = 2100 + 37  # more than one block of neurons, not a multiple of it


def _inputs(rng, T, dtype):
    I = rng.normal(0.4, 1.0, (T, N)).astype(dtype)
    I[:, 0] = -1.0           # never fires
    I[:, 1] = 5.0            # fires every step
    I[:, 2] = 1.0            # at threshold (v_th = 1)
    return I


def _close(a, b, dtype):
    tol = 1e-10 if dtype == np.float64 else 2e-5
    assert rel_error(a, b) <= tol, rel_error(a, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("lam,alpha", [(1.0, 1.0), (0.8, 0.4)])
def test_dsr_kernels_equal_reference(dtype, lam, alpha):
    rng = np.random.default_rng(3)
    I = _inputs(rng, 6, dtype)
    out = {}
    for mod in (reference_family, cpu_family):
        v, sI = np.zeros(N, dtype), np.zeros(N, dtype)
        o = np.concatenate([mod.dsr_forward(I[t0:t0 + 4], v, sI, lam, 1.0, alpha)
                            for t0 in (0, 4)])          # two chunks
        out[mod] = (o, v, sI)
    for x, y in zip(out[reference_family], out[cpu_family], strict=True):
        _close(x, y, dtype)
    o = out[cpu_family][0]
    assert set(np.unique(o)) <= {0.0, 1.0} and 0 < o.mean() < 1
    do = rng.normal(size=I.shape).astype(dtype)
    Ibar = out[reference_family][2] / 6
    gw, c = rng.uniform(0.5, 1.5, 6), rng.uniform(0.0, 0.3, 6)
    d_r, v_r = reference_family.dsr_backward(do, Ibar, gw, c, 1.0)
    d_c, v_c = cpu_family.dsr_backward(do, Ibar, gw, c, 1.0)
    _close(d_r, d_c, dtype)
    assert abs(v_r - v_c) <= (1e-9 if dtype == np.float64 else 1e-3) * max(1.0, abs(v_r))
    assert v_r != 0.0 and d_r.dtype == d_c.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("soft,smooth,kind", [(False, False, 1), (True, False, 2),
                                              (False, True, 2), (True, True, 4)])
def test_online_kernels_equal_reference(dtype, soft, smooth, kind):
    rng = np.random.default_rng(4)
    I = _inputs(rng, 5, dtype)
    out = {}
    for mod in (reference_family, cpu_family):
        v, tr = np.zeros(N, dtype), np.zeros(N, dtype)
        parts = [mod.online_forward(I[t:t + 1], v, tr, 0.7, 1.0, soft, smooth, kind, 0.9)
                 for t in range(5)]                     # one step at a time
        out[mod] = [np.concatenate(z) for z in zip(*parts, strict=True)] + [v, tr]
        whole = mod.online_forward(I, np.zeros(N, dtype), np.zeros(N, dtype), 0.7, 1.0, soft,
                                   smooth, kind, 0.9)
        for x, y in zip(whole, out[mod][:3], strict=True):
            assert np.array_equal(x, y)                  # streaming changes nothing
        _, _, no_trace = mod.online_forward(I, np.zeros(N, dtype), np.zeros(0, dtype), 0.7,
                                            1.0, soft, smooth, kind, 0.9)
        assert no_trace.shape == (5, 0)
    for x, y in zip(out[reference_family], out[cpu_family], strict=True):
        _close(x, y, dtype)
    o, u, a_hat = out[cpu_family][:3]
    np.testing.assert_allclose(a_hat[1], 0.7 * a_hat[0] + o[1], rtol=1e-6)
    do = rng.normal(size=I.shape).astype(dtype)
    _close(reference_family.online_backward(do, u, 1.0, kind, 0.9),
           cpu_family.online_backward(do, u, 1.0, kind, 0.9), dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("soft,detach", [(False, False), (False, True), (True, False),
                                         (True, True)])
@pytest.mark.parametrize("smooth", [False, True])
def test_rate_kernels_equal_reference(dtype, soft, detach, smooth):
    rng = np.random.default_rng(5)
    I = _inputs(rng, 6, dtype)
    out = {}
    for mod in (reference_family, cpu_family):
        st = [np.zeros(N, dtype), np.ones(N, dtype), np.zeros(N, dtype), np.zeros(N, dtype)]
        o = np.concatenate([mod.rate_forward(I[t0:t0 + 3], *st, 0.6, 1.0, soft, smooth, detach,
                                             2, 4.0) for t0 in (0, 3)])
        out[mod] = [o, *st]
    for x, y in zip(out[reference_family], out[cpu_family], strict=True):
        _close(x, y, dtype)


def test_functional_picks_the_kernel_set():
    from pysnn_ref.functional.neuron import make_neuron_params
    from pysnn_ref.functional.online import online_forward

    I = np.random.default_rng(0).normal(0.5, 1.0, (4, 3, 50))
    p = make_neuron_params(lam=0.5, v_th=1.0, reset="soft")
    assert backend.family_kernels_for(I) is cpu_family
    o_c, _, c_c, _ = online_forward(I, p)
    with backend.use_cpu_kernels("reference"):
        assert backend.family_kernels_for(I) is reference_family
        o_r, _, c_r, _ = online_forward(I, p)
    assert np.array_equal(o_c, o_r) and rel_error(c_c.u, c_r.u) <= 1e-12

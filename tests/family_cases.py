"""The method family's kernel cases, shared by the CPU test (``test_family_kernels.py``:
``kernels.cpu_family``) and the CUDA simulator test (``test_cuda_family_sim.py``:
``kernels.cuda_family``): each runs the NumPy reference (``kernels.reference_family``) and a
fast kernel set on the same inputs and asserts them equal (float64 1e-10, float32 2e-5)."""

from __future__ import annotations

from types import ModuleType

import numpy as np

from pysnn_ref.gradcheck.finite_diff import rel_error
from pysnn_ref.kernels import reference_family as rf


def inputs(rng: np.random.Generator, T: int, N: int, dtype) -> np.ndarray:
    """Currents (T, N) with three fixed neurons: silent, saturated, at threshold."""
    I = rng.normal(0.4, 1.0, (T, N)).astype(dtype)
    I[:, 0] = -1.0           # never fires
    I[:, 1] = 5.0            # fires every step
    I[:, 2] = 1.0            # at threshold (v_th = 1): H(0) = 1
    return I


def close(a, b, dtype) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    tol = 1e-10 if dtype == np.float64 else 2e-5
    assert rel_error(a, b) <= tol, rel_error(a, b)


def dsr_case(fast: ModuleType, N: int, dtype, lam: float, alpha: float) -> None:
    """DSR's forward over two chunks (state carried in place) and its backward."""
    rng = np.random.default_rng(3)
    I = inputs(rng, 6, N, dtype)
    out = {}
    for mod in (rf, fast):
        v, sI = np.zeros(N, dtype), np.zeros(N, dtype)
        o = np.concatenate([mod.dsr_forward(I[t0:t0 + 4], v, sI, lam, 1.0, alpha)
                            for t0 in (0, 4)])
        out[mod] = (o, v, sI)
    for x, y in zip(out[rf], out[fast], strict=True):
        close(x, y, dtype)
    o = out[fast][0]
    assert set(np.unique(o)) <= {0.0, 1.0} and 0 < o.mean() < 1
    do = rng.normal(size=I.shape).astype(dtype)
    Ibar = out[rf][2] / 6
    gw, c = rng.uniform(0.5, 1.5, 6), rng.uniform(0.0, 0.3, 6)
    d_r, v_r = rf.dsr_backward(do, Ibar, gw, c, 1.0)
    d_f, v_f = fast.dsr_backward(do, Ibar, gw, c, 1.0)
    close(d_r, d_f, dtype)
    assert v_r != 0.0 and abs(v_r - v_f) <= (1e-9 if dtype == np.float64 else 1e-3) * abs(v_r)


def online_case(fast: ModuleType, N: int, T: int, dtype, soft: bool, smooth: bool,
                kind: int) -> None:
    """OTTT / SLTT's neuron one step at a time (and all T at once: the same), the trace, and
    the per-step backward."""
    rng = np.random.default_rng(4)
    I = inputs(rng, T, N, dtype)
    args = (0.7, 1.0, soft, smooth, kind, 0.9)
    out = {}
    for mod in (rf, fast):
        v, tr = np.zeros(N, dtype), np.zeros(N, dtype)
        parts = [mod.online_forward(I[t:t + 1], v, tr, *args) for t in range(T)]
        out[mod] = [np.concatenate(z) for z in zip(*parts, strict=True)] + [v, tr]
        whole = mod.online_forward(I, np.zeros(N, dtype), np.zeros(N, dtype), *args)
        for x, y in zip(whole, out[mod][:3], strict=True):
            assert np.array_equal(x, y)                  # streaming changes nothing
        _, _, no_trace = mod.online_forward(I, np.zeros(N, dtype), np.zeros(0, dtype), *args)
        assert no_trace.shape == (T, 0)
    for x, y in zip(out[rf], out[fast], strict=True):
        close(x, y, dtype)
    o, u, a_hat = out[fast][:3]
    np.testing.assert_allclose(a_hat[1], 0.7 * a_hat[0] + o[1], rtol=1e-6)
    do = rng.normal(size=I.shape).astype(dtype)
    close(rf.online_backward(do, u, 1.0, kind, 0.9), fast.online_backward(do, u, 1.0, kind, 0.9),
          dtype)


def rate_case(fast: ModuleType, N: int, dtype, soft: bool, detach: bool, smooth: bool,
              kind: int, a: float) -> None:
    """Rate-BP's forward over two chunks: spikes, state and the eligibility sums."""
    rng = np.random.default_rng(5)
    I = inputs(rng, 6, N, dtype)
    out = {}
    for mod in (rf, fast):
        st = [np.zeros(N, dtype), np.ones(N, dtype), np.zeros(N, dtype), np.zeros(N, dtype)]
        o = np.concatenate([mod.rate_forward(I[t0:t0 + 3], *st, 0.6, 1.0, soft, smooth, detach,
                                             kind, a) for t0 in (0, 3)])
        out[mod] = [o, *st]
    for x, y in zip(out[rf], out[fast], strict=True):
        close(x, y, dtype)
    sO, sE = out[fast][3], out[fast][4]
    assert np.any(sE != 0)
    if not smooth:  # binary spikes: the silent and the saturated neuron counted exactly
        assert sO[0] == 0 and sO[1] == 6

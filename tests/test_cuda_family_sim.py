"""numba.cuda kernels of the family (kernels/cuda_family.py) vs the reference loops
(kernels/reference_family.py), run by numba's CUDA simulator.

Runs only where ``NUMBA_ENABLE_CUDASIM=1`` was set before numba was imported; the default suite
runs it that way through tests/test_cuda_runner.py.  By hand::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q -m cudasim tests/test_cuda_family_sim.py

Sizes are tiny (the simulator runs every thread as Python): N = 300 neurons, i.e. three
128-thread blocks with a partial last one; T <= 6, streamed in chunks so that the state carried
in place is exercised.
"""

import os

import numpy as np
import pytest

pytestmark = pytest.mark.cudasim


def _simulator_reason() -> str | None:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        return ("needs the numba.cuda simulator: run with NUMBA_ENABLE_CUDASIM=1 set before numba "
                "is imported (tests/test_cuda_runner.py does this in a subprocess)")
    import numba

    if not numba.config.ENABLE_CUDASIM:
        return "NUMBA_ENABLE_CUDASIM=1 was set after numba was imported"
    try:
        from numba import cuda  # noqa: F401
    except ImportError as e:
        return f"numba.cuda cannot be imported ({e}); pip install numba-cuda"
    return None


_reason = _simulator_reason()
if _reason is not None:
    pytest.skip(_reason, allow_module_level=True)

from pysnn_ref.gradcheck import rel_error  # noqa: E402
from pysnn_ref.kernels import cuda_family as cf  # noqa: E402
from pysnn_ref.kernels import reference_family as rf  # noqa: E402

N = 300


def _inputs(rng, T, dtype):
    I = rng.normal(0.4, 1.0, (T, N)).astype(dtype)
    I[:, 0] = -1.0           # never fires
    I[:, 1] = 5.0            # fires every step
    I[:, 2] = 1.0            # at threshold (v_th = 1): H(0) = 1
    return I


def _close(a, b, dtype):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype
    tol = 1e-10 if dtype == np.float64 else 2e-5
    assert rel_error(a, b) <= tol, rel_error(a, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("lam,alpha", [(1.0, 1.0), (0.8, 0.4)])
def test_dsr_cuda_equals_reference(dtype, lam, alpha):
    rng = np.random.default_rng(3)
    I = _inputs(rng, 6, dtype)
    out = {}
    for mod in (rf, cf):
        v, sI = np.zeros(N, dtype), np.zeros(N, dtype)
        o = np.concatenate([mod.dsr_forward(I[t0:t0 + 4], v, sI, lam, 1.0, alpha)
                            for t0 in (0, 4)])          # two chunks, state carried in place
        out[mod] = (o, v, sI)
    for x, y in zip(out[rf], out[cf], strict=True):
        _close(x, y, dtype)
    assert 0 < out[cf][0].mean() < 1
    do = rng.normal(size=I.shape).astype(dtype)
    Ibar = out[rf][2] / 6
    gw, c = rng.uniform(0.5, 1.5, 6), rng.uniform(0.0, 0.3, 6)
    d_r, v_r = rf.dsr_backward(do, Ibar, gw, c, 1.0)
    d_c, v_c = cf.dsr_backward(do, Ibar, gw, c, 1.0)
    _close(d_r, d_c, dtype)
    assert v_r != 0.0 and abs(v_r - v_c) <= (1e-9 if dtype == np.float64 else 1e-3) * abs(v_r)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("soft,smooth,kind", [(False, False, 1), (True, False, 2),
                                              (False, True, 2), (True, True, 4)])
def test_online_cuda_equals_reference(dtype, soft, smooth, kind):
    rng = np.random.default_rng(4)
    I = _inputs(rng, 4, dtype)
    out = {}
    for mod in (rf, cf):
        v, tr = np.zeros(N, dtype), np.zeros(N, dtype)
        parts = [mod.online_forward(I[t:t + 1], v, tr, 0.7, 1.0, soft, smooth, kind, 0.9)
                 for t in range(4)]                     # one step at a time (OTTT / SLTT)
        out[mod] = [np.concatenate(z) for z in zip(*parts, strict=True)] + [v, tr]
    for x, y in zip(out[rf], out[cf], strict=True):
        _close(x, y, dtype)
    _, _, no_trace = cf.online_forward(I, np.zeros(N, dtype), np.zeros(0, dtype), 0.7, 1.0,
                                       soft, smooth, kind, 0.9)
    assert no_trace.shape == (4, 0)
    u = out[rf][1]
    do = rng.normal(size=I.shape).astype(dtype)
    _close(rf.online_backward(do, u, 1.0, kind, 0.9), cf.online_backward(do, u, 1.0, kind, 0.9),
           dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("soft,detach_reset,kind", [(False, False, 2), (False, True, 1),
                                                    (True, False, 3), (True, True, 2)])
def test_rate_cuda_equals_reference(dtype, soft, detach_reset, kind):
    rng = np.random.default_rng(5)
    I = _inputs(rng, 6, dtype)
    out = {}
    for mod in (rf, cf):
        state = [np.zeros(N, dtype), np.ones(N, dtype), np.zeros(N, dtype), np.zeros(N, dtype)]
        o = np.concatenate([mod.rate_forward(I[t0:t0 + 3], *state, 0.6, 1.0, soft, False,
                                             detach_reset, kind, 1.0) for t0 in (0, 3)])
        out[mod] = [o, *state]
    for x, y in zip(out[rf], out[cf], strict=True):
        _close(x, y, dtype)
    sO, sE = out[cf][3], out[cf][4]
    assert sO[0] == 0 and sO[1] == 6 and np.any(sE != 0)  # silent / saturated neuron counted

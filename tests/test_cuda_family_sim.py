"""numba.cuda kernels of the family (kernels/cuda_family.py) vs the reference loops
(kernels/reference_family.py), run by numba's CUDA simulator.

Runs only where ``NUMBA_ENABLE_CUDASIM=1`` was set before numba was imported; the default suite
runs it that way through tests/test_cuda_runner.py.  By hand::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest -q -m cudasim tests/test_cuda_family_sim.py

The cases are tests/family_cases.py's (shared with the CPU kernels' test). Sizes are tiny (the
simulator runs every thread as Python): N = 300 neurons, i.e. three 128-thread blocks with a
partial last one; T <= 6, streamed in chunks so that the state carried in place is exercised.
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

from family_cases import dsr_case, online_case, rate_case  # noqa: E402

from pysnn_ref.kernels import cuda_family as cf  # noqa: E402

N = 300


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("lam,alpha", [(1.0, 1.0), (0.8, 0.4)])
def test_dsr_cuda_equals_reference(dtype, lam, alpha):
    dsr_case(cf, N, dtype, lam, alpha)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("soft,smooth,kind", [(False, False, 1), (True, False, 2),
                                              (False, True, 2), (True, True, 4)])
def test_online_cuda_equals_reference(dtype, soft, smooth, kind):
    online_case(cf, N, 4, dtype, soft, smooth, kind)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("soft,detach_reset,kind", [(False, False, 2), (False, True, 1),
                                                    (True, False, 3), (True, True, 2)])
def test_rate_cuda_equals_reference(dtype, soft, detach_reset, kind):
    rate_case(cf, N, dtype, soft, detach_reset, False, kind, 1.0)

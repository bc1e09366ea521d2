"""The family's Numba kernels (kernels/cpu_family.py) equal the plain loops
(kernels/reference_family.py): float64 to 1e-10, float32 to float32 round-off; streaming a
sequence in chunks equals running it at once; the functional layer picks the set through
backend.family_kernels_for.  The cases are tests/family_cases.py's, shared with the CUDA
simulator test."""

import numpy as np
import pytest
from family_cases import dsr_case, online_case, rate_case

from pysnn_ref import backend
from pysnn_ref.gradcheck.finite_diff import rel_error
from pysnn_ref.kernels import cpu_family, reference_family

N = 2100 + 37  # more than one block of neurons, not a multiple of it


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("lam,alpha", [(1.0, 1.0), (0.8, 0.4)])
def test_dsr_kernels_equal_reference(dtype, lam, alpha):
    dsr_case(cpu_family, N, dtype, lam, alpha)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("soft,smooth,kind", [(False, False, 1), (True, False, 2),
                                              (False, True, 2), (True, True, 4)])
def test_online_kernels_equal_reference(dtype, soft, smooth, kind):
    online_case(cpu_family, N, 5, dtype, soft, smooth, kind)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("soft,detach", [(False, False), (False, True), (True, False),
                                         (True, True)])
@pytest.mark.parametrize("smooth", [False, True])
def test_rate_kernels_equal_reference(dtype, soft, detach, smooth):
    rate_case(cpu_family, N, dtype, soft, detach, smooth, 2, 4.0)


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

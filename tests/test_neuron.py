"""LIF/IF neurons: reference vs Numba kernels, exact BPTT vs finite differences, bad input."""

import numpy as np
import pytest

from pysnn_ref import backend
from pysnn_ref.functional.neuron import lif_backward, lif_forward
from pysnn_ref.functional.surrogate import SURROGATE_KINDS, get_surrogate
from pysnn_ref.gradcheck import check_neuron, rel_error
from pysnn_ref.kernels import cpu, reference

CONFIGS = [(soft, smooth, kind) for soft in (False, True) for smooth in (False, True)
           for kind in range(5)]


def _edge_inputs(rng):
    T, N = 7, 40
    I = rng.normal(0.5, 1.0, (T, N))
    I[:, 0] = -1.0           # never fires
    I[:, 1] = 5.0            # fires every step
    I[:, 2] = 1.0            # exactly at threshold (v_th = 1): fires every step, H(0) = 1
    I[:, 3] = 0.0
    I[:, 4] = 0.0
    I[0, 4] = 1.0            # at threshold at t = 0 only
    return I


@pytest.mark.parametrize("soft,smooth,kind", CONFIGS)
@pytest.mark.parametrize("lam", [0.6, 1.0])
def test_numba_kernels_equal_reference(soft, smooth, kind, lam):
    rng = np.random.default_rng(kind + 10 * soft)
    I = _edge_inputs(rng)
    a = 0.9
    o_r, u_r = reference.lif_forward(I, lam, 1.0, soft, smooth, kind, a)
    o_c, u_c = cpu.lif_forward(I, lam, 1.0, soft, smooth, kind, a)
    assert rel_error(o_r, o_c) <= 1e-10 and rel_error(u_r, u_c) <= 1e-10
    do = rng.normal(size=I.shape)
    for detach in (False, True):
        d_r = reference.lif_backward(do, u_r, lam, 1.0, soft, smooth, detach, kind, a)
        d_c = cpu.lif_backward(do, u_c, lam, 1.0, soft, smooth, detach, kind, a)
        assert rel_error(d_r, d_c) <= 1e-10


def test_edge_cases_spike_pattern():
    I = _edge_inputs(np.random.default_rng(0))
    o, _ = cpu.lif_forward(I, 1.0, 1.0, False, False, 1, 1.0)
    assert o[:, 0].sum() == 0 and o[:, 1].all() and o[:, 2].all()
    assert o[0, 4] == 1.0 and o[1:, 4].sum() == 0


def test_T1_and_flows_kernel_equal_reference():
    rng = np.random.default_rng(1)
    for T in (1, 6):
        I = rng.normal(0.7, 1.0, (T, 33))
        for soft in (False, True):
            o_full, _ = reference.lif_forward(I, 0.7, 1.0, soft, False, 1, 1.0)
            outs = {}
            for mod in (reference, cpu):
                v, sI, sO, sOU = (np.zeros(33) for _ in range(4))
                os_ = [mod.lif_forward_flows(I[t0:t0 + 4], v, 0.7, 1.0, soft, False, 1, 1.0,
                                              0.7, sI, sO, sOU) for t0 in range(0, T, 4)]
                outs[mod.__name__] = (np.concatenate(os_), sI, sO, sOU)
            (o1, *s1), (o2, *s2) = outs.values()
            # streaming in chunks reproduces the full forward exactly
            assert np.array_equal(o1, o_full) and np.array_equal(o2, o_full)
            for x, y in zip(s1, s2, strict=True):
                assert rel_error(x, y) <= 1e-10
            w = 0.7 ** np.arange(T - 1, -1, -1)[:, None]
            assert np.allclose(s1[0], (w * I).sum(0)) and np.allclose(s1[1], (w * o_full).sum(0))


@pytest.mark.parametrize("smooth", [False, True])
def test_time_broadcast_current_equals_materialised(smooth):
    """A static current (stride-0 time axis, direct encoding) is read as one row by the Numba
    kernels, not copied T times, and the membrane is not stored (the forward hands back the
    current's row; the backward recomputes u from it); spikes and gradients equal those of the
    materialised current exactly."""
    rng = np.random.default_rng(5)
    I0 = rng.normal(0.6, 1.0, 4100).astype(np.float32)  # > one BLOCK of neurons
    Ib = np.broadcast_to(I0, (7, I0.size))
    I = np.ascontiguousarray(Ib)
    do = rng.normal(size=I.shape).astype(np.float32)
    for soft in (False, True):
        o1, u1 = cpu.lif_forward(Ib, 0.6, 1.0, soft, smooth, 1, 1.0)
        o2, u2 = cpu.lif_forward(I, 0.6, 1.0, soft, smooth, 1, 1.0)
        assert np.array_equal(o1, o2) and u1.shape == (1, I0.size) and np.array_equal(u1[0], I0)
        o3, u3 = reference.lif_forward(I.astype(np.float64), 0.6, 1.0, soft, smooth, 1, 1.0)
        assert np.allclose(u2, u3, atol=1e-5) and np.allclose(o1, o3, atol=1e-5)
        for detach in (False, True):
            args = (0.6, 1.0, soft, smooth, detach, 1, 1.0)
            assert np.array_equal(cpu.lif_backward(do, u1, *args),
                                  cpu.lif_backward(do, u2, *args))
            assert np.array_equal(cpu.lif_backward_time_sum(do, u1, *args),
                                  cpu.lif_backward_time_sum(do, u2, *args))
        sums = []
        for Ic in (Ib, I):
            st = [np.zeros(I0.size, np.float32) for _ in range(4)]
            o = cpu.lif_forward_flows(Ic[:5], *st[:1], 0.6, 1.0, soft, smooth, 1, 1.0, 0.6,
                                      *st[1:])
            sums.append((o, *st))
        for x, y in zip(*sums, strict=True):
            assert np.array_equal(x, y)


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("surrogate", list(SURROGATE_KINDS))
@pytest.mark.parametrize("lam", [0.8, 1.0])
def test_bptt_backward_matches_finite_differences(reset, surrogate, lam):
    assert check_neuron(reset, surrogate, lam) < 1e-6


def test_detach_reset_is_not_the_exact_gradient():
    # the exact recurrence matters: dropping the reset path changes the gradient
    assert check_neuron("hard", "sigmoid", 0.9, detach_reset=True) > 1e-3


@pytest.mark.parametrize("name", list(SURROGATE_KINDS))
def test_surrogate_grad_is_derivative_of_primitive(name):
    sg = get_surrogate(name)
    x = np.linspace(-2.1, 2.1, 97)
    h = 1e-6
    num = (sg.primitive(x + h) - sg.primitive(x - h)) / (2 * h)
    assert np.allclose(sg.grad(x), num, atol=1e-6)
    with backend.use_cpu_kernels("reference"):
        assert np.allclose(sg.grad(x), num, atol=1e-6)


def test_float32_runs_and_matches_float64():
    rng = np.random.default_rng(4)
    I = rng.normal(0.5, 1.0, (10, 8, 16))
    o64, c64 = lif_forward(I, lam=0.5, v_th=0.8)
    o32, c32 = lif_forward(I.astype(np.float32), lam=0.5, v_th=0.8)
    assert o32.dtype == np.float32 and (o32 != o64).mean() < 0.01
    d = lif_backward(np.ones_like(o32), c32)
    assert d.dtype == np.float32 and d.shape == I.shape


@pytest.mark.parametrize("kwargs,match", [
    (dict(lam=0.0), "lam"), (dict(lam=1.5), "lam"), (dict(v_th=0.0), "v_th"),
    (dict(v_th=-1), "v_th"), (dict(reset="zero"), "reset"), (dict(surrogate="gauss"), "surrogate"),
])
def test_bad_parameters(kwargs, match):
    kw = dict(lam=0.5, v_th=1.0)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        lif_forward(np.zeros((3, 2, 4)), **kw)


def test_bad_arrays():
    with pytest.raises(ValueError, match="I"):
        lif_forward(np.zeros((3,)), lam=0.5, v_th=1.0)
    with pytest.raises(ValueError, match="I"):
        lif_forward(np.zeros((0, 2, 3)), lam=0.5, v_th=1.0)
    with pytest.raises(ValueError, match="dtype"):
        lif_forward(np.zeros((3, 2), dtype=np.int64), lam=0.5, v_th=1.0)
    _, cache = lif_forward(np.zeros((3, 2, 4)), lam=0.5, v_th=1.0)
    with pytest.raises(ValueError, match="do"):
        lif_backward(np.zeros((3, 2, 5)), cache)


@pytest.mark.parametrize("kind", range(5))
def test_surrogate_kernels_equal_reference(kind):
    x = np.concatenate([np.linspace(-2.3, 2.3, 301), [-0.5, 0.5, 0.0, -1.0, 1.0]])
    for a in (0.6, 1.0, 3.0):
        assert rel_error(cpu.surrogate_grad(x, kind, a), reference.surrogate_grad(x, kind, a)) \
            <= 1e-10
        assert rel_error(cpu.surrogate_primitive(x, kind, a),
                         reference.surrogate_primitive(x, kind, a)) <= 1e-10


def test_float32_surrogates_compile_to_float32_maths():
    """The CPU kernels' scalar formulas (surrogates, and the spiking LSTM cell built on them)
    are the reference's, compiled per dtype with their float literals in that dtype
    (kernels/retype.py): the float32 code has no float64 value in it (the reference compiled as
    it is had 82 in the surrogates alone -- every literal promoted the maths), and the
    surrogates equal the float64 formulas to float32 precision (away from the branch points)."""
    import re

    from numba import njit

    @njit
    def all_three(x, kind, a):
        cell = cpu.lstm._lstm_cell(x, x, x, x, x, x, False, kind, a)
        back = cpu.lstm._lstm_cell_bwd(x, x, x, x, x, x, x, x, x, kind, a)
        return (cpu.surrogate.grad_t(x, kind, a) + cpu.surrogate.primitive_t(x, kind, a)
                + cpu.surrogate.heaviside_t(x) + cpu.lstm._sigmoid(x) + cell[4] + back[0])

    all_three(np.float32(0.3), 1, np.float32(1.0))
    ir = all_three.inspect_llvm(all_three.signatures[0])
    own = [f for f in re.split(r"\ndefine ", ir)[1:] if "cpython" not in f.split("\n")[0]
           and "cfunc" not in f.split("\n")[0]]  # not the wrappers that box Python floats
    assert own and sum(f.count("double") for f in own) == 0
    x = np.linspace(-1.3, 1.3, 53) + 0.0123
    for kind in range(5):
        for f in (cpu.surrogate_grad, cpu.surrogate_primitive):
            g32 = f(x.astype(np.float32), kind, 1.7)
            assert g32.dtype == np.float32
            assert rel_error(f(x, kind, 1.7), g32) <= 1e-6


@pytest.mark.parametrize("soft", [False, True])
def test_ssf_gain_kernel_equals_reference(soft):
    rng = np.random.default_rng(16)
    FI = rng.normal(0.3, 0.8, (5, 37))
    FI[0, :3] = [0.0, 1.0, -0.0]       # boundaries of the clamp / max(0, .)
    R = rng.uniform(0.5, 3.0, FI.shape)
    R[1, :2] = 2.0                      # exactly at the cutoff r_max: still passes
    g_ref = reference.ssf_gain(FI, R, 1.0, soft, 2.0)
    g_cpu = cpu.ssf_gain(FI, R, 1.0, soft, 2.0)
    assert rel_error(g_cpu, g_ref) <= 1e-10
    assert np.all(g_ref[FI <= 0] == 0)
    if not soft:
        assert np.all(g_ref[R > 2.0] == 0) and np.all(g_ref[1, :2][FI[1, :2] > 0] == 0.5)

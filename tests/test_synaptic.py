"""Current-based (synaptic) LIF: reference loops vs Numba kernels, the two-adjoint BPTT vs finite
differences (float64, smooth mode), alpha = 0 is the LIF, the PSP shape, the layer in networks,
bad input."""

import numpy as np
import pytest

from pysnn_ref import backend, models, nn
from pysnn_ref.functional.loss import sdt_loss_backward, sdt_loss_forward
from pysnn_ref.functional.neuron import lif_backward, lif_forward
from pysnn_ref.functional.synaptic import synaptic_backward, synaptic_forward
from pysnn_ref.gradcheck import check_synaptic, numerical_gradient, rel_error
from pysnn_ref.kernels import cpu, reference
from pysnn_ref.methods import make_method

KINDS = sorted(reference.SURROGATE_KINDS.values())
CONFIGS = [(soft, smooth, kind) for soft in (False, True) for smooth in (False, True)
           for kind in KINDS]


def _edge_inputs(rng, T=7, N=40):
    I = rng.normal(0.3, 0.8, (T, N))
    I[:, 0] = -1.0           # never fires
    I[:, 1] = 5.0            # fires every step
    I[:, 2] = 0.0
    I[0, 3] = 1.0            # one input at t = 0: the PSP alone (v_th = 1: a spike at t = 0)
    I[1:, 3] = 0.0
    return I


@pytest.mark.parametrize("soft,smooth,kind", CONFIGS)
@pytest.mark.parametrize("alpha,lam", [(0.6, 0.8), (1.0, 1.0), (0.0, 0.5)])
def test_numba_kernels_equal_reference_float64(soft, smooth, kind, alpha, lam):
    rng = np.random.default_rng(kind + 10 * soft + 100 * smooth)
    I = _edge_inputs(rng)
    a = 0.9
    o_r, u_r = reference.synaptic_forward(I, alpha, lam, 1.0, soft, smooth, kind, a)
    o_c, u_c = cpu.synaptic_forward(I, alpha, lam, 1.0, soft, smooth, kind, a)
    assert 0 < o_r.mean() < 1
    assert rel_error(o_r, o_c) <= 1e-10 and rel_error(u_r, u_c) <= 1e-10
    do = rng.normal(size=I.shape)
    for detach in (False, True):
        d_r = reference.synaptic_backward(do, u_r, alpha, lam, 1.0, soft, smooth, detach, kind, a)
        d_c = cpu.synaptic_backward(do, u_c, alpha, lam, 1.0, soft, smooth, detach, kind, a)
        assert d_c.dtype == np.float64 and rel_error(d_r, d_c) <= 1e-10


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("smooth", [False, True])
def test_numba_kernels_equal_reference_float32(soft, smooth):
    """float32 in, float32 out; the same spikes as the reference run on the same float32 input
    except where the membrane lands within float32 rounding of the threshold."""
    rng = np.random.default_rng(3)
    I = _edge_inputs(rng, T=9, N=300).astype(np.float32)
    o_r, u_r = reference.synaptic_forward(I, 0.7, 0.8, 1.0, soft, smooth, 2, 4.0)
    o_c, u_c = cpu.synaptic_forward(I, 0.7, 0.8, 1.0, soft, smooth, 2, 4.0)
    assert o_c.dtype == u_c.dtype == np.float32
    assert (np.abs(o_r - o_c) > 1e-4).mean() < 0.01
    same = (np.abs(o_r - o_c) <= 1e-4).all(axis=0)         # neurons whose spikes all agree
    assert same.mean() > 0.95
    assert rel_error(u_r[:, same], u_c[:, same]) <= 1e-5
    do = rng.normal(size=I.shape).astype(np.float32)
    d_r = reference.synaptic_backward(do, u_r, 0.7, 0.8, 1.0, soft, smooth, False, 2, 4.0)
    d_c = cpu.synaptic_backward(do, u_c, 0.7, 0.8, 1.0, soft, smooth, False, 2, 4.0)
    assert d_c.dtype == np.float32 and rel_error(d_r[:, same], d_c[:, same]) <= 1e-4


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_alpha_zero_is_the_lif(reset):
    """alpha = 0: syn[t] = I[t], so spikes, membrane and input gradient are the LIF's."""
    rng = np.random.default_rng(1)
    I = rng.normal(0.6, 1.0, (6, 4, 9))
    o_s, c_s = synaptic_forward(I, alpha=0.0, lam=0.7, v_th=1.0, reset=reset)
    o_l, c_l = lif_forward(I, lam=0.7, v_th=1.0, reset=reset)
    assert np.array_equal(o_s, o_l) and np.array_equal(c_s.u, c_l.u)
    g = rng.normal(size=I.shape)
    assert rel_error(synaptic_backward(g, c_s), lif_backward(g, c_l)) <= 1e-14


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("smooth", [False, True])
def test_forward_is_the_lif_of_the_filtered_current(reset, smooth):
    """The synaptic current is a leaky filter of I; the membrane is a LIF driven by it."""
    rng = np.random.default_rng(2)
    I = rng.normal(0.2, 0.7, (8, 3, 11))
    alpha = 0.75
    syn = np.zeros_like(I)
    for t in range(I.shape[0]):
        syn[t] = (alpha * syn[t - 1] if t else 0.0) + I[t]
    kw = dict(lam=0.6, v_th=1.0, reset=reset, surrogate="sigmoid", smooth=smooth)
    o_s, c_s = synaptic_forward(I, alpha=alpha, **kw)
    o_l, c_l = lif_forward(syn, **kw)
    assert 0 < o_s.mean() < 1
    assert np.allclose(o_s, o_l, rtol=0, atol=1e-12) and np.allclose(c_s.u, c_l.u, atol=1e-12)


@pytest.mark.parametrize("alpha,lam", [(0.8, 0.5), (0.5, 0.8), (0.7, 0.7), (0.0, 0.9)])
def test_psp_is_the_difference_of_two_exponentials(alpha, lam):
    """One unit input at t = 0, threshold out of reach: u[t] = (lam^(t+1) - alpha^(t+1)) /
    (lam - alpha), and (t + 1) lam^t when alpha = lam (the alpha kernel)."""
    T = 12
    I = np.zeros((T, 1))
    I[0] = 1.0
    o, u = cpu.synaptic_forward(I, alpha, lam, 100.0, False, False, 1, 1.0)
    t = np.arange(T)
    if alpha == lam:
        expect = (t + 1) * lam ** t
    else:
        expect = (lam ** (t + 1) - alpha ** (t + 1)) / (lam - alpha)
    assert o.sum() == 0 and np.allclose(u[:, 0], expect, rtol=1e-12)


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("surrogate", list(reference.SURROGATE_KINDS))
@pytest.mark.parametrize("alpha,lam", [(0.6, 0.8), (0.9, 0.5), (1.0, 1.0)])
def test_bptt_backward_matches_finite_differences(reset, surrogate, alpha, lam):
    """The smooth-mode objective sum_t <o[t], G[t]> (float64): the two-adjoint backward is its
    exact gradient with respect to the input current I."""
    assert check_synaptic(reset, surrogate, alpha, lam) < 1e-7


def test_the_synaptic_adjoint_and_the_reset_term_both_matter():
    # dropping the reset path, or forgetting the synaptic adjoint, gives a different gradient
    rng = np.random.default_rng(0)
    I = rng.normal(0.3, 0.6, (6, 3, 4))
    G = rng.normal(size=I.shape)
    kw = dict(alpha=0.6, lam=0.8, v_th=1.0, surrogate="sigmoid", smooth=True)
    num = numerical_gradient(lambda: synaptic_forward(I, **kw)[0], I, G)
    _, c = synaptic_forward(I, **kw)
    assert rel_error(synaptic_backward(G, c), num) < 1e-7
    _, c = synaptic_forward(I, **kw, detach_reset=True)
    assert rel_error(synaptic_backward(G, c), num) > 1e-3
    # the membrane adjoint alone (alpha = 0 in the backward: no dL/dsyn carried back in time)
    u = synaptic_forward(I, **kw)[1].u.reshape(6, -1)
    membrane_only = reference.synaptic_backward(G.reshape(6, -1), u, 0.0, 0.8, 1.0, False, True,
                                                False, reference.SIGMOID, 4.0)
    assert rel_error(membrane_only.reshape(I.shape), num) > 1e-2


def test_reference_and_numba_sets_give_the_same_functional_result():
    rng = np.random.default_rng(6)
    I = rng.normal(0.4, 0.9, (5, 2, 7))
    G = rng.normal(size=I.shape)
    o, c = synaptic_forward(I, alpha=0.5, lam=0.9, v_th=1.0, reset="soft")
    d = synaptic_backward(G, c)
    with backend.use_cpu_kernels("reference"):
        o_r, c_r = synaptic_forward(I, alpha=0.5, lam=0.9, v_th=1.0, reset="soft")
        d_r = synaptic_backward(G, c_r)
    assert np.array_equal(o, o_r) and rel_error(d, d_r) <= 1e-12


def test_time_broadcast_input_equals_materialised():
    rng = np.random.default_rng(8)
    I0 = rng.normal(0.3, 0.5, (2, 5)).astype(np.float32)
    Ib = np.broadcast_to(I0, (6, *I0.shape))
    o_b, c_b = synaptic_forward(Ib, alpha=0.5, lam=0.5, v_th=1.0)
    o_m, c_m = synaptic_forward(np.ascontiguousarray(Ib), alpha=0.5, lam=0.5, v_th=1.0)
    assert np.array_equal(o_b, o_m) and np.array_equal(c_b.u, c_m.u)


def _mlp(rng, reset, smooth=True):
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(6, 5, rng=rng, dtype=np.float64),
        nn.SynapticLIF(alpha=0.6, lam=0.8, v_th=1.0, reset=reset, surrogate="sigmoid",
                       smooth=smooth),
        nn.Linear(5, 3, rng=rng, dtype=np.float64),
    )


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_layer_in_a_network_matches_finite_differences(reset):
    """nn.SynapticLIF inside a Sequential: the SDT loss's gradient (smooth mode, float64) for
    every weight and the input equals central finite differences."""
    rng = np.random.default_rng(4)
    net = _mlp(rng, reset)
    x = rng.normal(0.8, 1.0, (5, 4, 2, 3))
    labels = rng.integers(0, 3, 4)

    def loss():
        return sdt_loss_forward(net.forward(x), labels)[0]

    numeric = {k: numerical_gradient(loss, p.data) for k, p in net.named_parameters().items()}
    num_x = numerical_gradient(loss, x)
    net.zero_grad()
    _, cache = sdt_loss_forward(net(x), labels)
    dx = net.backward(sdt_loss_backward(cache))
    assert 0 < net.layers[2].firing_rate < 1
    for k, p in net.named_parameters().items():
        assert rel_error(p.grad, numeric[k]) < 1e-6, k
    assert rel_error(dx, num_x) < 1e-6


def test_layer_trains_with_bptt_and_refuses_flow_methods():
    rng = np.random.default_rng(0)
    net = _mlp(rng, "hard", smooth=False)
    x = rng.normal(0.8, 1.0, (4, 8, 2, 3))
    labels = rng.integers(0, 3, 8)
    bptt = make_method("bptt")
    bptt.check_network(net)
    net.zero_grad()
    _, c = sdt_loss_forward(bptt.forward(net, x), labels)
    bptt.backward(net, sdt_loss_backward(c))
    assert all(np.abs(p.grad).sum() > 0 for p in net.parameters())
    for method in ("asf", "ssf"):
        with pytest.raises(ValueError, match="SynapticLIF.*bptt"):
            make_method(method).check_network(net)
    with pytest.raises(ValueError, match="bptt"):
        net.layers[2].flow_begin("ssf", {})
    assert "alpha=0.6" in repr(net.layers[2])


def test_as_the_neuron_of_a_model():
    model = models.make_model("lenet", (1, 8, 8), 10, neuron=lambda: nn.SynapticLIF(0.5, 0.5),
                              seed=0)
    x = np.random.default_rng(0).normal(size=(3, 2, 1, 8, 8)).astype(np.float32)
    y = model.forward(x)
    assert y.shape == (3, 2, 10)
    model.zero_grad()
    model.backward(np.ones_like(y), need_dx=False)
    assert all(np.isfinite(p.grad).all() for p in model.parameters())
    assert sum(isinstance(m, nn.SynapticLIF) for m in model.modules()) == 3


@pytest.mark.parametrize("kwargs,match", [
    (dict(alpha=-0.1), "alpha"), (dict(alpha=1.5), "alpha"), (dict(alpha=float("nan")), "alpha"),
    (dict(alpha="a"), "alpha"), (dict(lam=0.0), "lam"), (dict(lam=1.5), "lam"),
    (dict(v_th=0.0), "v_th"), (dict(reset="zero"), "reset"), (dict(surrogate="gauss"), "surrogate"),
])
def test_bad_parameters(kwargs, match):
    kw = dict(alpha=0.5, lam=0.5, v_th=1.0)
    kw.update(kwargs)
    with pytest.raises(ValueError, match=match):
        synaptic_forward(np.zeros((3, 2, 4)), **kw)
    with pytest.raises(ValueError, match=match):
        nn.SynapticLIF(**kw)


def test_bad_arrays():
    with pytest.raises(ValueError, match="I"):
        synaptic_forward(np.zeros((3,)), alpha=0.5, lam=0.5, v_th=1.0)
    with pytest.raises(ValueError, match="I"):
        synaptic_forward(np.zeros((0, 2, 3)), alpha=0.5, lam=0.5, v_th=1.0)
    with pytest.raises(ValueError, match="dtype"):
        synaptic_forward(np.zeros((3, 2), dtype=np.int64), alpha=0.5, lam=0.5, v_th=1.0)
    _, cache = synaptic_forward(np.zeros((3, 2, 4)), alpha=0.5, lam=0.5, v_th=1.0)
    with pytest.raises(ValueError, match="do"):
        synaptic_backward(np.zeros((3, 2, 5)), cache)

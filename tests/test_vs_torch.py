"""BPTT gradients against PyTorch autograd on the same network (pysnn_ref.bench.torch_ref).

PyTorch is not a dependency: this module is skipped where ``torch`` is not importable (run it
in a venv that has torch, e.g. ``/tmp/torchvenv/bin/python -m pytest tests/test_vs_torch.py``).

* float64, smooth mode (the spike is the surrogate's primitive, autograd differentiates it):
  our hand-written BPTT is the exact gradient, so it must agree with autograd to rounding
  (<= 1e-9, max|diff| / max|g| per parameter) -- MLP and conv net with tdBN, hard and soft
  reset, every surrogate, detach_reset, max pooling, a residual block.
* float32, Heaviside spikes (SpikeFunction: Heaviside forward, our surrogate backward):
  <= 1e-4.  Both sides compute the same GEMMs in a different summation order, so a membrane
  within ~1e-7 of the threshold could fire on one side only; the tests check that no spike
  differs (so the bound is meaningful) for these sizes.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pysnn_ref import nn  # noqa: E402
from pysnn_ref.bench.torch_ref import (  # noqa: E402
    build_torch_net,
    compare_spikes,
    gradient_difference,
    torch_gradients,
)
from pysnn_ref.data import make_encoder  # noqa: E402
from pysnn_ref.functional.surrogate import DEFAULT_PARAM  # noqa: E402
from pysnn_ref.gradcheck import method_gradients, rel_error  # noqa: E402

SMOOTH_TOL = 1e-9
FLOAT32_TOL = 1e-4


def _mlp(dtype, reset, surrogate="triangle", smooth=False, detach_reset=False, seed=0):
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(2 * 4 * 4, 24, rng=rng, dtype=dtype),
        nn.LIF(lam=0.8, v_th=1.0, reset=reset, surrogate=surrogate, smooth=smooth,
               detach_reset=detach_reset),
        nn.Linear(24, 16, rng=rng, dtype=dtype),
        nn.LIF(lam=0.8, v_th=1.0, reset=reset, surrogate=surrogate, smooth=smooth,
               detach_reset=detach_reset),
        nn.Linear(16, 5, rng=rng, dtype=dtype),
    )


def _convnet(dtype, reset, surrogate="triangle", smooth=False, pool="avg", seed=0):
    rng = np.random.default_rng(seed)
    Pool = nn.AvgPool2d if pool == "avg" else nn.MaxPool2d
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False, rng=rng, dtype=dtype),
        nn.BatchNorm(4, alpha=1.0, v_th=1.0, dtype=dtype),          # tdBN
        nn.LIF(lam=0.8, v_th=1.0, reset=reset, surrogate=surrogate, smooth=smooth),
        Pool(2),
        nn.Conv2d(4, 6, 3, padding=1, rng=rng, dtype=dtype),
        nn.LIF(lam=0.8, v_th=1.0, reset=reset, surrogate=surrogate, smooth=smooth),
        nn.Flatten(),
        nn.Linear(6 * 2 * 2, 5, rng=rng, dtype=dtype),
    )


def _resnet(dtype, reset, smooth=True, seed=0):
    rng = np.random.default_rng(seed)
    lif = lambda: nn.LIF(lam=0.8, v_th=1.0, reset=reset, surrogate="sigmoid", smooth=smooth)
    main = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, bias=False, rng=rng, dtype=dtype),
                         nn.BatchNorm(3, alpha=0.5, v_th=1.0, dtype=dtype), lif(),
                         nn.Conv2d(3, 3, 3, padding=1, bias=False, rng=rng, dtype=dtype),
                         nn.BatchNorm(3, alpha=0.5, v_th=1.0, dtype=dtype))
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, rng=rng, dtype=dtype), lif(),
                         nn.Residual(main), lif(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 5, rng=rng, dtype=dtype))


def _data(dtype, T=5, B=3, seed=1, scale=1.5):
    rng = np.random.default_rng(seed)
    x = (scale * rng.random((B, 2, 4, 4))).astype(dtype)
    labels = rng.integers(0, 5, B)
    return x, labels, T


def _compare(net, x, labels, T, loss="sdt", static=True):
    """(max rel diff, worst param, ours, theirs) between our BPTT and torch autograd."""
    tnet = build_torch_net(net, static_input=static)
    enc = make_encoder("direct")
    _, ours = method_gradients(net, "bptt", x, labels, loss=loss, T=T, encoder=enc)
    _, theirs, _ = torch_gradients(tnet, x, labels, T, loss)
    d, where = gradient_difference(ours, theirs)
    return d, where, ours, theirs


def _spikes_equal(net, x, T):
    """Every LIF layer's spikes, ours vs torch, identical?"""
    diff, total = compare_spikes(net, build_torch_net(net), x, T)
    assert total > 0
    return diff == 0


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("model", ["mlp", "convnet"])
def test_float64_smooth_agrees(model, reset):
    net = (_mlp if model == "mlp" else _convnet)(np.float64, reset, "sigmoid", smooth=True)
    x, labels, T = _data(np.float64)
    d, where, ours, theirs = _compare(net, x, labels, T)
    assert d <= SMOOTH_TOL, (where, d)
    # nothing trivially zero: every parameter really gets a gradient
    assert all(np.abs(g).max() > 0 for g in theirs.values())


@pytest.mark.parametrize("surrogate", sorted(DEFAULT_PARAM))
def test_every_surrogate_float64_smooth(surrogate):
    net = _mlp(np.float64, "hard", surrogate, smooth=True)
    x, labels, T = _data(np.float64)
    d, where, _, _ = _compare(net, x, labels, T, loss="tet")
    assert d <= SMOOTH_TOL, (where, d)


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_detach_reset_and_asf_mse(reset):
    net = _mlp(np.float64, reset, "atan", smooth=True, detach_reset=True)
    x, labels, T = _data(np.float64)
    d, where, _, _ = _compare(net, x, labels, T, loss="asf-mse")
    assert d <= SMOOTH_TOL, (where, d)


def test_maxpool_and_residual_float64_smooth():
    x, labels, T = _data(np.float64)
    d, where, _, _ = _compare(_convnet(np.float64, "hard", "sigmoid", True, pool="max"),
                              x, labels, T)
    assert d <= SMOOTH_TOL, (where, d)
    d, where, _, _ = _compare(_resnet(np.float64, "soft"), x, labels, T)
    assert d <= SMOOTH_TOL, (where, d)


def test_static_and_repeated_input_give_the_same_torch_gradients():
    net = _convnet(np.float64, "hard", "sigmoid", smooth=True)
    x, labels, T = _data(np.float64)
    _, g_static, _ = torch_gradients(build_torch_net(net, static_input=True), x, labels, T)
    X = np.ascontiguousarray(np.broadcast_to(x, (T, *x.shape)))
    _, g_full, _ = torch_gradients(build_torch_net(net, static_input=False), X, labels, T,
                                   static=False)
    for k in g_full:
        assert rel_error(g_static[k], g_full[k]) < 1e-10, k


def test_torch_lif_loop_takes_its_steps_with_one_unbind():
    """Each LIF loop of the baseline splits its input with one ``unbind`` (its backward stacks the T
    step gradients once), not T indexings ``I[t]``, whose backward each writes a zero tensor of
    the whole (T, ...) input -- O(T^2) memory traffic, which made the baseline 4x slower at
    T = 20 and superlinear in T."""
    net = _mlp(np.float32, "hard")
    x, labels, T = _data(np.float32)
    tnet = build_torch_net(net)
    y = tnet(torch.from_numpy(x), T)
    seen, todo = {}, [y.grad_fn]
    while todo:
        f = todo.pop()
        if f is None or id(f) in seen:
            continue
        seen[id(f)] = type(f).__name__
        todo.extend(g for g, _ in f.next_functions)
    names = list(seen.values())
    lifs = sum(isinstance(m, nn.LIF) for m in net.layers)
    assert lifs >= 1 and names.count("UnbindBackward0") == lifs
    assert "SelectBackward0" not in names


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("model", ["mlp", "convnet"])
def test_float32_heaviside_agrees(model, reset):
    net = (_mlp if model == "mlp" else _convnet)(np.float32, reset, "triangle")
    x, labels, T = _data(np.float32, T=6, B=4)
    assert _spikes_equal(net, x, T)
    d, where, ours, theirs = _compare(net, x, labels, T)
    assert d <= FLOAT32_TOL, (where, d)
    assert all(np.abs(g).max() > 0 for g in theirs.values())


def test_a_wrong_gradient_is_detected():
    """The comparison can fail: a net whose torch twin has a different threshold disagrees."""
    net = _mlp(np.float64, "hard", "sigmoid", smooth=True)
    x, labels, T = _data(np.float64)
    tnet = build_torch_net(net)
    other = _mlp(np.float64, "hard", "sigmoid", smooth=True)
    for m in other.modules():
        if isinstance(m, nn.LIF):
            m.p = type(m.p)(m.p.lam, 1.2, m.p.reset, m.p.surrogate, m.p.smooth,
                            m.p.detach_reset)
    _, ours = method_gradients(other, "bptt", x, labels, T=T, encoder=make_encoder("direct"))
    _, theirs, _ = torch_gradients(tnet, x, labels, T)
    assert gradient_difference(ours, theirs)[0] > 1e-3
    # and spikes that differ are counted (Heaviside nets, thresholds 1.0 vs 1.2)
    a = _mlp(np.float32, "hard")
    b = _mlp(np.float32, "hard")
    for m in b.modules():
        if isinstance(m, nn.LIF):
            m.p = type(m.p)(m.p.lam, 1.2, m.p.reset, m.p.surrogate, m.p.smooth,
                            m.p.detach_reset)
    diff, total = compare_spikes(b, build_torch_net(a), x.astype(np.float32), T)
    assert 0 < diff < total

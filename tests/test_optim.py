"""Optimizers and schedules of pysnn_ref.optim against the update equations written out."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pysnn_ref.optim import (
    SGD,
    Adam,
    ConstantLR,
    CosineLR,
    StepLR,
    make_optimizer,
    make_schedule,
)
from pysnn_ref.parameter import Parameter

SHAPES = [(3, 4), (5,)]
STEPS = 5


def make_params(dtype=np.float64, seed=0) -> list[Parameter]:
    rng = np.random.default_rng(seed)
    return [Parameter(f"p{i}", rng.normal(size=s).astype(dtype)) for i, s in enumerate(SHAPES)]


def grads_for(step: int, dtype=np.float64) -> list[np.ndarray]:
    """A different, deterministic gradient for each step and parameter."""
    rng = np.random.default_rng(100 + step)
    return [rng.normal(size=s).astype(dtype) for s in SHAPES]


def run(opt, params, steps=STEPS, lrs=None):
    for k in range(steps):
        if lrs is not None:
            opt.lr = lrs[k]
        for p, g in zip(params, grads_for(k), strict=True):
            p.grad[...] = g
        opt.step()


# ----------------------------------------------------------------------------------------------
# the PyTorch update equations, written out element by element with plain floats
# ----------------------------------------------------------------------------------------------

def sgd_reference(w0, lr, momentum, wd, nesterov, steps=STEPS, lrs=None):
    w = [list(map(float, a.ravel())) for a in w0]
    buf = [None] * len(w)
    for k in range(steps):
        lr_k = lrs[k] if lrs is not None else lr
        gs = grads_for(k)
        for i in range(len(w)):
            g = [float(gv) + wd * wv for gv, wv in zip(gs[i].ravel(), w[i], strict=True)]
            if momentum != 0:
                if buf[i] is None:
                    buf[i] = list(g)
                else:
                    buf[i] = [momentum * b + gj for b, gj in zip(buf[i], g, strict=True)]
                if nesterov:
                    g = [gj + momentum * b for gj, b in zip(g, buf[i], strict=True)]
                else:
                    g = list(buf[i])
            w[i] = [wv - lr_k * gj for wv, gj in zip(w[i], g, strict=True)]
    return [np.array(wi).reshape(a.shape) for wi, a in zip(w, w0, strict=True)]


def adam_reference(w0, lr, b1, b2, eps, wd, steps=STEPS):
    w = [list(map(float, a.ravel())) for a in w0]
    m = [[0.0] * len(wi) for wi in w]
    v = [[0.0] * len(wi) for wi in w]
    for k in range(steps):
        t = k + 1
        gs = grads_for(k)
        for i in range(len(w)):
            for j in range(len(w[i])):
                g = float(gs[i].ravel()[j]) + wd * w[i][j]
                m[i][j] = b1 * m[i][j] + (1 - b1) * g
                v[i][j] = b2 * v[i][j] + (1 - b2) * g * g
                m_hat = m[i][j] / (1 - b1 ** t)
                v_hat = v[i][j] / (1 - b2 ** t)
                w[i][j] -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return [np.array(wi).reshape(a.shape) for wi, a in zip(w, w0, strict=True)]


@pytest.mark.parametrize("momentum,wd,nesterov", [
    (0.0, 0.0, False), (0.0, 0.01, False), (0.9, 0.0, False), (0.9, 5e-4, False),
    (0.8, 0.01, True),
])
def test_sgd_matches_written_out_update(momentum, wd, nesterov):
    params = make_params()
    w0 = [p.data.copy() for p in params]
    opt = SGD(params, lr=0.1, momentum=momentum, weight_decay=wd, nesterov=nesterov)
    run(opt, params)
    for p, ref in zip(params, sgd_reference(w0, 0.1, momentum, wd, nesterov), strict=True):
        np.testing.assert_allclose(p.data, ref, rtol=1e-12, atol=1e-14)
    assert opt.steps == STEPS


def test_sgd_plain_single_step_by_hand():
    p = Parameter("w", np.array([1.0, -2.0]))
    p.grad[...] = [0.5, 0.25]
    opt = SGD([p], lr=0.1, weight_decay=0.1)
    opt.step()
    # w - lr (g + wd w) = [1 - 0.1*(0.5+0.1), -2 - 0.1*(0.25-0.2)]
    np.testing.assert_allclose(p.data, [0.94, -2.005], rtol=1e-14)
    np.testing.assert_array_equal(p.grad, [0.5, 0.25])     # the gradient itself is untouched


def test_sgd_follows_lr_changes():
    params = make_params()
    w0 = [p.data.copy() for p in params]
    lrs = [0.1, 0.05, 0.02, 0.01, 0.0]
    opt = SGD(params, lr=0.1, momentum=0.9)
    run(opt, params, lrs=lrs)
    for p, ref in zip(params, sgd_reference(w0, None, 0.9, 0.0, False, lrs=lrs), strict=True):
        np.testing.assert_allclose(p.data, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("betas,wd", [((0.9, 0.999), 0.0), ((0.8, 0.99), 5e-4), ((0.0, 0.5), 0.1)])
def test_adam_matches_written_out_update(betas, wd):
    params = make_params()
    w0 = [p.data.copy() for p in params]
    opt = Adam(params, lr=1e-2, betas=betas, eps=1e-8, weight_decay=wd)
    run(opt, params)
    ref = adam_reference(w0, 1e-2, betas[0], betas[1], 1e-8, wd)
    for p, r in zip(params, ref, strict=True):
        np.testing.assert_allclose(p.data, r, rtol=1e-12, atol=1e-14)


def test_adam_bias_correction_first_step_moves_by_lr():
    # with bias correction, step 1 moves each weight by lr * g/(|g| + eps') ~= lr * sign(g)
    p = Parameter("w", np.zeros(4))
    p.grad[...] = [1e-3, -2.0, 50.0, -1e-2]
    opt = Adam([p], lr=0.01, eps=1e-12)
    opt.step()
    np.testing.assert_allclose(p.data, -0.01 * np.sign(p.grad), rtol=1e-8)


def test_float32_parameters_stay_float32():
    params = make_params(np.float32)
    for opt in (SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-3),
                Adam(params, lr=1e-3, weight_decay=1e-3)):
        run(opt, params, steps=2)
        assert all(p.data.dtype == np.float32 for p in params)
        for bufs in opt.state.values():
            assert all(b.dtype == np.float32 for b in bufs)


def test_updates_are_in_place():
    params = make_params()
    ids = [id(p.data) for p in params]
    run(Adam(params), params, steps=2)
    run(SGD(params, lr=0.1, momentum=0.5), params, steps=2)
    assert [id(p.data) for p in params] == ids


def test_zero_grad():
    params = make_params()
    for p in params:
        p.grad[...] = 1.0
    SGD(params, lr=0.1).zero_grad()
    assert all(np.all(p.grad == 0) for p in params)


# ----------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_state_dict_round_trip_resumes_identically(kind, tmp_path):
    kw = {"momentum": 0.9, "weight_decay": 1e-3, "nesterov": True} if kind == "sgd" else \
        {"betas": (0.8, 0.99), "weight_decay": 1e-3}
    # run A: 5 steps straight
    pa = make_params()
    oa = make_optimizer(kind, pa, lr=0.05, **kw)
    run(oa, pa, steps=5)
    # run B: 3 steps, checkpoint to .npz, fresh optimizer with other hyperparameters, load, 2 more
    pb = make_params()
    ob = make_optimizer(kind, pb, lr=0.05, **kw)
    for k in range(3):
        for p, g in zip(pb, grads_for(k), strict=True):
            p.grad[...] = g
        ob.step()
    sd = ob.state_dict()
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    np.savez(tmp_path / "opt.npz", **sd)
    w = [p.data.copy() for p in pb]
    pc = [Parameter(p.name, wi) for p, wi in zip(pb, w, strict=True)]
    oc = make_optimizer(kind, pc, lr=1.0)
    with np.load(tmp_path / "opt.npz") as z:
        oc.load_state_dict(z)
    assert oc.lr == 0.05 and oc.steps == 3
    for k in range(3, 5):
        for p, g in zip(pc, grads_for(k), strict=True):
            p.grad[...] = g
        oc.step()
    for p, q in zip(pa, pc, strict=True):
        np.testing.assert_array_equal(p.data, q.data)
    # the state dict is a copy, not a view of the live buffers
    key = "momentum_buffer.0" if kind == "sgd" else "exp_avg.0"
    before = sd[key].copy()
    run(ob, pb, steps=1)
    np.testing.assert_array_equal(sd[key], before)


def test_load_state_dict_rejects_mismatches():
    params = make_params()
    opt = SGD(params, lr=0.1, momentum=0.9)
    run(opt, params, steps=1)
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="'sgd'.*'adam'"):
        Adam(params).load_state_dict(sd)
    other = [Parameter("q", np.zeros((2, 2))), Parameter("r", np.zeros(5))]
    with pytest.raises(ValueError, match=r"momentum_buffer\.0.*shape \(2, 2\)"):
        SGD(other, lr=0.1, momentum=0.9).load_state_dict(sd)
    with pytest.raises(ValueError, match="does not fit"):
        SGD(params[:1], lr=0.1, momentum=0.9).load_state_dict(sd)
    with pytest.raises(ValueError, match="'optimizer'"):
        opt.load_state_dict({"lr": np.array(0.1)})


# ----------------------------------------------------------------------------------------------
# schedules
# ----------------------------------------------------------------------------------------------

def test_schedules_at_known_epochs():
    c = CosineLR(0.1, total_epochs=10)
    assert c.lr_at(0) == pytest.approx(0.1)
    assert c.lr_at(5) == pytest.approx(0.05)
    assert c.lr_at(10) == pytest.approx(0.0, abs=1e-15)
    assert c.lr_at(20) == pytest.approx(0.0, abs=1e-15)
    assert c.lr_at(2) == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.2)))
    cm = CosineLR(1.0, total_epochs=4, min_lr=0.2)
    assert [cm.lr_at(e) for e in (0, 2, 4)] == pytest.approx([1.0, 0.6, 0.2])
    s = StepLR(0.5, step_size=3, gamma=0.2)
    assert [s.lr_at(e) for e in range(7)] == pytest.approx(
        [0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.02])
    assert ConstantLR(0.3).lr_at(99) == 0.3


def test_cosine_lr_can_drive_an_optimizer_to_zero():
    params = make_params()
    opt = SGD(params, lr=0.1)
    opt.lr = CosineLR(0.1, total_epochs=3).lr_at(3)
    w = [p.data.copy() for p in params]
    run(opt, params, steps=1)
    for p, wi in zip(params, w, strict=True):
        np.testing.assert_allclose(p.data, wi, atol=1e-17)


def test_factories():
    params = make_params()
    assert isinstance(make_optimizer("sgd", params, 0.1, momentum=0.9), SGD)
    a = make_optimizer("adam", params, 1e-3, betas=(0.5, 0.6))
    assert isinstance(a, Adam) and a.betas == (0.5, 0.6)
    assert make_schedule("cosine", 0.1, 10).lr_at(10) == pytest.approx(0.0, abs=1e-15)
    st = make_schedule("step", 1.0, 9)
    assert isinstance(st, StepLR) and st.step_size == 3
    assert make_schedule("step", 1.0, 9, step_size=2, gamma=0.5).lr_at(4) == 0.25
    assert make_schedule("constant", 0.2, 5).lr_at(4) == 0.2
    with pytest.raises(ValueError, match="^optimizer must be one of"):
        make_optimizer("rmsprop", params, 0.1)
    with pytest.raises(ValueError, match="^schedule must be one of"):
        make_schedule("linear", 0.1, 10)


def test_bad_hyperparameters_name_the_parameter():
    params = make_params()
    cases = [
        (lambda: SGD(params, lr=-0.1), "^lr "),
        (lambda: SGD(params, lr=0.1, momentum=1.0), "^momentum "),
        (lambda: SGD(params, lr=0.1, weight_decay=-1), "^weight_decay "),
        (lambda: SGD(params, lr=0.1, nesterov=True), "nesterov"),
        (lambda: SGD([], lr=0.1), "^params "),
        (lambda: SGD([np.zeros(3)], lr=0.1), r"^params\[0\] "),
        (lambda: Adam(params, betas=(0.9, 1.0)), r"^betas\[1\] "),
        (lambda: Adam(params, betas=0.9), "^betas "),
        (lambda: Adam(params, eps=0), "^eps "),
        (lambda: CosineLR(0.1, total_epochs=0), "^total_epochs "),
        (lambda: CosineLR(0.1, 10, min_lr=0.2), "^min_lr "),
        (lambda: StepLR(0.1, step_size=0), "^step_size "),
        (lambda: StepLR(0.1, 2, gamma=0), "^gamma "),
        (lambda: ConstantLR(0.0), "^base_lr "),
        (lambda: ConstantLR(0.1).lr_at(-1), "^epoch "),
        (lambda: make_schedule("cosine", 0.1, 0), "^epochs "),
    ]
    for fn, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            fn()
    opt = SGD(params, lr=0.1)
    with pytest.raises(ValueError, match="^lr "):
        opt.lr = float("nan")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,hyper", [
    ("adam", dict(weight_decay=0.0)), ("adam", dict(betas=(0.8, 0.99), weight_decay=5e-4)),
    ("sgd", dict(momentum=0.9, weight_decay=5e-4)), ("sgd", dict(momentum=0.0)),
    ("sgd", dict(momentum=0.8, nesterov=True)),
])
def test_fused_cpu_update_is_bit_equal_to_the_numpy_code(kind, hyper, dtype, monkeypatch):
    """The CPU's fused Numba SGD and Adam updates (kernels/cpu/ section 9) give exactly the
    parameters and state of optim.py's NumPy code (which runs under the reference kernels),
    float32 included: the same operations in the same order, the hyper-parameters in the
    parameter's dtype."""
    from pysnn_ref import backend
    from pysnn_ref.kernels import cpu

    monkeypatch.setattr(cpu, "FUSED_UPDATE_MIN_SIZE", 0)  # the test's parameters are small
    cls = SGD if kind == "sgd" else Adam
    results = []
    for kernels in ("numba", "reference"):
        params = make_params(dtype)
        opt = cls(params, lr=0.05, **hyper)
        with backend.use_cpu_kernels(kernels):
            for k in range(STEPS):
                for p, g in zip(params, grads_for(k, dtype), strict=True):
                    p.grad[...] = g
                opt.step()
        results.append(([p.data.copy() for p in params],
                         [s for buf in opt.state.values() for s in buf]))
    (w_fast, s_fast), (w_ref, s_ref) = results
    for a, b in zip(w_fast + s_fast, w_ref + s_ref, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype == dtype and np.array_equal(a, b)


def test_fused_update_only_for_large_contiguous_parameters():
    """The fused kernels run for parameters of at least FUSED_UPDATE_MIN_SIZE entries that are
    C-contiguous; smaller (or strided) ones keep the NumPy code (a launch costs more)."""
    from pysnn_ref.kernels import cpu
    from pysnn_ref.optim import _fused_kernels

    n = cpu.FUSED_UPDATE_MIN_SIZE
    big = Parameter("big", np.zeros(n, np.float32))
    small = Parameter("small", np.zeros(n - 1, np.float32))
    strided = Parameter("strided", np.zeros((n, 2), np.float32)[:, 0])
    assert _fused_kernels(big, np.zeros(n, np.float32)) is cpu
    assert _fused_kernels(small, np.zeros(n - 1, np.float32)) is None
    assert _fused_kernels(strided, np.zeros(n, np.float32)) is None

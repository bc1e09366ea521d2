"""Spiking LSTM (window-partition supplement's LSNN): the cell kernels (reference == Numba),
the hand-written BPTT against finite differences (float64, smooth mode), bad input, the layer,
the model and the digits-rows sequence task."""

from __future__ import annotations

import numpy as np
import pytest

from pysnn_ref import backend
from pysnn_ref.functional.lstm import lstm_backward, lstm_forward, make_lstm_params
from pysnn_ref.gradcheck.finite_diff import numerical_gradient, rel_error
from pysnn_ref.kernels import cpu as KC
from pysnn_ref.kernels import reference as KR
from pysnn_ref.kernels.reference import SURROGATE_KINDS


def _weights(rng, D, H, scale=0.7, dtype=np.float64):
    return (rng.normal(0, scale, (4 * H, D)).astype(dtype),
            rng.normal(0, scale, (4 * H, H)).astype(dtype),
            rng.normal(0, 0.5, 4 * H).astype(dtype))


# ---- kernels ---------------------------------------------------------------------------------

@pytest.mark.parametrize("smooth", [False, True])
@pytest.mark.parametrize("kind", sorted(SURROGATE_KINDS.values()))
def test_cell_kernels_numba_equal_reference(kind, smooth):
    rng = np.random.default_rng(kind)
    B, H = 4, 7
    z = rng.normal(0, 2, (B, 4 * H))
    c_prev = rng.normal(0, 1, (B, H))
    fr, fc = (K.lstm_cell_forward(z, c_prev, 0.3, smooth, kind, 1.0) for K in (KR, KC))
    for a, b in zip(fr, fc, strict=True):
        assert rel_error(a, b) <= 1e-12
    A, c, s = fr
    assert ((s == 0) | (s == 1)).all() or smooth
    ds, dc = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    br = KR.lstm_cell_backward(ds, dc, A, c_prev, c, 0.3, kind, 1.0)
    bc = KC.lstm_cell_backward(ds, dc, A, c_prev, c, 0.3, kind, 1.0)
    for a, b in zip(br, bc, strict=True):
        assert rel_error(a, b) <= 1e-12


def test_cell_reference_is_the_lstm_equations():
    """(L2)-(L4) written out in NumPy for a whole batch, against the loop reference."""
    rng = np.random.default_rng(1)
    B, H = 3, 5
    z = rng.normal(0, 2, (B, 4 * H))
    c_prev = rng.normal(0, 1, (B, H))
    A, c, s = KR.lstm_cell_forward(z, c_prev, 0.25, False, 1, 1.0)
    sig = lambda v: 1 / (1 + np.exp(-v))
    i, f, g, o = sig(z[:, :H]), sig(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sig(z[:, 3 * H:])
    c_ref = f * c_prev + i * g
    np.testing.assert_allclose(A, np.concatenate([i, f, g, o], axis=1), rtol=1e-12)
    np.testing.assert_allclose(c, c_ref, rtol=1e-12)
    np.testing.assert_array_equal(s, (o * np.tanh(c_ref) >= 0.25).astype(float))


def test_float32_kernels_close_to_float64():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 3, 4))
    Wx, Wh, b = _weights(rng, 4, 6)
    p = make_lstm_params(0.3, "sigmoid", smooth=True)
    s64, _ = lstm_forward(x, Wx, Wh, b, p)
    s32, _ = lstm_forward(*(v.astype(np.float32) for v in (x, Wx, Wh, b)), p)
    assert s32.dtype == np.float32
    assert rel_error(s32, s64) < 1e-5


# ---- BPTT against finite differences ---------------------------------------------------------

@pytest.mark.parametrize("surrogate", ["sigmoid:4", "triangle", "atan"])
def test_bptt_matches_finite_differences(surrogate):
    rng = np.random.default_rng(3)
    T, B, D, H = 4, 3, 5, 6
    x = rng.normal(size=(T, B, D))
    Wx, Wh, b = _weights(rng, D, H)
    p = make_lstm_params(0.3, surrogate, smooth=True)
    dS = rng.normal(size=(T, B, H))
    s, cache = lstm_forward(x, Wx, Wh, b, p)
    assert 0.05 < float(s.mean()) < 0.95  # the spikes are neither all off nor all on
    grads = lstm_backward(dS, cache)
    f = lambda: lstm_forward(x, Wx, Wh, b, p)[0]
    for name, v, g in zip(("x", "W_x", "W_h", "b"), (x, Wx, Wh, b), grads, strict=True):
        err = rel_error(numerical_gradient(f, v, dS), g)
        assert err < 1e-7, f"d{name}: rel error {err:.2e}"


def test_bptt_reference_kernels_give_the_same_gradients():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 2, 4))
    Wx, Wh, b = _weights(rng, 4, 5)
    dS = rng.normal(size=(3, 2, 5))
    p = make_lstm_params(0.3)
    s1, c1 = lstm_forward(x, Wx, Wh, b, p)
    g1 = lstm_backward(dS, c1)
    with backend.use_cpu_kernels("reference"):
        s2, c2 = lstm_forward(x, Wx, Wh, b, p)
        g2 = lstm_backward(dS, c2)
    np.testing.assert_array_equal(s1, s2)
    for a, b_ in zip(g1, g2, strict=True):
        assert rel_error(a, b_) <= 1e-12


def test_time_broadcast_input_same_as_copied():
    """A direct-encoded (stride-0) input takes the one-GEMM path and gives the same result."""
    rng = np.random.default_rng(5)
    x0 = rng.normal(size=(2, 4))
    Wx, Wh, b = _weights(rng, 4, 3)
    xb = np.broadcast_to(x0, (5, 2, 4))
    p = make_lstm_params(0.3, "sigmoid", smooth=True)
    dS = rng.normal(size=(5, 2, 3))
    sb, cb = lstm_forward(xb, Wx, Wh, b, p)
    sc, cc = lstm_forward(np.ascontiguousarray(xb), Wx, Wh, b, p)
    assert rel_error(sb, sc) < 1e-13
    for a, b_ in zip(lstm_backward(dS, cb), lstm_backward(dS, cc), strict=True):
        assert rel_error(a, b_) < 1e-12


def test_recurrence_carries_information():
    """s[t] depends on x[0] for t > 0 (through c and the spike feedback), not the reverse."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4, 2, 3))
    Wx, Wh, b = _weights(rng, 3, 4)
    p = make_lstm_params(0.3, "sigmoid", smooth=True)
    s, cache = lstm_forward(x, Wx, Wh, b, p)
    dS = np.zeros_like(s)
    dS[-1] = 1.0
    dx = lstm_backward(dS, cache)[0]
    assert np.abs(dx[0]).max() > 1e-6
    dS = np.zeros_like(s)
    dS[0] = 1.0
    dx = lstm_backward(dS, cache)[0]
    assert np.abs(dx[1:]).max() == 0.0


# ---- bad input -------------------------------------------------------------------------------

def test_bad_inputs_name_the_parameter():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 2, 4))
    Wx, Wh, b = _weights(rng, 4, 5)
    with pytest.raises(ValueError, match="v_th must be in"):
        make_lstm_params(1.0)
    with pytest.raises(ValueError, match="v_th must be in"):
        make_lstm_params(-0.1)
    with pytest.raises(ValueError, match="surrogate"):
        make_lstm_params(0.5, "nope")
    with pytest.raises(ValueError, match="x must be time-major"):
        lstm_forward(x[..., None], Wx, Wh, b)
    with pytest.raises(ValueError, match="W_x must have shape"):
        lstm_forward(x, Wx[:, :3], Wh, b)
    with pytest.raises(ValueError, match="W_h must have shape"):
        lstm_forward(x, Wx, Wh[:-1], b)
    with pytest.raises(ValueError, match="b must have shape"):
        lstm_forward(x, Wx, Wh, b[:-1])
    with pytest.raises(ValueError, match="dtype of x"):
        lstm_forward(x, Wx.astype(np.float32), Wh, b)
    s, cache = lstm_forward(x, Wx, Wh, b)
    with pytest.raises(ValueError, match="dS must have shape"):
        lstm_backward(s[:, :1], cache)


# ---- layer, model, data, training ------------------------------------------------------------

def test_layer_backward_accumulates_the_functional_gradients():
    from pysnn_ref.nn import Linear, Sequential, SpikingLSTM

    rng = np.random.default_rng(8)
    lstm = SpikingLSTM(4, 6, v_th=0.3, surrogate="sigmoid", smooth=True, dtype=np.float64)
    net = Sequential(lstm, Linear(6, 3, dtype=np.float64))
    x = rng.normal(size=(5, 2, 4))
    dy = rng.normal(size=(5, 2, 3))
    net.zero_grad()
    net.forward(x)
    net.backward(dy, need_dx=False)
    s, cache = lstm_forward(x, lstm.W_x.data, lstm.W_h.data, lstm.b.data, lstm.p)
    _, dWx, dWh, db = lstm_backward(dy @ net.layers[1].W.data, cache)
    for p, g in zip(lstm.own_parameters(), (dWx, dWh, db), strict=True):
        assert rel_error(p.grad, g) < 1e-12
    assert 0.0 < lstm.firing_rate < 1.0


def test_digits_rows_dataset_and_sequence_encoder():
    from pysnn_ref.data import check_encoder, load_dataset, make_encoder

    rows = load_dataset("digits-rows")
    img = load_dataset("digits", normalize=False)
    assert rows.x_train.shape[1:] == (8, 8) and rows.input_shape == (8,)
    assert rows.num_classes == 10
    np.testing.assert_array_equal(rows.y_test, img.y_test)  # the same split as "digits"
    raw = img.x_test[:, 0] * 1.0
    np.testing.assert_allclose(rows.x_test * rows.std[0] + rows.mean[0], raw, atol=1e-5)
    X = make_encoder("sequence").encode(rows.x_test[:3], 8)
    np.testing.assert_array_equal(X[2], rows.x_test[:3, 2])  # step t = image row t
    X4 = make_encoder("sequence").encode(rows.x_test[:3], 4)
    np.testing.assert_allclose(X4[1], rows.x_test[:3, 2] + rows.x_test[:3, 3], rtol=1e-6)
    with pytest.raises(ValueError, match="T must divide the 8 steps"):
        make_encoder("sequence").encode(rows.x_test[:3], 3)
    with pytest.raises(ValueError, match="use --encoder sequence"):
        check_encoder("digits-rows", "direct")
    with pytest.raises(ValueError, match="--dataset digits-rows"):
        check_encoder("digits", "sequence")
    check_encoder("digits-rows", "sequence")


def test_model_lstm_and_method_checks():
    from pysnn_ref.methods import make_method
    from pysnn_ref.models import make_model
    from pysnn_ref.nn import LIF, SpikingLSTM

    net = make_model("lstm", (8,), 10, LIF, v_th=0.5, surrogate="atan")
    assert isinstance(net.layers[0], SpikingLSTM) and net.layers[0].p.surrogate.name == "atan"
    make_method("bptt").check_network(net)
    for m in ("asf", "ssf"):
        with pytest.raises(ValueError, match="use method 'bptt'"):
            make_method(m).check_network(net)
    with pytest.raises(ValueError, match="needs sequence input"):
        make_model("lstm", (1, 8, 8), 10, LIF)
    with pytest.raises(ValueError, match="v_th must be in"):
        make_model("lstm", (8,), 10, LIF, v_th=1.0)


def _cli(args, capsys):
    from pysnn_ref.train.__main__ import cli

    rc = cli(args)
    return rc, capsys.readouterr()


@pytest.mark.parametrize("extra, msg", [
    (["--method", "ssf"], "use method 'bptt'"),
    (["--encoder", "direct"], "use --encoder sequence"),
    (["--lam", "0.9"], "--lam only applies to models with LIF/IF"),
    (["--v-th", "1.5"], "v_th must be in (0, 1)"),
])
def test_cli_refuses_with_one_line(tmp_path, capsys, extra, msg):
    base = ["--model", "lstm", "--dataset", "digits-rows", "--encoder", "sequence",
            "--T", "8", "--epochs", "1", "--no-plots", "--no-progress", "--out", str(tmp_path)]
    rc, out = _cli(base + extra, capsys)
    lines = out.err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and msg in lines[0], out.err


def test_train_cli_learns_digits_rows(tmp_path, capsys):
    """python -m pysnn_ref.train --model lstm --dataset digits-rows --encoder sequence --T 8
    --epochs 2 --lr 0.01: well above chance (0.1) on the 359 test sequences."""
    rc, out = _cli(["--model", "lstm", "--dataset", "digits-rows", "--encoder", "sequence",
                    "--T", "8", "--epochs", "2", "--lr", "0.01", "--no-plots", "--no-progress",
                    "--out", str(tmp_path / "run")], capsys)
    assert rc == 0, out.err
    lines = out.out.strip().splitlines()
    assert "1 spiking layers" in lines[0]
    acc = float(lines[-1].split("=")[1])
    assert acc >= 0.6, out.out


def test_energy_counts_the_lstm_input_and_recurrent_weights():
    """Input GEMM: T * D * 4H MACs (analog rows); recurrence: one AC per spike s[t-1] per
    gate row (4H), counted from the layer's own spikes; the ANN LSTM steps T (T - 1) times."""
    from pysnn_ref.data import make_encoder
    from pysnn_ref.energy import estimate_energy
    from pysnn_ref.models import make_model
    from pysnn_ref.nn import LIF

    rng = np.random.default_rng(9)
    T, B, D = 8, 5, 8
    net = make_model("lstm", (D,), 10, LIF, v_th=0.5, dtype=np.float64)
    x = rng.normal(size=(B, T, D))
    rep = estimate_energy(net, x, T, make_encoder("sequence"))
    H = net.layers[0].hidden
    s = net.layers[0].forward(make_encoder("sequence").encode(x, T))
    inp, rec, out = rep.layers
    assert inp.kind == "MAC" and inp.macs == T * D * 4 * H and inp.ann_macs == T * D * 4 * H
    assert rec.kind == "AC" and rec.sops == pytest.approx(s[:-1].sum() * 4 * H / B)
    assert rec.ann_macs == (T - 1) * H * 4 * H and "recurrent" in rec.name
    assert out.sops == pytest.approx(s.sum() * 10 / B)


def test_array_cell_equals_reference():
    """The array-code step (the path of kernel sets without a fused LSTM kernel: the GPU)."""
    from pysnn_ref.functional.lstm import cell_backward_array, cell_forward_array

    rng = np.random.default_rng(10)
    B, H = 3, 5
    z, c_prev = rng.normal(0, 3, (B, 4 * H)), rng.normal(size=(B, H))
    ds, dc = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    for smooth in (False, True):
        for kind in SURROGATE_KINDS.values():
            ref = KR.lstm_cell_forward(z, c_prev, 0.3, smooth, kind, 1.0)
            for a, b in zip(cell_forward_array(z, c_prev, 0.3, smooth, kind, 1.0), ref,
                            strict=True):
                assert rel_error(a, b) <= 1e-14
            args = (ds, dc, ref[0], c_prev, ref[1], 0.3, kind, 1.0)
            for a, b in zip(cell_backward_array(*args), KR.lstm_cell_backward(*args),
                            strict=True):
                assert rel_error(a, b) <= 1e-14


GPU_SNIPPET = """
import numpy as np, cupy
from pysnn_ref.functional.lstm import lstm_forward, lstm_backward, make_lstm_params
from pysnn_ref.gradcheck.finite_diff import rel_error
rng = np.random.default_rng(0)
T, B, D, H = 3, 2, 3, 4
host = [rng.normal(size=(T, B, D)), rng.normal(0, .7, (4 * H, D)),
        rng.normal(0, .7, (4 * H, H)), rng.normal(0, .5, 4 * H)]
dS = rng.normal(size=(T, B, H))
errs = []
for smooth in (False, True):
    p = make_lstm_params(0.3, "sigmoid", smooth=smooth)
    s, c = lstm_forward(*host, p)
    g = lstm_backward(dS, c)
    dev = [cupy.asarray(v) for v in host]
    cupy.reset_transfers()
    sd, cd = lstm_forward(*dev, p)
    gd = lstm_backward(cupy.asarray(dS), cd)
    assert cupy.transfers() == 0, cupy.transfer_log()
    assert type(sd).__module__.startswith("cupy")
    errs += [rel_error(s, sd.get())] + [rel_error(a, b.get()) for a, b in zip(g, gd)]
print("MAXERR", max(errs))
"""


def test_gpu_path_equals_cpu_under_fake_cupy_and_the_simulator():
    """CuPy arrays (tests/fakecupy) through lstm_forward/backward: the same numbers as the CPU,
    no device->host transfer inside; numba.cuda's simulator stands in for the surrogates."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1",
               PYTHONPATH=os.pathsep.join([str(root / "tests" / "fakecupy"), str(root)]))
    r = subprocess.run([sys.executable, "-c", GPU_SNIPPET], env=env, capture_output=True,
                       text=True, timeout=120, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    assert float(r.stdout.split("MAXERR")[1]) < 1e-13, r.stdout


def test_gradcheck_cli_covers_the_lstm():
    from pysnn_ref.gradcheck import TOLERANCE
    from pysnn_ref.gradcheck.layers import layer_gradcheck_cases

    rows = [r for r in layer_gradcheck_cases() if "LSTM" in r[0]]
    assert {r[1] for r in rows} == {"x", "W_x", "W_h", "b"}
    assert all(err < TOLERANCE for _, _, err in rows)

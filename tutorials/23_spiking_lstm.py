"""
Chapter 23 -- The spiking LSTM: gates, a cell state, spikes out, BPTT by hand
=============================================================================

The window-partition supplement ("WP" in docs/derivations.md; Yao, Wu, Chen & Zhang, "Training
a General Spiking Neural Network with Improved Efficiency and Minimum Latency", supplementary
material) builds its framework on a CNN-SNN and on an LSTM-SNN, the "LSNN".  It counts the
LSNN's cost in one window (WP Sec. 3.1, Eq. 1), ::

    Omega(LSNN-W) = d_x d_h 8 + d_h (d_h 8 + 20),

four gates with a d_x x d_h input and a d_h x d_h recurrent weight each, but prints no cell
equations.  The library (``pysnn_ref.functional.lstm``) takes the standard LSTM whose hidden
output is a spike (snnTorch's SLSTM), feeding the spikes back into the recurrence::

    (L1) z[t] = x[t] W_x^T + s[t-1] W_h^T + b         gates (i, f, g, o) side by side
    (L2) i = sigma(z_i)  f = sigma(z_f)  g = tanh(z_g)  o = sigma(z_o)
    (L3) c[t] = f c[t-1] + i g                         the forget gate is a learned leak
    (L4) u[t] = o tanh(c[t]),  s[t] = H(u[t] - v_th)   spike, surrogate gradient backward

and its exact BPTT backward (B1)-(B4): ds[t] gets dz[t+1] W_h from the recurrence, dc[t] gets
dc[t+1] f[t+1] from the cell; the weight gradients are GEMMs over all T at once.

Verification: the cell written out here in NumPy == the loop reference == the Numba kernel;
the hand-written BPTT passes a float64 finite-difference check (smooth mode) for the input and
every weight; the per-step GEMMs cost exactly Eq. 1's 8 d_x d_h + 8 d_h^2; ``--model lstm`` on
``--dataset digits-rows`` (each 8x8 digit read one row per step, T = 8) learns well above
chance, beside an MLP of LIF neurons on the same rows; ASF/SSF refuse it with one line.
Figures: ``tutorials/out/23_lstm_spikes.png``, ``tutorials/out/23_lstm_learning.png``.

Run:  python tutorials/23_spiking_lstm.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""


from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from pysnn_ref import ecml
from pysnn_ref.data import load_dataset, make_encoder
from pysnn_ref.functional.lstm import lstm_backward, lstm_forward, make_lstm_params
from pysnn_ref.gradcheck.finite_diff import numerical_gradient, rel_error
from pysnn_ref.kernels import cpu, reference
from pysnn_ref.methods import make_method
from pysnn_ref.models import make_model
from pysnn_ref.nn import LIF
from pysnn_ref.train.__main__ import build_parser, explicit_args, resolve_config
from pysnn_ref.train.loop import train

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))
EPOCHS = 1 if QUICK else 6


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


# One BLAS thread: the matrices here are small, and several threads fight over a
# few cores (the training CLI does the same, ``--blas-threads 1``).
threadpool_limits(limits=1, user_api="blas")


# %%
# 1. The cell (L2)-(L4): NumPy, the loop reference and Numba
# ----------------------------------------------------------
# Written out for a whole batch.


def check_cell(rng: np.random.Generator) -> None:
    B, H, v_th = 4, 6, 0.3
    z = rng.normal(0, 2, (B, 4 * H))
    c_prev = rng.normal(0, 1, (B, H))
    i, f = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H])
    g, o = np.tanh(z[:, 2 * H:3 * H]), sigmoid(z[:, 3 * H:])
    c = f * c_prev + i * g                                        # (L3)
    s = (o * np.tanh(c) >= v_th).astype(float)                    # (L4)
    tri = reference.SURROGATE_KINDS["triangle"]
    A_r, c_r, s_r = reference.lstm_cell_forward(z, c_prev, v_th, False, tri, 1.0)
    A_n, c_n, s_n = cpu.lstm_cell_forward(z, c_prev, v_th, False, tri, 1.0)
    e_ref = max(rel_error(c, c_r), rel_error(s, s_r))
    e_nb = max(rel_error(A_r, A_n), rel_error(c_r, c_n), rel_error(s_r, s_n))
    print(f"   (L2)-(L4) in NumPy vs kernels.reference.lstm_cell_forward: rel {e_ref:.1e}; "
          f"reference vs the Numba kernel: rel {e_nb:.1e}")
    assert e_ref <= 1e-13 and e_nb <= 1e-13


OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
print("Verification 1: the cell (L2)-(L4) -- NumPy, loop reference, Numba")
check_cell(rng)


# %%
# 2. BPTT (B1)-(B4) against finite differences
# --------------------------------------------
# Central finite differences of <s, dS> in float64, smooth mode.


def check_bptt(rng: np.random.Generator) -> None:
    T, B, D, H = 5, 3, 4, 6
    x = rng.normal(size=(T, B, D))
    W_x, W_h = rng.normal(0, 0.7, (4 * H, D)), rng.normal(0, 0.7, (4 * H, H))
    b = rng.normal(0, 0.5, 4 * H)
    p = make_lstm_params(0.3, "sigmoid:4", smooth=True)
    dS = rng.normal(size=(T, B, H))
    s, cache = lstm_forward(x, W_x, W_h, b, p)
    grads = lstm_backward(dS, cache)
    f = lambda: lstm_forward(x, W_x, W_h, b, p)[0]
    for name, v, g in zip(("x", "W_x", "W_h", "b"), (x, W_x, W_h, b), grads, strict=True):
        err = rel_error(numerical_gradient(f, v, dS), g)
        print(f"   d{name:<4} hand-written BPTT vs finite differences: rel error {err:.1e}")
        assert err < 1e-7


print("\nVerification 2: BPTT (B1)-(B4) vs finite differences, float64, smooth mode")
check_bptt(rng)


# %%
# 3. The operation count of WP Eq. 1
# ----------------------------------
# The library's per-step GEMMs: 2 * 4H * (D + H) flops, Eq. 1 without its 20 d_h.


def check_eq1() -> None:
    for D, H in ((8, 128), (64, 64)):
        gemm = 2 * 4 * H * D + 2 * 4 * H * H
        eq1 = ecml.complexity_lsnn(D, H)
        print(f"   d_x={D:3d}, d_h={H:3d}: input + recurrent GEMM flops per step {gemm}, "
              f"WP Eq. 1 {eq1} = {gemm} + 20 d_h")
        assert eq1 == gemm + 20 * H


print("\nWP Sec. 3.1, Eq. 1: Omega(LSNN-W) counts the gate GEMMs of (L1)")
check_eq1()


# %%
# 4. The LSTM trained on digit rows, against an MLP of LIF neurons
# ----------------------------------------------------------------
# The flow methods (ASF, SSF) refuse the gated cell first: it has no equivalent rate network.


def spikes_of_one_digit(run_dir: str) -> tuple[np.ndarray, np.ndarray, int]:
    from pysnn_ref.train.checkpoint import load

    net, _ = load(run_dir, checkpoint="last")       # the trained network, back from disk
    data = load_dataset("digits-rows")
    x = data.x_test[:1]
    s = net.layers[0].forward(make_encoder("sequence").encode(x, 8))
    return x[0], np.asarray(s[:, 0, :]), int(data.y_test[0])


def run(model: str, tmp: str) -> tuple[dict, float]:
    argv = ["--model", model, "--dataset", "digits-rows", "--encoder", "sequence", "--T", "8",
            "--epochs", str(EPOCHS), "--lr", "0.01", "--no-progress", "--no-plots",
            "--out", str(Path(tmp) / model)]
    t0 = time.perf_counter()
    res = train(resolve_config(build_parser().parse_args(argv), explicit_args(argv)),
                log=lambda s: None)
    return res, time.perf_counter() - t0


print("\nThe flow methods refuse the gated cell (no equivalent rate network):")

net = make_model("lstm", (8,), 10, LIF, v_th=0.5)
for m in ("asf", "ssf"):
    try:
        make_method(m).check_network(net)
    except ValueError as e:
        print(f"   {m}: {e}")
    else:
        raise AssertionError(f"{m} accepted the spiking LSTM")
print(f"\nVerification 3: --dataset digits-rows --encoder sequence --T 8, {EPOCHS} epochs, "
      "lr 0.01 -- the spiking LSTM vs an MLP of 800 LIF neurons on the same rows")
hist: dict[str, list[float]] = {}
with tempfile.TemporaryDirectory() as tmp:
    for model in ("lstm", "mlp"):
        res, secs = run(model, tmp)
        hist[model] = [h["test_acc"] for h in res["history"]]
        print(f"   --model {model:4s}: test_acc per epoch "
              f"{' '.join(f'{a:.3f}' for a in hist[model])}  ({secs:.1f} s)")
    img, s, label = spikes_of_one_digit(str(Path(tmp) / "lstm"))


# %%
# 5. The figures
# --------------


def draw(img: np.ndarray, s: np.ndarray, label: int, hist: dict[str, list[float]]) -> tuple:
    fig = plt.figure(figsize=(11, 3.8), layout="constrained")
    a0, a1 = fig.subplots(1, 2, width_ratios=[1, 3])
    a0.imshow(img, cmap="gray_r")
    a0.set_title(f"test digit {label}: row t is step t")
    a0.set_xlabel("pixel (feature)")
    a0.set_ylabel("row = time step t")
    t, n = np.nonzero(s)
    a1.scatter(n, t, marker="|", s=60)
    a1.set_xlim(-1, s.shape[1])
    a1.invert_yaxis()
    a1.set_title(f"SpikingLSTM spikes s[t] (L4), rate {s.mean():.2f}")
    a1.set_xlabel("hidden neuron")
    a1.set_ylabel("time step t")
    p1 = OUT / "23_lstm_spikes.png"
    fig.savefig(p1, dpi=90)

    fig = plt.figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for name, accs in hist.items():
        ax.plot(range(1, len(accs) + 1), accs, "o-", label=name)
    ax.axhline(0.1, color="gray", ls=":", label="chance")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title("digits-rows (T = 8 rows), BPTT")
    ax.legend()
    p2 = OUT / "23_lstm_learning.png"
    fig.savefig(p2, dpi=90)
    return p1, p2


assert hist["lstm"][-1] >= 0.6, hist["lstm"]           # chance: 0.1
p1, p2 = draw(img, s, label, hist)


# %%
# What the asserts above checked
# ------------------------------


print(f"\nFigure: {p1}\nFigure: {p2}")
print(f"Chapter 23 done: cell == reference == Numba, BPTT == finite differences, "
      f"lstm test_acc {hist['lstm'][-1]:.4f} (mlp {hist['mlp'][-1]:.4f}).")

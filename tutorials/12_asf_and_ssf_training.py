"""
Chapter 12 -- ASF and SSF in training: the same network trained three ways
==========================================================================

Chapter 11 built the spiking flows and the equivalent rate network whose exact gradient the ASF
(Wu et al., AAAI 2021) and SSF (Wang et al., ICCV 2023) backward passes are.  Here they train a
network.  The forward pass is the real spiking network for all three methods (the same spikes as
BPTT); the backward runs once, on one (B, ...) gradient per layer, whatever T is.

What this chapter does:

1. ASF's own loss: the output-membrane MSE of ASF Eq. 6, by hand = ``asf_mse_loss_forward``,
   and its gradient (Eq. 9's first factor) = finite differences;
2. ASF's layer scale factor S two ways: the paper's ratio (Eq. 12, ``flows.asf_scale_paper``)
   and the authors' code (masked, an EMA; ``flows.asf_scale_code``);
3. trains the same 2-hidden-layer network with BPTT, ASF (Eqs. 9-12) and SSF (Eqs. 13-15) --
   accuracy and time side by side -- and times one backward pass as T grows;
4. measures how close ASF's and SSF's weight gradients are to BPTT's (cosine similarity,
   ``pysnn_ref.gradcheck.cosine_vs``), at initialisation and after training.

Figures: ``tutorials/out/12_training.png``, ``tutorials/out/12_cosines.png``.

Run:  python tutorials/12_asf_and_ssf_training.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from pysnn_ref import data, nn
from pysnn_ref.functional import flows
from pysnn_ref.functional.loss import (
    accuracy,
    asf_mse_loss_backward,
    asf_mse_loss_forward,
    sdt_loss_backward,
    sdt_loss_forward,
)
from pysnn_ref.functional.neuron import lif_forward
from pysnn_ref.gradcheck import cosine_vs, numerical_gradient, rel_error
from pysnn_ref.methods import make_method
from pysnn_ref.optim import Adam

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))
OUT.mkdir(parents=True, exist_ok=True)
T = 4
COLORS = {"bptt": "C0", "asf": "C1", "ssf": "C2"}
EPOCHS = 2 if QUICK else 15
rng = np.random.default_rng(0)
# One BLAS thread: the matrices here are small, and several threads fight over a few cores
# (the training CLI does the same, --blas-threads 1).
threadpool_limits(limits=1, user_api="blas")

# %%
# 1. ASF's loss on the output membrane (ASF Eq. 6)
# -------------------------------------------------
# ASF reads the class scores from the membrane of non-spiking output neurons,
# u_T = sum_t y[t], and compares u_T / (T V_th) with the one-hot label Y by a squared error.
# Its gradient with respect to every step's readout current y[t] is the same for all t: the
# first factor of ASF Eq. 9 (the last layer's backward supplies the weights).

print("1. ASF Eq. 6: L = 1/2 |Y - u_T / (T V_th)|^2 on the output membrane u_T = sum_t y[t]")
T_, B, C, v_th = 5, 4, 3, 0.8
y = rng.normal(0.3, 1.0, (T_, B, C))                     # readout currents of the last layer
labels = rng.integers(0, C, B)
Y = np.eye(C)[labels]
by_hand = 0.5 * ((Y - y.sum(0) / (T_ * v_th)) ** 2).sum() / B   # averaged over the batch
loss, cache = asf_mse_loss_forward(y, labels, v_th=v_th)
dy = asf_mse_loss_backward(cache)      # (u_T/(T V_th) - Y)/(B T V_th): Eq. 9 before the w
fd = numerical_gradient(lambda: asf_mse_loss_forward(y, labels, v_th=v_th)[0], y)
print(f"   by hand {by_hand:.6f} = asf_mse_loss_forward {loss:.6f}; its gradient, the same at"
      f" every step t, vs finite differences: rel error {rel_error(dy, fd):.1e}")
assert abs(by_hand - loss) < 1e-12 and rel_error(dy, fd) < 1e-7
assert np.allclose(dy, dy[:1])

# %%
# 2. ASF's scale factor S, two ways (ASF Eq. 12, Alg. 1)
# -------------------------------------------------------
# The paper's S is the ratio of the layer's summed output and input flows.  The authors' code
# (github.com/neural-lab/ASF-BP) counts only neurons with FI >= FO and smooths S with an EMA
# (0.6 new + 0.4 previous); the library offers both.

I = rng.normal(0.4, 0.6, size=(16, 2000))
o, _ = lif_forward(I, lam=1.0, v_th=1.0)                 # IF neurons, ASF's case
FI, FO = I.sum(0), o.sum(0)
S = FO.sum() / FI.sum()                                  # ASF Eq. 12
S_paper = flows.asf_scale_paper(float(FO.sum()), float(FI.sum()), previous=1.0)
S_code = flows.asf_scale_code(FO, FI, previous=1.0)
print(f"\n2. S = sum FO / sum FI = {S:.3f}; flows.asf_scale_paper = {S_paper:.3f} (= Eq. 12); "
      f"flows.asf_scale_code (masked, EMA from S = 1) = {S_code:.3f}")
assert abs(S_paper - S) < 1e-12 and 0 < S_code

# %%
# 3. The same network trained by BPTT, ASF and SSF
# -------------------------------------------------
# An MLP 64-128-128-10 of LIF neurons (lam = 0.5) on the built-in 8x8 digits, T = 4, SDT loss,
# Adam; only the method differs.  Then one backward pass is timed for growing T: BPTT's grows
# with T, the flows' stays nearly flat (chapter 16 measures it in detail).


def mlp(seed: int = 0) -> nn.Sequential:
    """Flatten -> Linear 64-128 -> LIF -> Linear 128-128 -> LIF -> Linear 128-10."""
    g = np.random.default_rng(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in ((64, 128), (128, 128)):
        layers += [nn.Linear(a, b, rng=g, dtype=np.float32), nn.LIF(lam=0.5, v_th=1.0)]
    layers.append(nn.Linear(128, 10, rng=g, dtype=np.float32))
    return nn.Sequential(*layers)


def train(method: str, ds: data.Dataset, epochs: int) -> dict:
    net = mlp()
    m = make_method(method)
    enc = data.DirectEncoder()
    opt = Adam(net.parameters(), lr=1e-3)
    t_fwd = t_bwd = 0.0
    for epoch in range(epochs):
        m.begin_epoch(net, epoch)                  # ASF: refresh S every 5 epochs (ASF Alg. 1)
        net.train()
        for xb, yb in data.iterate_minibatches(ds.x_train, ds.y_train, 64, rng=epoch):
            t0 = time.perf_counter()
            y = m.forward(net, xb, T, enc)
            _, c = sdt_loss_forward(y, yb)
            t1 = time.perf_counter()
            net.zero_grad()
            m.backward(net, sdt_loss_backward(c))
            t2 = time.perf_counter()
            opt.step()
            t_fwd += t1 - t0
            t_bwd += t2 - t1
    net.eval()
    acc = accuracy(m.forward(net, ds.x_test, T, enc), ds.y_test)
    return {"net": net, "acc": acc, "fwd": t_fwd, "bwd": t_bwd}


def backward_time(method: str, Tn: int, x: np.ndarray, labels: np.ndarray) -> float:
    net = mlp()
    m = make_method(method)
    enc = data.DirectEncoder()
    best = np.inf
    for _ in range(5):
        _, c = sdt_loss_forward(m.forward(net, x, Tn, enc), labels)
        dy = sdt_loss_backward(c)
        net.zero_grad()
        t0 = time.perf_counter()
        m.backward(net, dy)
        best = min(best, time.perf_counter() - t0)
    return best


ds = data.load_dataset("digits")
print(f"\n3. The same network, {EPOCHS} epochs each: MLP 64-128-128-10, LIF lam=0.5, T={T}, "
      "SDT loss, Adam")
results = {m: train(m, ds, EPOCHS) for m in ("bptt", "asf", "ssf")}
print(f"   {'method':6s} {'test acc':>8s} {'forward':>8s} {'backward':>9s}")
for m, r in results.items():
    print(f"   {m:6s} {r['acc']:8.3f} {r['fwd']:7.2f}s {r['bwd']:8.2f}s")
    assert r["acc"] >= (0.6 if QUICK else 0.9), (m, r["acc"])
print("   (the forward is the same spiking network in all three -- ASF and SSF also update\n"
      "   their running sums there; the backward is where they save)")

Ts = [4, 16] if QUICK else [4, 8, 16, 32, 64]
xb, yb = ds.x_train[:128], ds.y_train[:128]
times = {m: [backward_time(m, Tn, xb, yb) for Tn in Ts] for m in ("bptt", "asf", "ssf")}
print("   one backward pass, batch 128 (best of 5):")
print("   " + f"{'T':>4s}" + "".join(f"{m:>10s}" for m in times))
for i, Tn in enumerate(Ts):
    print("   " + f"{Tn:4d}" + "".join(f"{times[m][i] * 1e3:8.2f}ms" for m in times))

fig = plt.figure(figsize=(11, 4.2), layout="constrained")
ax_t, ax_a = fig.subplots(1, 2)
for m, ts in times.items():
    ax_t.loglog(Ts, np.array(ts) * 1e3, "o-", label=m, color=COLORS[m])
ax_t.set_xticks(Ts, [str(t) for t in Ts])
ax_t.set_xlabel("time steps T")
ax_t.set_ylabel("backward time (ms)")
ax_t.set_title("one backward pass, batch 128")
ax_t.legend(fontsize=8)
names = list(results)
ax_a.bar(names, [results[m]["acc"] for m in names], color=[COLORS[m] for m in names])
ax_a.set_ylim(0.5, 1.0)
ax_a.set_xlabel("training method")
ax_a.set_ylabel("test accuracy")
ax_a.set_title(f"test accuracy after {EPOCHS} epochs (ASF Eqs. 9-12, SSF Eqs. 13-15)")
path = OUT / "12_training.png"
fig.savefig(path, dpi=90)
print(f"   figure: {path}")

# %%
# 4. How close are the flow gradients to BPTT's?
# -----------------------------------------------
# The cosine of ASF's (one gain S per layer, Eq. 12) and SSF's (1/(R V_th) per neuron, Eq. 14)
# weight gradients with BPTT's on the same batch, at initialisation and after training.  The
# readout layer's gradient needs no flow approximation: dW = dL/dy^T (mean over t of o), the same
# in all three methods, since the forward is the same spiking network.

print("\n4. Cosine similarity of each method's weight gradients with BPTT's "
      "(gradcheck.cosine_vs), batch of 256")
xb, yb = ds.x_train[:256], ds.y_train[:256]
enc = data.DirectEncoder()
cos_rows = []
for label, net_of in (("at init", lambda m: mlp()),
                      ("after training", lambda m: results[m]["net"])):
    for m in ("asf", "ssf"):
        net = net_of(m)
        net.train()
        cos = cosine_vs(net, m, xb, yb, T=T, encoder=enc)
        cos_rows.append((f"{m} {label}", cos))
        print(f"   {m} {label:14s}: " + "  ".join(f"{k} {v:.3f}" for k, v in cos.items()))
        assert cos["5.W"] > 1 - 1e-9                 # the readout: exactly BPTT's direction
        assert all(v > 0 for v in cos.values())

fig = plt.figure(figsize=(7, 4.2), layout="constrained")
ax = fig.subplots()
keys = list(cos_rows[0][1])
for j, (label, cos) in enumerate(cos_rows):
    ax.bar(np.arange(len(keys)) + 0.2 * j - 0.3, [cos[k] for k in keys], width=0.2,
           label=label, color=COLORS[label[:3]], hatch="//" if "after" in label else None,
           edgecolor="white")
ax.set_xticks(range(len(keys)), [f"layer {k}" for k in keys])
ax.set_ylim(0, 1.3)                                    # room for the legend above the bars
ax.set_xlabel("weight layer")
ax.set_ylabel("cosine similarity")
ax.set_title("cosine(method gradient, BPTT gradient)")
ax.legend(fontsize=7, loc="upper center", ncol=2)
path = OUT / "12_cosines.png"
fig.savefig(path, dpi=90)
print(f"   figure: {path}")
hidden = {label: min(v for k, v in cos.items() if k != "5.W") for label, cos in cos_rows}
print("   hidden layers, lowest cosine: " + ", ".join(f"{k} {v:.2f}" for k, v in hidden.items()))
for when in ("at init", "after training"):
    assert hidden[f"ssf {when}"] > hidden[f"asf {when}"], hidden
print("   The readout agrees exactly; below it, SSF's per-neuron gain 1/(R V_th) follows\n"
      "   BPTT's direction closely, ASF's one linear gain per layer more coarsely.  Both\n"
      "   cost one backward pass whatever T is.")

# %%
# What the asserts above checked
# ------------------------------

print("\nVerification (asserted): ASF Eq. 6 by hand = asf_mse_loss_forward, its gradient = FD; "
      "asf_scale_paper = Eq. 12;\n   every method trains above the accuracy floor; readout "
      "cosine 1 for every method, every hidden cosine > 0, SSF's lowest hidden cosine above "
      "ASF's (at init and after training)")
print("Chapter 12 done.")

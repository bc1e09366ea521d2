"""
Chapter 9 -- The current-based LIF neuron: a second state
=========================================================

The LIF neuron of chapter 2 integrates its input current directly: an input spike makes the
membrane jump at once, then the jump leaks away (SSF Eqs. 6-7, soft reset Eqs. 16-17).  Real
synapses are slower: an input spike opens channels that let a *synaptic current* flow for a while,
and it is that current the membrane integrates.  The current-based LIF keeps it as a second state
(snnTorch's ``Synaptic`` neuron, Eshraghian et al., "Training Spiking Neural Networks Using
Lessons From Deep Learning", Proc. IEEE 2023; the current-based model of Zenke & Ganguli,
"SuperSpike", Neural Computation 2018, and of Neftci, Mostafa & Zenke, "Surrogate Gradient
Learning in Spiking Neural Networks", IEEE Signal Processing Magazine 2019)::

    syn[t] = alpha * syn[t-1] + I[t]          synaptic current, decays by alpha per step
    u[t]   = lam * v[t-1] + syn[t]            membrane (before reset), decays by lam
    o[t]   = H(u[t] - V_th)                   spike
    v[t]   = u[t] (1 - o[t])   (hard reset)   v[t] = u[t] - V_th o[t]   (soft reset)

With alpha = 0 the synaptic current is the input and this is the LIF of chapter 2 (SSF Eqs. 6-7).
With alpha > 0 one input spike produces a post-synaptic potential (PSP) that *rises* over a few
steps and then decays: the difference of two exponentials (lam^(t+1) - alpha^(t+1)) / (lam -
alpha), the "alpha kernel" (t + 1) lam^t when alpha = lam.  The neuron now has a memory of its
input on two time scales, which is what temporal tasks want.

The price is a second state, so the backward pass needs a second adjoint.  Chapter 5 derived the
LIF's exact BPTT (SSF Eqs. 8-10, Eq. 8 corrected); here the same reasoning gives (derivation in
``docs/derivations.md``)::

    dL/do[t]   = g[t] - lam u[t] dL/du[t+1]                    (soft reset: - lam V_th dL/du[t+1])
    dL/du[t]   = dL/do[t] sigma'(u[t] - V_th) + lam (1 - o[t]) dL/du[t+1]        (soft: + lam ...)
    dL/dsyn[t] = dL/du[t] + alpha dL/dsyn[t+1]
    dL/dI[t]   = dL/dsyn[t]

The membrane adjoint is the LIF's; the synaptic adjoint is the forward's leaky filter run
backwards in time.  This chapter

1. writes the two-state update as a NumPy loop and checks it against
   ``pysnn_ref.functional.synaptic.synaptic_forward`` (float64 and float32, hard and soft reset);
2. draws the PSP of the LIF and of the current-based neuron and checks the closed form;
3. writes the two-adjoint BPTT as a loop and checks it against the library's backward and
   against finite differences (float64, smooth mode: chapter 4);
4. trains a small network of ``nn.SynapticLIF`` neurons on the built-in digits (the loop of
   chapter 8) next to the same network of LIF neurons.

Run:  python tutorials/09_current_based_lif.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""

# %%
# Setup
# -----
# ``QUICK`` shrinks the training run; figures go to ``tutorials/out`` (or
# ``$PYSNN_TUTORIAL_OUT``).

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from threadpoolctl import threadpool_limits

from pysnn_ref import data, nn
from pysnn_ref.functional.loss import accuracy, sdt_loss_backward, sdt_loss_forward
from pysnn_ref.functional.neuron import lif_backward, lif_forward
from pysnn_ref.functional.surrogate import get_surrogate
from pysnn_ref.functional.synaptic import synaptic_backward, synaptic_forward
from pysnn_ref.gradcheck import numerical_gradient, rel_error
from pysnn_ref.optim import Adam

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))
OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
checks: list[str] = []  # what the asserts verified, for the closing line

# %%
# 1. The two-state update as a NumPy loop
# ---------------------------------------
# One loop over time, vectorised over neurons.  In smooth mode the spike is the surrogate's
# primitive (chapter 4), which the gradient checks of section 3 need.


def synaptic_by_hand(I: np.ndarray, alpha: float, lam: float, v_th: float, reset: str,
                     smooth_surrogate: str | None = None) -> tuple[np.ndarray, ...]:
    """The current-based LIF over I (T, N): returns (o, u, syn), all (T, N)."""
    o, u, syn = np.zeros_like(I), np.zeros_like(I), np.zeros_like(I)
    s_prev = np.zeros_like(I[0])                  # syn[-1] = 0
    v = np.zeros_like(I[0])                       # v[-1] = 0
    for t in range(I.shape[0]):
        syn[t] = alpha * s_prev + I[t]            # the synaptic current
        u[t] = lam * v + syn[t]                   # SSF Eq. 6 with syn in place of I
        if smooth_surrogate is None:
            o[t] = (u[t] >= v_th).astype(I.dtype)  # SSF Eq. 7, H(0) = 1
        else:
            o[t] = get_surrogate(smooth_surrogate).primitive(u[t] - v_th)
        v = u[t] * (1 - o[t]) if reset == "hard" else u[t] - v_th * o[t]   # Eq. 6 / 16
        s_prev = syn[t]
    return o, u, syn


I = rng.normal(0.3, 0.8, size=(12, 500))
print("1. The two-state update (NumPy loop) vs functional.synaptic.synaptic_forward "
      "(SSF Eqs. 6-7 / 16-17 driven by the synaptic current)")
for dtype in (np.float64, np.float32):
    for reset in ("hard", "soft"):
        Id = I.astype(dtype)
        o_h, u_h, _ = synaptic_by_hand(Id, 0.6, 0.8, 1.0, reset)
        o_l, cache = synaptic_forward(Id, alpha=0.6, lam=0.8, v_th=1.0, reset=reset)
        assert o_l.dtype == dtype and 0.05 < o_l.mean() < 0.95
        assert np.array_equal(o_h, o_l) and np.allclose(u_h, cache.u, rtol=1e-6, atol=1e-6)
        print(f"   {np.dtype(dtype).name:7s} {reset:4s} reset: identical spikes "
              f"(rate {o_l.mean():.3f}), max |u difference| {np.abs(u_h - cache.u).max():.1e}")
o_0, c_0 = synaptic_forward(I, alpha=0.0, lam=0.8, v_th=1.0)
o_lif, c_lif = lif_forward(I, lam=0.8, v_th=1.0)
assert np.array_equal(o_0, o_lif) and np.array_equal(c_0.u, c_lif.u)
print("   alpha = 0: the same spikes and membrane as lif_forward, bit for bit (the LIF of "
      "chapter 2)")
checks.append("the NumPy loop = synaptic_forward (float64, float32, hard, soft); alpha=0 = LIF")

# %%
# 2. The post-synaptic potential: LIF vs current-based
# ----------------------------------------------------
# One unit input at t = 0, the threshold out of reach: the membrane *is* the PSP.  The LIF's
# jumps to 1 and decays as lam^t; the current-based neuron's rises for a few steps first.  On
# the right, a few input spikes into a neuron with V_th = 1: the LIF forgets each input within a
# few steps, while the synaptic current sums inputs that arrive a few steps apart (the neuron
# fires on bursts the LIF misses) and keeps charging the membrane after the input stops.

T_psp, lam = 25, 0.8
t = np.arange(T_psp)
impulse = np.zeros((T_psp, 1))
impulse[0] = 1.0
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
print("\n2. PSP of one input spike (lam = 0.8): closed form (lam^(t+1) - alpha^(t+1)) / "
      "(lam - alpha)")
for alpha in (0.0, 0.5, 0.8):
    _, c = synaptic_forward(impulse, alpha=alpha, lam=lam, v_th=100.0)
    psp = c.u[:, 0]
    closed = (t + 1) * lam ** t if alpha == lam else \
        (lam ** (t + 1) - alpha ** (t + 1)) / (lam - alpha)
    assert np.allclose(psp, closed, rtol=1e-12)
    label = "LIF (alpha = 0)" if alpha == 0 else f"current-based, alpha = {alpha}"
    ax1.plot(t, psp, "o-", ms=3, label=label)
    print(f"   alpha = {alpha}: peak {psp.max():.3f} at t = {int(psp.argmax())}, "
          f"area {psp.sum():.2f} (= 1 / ((1 - alpha)(1 - lam)) = "
          f"{1 / ((1 - alpha) * (1 - lam)):.2f} as T -> inf)")
ax1.set_title("PSP of one input at t = 0 (threshold out of reach)")
ax1.set_xlabel("time step t")
ax1.set_ylabel("membrane u[t]")
ax1.legend(fontsize=8)
train = np.zeros((T_psp, 1))
train[[2, 4, 5, 9, 10, 11]] = 0.35
for alpha, style in ((0.0, "-"), (0.6, "-")):
    o, c = synaptic_forward(train, alpha=alpha, lam=lam, v_th=1.0, reset="hard")
    line, = ax2.plot(t, c.u[:, 0], style, label=f"u[t], alpha = {alpha}")
    ax2.plot(t[o[:, 0] > 0], c.u[o[:, 0] > 0, 0], "*", ms=12, color=line.get_color())
ax2.stem(t, train[:, 0], linefmt="k:", markerfmt="k.", basefmt=" ", label="input I[t]")
ax2.axhline(1.0, color="grey", lw=0.8, ls="--", label="V_th")
ax2.set_title("membrane under an input spike train (stars: spikes)")
ax2.set_xlabel("time step t")
ax2.set_ylabel("membrane u[t] / input")
ax2.legend(fontsize=8)
path = OUT / "09_psp.png"
fig.savefig(path, dpi=90)
print(f"   figure: {path}")
checks.append("PSP = (lam^(t+1) - alpha^(t+1)) / (lam - alpha), alpha kernel at alpha = lam")

# %%
# 3. BPTT with two adjoints, by hand
# ----------------------------------
# Backwards in time, carrying dL/du[t+1] and dL/dsyn[t+1].  The loss is L = sum_t <o[t], G[t]>
# with a random G, so the gradient arriving from above is g = G and
# ``numerical_gradient(f, I, G)`` measures exactly dL/dI.


def synaptic_backward_by_hand(g: np.ndarray, u: np.ndarray, o: np.ndarray, alpha: float,
                              lam: float, v_th: float, reset: str, surrogate: str,
                              synaptic_adjoint: bool = True) -> np.ndarray:
    """dL/dI (T, N) from g = dL/do, the membranes u and the spikes o of the forward."""
    sg = get_surrogate(surrogate).grad(u - v_th)   # sigma'(u[t] - V_th), every t
    dI = np.zeros_like(u)
    du_next = np.zeros_like(u[0])                  # dL/du[t+1] = 0 after the last step
    ds_next = np.zeros_like(u[0])                  # dL/dsyn[t+1]
    for t in range(u.shape[0] - 1, -1, -1):
        if reset == "hard":
            do = g[t] - lam * u[t] * du_next
            du = do * sg[t] + lam * (1 - o[t]) * du_next
        else:
            do = g[t] - lam * v_th * du_next
            du = do * sg[t] + lam * du_next
        ds = du + alpha * ds_next if synaptic_adjoint else du
        dI[t] = ds
        du_next, ds_next = du, ds
    return dI


T, N, alpha = 10, 6, 0.7
I3 = rng.normal(0.3, 0.7, size=(T, N))
G = rng.normal(size=(T, N))
print(f"\n3. Two-adjoint BPTT by hand vs synaptic_backward vs finite differences "
      f"(float64, smooth mode, T={T}, alpha={alpha}, lam={lam}; chapter 5 for the LIF's "
      "SSF Eqs. 8-10)")
for reset in ("hard", "soft"):
    for surrogate in ("sigmoid", "atan"):
        kw = dict(alpha=alpha, lam=lam, v_th=1.0, reset=reset, surrogate=surrogate, smooth=True)
        o, cache = synaptic_forward(I3, **kw)
        d_lib = synaptic_backward(G, cache)
        d_hand = synaptic_backward_by_hand(G, cache.u, o, alpha, lam, 1.0, reset, surrogate)
        d_num = numerical_gradient(lambda kw=kw: synaptic_forward(I3, **kw)[0], I3, G)
        d_half = synaptic_backward_by_hand(G, cache.u, o, alpha, lam, 1.0, reset, surrogate,
                                           synaptic_adjoint=False)
        e_hand, e_num, e_half = (rel_error(d_hand, d_lib), rel_error(d_lib, d_num),
                                 rel_error(d_half, d_num))
        print(f"   {reset:4s} {surrogate:8s} by hand vs library {e_hand:.1e}, library vs FD "
              f"{e_num:.1e}; without dL/dsyn: {e_half:.1e}")
        assert e_hand < 1e-12 and e_num < 1e-7 and e_half > 1e-2

# The same gradient, assembled from chapter 5's LIF backward: run the LIF on the synaptic
# current, back-propagate through it, then run the synaptic filter backwards in time.
kw = dict(lam=lam, v_th=1.0, surrogate="sigmoid", smooth=True)
_, _, syn = synaptic_by_hand(I3, alpha, lam, 1.0, "hard", smooth_surrogate="sigmoid")
_, c_lif = lif_forward(syn, **kw)
d_syn = lif_backward(G, c_lif)                     # dL/dsyn[t] through the membrane only
d_filter = np.zeros_like(d_syn)
for k in range(T - 1, -1, -1):
    d_filter[k] = d_syn[k] + (alpha * d_filter[k + 1] if k + 1 < T else 0.0)
_, cache = synaptic_forward(I3, alpha=alpha, **kw)
assert rel_error(d_filter, synaptic_backward(G, cache)) < 1e-12
print("   = lif_backward on the synaptic current, then the filter syn = alpha syn + I run "
      "backwards in time (Jacobian J_LIF F, backward F^T J_LIF^T)")
checks.append("two-adjoint loop = synaptic_backward = finite differences (< 1e-7), without "
              "dL/dsyn it fails; = LIF backward + reverse filter")

# %%
# How far back does the gradient reach?  The loss reads only the last step's spike, L = o[T-1],
# of a neuron at rest (zero input, so every reset factor is the same): the LIF's gradient with
# respect to earlier inputs decays as lam^(T-1-t); the synaptic adjoint sums that over a second,
# slower filter, dL/dI[t] = sum_k alpha^(k-t) dL/du[k], so early inputs keep more credit.

T_far = 20
I_far = np.zeros((T_far, 1))
g_last = np.zeros((T_far, 1))
g_last[-1] = 1.0
fig, ax = plt.subplots(figsize=(7, 3.8), layout="constrained")
for alpha_far in (0.0, 0.5, 0.9):
    _, c = synaptic_forward(I_far, alpha=alpha_far, lam=lam, v_th=1.0, surrogate="sigmoid",
                            smooth=True)
    dI = synaptic_backward(g_last, c)[:, 0]
    ax.semilogy(np.arange(T_far), np.abs(dI) / np.abs(dI).max(), "o-", ms=3,
                label=f"alpha = {alpha_far}" + (" (LIF)" if alpha_far == 0 else ""))
    if alpha_far == 0.0:
        lif_reach = abs(dI[0]) / abs(dI).max()
    else:
        assert abs(dI[0]) / abs(dI).max() > lif_reach       # more credit reaches t = 0
ax.set_title("|dL/dI[t]| for L = o[T-1] (smooth mode), normalised")
ax.set_xlabel("input time step t")
ax.set_ylabel("relative gradient magnitude")
ax.legend(fontsize=8)
path = OUT / "09_gradient_reach.png"
fig.savefig(path, dpi=90)
print(f"   figure: {path}")
checks.append("the synaptic adjoint carries more gradient to early inputs than the LIF's")

# %%
# 4. Training a network of current-based neurons
# ----------------------------------------------
# The loop of chapter 8: ``Flatten -> Linear(64, 128) -> neurons -> Linear(128, 10)`` on the
# 8x8 digits, direct encoding, the SDT loss (TET Eq. 7: cross-entropy of the time-averaged
# output; its gradient is TET Eq. 8), Adam.  The same seed, weights and data order for a LIF
# layer and a ``nn.SynapticLIF`` layer.  With direct encoding the input is constant, so the
# synaptic current charges up to I / (1 - alpha) over the first steps.

T_TRAIN, BATCH = 6, 64
EPOCHS = 2 if QUICK else 10


def train_digits(neuron: nn.Module, ds: data.Dataset, epochs: int) -> list[float]:
    """Train the MLP with ``neuron`` as its hidden layer; returns the test accuracy per epoch."""
    r = np.random.default_rng(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 128, rng=r), neuron, nn.Linear(128, 10, rng=r))
    enc, opt, accs = data.DirectEncoder(), Adam(net.parameters(), lr=1e-3), []
    for epoch in range(epochs):
        for xb, yb in data.iterate_minibatches(ds.x_train, ds.y_train, BATCH, rng=epoch):
            _, cache = sdt_loss_forward(net.forward(enc.encode(xb, T_TRAIN)), yb)  # TET Eq. 7
            net.zero_grad()
            net.backward(sdt_loss_backward(cache), need_dx=False)                   # BPTT
            opt.step()
        net.eval()
        accs.append(accuracy(net.forward(enc.encode(ds.x_test, T_TRAIN)), ds.y_test))
        net.train()
        print(f"   {neuron!r:58s} epoch {epoch + 1:2d}: test acc {accs[-1]:.3f}, hidden rate "
              f"{neuron.firing_rate:.3f}")
    return accs


print(f"\n4. Training on digits: BPTT, SDT loss (TET Eq. 7), Adam, T = {T_TRAIN}, "
      f"{EPOCHS} epoch(s)")
ds = data.load_dataset("digits")
with threadpool_limits(limits=1, user_api="blas"):   # small GEMMs: one BLAS thread (chapter 8)
    acc_lif = train_digits(nn.LIF(lam=0.5, v_th=1.0), ds, EPOCHS)
    acc_syn = train_digits(nn.SynapticLIF(alpha=0.5, lam=0.5, v_th=1.0), ds, EPOCHS)
need = 0.6 if QUICK else 0.9
assert acc_syn[-1] >= need and acc_lif[-1] >= need, (acc_syn, acc_lif)
fig, ax = plt.subplots(figsize=(6.5, 3.8), layout="constrained")
ep = np.arange(1, EPOCHS + 1)
ax.plot(ep, acc_lif, "o-", label="LIF (lam = 0.5)")
ax.plot(ep, acc_syn, "s-", label="SynapticLIF (alpha = 0.5, lam = 0.5)")
ax.set_title("64-128-10 MLP on digits, BPTT: test accuracy")
ax.set_xlabel("epoch")
ax.xaxis.set_major_locator(MaxNLocator(integer=True))
ax.set_ylabel("test accuracy")
ax.legend(fontsize=8)
path = OUT / "09_training.png"
fig.savefig(path, dpi=90)
print(f"   figure: {path}")
checks.append(f"a SynapticLIF network trains on digits (test acc {acc_syn[-1]:.3f}, LIF "
              f"{acc_lif[-1]:.3f}, both >= {need})")

# %%
# Verification
# ------------

print("\nVerification (asserted): " + ";\n   ".join(checks))
print("Chapter 9 done.")

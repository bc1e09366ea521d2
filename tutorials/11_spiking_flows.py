"""
Chapter 11 -- Spiking flows: what ASF and SSF keep instead of T steps
=====================================================================

BPTT (chapter 8) keeps every neuron's membrane u[t] for all T steps and walks back through them:
memory and backward time grow with T.  Two methods replace a neuron's T-step history by a few
running sums -- *spiking flows* -- and back-propagate once, through an *equivalent rate
network*.  This chapter builds the flows and that network; chapter 12 trains with them.

Time steps are counted t = 0, 1, ..., T-1 here, in the text and in the code (the papers count
t = 1, ..., T, so their weight lam^(T-t) is our lam^(T-1-t): the last step weighs 1).

**ASF** (accumulated spiking flow; Wu et al., AAAI 2021).  The accumulated flows (Eq. 7) are
plain sums over the steps, FI = sum_t I[t] and FO = sum_t o[t]; FI of one layer is W FO of the
layer below (Eq. 8).  The equivalent network maps FI to FO linearly, FO = S FI, with one scale
factor per layer (Eq. 12): S = sum over neurons of FO / sum over neurons of FI.

**SSF** (stabilized spiking flow; Wang et al., ICCV 2023).  Weighted means with the weight
w_t = lam^(T-1-t): FI = sum_t w_t I[t] / sum_t w_t, FO likewise for o[t], and the average spiking
electricity R = sum_t w_t o[t] u[t] / (V_th sum_t w_t o[t]).  Multiplying the hard-reset
recurrence (SSF Eq. 6) by w_t and summing gives the *exact* balance (Eqs. 11-12)::

    v[T-1] = sum_t w_t (I[t] - o[t] u[t])        (v[T-1]: the membrane left after the last step)

and, neglecting what is left (< V_th), the mapping FO = max(0, FI / (R V_th)) (Eqs. 13-14), with
dFO/dFI = 0 where R > 2.  Soft reset (Eqs. 16-19): v[T-1] = sum_t w_t (I[t] - V_th o[t]) and
FO = clamp(FI / V_th, 0, 1).  The gradient is dL/dI[t] = dL/dFO dFO/dFI for every t (Eq. 15).

In both methods the forward pass is the real spiking network (the same spikes as BPTT); only the
backward changes.  What this chapter does:

1. computes both kinds of flows by hand for a layer of neurons and checks them against the
   library's streaming ``FlowState`` (fed a chunk of time steps at a time);
2. verifies the electricity balance (SSF Eqs. 12 and 18) to round-off;
3. plots how well the flow mappings (SSF Eqs. 14 and 19, ASF's S of Eq. 12) describe real
   neurons (figure ``tutorials/out/11_flows.png``);
4. builds the equivalent rate network by hand and shows, by finite differences, that the library's
   ASF and SSF backward passes are its exact gradients (ASF Eqs. 9-11, SSF Eq. 15).

Run:  python tutorials/11_spiking_flows.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from pysnn_ref import nn
from pysnn_ref.functional import flows
from pysnn_ref.functional.loss import sdt_loss_backward, sdt_loss_forward
from pysnn_ref.functional.neuron import lif_forward, make_neuron_params
from pysnn_ref.gradcheck import numerical_gradient, rel_error
from pysnn_ref.methods import make_method
from pysnn_ref.models import lif_mlp

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))
OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)

# %%
# 1. The flows by hand, and the library's ``FlowState``
# ------------------------------------------------------
# A layer of N neurons driven by random currents for T = 16 steps.  By hand we keep the whole
# history (T, N) and sum it; the library streams the input a chunk of steps at a time and keeps
# only running sums of shape (N,) -- nothing of length T.  Its ``FlowState`` holds decayed sums
# with decay w per step (w = 1 for ASF, w = lam for SSF) and returns their weighted *means*, so
# ASF's sums are the means times T.  ``FlowState.like(I, w)`` makes the zero state for the neurons
# that ``I`` drives (their shape, dtype and device).

Tn, N, lam, v_th = 16, 2000, 0.8, 1.0
I = rng.normal(0.4, 0.6, size=(Tn, N))
w_t = lam ** np.arange(Tn - 1, -1, -1.0)[:, None]      # w_t = lam^(T-1-t), t = 0 .. T-1


def flows_by_hand(I: np.ndarray, o: np.ndarray, u: np.ndarray) -> dict[str, np.ndarray]:
    """ASF's accumulated (Eq. 7) and SSF's stabilized flows (Sec. 3.3, Eqs. 11-13) of neurons
    (T, N), straight from the papers, with w_t = lam^(T-1-t)."""
    return {
        "ASF FI": I.sum(0), "ASF FO": o.sum(0),
        "SSF FI": (w_t * I).sum(0) / w_t.sum(), "SSF FO": (w_t * o).sum(0) / w_t.sum(),
        "SSF R": np.where(o.sum(0) > 0, (w_t * o * u).sum(0)
                          / np.maximum(v_th * (w_t * o).sum(0), 1e-300), 1.0),
    }


print("1. Spiking flows by hand vs the library's streaming FlowState (ASF Eq. 7; SSF Sec. 3.3)")
by_hand, spikes, membranes = {}, {}, {}
for reset in ("hard", "soft"):
    p = make_neuron_params(lam=lam, v_th=v_th, reset=reset)
    o, cache = lif_forward(I, lam=lam, v_th=v_th, reset=reset)
    spikes[reset], membranes[reset] = o, cache.u
    by_hand[reset] = mine = flows_by_hand(I, o, cache.u)
    for method, w in (("ASF", 1.0), ("SSF", lam)):
        st = flows.FlowState.like(I, w)
        for t0 in range(0, Tn, 5):                       # chunks of 5, 5, 5, 1 steps
            flows.lif_forward_flows(I[t0:t0 + 5], st, p)
        FI, FO = st.FI(), st.FO()
        if method == "ASF":                              # FlowState holds means; ASF sums
            FI, FO = FI * Tn, FO * Tn
        e = max(rel_error(FI, mine[f"{method} FI"]), rel_error(FO, mine[f"{method} FO"]))
        if method == "SSF":
            e = max(e, rel_error(flows.ssf_R(st, v_th), mine["SSF R"]))
        print(f"   {reset} reset, {method}: FI, FO{', R' if method == 'SSF' else ''} "
              f"by hand vs FlowState: rel error {e:.1e}")
        assert e < 1e-12

# %%
# 2. The electricity balance (SSF Eqs. 12 and 18)
# ------------------------------------------------
# What stays in the membrane after the last step is what came in minus what the spikes took,
# each step weighted by how much it has leaked since: exact, to round-off.

print("\n2. The electricity balance: v[T-1] = sum_t w_t (I[t] - what a spike took)")
for reset in ("hard", "soft"):
    o, u = spikes[reset], membranes[reset]
    if reset == "hard":
        v_last = u[-1] * (1 - o[-1])
        balance = (w_t * (I - o * u)).sum(0)             # SSF Eq. 12
    else:
        v_last = u[-1] - v_th * o[-1]
        balance = (w_t * (I - v_th * o)).sum(0)          # SSF Eq. 18
    err = np.max(np.abs(v_last - balance))
    print(f"   {reset} reset: |v[T-1] - sum_t w_t (I[t] - spike loss)| <= {err:.1e}  "
          f"(SSF Eq. {12 if reset == 'hard' else 18})")
    assert err < 1e-12

# %%
# 3. How well do the flow mappings describe real neurons?
# --------------------------------------------------------
# SSF's mappings drop the charge v[T-1] left in the membrane, so they are close for most
# neurons, not exact.  ASF's IF neurons (lam = 1, its paper's case) are described by one
# straight line through the whole layer, slope S (ASF Eq. 12).

fig = plt.figure(figsize=(13, 4.2), layout="constrained")
axes = fig.subplots(1, 3)
print("3. The flow mappings against the real output flows (T = 16)")
for ax, reset in zip(axes[:2], ("hard", "soft"), strict=True):
    FI, FO, R = by_hand[reset]["SSF FI"], by_hand[reset]["SSF FO"], by_hand[reset]["SSF R"]
    if reset == "hard":
        pred = np.maximum(0, FI / (R * v_th))            # SSF Eq. 14
        ax.set_xlabel("FI / (R V_th)")
        ax.set_title(f"SSF, hard reset (Eq. 14), lam={lam}")
    else:
        pred = np.clip(FI / v_th, 0, 1)                  # SSF Eq. 19
        ax.set_xlabel("FI / V_th")
        ax.set_title(f"SSF, soft reset (Eq. 19), lam={lam}")
    print(f"   {reset} reset: SSF mapping vs the real FO: mean |error| "
          f"{np.mean(np.abs(pred - FO)):.3f} (what the mapping neglects is v[T-1] / sum_t w_t)")
    ax.plot(pred, FO, ".", ms=2, alpha=0.4)
    ax.plot([0, 1.2], [0, 1.2], "k:", lw=1)
    ax.set_ylabel("FO (real, weighted rate)")

o_if, _ = lif_forward(I, lam=1.0, v_th=v_th)
FI, FO = I.sum(0), o_if.sum(0)
S = FO.sum() / FI.sum()                                  # ASF Eq. 12
axes[2].plot(FI, FO, ".", ms=2, alpha=0.4)
xs = np.linspace(FI.min(), FI.max(), 2)
axes[2].plot(xs, S * xs, "k:", lw=1, label=f"FO = S FI, S = {S:.2f}")
axes[2].set_xlabel("FI = sum_t I[t]")
axes[2].set_ylabel("FO = sum_t o[t]")
axes[2].set_title(f"ASF, IF neurons (Eq. 12), T = {Tn}")
axes[2].legend(fontsize=8)
print(f"   ASF, IF neurons: layer scale factor S = sum FO / sum FI = {S:.3f}")
path = OUT / "11_flows.png"
fig.savefig(path, dpi=90)
print(f"   figure: {path}")

# %%
# 4. The equivalent rate network, and why ASF and SSF backward are exact gradients of it
# ----------------------------------------------------------------------------------------
# ASF Fig. 2b and SSF Fig. 2b: the time-mean input goes through the weight layers; each spiking
# layer is replaced by its flow mapping linearised at the real network's operating point --
# value = the real mean firing rate FO0, slope = the flow gain (ASF: the layer's S; SSF:
# 1/(R V_th) per neuron, 0 where FI <= 0 or R > 2).  The library's ``make_method("asf")`` and
# ``make_method("ssf")`` backward passes (ASF Eqs. 9-11, SSF Eq. 15) must be the exact gradient of
# this small network: finite differences in float64 check it for every weight.  The network:
# ``pysnn_ref.models.lif_mlp``, Flatten -> [Linear -> LIF] per hidden size -> Linear, float64.


def rate_network_loss(net: nn.Sequential, X: np.ndarray, labels: np.ndarray,
                      points: list, gains: list) -> float:
    """SDT loss of the equivalent rate network of ``net`` at the operating ``points``."""
    x = X.mean(0)
    k = 0
    for layer in net.layers:
        if isinstance(layer, nn.LIF):
            FI0, FO0 = points[k]
            x = FO0 + gains[k] * (x - FI0)
            k += 1
        else:
            x = layer.forward(x[None])[0]          # Flatten / Linear on one "time step"
    return sdt_loss_forward(x[None], labels)[0]


print("\n4. ASF and SSF backward = exact gradient of the equivalent rate network")
X = rng.normal(0.6, 1.0, size=(6, 5, 6))                 # T = 6 steps, batch 5, 6 inputs
labels = rng.integers(0, 4, size=5)
for method in ("asf", "ssf"):
    net = lif_mlp((6, 8, 7, 4), lam=0.9)
    m = make_method(method)
    net.zero_grad()
    _, c = sdt_loss_forward(m.forward(net, X), labels)
    m.backward(net, sdt_loss_backward(c))
    # operating points and flow gains, from the real spiking forward, layer by layer
    points, gains, x = [], [], X
    for layer in net.layers:
        y = layer.forward(x)
        if isinstance(layer, nn.LIF):
            points.append((x.mean(0), y.mean(0)))
            if method == "asf":
                assert x.sum() > 0               # else Eq. 12 is undefined (S stays at 1)
                gains.append(layer.S)            # ASF Eq. 12, set by m.forward
            else:
                st = flows.FlowState.like(x, layer.p.lam)
                flows.lif_forward_flows(x, st, layer.p)
                gains.append(flows.ssf_gain(st, layer.p))   # SSF Eq. 14: 1/(R V_th)
        x = y
    desc = (", ".join(f"S={g:.3f}" for g in gains) if method == "asf" else
            ", ".join(f"gain mean {g.mean():.3f} ({np.mean(g == 0):.0%} zero)" for g in gains))
    print(f"   {method}: {desc}")
    for i, layer in enumerate(net.layers):
        for prm in layer.own_parameters():
            num = numerical_gradient(
                lambda n=net, pts=points, g=gains: rate_network_loss(n, X, labels, pts, g),
                prm.data)
            err = rel_error(prm.grad, num)
            print(f"     layer {i} {prm.name}: library {method} grad vs finite differences of "
                  f"the rate network: rel error {err:.1e}")
            assert err < 1e-7

# %%
# What the asserts above checked
# ------------------------------

print("\nVerification (asserted): the flows by hand = FlowState (rel < 1e-12, hard and soft "
      "reset); SSF Eqs. 12 / 18 to round-off;\n   ASF/SSF backward = the exact gradient of the "
      "equivalent rate network (FD rel < 1e-7 for every weight)")
print("Chapter 11 done: the flows are a few running sums; chapter 12 trains with them.")

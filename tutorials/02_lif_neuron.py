"""
Chapter 2 -- The leaky integrate-and-fire (LIF) neuron, by hand
===============================================================

A spiking neuron is a tiny recurrent network.  In discrete time (SSF paper, Wang et al., ICCV 2023,
Sec. 3.1) every neuron of a layer keeps a membrane potential u[t] that leaks by a factor lam per
step, integrates its input current I[t], and fires a spike o[t] = 1 when u[t] reaches the
threshold V_th.  After a spike the membrane is reset::

    hard reset (SSF Eqs. 6-7):   u[t] = lam * u[t-1] * (1 - o[t-1]) + I[t],   u[0] = I[0]
                                 o[t] = H(u[t] - V_th)            H(x) = 1 if x >= 0 else 0
    soft reset (SSF Eqs. 16-17): u[t] = lam * (u[t-1] - V_th * o[t-1]) + I[t]
                                 o[t] = H(u[t] - V_th)

A hard reset throws the membrane away (back to 0); a soft reset ("reset by subtraction") only
removes the V_th that the spike carried, so whatever was above threshold is kept for later.
With lam = 1 nothing leaks: that is the integrate-and-fire (IF) neuron of ASF-BP (Wu et al.,
AAAI 2021, Eq. 3).  Dspike (Li et al., NeurIPS 2021, Eqs. 1-2) and TET (Deng et al., ICLR 2022,
Eqs. 1-3) write the same hard-reset neuron with a leak tau = lam (Dspike fires on u > V_th
strictly: it differs only when u lands exactly on V_th).  In the library, I[t] of one layer is
W o[t] of the layer below (SSF Eq. 4); here we drive the neuron directly.

What this chapter does:

1. writes Eqs. 6-7 / 16-17 as a short NumPy loop over time (vectorised over neurons);
2. prints one neuron step by step, hard vs soft reset;
3. checks the loop against ``pysnn_ref.functional.lif_forward`` (the same spikes, the same
   membrane, to the last bit) for LIF and IF, hard and soft reset, float64 and float32;
4. measures the firing rate as a function of a constant input current: the soft-reset IF
   neuron fires at rate clamp(I / V_th, 0, 1) -- the relation SSF's Eq. 19 builds on
   (chapter 11) -- and a leaky neuron is silent below I = (1 - lam) V_th;
5. plots the membrane and the spikes (``tutorials/out/02_lif_neuron.png``).

Run:  python tutorials/02_lif_neuron.py        (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""


from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from pysnn_ref.functional.neuron import lif_forward

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))


def lif_by_hand(I: np.ndarray, lam: float, v_th: float, reset: str) -> tuple[np.ndarray, ...]:
    """SSF Eqs. 6-7 (reset="hard") or 16-17 (reset="soft").  Returns (o, u), both (T, N):
    the spikes and the membrane *before* the reset of each step."""
    T = I.shape[0]
    u = np.zeros_like(I)
    o = np.zeros_like(I)
    for t in range(T):
        if t == 0:
            u[0] = I[0]                                          # Eq. 6, t = 0
        elif reset == "hard":
            u[t] = lam * u[t - 1] * (1 - o[t - 1]) + I[t]        # Eq. 6
        else:
            u[t] = lam * (u[t - 1] - v_th * o[t - 1]) + I[t]     # Eq. 16
        o[t] = (u[t] - v_th >= 0).astype(I.dtype)                # Eq. 7 / 17, H(0) = 1
    return o, u


def print_trace(I: np.ndarray, lam: float, v_th: float) -> None:
    """One neuron, step by step, hard and soft reset side by side."""
    oh, uh = lif_by_hand(I[:, None], lam, v_th, "hard")
    os_, us = lif_by_hand(I[:, None], lam, v_th, "soft")
    print(f"   one neuron, lam={lam}, V_th={v_th}:")
    print("    t    I[t]  | hard: u[t]  o[t] | soft: u[t]  o[t]")
    for t in range(len(I)):
        print(f"   {t:2d}  {I[t]:5.2f}  |     {uh[t, 0]:6.3f}   {int(oh[t, 0])}   |"
              f"     {us[t, 0]:6.3f}   {int(os_[t, 0])}")
    print(f"   spikes: hard {int(oh.sum())}, soft {int(os_.sum())} -- the soft reset keeps the"
          " charge above threshold, so it fires more often")


# %%
# 1. One LIF neuron step by step, hard vs soft reset (SSF Eqs. 6-7 and 16-17)
# ---------------------------------------------------------------------------
# The neuron as a loop over time.  I is time-major (T, N): T steps of N neurons.

def section_trace() -> None:
    print("1. One LIF neuron step by step (SSF Eqs. 6-7 and 16-17)")
    I_one = np.full(8, 0.7)
    print_trace(I_one, lam=0.9, v_th=1.0)


OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
section_trace()


# %%
# 2. The loop equals ``lif_forward`` (SSF Eqs. 6-7, 16-17; ASF Eq. 3: IF)
# -----------------------------------------------------------------------
# The library's lif_forward computes the same thing (in a Numba kernel, one neuron per thread).
# It also returns a cache holding u, which its backward needs (chapter 5). In float64 the two
# agree to the last bit.  In float32 the kernel does its arithmetic in double precision before
# storing, our NumPy loop in single precision: the membranes then differ by a rounding error
# (~1e-7), the spikes (here) not at all.

def section_library(rng: np.random.Generator) -> None:
    print("\n2. The loop vs pysnn_ref.functional.lif_forward (SSF Eqs. 6-7, 16-17; ASF Eq. 3: IF)")
    N = 200 if QUICK else 2000
    for dtype in (np.float64, np.float32):
        for reset in ("hard", "soft"):
            for lam, kind in ((0.8, "LIF"), (1.0, "IF ")):
                I = rng.normal(0.4, 0.8, size=(16, N)).astype(dtype)
                o, u = lif_by_hand(I, lam, 1.0, reset)
                o_lib, cache = lif_forward(I, lam=lam, v_th=1.0, reset=reset)
                same_spikes = np.array_equal(o, o_lib)
                du = float(np.max(np.abs(u - cache.u)))
                print(f"   {kind} lam={lam} reset={reset:4s} {np.dtype(dtype).name}: "
                      f"spikes equal: {same_spikes}, max |u - u_lib| = {du:.1e}, "
                      f"rate {o.mean():.3f}")
                assert o_lib.dtype == dtype and same_spikes
                assert du == 0.0 if dtype == np.float64 else du < 1e-5


section_library(rng)


# %%
# 3. Firing rate vs constant input; soft-reset IF fires at clamp(I / V_th, 0, 1)
# ------------------------------------------------------------------------------
# Rate coding: drive every neuron with a constant current for many steps and count. Soft-reset
# IF: after n steps the membrane holds n*I - V_th*(#spikes) < V_th, so the rate is I/V_th up to
# 1/T -- the neuron computes a clamped ReLU of its input. Hard-reset neurons lose the charge
# above threshold at every spike (lower rate). A leaky neuron with constant input I settles at u
# = I / (1 - lam): it never fires if that stays below V_th, i.e. for I < (1 - lam) V_th.
#
# Firing rate vs constant input; soft-reset IF fires at clamp(I / V_th, 0, 1) (the relation SSF
# Eq. 19 builds on).

def section_rates() -> tuple[np.ndarray, dict[str, np.ndarray], float, int]:
    print("\n3. Firing rate vs constant input current (T steps)")
    T = 100 if QUICK else 400
    currents = np.linspace(-0.2, 1.4, 161)
    I = np.broadcast_to(currents, (T, currents.size)).copy()
    rates = {}
    for name, lam, reset in (("IF soft", 1.0, "soft"), ("IF hard", 1.0, "hard"),
                             ("LIF lam=0.8 soft", 0.8, "soft"), ("LIF lam=0.8 hard", 0.8, "hard")):
        o, _ = lif_forward(I, lam=lam, v_th=1.0, reset=reset)
        rates[name] = o.mean(axis=0)
    err = np.max(np.abs(rates["IF soft"] - np.clip(currents, 0, 1)))
    print(f"   IF soft reset: max |rate - clamp(I/V_th, 0, 1)| = {err:.4f}  (<= 1/T = {1 / T})")
    assert err <= 1.0 / T + 1e-9      # + 1e-9: I = 0.3 is 0.29999... in binary
    assert np.all(rates["IF hard"] <= rates["IF soft"] + 1e-12)
    silent = currents < (1 - 0.8) * 1.0
    print(f"   LIF lam=0.8: silent for every I < (1-lam) V_th = 0.2: "
          f"{bool(np.all(rates['LIF lam=0.8 soft'][silent] == 0))}")
    assert np.all(rates["LIF lam=0.8 soft"][silent] == 0)
    assert np.all(rates["LIF lam=0.8 hard"][silent] == 0)
    for c in (0.25, 0.5, 0.75, 1.0):
        i = int(np.argmin(np.abs(currents - c)))
        print(f"   I = {c:.2f}: " + ", ".join(f"{k} {v[i]:.3f}" for k, v in rates.items()))
    return currents, rates, err, len(I)


currents, rates, err, T_rates = section_rates()


# %%
# 4. Plot the membrane and spikes under both resets
# -------------------------------------------------
# A picture: a noisy input current, the membrane under both resets, the spikes.
#
# Plot the membrane and spikes under both resets (SSF Eqs. 6-7 / 16-17) and the rate curves of
# section 3.

def section_plot(rng: np.random.Generator, currents: np.ndarray, rates: dict[str, np.ndarray],
                 T_rates: int) -> None:
    T = 40
    I_noisy = np.clip(rng.normal(0.45, 0.35, size=T), -0.5, None)[:, None]
    oh, uh = lif_by_hand(I_noisy, 0.8, 1.0, "hard")
    os_, us = lif_by_hand(I_noisy, 0.8, 1.0, "soft")
    fig = plt.figure(figsize=(10, 10), layout="constrained")
    ax = fig.subplots(4, 1, sharex=False, height_ratios=[1, 2, 2, 2])
    t = np.arange(T)
    ax[0].step(t, I_noisy[:, 0], where="mid", color="gray")
    ax[0].set_ylabel("input current I[t]")
    ax[0].set_xlabel("time step t")
    ax[0].set_title("LIF neuron, lam = 0.8, V_th = 1 (SSF Eqs. 6-7 / 16-17)")
    for a, u, o, name in ((ax[1], uh, oh, "hard reset"), (ax[2], us, os_, "soft reset")):
        a.plot(t, u[:, 0], ".-", label="u[t] (before reset)")
        a.axhline(1.0, color="r", ls="--", lw=1, label="V_th")
        spikes = np.flatnonzero(o[:, 0])
        a.plot(spikes, u[spikes, 0], "r^", label="spike o[t] = 1")
        a.set_ylabel("membrane u[t]")
        a.set_xlabel("time step t")
        a.set_title(name + (": u[t] = lam u[t-1] (1 - o[t-1]) + I[t]" if name == "hard reset"
                            else ": u[t] = lam (u[t-1] - V_th o[t-1]) + I[t]"))
        a.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    for name, r in rates.items():
        ax[3].plot(currents, r, label=name)
    ax[3].plot(currents, np.clip(currents, 0, 1), "k:", label="clamp(I / V_th, 0, 1)")
    ax[3].set_title(f"firing rate over T = {T_rates} steps of a constant input")
    ax[3].set_xlabel("constant input current I")
    ax[3].set_ylabel("firing rate")
    ax[3].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    path = OUT / "02_lif_neuron.png"
    fig.savefig(path, dpi=90)
    print(f"\nFigure: {path}")


section_plot(rng, currents, rates, T_rates)


# %%
# What the asserts above checked
# ------------------------------

print("\nVerification (asserted above): the loop = lif_forward, same spikes and membranes "
      "(bit for bit in float64) in all 8 cases;\n   IF soft-reset rate = clamp(I/V_th, 0, 1) "
      f"within {err:.4f} <= 1/T; LIF silent below (1 - lam) V_th")
print("Chapter 2 done: the loop above is the whole forward pass of a spiking neuron.")

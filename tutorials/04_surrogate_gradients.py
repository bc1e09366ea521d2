"""
Chapter 4 -- Why spikes have no gradient, and surrogate gradients
=================================================================

A spike is o = H(u - V_th) (SSF Eq. 7).  The Heaviside step H is flat everywhere except at the
threshold, where it jumps: its derivative is 0 almost everywhere and a Dirac delta at 0.  So the
true gradient of any loss with respect to anything *below* a spiking neuron is 0 (or infinite,
on a set of measure zero) -- gradient descent gets no signal.  Section 1 shows this with finite
differences, exactly as a gradient check would see it.

Surrogate-gradient training (Neftci, Mostafa & Zenke 2019; SpyTorch) keeps H in the forward pass
and, in the backward pass only, replaces dH/dx by a smooth bump sigma'(x), x = u - V_th.  Each
surrogate is the derivative of a smooth step sigma(x) (its *primitive*), going from 0 to 1 --
so every bump has unit area, like the delta it stands in for.  The library's five
(``pysnn_ref/functional/surrogate.py``; formulas in ``pysnn_ref/kernels/reference.py``)::

    rectangular  sigma'(x) = 1/a on |x| < a/2                     (Dspike Eq. 7, Wu et al. 2018)
    triangle     sigma'(x) = max(0, g - |x|) / g^2                 (TET Eq. 5; Dspike Eq. 8 with
                                                                    g = V_th, gamma = 1/V_th)
    sigmoid      sigma'(x) = k s (1 - s),  s = 1 / (1 + e^(-k x))
    atan         sigma'(x) = (a/2) / (1 + (pi a x / 2)^2)         (SpikingJelly / snnTorch)
    dspike       sigma'(x) = b (1 - tanh^2(b x)) / (2 tanh(b/2))   on |x| <= 1/2 (Dspike Eqs. 11-12)

Section 2 checks, for every surrogate, that ``grad`` is the derivative of ``primitive`` (a
finite-difference check) and that the primitive climbs from 0 to 1; the figure
``tutorials/out/04_surrogates.png`` plots both.

Section 3 introduces *smooth mode*: ``lif_forward(..., smooth=True)`` uses the primitive sigma
itself as the spike, o = sigma(u - V_th).  Then the network is an ordinary differentiable
function, the surrogate gradient is its *exact* gradient, and finite differences can check the
hand-written backward (chapter 5).  As the surrogate sharpens (sigmoid slope k -> infinity) the
smooth spikes approach the real ones.

Run:  python tutorials/04_surrogate_gradients.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""


from __future__ import annotations

import os
from itertools import pairwise
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from pysnn_ref.functional.neuron import lif_forward
from pysnn_ref.functional.surrogate import SURROGATE_KINDS, get_surrogate
from pysnn_ref.gradcheck import numerical_gradient, rel_error
from pysnn_ref.kernels import reference

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))


# %%
# 1. Finite differences of real spikes o = H(u - V_th) (SSF Eq. 7) are zero
# -------------------------------------------------------------------------
# The true gradient of spikes: zero almost everywhere, a delta at the threshold. L = sum_t sum_n
# G[t, n] o[t, n] for a random upstream gradient G; numerical_gradient perturbs every input
# current by +-h and measures the change of L (CS231n style).
#
# Finite differences of real spikes o = H(u - V_th) (SSF Eq. 7) are zero, or a delta at the
# threshold.

def section_true_gradient(rng: np.random.Generator, lif: dict[str, Any]) -> None:
    print("1. Finite differences of real (Heaviside) spikes, o = H(u - V_th) (SSF Eq. 7)")
    T, N = 6, 20 if QUICK else 500     # quick: 120 currents, 720 calls of lif_forward
    I = rng.normal(0.5, 0.8, size=(T, N))
    G = rng.normal(size=(T, N))
    dI = numerical_gradient(lambda: lif_forward(I, **lif)[0], I, G, h=1e-6)
    print(f"   dL/dI over {I.size} input currents: {np.count_nonzero(dI)} nonzero "
          "-- gradient descent would not move at all")
    assert np.count_nonzero(dI) == 0
    # Put one neuron a hair below the threshold: now the +h perturbation makes it fire, and the
    # "derivative" is a jump divided by 2h -- it grows without bound as h shrinks (a delta).
    I[0, 0] = 1.0 - 1e-9
    for h in (1e-6, 1e-8):
        d = numerical_gradient(lambda: lif_forward(I, **lif)[0], I, G, h=h)[0, 0]
        print(f"   neuron at u = V_th - 1e-9, h = {h:g}: dL/dI[0, 0] = {d:.3g}")
        assert abs(d) > 0.1 / h


OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
lif = dict(lam=0.8, v_th=1.0, reset="hard")
section_true_gradient(rng, lif)


# %%
# 2. Every surrogate's grad is d(primitive)/dx
# ---------------------------------------------
# Surrogates: sigma' is the derivative of the smooth step sigma.  Check it numerically on a grid
# that avoids the kinks (rectangular and dspike have corners at abs(x) = 1/2).
#
# Every surrogate's grad is d(primitive)/dx (Dspike Eqs. 7, 11-12; TET Eq. 5), and the figure of
# both.

def section_surrogates() -> None:
    print("\n2. The surrogates (Dspike Eq. 7 rectangular, TET Eq. 5 triangle, Dspike Eqs. 11-12):"
          " grad = d(primitive)/dx, primitive from 0 to 1")
    x = np.linspace(-2.5, 2.5, 201 if QUICK else 1001) + 0.0037
    fig = plt.figure(figsize=(11, 4), layout="constrained")
    ax_p, ax_g = fig.subplots(1, 2)
    ax_p.step(x, (x >= 0).astype(float), "k", where="post", lw=2, alpha=0.3,
              label="Heaviside H(x)")
    print(f"   {'surrogate':18s} {'sigma(0)':>9s} {'sigma(-1e3)':>12s} {'sigma(1e3)':>11s}"
          f" {'peak grad':>12s} {'rel err vs FD':>14s}")
    for name in SURROGATE_KINDS:
        sg = get_surrogate(name)                  # default parameter; "sigmoid:8" picks k = 8
        primitive = sg.primitive(x)
        grad = sg.grad(x)
        xs = x.copy()
        fd = numerical_gradient(lambda s=sg, xs=xs: s.primitive(xs), xs, np.ones_like(xs))
        err = rel_error(grad, fd)
        lo, hi = sg.primitive(np.array([-1e3, 1e3]))
        print(f"   {str(sg):18s} {sg.primitive(np.zeros(1))[0]:9.3f} {lo:12.2e} {hi:11.6f}"
              f" {grad.max():12.3f} {err:14.1e}")
        assert err < 1e-6
        assert abs(lo) < 1e-3 and abs(hi - 1) < 1e-3  # unit area (atan's tails are heavy)
        # the ONE definition: the array functions are the scalar formulas of kernels/reference.py
        assert grad[50] == reference.surrogate_grad_scalar(x[50], sg.kind, sg.a)
        ax_p.plot(x, primitive, label=str(sg))
        ax_g.plot(x, grad, label=str(sg))
    ax_p.set_title("primitive sigma(x): the smooth-mode spike")
    ax_p.set_ylabel("spike o = sigma(x)")
    ax_g.set_title("surrogate gradient sigma'(x): used in the backward")
    ax_g.set_ylabel("do/du = sigma'(x)")
    for a in (ax_p, ax_g):
        a.set_xlabel("x = u - V_th")
        a.legend(fontsize=8)
    path = OUT / "04_surrogates.png"
    fig.savefig(path, dpi=90)
    print(f"   figure: {path}")


section_surrogates()


# %%
# 3. Smooth mode, o = sigma(u - V_th)
# -----------------------------------
# Smooth mode.  The spike becomes sigma(u - V_th) -- in the firing *and* in the reset.

def section_smooth(rng: np.random.Generator, lif: dict[str, Any]) -> list[float]:
    print("\n3. Smooth mode: o = sigma(u - V_th)")
    I = rng.normal(0.5, 0.8, size=(8, 2000))
    o_hard, _ = lif_forward(I, **lif)
    o_s, cache = lif_forward(I, **lif, smooth=True, surrogate="sigmoid:4")
    sg = get_surrogate("sigmoid:4")
    assert rel_error(o_s, sg.primitive(cache.u - 1.0)) < 1e-15   # o = sigma(u - V_th)
    print(f"   real spikes are 0/1; smooth ones lie in (0, 1), e.g. {np.round(o_s[:4, 0], 3)}")

    # One step (T = 1): o = sigma(I - V_th), so do/dI = sigma'(I - V_th) exactly -- the
    # surrogate gradient *is* the derivative of the smooth forward.
    I1 = rng.normal(1.0, 0.5, size=(1, 20))
    for name in SURROGATE_KINDS:
        s = get_surrogate(name)
        fd = numerical_gradient(
            lambda s=s: lif_forward(I1, **lif, smooth=True, surrogate=s)[0], I1,
            np.ones_like(I1))
        assert rel_error(s.grad(I1 - 1.0), fd) < 1e-6
    print("   T = 1: finite differences of the smooth forward = sigma'(I - V_th), "
          "for every surrogate (chapter 5 does T > 1)")

    print("   sharper sigmoid -> smooth spikes approach real spikes:")
    gaps = []
    for k in (4, 16, 64, 256, 1024):
        o_k, _ = lif_forward(I, **lif, smooth=True, surrogate=f"sigmoid:{k}")
        gaps.append(float(np.abs(o_k - o_hard).mean()))
        print(f"     k = {k:5d}: mean |o_smooth - o_real| = {gaps[-1]:.4f}")
    assert all(b < a for a, b in pairwise(gaps))
    print("   ... but the sharper sigma, the taller and narrower sigma' -- back toward the delta "
          "of Section 1.  Training picks a moderate width; smooth mode is for checking.")
    return gaps


gaps = section_smooth(rng, lif)


# %%
# What the asserts above checked
# ------------------------------

print("\nVerification (asserted above): FD of real spikes = 0 everywhere (a delta at "
      "the threshold);\n   every surrogate's grad = d(primitive)/dx (FD rel err < 1e-6), "
      "primitive 0 -> 1; smooth-mode FD = sigma' at T = 1;\n   smooth spikes -> real spikes "
      f"as the sigmoid sharpens (mean gap {gaps[0]:.3f} -> {gaps[-1]:.4f})")
print("Chapter 4 done.")

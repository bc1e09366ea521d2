"""
Chapter 5 -- Back-propagation through time (BPTT) for the LIF neuron, by hand
=============================================================================

The forward pass of chapter 2, written with the membrane after the reset, v[t]::

    u[t] = lam * v[t-1] + I[t]             (v[-1] = 0)
    o[t] = sigma(u[t] - V_th)              (H in training; the primitive sigma in smooth mode)
    v[t] = u[t] * (1 - o[t])               (hard reset; soft reset: v[t] = u[t] - V_th * o[t])

which is SSF's Eq. 6 (16).  (TET Eq. 4 and Dspike Eq. 6 write the same chain rule, STBP, as a sum
over t; the recurrence below is what that sum unrolls to.)  The loss sees o[t] through the next
layer; call the gradient that arrives from there g[t] = dL/do[t] ("from above").  Going backwards
in time, u[t] reaches the loss along two paths -- through its spike o[t], and through the membrane
it leaves behind, v[t] -> u[t+1] (dv[t]/du[t] = 1 - o[t] with the spike held fixed, du[t+1]/dv[t] =
lam) -- and o[t] itself also enters the reset: dv[t]/do[t] = -u[t].  The chain rule gives the exact
recurrence (``pysnn_ref/kernels/reference.py: lif_backward``), with du[T] = 0::

    dL/do[t] = g[t] + dL/du[t+1] * (-lam * u[t])                        (soft: -lam * V_th)
    dL/du[t] = dL/do[t] * sigma'(u[t] - V_th) + dL/du[t+1] * lam * (1 - o[t])   (soft: * lam)
    dL/dI[t] = dL/du[t]                                                  (SSF Eq. 10)

**Where SSF's printed Eq. 8 differs.**  Eq. 8 writes the reset term of dL/do[t] as ::

    g[t+1] * sigma'(u[t+1] - V_th) * (-lam * u[t])

i.e. it follows u[t+1] only along its own spike into the next layer.  The exact factor is the
*whole* dL/du[t+1], which also contains u[t+1]'s reset term and its membrane path to u[t+2],
u[t+3], ...  The two agree for T <= 2 (there is no u[t+2]) and differ from T = 3 on.  Eq. 9
(dL/du) and Eq. 10 (dL/dI) are as printed.

``detach_reset=True`` drops the reset term altogether (the spike in v[t] = u[t](1 - o[t]) is
treated as a constant: SpyTorch's ``rst = out.detach()``, SpikingJelly's option).  It is a
deliberate approximation, not the exact gradient, and it differs from it as soon as there is a
reset to drop: from T = 2 on (one step earlier than the printed Eq. 8).

What this chapter does:

1. writes the recurrence (and the two variants) as a NumPy loop;
2. checks the loop against ``pysnn_ref.functional.lif_backward`` (same numbers);
3. checks both against finite differences in float64 smooth mode (chapter 4), CS231n style:
   rel_error <= 1e-7, "you should be happy";
4. shows the printed Eq. 8 (for T >= 3) and detach_reset (for T >= 2) failing the same check,
   and plots their error against T (``tutorials/out/05_bptt.png``);
5. runs the library's own table of neuron checks (every reset x surrogate, LIF and IF).

Run:  python tutorials/05_bptt_by_hand.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""


from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from pysnn_ref.functional.neuron import lif_backward, lif_forward
from pysnn_ref.functional.surrogate import get_surrogate
from pysnn_ref.gradcheck import cosine, neuron_gradcheck_cases, numerical_gradient, rel_error

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))


def lif_backward_by_hand(g: np.ndarray, u: np.ndarray, o: np.ndarray, lam: float, v_th: float,
                         reset: str, surrogate: str, variant: str = "exact") -> np.ndarray:
    """dL/dI (T, N) from g = dL/do from above, the membranes u and the spikes o of the forward.

    variant: "exact" (the recurrence above), "printed Eq. 8" (reset term through the spike path
    of u[t+1] only) or "detach" (no reset term).
    """
    sg = get_surrogate(surrogate)
    s = sg.grad(u - v_th)                         # sigma'(u[t] - V_th), all t at once
    T = u.shape[0]
    dI = np.zeros_like(u)
    du_next = np.zeros_like(u[0])                 # dL/du[t+1]; zero after the last step
    for t in range(T - 1, -1, -1):
        if variant == "exact":
            through_reset = du_next
        elif variant == "printed Eq. 8":
            through_reset = g[t + 1] * s[t + 1] if t + 1 < T else 0.0
        else:                                     # "detach"
            through_reset = 0.0
        if reset == "hard":
            do = g[t] + through_reset * (-lam * u[t])
            du = do * s[t] + du_next * lam * (1 - o[t])
        else:
            do = g[t] + through_reset * (-lam * v_th)
            du = do * s[t] + du_next * lam
        dI[t] = du                                # SSF Eq. 10
        du_next = du
    return dI


def plot_reset_variants(Ts: list[int], errs: dict[str, list[float]]) -> None:
    """Section 4's figure: each variant's relative error vs finite differences over T."""
    fig = plt.figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    for v, e in errs.items():
        ax.semilogy(Ts, np.maximum(e, 1e-16), "o-", label=v)
    ax.axhline(1e-7, color="k", ls=":", lw=1, label="1e-7 (CS231n: happy)")
    ax.set_xlabel("time steps T")
    ax.set_ylabel("rel. error vs finite differences")
    ax.set_title("LIF backward, hard reset, smooth mode (float64)")
    ax.legend(fontsize=8)
    path = OUT / "05_bptt.png"
    fig.savefig(path, dpi=90)
    print(f"   figure: {path}")


# %%
# 1-3. The hand-written BPTT (SSF Eqs. 8-10
# -----------------------------------------
# The hand-written BPTT (SSF Eqs. 8-10, Eq. 8 corrected) equals lif_backward and finite
# differences.

def section_bptt(rng: np.random.Generator, lam: float, v_th: float, T: int, N: int) -> None:
    # A loss L = sum_t sum_n G[t, n] o[t, n]: its upstream gradient is g = G, and
    # numerical_gradient(f, I, G) measures exactly d<f(I), G>/dI.
    I = rng.normal(0.6, 0.8, size=(T, N))
    G = rng.normal(size=(T, N))

    print("1-3. Hand-written BPTT (SSF Eqs. 8-10, Eq. 8 corrected) vs lif_backward vs finite "
          f"differences (float64, smooth mode, T={T}, lam={lam})")
    print(f"   {'reset':5s} {'surrogate':10s} {'by hand vs library':>19s} "
          f"{'library vs FD':>14s}")
    for reset in ("hard", "soft"):
        for surrogate in ("sigmoid", "triangle", "atan"):
            kw = dict(lam=lam, v_th=v_th, reset=reset, surrogate=surrogate, smooth=True)
            o, cache = lif_forward(I, **kw)
            dI_lib = lif_backward(G, cache)
            dI_hand = lif_backward_by_hand(G, cache.u, o, lam, v_th, reset, surrogate)
            dI_num = numerical_gradient(lambda kw=kw: lif_forward(I, **kw)[0], I, G)
            e_hand, e_num = rel_error(dI_hand, dI_lib), rel_error(dI_lib, dI_num)
            print(f"   {reset:5s} {surrogate:10s} {e_hand:19.1e} {e_num:14.1e}")
            assert e_hand < 1e-12 and e_num < 1e-7

    # The same loop serves real training (Heaviside spikes, sigma' only in the backward):
    o, cache = lif_forward(I, lam=lam, v_th=v_th)          # smooth=False: o is 0/1
    assert rel_error(lif_backward_by_hand(G, cache.u, o, lam, v_th, "hard", "triangle"),
                     lif_backward(G, cache)) < 1e-12
    print("   with real 0/1 spikes (training mode) the loop equals lif_backward too")


OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
lam, v_th = 0.8, 1.0
T, N = 8, 6 if QUICK else 12
section_bptt(rng, lam, v_th, T, N)


# %%
# 4. The printed SSF Eq. 8 and detach_reset vs finite differences, over T
# -----------------------------------------------------------------------
# The printed Eq. 8 and detach_reset against the same finite differences.

def section_reset_variants(rng: np.random.Generator, lam: float, v_th: float,
                           N: int) -> None:
    print("\n4. Variants of the reset term vs finite differences (hard reset, sigmoid)")
    kw = dict(lam=lam, v_th=v_th, reset="hard", surrogate="sigmoid", smooth=True)
    Ts = list(range(1, 9 if QUICK else 13))
    errs: dict[str, list[float]] = {"exact": [], "printed Eq. 8": [], "detach": []}
    for Tn in Ts:
        In, Gn = rng.normal(0.6, 0.8, size=(Tn, N)), rng.normal(size=(Tn, N))
        o, cache = lif_forward(In, **kw)
        num = numerical_gradient(lambda In=In: lif_forward(In, **kw)[0], In, Gn)
        for variant in errs:
            dI = lif_backward_by_hand(Gn, cache.u, o, lam, v_th, "hard", "sigmoid", variant)
            errs[variant].append(rel_error(dI, num))
        if Tn == Ts[-1]:
            exact = lif_backward_by_hand(Gn, cache.u, o, lam, v_th, "hard", "sigmoid")
            cos8 = cosine(lif_backward_by_hand(Gn, cache.u, o, lam, v_th, "hard", "sigmoid",
                                               "printed Eq. 8"), exact)
            # the library's option gives the same numbers as our "detach" variant
            det_lib = lif_backward(Gn, lif_forward(In, **kw, detach_reset=True)[1])
            det = lif_backward_by_hand(Gn, cache.u, o, lam, v_th, "hard", "sigmoid", "detach")
            assert rel_error(det_lib, det) < 1e-12
            cos_det = cosine(det, exact)
    print(f"   {'T':>3s} " + " ".join(f"{v:>14s}" for v in errs))
    for i, Tn in enumerate(Ts):
        print(f"   {Tn:3d} " + " ".join(f"{errs[v][i]:14.1e}" for v in errs))
    print(f"   T={Ts[-1]}: cosine(printed Eq. 8, exact) = {cos8:.4f}, "
          f"cosine(detach_reset, exact) = {cos_det:.4f}")
    assert max(errs["exact"]) < 1e-7
    assert max(errs["printed Eq. 8"][:2]) < 1e-7          # T = 1, 2: no u[t+2], identical
    assert min(errs["printed Eq. 8"][2:]) > 1e-4          # T >= 3: wrong
    assert min(errs["detach"][1:]) > 1e-4                 # T >= 2: not the exact gradient
    print("   the exact recurrence passes at every T; Eq. 8 as printed only for T <= 2;")
    print("   detach_reset only for T = 1 (no reset to drop): from T = 2 on it is a different\n"
          "   (approximate) gradient, which many papers train with.")

    plot_reset_variants(Ts, errs)


section_reset_variants(rng, lam, v_th, N)


# %%
# 5. The library's neuron gradcheck table (SSF Eqs. 8-10, every reset x surrogate)
# --------------------------------------------------------------------------------
# The library's table: every reset x surrogate, lam = 0.8 (LIF) and 1 (IF). (``python -m
# pysnn_ref.gradcheck`` prints it together with the layer checks.)

def section_library_table() -> tuple[int, float]:
    print("\n5. pysnn_ref.gradcheck.neuron_gradcheck_cases()")
    worst = 0.0
    cases = neuron_gradcheck_cases()
    for case, _, err in cases:
        print(f"   {case:45s} {err:9.1e}")
        assert err < 1e-6
        worst = max(worst, err)
    return len(cases), worst


n_cases, worst = section_library_table()


# %%
# What the asserts above checked
# ------------------------------

print("\nVerification (asserted above): the hand-written recurrence = lif_backward "
      "(rel <= 1e-12) = finite differences (rel < 1e-7), hard and soft reset;\n   the "
      f"library's {n_cases} neuron cases: worst rel error {worst:.1e} (< 1e-6); the printed "
      "Eq. 8 fails the same check from T = 3 on, detach_reset from T = 2 on")
print("Chapter 5 done: lif_backward is the exact gradient of the smooth LIF neuron.")

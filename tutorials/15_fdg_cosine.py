"""
Chapter 15 -- How good is each method's gradient?  Cosine with the finite-difference gradient
=============================================================================================

A spiking network's true loss is piecewise constant in its weights (chapter 6), so "the gradient"
has to be measured at a finite scale.  Dspike (Li et al., NeurIPS 2021, Sec. 4.2, Eq. 10) uses
the finite-difference gradient (FDG) of the real, Heaviside-forward loss ::

    FDG_i = (L(w + eps e_i) - L(w - eps e_i)) / (2 eps)

and scores a training gradient g by its cosine similarity cos(g, FDG) = g.FDG / (abs(g) abs(FDG)):
1 means the same descent direction.  Here we score the three training methods of the library on
the same network and batch:

* BPTT with the triangle surrogate (TET, Deng et al., ICLR 2022, Eq. 5; SSF Eqs. 8-10);
* ASF, one linear gain S per layer (Wu et al., AAAI 2021, Eqs. 9-12);
* SSF, a per-neuron gain 1/(R V_th) (Wang et al., ICCV 2023, Eqs. 13-15).

``pysnn_ref.gradcheck.finite_difference_gradient`` computes the FDG once (two forward passes per
weight) and ``cosine_vs(..., reference="fdg", reference_grads=fdg)`` reuses it for each method.

This chapter measures the cosines for both hidden weight matrices of a 64-H-H-10 digits MLP, for
several steps eps, draws them as bars (``tutorials/out/15_fdg_cosine.png``) and checks that every
cosine lies in (0, 1] and that BPTT's is the highest.

Run:  python tutorials/15_fdg_cosine.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""


from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from pysnn_ref import data
from pysnn_ref.gradcheck import cosine_vs, finite_difference_gradient
from pysnn_ref.models import lif_mlp

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))
COLORS = {"bptt": "C0", "asf": "C1", "ssf": "C2"}
METHODS = ("bptt", "asf", "ssf")
T = 4
H = 8 if QUICK else 16
EPSILONS = (0.05, 0.2) if QUICK else (0.02, 0.05, 0.1, 0.2)
PARAMS = ("1.W", "3.W")


# One BLAS thread: the matrices here are small, and several threads fight over a
# few cores (the training CLI does the same, ``--blas-threads 1``).
threadpool_limits(limits=1, user_api="blas")


# %%
# 1. The network and the batch
# -----------------------------
# An MLP of LIF neurons in float64 (``pysnn_ref.models.lif_mlp``), the first 256 digits, direct
# encoding.

OUT.mkdir(parents=True, exist_ok=True)
ds = data.load_dataset("digits")
x = ds.x_train[:256].astype(np.float64)
labels = ds.y_train[:256]
X = data.DirectEncoder().encode(x, T)
net = lif_mlp((64, H, H, 10))


# %%
# 2. The FDG of the true spiking loss, and each method's cosine with it
# ---------------------------------------------------------------------
# ``finite_difference_gradient`` perturbs each weight by +-eps and differences the real loss
# (Dspike Eq. 10); ``cosine_vs(..., reference="fdg")`` compares a method's gradient with it.

print(f"MLP 64-{H}-{H}-10, LIF lam=0.5, T={T}, batch 256, SDT loss; FDG of "
      f"{', '.join(PARAMS)} (Dspike Eq. 10)")
cos: dict[float, dict[str, dict[str, float]]] = {}
for eps in EPSILONS:
    fdg = finite_difference_gradient(net, X, labels, list(PARAMS), eps=eps)
    cos[eps] = {m: cosine_vs(net, m, X, labels, reference="fdg", params=list(PARAMS),
                             reference_grads=fdg) for m in METHODS}
    for m in METHODS:
        print(f"   eps={eps:4.2f} {m:4s}: " + "  ".join(
            f"cos({k}) = {v:.3f}" for k, v in cos[eps][m].items()))


# %%
# 3. Every cosine in (0, 1], and the order of the methods
# -------------------------------------------------------

print("\nVerification: every cosine in (0, 1]; the order of the methods")
orders = []
for eps, by_m in cos.items():
    for k in PARAMS:
        vals = {m: by_m[m][k] for m in METHODS}
        assert all(0 < v <= 1 + 1e-12 for v in vals.values()), (eps, k, vals)
        order = " > ".join(sorted(vals, key=vals.get, reverse=True))
        orders.append(order)
        print(f"   eps={eps:4.2f} {k}: {order}")
        assert vals["bptt"] == max(vals.values()), (eps, k, vals)
print(f"   bptt > ssf > asf in {orders.count('bptt > ssf > asf')} of {len(orders)} cases:"
      " SSF's per-neuron gain follows the\n   surrogate gradient closely, ASF's one gain per"
      " layer more coarsely")


# %%
# 4. The figure
# -------------

fig = plt.figure(figsize=(12, 4.5), layout="constrained")
axes = fig.subplots(1, len(PARAMS), sharey=True)
xs = np.arange(len(EPSILONS))
for ax, k in zip(axes, PARAMS, strict=True):
    for j, m in enumerate(METHODS):
        ax.bar(xs + 0.27 * (j - 1), [cos[e][m][k] for e in EPSILONS], width=0.27,
               label=m, color=COLORS[m])
    ax.set_xticks(xs, [f"eps = {e:g}" for e in EPSILONS])
    ax.set_xlabel("finite-difference step eps")
    ax.set_title(f"weight {k}: cos(method gradient, FDG)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
axes[0].set_ylabel("cosine similarity")
path = OUT / "15_fdg_cosine.png"
fig.savefig(path, dpi=90)
print(f"\nFigure: {path}")
print("Chapter 15 done.")

"""
Chapter 13 -- Two refinements of surrogate-gradient training: the TET loss and Dspike
=====================================================================================

**TET** (temporal efficient training; Deng et al., ICLR 2022).  The SDT loss of chapter 8 only
looks at the time-averaged output, so its gradient dL/dy[t] is the same at every step (TET
Eq. 7).  TET puts the cross-entropy on every step's output instead (Eq. 9), plus a small
regulariser pulling the outputs toward phi (Eq. 12)::

    L_TET = (1/T) sum_t CE(y[t], label)                 L_MSE = (1/T) sum_t MSE(y[t], phi)
    L     = (1 - lam) L_TET + lam L_MSE                 (Eq. 13; lam = 0.05, phi = V_th = 1)

Section 1 checks ``sdt_loss_backward`` (TET Eq. 8) and ``tet_loss_backward`` (Eq. 10) by finite
differences, shows TET's per-step gradient, and checks Lemma 4.1 (Eq. 11): L_SDT <= L_TET;
section 2 trains the chapter-8 network with SDT and with TET and compares the accuracy of the
mean output and of every single step's output.

**Dspike** (differentiable spike; Li et al., NeurIPS 2021).  Which surrogate is "right"?  Dspike
measures it: the finite-difference gradient (FDG, Eq. 10) of the *true* spiking loss, ::

    FDG_i = (L(w + eps e_i) - L(w - eps e_i)) / (2 eps),      eps = 0.1,

is a noisy but honest estimate of the direction the loss falls, and the cosine similarity between
it and a surrogate gradient says how well the surrogate points.  Dspike's surrogate is a family
with a temperature b (Eqs. 11-12, centred on the threshold, x = u - V_th, window abs(x) <= 1/2)::

    Dspike(x, b) = (tanh(b x) + tanh(b/2)) / (2 tanh(b/2)),    sigma'(x) = b (1 - tanh^2(b x)) /
                                                                           (2 tanh(b/2))

b -> 0 gives the straight line of the rectangular surrogate; b -> infinity the Heaviside step.
Algorithm 1 of the paper adapts b during training: every epoch, try b - 0.2, b, b + 0.2 and keep
the one whose first-layer gradient has the highest cosine with the FDG.  Section 3 plots the
family, section 4 computes the cosines (``pysnn_ref.gradcheck.cosine_vs(reference="fdg")``)
and takes one step of Algorithm 1.  (``python -m pysnn_ref.train --surrogate dspike
--dspike-adapt`` runs the whole algorithm during training.)
Figure: ``tutorials/out/13_tet_dspike.png``.

Run:  python tutorials/13_tet_and_dspike.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""


from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from pysnn_ref import data, nn
from pysnn_ref.functional.loss import (
    accuracy,
    sdt_loss_backward,
    sdt_loss_forward,
    tet_loss_backward,
    tet_loss_forward,
)
from pysnn_ref.functional.surrogate import dspike, rectangular
from pysnn_ref.gradcheck import (
    cosine,
    cosine_vs,
    finite_difference_gradient,
    method_gradients,
    numerical_gradient,
    rel_error,
)
from pysnn_ref.methods import make_method
from pysnn_ref.optim import Adam
from pysnn_ref.train.dspike import adapt_dspike

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))
T = 4
EPOCHS = 2 if QUICK else 10
DELTA_B = 0.2                    # Dspike Sec. 5: the temperature's step


def mlp(hidden: int, surrogate: str = "triangle") -> nn.Sequential:
    rng = np.random.default_rng(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden, rng=rng),
                         nn.LIF(lam=0.5, v_th=1.0, surrogate=surrogate),
                         nn.Linear(hidden, 10, rng=rng))


def train(ds: data.Dataset, loss: str) -> tuple[float, list[float]]:
    """BPTT with the SDT or TET loss; returns the test accuracy of the mean output and of
    each step's output alone."""
    fwd, bwd = {"sdt": (sdt_loss_forward, sdt_loss_backward),
                "tet": (tet_loss_forward, tet_loss_backward)}[loss]
    net = mlp(128)
    enc = data.DirectEncoder()
    opt = Adam(net.parameters(), lr=1e-3)
    for epoch in range(EPOCHS):
        for xb, yb in data.iterate_minibatches(ds.x_train, ds.y_train, 64, rng=epoch):
            _, cache = fwd(net.forward(enc.encode(xb, T)), yb)
            net.zero_grad()
            net.backward(bwd(cache), need_dx=False)
            opt.step()
    net.eval()
    y = net.forward(enc.encode(ds.x_test, T))
    per_step = [float(np.mean(y[t].argmax(axis=1) == ds.y_test)) for t in range(T)]
    return accuracy(y, ds.y_test), per_step


# One BLAS thread: the matrices here are small, and several threads fight over a
# few cores (the training CLI does the same, ``--blas-threads 1``).
threadpool_limits(limits=1, user_api="blas")


# %%
# 1. The TET loss -- gradient check, per-step gradient, Lemma 4.1
# ---------------------------------------------------------------

def section_tet(rng: np.random.Generator) -> None:
    print("1. TET loss (Eqs. 9, 12, 13): gradient check and its per-step gradient")
    y = rng.normal(size=(T, 3, 5))
    labels = rng.integers(0, 5, size=3)
    for name, fwd, bwd in (("SDT", sdt_loss_forward, sdt_loss_backward),
                           ("TET", tet_loss_forward, tet_loss_backward)):
        _, cache = fwd(y, labels)
        dy = bwd(cache)
        num = numerical_gradient(lambda fwd=fwd: fwd(y, labels)[0], y)
        err = rel_error(dy, num)
        spread = float(np.max(np.abs(dy - dy.mean(axis=0))))
        print(f"   {name}: dL/dy vs finite differences rel error {err:.1e}; "
              f"max |dL/dy[t] - mean_t dL/dy[t]| = {spread:.3f}")
        assert err < 1e-8
        assert (spread < 1e-15) if name == "SDT" else (spread > 1e-3)
    print("   SDT hands every step the same gradient (Eq. 8); TET a different one per step "
          "(Eq. 10).")
    # TET Lemma 4.1 (Eq. 11): AM-GM and Jensen give L_SDT <= L_TET (without the regulariser)
    gaps = []
    for scale in (0.5, 2.0, 8.0):
        yy, ll = rng.normal(0, scale, size=(T, 16, 5)), rng.integers(0, 5, 16)
        gaps.append(tet_loss_forward(yy, ll, lam=0.0)[0] - sdt_loss_forward(yy, ll)[0])
    print("   Lemma 4.1 (Eq. 11): L_TET - L_SDT = " + ", ".join(f"{g:.3f}" for g in gaps)
          + " (random outputs of scale 0.5, 2, 8): never negative")
    assert all(g >= 0 for g in gaps)


OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
section_tet(rng)


# %%
# 2. The chapter-8 MLP trained with SDT and with TET
# --------------------------------------------------

def section_train(ds: data.Dataset) -> None:
    print(f"\n2. Training the chapter-8 MLP with SDT and with TET ({EPOCHS} epochs, BPTT)")
    for loss in ("sdt", "tet"):
        t0 = time.perf_counter()
        acc, per_step = train(ds, loss)
        print(f"   {loss.upper()}: test accuracy (mean output) {acc:.3f}; each step alone: "
              + " ".join(f"t={t}: {a:.3f}" for t, a in enumerate(per_step))
              + f"   ({time.perf_counter() - t0:.1f}s)")
        assert acc >= (0.7 if QUICK else 0.9), (loss, acc)
    print("   (TET's reported gains are for deep networks on CIFAR, ImageNet and DVS data; on "
          "this one-hidden-layer MLP\n   the two losses end up close)")


ds = data.load_dataset("digits")
section_train(ds)


# %%
# 3. The Dspike family (Eqs. 11-12) and its limits
# ------------------------------------------------

def section_dspike_family(ax_f: Any, ax_g: Any) -> None:
    print("\n3. The Dspike family (Eqs. 11-12)")
    x = np.linspace(-1.0, 1.0, 401) + 0.0013
    for b in (0.5, 1.0, 2.0, 4.0, 8.0):
        s = dspike(b)
        ax_f.plot(x, s.primitive(x), label=f"b = {b:g}")
        ax_g.plot(x, s.grad(x), label=f"b = {b:g}")
    for a in (ax_f, ax_g):
        a.set_xlabel("x = u - V_th")
        a.legend(fontsize=8)
    ax_f.set_title("Dspike(x, b): the smooth spike")
    ax_f.set_ylabel("Dspike(x, b)  (Eq. 12)")
    ax_g.set_title("its derivative: the surrogate gradient")
    ax_g.set_ylabel("d Dspike / dx")
    err_small = rel_error(dspike(1e-4).primitive(x), rectangular(1.0).primitive(x))
    near = dspike(60.0).primitive(np.array([-0.1, 0.1]))
    print("   b -> 0: Dspike = the rectangular surrogate's straight line "
          f"(rel diff {err_small:.1e})")
    print(f"   b = 60: Dspike(-0.1), Dspike(0.1) = {near[0]:.4f}, {near[1]:.4f} -> the step H(x)")
    assert err_small < 1e-6 and near[0] < 0.01 and near[1] > 0.99


fig = plt.figure(figsize=(13, 4), layout="constrained")
ax_f, ax_g, ax_c = fig.subplots(1, 3)
section_dspike_family(ax_f, ax_g)
# sphinx_gallery_defer_figures


# %%
# 4. The FDG (Eq. 10) vs the surrogate gradient over Dspike temperatures
# ----------------------------------------------------------------------
# The FDG (Eq. 10) vs the surrogate gradient over Dspike temperatures, and one step of Dspike's
# Algorithm 1 by hand.

def section_fdg(ds: data.Dataset, ax_c: Any, fig: plt.Figure) -> tuple[nn.Sequential, Any, Any,
                                                                   dict[float, float], float]:
    hidden, batch = (8, 32) if QUICK else (32, 128)
    print(f"\n4. FDG (Eq. 10) vs surrogate gradient, first layer (64 x {hidden} weights), "
          f"batch {batch}")
    net = mlp(hidden, surrogate="dspike:1")
    enc = data.DirectEncoder()
    xb, yb = ds.x_train[:batch], ds.y_train[:batch]
    t0 = time.perf_counter()
    cos1 = cosine_vs(net, "bptt", xb, yb, reference="fdg", T=T, encoder=enc, eps=0.1)["1.W"]
    print(f"   cosine_vs(net, 'bptt', ..., reference='fdg') with b = 1: {cos1:.3f}  "
          f"({time.perf_counter() - t0:.1f}s: two spiking forward passes per weight)")
    # The FDG does not depend on b (it differentiates the real spiking network), so compute it
    # once and compare it with the surrogate gradient of every candidate temperature.
    fdg = finite_difference_gradient(net, xb, yb, ["1.W"], T=T, encoder=enc, eps=0.1)["1.W"]

    def cos_at(b: float) -> float:
        for layer in nn.spiking_layers(net):
            layer.set_surrogate(dspike(b))
        _, grads = method_gradients(net, "bptt", xb, yb, T=T, encoder=enc)
        return cosine(grads["1.W"], fdg)

    assert abs(cos_at(1.0) - cos1) < 1e-12
    assert cos1 > 0.5               # the surrogate gradient points where the real loss falls
    b = 1.0
    cands = {bc: cos_at(bc) for bc in (b - DELTA_B, b, b + DELTA_B)}
    b_new = max(cands, key=lambda k: (cands[k], k == b))   # ties keep b
    print("   one step of Dspike Alg. 1 from b = 1: "
          + ", ".join(f"cos(b={k:g}) = {v:.4f}" for k, v in cands.items())
          + f"  ->  b = {b_new:g}")
    bs = [0.25, 0.5, 1.0, 2.0, 4.0] if QUICK else [0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                                                    8.0]
    sweep = [cos_at(bv) for bv in bs]
    print("   the whole range: "
          + ", ".join(f"b={bv:g}: {c:.3f}" for bv, c in zip(bs, sweep, strict=True)))
    ax_c.semilogx(bs, sweep, "o-", label="surrogate dspike(b)")
    ax_c.plot(list(cands), list(cands.values()), "s", color="C1", label="Alg. 1 candidates")
    ax_c.plot([b_new], [cands[b_new]], "r*", ms=12, label="after one Alg. 1 step")
    ax_c.set_xticks(bs, [f"{bv:g}" for bv in bs])
    ax_c.minorticks_off()
    ax_c.set_xlabel("Dspike temperature b")
    ax_c.set_ylabel("cosine(surrogate grad, FDG)")
    ax_c.set_title("first-layer gradient vs FDG (eps = 0.1)")
    ax_c.legend(fontsize=8)
    path = OUT / "13_tet_dspike.png"
    fig.savefig(path, dpi=90)
    print(f"   figure: {path}")
    return net, xb, yb, cands, b_new


net, xb, yb, cands, b_new = section_fdg(ds, ax_c, fig)


# %%
# 5. The library's Alg. 1 step equals the one by hand
# ---------------------------------------------------
# ``train.dspike.adapt_dspike`` is what ``--dspike-adapt`` runs each epoch.

def check_library_step(net: nn.Sequential, xb: Any, yb: Any, cands: dict[float, float],
                       b_new: float) -> None:
    b = 1.0
    enc = data.DirectEncoder()
    # The library's own Alg. 1 step (what ``--dspike-adapt`` runs each epoch) takes the same step
    # when it samples every first-layer weight: same candidates, same cosines, same new b.
    for layer in nn.spiking_layers(net):
        layer.set_surrogate(dspike(b))
    W = net.named_parameters()["1.W"].data
    b_lib, cos_lib = adapt_dspike(net, make_method("bptt"), enc.encode(xb, T), yb, b,
                                  sdt_loss_forward, sdt_loss_backward, n_samples=W.size,
                                  rng=np.random.default_rng(0), eps=0.1, step=DELTA_B)
    diff = max(abs(cos_lib[k] - v) for k, v in cands.items())
    print(f"\nVerification (asserted): adapt_dspike from b = {b:g}: b -> {b_lib:g}, "
          f"candidate cosines equal to those above within {diff:.1e};\n   TET loss gradient = "
          "finite differences; Dspike -> line (b -> 0) and step (b -> inf); cos(FDG) > 0.5")
    assert b_lib == b_new and diff < 1e-12, (b_lib, b_new, diff)
    print("Chapter 13 done.")


check_library_step(net, xb, yb, cands, b_new)

"""
Chapter 22 -- Window partition and recomposed computing; S(theta) and the window complexity
===========================================================================================

The window-partition supplement (Yao, Wu, Chen & Zhang, "Training a General Spiking Neural
Network with Improved Efficiency and Minimum Latency", supplementary material; "WP" in
docs/derivations.md) cuts an L x L feature map into four overlapping "dilated" windows of size
M = 3L/4 (G1 top-left, G2 top-right, G3 bottom-left, G4 bottom-right; offset w_o = 2M - L),
processes each window, and puts the four results back with **Algorithm 1, Recomposed
Computing** (WP Alg. 1)::

    coverG1G2 = (G1[.., w_o/2 : 3w_o/2] + G2[.., 0 : w_o]) / 2               Weighted-Condense 1
    G1G2      = cat(G1[.., 0 : w_o/2], coverG1G2, G2[.., w_o : 3w_o/2])                          2
    (the same for G3G4, then G1G2 with G3G4 along the height -> G)
    X_l = [G > Th_R]                                                          Region Threshold

Overlaps are averaged, so a spike seen by only some of the windows covering a pixel becomes a
"median spike" 0.25 / 0.5 / 0.75, which the Region Threshold (Th_R = 0.1) turns back into a spike.
The library: ``functional.recompose.recompose_forward`` / ``recompose_backward`` (the adjoint:
the map is linear in the windows), ``region_threshold``, the loop reference
``kernels.reference.recompose_forward``, the layer ``nn.WindowRecompose(body)`` and the model
``--model window``.

The same supplement's closed forms (WP Eqs. 1-2, 6) live in ``pysnn_ref.ecml``: Eq. 6, the fusion
surface area S(theta) = 16 sin(3 theta pi th / 2) sin(theta pi th / 4)^2 / (theta^2 pi^2) and Table
1's nabla D = S(theta) - S_plane; Eqs. 1-2, the operation counts of a spiking conv (SCNN-W) and a
spiking LSTM (LSNN-W) in one window.  (The spiking LSTM itself is in the library
and in chapter 23.)

Verification: Algorithm 1 written literally here == ``recompose_forward`` == the loop reference;
the backward is the exact adjoint (dot-product test) and passes a float64 finite-difference
check; Table 1's printed values are reproduced; the ``window`` model trains above chance.
Figures: ``tutorials/out/22_recompose.png``, ``tutorials/out/22_surface_area.png``.

Run:  python tutorials/22_recomposed_computing.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""


from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from pysnn_ref import ecml, nn
from pysnn_ref.functional.recompose import (
    recompose_backward,
    recompose_forward,
    recompose_sizes,
    region_threshold,
)
from pysnn_ref.gradcheck.finite_diff import numerical_gradient, rel_error
from pysnn_ref.kernels import reference
from pysnn_ref.train.__main__ import build_parser, explicit_args, resolve_config
from pysnn_ref.train.loop import train

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))
M = 6                                        # window size: L = 8, w_o = 4
M_DEMO = 12                                  # the spike picture: L = 16
EPOCHS = 1 if QUICK else 3
#: Table 1 of the supplement, as printed (th = 0.5)
S_PRINTED = [0.05, 0.16, 0.22, 0.24, 0.20]
D_PRINTED = [-0.31, -0.21, -0.14, -0.13, -0.17]


def algorithm1(G1: np.ndarray, G2: np.ndarray, G3: np.ndarray, G4: np.ndarray) -> np.ndarray:
    """Algorithm 1's Weighted-Condense exactly as printed: width first, then height."""
    _, wo = recompose_sizes(G1.shape[-1])
    h = wo // 2

    def condense(A: np.ndarray, B: np.ndarray, axis: int) -> np.ndarray:
        def sl(a: int, b: int) -> tuple:
            return (slice(None),) * (A.ndim + axis) + (slice(a, b),)
        cover = (A[sl(h, 3 * h)] + B[sl(0, wo)]) / 2                         # step 1
        return np.concatenate([A[sl(0, h)], cover, B[sl(wo, 3 * h)]], axis=axis)  # step 2

    return condense(condense(G1, G2, -1), condense(G3, G4, -1), -2)


# One BLAS thread: the matrices here are small, and several threads fight over a
# few cores (the training CLI does the same, ``--blas-threads 1``).
threadpool_limits(limits=1, user_api="blas")


# %%
# 1. Algorithm 1 as printed, the library's recompose and its exact adjoint
# ------------------------------------------------------------------------


def check_recompose(rng: np.random.Generator) -> None:
    L, wo = recompose_sizes(M)
    print(f"   M = {M}: L = 4M/3 = {L}, w_o = 2M - L = {wo}")
    Gs = [rng.normal(size=(3, M, M)) for _ in range(4)]
    X = recompose_forward(*Gs)
    e_alg = float(np.abs(X - algorithm1(*Gs)).max())
    e_ref = float(np.abs(X - reference.recompose_forward(*Gs)).max())
    print(f"   recompose_forward vs Algorithm 1 as printed: max |diff| {e_alg:.1e}; vs the loop "
          f"reference: {e_ref:.1e}")
    assert e_alg <= 1e-15 and e_ref <= 1e-15
    dX = rng.normal(size=X.shape)
    dGs = recompose_backward(dX, M)
    lhs = float((X * dX).sum())
    rhs = float(sum((G * dG).sum() for G, dG in zip(Gs, dGs, strict=True)))
    print(f"   adjoint: <R(G), dX> = {lhs:.12f}, <G, R^T(dX)> = {rhs:.12f}")
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))
    G0 = Gs[0]
    num = numerical_gradient(lambda: float((recompose_forward(G0, *Gs[1:]) * dX).sum()), G0)
    err = rel_error(num, dGs[0])
    print(f"   finite differences (float64) of <R(G), dX> in G1: rel error {err:.1e}")
    assert err <= 1e-8


OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
print("Verification 1: WP Alg. 1 (recomposed computing), its reference loop and its adjoint")
check_recompose(rng)


# %%
# 2. Median spikes and the Region Threshold
# -----------------------------------------
# A conv + LIF body on the four windows of a spike map (``nn.WindowRecompose``).


def spike_demo(rng: np.random.Generator) -> dict[str, np.ndarray]:
    L, _ = recompose_sizes(M_DEMO)
    x = (rng.random((1, 1, 1, L, L)) < 0.4).astype(np.float64)    # (T, B, C, L, L)
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False, dtype=np.float64)
    conv.W.data[...] = 0.25              # a spike where >= 3 of the 3x3 neighbours spike
    body = nn.Sequential(conv, nn.LIF(lam=0.5, v_th=0.7))
    layer = nn.WindowRecompose(body, th_r=None)
    G = layer.forward(x)[0, 0, 0]
    med = np.unique(G)
    print(f"   conv 3x3 + LIF on each window of a random {L}x{L} spike map (windows {M_DEMO}x"
          f"{M_DEMO}; a window's zero padding hides neighbours the full map has): values "
          f"{[float(v) for v in med]}")
    assert set(med) <= {0.0, 0.25, 1 / 3, 0.5, 2 / 3, 0.75, 1.0}
    Xl = region_threshold(G, 0.1)
    print(f"   Region Threshold [G > 0.1]: {int((Xl > 0).sum())} spikes from "
          f"{int((G > 0).sum())} non-zero pixels, {int(((G > 0) & (G < 1)).sum())} of them median")
    assert set(np.unique(Xl)) <= {0.0, 1.0} and ((Xl > 0) == (G > 0.1)).all()
    return {"x": x[0, 0, 0], "G": G, "X": Xl}


print("\nMedian spikes and the Region Threshold (nn.WindowRecompose, th_r=None then 0.1)")
demo = spike_demo(rng)


# %%
# 3. S(theta) (Eq. 6, Table 1) and the window complexity (Eqs. 1-2)
# -----------------------------------------------------------------


def check_table1_and_complexity() -> tuple[list[int], list[float], list[float]]:
    rows = ecml.table1(0.5)
    S = [ecml.truncate2(s) for _, s, _ in rows]
    D = [ecml.truncate2(d) for _, _, d in rows]
    print("   theta          " + "".join(f"{t:7.1f}" for t, _, _ in rows))
    print("   S (Eq. 6)      " + "".join(f"{s:7.4f}" for _, s, _ in rows))
    print("   truncated      " + "".join(f"{s:7.2f}" for s in S) + "   printed: " + str(S_PRINTED))
    print("   nabla D        " + "".join(f"{d:7.2f}" for d in D) + "   printed: " + str(D_PRINTED))
    assert S == S_PRINTED and D == D_PRINTED
    dims = [8, 16, 32, 64, 128, 256, 512]
    exact = [ecml.complexity_scnn(d, d, 3, 3) / ecml.complexity_lsnn(d, d) for d in dims]
    approx = [ecml.complexity_ratio_approx(d, d, 3, 3) for d in dims]
    print("   d_x = d_h, 3x3: Omega(SCNN-W)/Omega(LSNN-W) (Eq. 1) vs Eq. 2's d_x k k/((d_x+d_h)4)")
    for d, e, a in zip(dims, exact, approx, strict=True):
        print(f"      d = {d:4d}: {e:.4f}  vs  {a:.4f}")
    assert abs(exact[-1] - approx[-1]) / approx[-1] < 0.01     # leading order: equal for large d
    return dims, exact, approx


print("\nVerification 2: Table 1 from Eq. 6 (truncated to 2 decimals as printed); Eqs. 1-2")
dims, exact, approx = check_table1_and_complexity()


# %%
# 4. The window model trained, and the figures
# --------------------------------------------


def draw(demo: dict[str, np.ndarray], dims: list[int], exact: list[float],
         approx: list[float]) -> tuple[Path, Path]:
    fig = plt.figure(figsize=(12, 3.8), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (k, title) in zip(axes, (("x", "input spikes"),
                                     ("G", "recomposed G: median spikes"),
                                     ("X", "Region Threshold [G > 0.1]")), strict=True):
        im = ax.imshow(demo[k], cmap="viridis", vmin=0, vmax=1)
        ax.set_title(title)
        ax.set_xlabel("column")
        ax.set_ylabel("row")
    fig.colorbar(im, ax=axes, shrink=0.8, label="value")
    p1 = OUT / "22_recompose.png"
    fig.savefig(p1, dpi=90)

    fig = plt.figure(figsize=(11, 4.2), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    th = np.linspace(0.01, 1.0, 200)
    ax1.plot(th, ecml.surface_area(th, 0.5), label="S(theta), Eq. 6")
    ax1.plot(th, ecml.delta_d(th, 0.5), label="nabla D = S - 3 th^2 / 2")
    ax1.plot(ecml.TABLE1_THETA, S_PRINTED, "ko", mfc="none", label="Table 1 (printed)")
    ax1.plot(ecml.TABLE1_THETA, D_PRINTED, "ks", mfc="none")
    ax1.set_xlabel("radian factor theta")
    ax1.set_ylabel("area")
    ax1.set_title("fusion surface S(theta), th = 0.5 (WP Eq. 6, Table 1)")
    ax1.legend(fontsize=8)
    ax2.semilogx(dims, exact, "o-", label="Eq. 1 exact ratio")
    ax2.semilogx(dims, approx, "--", label="Eq. 2 leading order")
    ax2.set_xlabel("d_x = d_h")
    ax2.set_ylabel("Omega(SCNN-W) / Omega(LSNN-W)")
    ax2.set_title("conv vs spiking-LSTM window cost, 3x3 kernel")
    ax2.legend(fontsize=8)
    p2 = OUT / "22_surface_area.png"
    fig.savefig(p2, dpi=90)
    return p1, p2


print(f"\nVerification 3: --model window (16C3 + LIF on the windows, recompose, AP2, FC), "
      f"BPTT, T=2, {EPOCHS} epoch(s)")
with tempfile.TemporaryDirectory() as tmp:
    argv = ["--model", "window", "--T", "2", "--epochs", str(EPOCHS), "--no-progress",
            "--no-plots", "--out", str(Path(tmp) / "run")]
    res = train(resolve_config(build_parser().parse_args(argv), explicit_args(argv)),
                log=lambda s: None)
for h in res["history"]:
    print(f"   epoch {h['epoch']}: loss {h['loss']:.4f}  test_acc {h['test_acc']:.4f}")
assert res["test_acc"] > 0.25, res["test_acc"]          # chance: 0.1
p1, p2 = draw(demo, dims, exact, approx)


# %%
# What the asserts above checked
# ------------------------------


print(f"\nFigure: {p1}\nFigure: {p2}")
print(f"Chapter 22 done: recompose exact, Table 1 reproduced, window model test_acc "
      f"{res['test_acc']:.4f}.")

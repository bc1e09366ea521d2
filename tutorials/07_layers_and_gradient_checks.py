"""
Chapter 7 -- Layers and gradient checks, CS231n style
=====================================================

Every layer of the library is a pair of functions (``pysnn_ref/functional/``)::

    out, cache = X_forward(x, params...)      # cache: only what the backward needs
    dx, dparams... = X_backward(dout, cache)   # dout = dL/dout; returns dL/d(every input)

and every backward is checked against finite differences: ``numerical_gradient(f, x, dout)``
perturbs each element of x by +-h and returns sum((f(x+h) - f(x-h)) * dout) / 2h, the gradient
of <f(x), dout>; ``rel_error(a, b) = maxabs(a - b) / (maxabs(a) + maxabs(b))``.  CS231n's
scale: above 1e-2 probably wrong, below 1e-7 "happy" (in float64; float32 cannot get there).

Spiking tensors are time-major (T, B, features...).  Stateless layers fold time into the batch,
(T*B, ...), so one matrix product serves every time step -- the synaptic current of SSF Eq. 4,
I[t] = W o[t], for all t at once.

Sections:

1. Linear: y = x W^T + b.
2. Conv2d via im2col (Chellapilla et al. 2006): unfold every receptive field into a column,
   then one GEMM; compared with a six-loop textbook convolution.
3. Average and max pooling (ASF / TET networks use average pooling, SSF max pooling).
4. Batch norm with time folded into the batch, and tdBN (Dspike Eqs. 4-5): normalise to
   N(0, (alpha V_th)^2) so that the input matches the threshold.
5. A whole network (conv -> tdBN -> LIF -> avg-pool -> linear, SDT loss) in smooth mode:
   the layers' backwards compose into the exact gradient of the network.
6. The loops behind the layers: ``kernels/reference.py`` (the equations as plain Python loops,
   the teaching text) and ``kernels/cpu/`` (the same loops compiled by Numba) give the same
   numbers -- ``backend.use_cpu_kernels("reference")`` switches -- and how much faster Numba is.
7. The figure ``tutorials/out/07_gradient_checks.png``: every check's relative error against
   CS231n's 1e-7, and the time of each loop in both tiers.

Run:  python tutorials/07_layers_and_gradient_checks.py    (PYSNN_TUTORIAL_QUICK=1: faster)
"""


from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from pysnn_ref import backend, nn
from pysnn_ref.functional.batchnorm import batchnorm_backward, batchnorm_forward
from pysnn_ref.functional.conv import conv2d_backward, conv2d_forward
from pysnn_ref.functional.linear import linear_backward, linear_forward
from pysnn_ref.functional.loss import sdt_loss_backward, sdt_loss_forward
from pysnn_ref.functional.neuron import lif_backward, lif_forward
from pysnn_ref.functional.pool import (
    avgpool2d_backward,
    avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
)
from pysnn_ref.gradcheck import numerical_gradient, rel_error
from pysnn_ref.kernels import reference

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))
CHECKS: list[tuple[str, float]] = []          # (name, rel error) of every check, for the figure


def check(name: str, analytic: Any, numeric: Any, tol: float = 1e-7) -> None:
    err = rel_error(analytic, numeric)
    print(f"   {name:46s} rel error {err:8.1e}")
    assert err < tol, f"{name}: {err}"
    CHECKS.append((name, err))


def conv_naive(x: np.ndarray, W: np.ndarray, b: np.ndarray, s: int, p: int) -> np.ndarray:
    """The definition: out[n, f, i, j] = b[f] + sum_{c,k,l} W[f, c, k, l] xpad[n, c, i s + k,
    j s + l].  Six loops, no tricks."""
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    OH, OW = (H + 2 * p - KH) // s + 1, (Wd + 2 * p - KW) // s + 1
    out = np.zeros((N, F, OH, OW))
    for n in range(N):
        for f in range(F):
            for i in range(OH):
                for j in range(OW):
                    window = xp[n, :, i * s:i * s + KH, j * s:j * s + KW]
                    out[n, f, i, j] = b[f] + np.sum(window * W[f])
    return out


def best_time(fn: Callable[[], Any], repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def plot(timings: dict[str, dict[str, float]]) -> None:
    """Every gradient check's error (log scale) and both tiers' time per call."""
    OUT.mkdir(parents=True, exist_ok=True)
    fig = plt.figure(figsize=(13, 8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1.3, 1])
    names = [n for n, _ in CHECKS]
    errs = [max(e, 1e-18) for _, e in CHECKS]            # an exact 0 on a log axis
    ax1.barh(range(len(names)), errs, color="C0")
    ax1.axvline(1e-7, color="r", ls="--", label="1e-7: CS231n's 'happy' (float64)")
    ax1.set_xscale("log")
    ax1.set_yticks(range(len(names)), names, fontsize=7)
    ax1.invert_yaxis()
    ax1.set_xlabel("rel error, analytic backward vs finite differences")
    ax1.set_ylabel("gradient check")
    ax1.set_title(f"{len(names)} gradient checks, float64 (Sections 1-5)")
    ax1.legend(fontsize=8, loc="lower right")
    fns = list(timings)
    y = np.arange(len(fns))
    for j, tier in enumerate(("reference", "numba")):
        ax2.barh(y + 0.4 * j - 0.2, [timings[f][tier] * 1e3 for f in fns], 0.4, label=tier)
    ax2.set_xscale("log")
    ax2.set_yticks(y, fns, fontsize=8)
    ax2.invert_yaxis()
    ax2.set_xlabel("time per call (ms, log)")
    ax2.set_ylabel("kernel")
    ax2.set_title("reference loops vs Numba (Section 6)")
    ax2.legend(fontsize=8)
    path = OUT / "07_gradient_checks.png"
    fig.savefig(path, dpi=90)
    print(f"   figure: {path}")


# One BLAS thread: the matrices here are small, and several threads fight over a
# few cores (the training CLI does the same, ``--blas-threads 1``).
threadpool_limits(limits=1, user_api="blas")


# %%
# 1. The linear layer's three gradients
# -------------------------------------

def section_linear(rng: np.random.Generator, R: Callable[..., Any]) -> None:
    print("1. Linear, time-major input (T=3, B=4, in=5) -> (T, B, out=6)")
    x, W, b = R(size=(3, 4, 5)), R(size=(6, 5)), R(size=6)
    out, cache = linear_forward(x, W, b)
    dout = R(size=out.shape)
    dx, dW, db = linear_backward(dout, cache)
    check("dx = dout W", dx, numerical_gradient(lambda: linear_forward(x, W, b)[0], x, dout))
    check("dW = dout^T x  (summed over T and B)", dW,
          numerical_gradient(lambda: linear_forward(x, W, b)[0], W, dout))
    check("db = sum of dout", db, numerical_gradient(lambda: linear_forward(x, W, b)[0], b, dout))


rng = np.random.default_rng(0)
R = rng.normal
section_linear(rng, R)


# %%
# 2. Convolution as im2col + GEMM, and its gradients
# --------------------------------------------------

def section_conv(rng: np.random.Generator, R: Callable[..., Any]) -> None:
    print("\n2. Conv2d = im2col + GEMM")
    img = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    cols = reference.im2col(img, 2, 2, 1, 0)               # kernel 2x2, stride 1, no padding
    print("   a 3x3 image [[1 2 3] [4 5 6] [7 8 9]] and a 2x2 kernel: im2col gives one column")
    print("   per output pixel, one row per kernel tap (c, kh, kw):")
    for row in cols[0]:
        print("     ", row)
    print("   so conv = W.reshape(F, C*KH*KW) @ cols: one matrix product for every window.")
    x, W, b = R(size=(2, 3, 7, 6)), R(size=(4, 3, 3, 3)), R(size=4)
    for s, p in ((1, 1), (2, 1), (2, 0)):
        out, _ = conv2d_forward(x, W, b, stride=s, padding=p)
        err = rel_error(out, conv_naive(x, W, b, s, p))
        print(f"   stride {s} pad {p}: conv2d_forward vs six loops, rel error {err:.1e}")
        assert err < 1e-12
    out, cache = conv2d_forward(x, W, b, stride=2, padding=1)
    dout = R(size=out.shape)
    dx, dW, db = conv2d_backward(dout, cache)

    def f() -> np.ndarray:
        return conv2d_forward(x, W, b, stride=2, padding=1)[0]

    check("conv dx = col2im(W^T dout)", dx, numerical_gradient(f, x, dout))
    check("conv dW = dout cols^T", dW, numerical_gradient(f, W, dout))
    check("conv db", db, numerical_gradient(f, b, dout))
    xt = R(size=(3, 2, 3, 5, 5))                           # time-major (T, B, C, H, W)
    out_t, _ = conv2d_forward(xt, W, b, padding=1)
    out_f, _ = conv2d_forward(xt.reshape(6, 3, 5, 5), W, b, padding=1)
    assert np.array_equal(out_t.reshape(out_f.shape), out_f)
    print("   a time-major (T, B, C, H, W) input is the same as T*B separate images")


section_conv(rng, R)


# %%
# 3. Average and max pooling
# --------------------------

def section_pooling(rng: np.random.Generator, R: Callable[..., Any]) -> None:
    print("\n3. Pooling")
    x = R(size=(2, 3, 6, 6))
    out, cache = avgpool2d_forward(x, 2)
    dout = R(size=out.shape)
    check("avgpool 2x2: dx = dout / 4 on every window", avgpool2d_backward(dout, cache),
          numerical_gradient(lambda: avgpool2d_forward(x, 2)[0], x, dout))
    # Max pooling has a kink where two inputs of a window tie; keep the values well apart so
    # that no +-h perturbation changes a window's winner (CS231n: "beware of kinks").
    x = (rng.permutation(2 * 3 * 6 * 6) * 0.1).reshape(2, 3, 6, 6)
    out, cache = maxpool2d_forward(x, 2)
    dout = R(size=out.shape)
    check("maxpool 2x2: dout routed to each window's max", maxpool2d_backward(dout, cache),
          numerical_gradient(lambda: maxpool2d_forward(x, 2)[0], x, dout))
    out, cache = maxpool2d_forward(x, 3, stride=2)
    dout = R(size=out.shape)
    check("maxpool 3x3 stride 2 (overlapping windows)", maxpool2d_backward(dout, cache),
          numerical_gradient(lambda: maxpool2d_forward(x, 3, stride=2)[0], x, dout))


section_pooling(rng, R)


# %%
# 4. Batch norm and tdBN (Dspike Eqs. 4-5)
# ----------------------------------------

def section_batchnorm(rng: np.random.Generator, R: Callable[..., Any]) -> None:
    print("\n4. Batch norm over (T, B, H, W) per channel, and tdBN")
    T, B, C = 4, 8, 3
    x = R(2.0, 3.0, size=(T, B, C, 3, 3))
    gamma, beta = np.ones(C), np.zeros(C)
    alpha, v_th = 1.0, 0.5
    y, _ = batchnorm_forward(x, gamma, beta, None, None, training=True, scale=alpha * v_th)
    std = y.std(axis=(0, 1, 3, 4))
    print(f"   tdBN (alpha={alpha}, V_th={v_th}) of x ~ N(2, 9): per-channel "
          f"max |mean| {np.abs(y.mean((0, 1, 3, 4))).max():.1e}, std {np.round(std, 4)}"
          " = alpha * V_th")
    assert np.allclose(std, alpha * v_th, rtol=1e-3)
    x = R(0.5, 2.0, size=(2, 3, 2, 2, 2))
    gamma, beta = R(size=2), R(size=2)
    for scale, name in ((1.0, "BN"), (alpha * v_th, "tdBN")):
        def f(scale=scale) -> np.ndarray:
            return batchnorm_forward(x, gamma, beta, None, None, training=True, scale=scale)[0]

        y, cache = batchnorm_forward(x, gamma, beta, None, None, training=True, scale=scale)
        dout = R(size=y.shape)
        dx, dgamma, dbeta = batchnorm_backward(dout, cache)
        check(f"{name} train: dx (through mean and variance)", dx,
              numerical_gradient(f, x, dout))
        check(f"{name} train: dgamma", dgamma, numerical_gradient(f, gamma, dout))
        check(f"{name} train: dbeta", dbeta, numerical_gradient(f, beta, dout))


section_batchnorm(rng, R)


# %%
# 5. A whole spiking network, checked per parameter
# -------------------------------------------------

def section_network(rng: np.random.Generator, R: Callable[..., Any]) -> None:
    print("\n5. A whole spiking network, smooth mode, float64: per-parameter check")
    # No bias on the conv: a training-mode BN right after it subtracts each channel's mean, so a
    # bias there cannot change the loss -- its exact gradient is 0 and a finite difference of it
    # measures only the loss's round-off (~eps |L| / h = 2e-10), which the relative error turns
    # into noise of order 1e-2 (the sign and size depend on summation order, i.e. on threads).
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, bias=False, rng=rng, dtype=np.float64),
        nn.BatchNorm(3, alpha=1.0, v_th=1.0, dtype=np.float64),             # tdBN
        nn.LIF(lam=0.8, v_th=1.0, surrogate="sigmoid", smooth=True),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(3 * 2 * 2, 5, rng=rng, dtype=np.float64),
    )
    X = R(0.5, 1.0, size=(4, 3, 2, 4, 4))                  # (T, B, C, H, W)
    labels = rng.integers(0, 5, size=3)

    def loss() -> float:
        return sdt_loss_forward(net.forward(X), labels)[0]

    net.zero_grad()
    _, lcache = sdt_loss_forward(net.forward(X), labels)
    dX = net.backward(sdt_loss_backward(lcache))           # BPTT through every layer
    for i, layer in enumerate(net.layers):
        for p in layer.own_parameters():
            check(f"layer {i} ({type(layer).__name__}) {p.name}", p.grad,
                  numerical_gradient(loss, p.data))
    check("the input X", dX, numerical_gradient(loss, X))


section_network(rng, R)


# %%
# 6. The reference loops equal the Numba kernels
# ----------------------------------------------

def section_kernels(rng: np.random.Generator, R: Callable[..., Any]) -> int:
    print("\n6. Reference loops vs Numba kernels: same numbers, different speed")
    I = R(0.5, 1.0, size=(8, 4096 if QUICK else 16384))
    x = R(size=(8 if QUICK else 32, 8, 8, 8))
    W, b = R(size=(8, 8, 3, 3)), R(size=8)

    def run() -> dict[str, Callable[[], Any]]:
        o, c = lif_forward(I, lam=0.8, v_th=1.0)
        y, cc = conv2d_forward(x, W, b, padding=1)
        m, mc = maxpool2d_forward(y, 2)
        return {
            "lif_forward (SSF Eqs. 6-7)": lambda: lif_forward(I, lam=0.8, v_th=1.0),
            "lif_backward (exact BPTT)": lambda: lif_backward(o, c),
            "conv2d_forward (im2col)": lambda: conv2d_forward(x, W, b, padding=1),
            "conv2d_backward (im2col, col2im)": lambda: conv2d_backward(y, cc),
            "maxpool2d_forward": lambda: maxpool2d_forward(y, 2),
            "maxpool2d_backward": lambda: maxpool2d_backward(m, mc),
        }

    results: dict[str, dict[str, Any]] = {}
    timings: dict[str, dict[str, float]] = {}
    for kernels in ("numba", "reference"):
        with backend.use_cpu_kernels(kernels):
            fns = run()
            for name, fn in fns.items():
                results.setdefault(name, {})[kernels] = fn()   # (also Numba's warm-up call)
                timings.setdefault(name, {})[kernels] = best_time(
                    fn, 10 if kernels == "numba" else 1)
    print(f"   {'function':34s} {'max rel diff':>12s} {'reference':>10s} {'numba':>9s}"
          f" {'speed-up':>9s}")
    for name in fns:
        a, c = results[name]["reference"], results[name]["numba"]
        a = a if isinstance(a, tuple) else (a,)       # compare every array returned
        c = c if isinstance(c, tuple) else (c,)
        diff = max(rel_error(p, q) for p, q in zip(a, c, strict=True) if isinstance(p, np.ndarray))
        tr, tn = timings[name]["reference"], timings[name]["numba"]
        print(f"   {name:34s} {diff:12.1e} {tr * 1e3:8.1f}ms {tn * 1e3:7.2f}ms {tr / tn:8.0f}x")
        assert diff <= 1e-10
    print("   (the GEMMs are NumPy's in both; only the loops differ)")
    plot(timings)
    return len(fns)


n_kernels = section_kernels(rng, R)


# %%
# What the asserts above checked
# ------------------------------

worst = max(CHECKS, key=lambda c: c[1])
print(f"\nVerification (asserted): {len(CHECKS)} gradient checks, worst rel error "
      f"{worst[1]:.1e} ({worst[0]}) < 1e-7; {n_kernels} reference loops = Numba kernels "
      "(rel <= 1e-10)")
print("Chapter 7 done: every backward above is the exact gradient of its forward.")

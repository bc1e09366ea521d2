"""
Chapter 3 -- Spike encoding: how an image becomes T steps of network input
==========================================================================

A spiking network runs for T time steps, so a static input x (B, ...) must first be turned into a
time-major input (T, B, ...).  Three common codes:

* **direct** (repeat) encoding -- the analog x is presented unchanged at every step; the first
  LIF layer turns it into spikes (SSF, Wang et al., ICCV 2023, Sec. 3.1; TET, Deng et al.,
  ICLR 2022, Sec. 4): input[t] = x for t = 0..T-1.
* **Poisson** (Bernoulli rate) coding -- ASF-BP's input layer (Wu et al., AAAI 2021, Alg. 1
  line 3): at every step, independently, input[t] = H(abs(x) - U[t]) sign(x),
  U[t] ~ Uniform[0, 1), so each entry fires with rate clip(abs(x), 0, 1) and the count over
  T steps is Binomial(T, abs(x)): the rate error shrinks like sqrt(x (1 - x) / T).
* **latency** (time-to-first-spike) coding -- one spike per pixel, brighter pixels earlier:
  t_spike = round((1 - x) (T - 1)) for x in [0, 1]; x = 1 fires at t = 0, x = 0 at t = T-1.

The library's encoders are ``pysnn_ref.data.make_encoder(name)`` (names in ``data.ENCODERS``);
latency coding is written here in a few lines.

What this chapter does:

1. encodes the 8x8 digits (pixel intensities scaled to [0, 1]) with all three codes;
2. measures how the Poisson rate converges to the pixel intensity as T grows, against the
   binomial standard error sqrt(x (1 - x) / T);
3. checks that latency coding gives every pixel exactly one spike, at the right step;
4. draws rasters of one digit under each code (``tutorials/out/03_spike_encoding.png``).

Run:  python tutorials/03_spike_encoding.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""


from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from pysnn_ref import data

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))


def latency_encode(x: np.ndarray, T: int) -> np.ndarray:
    """Time-to-first-spike coding of x in [0, 1]: one spike per entry, at
    t_spike = round((1 - x) (T - 1)).  Returns (T,) + x.shape, dtype of x."""
    if np.any(x < 0) or np.any(x > 1):
        raise ValueError("x: expected values in [0, 1]")
    t_spike = np.rint((1 - x) * (T - 1)).astype(np.int64)
    out = np.zeros((T,) + x.shape, dtype=x.dtype)
    np.put_along_axis(out, t_spike[None], 1, axis=0)
    return out


# %%
# The first n digits, each scaled to [0, 1] (min-max), shape (n, 64).

def unit_images(n: int) -> np.ndarray:
    ds = data.load_dataset("digits")
    x = ds.x_train[:n].reshape(n, -1).astype(np.float64)
    lo, hi = x.min(1, keepdims=True), x.max(1, keepdims=True)
    return (x - lo) / (hi - lo)


OUT.mkdir(parents=True, exist_ok=True)
n = 50 if QUICK else 400
x = unit_images(n)


# %%
# 1. Direct encoding, input[t] = x at every step (a stride-0 view)
# ----------------------------------------------------------------

def section_direct(x: np.ndarray) -> None:
    print("\n1. Direct encoding: input[t] = x at every step (a broadcast view, no copy)")
    direct = data.make_encoder("direct").encode(x, 8)
    print(f"   shape {direct.shape}, time-axis stride {direct.strides[0]} "
          f"(0: the same memory each step)")
    assert direct.strides[0] == 0 and np.array_equal(direct[5], x)


print(f"encoders in the library: data.ENCODERS = {data.ENCODERS}")
section_direct(x)


# %%
# 2. Poisson coding (ASF Alg. 1), rate error vs the binomial bound
# ----------------------------------------------------------------

def section_poisson(x: np.ndarray) -> tuple[list[int], list[float], list[float]]:
    print("\n2. Poisson coding (ASF Alg. 1): rate -> clip(|x|, 0, 1); "
          "binomial std error sqrt(x(1-x)/T)")
    Ts = [4, 16, 64, 256] if QUICK else [4, 16, 64, 256, 1024]
    errs, bounds = [], []
    print(f"   {'T':>5s}  {'mean |rate - x|':>16s}  {'expected (binomial)':>20s}")
    for T in Ts:
        spikes = data.make_encoder("poisson", seed=1).encode(x, T)
        assert set(np.unique(spikes)) <= {0.0, 1.0}          # x >= 0: no negative spikes
        rate = spikes.mean(0)
        err = float(np.mean(np.abs(rate - x)))
        # E|Binomial/T - x| <= sqrt(x(1-x)/T) (Jensen), averaged over the pixels
        bound = float(np.mean(np.sqrt(x * (1 - x) / T)))
        errs.append(err)
        bounds.append(bound)
        print(f"   {T:5d}  {err:16.4f}  {bound:20.4f}")
    print(f"   error at T={Ts[-1]}: {errs[-1]:.4f} (asserted < 0.05 and below the Jensen bound "
          f"{bounds[-1]:.4f} + 10%)")
    assert errs[-1] < 0.05
    assert all(e <= 1.1 * b for e, b in zip(errs, bounds, strict=True))
    assert all(a > b for a, b in zip(errs, errs[1:], strict=False))   # shrinks with T
    return Ts, errs, bounds


Ts, errs, bounds = section_poisson(x)


# %%
# 3. Latency coding, one spike per pixel at round((1 - x)(T - 1))
# ---------------------------------------------------------------

def section_latency(x: np.ndarray, n: int) -> tuple[int, np.ndarray, np.ndarray]:
    print("\n3. Latency coding: t_spike = round((1 - x)(T - 1)), one spike per pixel")
    T = 16
    lat = latency_encode(x, T)
    counts = lat.sum(0)
    first = lat.argmax(0)
    want = np.rint((1 - x) * (T - 1))
    print(f"   spikes per pixel: min {counts.min():.0f}, max {counts.max():.0f}; "
          f"spike times match the formula: {bool(np.array_equal(first, want))}")
    assert np.all(counts == 1) and np.array_equal(first, want)
    print(f"   spikes per image: direct (analog), Poisson T={T} "
          f"{data.make_encoder('poisson').encode(x, T).sum() / n:.1f}, latency {T} steps "
          f"{lat.sum() / n:.1f} (= 64 pixels)")
    return T, lat, first


T, lat, first = section_latency(x, n)


# %%
# The figure: one digit under each code, the Poisson error vs T, latency vs intensity.

def plot_encodings(x: np.ndarray, T: int, lat: np.ndarray, first: np.ndarray, Ts: list[int],
                   errs: list[float], bounds: list[float]) -> None:
    fig = plt.figure(figsize=(13, 7), layout="constrained")
    ax = fig.subplots(2, 3)
    img = x[0]
    ax[0, 0].imshow(img.reshape(8, 8), cmap="gray_r")
    ax[0, 0].set_title("digit, intensity in [0, 1]")
    ax[0, 0].set_xlabel("pixel column")
    ax[0, 0].set_ylabel("pixel row")
    pois = data.make_encoder("poisson", seed=2).encode(img[None], T)[:, 0]
    for a, code, title in ((ax[0, 1], pois, f"Poisson (ASF Alg. 1), T={T}"),
                           (ax[0, 2], lat[:, 0], f"latency t=round((1-x)(T-1)), T={T}")):
        t, pix = np.nonzero(code)
        a.plot(t, pix, "|k", ms=4)
        a.set_xlabel("time step t")
        a.set_ylabel("pixel index")
        a.set_title(title)
    ax[1, 0].imshow(np.broadcast_to(img, (T, 64)).T, aspect="auto", cmap="gray_r")
    ax[1, 0].set_title("direct: analog input[t] = x")
    ax[1, 0].set_xlabel("time step t")
    ax[1, 0].set_ylabel("pixel index")
    ax[1, 1].loglog(Ts, errs, "o-", label="measured mean |rate - x|")
    ax[1, 1].loglog(Ts, bounds, "k:", label="mean sqrt(x(1-x)/T)")
    ax[1, 1].set_xlabel("time steps T")
    ax[1, 1].set_ylabel("rate error")
    ax[1, 1].set_title("Poisson rate converges to intensity")
    ax[1, 1].legend(fontsize=8)
    ax[1, 2].plot(img, first[0], "o")
    ax[1, 2].set_xlabel("pixel intensity x")
    ax[1, 2].set_ylabel("spike time")
    ax[1, 2].set_title("latency: brighter fires earlier")
    path = OUT / "03_spike_encoding.png"
    fig.savefig(path, dpi=90)
    print(f"\nFigure: {path}")


plot_encodings(x, T, lat, first, Ts, errs, bounds)


# %%
# What the asserts above checked
# ------------------------------

print(f"\nVerification (asserted): direct = a stride-0 view of x; Poisson rate error "
      f"{errs[-1]:.4f} at T={Ts[-1]} (< 0.05, <= 1.1 x the binomial bound, shrinking with T);"
      "\n   latency: exactly one spike per pixel at round((1 - x)(T - 1))")
print("Chapter 3 done: Poisson rates converge to x at 1/sqrt(T); latency uses one spike.")

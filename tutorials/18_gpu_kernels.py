"""
Chapter 18 -- One kernel, three tiers: a NumPy loop, a Numba CPU kernel, a numba.cuda kernel
============================================================================================

Every loop of the library exists three times, with the same signature and the same numbers:

1. ``pysnn_ref.kernels.reference`` -- plain Python/NumPy loops: the teaching text, the formulas
   exactly as in the papers;
2. ``pysnn_ref.kernels.cpu``       -- ``@njit(cache=True, parallel=True)``: the same loops,
   compiled, parallel over blocks of neurons (``prange``), vectorised over a block;
3. ``pysnn_ref.kernels.cuda``      -- ``@cuda.jit``: one GPU thread per neuron, the whole time
   loop inside the thread with the membrane in a register, so T steps are ONE launch
   (SpikingJelly's fused multi-step pattern), grid-stride loops so any grid covers any N.

The kernel taught here is the LIF neuron, SSF (Wang et al., ICCV 2023) Eqs. 6-7 (hard reset) /
16-17 (soft reset), its exact BPTT backward (SSF Eqs. 8-10, chapter 5), and SSF's flow gain
dFO/dFI (Eq. 14).

No GPU here?  numba ships a CUDA *simulator* that runs every thread as Python code.  It must be
switched on before numba is first imported -- and ``import pysnn_ref`` imports numba -- so the
very first lines of this file set ``NUMBA_ENABLE_CUDASIM=1`` when no CUDA driver library is
found (or leave the variable as you set it).  The simulator is slow (measured: ~15 s for
64,000 threads x 20 steps), so the sizes are tiny; on a real GPU the same code runs on the device.

Verification: the three tiers agree to rel <= 1e-10 in float64 (forward spikes and membranes,
backward, gains), and a launch with a single 32-thread block gives the same result as the full
grid (grid-stride).  Figure: ``tutorials/out/18_gpu_kernels.png`` (one neuron's membrane from all
three tiers; time per call of each tier).

Run:  python tutorials/18_gpu_kernels.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""


from __future__ import annotations

import ctypes.util
import os

if "NUMBA_ENABLE_CUDASIM" not in os.environ and ctypes.util.find_library("cuda") is None:
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"      # before anything imports numba

import inspect  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402

from pysnn_ref.gradcheck.finite_diff import rel_error  # noqa: E402
from pysnn_ref.kernels import cpu, reference  # noqa: E402
from pysnn_ref.kernels import cuda as ck  # noqa: E402

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))
SIM = bool(numba.config.ENABLE_CUDASIM)
T, N = (6, 200) if QUICK else (8, 600)
LAM, V_TH, A = 0.5, 1.0, 1.0
TRIANGLE = reference.SURROGATE_KINDS["triangle"]
TIERS = {"reference (NumPy loop)": reference, "cpu (Numba njit)": cpu,
         f"cuda ({'simulator' if SIM else 'GPU'})": ck}
TOL = 1e-10


def _time(f: Callable, args: tuple) -> float:
    t0 = time.perf_counter()
    f(*args)
    return time.perf_counter() - t0


# %%
# 1. One kernel, three tiers: the source
# --------------------------------------
# ``show_loop`` prints a few lines of a function's source, from the first line containing a
# given text: the time loop of each tier's LIF forward.


def show_loop(fn: object, first: str, lines: int) -> None:
    src = inspect.getsource(fn).splitlines()
    i = next(k for k, s in enumerate(src) if first in s)
    print("\n".join("      " + s for s in src[i:i + lines]))


OUT.mkdir(parents=True, exist_ok=True)
print(f"numba {numba.__version__}, CUDA simulator: {SIM}; LIF lam={LAM}, v_th={V_TH}, "
      f"T={T}, N={N} neurons, float64")
print("\nTier 1, the reference loop (SSF Eqs. 6-7 / 16-17):")
show_loop(reference.lif_forward, "for n in range(N)", 11)
print("Tier 2, the Numba CPU kernel: blocks of neurons in parallel (prange), vectorised:")
show_loop(cpu.neuron, "for blk in prange", 4)
print("      ...")
print("Tier 3, the CUDA kernel: the same body, one thread per neuron n (grid-stride):")
show_loop(ck.lif_forward_kernel().py_func, "for n in range(cuda.grid(1)", 11)
blocks, tpb = ck.launch_config(N)
print(f"   launch_config({N}) = {blocks} blocks x {tpb} threads (a multiple of the 32-thread "
      f"warp)")

# %%
# 2. The three tiers on the same neurons
# --------------------------------------
# LIF forward (hard and soft reset), its exact backward and SSF's flow gain, float64, from every
# tier; ``timed`` returns a call's result and its best wall time over a few calls (the first
# call compiles).


def timed(f: Callable, *args: object, repeats: int = 3) -> tuple[object, float]:
    out = f(*args)
    best = min(_time(f, args) for _ in range(repeats))
    return out, best


rng = np.random.default_rng(0)
I = rng.normal(0.6, 0.8, (T, N))
do = rng.normal(size=(T, N))
FI = rng.uniform(-0.5, 1.5, N)
R = rng.uniform(0.2, 3.0, N)
res: dict[str, dict[str, np.ndarray]] = {}
secs: dict[str, float] = {}
for name, K in TIERS.items():
    results = {}
    for soft in (False, True):
        (o, u), secs_f = timed(K.lif_forward, I, LAM, V_TH, soft, False, TRIANGLE, A)
        dI = K.lif_backward(do, u, LAM, V_TH, soft, False, False, TRIANGLE, A)
        results |= {f"o soft={soft}": o, f"u soft={soft}": u, f"dI soft={soft}": dI,
                    f"gain soft={soft}": K.ssf_gain(FI, R, V_TH, soft, 2.0)}
        if not soft:
            secs[name] = secs_f
    res[name] = results
    print(f"   {name:24s} forward {secs[name] * 1e3:9.3f} ms per call")


# %%
# 3. Every tier equals the reference
# ----------------------------------
# ... and one block of 32 threads walking over all N neurons (grid-stride) gives the same too.

print("\nVerification: every tier equals the reference (float64, rel error)")
ref_name = next(iter(TIERS))
for name in list(TIERS)[1:]:
    errs = {k: rel_error(res[ref_name][k], v) for k, v in res[name].items()}
    worst = max(errs, key=errs.get)
    print(f"   {name:24s} worst over {len(errs)} outputs: {worst}: {errs[worst]:.1e}")
    assert all(e <= TOL for e in errs.values()), errs
o_ref = res[ref_name]["o soft=False"]
print(f"   spikes: {int(o_ref.sum())} of {o_ref.size} neuron-steps, identical in all tiers")
# grid-stride: ONE block of 32 threads walks over all N neurons
o1, u1 = np.empty_like(I), np.empty_like(I)
ck.lif_forward_kernel()[1, 32](I, LAM, V_TH, False, False, TRIANGLE, A, o1, u1)
e1 = rel_error(res[ref_name]["u soft=False"], u1)
print(f"   one 32-thread block for {N} neurons (grid-stride): rel error of u {e1:.1e}, "
      f"spikes equal: {bool((o1 == o_ref).all())}")
assert e1 <= TOL and (o1 == o_ref).all()

# %%
# 4. The figure
# -------------

fig = plt.figure(figsize=(12, 4.5), layout="constrained")
ax1, ax2 = fig.subplots(1, 2, width_ratios=[1.4, 1])
n = int(np.argmax(o_ref.sum(0) > 1))         # a neuron that fires more than once
for (name, r), (mk, ms) in zip(res.items(), (("o-", 9), ("s--", 6), ("x:", 8)), strict=True):
    ax1.plot(np.arange(T), r["u soft=False"][:, n], mk, ms=ms, label=name, mfc="none")
ax1.axhline(V_TH, color="k", lw=0.8, ls="--", label="v_th")
ax1.set_xlabel("time step t")
ax1.set_ylabel("membrane u[t] before reset")
ax1.set_title(f"neuron {n}: the three tiers give the same u (SSF Eqs. 6-7)")
ax1.legend(fontsize=8)
names = list(secs)
ax2.bar(range(len(names)), [secs[k] * 1e3 for k in names], color=["C0", "C1", "C2"])
ax2.set_yscale("log")
ax2.set_xticks(range(len(names)), [k.replace(" (", "\n(") for k in names], fontsize=8)
ax2.set_xlabel("tier")
ax2.set_ylabel("time per forward call (ms, log)")
ax2.set_title(f"LIF forward, T={T}, N={N}" + (" (simulator: slow by design)" if SIM else ""))
path = OUT / "18_gpu_kernels.png"
fig.savefig(path, dpi=90)
print(f"\nFigure: {path}")
print("Chapter 18 done: three tiers, one set of numbers.")

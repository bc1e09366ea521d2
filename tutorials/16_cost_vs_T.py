"""
Chapter 16 -- What BPTT, ASF and SSF cost in time and memory as the number of steps T grows
============================================================================================

BPTT walks back through all T steps of every neuron (SSF, Wang et al., ICCV 2023, Eqs. 8-10),
so its backward pass does O(T) work per layer and keeps O(T) membranes and spikes in memory.
ASF (Wu et al., AAAI 2021, Eqs. 7-12) and SSF (Eqs. 11-15) back-propagate once through the
equivalent rate network (chapter 11): one (B, ...) gradient per layer, then
dL/dI[t] = dL/dFO dFO/dFI for every t (SSF Eq. 15).  Their backward is (almost) independent of
T, and they keep running flow sums instead of T steps -- the point of SSF's Fig. 1.

The forward pass is the same spiking network for all three methods and runs T steps for each, so
its *work* grows with T for every method.  Whether the *measured* forward time shows that
depends on the machine: for small T the fixed costs of a step (the GEMMs' setup, Python, the
loss) dominate, and on a shared CPU another process can slow any one step several times over.
The chapter therefore prints the times it measured and how much each grew, and asserts only
what cannot move with the machine's load: the peak memory, counted in bytes.

The measurement is the library's benchmark called as a function,
``pysnn_ref.bench.benchmark(model=..., methods=..., T=...)`` -- the keyword form of
``python -m pysnn_ref.bench --model mlp --T 4,8,16,32``: one training step per method and T,
timed in interleaved rounds (medians), its peak memory by ``tracemalloc`` (above what was live
before the step).  Figure: ``tutorials/out/16_cost_vs_T.png``.

Run:  python tutorials/16_cost_vs_T.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from pysnn_ref.bench import benchmark

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))
OUT.mkdir(parents=True, exist_ok=True)
COLORS = {"bptt": "C0", "asf": "C1", "ssf": "C2"}
STYLES = {"bptt": "o-", "asf": "s--", "ssf": "^:"}
TS = [4, 16] if QUICK else [4, 8, 16, 32]  # quick: 4 -> 16 (T >= the flows' chunk of 4)
REPEATS = 5 if QUICK else 7
BATCH = 128
# One BLAS thread: the matrices here are small, and several threads fight over a few cores.
threadpool_limits(limits=1, user_api="blas")

# %%
# 1. The measurement
# ------------------
# One call runs the whole sweep and returns one record (a dict) per method and T.

records = benchmark(model="mlp", methods=tuple(COLORS), T=TS, batch_size=BATCH,
                    repeats=REPEATS, warmup=2)
t = {(r["method"], r["T"]): r for r in records}
print(f"Benchmark MLP, input {tuple(records[0]['input_shape'])}, batch {BATCH}, "
      f"{records[0]['dtype']}, T in {TS}, median of {REPEATS} steps\n(SSF Fig. 1: BPTT, SSF "
      "Eqs. 8-10, vs the flows, ASF Eqs. 7-12 and SSF Eqs. 11-15)")
print(f"   {'T':>3s}" + "".join(f"{m + ' fwd':>11s}{m + ' bwd':>11s}" for m in COLORS))
for T in TS:
    print(f"   {T:3d}" + "".join(f"{t[m, T]['forward_s'] * 1e3:9.2f}ms"
                                 f"{t[m, T]['backward_s'] * 1e3:9.2f}ms" for m in COLORS))

# %%
# 2. How much did each time grow with T?
# ---------------------------------------
# T grew by a factor TS[-1] / TS[0].  BPTT's backward should grow with it, the flows' backward
# should not.  These are the numbers of *this* run, printed, not asserted.


def growth(key: str) -> dict[str, float]:
    """How many times ``key`` grew from the smallest to the largest T, per method."""
    return {m: t[m, TS[-1]][key] / t[m, TS[0]][key] for m in COLORS}


grow_bwd, grow_fwd = growth("backward_s"), growth("forward_s")
print(f"Measured growth from T={TS[0]} to T={TS[-1]} (T grew x{TS[-1] / TS[0]:g}; reported, "
      "not asserted: timings move with the machine's load)")
for m in COLORS:
    print(f"   {m:4s}: backward x{grow_bwd[m]:.2f}, forward x{grow_fwd[m]:.2f}  (backward "
          f"speed-up vs BPTT at T={TS[-1]}: "
          f"x{t['bptt', TS[-1]]['backward_s'] / t[m, TS[-1]]['backward_s']:.2f})")
flat = [m for m in COLORS if grow_fwd[m] < 1.2]
if flat:
    print(f"   the forward of {', '.join(flat)} hardly grew in this run: at these sizes a step's "
          "fixed costs and the machine's load hide the T steps' work")

# %%
# 3. Memory: BPTT keeps T steps, the flows keep sums
# ---------------------------------------------------
# ``tracemalloc`` counts bytes, not seconds, so this is what the chapter asserts.

mem = growth("peak_mem_bytes")
print("Verification: the flows' memory grows less than BPTT's from "
      f"T={TS[0]} to T={TS[-1]}")
print(f"   peak memory of a step (tracemalloc), T={TS[0]} -> T={TS[-1]}: " + ", ".join(
    f"{m} {t[m, TS[0]]['peak_mem_bytes'] / 2**20:.1f} -> "
    f"{t[m, TS[-1]]['peak_mem_bytes'] / 2**20:.1f} MiB (x{mem[m]:.2f})" for m in COLORS))
for m in ("asf", "ssf"):
    assert mem[m] < mem["bptt"], (m, mem)

# %%
# 4. The figure
# -------------
# Log-log axes: a cost proportional to T is a line of slope 1.  Every axes gets explicit tick
# labels, since the measured values may span less than a decade.


def log_panel(ax: plt.Axes, key: str, scale: float, ylabel: str, title: str) -> None:
    """One log-log panel of ``key`` (times ``scale``) against T, every tick labelled."""
    ys = []
    for m, c in COLORS.items():
        y = [t[m, T][key] * scale for T in TS]
        ys += y
        ax.loglog(TS, y, STYLES[m], color=c, label=m)   # dashed / dotted: ASF and SSF overlap
    ax.minorticks_off()
    ax.set_xticks(TS, [str(T) for T in TS])
    ticks = np.geomspace(min(ys), max(ys), 5)
    ax.set_yticks(ticks, [f"{v:.3g}" for v in ticks])
    ax.set_xlabel("time steps T")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)


fig = plt.figure(figsize=(15, 4.5), layout="constrained")
axes = fig.subplots(1, 3)
log_panel(axes[0], "backward_s", 1e3, "backward time per step (ms)",
          f"backward pass, MLP batch {BATCH} (cf. SSF Fig. 1)")
log_panel(axes[1], "forward_s", 1e3, "forward time per step (ms)",
          f"forward pass, MLP batch {BATCH}: T steps for all")
log_panel(axes[2], "peak_mem_bytes", 2.0**-20, "peak memory of a step (MiB)",
          "memory: BPTT keeps T steps, flows keep sums")
path = OUT / "16_cost_vs_T.png"
fig.savefig(path, dpi=90)
print(f"Figure: {path}")
print("Chapter 16 done: " + ", ".join(f"{m} backward x{g:.2f}" for m, g in grow_bwd.items())
      + " over T; memory " + ", ".join(f"{m} x{g:.2f}" for m, g in mem.items()) + ".")

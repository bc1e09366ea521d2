"""Chapter 11 -- What BPTT, ASF and SSF cost in time and memory as the number of steps T grows.

BPTT walks back through all T steps of every neuron (SSF, Wang et al., ICCV 2023, Eqs. 8-10),
so its backward pass does O(T) work per layer and keeps O(T) membranes and spikes in memory.
ASF (Wu et al., AAAI 2021, Eqs. 7-12) and SSF (Eqs. 11-15) back-propagate once through the
equivalent rate network: one (B, ...) gradient per layer, then dL/dI[t] = dL/dFO dFO/dFI for
every t (SSF Eq. 15).  Their backward is (almost) independent of T, and they keep running flow
sums instead of T steps -- the point of SSF's Fig. 1.  The forward pass is the same spiking
network for all three: it runs T steps for every method.

The measurement uses the library's benchmark (``python -m pysnn_ref.bench``), called as
functions: ``bench.make_parser()`` for its options, ``bench_measure.run_benchmark`` for the
sweep (one ``Runner`` per method and T, timed by ``time_steps``: interleaved rounds, medians;
peak memory of one step by ``tracemalloc``, above what was live before it).

This chapter times one training step of the benchmark's small MLP for several T, plots the
backward and forward times and the peak memory against T (``tutorials/out/11_cost_vs_T.png``),
prints how much each method's backward time grows from the smallest to the largest T, and
checks that the flow methods' peak memory grows less than BPTT's. Timings come from a shared
CPU and move with its load, so they are reported, not asserted (a busy moment can slow one
short step several times over); memory is counted in bytes and is asserted.

Run:  python tutorials/11_cost_vs_T.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from threadpoolctl import threadpool_limits

from pysnn_ref.bench.__main__ import make_parser
from pysnn_ref.bench.measure import default_input_shape, run_benchmark

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", Path(__file__).resolve().parent / "out"))
COLORS = {"bptt": "C0", "asf": "C1", "ssf": "C2"}
TS = [2, 8] if QUICK else [4, 8, 16, 32]   # quick: 2 -> 8, a margin above timing noise
REPEATS = 5 if QUICK else 7


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    args = make_parser().parse_args(["--model", "mlp", "--batch-size", "128",
                                     "--repeats", str(REPEATS), "--warmup", "2"])
    args.methods, args.T = ["bptt", "asf", "ssf"], TS
    args.input_shape = default_input_shape("mlp")
    print(f"Benchmark MLP, input {args.input_shape}, batch {args.batch_size}, {args.dtype}, "
          f"T in {TS}, median of {REPEATS} steps\n(SSF Fig. 1: BPTT, SSF Eqs. 8-10, vs the flows, "
          f"ASF Eqs. 7-12 and SSF Eqs. 11-15)")
    records = run_benchmark(args, log=lambda s: None)
    t = {(r["method"], r["T"]): r for r in records}
    print(f"   {'T':>3s}" + "".join(f"{m + ' fwd':>11s}{m + ' bwd':>11s}" for m in COLORS))
    for T in TS:
        print(f"   {T:3d}" + "".join(f"{t[m, T]['forward_s'] * 1e3:9.2f}ms"
                                     f"{t[m, T]['backward_s'] * 1e3:9.2f}ms" for m in COLORS))

    # Times depend on what else the machine runs, so they are printed, not asserted: a busy
    # machine can make one T=4 step slow and the ratio meaningless. Memory (tracemalloc counts
    # bytes, not seconds) is what this chapter verifies.
    print(f"\nMeasured: backward time growth from T={TS[0]} to T={TS[-1]} (T grew "
          f"x{TS[-1] / TS[0]:g}; reported, not asserted: timings move with the machine's load)")
    growth = {m: t[m, TS[-1]]["backward_s"] / t[m, TS[0]]["backward_s"] for m in COLORS}
    for m, g in growth.items():
        print(f"   {m:4s}: x{g:.2f}  (backward speed-up vs BPTT at T={TS[-1]}: "
              f"x{t['bptt', TS[-1]]['backward_s'] / t[m, TS[-1]]['backward_s']:.2f})")
    print(f"\nVerification: the flows' memory grows less than BPTT's from T={TS[0]} to "
          f"T={TS[-1]}")

    mem = {m: t[m, TS[-1]]["peak_mem_bytes"] / t[m, TS[0]]["peak_mem_bytes"] for m in COLORS}
    print(f"   peak memory of a step (tracemalloc), T={TS[0]} -> T={TS[-1]}: " + ", ".join(
        f"{m} {t[m, TS[0]]['peak_mem_bytes'] / 2**20:.1f} -> "
        f"{t[m, TS[-1]]['peak_mem_bytes'] / 2**20:.1f} MiB (x{mem[m]:.2f})" for m in COLORS))
    for m in ("asf", "ssf"):
        assert mem[m] < mem["bptt"], (m, mem)

    fig = Figure(figsize=(15, 4.5), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, key, name in ((axes[0], "backward_s", "backward"), (axes[1], "forward_s", "forward")):
        for m, c in COLORS.items():
            ax.loglog(TS, [t[m, T][key] * 1e3 for T in TS], "o-", color=c, label=m)
        ax.set_xticks(TS, [str(T) for T in TS])
        ax.minorticks_off()
        ax.set_xlabel("time steps T")
        ax.set_ylabel(f"{name} time per step (ms)")
        ax.set_title(f"{name} pass, MLP batch {args.batch_size} (cf. SSF Fig. 1)")
        ax.legend(fontsize=8)
    for m, c in COLORS.items():
        axes[2].loglog(TS, [t[m, T]["peak_mem_bytes"] / 2**20 for T in TS], "o-", color=c,
                       label=m)
    axes[2].set_xticks(TS, [str(T) for T in TS])
    axes[2].minorticks_off()
    axes[2].set_xlabel("time steps T")
    axes[2].set_ylabel("peak memory of a step (MiB)")
    axes[2].set_title("memory: BPTT keeps T steps, flows keep sums")
    axes[2].legend(fontsize=8)
    path = OUT / "11_cost_vs_T.png"
    fig.savefig(path, dpi=90)
    print(f"\nFigure: {path}")
    print("Chapter 11 done: " + ", ".join(f"{m} backward x{np.round(g, 2)}"
                                            for m, g in growth.items()) + " over T; memory "
          + ", ".join(f"{m} x{g:.2f}" for m, g in mem.items()) + ".")


if __name__ == "__main__":
    with threadpool_limits(limits=1, user_api="blas"):
        main()

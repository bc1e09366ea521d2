"""A/B of one lever in one process: nn.LIF's firing rate by ``o.mean()`` (before) or from the
LIF kernel's own spike count (after, ``kernels.cpu.lif_forward_count``).

    python benchmarks/ab_lif_rate.py [--steps 40]               # NUMBA_NUM_THREADS=1/2 to vary

The same ``bench.measure.Runner`` (MLP 784-800-10, bptt, batch 64) alternates the two in
successive steps (the order flipping every round), for direct and Poisson input at T = 4, 20,
80, and prints the medians, minima and their ratios.  Behind docs/benchmarks.md, "Issue 28".
"""

from __future__ import annotations

import argparse
import os
import statistics

import pysnn_ref.nn.neurons as NN
from pysnn_ref.bench import __main__ as bench
from pysnn_ref.bench.measure import Runner
from pysnn_ref.functional.neuron import lif_forward_p

AFTER = NN.lif_forward_rate_p


def before(I, p):
    """The rate as it was: a second pass over the spikes."""
    o, cache = lif_forward_p(I, p)
    return o, cache, o.mean()


def ab(encoder: str, T: int, steps: int) -> dict[str, list[float]]:
    """Whole-step seconds of each variant, ``steps`` each, alternating."""
    b = bench.make_parser().parse_args(["--model", "mlp", "--methods", "bptt", "--T", str(T),
                                        "--batch-size", "64", "--encoder", encoder])
    bench._validate(b)
    r = Runner(b, "bptt", T)
    for _ in range(8):
        r.step()
    ts: dict[str, list[float]] = {"before": [], "after": []}
    for i in range(steps):
        for k in (("before", "after") if i % 2 else ("after", "before")):
            NN.lif_forward_rate_p = before if k == "before" else AFTER
            ts[k].append(r.step()[3])
    NN.lif_forward_rate_p = AFTER
    return ts


def main() -> int:
    """Run the A/B for both encoders and T = 4, 20, 80; print one line each."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    for enc in ("direct", "poisson"):
        for T in (4, 20, 80):
            ts = ab(enc, T, args.steps)
            mb, ma = statistics.median(ts["before"]), statistics.median(ts["after"])
            nb, na = min(ts["before"]), min(ts["after"])
            print(f"{enc:8s} T={T:3d} threads={os.environ.get('NUMBA_NUM_THREADS', 'all')}: "
                  f"before med {mb * 1e3:8.2f} min {nb * 1e3:8.2f} | after med {ma * 1e3:8.2f} "
                  f"min {na * 1e3:8.2f} ms | after/before med {ma / mb:.3f} min {na / nb:.3f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

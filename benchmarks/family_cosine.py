"""Gradient quality of all seven training methods across T: cosine with BPTT's gradient and with
the finite-difference gradient (FDG) of the true spiking loss (Dspike, Li et al., NeurIPS 2021,
Sec. 4.2, Eq. 10).

One float64 MLP 64-H-H-10 of LIF neurons (lam = 0.5, hard reset) on the first B built-in digits,
direct encoding, TET loss (the online methods need a per-step loss); the FDG perturbs every
weight of the listed matrices by +-eps.  Prints one table per reference; nothing is asserted
(the tests check each method's gradient; this script measures).  Usage::

    python benchmarks/family_cosine.py [--T 2,4,8,16] [--hidden 32] [--batch 256] [--eps 0.1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pysnn_ref import data
from pysnn_ref.gradcheck import cosine_vs, finite_difference_gradient
from pysnn_ref.models import lif_mlp

METHODS = ("bptt", "asf", "ssf", "dsr", "rate", "ottt", "sltt")
PARAMS = ["1.W", "3.W"]


def measure(T: int, hidden: int, batch: int, eps: float) -> dict[str, dict[str, dict]]:
    """{"bptt" | "fdg": {method: {param: cosine}}} at T steps."""
    ds = data.load_dataset("digits")
    x = ds.x_train[:batch].astype(np.float64)
    labels = ds.y_train[:batch]
    X = data.DirectEncoder().encode(x, T)
    net = lif_mlp((int(np.prod(x.shape[1:])), hidden, hidden, 10))
    fdg = finite_difference_gradient(net, X, labels, PARAMS, eps=eps, loss="tet")
    out: dict[str, dict[str, dict]] = {"bptt": {}, "fdg": {}}
    for m in METHODS:
        out["fdg"][m] = cosine_vs(net, m, X, labels, reference="fdg", params=PARAMS,
                                  reference_grads=fdg, loss="tet")
        out["bptt"][m] = cosine_vs(net, m, X, labels, reference="bptt", params=PARAMS,
                                   loss="tet")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", default="2,4,8,16", help="comma list of time steps")
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--eps", type=float, default=0.1, help="FDG step (Dspike Eq. 10)")
    a = p.parse_args()
    Ts = [int(t) for t in a.T.split(",")]
    t0 = time.perf_counter()
    res = {T: measure(T, a.hidden, a.batch, a.eps) for T in Ts}
    print(f"MLP 64-{a.hidden}-{a.hidden}-10 float64, {a.batch} digits, direct input, TET loss, "
          f"FDG eps={a.eps}; {time.perf_counter() - t0:.0f} s")
    for ref in ("bptt", "fdg"):
        for prm in PARAMS:
            print(f"\ncosine with {ref.upper()} of {prm}")
            print("| method | " + " | ".join(f"T={T}" for T in Ts) + " |")
            print("|---|" + "---:|" * len(Ts))
            for m in METHODS:
                print(f"| {m} | " + " | ".join(f"{res[T][ref][m][prm]:.3f}" for T in Ts) + " |")


if __name__ == "__main__":
    main()

"""
Chapter 19 -- What does a spike cost?  Synaptic operations (SOPs) and the energy estimate
=========================================================================================

The papers' energy model (Dspike, Li et al., NeurIPS 2021, Sec. 5.4; TET, Deng et al., ICLR 2022,
Sec. 5; after Rathi & Roy 2020), 45 nm CMOS:

* an ANN does one multiply-accumulate (MAC, 4.6 pJ) per weight use, once per sample;
* an SNN's spikes are 0/1, so a weight layer fed by spikes only ACCUMULATES (AC, 0.9 pJ): one
  synaptic operation per spike and per target, SOPs = sum over spikes of the spike's fan-out;
* the first layer of an SNN fed with analog (direct-encoded) input does MACs: "the FLOPs of the
  first layer scaled by T" (Dspike Sec. 5.4).

``pysnn_ref.energy.estimate_energy(net, x, T, encoder)`` counts these from a real forward pass:
it wraps every Linear/Conv2d layer's forward for one call to record how many of its inputs are
non-zero, multiplies by the exact fan-out, and converts to pJ.

This chapter trains the library's default MLP (64-800-10, LIF, T = 4) on the digits for a few
epochs through ``trainer.train``, then

1. prints the per-layer table of ``estimate_energy`` and recounts it by hand from the spikes of
   the hidden layer (verification: the same numbers, exactly);
2. measures the SNN energy against T, for direct and Poisson input, against the ANN with the
   same weights (figure ``tutorials/out/19_energy.png``).  The lesson of the measurement: with
   direct encoding, the analog first layer's T x MACs dominate a shallow MLP and the SNN costs
   MORE than the ANN; spike input (Poisson, event cameras: chapter 20) turns those MACs into
   far fewer accumulates.

Run:  python tutorials/19_energy.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""


from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from pysnn_ref import data, nn
from pysnn_ref.energy import E_AC_PJ, E_MAC_PJ, estimate_energy, format_table
from pysnn_ref.train.__main__ import build_parser, explicit_args, resolve_config
from pysnn_ref.train.checkpoint import load
from pysnn_ref.train.loop import train

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))
T = 4
EPOCHS = 2 if QUICK else 6
TS = (1, 2, 4, 8) if QUICK else (1, 2, 4, 6, 8, 12, 16)
BATCH = 256


# One BLAS thread: the matrices here are small, and several threads fight over a
# few cores (the training CLI does the same, ``--blas-threads 1``).
threadpool_limits(limits=1, user_api="blas")


# %%
# 1. A trained network
# --------------------
# ``train_default`` is ``python -m pysnn_ref.train --T 4 --epochs E`` (the default MLP on the
# digits) as a function call; the trained network is reloaded from its run folder.


def trained_mlp(tmp: Path) -> tuple[nn.Module, float]:
    argv = ["--T", str(T), "--epochs", str(EPOCHS), "--no-progress", "--no-plots",
            "--out", str(tmp / "run")]
    summary = train(resolve_config(build_parser().parse_args(argv), explicit_args(argv)),
                    log=lambda s: None)
    net, _ = load(summary["run_dir"], checkpoint="last")
    return net, summary["test_acc"]


OUT.mkdir(parents=True, exist_ok=True)
with tempfile.TemporaryDirectory() as tmp:
    net, acc = trained_mlp(Path(tmp))


# %%
# 2. The energy estimate, and the same counts by hand
# ---------------------------------------------------
# ``count_by_hand`` runs the forward layer by layer: the MACs of the first Linear (analog
# input), the SOPs (accumulates) of the others from the spikes that reach them.


def count_by_hand(net: nn.Sequential, x: np.ndarray) -> dict[str, float]:
    h = data.DirectEncoder().encode(x, T)
    macs = sops = ann = 0.0
    first = True
    for layer in net.layers:
        if isinstance(layer, nn.Linear):
            n_in, n_out = layer.W.data.shape[1], layer.W.data.shape[0]
            ann += n_in * n_out                               # ANN: every weight once
            if first:
                macs += T * n_in * n_out                      # analog input, all T steps
            else:
                spikes = np.asarray(h).reshape(T, len(x), n_in)
                assert set(np.unique(spikes)) <= {0.0, 1.0}   # spikes: accumulate, no multiply
                sops += spikes.sum() * n_out / len(x)         # each spike reaches n_out targets
            first = False
        h = layer.forward(h)
    return {"macs": macs, "sops": sops, "ann_macs": ann,
            "energy_pj": E_MAC_PJ * macs + E_AC_PJ * sops, "ann_energy_pj": E_MAC_PJ * ann}


x = data.load_dataset("digits").x_test[:BATCH].astype(np.float32)
print(f"Default MLP trained {EPOCHS} epochs at T={T} (BPTT, direct input): test_acc {acc:.4f}")
print(f"Energy per sample on {BATCH} test digits ({E_MAC_PJ} pJ/MAC, {E_AC_PJ} pJ/AC, Dspike "
      "Sec. 5.4):\n")
rep = estimate_energy(net, x, T)
print(format_table(rep))
print("\nVerification: the same counts by hand (first layer T x 64 x 800 MACs; second layer"
      " = hidden spikes x 10)")
net.eval()
hand = count_by_hand(net, x)


# %%
# 3. Energy against T, direct and Poisson input
# ---------------------------------------------
# The ANN with the same weights does one pass of MACs; the SNN pays per step.


lib = {"macs": rep.macs, "sops": rep.sops, "ann_macs": rep.ann_macs,
       "energy_pj": rep.energy_pj, "ann_energy_pj": rep.ann_energy_pj}
for k in hand:
    print(f"   {k:14s} library {lib[k]:14.6g}   by hand {hand[k]:14.6g}")
    assert abs(lib[k] - hand[k]) <= 1e-9 * max(1.0, abs(hand[k])), (k, lib[k], hand[k])
rate = rep.layers[1].input_rate
print(f"   hidden firing rate {rate:.4f} -> {rep.sops:.4g} SOPs = {rate:.4f} x {T} x 800 x 10")
print("\nSNN energy vs T (uJ per sample; the ANN with the same weights: "
      f"{rep.ann_energy_pj / 1e6:.4f} uJ)")
enc = {"direct": data.DirectEncoder(), "poisson": data.PoissonEncoder(0)}
sweep = {name: [estimate_energy(net, x, t, e) for t in TS] for name, e in enc.items()}
print("    T " + "".join(f"{n + ' uJ':>13s}{n + ' ANN/SNN':>17s}" for n in enc))
for i, t in enumerate(TS):
    print(f"   {t:2d} " + "".join(f"{sweep[n][i].energy_pj / 1e6:13.4f}"
                                 f"{sweep[n][i].ratio:17.3f}" for n in enc))
d, p = sweep["direct"], sweep["poisson"]
# direct: linear in T (first-layer MACs x T plus spikes that grow with T)
assert all(b.energy_pj > a.energy_pj for a, b in zip(d[:-1], d[1:], strict=True)), \
    "direct-input energy grows with T"
assert all(b.macs == 0 and b.sops > 0 for b in p), "Poisson input: accumulates only"
assert all(pp.energy_pj < dd.energy_pj for pp, dd in zip(p, d, strict=True))
print(f"   direct input: ANN/SNN {d[0].ratio:.2f} at T=1 falling to {d[-1].ratio:.2f} at "
      f"T={TS[-1]} (the analog first layer dominates);")
print(f"   Poisson input: no MACs, ANN/SNN {p[0].ratio:.2f} at T=1, {p[-1].ratio:.2f} at "
      f"T={TS[-1]}")
fig = plt.figure(figsize=(12, 4.5), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
for name, reps, c in (("SNN, direct input", d, "C0"), ("SNN, Poisson input", p, "C1")):
    ax1.plot(TS, [r.energy_pj / 1e6 for r in reps], "o-", color=c, label=name)
ax1.axhline(rep.ann_energy_pj / 1e6, color="k", ls="--", label="ANN (same weights)")
ax1.set_xlabel("time steps T")
ax1.set_ylabel("energy per sample (uJ, 45 nm)")
ax1.set_title("SNN energy vs T (Dspike Sec. 5.4 model)")
ax1.legend(fontsize=8)
names = [f"layer {i}\n({r.kind})" for i, r in enumerate(rep.layers)]
xs = np.arange(len(names))
ax2.bar(xs - 0.2, [r.energy_pj / 1e6 for r in rep.layers], 0.4, label=f"SNN T={T}")
ax2.bar(xs + 0.2, [r.ann_energy_pj / 1e6 for r in rep.layers], 0.4, label="ANN")
ax2.set_xticks(xs, names)
ax2.set_yscale("log")
ax2.set_xlabel("weight layer (kind)")
ax2.set_ylabel("energy per sample (uJ, log)")
ax2.set_title(f"per weight layer, direct input, T={T}")
ax2.legend(fontsize=8)
path = OUT / "19_energy.png"
fig.savefig(path, dpi=90)
print(f"\nFigure: {path}")
print(f"Chapter 19 done: {rep.summary_line()}")

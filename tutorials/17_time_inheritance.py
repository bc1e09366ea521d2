"""
Chapter 17 -- Time inheritance training (TIT): train short, then fine-tune long
===============================================================================

Training time grows linearly with the number of time steps T (chapter 16).  TET (Deng et al.,
ICLR 2022, Sec. 4.3) proposes time inheritance training: train for many epochs with a short
simulation (T = 2), then raise T to the target (T = 6) and fine-tune for a few epochs.  In TET's
accounting, with t_s the cost of one epoch at T = 1, 300 epochs from scratch at T = 6 cost
1800 t_s, while 300 epochs at T = 2 plus 50 at T = 6 cost 900 t_s: half.  Dspike (Li et al.,
NeurIPS 2021, Sec. 4.4) runs the same pipeline the other way round (T = 6 down to 2).

Why can the weights be inherited at all?  The network is the same for every T -- only the
length of the simulation changes -- and the LIF recurrence (SSF Eqs. 4-7) is causal: the first
k outputs of a run with T > k are exactly the outputs of a run with T = k (Dspike Sec. 4.4: "the
initialized model has exactly the same output as the former model in the first 10 time steps").
The TET loss (TET Eqs. 9, 12) trains every step's output, so the net trained at T = 2 already
classifies at every later step.

The library runs TIT with ``python -m pysnn_ref.train --tit 2:30,6:10`` (stages T:EPOCHS; the
learning-rate schedule restarts per stage, ``--tit-lr`` for the later stages).  This chapter calls
the same training loop from Python (``train.resolve_config`` + ``trainer.train``), and:

1. checks the causality fact: the first 2 steps at T = 6 are the T = 2 run -- every spike
   exactly, the readout to float32 rounding (its GEMM sums over T*B rows in a BLAS blocking
   order that may depend on the number of rows);
2. trains TIT (T = 2 then T = 6) and T = 6 from scratch with the same number of epochs, and
   compares their cost and test accuracy (figure: ``tutorials/out/17_time_inheritance.png``).
   TIT must cost less in TET's count of T x epochs -- read from the T of every epoch the two
   runs record -- and reach about the same accuracy.  The measured training time is printed
   beside it as a measured figure, not asserted: it is wall-clock time, which other load on
   the machine can reorder, and in quick mode the per-epoch overhead that does not scale
   with T (evaluation, data, Python) is a large part of it.

Run:  python tutorials/17_time_inheritance.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""


from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from pysnn_ref import data, nn
from pysnn_ref.methods import make_method
from pysnn_ref.train.__main__ import build_parser, explicit_args, resolve_config
from pysnn_ref.train.checkpoint import load
from pysnn_ref.train.loop import train

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))
T_SHORT, T_LONG = 2, 6
E_SHORT, E_LONG = (4, 1) if QUICK else (12, 3)       # TIT stages: epochs at T_SHORT, at T_LONG
COMMON = ["--loss", "tet", "--no-progress", "--no-plots", "--seed", "0"]


# One BLAS thread: the matrices here are small, and several threads fight over a
# few cores (the training CLI does the same, ``--blas-threads 1``).
threadpool_limits(limits=1, user_api="blas")


# %%
# 1. Two training runs through the library's own loop, and the causality check
# -----------------------------------------------------------------------------
# ``run`` is ``python -m pysnn_ref.train ARGV`` as a function call (the CLI's parser and
# ``resolve_config``, then ``train.loop.train``); it returns the run's summary.  One run trains
# with time inheritance (``--tit 2:E1,6:E2``), one at T = 6 from scratch for as many epochs.
# ``check_causality`` then reloads the TIT run's network and checks that its first T_SHORT steps
# are the same whether it runs T_SHORT or T_LONG steps: every spiking layer's spikes exactly, the
# float32 readout to rounding.

def run(argv: list[str], out: Path) -> dict[str, Any]:
    argv = [*argv, *COMMON, "--out", str(out)]
    cfg = resolve_config(build_parser().parse_args(argv), explicit_args(argv))
    return train(cfg, log=lambda s: None)


def check_causality(run_dir: str) -> float:
    net, _ = load(run_dir, checkpoint="last")
    ds = data.load_dataset("digits")
    x, labels = ds.x_test[:128].astype(np.float32), ds.y_test[:128]
    enc = data.DirectEncoder()
    bptt = make_method("bptt")
    y_short = np.asarray(bptt.forward(net, x, T_SHORT, enc))
    y_long = np.asarray(bptt.forward(net, x, T_LONG, enc))
    diff = float(np.abs(y_long[:T_SHORT] - y_short).max())
    scale = float(np.abs(y_short).max())
    print(f"   trained net, 128 test digits: output shape {y_short.shape} at T={T_SHORT}, "
          f"{y_long.shape} at T={T_LONG}")
    # layer by layer (what bptt.forward does): the spikes are 0/1, so causality is exact there
    h_s, h_l, n_spiking = enc.encode(x, T_SHORT), enc.encode(x, T_LONG), 0
    net.eval()
    for layer in net.layers:
        h_s, h_l = layer.forward(h_s), layer.forward(h_l)
        if isinstance(layer, nn.LIF):
            assert np.array_equal(np.asarray(h_l)[:T_SHORT], np.asarray(h_s)), layer
            n_spiking += 1
    print(f"   spikes of all {n_spiking} spiking layer(s) in the first {T_SHORT} steps: identical")
    print(f"   readout: max |y_T{T_LONG}[:{T_SHORT}] - y_T{T_SHORT}| = {diff:.1e} "
          f"(of max |y| = {scale:.1f}: float32 rounding of the GEMM)")
    assert n_spiking >= 1 and diff <= 1e-6 * scale, (diff, scale)
    acc = [(y_long[: t + 1].mean(0).argmax(1) == labels).mean() for t in range(T_LONG)]
    print("   accuracy of the mean output over the first t steps: "
          + ", ".join(f"t={t + 1}: {a:.3f}" for t, a in enumerate(acc)))
    return diff


OUT.mkdir(parents=True, exist_ok=True)
E = E_SHORT + E_LONG
print(f"Digits MLP, TET loss (TET Eqs. 9, 12), BPTT, Adam; TIT --tit {T_SHORT}:{E_SHORT},"
      f"{T_LONG}:{E_LONG} vs T={T_LONG} from scratch for {E} epochs (TET Sec. 4.3)")
with tempfile.TemporaryDirectory() as tmp:
    # a 2-batch warm-up run compiles the Numba kernels, so that no epoch below times them
    run(["--tit", f"{T_SHORT}:1,{T_LONG}:1", "--max-batches", "2", "--max-eval-batches", "1"],
        Path(tmp) / "warmup")
    tit = run(["--tit", f"{T_SHORT}:{E_SHORT},{T_LONG}:{E_LONG}"], Path(tmp) / "tit")
    scratch = run(["--T", str(T_LONG), "--epochs", str(E)], Path(tmp) / "scratch")
    print("\nVerification 1: causality -- the first steps do not depend on T (Dspike Sec. "
          "4.4)")
    check_causality(tit["run_dir"])


# %%
# 2. What each run cost, and what it reached
# ------------------------------------------
# TET counts the cost of a schedule as the sum over epochs of the T trained at; the wall-clock
# times below are this run's, printed, not asserted.


def cumulative(history: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.cumsum([h[key] for h in history])


h_tit, h_scr = tit["history"], scratch["history"]
t_tit, t_scr = cumulative(h_tit, "epoch_s")[-1], cumulative(h_scr, "epoch_s")[-1]


# TET's cost count, from what the runs did: the sum over epochs of the T they trained at
units_tit, units_scr = sum(h["T"] for h in h_tit), sum(h["T"] for h in h_scr)
assert units_tit == T_SHORT * E_SHORT + T_LONG * E_LONG and units_scr == T_LONG * E
print("\n   epoch  T   TIT test_acc  epoch_s |  T   scratch test_acc  epoch_s")
for a, b in zip(h_tit, h_scr, strict=True):
    print(f"   {a['epoch']:5d} {a['T']:2d}   {a['test_acc']:11.4f} {a['epoch_s']:8.3f} | "
          f"{b['T']:2d}   {b['test_acc']:15.4f} {b['epoch_s']:8.3f}")
print(f"\nVerification 2: cost in TET's count of T x epochs (from the runs' histories): "
      f"TIT {units_tit} vs scratch {units_scr} (x{units_tit / units_scr:.2f})")
print(f"   measured training time (wall clock, printed, not asserted): TIT {t_tit:.2f} s vs "
      f"scratch {t_scr:.2f} s (x{t_tit / t_scr:.2f})")
print(f"   final test accuracy at T={T_LONG}: TIT {tit['test_acc']:.4f}, scratch "
      f"{scratch['test_acc']:.4f}")
assert units_tit < units_scr, (units_tit, units_scr)
# digits are easy: both reach ~0.95; TIT should not lose more than a few test samples' worth
assert tit["test_acc"] > scratch["test_acc"] - 0.05, (tit["test_acc"], scratch["test_acc"])


# %%
# 3. The figure
# -------------

fig = plt.figure(figsize=(11, 4.5), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
for h, name, c in ((h_tit, f"TIT {T_SHORT}->{T_LONG}", "C3"), (h_scr, f"T={T_LONG}", "C0")):
    ax1.plot(cumulative(h, "epoch_s"), [r["test_acc"] for r in h], "o-", color=c, label=name)
    ax2.bar(np.arange(1, E + 1) + (0.2 if c == "C0" else -0.2), [r["epoch_s"] for r in h],
            width=0.4, color=c, label=name)
ax1.set_xlabel("cumulative training time (s)")
ax1.set_ylabel("test accuracy")
ax1.set_title("test accuracy vs training time (TET Sec. 4.3)")
ax1.legend(fontsize=8)
ax2.set_xlabel("epoch")
ax2.set_ylabel("epoch time (s)")
ax2.set_title("time per epoch: T sets the cost")
ax2.legend(fontsize=8)
path = OUT / "17_time_inheritance.png"
fig.savefig(path, dpi=90)
print(f"\nFigure: {path}")
print(f"Chapter 17 done: TIT costs x{units_tit / units_scr:.2f} of training from scratch in "
      f"T x epochs; measured here: x{t_tit / t_scr:.2f} of the time.")

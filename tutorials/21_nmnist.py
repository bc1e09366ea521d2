"""
Chapter 21 -- N-MNIST end to end: files, events, frames, a trained SNN
======================================================================

N-MNIST (Orchard, Jayawant, Cohen & Thakor, "Converting Static Image Datasets to Spiking
Neuromorphic Datasets Using Saccades", Frontiers in Neuroscience 2015) is MNIST seen by an event
camera (an ATIS sensor) that moves over each digit in three saccades: 60,000 training and 10,000
test recordings, one ``.bin`` file each, 5 bytes per event (x, y, polarity, 23-bit time stamp
in microseconds), on a 34x34 pixel crop.  TET (Deng et al., ICLR 2022, Sec. 5) and Dspike (Li et
al., NeurIPS 2021, Sec. 5) train on event data of this kind by summing the events into T frames,
one channel per polarity.  Chapter 20 built the tools on a simulated camera; this chapter runs
the whole pipeline on the real files when they are there:

1. find the data: ``python -m pysnn_ref.train --dataset nmnist --download --data-dir DIR`` (or
   ``pysnn_ref.data.download("nmnist", DIR)``) unpacks ``DIR/Train/<digit>/*.bin`` and
   ``DIR/Test/<digit>/*.bin``; the training CLI's default ``DIR`` is ``./data``.  The chapter
   looks in ``$PYSNN_DATA`` when that is set, else in ``./data``, and never downloads;
2. read a subset of the recordings (``data.events.read_nmnist_bin``), look at one (events over
   time, ``frames_by_time``), and check what the library's loader makes of the same files
   (``load_dataset("nmnist")`` = our own framing, file by file);
3. train a small SNN on the subset through the library's training loop (``train.loop.train`` with
   the CLI's ``--dataset nmnist --encoder events``) and report the test accuracy.

Without the real data -- and always in quick mode -- the same pipeline runs on synthetic
recordings: the sklearn 8x8 digits moved along three saccades in front of a simulated event
camera (the one of chapter 20), written in the N-MNIST ``.bin`` format by
``data.events.write_nmnist_bin``; one line says so.

Run:  python tutorials/21_nmnist.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""

# %%
# Setup
# -----

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from pysnn_ref import data
from pysnn_ref.data.events import (
    DEFAULT_FRAMES,
    NMNIST_SIZE,
    Events,
    frames_by_time,
    read_nmnist_bin,
    write_nmnist_bin,
)
from pysnn_ref.train.__main__ import build_parser, explicit_args, resolve_config
from pysnn_ref.train.loop import train

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))
OUT.mkdir(parents=True, exist_ok=True)
threadpool_limits(limits=1, user_api="blas")
T = 4                                          # frames the network sees (divides the 20 kept)
N_TRAIN, N_TEST = (12, 4) if QUICK else (60, 20)     # recordings per class
EPOCHS = 3 if QUICK else 6
WORK = Path(tempfile.mkdtemp(prefix="pysnn_nmnist_"))

# %%
# 1. Where the data is
# --------------------
# The downloader's layout: ``root/Train/<digit>/*.bin`` and ``root/Test/<digit>/*.bin``.


def find_nmnist() -> tuple[Path, bool]:
    """(root, found): $PYSNN_DATA or ./data, and whether both splits hold .bin files."""
    root = Path(os.environ.get("PYSNN_DATA", "data")).expanduser()
    found = all(any((root / split).glob("[0-9]/*.bin")) for split in ("Train", "Test"))
    return root, found


root, found = find_nmnist()
REAL = found and not QUICK
if REAL:
    print(f"1. Real N-MNIST found at {root.resolve()}")
else:
    print(f"1. real N-MNIST not found at {root.resolve()}; download with `python -m "
          f"pysnn_ref.train --dataset nmnist --download --data-dir {root}`; using synthetic events"
          + (" (quick mode always does)" if QUICK and found else ""))

# %%
# 2. The recordings: real files, or synthetic ones written in the same format
# ---------------------------------------------------------------------------
# Real: copy the first N recordings of every class of each split into a work folder (the loader
# reads a whole folder, and 70,000 files take minutes).  Synthetic: an 8x8 digit (scaled to
# 24x24) moves over the 34x34 sensor along a triangle of three saccades; a pixel whose log
# brightness changes by more than a contrast threshold between two positions emits an ON (p = 1)
# or OFF (p = 0) event at a random time within that 10 ms step.

CORNERS = np.array([(1, 1), (9, 5), (1, 9), (1, 1)], dtype=float)   # the saccade triangle
STEPS, DT_US = 30, 10_000


def simulate_dvs(img8: np.ndarray, rng: np.random.Generator, c: float = 0.15) -> Events:
    """Events of a simulated DVS watching ``img8`` (8x8 in [0, 1]) move along the saccades."""
    path = np.rint([CORNERS[i] + (CORNERS[i + 1] - CORNERS[i]) * s / (STEPS // 3)
                    for i in range(3) for s in range(STEPS // 3)] + [CORNERS[-1]]).astype(int)
    img, prev, parts = np.kron(img8, np.ones((3, 3))), None, []
    for step, (r, q) in enumerate(path):
        frame = np.full(NMNIST_SIZE, 0.05)
        frame[r:r + 24, q:q + 24] += img
        if prev is not None:
            d = np.log(frame) - np.log(prev)
            y, x = np.nonzero(np.abs(d) > c)
            parts.append((x, y, step * DT_US + rng.integers(0, DT_US, x.size), d[y, x] > 0))
        prev = frame
    x, y, t, p = (np.concatenate(a).astype(np.int64) for a in zip(*parts, strict=True))
    order = np.argsort(t, kind="stable")
    return Events(x=x[order], y=y[order], t=t[order], p=p[order])


def write_synthetic(folder: Path, rng: np.random.Generator) -> None:
    """Train/<d>/*.bin and Test/<d>/*.bin of simulated recordings of the sklearn digits."""
    ds = data.load_dataset("digits", normalize=False)
    imgs = np.concatenate([ds.x_train, ds.x_test])[:, 0]
    labels = np.concatenate([ds.y_train, ds.y_test])
    for d in range(10):
        idx = np.flatnonzero(labels == d)
        for split, sel in (("Train", idx[:N_TRAIN]), ("Test", idx[N_TRAIN:N_TRAIN + N_TEST])):
            (folder / split / str(d)).mkdir(parents=True, exist_ok=True)
            for i in sel:
                write_nmnist_bin(folder / split / str(d) / f"{i:05d}.bin",
                                 simulate_dvs(imgs[i] / imgs[i].max(), rng))


def copy_real_subset(root: Path, folder: Path) -> None:
    """The first N_TRAIN / N_TEST recordings (sorted by name) of every class of each split."""
    for split, n in (("Train", N_TRAIN), ("Test", N_TEST)):
        for d in range(10):
            (folder / split / str(d)).mkdir(parents=True, exist_ok=True)
            for f in sorted((root / split / str(d)).glob("*.bin"))[:n]:
                shutil.copyfile(f, folder / split / str(d) / f.name)


folder = WORK / "nmnist"
if REAL:
    copy_real_subset(root, folder)
else:
    write_synthetic(folder, np.random.default_rng(0))
files = sorted(folder.glob("*/*/*.bin"))
print(f"2. {len(files)} recordings ({N_TRAIN} train + {N_TEST} test per digit) in {folder}")

# %%
# 3. One recording: events, frames, and the loader
# ------------------------------------------------
# ``frames_by_time(ev, T)`` puts event k in bin floor((t_k - t_min) T / (t_max - t_min + 1)) and
# counts, per bin, polarity and pixel: every event lands in exactly one frame.  The library's
# loader keeps 20 such frames per recording (``DEFAULT_FRAMES``) and the ``events`` encoder sums
# 20 / T consecutive ones; we check both against our own framing of the same file.

sample = sorted((folder / "Train" / "3").glob("*.bin"))[0]
ev = read_nmnist_bin(sample)
fr = frames_by_time(ev, T)
print(f"3. {sample.name} (digit 3): {len(ev)} events, {int(ev.p.sum())} ON / "
      f"{int((ev.p == 0).sum())} OFF, {(ev.t.max() - ev.t.min()) / 1e3:.0f} ms, x in "
      f"[{ev.x.min()}, {ev.x.max()}], y in [{ev.y.min()}, {ev.y.max()}]")
print(f"   frames_by_time(ev, {T}): events per frame {fr.sum(axis=(1, 2, 3)).astype(int).tolist()}")
assert fr.sum() == len(ev) and fr[:, 1].sum() == ev.p.sum()
assert ev.t.min() >= 0 and ev.x.max() < NMNIST_SIZE[1] and ev.y.max() < NMNIST_SIZE[0]

ds = data.load_dataset("nmnist", data_dir=folder)
train_files = sorted(folder.glob("Train/*/*.bin"), key=lambda f: (int(f.parent.name), f.name))
mine = np.stack([frames_by_time(read_nmnist_bin(f), DEFAULT_FRAMES) for f in train_files])
same = np.array_equal(ds.x_train, mine)
summed = data.EventEncoder().encode(ds.x_train[:8], T)
same_T = np.array_equal(summed, np.moveaxis(
    np.stack([frames_by_time(read_nmnist_bin(f), T) for f in train_files[:8]]), 1, 0))
print(f"   load_dataset('nmnist'): x_train {ds.x_train.shape} = our frames_by_time(., "
      f"{DEFAULT_FRAMES}) of every file: {same}; EventEncoder at T = {T} = frames_by_time(., {T}): "
      f"{same_T}")
assert same and same_T

fig, ax = plt.subplots(1, T + 1, figsize=(13, 3.2), layout="constrained",
                       gridspec_kw=dict(width_ratios=[2.2] + [1] * T))
for p, c, name in ((1, "C3", "ON"), (0, "C0", "OFF")):
    m = ev.p == p
    ax[0].scatter(ev.t[m] / 1e3, ev.x[m], s=1, color=c, label=name)
ax[0].set_xlabel("time t (ms)")
ax[0].set_ylabel("pixel column x")
ax[0].set_title(f"{'real' if REAL else 'synthetic'} N-MNIST events, digit 3")
ax[0].legend(fontsize=8, markerscale=6)
lim = np.abs(fr[:, 1] - fr[:, 0]).max()
for k in range(T):
    ax[k + 1].imshow(fr[k, 1] - fr[k, 0], cmap="coolwarm", vmin=-lim, vmax=lim)
    ax[k + 1].set_title(f"frame {k}: ON - OFF", fontsize=9)
    ax[k + 1].set_xlabel("x")
    ax[k + 1].set_ylabel("y")
path = OUT / "21_nmnist_events.png"
fig.savefig(path, dpi=80)
print(f"   figure: {path}")

# %%
# 4. Training through the library's loop
# --------------------------------------
# The CLI's arguments, resolved as ``python -m pysnn_ref.train`` does, and ``train.loop.train``:
# the default MLP (2x34x34 -> 800 LIF -> 10), BPTT, T = 4 frames of summed events (the
# ``events`` encoder: the events are already spikes, so the first layer only accumulates).

argv = ["--dataset", "nmnist", "--data-dir", str(folder), "--encoder", "events", "--T", str(T),
        "--epochs", str(EPOCHS), "--batch-size", "16", "--no-progress", "--no-plots",
        "--out", str(WORK / "run")]
print(f"4. python -m pysnn_ref.train {' '.join(argv[:-2])} ...")
res = train(resolve_config(build_parser().parse_args(argv), explicit_args(argv)),
            log=lambda s: None)
for h in res["history"]:
    print(f"   epoch {h['epoch']}: loss {h['loss']:.4f}  test_acc {h['test_acc']:.4f}  "
          f"firing rate {h['firing_rate']:.3f}")
losses = [h["loss"] for h in res["history"]]
floor = 0.3 if QUICK else 0.5                      # chance is 0.1
assert res["test_acc"] >= floor and losses[-1] < losses[0], (res["test_acc"], losses)

fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
ep = [h["epoch"] for h in res["history"]]
ax.plot(ep, losses, "o-", label="train loss")
ax2 = ax.twinx()
ax2.plot(ep, [h["test_acc"] for h in res["history"]], "s--", color="C2", label="test accuracy")
ax.set_xlabel("epoch")
ax.set_ylabel("SDT loss (TET Eq. 7)")
ax2.set_ylabel("test accuracy")
ax.set_title(f"MLP on {'real' if REAL else 'synthetic'} N-MNIST subset, T = {T}")
ax.legend(loc="center left", fontsize=8)
ax2.legend(loc="center right", fontsize=8)
path = OUT / "21_nmnist_training.png"
fig.savefig(path, dpi=80)
print(f"   figure: {path}")
shutil.rmtree(WORK, ignore_errors=True)

# %%
# Verification
# ------------

print(f"\nVerification (asserted above): {'real' if REAL else 'synthetic'} N-MNIST files read "
      f"with read_nmnist_bin, frames_by_time conserves every event (TET Sec. 5 / Dspike Sec. 5 "
      f"framing);\n   load_dataset('nmnist') = our frames_by_time of every file, and the events "
      f"encoder at T = {T} = frames_by_time(., {T});\n   train.loop.train lowers the loss and "
      f"reaches test accuracy {res['test_acc']:.3f} >= {floor} (chance 0.1)")
print("Chapter 21 done.")

"""
Chapter 20 -- Neuromorphic event data: an event camera's (x, y, t, p), frames, a trained SNN
============================================================================================

An event camera (DVS) has no frames: each pixel reports an *event* (x, y, t, p) when its log
brightness changes by more than a contrast threshold, with polarity p = 1 (ON, brighter) or 0
(OFF, darker) and a microsecond time stamp.  N-MNIST (Orchard et al. 2015) was recorded by moving
such a sensor over the MNIST digits in three saccades; TET (Deng et al., ICLR 2022, Sec. 5) and
Dspike (Li et al., NeurIPS 2021, Sec. 5) train on neuromorphic data of this kind (DVS-CIFAR10,
N-Caltech101) by integrating the events into T frames, one channel per polarity: already 0/1-like
spike input, so no encoder is needed (chapter 3), and the first layer does accumulates only
(chapter 19).

``pysnn_ref.data.events`` does this: ``read_nmnist_bin`` / ``write_nmnist_bin`` (N-MNIST's 5-byte
records), ``frames_by_time(ev, T)`` (T equal time bins, k = floor((t - t_min) T / (t_max - t_min
+ 1))), ``frames_by_count(ev, T)`` (T bins of equal event count), ``load_event_folder`` (the
N-MNIST folder layout Train/<digit>/*.bin, Test/<digit>/*.bin), and ``--dataset nmnist
--encoder events`` trains on it.

Nothing is downloaded here: the chapter *simulates* an event camera.  A digit (8x8, scaled to
24x24) is moved over a 34x34 sensor along N-MNIST's three saccades; every pixel whose brightness
changes by more than a threshold between two positions fires an ON or OFF event at a jittered
time.  Then:

1. the events are written as an N-MNIST .bin file and read back (verification: identical);
2. they are framed by time and by count (figure ``tutorials/out/20_event_frames.png``), and
   the time binning nests: 20 frames summed 5 at a time are exactly the 4-frame result (what the
   ``events`` encoder relies on); frames conserve every event;
3. a folder of simulated digits 0, 1, 2 is trained through ``trainer.train``
   (``--dataset nmnist --encoder events``); the test accuracy must beat chance by far.

Run:  python tutorials/20_event_data.py      (PYSNN_TUTORIAL_QUICK=1 for a faster run)
"""


from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

from pysnn_ref import data
from pysnn_ref.data.events import (
    NMNIST_SIZE,
    Events,
    frames_by_count,
    frames_by_time,
    read_nmnist_bin,
    write_nmnist_bin,
)
from pysnn_ref.train.__main__ import build_parser, explicit_args, resolve_config
from pysnn_ref.train.loop import train

QUICK = os.environ.get("PYSNN_TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("PYSNN_TUTORIAL_OUT", "tutorials/out"))
CLASSES = (0, 1, 2)
N_TRAIN, N_TEST = (20, 10) if QUICK else (60, 30)       # files per class
EPOCHS = 3 if QUICK else 6
T = 4
STEPS = 30                                              # sensor positions (10 per saccade)
DT_US = 10_000                                          # 10 ms per position: 300 ms per sample
# the three saccades of N-MNIST (a triangle), as offsets of the 24x24 digit on the 34x34 sensor
CORNERS = np.array([(1, 1), (9, 5), (1, 9), (1, 1)], dtype=float)


def saccade_path() -> np.ndarray:
    """(STEPS + 1, 2) integer (row, col) offsets along the triangle."""
    pts = [CORNERS[i] + (CORNERS[i + 1] - CORNERS[i]) * s / (STEPS // 3)
           for i in range(3) for s in range(STEPS // 3)]
    return np.rint(np.array([*pts, CORNERS[-1]])).astype(int)


def simulate_dvs(img8: np.ndarray, rng: np.random.Generator, c: float = 0.15) -> Events:
    """Events of a DVS watching ``img8`` (8x8 in [0, 1]) move along the saccades."""
    img = np.kron(img8, np.ones((3, 3)))                 # 24x24
    H, W = NMNIST_SIZE
    prev = None
    xs, ys, ts, ps = [], [], [], []
    for step, (r, q) in enumerate(saccade_path()):
        frame = np.full((H, W), 0.05)
        frame[r:r + 24, q:q + 24] += img
        if prev is not None:
            d = np.log(frame) - np.log(prev)             # change of log brightness
            y, x = np.nonzero(np.abs(d) > c)
            xs.append(x)
            ys.append(y)
            ps.append((d[y, x] > 0).astype(np.int64))
            ts.append(step * DT_US + rng.integers(0, DT_US, x.size))
        prev = frame
    order = np.argsort(np.concatenate(ts), kind="stable")
    cat = [np.concatenate(a).astype(np.int64)[order] for a in (xs, ys, ts, ps)]
    return Events(x=cat[0], y=cat[1], t=cat[2], p=cat[3])


def digit_images() -> tuple[np.ndarray, np.ndarray]:
    ds = data.load_dataset("digits")
    x = np.concatenate([ds.x_train, ds.x_test])[:, 0]
    y = np.concatenate([ds.y_train, ds.y_test])
    lo, hi = x.min(axis=(1, 2), keepdims=True), x.max(axis=(1, 2), keepdims=True)
    return (x - lo) / (hi - lo), y


# One BLAS thread: the matrices here are small, and several threads fight over a
# few cores (the training CLI does the same, ``--blas-threads 1``).
threadpool_limits(limits=1, user_api="blas")


# %%
# 1. Simulated events, their file format and their frames
# -------------------------------------------------------
# ``check_files_and_frames`` checks the file round trip, that framing conserves every event,
# and that 20 time bins summed 5 by 5 give the 4-bin result.


def check_sample(ev: Events, tmp: Path) -> tuple[np.ndarray, np.ndarray]:
    path = tmp / "sample.bin"
    write_nmnist_bin(path, ev)
    back = read_nmnist_bin(path)
    same = all(np.array_equal(getattr(ev, k), getattr(back, k)) for k in "xytp")
    print(f"   {len(ev)} events -> {path.stat().st_size} bytes (5 per event) -> read back "
          f"identical: {same}")
    assert same and path.stat().st_size == 5 * len(ev)
    by_time, by_count = frames_by_time(back, T), frames_by_count(back, T)
    for name, fr in (("time", by_time), ("count", by_count)):
        per_pol = fr.sum(axis=(0, 2, 3))
        print(f"   frames by {name:5s} {fr.shape}: events per frame "
              f"{fr.sum(axis=(1, 2, 3)).astype(int).tolist()}, ON {int(per_pol[1])}, "
              f"OFF {int(per_pol[0])}")
        assert per_pol[1] == ev.p.sum() and per_pol[0] == (ev.p == 0).sum()
    fine = frames_by_time(back, 5 * T).reshape(T, 5, 2, *NMNIST_SIZE).sum(axis=1)
    print(f"   20 time frames summed 5 by 5 == the 4 time frames: "
          f"{bool(np.array_equal(fine, by_time))}")
    assert np.array_equal(fine, by_time)
    return by_time, by_count


def draw(ev: Events, by_time: np.ndarray, by_count: np.ndarray) -> Path:
    fig = plt.figure(figsize=(13, 6.2), layout="constrained")
    grid = fig.subplots(2, T + 1, width_ratios=[1.6] + [1] * T)
    gs = grid[0, 0].get_gridspec()
    for ax in grid[:, 0]:
        ax.remove()
    ax = fig.add_subplot(gs[:, 0])
    for p, c, name in ((1, "C3", "ON"), (0, "C0", "OFF")):
        m = ev.p == p
        ax.scatter(ev.t[m] / 1e3, ev.x[m], s=1, color=c, label=name)
    ax.set_xlabel("time t (ms)")
    ax.set_ylabel("pixel column x")
    ax.set_title("simulated DVS events of one digit")
    ax.legend(fontsize=8, markerscale=6)
    lim = max(by_time.max(), by_count.max())
    for row, (fr, name) in enumerate(((by_time, "by time"), (by_count, "by count"))):
        for k in range(T):
            a = grid[row, k + 1]
            im = a.imshow(fr[k, 1] - fr[k, 0], cmap="coolwarm", vmin=-lim, vmax=lim)
            a.set_title(f"{name}, frame {k}: {int(fr[k].sum())} ev", fontsize=9)
            a.set_xlabel("x")
            a.set_ylabel("y")
    fig.colorbar(im, ax=grid[:, 1:], shrink=0.6, label="ON - OFF events per pixel")
    fig.suptitle(f"events -> {T} frames (ON - OFF counts), N-MNIST-like 34x34 sensor")
    path = OUT / "20_event_frames.png"
    fig.savefig(path, dpi=80)
    return path


def write_folder(root: Path, rng: np.random.Generator) -> int:
    imgs, labels = digit_images()
    n = 0
    for d in CLASSES:
        idx = np.flatnonzero(labels == d)
        for split, sel in (("Train", idx[:N_TRAIN]), ("Test", idx[N_TRAIN:N_TRAIN + N_TEST])):
            (root / split / str(d)).mkdir(parents=True, exist_ok=True)
            for i in sel:
                write_nmnist_bin(root / split / str(d) / f"{i:05d}.bin", simulate_dvs(imgs[i], rng))
                n += 1
    return n


OUT.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
imgs, labels = digit_images()
ev = simulate_dvs(imgs[0], rng)
print(f"A digit {labels[0]} seen by a simulated DVS over {STEPS} positions x {DT_US // 1000} "
      f"ms along 3 saccades (N-MNIST-like; TET Sec. 5 and Dspike Sec. 5 train on DVS events "
      f"framed this way)")
with tempfile.TemporaryDirectory() as tmp:
    print("\nVerification 1-2: file round trip, frames conserve events, time bins nest")
    by_time, by_count = check_sample(ev, Path(tmp))
    path = draw(ev, by_time, by_count)
    n = write_folder(Path(tmp) / "nmnist", rng)
    print(f"\nA folder of {n} simulated N-MNIST files (classes {CLASSES}, {N_TRAIN} train / "
          f"{N_TEST} test each); train --dataset nmnist --encoder events --T {T}")
    argv = ["--dataset", "nmnist", "--data-dir", str(Path(tmp) / "nmnist"), "--encoder",
            "events", "--T", str(T), "--epochs", str(EPOCHS), "--batch-size", "16",
            "--no-progress", "--no-plots", "--out", str(Path(tmp) / "run")]
    res = train(resolve_config(build_parser().parse_args(argv), explicit_args(argv)),
                log=lambda s: None)


# %%
# 2. A spiking network trained on the events
# ------------------------------------------
# A folder of simulated digits 0-2 in N-MNIST's layout, trained through ``train.loop.train``
# (``--dataset nmnist --encoder events``).


for h in res["history"]:
    print(f"   epoch {h['epoch']}: loss {h['loss']:.4f}  test_acc {h['test_acc']:.4f}  "
          f"firing rate {h['firing_rate']:.3f}")
e = res["energy"]
print(f"   energy per sample: {e['macs']:.3g} MAC + {e['sops']:.3g} SOP (event input: "
      f"accumulates only, chapter 19)")
chance = 1 / len(CLASSES)
print(f"\nVerification 3: test accuracy {res['test_acc']:.4f} vs chance {chance:.3f}")
assert res["test_acc"] > chance + 0.3, res["test_acc"]
assert e["macs"] == 0
print(f"\nFigure: {path}")
print(f"Chapter 20 done: event frames exact, test_acc {res['test_acc']:.4f}.")

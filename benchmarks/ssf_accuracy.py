"""The accuracy side of SSF's Table 1 at a scale a CPU can run: each framework's original (BPTT
with surrogate gradients) and its SSF version (Stabilized Spiking Flow, ICCV 2023, Eqs 11-15),
trained with the same seed, data order, initial weights and budget; the gap in test accuracy
(the paper's claim: "on par").

Rows (:data:`pysnn_ref.bench.paper.TABLE1`: network, neuron, loss of each framework, imported):

* tdBN / ResNet-19 (CIFAR-10 shape 3x32x32): LIF lam = 0.25, V_th = 0.5, tdBN, SDT loss;
* TET / PreAct-ResNet-18 (3x32x32): LIF lam = 0.5, V_th = 1, TET loss;
* SEW / SEW-ResNet-34, ADD (Tiny-ImageNet shape 3x64x64, 10 classes here, not 200): IF, SDT;
* TET / VGG-11 on event frames (2 polarities, 34x34: the library's N-MNIST event path);
* TET-CE / VGG-11: the SSF version trained with the SDT loss, against TET's BPTT run (the same
  run as the row above, trained once).

Data: MNIST or Fashion-MNIST IDX files when ``--dataset mnist|fashion-mnist --data-dir DIR``
are given (the official split, the first ``--n-train`` / ``--n-test`` images), else
scikit-learn's embedded 8x8 digits (the library's stratified split: 1437 train, 360 test).
Static rows: each image is resized by nearest neighbour to the row's H x W (an 8x8 digit at
32x32: every pixel a 4x4 block) and copied to the C channels; the training set's per-channel
mean / std standardise both splits (the library's npz dataset); direct encoding (the image at
every step).  Event rows: each image (resized to 24x24) moves on a 16-step saccade
(4 steps down-right, 4 up-right, 8 left, one pixel each, as N-MNIST's sensor saccades); a pixel
whose intensity rises by more than 0.1 from one step to the next emits an ON event, falls: an
OFF event; the events are written as N-MNIST-layout files and read back by the library
(20 time bins, T must divide 20).

Each run is the library's loop (:func:`pysnn_ref.train.loop.setup_run` with the configuration
the ``python -m pysnn_ref.train`` flags resolve to, then :func:`~pysnn_ref.train.loop.run_epoch`
per epoch); only the network is replaced by the row's network at ``--width`` (the row's
neuron from paper.NEURONS) with a fresh optimizer on it.  Recorded per run: a digest of the
initial weights and a digest of the label sequence the loss saw in training (observed through
the loss function), so a pair can be checked to have started from the same weights and seen
the same data order.  Usage::

    python benchmarks/ssf_accuracy.py [--rows c10-tdbn,...] [--width 0.125] [--T 4]
        [--epochs 3] [--batch-size 32] [--data-dir DIR --dataset mnist] [--json out.json]
    python benchmarks/ssf_accuracy.py --quick      # seconds: the wiring, not an accuracy
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pysnn_ref.bench.paper import NEURONS, TABLE1, Row
from pysnn_ref.data import load_dataset
from pysnn_ref.data.events import Events, write_nmnist_bin
from pysnn_ref.models import count_parameters, make_model
from pysnn_ref.optim import make_optimizer
from pysnn_ref.train.__main__ import build_parser, explicit_args, resolve_config
from pysnn_ref.train.loop import run_epoch, setup_run, spiking_layer_names

#: the framework rows trained here (CIFAR-10 for the CIFAR rows: 10 classes like the data)
ROWS = ("c10-tdbn", "c10-tet", "tiny-sew", "dvs-tet", "dvs-tet-ce")
EVENT_SIZE = 34        #: the library's event frames (N-MNIST sensor), 2 x 34 x 34
EVENT_DIGIT = 24       #: the digit's size on the event sensor
SACCADE = [(1, 1)] * 4 + [(1, -1)] * 4 + [(-1, 0)] * 8   # (dx, dy) per step; back to start
EVENT_THRESHOLD = 0.1  #: intensity change that emits an event
QUICK = ["--width", "0.0625", "--T", "2", "--epochs", "1", "--batch-size", "16",
         "--n-train", "48", "--n-test", "32", "--image-size", "16"]


# ================================================================================================
# data
# ================================================================================================

def source_images(dataset: str, data_dir: str | None, n_train: int | None,
                  n_test: int | None) -> tuple[np.ndarray, ...]:
    """``(x_train, y_train, x_test, y_test)``, images ``(N, 1, h, w)`` in [0, 1]: the embedded
    digits (library split) or MNIST / Fashion-MNIST files; the first n of each split."""
    d = load_dataset(dataset, data_dir, normalize=False)
    return (d.x_train[:n_train], d.y_train[:n_train], d.x_test[:n_test], d.y_test[:n_test])


def resize_nearest(x: np.ndarray, size: int) -> np.ndarray:
    """``(N, C, h, w)`` -> ``(N, C, size, size)`` by nearest neighbour (pixel ``i`` of the
    output reads ``floor(i * h / size)``: an 8x8 digit at 32x32 is 4x4 blocks)."""
    iy = (np.arange(size) * x.shape[2]) // size
    ix = (np.arange(size) * x.shape[3]) // size
    return np.ascontiguousarray(x[:, :, iy][:, :, :, ix])


def static_npz(parts: tuple[np.ndarray, ...], shape: tuple[int, int, int], folder: Path
               ) -> Path:
    """The images resized to ``shape`` = (C, H, W) and copied to C channels, as the library's
    npz dataset (``x, y, x_test, y_test``)."""
    C, H, _ = shape
    x_tr, y_tr, x_te, y_te = parts
    tile = lambda x: np.repeat(resize_nearest(x, H), C, axis=1).astype(np.float32)  # noqa: E731
    path = folder / f"static-{C}x{H}.npz"
    np.savez(path, x=tile(x_tr), y=y_tr, x_test=tile(x_te), y_test=y_te)
    return path


def saccade_events(img: np.ndarray) -> Events:
    """ON / OFF events of one ``(h, w)`` image moved along :data:`SACCADE` on the
    :data:`EVENT_SIZE` sensor: step k's frame minus step k-1's, thresholded; event time
    ``k`` ms (k = 1 .. 16)."""
    S, D = EVENT_SIZE, EVENT_DIGIT
    small = resize_nearest(img[None, None], D)[0, 0]
    x0, y0 = 1, 3
    frames = []
    for dx, dy in [(0, 0), *SACCADE]:
        x0, y0 = x0 + dx, y0 + dy
        f = np.zeros((S, S), np.float32)
        f[y0:y0 + D, x0:x0 + D] = small
        frames.append(f)
    xs, ys, ts, ps = [], [], [], []
    for k in range(1, len(frames)):
        diff = frames[k] - frames[k - 1]
        for p, mask in ((1, diff > EVENT_THRESHOLD), (0, diff < -EVENT_THRESHOLD)):
            yy, xx = np.nonzero(mask)
            xs.append(xx), ys.append(yy), ps.append(np.full(xx.size, p))
            ts.append(np.full(xx.size, k * 1000))
    cat = lambda a: np.concatenate(a).astype(np.int64)  # noqa: E731
    return Events(x=cat(xs), y=cat(ys), t=cat(ts), p=cat(ps))


def event_folder(parts: tuple[np.ndarray, ...], folder: Path) -> Path:
    """The images as saccade events in N-MNIST's layout, ``Train/<label>/<i>.bin``,
    ``Test/<label>/<i>.bin`` (the library's ``nmnist`` dataset reads it)."""
    root = folder / "events"
    x_tr, y_tr, x_te, y_te = parts
    for split, x, y in (("Train", x_tr, y_tr), ("Test", x_te, y_te)):
        for i, (img, label) in enumerate(zip(x, y, strict=True)):
            d = root / split / str(int(label))
            d.mkdir(parents=True, exist_ok=True)
            write_nmnist_bin(d / f"{i:05d}.bin", saccade_events(img[0]))
    return root


# ================================================================================================
# one run
# ================================================================================================

def digest(arrays: Sequence[np.ndarray]) -> str:
    """sha256 (first 16 hex digits) of the arrays' bytes, in order."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def run_config(row: Row, method: str, loss: str, data: tuple[str, Path], a: argparse.Namespace
               ) -> Any:
    """The run's configuration as the ``python -m pysnn_ref.train`` flags resolve it."""
    dataset, path = data
    neuron = ["--neuron", "if"] if row.neuron == "sew" else \
        ["--neuron", "lif", "--lam", "0.25" if row.neuron == "tdbn" else "0.5"]
    argv = ["--dataset", dataset, "--data-dir", str(path), "--model", row.model,
            "--method", method, "--loss", loss, *neuron,
            "--v-th", "0.5" if row.neuron == "tdbn" else "1.0",
            "--encoder", "events" if row.events else "direct", "--T", str(a.T),
            "--epochs", str(a.epochs), "--batch-size", str(a.batch_size),
            "--optimizer", a.optimizer, "--lr", str(a.lr), "--seed", str(a.seed),
            "--no-plots", "--no-progress"]
    return resolve_config(build_parser().parse_args(argv), explicit_args(argv))


def train_pair_member(row: Row, method: str, loss: str, data: tuple[str, Path],
                      a: argparse.Namespace, out_dir: Path,
                      log: Callable[[str], None]) -> dict[str, Any]:
    """Train one run with the library's loop; its accuracies, wall time and digests."""
    cfg = run_config(row, method, loss, data, a)
    st = setup_run(cfg)
    net = make_model(row.model, st.cfg.input_shape, st.cfg.num_classes, NEURONS[row.neuron],
                     v_th=cfg.v_th, seed=cfg.seed, width=a.width)
    st.method.check_network(net)
    named = spiking_layer_names(net)
    momentum = {"momentum": cfg.momentum} if cfg.optimizer == "sgd" else {}
    seen: list[np.ndarray] = []
    loss_fwd = st.loss_fwd

    def observed_loss(y: Any, labels: Any) -> Any:
        if net.training:  # the training batches (evaluation runs with net.eval())
            seen.append(np.asarray(labels))
        return loss_fwd(y, labels)

    run_dir = out_dir / f"{row.key}-{method}-{loss}"
    run_dir.mkdir(parents=True, exist_ok=True)
    st = dataclasses.replace(
        st, net=net, opt=make_optimizer(cfg.optimizer, net.parameters(), cfg.lr,
                                        weight_decay=cfg.weight_decay, **momentum),
        layer_names=[n for n, _ in named], spiking=[m for _, m in named],
        n_params=count_parameters(net), loss_fwd=observed_loss, run_dir=run_dir)
    init = digest([p.data for p in net.parameters()])
    t0 = time.perf_counter()
    for epoch in range(st.total):
        run_epoch(st, epoch, lambda s: log(f"  {row.key} {method}/{loss}: {s}"))
    wall = time.perf_counter() - t0
    last = st.history[-1]
    return {"method": method, "loss": loss, "train_acc": last["train_acc"],
            "test_acc": last["test_acc"], "best_test_acc": st.best_acc,
            "wall_s": wall, "backward_s": sum(r["backward_s"] for r in st.history),
            "params": st.n_params, "init_digest": init, "order_digest": digest(seen),
            "n_train": st.cfg.n_train, "n_test": st.cfg.n_test,
            "input_shape": list(st.cfg.input_shape),
            "history": [{k: r[k] for k in ("epoch", "loss", "train_acc", "test_acc",
                                            "epoch_s")} for r in st.history]}


# ================================================================================================
# the table
# ================================================================================================

def row_data(row: Row, parts: tuple[np.ndarray, ...], folder: Path, image_size: int | None,
             made: dict[tuple, tuple[str, Path]]) -> tuple[str, Path]:
    """The row's dataset (name, path) for the library, made once per input shape."""
    if row.events:
        key: tuple = ("events",)
        if key not in made:
            made[key] = ("nmnist", event_folder(parts, folder))
        return made[key]
    C, H, _ = row.shape
    shape = (C, image_size or H, image_size or H)
    if shape not in made:
        made[shape] = ("npz", static_npz(parts, shape, folder))
    return made[shape]


def run_rows(a: argparse.Namespace, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every asked row: the original (BPTT, the framework's loss) and the SSF version with the
    same configuration otherwise; TET-CE reuses TET's BPTT run of the same network and data."""
    rows = [r for r in TABLE1 if r.key in a.rows]
    parts = source_images(a.dataset, a.data_dir, a.n_train, a.n_test)
    done: dict[tuple, dict[str, Any]] = {}
    out = []
    with tempfile.TemporaryDirectory(prefix="ssf-acc-") as tmp:
        folder, made = Path(tmp), {}
        for row in rows:
            data = row_data(row, parts, folder, a.image_size, made)
            rec: dict[str, Any] = {"row": row.key, "framework": row.framework,
                                   "model": row.model, "dataset_shape_of": row.dataset}
            for side, method, loss in (("original", "bptt", row.loss),
                                       ("ssf", "ssf", row.ssf_loss)):
                key = (row.model, row.neuron, data, method, loss)
                if key not in done:
                    done[key] = train_pair_member(row, method, loss, data, a, folder / "runs",
                                                  log)
                rec[side] = done[key]
            rec["gap"] = rec["ssf"]["test_acc"] - rec["original"]["test_acc"]
            log("  " + format_row(rec))
            out.append(rec)
    return out


HEADER = (f"{'framework':<7} {'network':<15} {'params':>7} {'shape':>9}  {'bptt tr/te':>11} "
          f"{'ssf tr/te':>11} {'gap':>6}  {'bptt_s':>7} {'ssf_s':>7}  same init/order")


def format_row(rec: dict[str, Any]) -> str:
    """One table line: each run's train / test accuracy, the gap (SSF - original, test, in
    points), each run's wall time, and whether the pair shared initial weights and order."""
    o, s = rec["original"], rec["ssf"]
    same = (f"{'yes' if o['init_digest'] == s['init_digest'] else 'NO'}/"
            f"{'yes' if o['order_digest'] == s['order_digest'] else 'NO'}")
    shape = "x".join(str(v) for v in o["input_shape"])
    return (f"{rec['framework']:<7} {rec['model']:<15} {o['params'] / 1e6:6.3f}M {shape:>9}  "
            f"{o['train_acc']:.3f}/{o['test_acc']:.3f} {s['train_acc']:.3f}/{s['test_acc']:.3f} "
            f"{rec['gap'] * 100:+5.1f}  {o['wall_s']:7.1f} {s['wall_s']:7.1f}  {same}")


def make_parser() -> argparse.ArgumentParser:
    """The script's flags."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma list of {', '.join(ROWS)}")
    p.add_argument("--width", type=float, default=0.125,
                   help="channel multiplier of the paper networks (1 = as published)")
    p.add_argument("--T", type=int, default=4, help="time steps (events: divides 20)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", default="adam", choices=("adam", "sgd"))
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", default="digits", choices=("digits", "mnist", "fashion-mnist"))
    p.add_argument("--data-dir", default=None, help="the IDX files (mnist, fashion-mnist)")
    p.add_argument("--n-train", type=int, default=None, help="first n training images")
    p.add_argument("--n-test", type=int, default=None, help="first n test images")
    p.add_argument("--image-size", type=int, default=None,
                   help="H = W of the static rows (default: the row's dataset shape)")
    p.add_argument("--json", default=None, help="write the record here")
    p.add_argument("--quick", action="store_true",
                   help="wiring test in seconds: " + " ".join(QUICK) + " (flags given "
                        "explicitly override)")
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The flags, ``--quick``'s defaults under the explicit ones, checked."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = make_parser()
    a = p.parse_args(QUICK + argv if "--quick" in argv else argv)
    a.rows = [k.strip() for k in a.rows.split(",") if k.strip()]
    bad = [k for k in a.rows if k not in ROWS]
    if bad or not a.rows:
        p.error(f"--rows must be a comma list of {', '.join(ROWS)}; got {bad or a.rows}")
    if a.dataset != "digits" and a.data_dir is None:
        p.error(f"--dataset {a.dataset} needs --data-dir (its IDX files)")
    if any(TABLE1[[r.key for r in TABLE1].index(k)].events for k in a.rows) and 20 % a.T:
        p.error(f"--T {a.T}: the event rows need T dividing 20 (1, 2, 4, 5, 10, 20)")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    log = lambda s: print(s, flush=True)  # noqa: E731
    scale = (f"width {a.width:g}, T {a.T}, {a.epochs} epochs, batch {a.batch_size}, "
             f"{a.optimizer} lr {a.lr:g} (cosine), seed {a.seed}, data {a.dataset}"
             f"{f' (first {a.n_train} train)' if a.n_train else ''}"
             f"{f' (first {a.n_test} test)' if a.n_test else ''}")
    log(f"SSF Table 1, accuracy side: original (BPTT) vs SSF, {scale}")
    t0 = time.perf_counter()
    recs = run_rows(a, log)  # each epoch's line and each pair's row as they finish
    log("")
    log(HEADER)
    for rec in recs:
        log(format_row(rec))
    log(f"gap = SSF test accuracy - original's, points; total {time.perf_counter() - t0:.0f} s")
    if a.json:
        Path(a.json).write_text(json.dumps({
            "command": "python benchmarks/ssf_accuracy.py " + " ".join(sys.argv[1:] if argv is None
                                                                     else argv),
            "scale": {k: getattr(a, k) for k in ("width", "T", "epochs", "batch_size",
                                                 "optimizer", "lr", "seed", "dataset",
                                                 "n_train", "n_test", "image_size")},
            "rows": recs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

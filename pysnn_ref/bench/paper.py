"""``python -m pysnn_ref.bench --paper ssf-table1``: the backward-time column of SSF's Table 1.

SSF (Stabilized Spiking Flow, ICCV 2023), Table 1 lists, per framework and network, the backward
time of one training epoch of the original (BPTT with surrogate gradients) and of the same
framework "accelerated with SSF", T = 20, batch 32, and their ratio.  This command rebuilds each
row's network (:mod:`pysnn_ref.models`: ``resnet19``, ``preact_resnet18``, ``vgg11``,
``sew_resnet34``) and framework (loss, neuron) on input of the dataset's shape, runs one training
step's forward under BPTT and under SSF, and times the backward (loss backward +
:meth:`~pysnn_ref.methods.Method.backward`) -- median of ``--repeats`` steps after one warm-up
step at T = 2 (Numba compilation).  It prints our ratio beside the paper's.

Rows and their frameworks (neurons as in the frameworks' code, see docs/benchmarks.md):

* tdBN / ResNet-19: LIF lam = 0.25, V_th = 0.5, tdBN, SDT (cross-entropy on the mean output);
* TET / PreAct-ResNet-18 (CIFAR), TET / VGG-11 (DVS): LIF lam = 0.5, V_th = 1, TET loss;
  TET-CE: the SSF version trained with the SDT loss (the paper's "TET-CE-ours"), timed
  against TET's BPTT;
* SEW / SEW-ResNet-34 (Tiny-ImageNet): IF neurons, V_th = 1, ADD, SDT.

RecDis rows are left out: its MPD loss has no readable formula and no public code.
Direct encoding (the image at every step) for CIFAR and Tiny-ImageNet; random binary event
frames (2 polarities) for DVS-CIFAR10.  ``--image-size`` shrinks the images (wiring tests only).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from .. import nn
from ..cli import ArgumentParser, positive_int
from ..functional.loss import loss_pair
from ..methods import make_method
from ..models import count_parameters, make_model

__all__ = ["PAPERS", "RECDIS_NOTE", "Row", "TABLE1", "ROW_KEYS", "NEURONS", "build_row",
    "make_input", "backward_seconds", "measure_row", "format_row", "make_parser", "main"]

PAPERS = ("ssf-table1",)
RECDIS_NOTE = ("RecDis rows (RecDis/PreAct-ResNet-18 2.62x, 2.62x; RecDis/VGG-11 1.90x) left "
               "out: its MPD loss has no readable formula and no public code")


class Row(NamedTuple):
    key: str
    dataset: str
    framework: str
    model: str
    shape: tuple[int, int, int]
    classes: int
    loss: str            # the original's loss
    ssf_loss: str        # the SSF version's loss
    neuron: str          # "tdbn", "tet", "sew"
    events: bool         # DVS: per-step event frames instead of a static image
    paper_bptt_s: float  # SSF Table 1, backward time per epoch (s)
    paper_ssf_s: float
    paper_ratio: float   # the ratio Table 1 prints (SEW's differs from its two times: 3.21)


TABLE1 = (
    Row("c10-tdbn", "CIFAR-10", "tdBN", "resnet19", (3, 32, 32), 10, "sdt", "sdt", "tdbn",
        False, 651.8, 313.3, 2.08),
    Row("c10-tet", "CIFAR-10", "TET", "preact_resnet18", (3, 32, 32), 10, "tet", "tet", "tet",
        False, 402.5, 143.0, 2.81),
    Row("c100-tdbn", "CIFAR-100", "tdBN", "resnet19", (3, 32, 32), 100, "sdt", "sdt", "tdbn",
        False, 511.0, 254.4, 2.01),
    Row("c100-tet", "CIFAR-100", "TET", "preact_resnet18", (3, 32, 32), 100, "tet", "tet",
        "tet", False, 429.4, 154.8, 2.77),
    Row("tiny-sew", "Tiny-ImageNet", "SEW", "sew_resnet34", (3, 64, 64), 200, "sdt", "sdt",
        "sew", False, 7231.4, 2250.3, 2.95),
    Row("dvs-tdbn", "DVS-CIFAR10", "tdBN", "resnet19", (2, 48, 48), 10, "sdt", "sdt", "tdbn",
        True, 196.4, 97.6, 2.01),
    Row("dvs-tet", "DVS-CIFAR10", "TET", "vgg11", (2, 48, 48), 10, "tet", "tet", "tet", True,
        31.2, 16.4, 1.90),
    Row("dvs-tet-ce", "DVS-CIFAR10", "TET-CE", "vgg11", (2, 48, 48), 10, "tet", "sdt", "tet",
        True, 31.2, 15.1, 2.07),
)
ROW_KEYS = tuple(r.key for r in TABLE1)

NEURONS: dict[str, Callable[[], nn.Module]] = {
    "tdbn": lambda: nn.LIF(lam=0.25, v_th=0.5),  # NDA_SNN's reimplementation of tdBN
    "tet": lambda: nn.LIF(lam=0.5, v_th=1.0),    # TET models/layers.py LIFSpike
    "sew": lambda: nn.IF(v_th=1.0),              # SEW: IF, V_th = 1, hard reset
}


def build_row(row: Row, image_size: int | None = None, seed: int = 0) -> tuple[Any, tuple]:
    """The row's network (full width) and its input shape (``image_size`` overrides H = W)."""
    C, H, W = row.shape
    shape = (C, image_size, image_size) if image_size else (C, H, W)
    v_th = 0.5 if row.neuron == "tdbn" else 1.0
    return make_model(row.model, shape, row.classes, NEURONS[row.neuron], v_th=v_th,
                      seed=seed), shape


def make_input(row: Row, shape: tuple, T: int, batch: int, seed: int = 0) -> tuple[Any, Any]:
    """Time-major input: a static image repeated T times (direct encoding) or, for DVS,
    random binary event frames; uniform random labels."""
    rng = np.random.default_rng(seed)
    if row.events:
        X = (rng.random((T, batch, *shape)) < 0.1).astype(np.float32)
    else:
        X = np.broadcast_to(rng.random((batch, *shape)).astype(np.float32), (T, batch, *shape))
    return X, rng.integers(0, row.classes, batch)


def backward_seconds(net: Any, method: str, loss: str, X: Any, labels: Any) -> float:
    """One step's forward (untimed), then the timed backward: loss backward +
    ``Method.backward``."""
    m = make_method(method, loss=loss)
    m.check_network(net)
    fwd, bwd = loss_pair(loss)
    net.zero_grad()
    _, cache = fwd(m.forward(net, X), labels)
    t0 = time.perf_counter()
    m.backward(net, bwd(cache))
    return time.perf_counter() - t0


def measure_row(row: Row, T: int, batch: int, repeats: int, image_size: int | None = None
                ) -> dict[str, Any]:
    """Backward time of the original (BPTT) and of its SSF version, median of ``repeats``."""
    net, shape = build_row(row, image_size)
    out: dict[str, Any] = {"row": row.key, "params": count_parameters(net), "shape": shape}
    for method, loss in (("bptt", row.loss), ("ssf", row.ssf_loss)):
        Xw, lw = make_input(row, shape, 2, 1)
        backward_seconds(net, method, loss, Xw, lw)  # warm-up: Numba compilation
        X, labels = make_input(row, shape, T, batch)
        out[method] = statistics.median(backward_seconds(net, method, loss, X, labels)
                                        for _ in range(repeats))
    out["ratio"] = out["bptt"] / out["ssf"]
    return out


def format_row(row: Row, r: dict[str, Any] | None, params: int) -> str:
    """One line of the table: our BPTT and SSF backward times, our ratio and the paper's."""
    paper = row.paper_ratio
    name = f"{row.dataset:<13} {row.framework:<6} {row.model:<15} {params / 1e6:6.2f}M"
    if r is None:
        return f"{name}  {'-':>9} {'-':>9} {'-':>7}  {paper:5.2f}x"
    return (f"{name}  {r['bptt']:9.3f} {r['ssf']:9.3f} {r['ratio']:6.2f}x  {paper:5.2f}x"
            f"  ({(r['ratio'] / paper - 1) * 100:+.0f}%)")


def make_parser() -> argparse.ArgumentParser:
    """The ``--paper`` command's arguments."""
    ap = ArgumentParser(prog="python -m pysnn_ref.bench --paper",
                        description="Backward time of BPTT and SSF on the SSF paper's Table 1 "
                                    "networks, our ratio beside the paper's.")
    ap.add_argument("--paper", required=True, choices=PAPERS)
    ap.add_argument("--T", type=positive_int, default=20, help="time steps (paper: 20)")
    ap.add_argument("--batch-size", type=positive_int, default=1,
                    help="batch (paper: 32; default 1: a 2-core CPU)")
    ap.add_argument("--repeats", type=positive_int, default=1, help="timed steps (median)")
    ap.add_argument("--rows", default=",".join(ROW_KEYS),
                    help=f"comma list of rows (default all: {','.join(ROW_KEYS)})")
    ap.add_argument("--image-size", type=positive_int, default=None,
                    help="override H = W of the inputs (wiring tests only)")
    ap.add_argument("--dry-run", action="store_true",
                    help="build every row's network and print its parameter count, no timing")
    return ap


def main(argv: Sequence[str] | None = None, log: Callable[[str], None] = print) -> int:
    """``bench --paper ssf-table1``: measure the rows and print the table; returns the exit code."""
    args = make_parser().parse_args(argv)
    keys = [k.strip() for k in args.rows.split(",") if k.strip()]
    bad = [k for k in keys if k not in ROW_KEYS]
    if bad or not keys:
        raise ValueError(f"--rows must be a comma list of {', '.join(ROW_KEYS)}; got "
                         f"{args.rows!r}")
    rows = [r for r in TABLE1 if r.key in keys]
    log(f"SSF Table 1 backward time, T = {args.T}, batch {args.batch_size}, float32, "
        f"median of {args.repeats} (seconds per step; paper: per epoch, batch 32)")
    log(f"{'dataset':<13} {'frame':<6} {'network':<15} {'params':>7}  {'bptt_s':>9} "
        f"{'ssf_s':>9} {'ours':>7}  {'paper':>6}")
    for row in rows:
        if args.dry_run:
            net, _ = build_row(row, args.image_size)
            log(format_row(row, None, count_parameters(net)))
            continue
        r = measure_row(row, args.T, args.batch_size, args.repeats, args.image_size)
        log(format_row(row, r, r["params"]))
    log(RECDIS_NOTE)
    return 0

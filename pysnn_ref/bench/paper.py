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

``--paper ssf-table2``: SSF's Table 2 (SSF vs DSR, Meng et al., CVPR 2022, and "DSR-noF", DSR
without its firing-mechanism change) on PreAct-ResNet-18 with IF neurons, CIFAR-10 shape, at
T = 5, 10, 20: the **whole training step** (forward + loss + backward + SGD update) of bptt,
ssf, dsr and dsr-noF, median of ``--repeats`` after a warm-up step at T = 2, and the speed-ups
against bptt beside the paper's (SSF 2.75x, DSR 2.69x at T = 20, CIFAR-10, SSF Sec. 4.3).
Neurons (one network, soft reset, as DSR defines only that): bptt / ssf IF, V_th = 1, triangle
surrogate; dsr IF at DSR's README IF setting ``--Vth 6 --alpha 0.5`` with threshold training
(dsr_alpha = 0.5); dsr-noF the same with dsr_alpha = 1.  Loss SDT (cross-entropy on the rate of
the spiking output layer, as DSR's); SGD lr 0.1, momentum 0.9, weight decay 5e-4 (DSR's).
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
from ..optim import SGD

__all__ = ["PAPERS", "RECDIS_NOTE", "Row", "TABLE1", "ROW_KEYS", "NEURONS", "build_row",
    "make_input", "backward_seconds", "measure_row", "format_row", "make_parser", "main",
    "TABLE2_ROW", "TABLE2_METHODS", "TABLE2_PAPER", "build_table2", "step_seconds",
    "measure_table2", "format_table2", "make_parser2", "main2"]

PAPERS = ("ssf-table1", "ssf-table2")
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
    ap.add_argument("--paper", required=True, choices=PAPERS[:1])
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
    """``bench --paper ssf-table1`` (or ``ssf-table2``, :func:`main2`): measure the rows and
    print the table; returns the exit code."""
    argv = list(argv or [])
    if "ssf-table2" in argv or "--paper=ssf-table2" in argv:
        return main2(argv, log)
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


# ---------------------------------------------------------------------------------------------
# SSF Table 2: SSF vs DSR, whole training step
# ---------------------------------------------------------------------------------------------

#: the network of Table 2 on CIFAR-10 (paper ratio: SSF's, for the row header only)
TABLE2_ROW = Row("c10-dsr", "CIFAR-10", "DSR", "preact_resnet18", (3, 32, 32), 10, "sdt", "sdt",
                 "if", False, float("nan"), float("nan"), 2.75)
#: (label, method, neuron V_th, method options)
TABLE2_METHODS: tuple[tuple[str, str, float, dict[str, Any]], ...] = (
    ("bptt", "bptt", 1.0, {}),
    ("ssf", "ssf", 1.0, {}),
    ("dsr", "dsr", 6.0, {"dsr_alpha": 0.5, "dsr_train_threshold": True}),
    ("dsr-noF", "dsr", 6.0, {"dsr_alpha": 1.0, "dsr_train_threshold": True}),
)
#: SSF Table 2 / Sec. 4.3: whole-training speed-up vs BPTT, CIFAR-10 (only T = 20 given)
TABLE2_PAPER = {("ssf", 20): 2.75, ("dsr", 20): 2.69}


def build_table2(label: str, image_size: int | None = None, seed: int = 0
                 ) -> tuple[Any, Any, Any, tuple]:
    """``(net, method, optimizer, input shape)`` of one Table 2 column: PreAct-ResNet-18, IF
    neurons with soft reset, the method checked on the net (DSR's thresholds become
    Parameters) before the SGD optimizer collects the parameters."""
    _, name, v_th, opts = next(m for m in TABLE2_METHODS if m[0] == label)
    C, H, W = TABLE2_ROW.shape
    shape = (C, image_size, image_size) if image_size else (C, H, W)
    net = make_model(TABLE2_ROW.model, shape, TABLE2_ROW.classes,
                     lambda: nn.IF(v_th=v_th, reset="soft"), seed=seed)
    method = make_method(name, **opts)
    method.check_network(net)
    return net, method, SGD(net.parameters(), 0.1, momentum=0.9, weight_decay=5e-4), shape


def step_seconds(net: Any, method: Any, opt: Any, X: Any, labels: Any
                 ) -> tuple[float, float, float]:
    """One whole training step, timed: ``(forward + loss, loss gradient + backward, SGD
    update)`` in seconds."""
    fwd, bwd = loss_pair(TABLE2_ROW.loss)
    net.zero_grad()
    t0 = time.perf_counter()
    _, cache = fwd(method.forward(net, X), labels)
    t1 = time.perf_counter()
    method.backward(net, bwd(cache))
    t2 = time.perf_counter()
    opt.step()
    return t1 - t0, t2 - t1, time.perf_counter() - t2


def measure_table2(Ts: Sequence[int], batch: int, repeats: int,
                   image_size: int | None = None) -> dict[tuple[str, int], tuple]:
    """``{(label, T): (fwd, bwd, upd)}``, each the median of ``repeats`` steps, one network per
    method (warm-up step at T = 2 first: Numba compilation)."""
    out: dict[tuple[str, int], tuple] = {}
    for label, *_ in TABLE2_METHODS:
        net, method, opt, shape = build_table2(label, image_size)
        step_seconds(net, method, opt, *make_input(TABLE2_ROW, shape, 2, 1))
        for T in Ts:
            X, labels = make_input(TABLE2_ROW, shape, T, batch)
            runs = [step_seconds(net, method, opt, X, labels) for _ in range(repeats)]
            out[label, T] = tuple(statistics.median(r[i] for r in runs) for i in range(3))
    return out


def format_table2(label: str, T: int, r: tuple | None, base: tuple | None) -> str:
    """One line: the step's parts, its total, our speed-up vs bptt (whole step and backward
    alone) and the paper's ("-" where Table 2 gives none)."""
    paper = TABLE2_PAPER.get((label, T))
    pap = f"{paper:5.2f}x" if paper else f"{'-':>6}"
    if r is None or base is None:
        return f"{T:>3} {label:<8} {'-':>8} {'-':>8} {'-':>8} {'-':>8} {'-':>7} {'-':>7}  {pap}"
    step, bstep = sum(r), sum(base)
    return (f"{T:>3} {label:<8} {r[0]:8.3f} {r[1]:8.3f} {r[2]:8.3f} {step:8.3f} "
            f"{bstep / step:6.2f}x {base[1] / r[1]:6.2f}x  {pap}")


def _t_list(s: str) -> list[int]:
    try:
        Ts = [positive_int(v.strip()) for v in s.split(",") if v.strip()]
    except argparse.ArgumentTypeError:
        Ts = []
    if not Ts:
        raise argparse.ArgumentTypeError(f"must be a comma list of positive ints, got {s!r}")
    return Ts


def make_parser2() -> argparse.ArgumentParser:
    """The ``--paper ssf-table2`` command's arguments."""
    ap = ArgumentParser(prog="python -m pysnn_ref.bench --paper ssf-table2",
                        description="Whole training step of bptt, ssf, dsr and dsr-noF on "
                                    "PreAct-ResNet-18 (IF), speed-ups vs bptt beside SSF's "
                                    "Table 2.")
    ap.add_argument("--paper", required=True, choices=PAPERS[1:])
    ap.add_argument("--T", type=_t_list, default=[5, 10, 20], help="comma list (paper: 5,10,20)")
    ap.add_argument("--batch-size", type=positive_int, default=1,
                    help="batch (paper: not stated; default 1: a 2-core CPU)")
    ap.add_argument("--repeats", type=positive_int, default=1, help="timed steps (median)")
    ap.add_argument("--image-size", type=positive_int, default=None,
                    help="override H = W of the 3 x 32 x 32 input (wiring tests only)")
    ap.add_argument("--dry-run", action="store_true",
                    help="build and check every method's network, no timing")
    return ap


def main2(argv: Sequence[str] | None = None, log: Callable[[str], None] = print) -> int:
    """``bench --paper ssf-table2``: measure and print the table; returns the exit code."""
    args = make_parser2().parse_args(argv)
    log(f"SSF Table 2 whole training step (forward + loss / backward / SGD update), "
        f"PreAct-ResNet-18, IF (soft reset), CIFAR-10 shape, batch {args.batch_size}, float32, "
        f"median of {args.repeats} (seconds per step; speed-up = bptt / method)")
    log(f"{'T':>3} {'method':<8} {'fwd_s':>8} {'bwd_s':>8} {'upd_s':>8} {'step_s':>8} "
        f"{'step':>7} {'bwd':>7}  {'paper':>6}")
    if args.dry_run:
        params = {label: count_parameters(build_table2(label, args.image_size)[0])
                  for label, *_ in TABLE2_METHODS}
        log("parameters: " + ", ".join(f"{k} {v / 1e6:.2f}M" for k, v in params.items()))
        res: dict = {}
    else:
        res = measure_table2(args.T, args.batch_size, args.repeats, args.image_size)
    for T in args.T:
        for label, *_ in TABLE2_METHODS:
            log(format_table2(label, T, res.get((label, T)), res.get(("bptt", T))))
    log("dsr: IF V_th 6, alpha 0.5, threshold training (DSR README); dsr-noF: alpha 1; the "
        "flow methods' forward runs all T steps in one pass (time_chunk 'auto': each BatchNorm "
        "takes its statistics from the T steps it sees)")
    return 0

"""Train a spiking network from the command line: ``python -m pysnn_ref.train [flags]``.

With no flags it trains the default network on the embedded 8x8 digits (scikit-learn's copy,
nothing is downloaded) on the CPU; ``--method bptt|asf|ssf`` picks how gradients are computed
(:mod:`pysnn_ref.methods`), ``--device gpu`` runs on an NVIDIA GPU.  ``--help`` lists every flag
with its default; ``docs/training.md`` is the guide, with measured times and accuracies.

One epoch::

    method.check_network(net); method.begin_epoch(net, epoch)   # ASF: scale-factor refresh
    [--dspike-adapt: pick the Dspike temperature b by FDG cosine similarity, Dspike Alg. 1]
    for every mini-batch (seeded order):
        net.zero_grad()
        y = method.forward(net, x, T, encoder)                 # (T, B, classes)
        loss, cache = <loss>_forward(y, labels); dy = <loss>_backward(cache)
        method.backward(net, dy); optimizer.step()
    test accuracy with net.eval() (BatchNorm running statistics)

What a run writes into its folder (``--out``, default ``runs/<date>-<time>-<model>-<method>``):
``config.json`` (every setting, defaults resolved, library versions), ``metrics.jsonl`` (one
JSON object per epoch), ``best.npz`` / ``last.npz`` (model + optimizer state + epoch + config;
reload with :func:`load`, continue with ``--resume``), ``curves.png`` and ``firing_rates.png``
(:mod:`pysnn_ref.plots`).  The last line printed is ``test_acc=0.XXXX``: the test accuracy of
the final epoch.

Exit codes: 0 done; 2 bad input (one line on stderr, never a traceback); 3 the loss became NaN
or infinite (one line naming the epoch and the batch); 130 interrupted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, backend
from . import nn as nn_
from .cli import ArgumentParser, NonFiniteLossError, run_main
from .data import DATASETS, ENCODERS, Dataset, augment_cifar, iterate_minibatches, load_dataset
from .data import make_encoder as _make_encoder
from .functional import loss as L
from .functional.surrogate import dspike, get_surrogate
from .gradcheck import cosine, finite_difference_gradient, method_gradients, named_parameters
from .methods import DEFAULT_TIME_CHUNK, Method, make_method
from .models import MODELS, make_model
from .optim import OPTIMIZERS, SCHEDULES, Optimizer, make_optimizer, make_schedule

PROG = "python -m pysnn_ref.train"

# ---- defaults (measured on the 2-core CPU; see docs/training.md) ---------------------------
DEFAULTS: dict[str, Any] = {
    "dataset": "digits",
    "model": "mlp",
    "method": "bptt",
    "neuron": "lif",
    "lam": 0.5,
    "v_th": 1.0,
    "reset": "hard",
    "surrogate": "triangle",
    "tet_lambda": 0.05,
    "T": 4,
    "epochs": 20,
    "batch_size": 64,
    "optimizer": "adam",
    "weight_decay": 0.0,
    "schedule": "cosine",
    "encoder": "direct",
    "dtype": "float32",
    "seed": 0,
    "device": "cpu",
    "fdg_samples": 128,
    "blas_threads": 1,
}
DEFAULT_LR = {"adam": 1e-3, "sgd": 0.1}
DEFAULT_MOMENTUM = 0.9
DEFAULT_ASF_REFRESH = 5
LOSSES = ("sdt", "tet", "asf-mse")
DEFAULT_LOSS = {"bptt": "sdt", "ssf": "sdt", "asf": "sdt"}
SPLIT_SEED = 0          # the digits / npz train-test split never depends on --seed
FDG_EPS = 0.1           # Dspike Sec. 4.2: the best finite-difference step
DSPIKE_STEP = 0.2       # Dspike Sec. 5: the temperature's update step, delta b
#: flags that ``--resume`` may change; every other setting comes from the checkpoint
RESUME_OVERRIDES = ("epochs", "tit", "tit_lr", "device", "no_progress", "no_plots",
                    "max_batches", "max_eval_batches", "out", "blas_threads")

__all__ = ["build_parser", "parse_tit", "resolve_config", "build_model", "build_method",
           "evaluate_model", "adapt_dspike", "save_checkpoint", "read_checkpoint", "load",
           "train", "main", "cli"]


# ================================================================================================
# command line
# ================================================================================================

def _int_at_least(s: str, minimum: int) -> int:
    try:
        k = int(s)
    except ValueError:
        k = minimum - 1
    if k < minimum:
        raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {s!r}")
    return k


def _pos_int(s: str) -> int:
    return _int_at_least(s, 1)


def _nonneg_int(s: str) -> int:
    return _int_at_least(s, 0)


def _asf_refresh(s: str) -> int | str:
    if s == "batch":
        return s
    try:
        return _pos_int(s)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected an integer K >= 1 or 'batch', got {s!r}") from None


def _float(s: str) -> float:
    try:
        f = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not math.isfinite(f):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {s!r}")
    return f


EPILOG = """\
examples:
  python -m pysnn_ref.train                                  # defaults: digits, mlp, bptt, T=4
  python -m pysnn_ref.train --method ssf                     # stabilized spiking flow
  python -m pysnn_ref.train --method asf --neuron if         # accumulated spiking flow, IF
  python -m pysnn_ref.train --surrogate dspike --dspike-adapt  # FDG-adapted Dspike temperature
  python -m pysnn_ref.train --tit 4:10,2:5                   # time inheritance: T=4, then T=2
  python -m pysnn_ref.train --dataset cifar10 --data-dir ~/data/cifar10 --model vgg7 \\
      --augment --device gpu
  python -m pysnn_ref.train --resume runs/RUN              # continue a run from last.npz
  python -m pysnn_ref.evaluate runs/RUN                    # test accuracy of a saved run

outputs (in --out): config.json, metrics.jsonl, best.npz, last.npz, curves.png,
firing_rates.png. The last line printed is test_acc=0.XXXX (final epoch).
exit codes: 0 ok, 2 bad input (one line on stderr), 3 loss became NaN/inf, 130 interrupted.
guide: docs/training.md"""


def build_parser() -> ArgumentParser:
    """The ``python -m pysnn_ref.train`` argument parser (``--help`` shows every default)."""
    D = DEFAULTS
    p = ArgumentParser(
        prog=PROG,
        description="Train a spiking neural network with BPTT, ASF or SSF.\nWith no flags: "
                    "the 8x8 digits, an MLP (800 LIF neurons), T=4, 20 epochs on the CPU.",
        epilog=EPILOG)
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default=D["dataset"],
                   help="digits: scikit-learn's 8x8 digits (built in, 80/20 split with seed 0); "
                        "mnist / fashion-mnist: IDX files in --data-dir; cifar10: the python "
                        "batches in --data-dir; npz: your arrays x, y (x_test, y_test) in the "
                        ".npz file --data-dir. Inputs are standardised per channel.")
    g.add_argument("--data-dir", default=None,
                   help="folder (npz: file) holding the dataset files; nothing is downloaded; "
                        "not used by digits")
    g.add_argument("--encoder", choices=ENCODERS, default=D["encoder"],
                   help="direct: the analog input at every step; poisson: Bernoulli spikes "
                        "with rate |x| (signed), seeded per epoch")
    g.add_argument("--augment", action="store_true",
                   help="random crop (4 px zero padding) + horizontal flip of training images "
                        "(the CIFAR augmentation of ASF-BP and TET)")
    g = p.add_argument_group("network and neurons")
    g.add_argument("--model", choices=MODELS, default=D["model"],
                   help="mlp: FC800; lenet: 16C3-AP2-32C3-AP2-FC128; vgg7; snn5 and vggsnn "
                        "(TET, with BN); resnet (small spiking ResNet, BN); see pysnn_ref.models")
    g.add_argument("--neuron", choices=("lif", "if"), default=D["neuron"],
                   help="lif: leaky integrate-and-fire with decay --lam; if: integrate-and-fire "
                        "(lam = 1, ASF-BP's neuron)")
    g.add_argument("--lam", type=_float, default=D["lam"],
                   help="LIF membrane decay per step, in (0, 1] (lif only)")
    g.add_argument("--v-th", type=_float, default=D["v_th"], help="firing threshold, > 0")
    g.add_argument("--reset", choices=("hard", "soft"), default=D["reset"],
                   help="hard: membrane to 0 after a spike; soft: subtract v_th")
    g.add_argument("--surrogate", default=D["surrogate"],
                   help="surrogate gradient of the spike (BPTT backward): rectangular, triangle, "
                        "sigmoid, atan or dspike, optionally name:param (e.g. sigmoid:4, "
                        "dspike:2); asf/ssf do not use it")
    g.add_argument("--dspike-adapt", action="store_true",
                   help="with --surrogate dspike and --method bptt: at the start of every epoch "
                        "set the Dspike temperature b to the one of b-0.2, b, b+0.2 whose "
                        "first-layer weight gradient has the highest cosine similarity with the "
                        "finite-difference gradient (eps 0.1) on one training batch (Dspike "
                        "Alg. 1)")
    g.add_argument("--fdg-samples", type=_pos_int, default=D["fdg_samples"],
                   help="--dspike-adapt: how many first-layer weights (a seeded random subset) "
                        "get a finite-difference gradient; 2 forward passes each")
    g.add_argument("--tdbn-alpha", type=_float, default=None,
                   help="models with BatchNorm: use tdBN with this alpha (normalised input "
                        "scaled by alpha * v_th, Dspike Eqs. 4-5) (default: none, plain BN)")
    g.add_argument("--dtype", choices=("float32", "float64"), default=D["dtype"],
                   help="floating-point type of parameters and activations")
    g = p.add_argument_group("training method and loss")
    g.add_argument("--method", choices=("bptt", "asf", "ssf"), default=D["method"],
                   help="bptt: exact backprop through time (memory ~ T); asf: accumulated "
                        "spiking flow (ASF-BP); ssf: stabilized spiking flow (SSF); asf and "
                        "ssf keep no per-step history and back-propagate once")
    g.add_argument("--loss", choices=LOSSES, default=None,
                   help="sdt: cross-entropy of the time-averaged output (TET Eq. 7); tet: "
                        "per-step cross-entropy + MSE regulariser (TET Eq. 13); asf-mse: MSE "
                        "of the accumulated output membrane (ASF Eq. 6) (default: sdt)")
    g.add_argument("--tet-lambda", type=_float, default=D["tet_lambda"],
                   help="--loss tet: weight of the MSE regulariser (TET's lambda)")
    g.add_argument("--T", type=_pos_int, default=D["T"], help="time steps per sample")
    g.add_argument("--time-chunk", type=_pos_int, default=None,
                   help=f"asf/ssf: time steps streamed through the network at once "
                        f"(default: {DEFAULT_TIME_CHUNK}; all T with BatchNorm in training)")
    g.add_argument("--asf-variant", choices=("paper", "code"), default=None,
                   help="asf: scale factor S of ASF Eq. 12 over the refresh epoch (paper) or "
                        "the authors' per-batch EMA (code) (default: paper)")
    g.add_argument("--asf-refresh", type=_asf_refresh, default=None,
                   help=f"asf: refresh S every K epochs, or every batch ('batch') "
                        f"(default: {DEFAULT_ASF_REFRESH}, the paper's)")
    g.add_argument("--r-granularity", choices=("neuron", "channel", "sample", "layer"),
                   default=None,
                   help="ssf: over what the average spiking electricity R is pooled (SSF "
                        "Table 3) (default: neuron)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=_pos_int, default=D["epochs"],
                   help="training epochs (ignored when --tit is given)")
    g.add_argument("--batch-size", type=_pos_int, default=D["batch_size"],
                   help="mini-batch size (training and test)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=D["optimizer"],
                   help="sgd (momentum, L2 weight decay) or adam")
    g.add_argument("--lr", type=_float, default=None,
                   help=f"learning rate at epoch 0 (default: {DEFAULT_LR['adam']:g} for adam, "
                        f"{DEFAULT_LR['sgd']:g} for sgd)")
    g.add_argument("--momentum", type=_float, default=None,
                   help=f"sgd only: momentum (default: {DEFAULT_MOMENTUM:g})")
    g.add_argument("--weight-decay", type=_float, default=D["weight_decay"],
                   help="L2 penalty added to the gradient")
    g.add_argument("--schedule", choices=SCHEDULES, default=D["schedule"],
                   help="learning rate per epoch: cosine (to 0 at the last epoch), step (x0.1 "
                        "every third of the epochs) or constant")
    g.add_argument("--tit", default=None, metavar="T:EPOCHS,...",
                   help="time inheritance training (Dspike Sec. 4.4): stages run one after "
                        "another with the same weights and optimizer state, e.g. '6:30,2:10' "
                        "trains 30 epochs at T=6, then 10 at T=2 (increasing T works too); "
                        "each stage restarts --schedule; replaces --T and --epochs")
    g.add_argument("--tit-lr", type=_float, default=None,
                   help="--tit: learning rate of the stages after the first (default: --lr; "
                        "the Dspike paper uses 0.4 x the first stage's)")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=_nonneg_int, default=D["seed"],
                   help="seeds weight init, batch order, Poisson spikes, augmentation and the "
                        "FDG subset; a CPU run is reproducible bit for bit")
    g.add_argument("--device", choices=backend.DEVICES, default=D["device"],
                   help="cpu (NumPy + Numba) or gpu (CuPy + numba.cuda)")
    g.add_argument("--out", default=None, metavar="RUN_DIR",
                   help="run folder to create (default: runs/<date>-<time>-<model>-<method>)")
    g.add_argument("--resume", default=None, metavar="RUN_DIR|CHECKPOINT",
                   help="continue a run from RUN_DIR/last.npz (or the given .npz): every "
                        "setting comes from the checkpoint except --epochs, --tit, --tit-lr, "
                        "--device, --out, --no-progress, --no-plots, --max-batches, "
                        "--max-eval-batches, --blas-threads")
    g.add_argument("--blas-threads", type=_nonneg_int, default=D["blas_threads"],
                   help="cpu: threads of NumPy's BLAS during the run (0: leave it alone). The "
                        "Numba kernels already use every core; BLAS threads of their own "
                        "compete with them and made epochs 1.6-10x slower on a 2-core machine")
    g.add_argument("--no-plots", action="store_true",
                   help="do not draw curves.png and firing_rates.png (saves ~1-2 s per run)")
    g.add_argument("--no-progress", action="store_true",
                   help="no progress bar (the per-epoch summary lines are still printed)")
    g.add_argument("--max-batches", type=_pos_int, default=None,
                   help="train on at most N mini-batches per epoch (quick tests) (default: all)")
    g.add_argument("--max-eval-batches", type=_pos_int, default=None,
                   help="test on at most N mini-batches (quick tests) (default: the whole "
                        "test set)")
    return p


def explicit_args(argv: Sequence[str] | None) -> set[str]:
    """Names of the flags given on the command line (not left at their defaults)."""
    p = build_parser()
    for a in p._actions:
        if a.dest != "help":
            a.default = argparse.SUPPRESS
    return set(vars(p.parse_args(argv)))


def parse_tit(spec: str) -> list[tuple[int, int]]:
    """``"2:30,6:10"`` -> ``[(2, 30), (6, 10)]``: (T, epochs) per time inheritance stage."""
    stages = []
    for part in str(spec).split(","):
        t, sep, e = part.strip().partition(":")
        try:
            T, E = int(t), int(e)
        except ValueError:
            T = E = 0
        if not sep or T < 1 or E < 1:
            raise ValueError(f"--tit must be a comma-separated list of T:EPOCHS with integers "
                             f">= 1, like '6:30,2:10', got {spec!r}")
        stages.append((T, E))
    return stages


def resolve_config(args: argparse.Namespace, explicit: set[str]) -> dict[str, Any]:
    """Every setting of a run, with defaults that depend on other flags resolved.

    Raises ``ValueError`` (naming the flag) for combinations that make no sense, e.g. an ASF
    option with ``--method ssf``: a flag that would be silently ignored is an error.
    """
    cfg = {k: v for k, v in vars(args).items() if k != "resume"}

    def only(flag_dest: str, ok: bool, what: str) -> None:
        if flag_dest in explicit and not ok:
            flag = "--" + flag_dest.replace("_", "-")
            raise ValueError(f"{flag} only applies to {what}")

    m = cfg["method"]
    only("asf_variant", m == "asf", "--method asf")
    only("asf_refresh", m == "asf", "--method asf")
    only("r_granularity", m == "ssf", "--method ssf")
    only("time_chunk", m in ("asf", "ssf"), "--method asf and ssf (bptt runs all T at once)")
    only("lam", cfg["neuron"] == "lif", "--neuron lif (IF has lam = 1)")
    only("momentum", cfg["optimizer"] == "sgd", "--optimizer sgd")
    only("fdg_samples", cfg["dspike_adapt"], "--dspike-adapt")
    only("tit_lr", cfg["tit"] is not None, "--tit")
    only("data_dir", cfg["dataset"] != "digits", "datasets read from files (digits is built in)")
    if cfg["loss"] != "tet":
        only("tet_lambda", False, "--loss tet")
    if m == "asf":
        cfg["asf_variant"] = cfg["asf_variant"] or "paper"
        cfg["asf_refresh"] = cfg["asf_refresh"] or DEFAULT_ASF_REFRESH
    if m == "ssf":
        cfg["r_granularity"] = cfg["r_granularity"] or "neuron"
    if m != "bptt":
        cfg["time_chunk"] = cfg["time_chunk"] or DEFAULT_TIME_CHUNK
    cfg["loss"] = cfg["loss"] or DEFAULT_LOSS[m]
    cfg["lr"] = DEFAULT_LR[cfg["optimizer"]] if cfg["lr"] is None else cfg["lr"]
    if cfg["optimizer"] == "sgd" and cfg["momentum"] is None:
        cfg["momentum"] = DEFAULT_MOMENTUM
    if cfg["neuron"] == "if":
        cfg["lam"] = 1.0
    sg = get_surrogate(cfg["surrogate"])
    cfg["surrogate"] = f"{sg.name}:{sg.a:g}"
    if cfg["dspike_adapt"]:
        if sg.name != "dspike":
            raise ValueError(f"--dspike-adapt needs --surrogate dspike, got --surrogate "
                             f"{args.surrogate!r}")
        if m != "bptt":
            raise ValueError(f"--dspike-adapt needs --method bptt: the {m} backward does not "
                             "use the surrogate gradient, so its temperature changes nothing")
    else:
        cfg["fdg_samples"] = None
    if cfg["tit"] is not None:
        cfg["stages"] = [list(s) for s in parse_tit(cfg["tit"])]
        cfg["epochs"] = sum(e for _, e in cfg["stages"])
        cfg["T"] = cfg["stages"][0][0]
        cfg["tit_lr"] = cfg["lr"] if cfg["tit_lr"] is None else cfg["tit_lr"]
    else:
        cfg["stages"] = [[cfg["T"], cfg["epochs"]]]
    for name in ("lr", "tit_lr"):
        if cfg.get(name) is not None and cfg[name] <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {cfg[name]!r}")
    return cfg


# ================================================================================================
# building blocks
# ================================================================================================

def build_model(cfg: dict[str, Any], input_shape: Sequence[int], num_classes: int) -> nn_.Module:
    """The network of ``cfg`` (on the host; move it with ``.to(device)``)."""
    lam, v_th, reset, sg = cfg["lam"], cfg["v_th"], cfg["reset"], cfg["surrogate"]
    if cfg["neuron"] == "lif":
        neuron = lambda: nn_.LIF(lam, v_th, reset, sg)
    else:
        neuron = lambda: nn_.IF(v_th, reset, sg)
    return make_model(cfg["model"], tuple(input_shape), num_classes, neuron,
                      tdbn_alpha=cfg["tdbn_alpha"], v_th=v_th, seed=cfg["seed"],
                      dtype=np.dtype(cfg["dtype"]))


def build_method(cfg: dict[str, Any]) -> Method:
    """The training method of ``cfg``, given only the options that apply to it."""
    m = cfg["method"]
    opts: dict[str, Any] = {}
    if m != "bptt":
        opts["time_chunk"] = cfg["time_chunk"]
    if m == "asf":
        opts.update(asf_variant=cfg["asf_variant"], asf_refresh=cfg["asf_refresh"])
    if m == "ssf":
        opts["r_granularity"] = cfg["r_granularity"]
    return make_method(m, **opts)


def loss_functions(cfg: dict[str, Any]) -> tuple[Callable, Callable]:
    """``(forward(y, labels) -> (loss, cache), backward(cache) -> dy)`` of ``cfg["loss"]``."""
    name = cfg["loss"]
    if name == "sdt":
        return L.sdt_loss_forward, L.sdt_loss_backward
    if name == "tet":
        lam = cfg["tet_lambda"]
        return (lambda y, labels: L.tet_loss_forward(y, labels, lam=lam)), L.tet_loss_backward
    if name == "asf-mse":
        v_th = cfg["v_th"]
        return (lambda y, labels: L.asf_mse_loss_forward(y, labels, v_th=v_th),
                L.asf_mse_loss_backward)
    raise ValueError(f"loss must be one of {LOSSES}, got {name!r}")


def _seed_int(*keys: int) -> int:
    """A 32-bit seed derived from ``keys`` (run seed, epoch, stream): independent streams."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def _epoch_rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    """The generator of one random stream in one epoch: resuming at ``epoch`` draws exactly
    what the uninterrupted run would have drawn."""
    return np.random.default_rng(_seed_int(seed, epoch, stream))


# random streams of an epoch
_S_ORDER, _S_POISSON, _S_AUGMENT, _S_FDG, _S_FDG_INPUT = 0, 1, 2, 3, 4
_EVAL_EPOCH = 2**31 - 1  # the evaluation's Poisson stream: the same in every evaluation


def make_encoder(cfg: dict[str, Any], epoch: int | None, stream: int = _S_POISSON) -> Any:
    """The input encoder for a training epoch (``epoch``) or for evaluation (``None``); the
    Poisson encoder's spikes are seeded by (seed, epoch, stream)."""
    e = _EVAL_EPOCH if epoch is None else epoch
    return _make_encoder(cfg["encoder"], seed=_seed_int(cfg["seed"], e, stream))


def _device_batches(x: np.ndarray, y: np.ndarray, cfg: dict[str, Any],
                    order_rng: np.random.Generator, aug_rng: np.random.Generator,
                    n_batches: int, be: Any, dtype: Any) -> Iterator[tuple[Any, Any]]:
    """An epoch's training batches in seeded order, augmented if asked, moved to the device
    (one host-to-device copy per batch); at most ``n_batches``."""
    for b, (xb, yb) in enumerate(iterate_minibatches(x, y, cfg["batch_size"], shuffle=True,
                                                     rng=order_rng)):
        if b >= n_batches:
            return
        if cfg["augment"]:
            xb = augment_cifar(xb, aug_rng)
        yield be.asarray(xb, dtype=dtype), be.asarray(yb)


def spiking_layer_names(net: nn_.Module) -> list[tuple[str, nn_.LIF]]:
    """``(name, layer)`` of every spiking layer, bottom to top.  The name is the layer's index
    path in the nested Sequential / Residual containers and its kind: ``"2:LIF"``,
    ``"4.0.2:IF"``."""
    out: list[tuple[str, nn_.LIF]] = []

    def walk(m: nn_.Module, prefix: str) -> None:
        for i, c in enumerate(m.children()):
            path = f"{prefix}{i}"
            if isinstance(c, nn_.LIF):
                out.append((f"{path}:{'IF' if c.p.lam == 1.0 else 'LIF'}", c))
            walk(c, path + ".")

    walk(net, "")
    return out


def _first_weight(net: nn_.Module) -> tuple[str, Any]:
    for name, p in named_parameters(net).items():
        if name.endswith("W"):
            return name, p
    raise ValueError("net has no Linear or Conv2d weight")


# ---- neuron state that is not in the state_dict (ASF scale factors, surrogate) ---------------

def neuron_state(net: nn_.Module) -> list[dict[str, Any]]:
    """What a checkpoint must keep of each spiking layer beyond the state_dict."""
    return [{"S": float(n.S), "asf_tot": [float(v) for v in n._asf_tot],
             "surrogate": f"{n.p.surrogate.name}:{n.p.surrogate.a!r}"}
            for n in nn_.spiking_layers(net)]


def restore_neuron_state(net: nn_.Module, states: list[dict[str, Any]]) -> None:
    layers = nn_.spiking_layers(net)
    if len(layers) != len(states):
        raise ValueError(f"checkpoint has {len(states)} spiking layers, the network "
                         f"{len(layers)}")
    for n, s in zip(layers, states, strict=True):
        n.S = float(s["S"])
        n._asf_tot = [float(v) for v in s["asf_tot"]]
        n.set_surrogate(get_surrogate(s["surrogate"]))


# ================================================================================================
# evaluation and Dspike adaptation
# ================================================================================================

def evaluate_model(net: nn_.Module, method: Method, x: np.ndarray, y: np.ndarray, *, T: int,
                   encoder: Any, batch_size: int, device: str = "cpu", dtype: Any = np.float32,
                   loss_forward: Callable | None = None,
                   max_batches: int | None = None) -> dict[str, float]:
    """Test accuracy (and mean loss) of ``net`` in eval mode (BatchNorm running statistics).

    The batches go in order, without shuffling; ``encoder`` should be fresh (seeded) so that a
    Poisson evaluation is the same every time.  The network is left in eval mode.
    """
    be = backend.get_backend(device)
    net.eval()
    correct, n, loss_sum = 0, 0, 0.0
    for b, (xb, yb) in enumerate(iterate_minibatches(x, y, batch_size, shuffle=False)):
        if max_batches is not None and b >= max_batches:
            break
        xd, yd = be.asarray(xb, dtype=dtype), be.asarray(yb)
        out = method.forward(net, xd, T, encoder)
        correct += int((L.predict(out) == yd).sum())
        if loss_forward is not None:
            loss_sum += loss_forward(out, yd)[0] * len(yb)
        n += len(yb)
    return {"acc": correct / max(n, 1), "loss": loss_sum / max(n, 1), "n": n}


def adapt_dspike(net: nn_.Module, method: Method, x: Any, labels: Any, b: float,
                 loss_forward: Callable, loss_backward: Callable, *, n_samples: int,
                 rng: np.random.Generator, eps: float = FDG_EPS,
                 step: float = DSPIKE_STEP) -> tuple[float, dict[float, float]]:
    """One temperature update of Dspike's Algorithm 1 (Li et al., NeurIPS 2021, Sec. 4.2-4.3).

    ``x`` is one training batch, already encoded and time-major ``(T, B, ...)`` (so that every
    forward pass sees the same input spikes).  The finite-difference gradient (FDG, Dspike
    Eq. 10) of the loss of the true spiking network, ``(L(w + eps e_i) - L(w - eps e_i)) / 2 eps``,
    is computed for ``n_samples`` randomly chosen elements ``i`` of the first layer's weight
    (all of them when the layer is smaller; the paper uses the whole first layer, which costs
    two forward passes per weight -- too many for a 64 x 800 layer).  The surrogate gradient of
    the same elements is computed with the Dspike temperature ``b - step``, ``b`` and
    ``b + step`` (candidates <= 0 are skipped); every spiking layer is left with the one whose
    gradient has the highest cosine similarity with the FDG (ties keep ``b``).

    BatchNorm running statistics are restored afterwards; parameter gradients are zeroed.
    Returns ``(new b, {candidate b: cosine})``.
    """
    layers = nn_.spiking_layers(net)
    name, W = _first_weight(net)
    idx = np.sort(rng.choice(W.data.size, size=min(n_samples, W.data.size), replace=False))
    loss = (loss_forward, loss_backward)
    fdg = finite_difference_gradient(net, x, labels, [name], loss=loss, eps=eps,
                                     indices={name: idx})[name].reshape(-1)[idx]
    cos: dict[float, float] = {}
    for cand in (b, round(b - step, 6), round(b + step, 6)):
        if cand <= 0:
            continue
        for n in layers:
            n.set_surrogate(dspike(cand))
        _, g = method_gradients(net, method, x, labels, loss=loss)
        cos[cand] = cosine(backend.to_numpy(g[name]).reshape(-1)[idx], fdg)
    best = max(cos, key=lambda c: cos[c])  # first maximum: b itself on a tie
    for n in layers:
        n.set_surrogate(dspike(best))
    net.zero_grad()
    return best, cos


# ================================================================================================
# checkpoints
# ================================================================================================

def save_checkpoint(path: str | Path, net: nn_.Module, opt: Optimizer,
                    meta: dict[str, Any]) -> Path:
    """Write ``model/<key>``, ``optim/<key>`` arrays and a JSON ``meta`` (epoch, config, neuron
    state, ...) into one ``.npz``; atomically (a temporary file, then a rename)."""
    path = Path(path)
    arrays = {f"model/{k}": v for k, v in net.state_dict().items()}
    arrays.update({f"optim/{k}": v for k, v in opt.state_dict().items()})
    arrays["meta"] = np.array(json.dumps(meta))
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                                                dict[str, Any]]:
    """``(model state, optimizer state, meta)`` of a checkpoint written by
    :func:`save_checkpoint`.  Raises ``ValueError`` naming the file when it is not one."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ValueError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # noqa: BLE001 - BadZipFile, truncated file, ...
        raise ValueError(f"checkpoint {path} is not a readable .npz ({type(e).__name__}: {e})"
                         ) from None
    if "meta" not in arrays:
        raise ValueError(f"checkpoint {path} has no 'meta' entry: not written by "
                         "pysnn_ref.train")
    meta = json.loads(str(arrays.pop("meta")))
    model = {k[6:]: v for k, v in arrays.items() if k.startswith("model/")}
    optim = {k[6:]: v for k, v in arrays.items() if k.startswith("optim/")}
    return model, optim, meta


def checkpoint_path(run_dir_or_path: str | Path, which: str = "last") -> Path:
    """``RUN_DIR/<which>.npz`` for a run folder, the path itself for a file."""
    p = Path(run_dir_or_path).expanduser()
    if p.is_dir():
        if which not in ("best", "last"):
            raise ValueError(f"checkpoint must be 'best' or 'last', got {which!r}")
        p = p / f"{which}.npz"
    if not p.is_file():
        raise ValueError(f"checkpoint {p} does not exist (expected a run folder with "
                         "best.npz / last.npz, or an .npz file)")
    return p


def load(run_dir_or_path: str | Path, device: str = "cpu",
         checkpoint: str = "best") -> tuple[nn_.Module, dict[str, Any]]:
    """Rebuild a trained network from a run folder (its ``best.npz`` or ``last.npz``) or a
    checkpoint file.  Returns ``(net, config)``: the network on ``device`` in eval mode, and the
    run's configuration plus ``config["checkpoint"]`` (path, epoch, T, test_acc)."""
    path = checkpoint_path(run_dir_or_path, checkpoint)
    model_state, _, meta = read_checkpoint(path)
    cfg = dict(meta["config"])
    net = build_model(cfg, cfg["input_shape"], cfg["num_classes"])
    net.load_state_dict(model_state)
    restore_neuron_state(net, meta["neurons"])
    net.to(device)
    net.eval()
    cfg["checkpoint"] = {"path": str(path), "epoch": meta["epoch"], "T": meta["T"],
                         "test_acc": meta["test_acc"]}
    return net, cfg


# ================================================================================================
# the training loop
# ================================================================================================

def _stage_of(stages: list[list[int]], epoch: int) -> tuple[int, int, int]:
    """(stage index, T, first epoch of the stage) of a 0-based global ``epoch``."""
    start = 0
    for s, (T, E) in enumerate(stages):
        if epoch < start + E:
            return s, T, start
        start += E
    raise ValueError(f"epoch {epoch} is past the last stage")


def _default_out(cfg: dict[str, Any]) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{stamp}-{cfg['model']}-{cfg['method']}"
    out, k = base, 1
    while out.exists():
        k += 1
        out = base.with_name(f"{base.name}-{k}")
    return out


def _versions() -> dict[str, str]:
    import numba

    return {"pysnn_ref": __version__, "numpy": np.__version__, "numba": numba.__version__,
            "python": platform.python_version()}


def _fmt_time(s: float) -> str:
    return f"{s:.2f}s" if s < 100 else f"{s:.0f}s"


def train(cfg: dict[str, Any], *, resume: str | Path | None = None,
          log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the training described by ``cfg`` (see :func:`resolve_config`).

    ``resume``: a checkpoint to continue from (``cfg`` is then the checkpoint's configuration
    with the allowed overrides applied).  Returns a summary: ``test_acc`` (final epoch),
    ``best_test_acc``, ``best_epoch``, ``run_dir``, ``epochs``.

    Raises ``ValueError`` / ``GPUUnavailableError`` / ``DataError`` for bad input and
    :class:`~pysnn_ref.cli.NonFiniteLossError` when the loss becomes NaN or infinite.
    """
    if cfg["device"] == "cpu" and cfg.get("blas_threads", 0) > 0:
        backend.set_blas_threads(cfg["blas_threads"])
    return _train(cfg, resume, log or (lambda s: print(s, flush=True)))


def _train(cfg: dict[str, Any], resume: str | Path | None,
           log: Callable[[str], None]) -> dict[str, Any]:
    be = backend.get_backend(cfg["device"])          # fails early without a usable GPU
    device = cfg["device"]
    dtype = np.dtype(cfg["dtype"])
    data: Dataset = load_dataset(cfg["dataset"], cfg["data_dir"], seed=SPLIT_SEED)
    if cfg["augment"] and len(data.input_shape) != 3:
        raise ValueError(f"--augment needs image inputs (C, H, W), the {cfg['dataset']} inputs "
                         f"have shape {data.input_shape}")
    cfg["input_shape"] = list(data.input_shape)
    cfg["num_classes"] = int(data.num_classes)
    cfg["n_train"], cfg["n_test"] = int(len(data.y_train)), int(len(data.y_test))

    net = build_model(cfg, data.input_shape, data.num_classes)
    method = build_method(cfg)
    method.check_network(net)
    loss_fwd, loss_bwd = loss_functions(cfg)
    stages = cfg["stages"]
    total = sum(e for _, e in stages)

    start_epoch, best_acc, best_epoch, history = 0, -1.0, 0, []
    dspike_b = get_surrogate(cfg["surrogate"]).a if cfg["dspike_adapt"] else None
    optim_state = None
    if resume is not None:
        model_state, optim_state, meta = read_checkpoint(resume)
        net.load_state_dict(model_state)
        restore_neuron_state(net, meta["neurons"])
        start_epoch, best_acc, best_epoch = meta["epoch"], meta["best_acc"], meta["best_epoch"]
        if start_epoch > total:
            raise ValueError(f"--epochs: the checkpoint {resume} is at epoch {start_epoch}, "
                             f"past the {total} epochs asked for; give --epochs >= "
                             f"{start_epoch} (or a longer --tit)")
        if dspike_b is not None:
            dspike_b = meta.get("dspike_b", dspike_b)
    net.to(device)
    opt = make_optimizer(cfg["optimizer"], net.parameters(), cfg["lr"],
                         weight_decay=cfg["weight_decay"],
                         **({"momentum": cfg["momentum"]} if cfg["optimizer"] == "sgd" else {}))
    if optim_state is not None:
        opt.load_state_dict(optim_state)  # buffers go to the parameters' device
    named_spiking = spiking_layer_names(net)
    layer_names = [name for name, _ in named_spiking]
    spiking = [layer for _, layer in named_spiking]
    n_params = sum(int(p.data.size) for p in net.parameters())

    run_dir = Path(cfg["out"]) if cfg["out"] else _default_out(cfg)
    cfg["out"] = str(run_dir)
    metrics_path = run_dir / "metrics.jsonl"
    if resume is None and (run_dir / "config.json").exists():
        raise ValueError(f"--out {run_dir} already holds a run (config.json); choose another "
                         f"folder, or continue it with --resume {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume is not None:
        # keep the history up to the checkpoint (from this folder, or the resumed run's)
        src = Path(resume).parent / "metrics.jsonl"
        for path in (metrics_path, src):
            if path.is_file():
                history = [json.loads(s) for s in path.read_text().splitlines() if s.strip()]
                history = [m for m in history if m["epoch"] <= start_epoch]
                break
    metrics_path.write_text("".join(json.dumps(m) + "\n" for m in history))
    cfg["versions"] = _versions()
    cfg["model_repr"] = repr(net)
    cfg["n_parameters"] = n_params
    (run_dir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")

    log(f"pysnn_ref {__version__} | {cfg['dataset']}: {cfg['n_train']} train / "
        f"{cfg['n_test']} test, input {tuple(data.input_shape)} | {cfg['model']} "
        f"({n_params:,} parameters, {len(layer_names)} spiking layers) | {device}")
    tit = f" | TIT {cfg['tit']}" if cfg["tit"] else ""
    log(f"method={cfg['method']} loss={cfg['loss']} neuron={cfg['neuron']} "
        f"surrogate={cfg['surrogate']} T={cfg['T']} epochs={total} batch={cfg['batch_size']} "
        f"{cfg['optimizer']} lr={cfg['lr']:g} {cfg['schedule']}{tit} | run folder {run_dir}")
    if resume is not None:
        log(f"resumed from {resume} at epoch {start_epoch}/{total}")

    from tqdm import tqdm

    def meta_for(epoch: int, T: int, test_acc: float) -> dict[str, Any]:
        return {"epoch": epoch, "T": T, "test_acc": test_acc, "best_acc": best_acc,
                "best_epoch": best_epoch, "dspike_b": dspike_b, "neurons": neuron_state(net),
                "config": cfg}

    x_tr, y_tr = data.x_train, data.y_train
    n_batches = math.ceil(len(y_tr) / cfg["batch_size"])
    if cfg["max_batches"] is not None:
        n_batches = min(n_batches, cfg["max_batches"])
    last_acc = None
    for epoch in range(start_epoch, total):
        stage, T, stage_start = _stage_of(stages, epoch)
        stage_lr = cfg["lr"] if stage == 0 else cfg["tit_lr"]
        sched = make_schedule(cfg["schedule"], stage_lr, stages[stage][1])
        opt.lr = sched.lr_at(epoch - stage_start)
        if stage > 0 and epoch == stage_start:
            log(f"time inheritance: stage {stage + 1}/{len(stages)}, T {stages[stage - 1][0]}"
                f" -> {T}, same weights and optimizer state")
        method.check_network(net)
        method.begin_epoch(net, epoch)
        encoder = make_encoder(cfg, epoch)
        order_rng = _epoch_rng(cfg["seed"], epoch, _S_ORDER)
        aug_rng = _epoch_rng(cfg["seed"], epoch, _S_AUGMENT)
        net.train()
        t_fwd = t_bwd = loss_sum = 0.0
        correct = seen = 0
        rate_sum = np.zeros(len(layer_names))
        dspike_cos = None
        t_epoch = time.perf_counter()
        batches = _device_batches(x_tr, y_tr, cfg, order_rng, aug_rng, n_batches, be, dtype)
        if cfg["dspike_adapt"]:  # on the epoch's first batch, which is then trained on as usual
            first = next(batches)
            t0 = time.perf_counter()
            xe = make_encoder(cfg, epoch, _S_FDG_INPUT).encode(first[0], T)  # fixed spikes
            dspike_b, cos = adapt_dspike(net, method, xe, first[1], dspike_b, loss_fwd,
                                         loss_bwd, n_samples=cfg["fdg_samples"],
                                         rng=_epoch_rng(cfg["seed"], epoch, _S_FDG))
            dspike_cos = cos[dspike_b]
            cands = " ".join(f"{c:g}:{v:.3f}" for c, v in sorted(cos.items()))
            n_fdg = min(cfg["fdg_samples"], int(_first_weight(net)[1].data.size))
            log(f"dspike: epoch {epoch + 1} b={dspike_b:g} cos={dspike_cos:.3f} (b:cos "
                f"{cands}; FDG of {n_fdg} first-layer weights, "
                f"{time.perf_counter() - t0:.1f}s)")
            batches = itertools.chain([first], batches)
        bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{total}", leave=False,
                   disable=cfg["no_progress"], file=sys.stderr, dynamic_ncols=True)
        for b, (xd, yd) in enumerate(batches):
            net.zero_grad()
            t0 = time.perf_counter()
            out = method.forward(net, xd, T, encoder)
            be.synchronize()
            t1 = time.perf_counter()
            loss, cache = loss_fwd(out, yd)
            if not math.isfinite(loss):
                bar.close()
                good = (f"last.npz holds epoch {epoch}" if epoch > 0
                        else "no checkpoint was written")
                raise NonFiniteLossError(
                    f"loss became {loss} at epoch {epoch + 1}, batch {b + 1} (of {n_batches}, "
                    f"T={T}, lr={opt.lr:g}); training stopped ({good}) -- lower --lr or check "
                    "the data")
            dy = loss_bwd(cache)
            t2 = time.perf_counter()
            method.backward(net, dy)
            be.synchronize()
            t3 = time.perf_counter()
            opt.step()
            t_fwd += t1 - t0
            t_bwd += t3 - t2
            nb = int(yd.shape[0])
            loss_sum += loss * nb
            correct += int((L.predict(out) == yd).sum())
            seen += nb
            for i, n in enumerate(spiking):
                rate_sum[i] += n.firing_rate * nb
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}",
                            refresh=False)
        bar.close()
        ev = evaluate_model(net, method, data.x_test, data.y_test, T=T,
                            encoder=make_encoder(cfg, None), batch_size=cfg["batch_size"],
                            device=device, dtype=dtype, loss_forward=loss_fwd,
                            max_batches=cfg["max_eval_batches"])
        net.train()
        rates = rate_sum / max(seen, 1)
        rec = {"epoch": epoch + 1, "stage": stage + 1, "T": T, "lr": opt.lr,
               "loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
               "test_loss": ev["loss"], "test_acc": ev["acc"],
               "firing_rate": float(rates.mean()) if len(rates) else 0.0,
               "firing_rates": {k: float(r) for k, r in zip(layer_names, rates, strict=True)},
               "forward_s": t_fwd, "backward_s": t_bwd,
               "epoch_s": time.perf_counter() - t_epoch}
        if dspike_b is not None:
            rec.update(dspike_b=dspike_b, dspike_cos=dspike_cos)
        if cfg["method"] == "asf":
            rec["asf_S"] = [float(n.S) for n in nn_.spiking_layers(net)]
        with metrics_path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        history.append(rec)
        last_acc = ev["acc"]
        if ev["acc"] > best_acc:
            best_acc, best_epoch = ev["acc"], epoch + 1
            save_checkpoint(run_dir / "best.npz", net, opt, meta_for(epoch + 1, T, ev["acc"]))
        save_checkpoint(run_dir / "last.npz", net, opt, meta_for(epoch + 1, T, ev["acc"]))
        log(f"epoch {epoch + 1:>3}/{total} T={T} loss={rec['loss']:.4f} "
            f"train_acc={rec['train_acc']:.4f} test_acc={ev['acc']:.4f} "
            f"rate={rec['firing_rate']:.3f} fwd={_fmt_time(t_fwd)} bwd={_fmt_time(t_bwd)} "
            f"lr={opt.lr:.3g}")

    if last_acc is None:  # nothing left to train: report the checkpoint's network
        T = _stage_of(stages, total - 1)[1]
        log(f"nothing to train: the checkpoint is at epoch {start_epoch} of {total}")
        last_acc = evaluate_model(net, method, data.x_test, data.y_test, T=T,
                                  encoder=make_encoder(cfg, None),
                                  batch_size=cfg["batch_size"], device=device, dtype=dtype,
                                  max_batches=cfg["max_eval_batches"])["acc"]
    if history:
        pngs: list[Path] = []
        if not cfg.get("no_plots"):
            from .plots import plot_run

            pngs = plot_run(run_dir, f"{cfg['model']} / {cfg['method']} / {cfg['dataset']}")
        log(f"wrote {run_dir}/" + ", ".join(["config.json", "metrics.jsonl", "best.npz",
                                             "last.npz"] + [p.name for p in pngs]))
    log(f"best test_acc={best_acc:.4f} at epoch {best_epoch} (best.npz); final epoch below")
    log(f"test_acc={last_acc:.4f}")
    return {"test_acc": last_acc, "best_test_acc": best_acc, "best_epoch": best_epoch,
            "run_dir": str(run_dir), "epochs": total, "history": history}


# ================================================================================================
# entry points
# ================================================================================================

def _resume_config(args: argparse.Namespace, explicit: set[str]) -> tuple[dict[str, Any], Path]:
    """The configuration of a resumed run: the checkpoint's, with the allowed overrides."""
    path = checkpoint_path(args.resume, "last")
    _, _, meta = read_checkpoint(path)
    cfg = dict(meta["config"])
    bad = sorted(explicit - set(RESUME_OVERRIDES) - {"resume"})
    if bad:
        flags = ", ".join("--" + b.replace("_", "-") for b in bad)
        allowed = ", ".join("--" + o.replace("_", "-") for o in RESUME_OVERRIDES)
        raise ValueError(f"--resume takes the settings from the checkpoint; {flags} cannot "
                         f"change (only {allowed} can)")
    for k in explicit & set(RESUME_OVERRIDES):
        cfg[k] = getattr(args, k)
    if "out" not in explicit:
        cfg["out"] = str(path.parent)
    if "tit" in explicit or "epochs" in explicit:
        if cfg.get("tit"):
            cfg["stages"] = [list(s) for s in parse_tit(cfg["tit"])]
            cfg["tit_lr"] = cfg.get("tit_lr") or cfg["lr"]
        else:
            cfg["stages"] = [[cfg["T"], cfg["epochs"]]]
        cfg["epochs"] = sum(e for _, e in cfg["stages"])
    return cfg, path


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and train; errors propagate (see :func:`cli` for the exit codes)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    explicit = explicit_args(argv)
    if args.resume is not None:
        cfg, ckpt = _resume_config(args, explicit)
        train(cfg, resume=ckpt)
        return 0
    cfg = resolve_config(args, explicit)
    if cfg["tit"] is not None and "epochs" in explicit:
        print(f"note: --epochs {args.epochs} is ignored, --tit {cfg['tit']} sets "
              f"{cfg['epochs']} epochs", flush=True)
    if cfg["tit"] is not None and "T" in explicit:
        print(f"note: --T {args.T} is ignored, --tit {cfg['tit']} sets T per stage", flush=True)
    train(cfg)
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """``main`` with the CLI's error handling: exit code 2 (bad input) or 3 (NaN loss), one
    line on stderr, never a traceback."""
    return run_main(main, PROG, argv)


if __name__ == "__main__":
    sys.exit(cli())

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
reload with :func:`pysnn_ref.train.checkpoint.load`, continue with ``--resume``), ``curves.png`` and
``firing_rates.png`` (:mod:`pysnn_ref.train.plots`).  The last line printed is ``test_acc=0.XXXX``:
the test accuracy of the final epoch.

Exit codes: 0 done; 2 bad input (one line on stderr, never a traceback); 3 the loss became NaN
or infinite (one line naming the epoch and the batch); 130 interrupted (Ctrl-C); 143 terminated
(SIGTERM); both keep the run folder's last complete checkpoint.

This module is the command line only.  The training loop is :mod:`pysnn_ref.train.loop`
(:func:`~pysnn_ref.train.loop.train`, :func:`~pysnn_ref.train.loop.run_epoch`,
:func:`~pysnn_ref.train.loop.train_step`), checkpoints :mod:`pysnn_ref.train.checkpoint`, the run
folder and the log lines :mod:`pysnn_ref.train.runlog`, the network / method / loss / encoder of a
configuration :mod:`pysnn_ref.train.config`.
"""


from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import backend
from ..cli import ArgumentParser, finite_float, nonnegative_int, positive_int, run_main
from ..data import DATASETS, ENCODERS
from ..data.fetch import DOWNLOADABLE, MIRROR_ENV, download
from ..functional.dsr import DSR_SPREADS
from ..functional.surrogate import get_surrogate
from ..methods import DEFAULT_TIME_CHUNK, FAMILY_FLOW, METHODS, ONLINE, OTTT_UPDATES
from ..models import LAYER_STRINGS, LSTM_V_TH, MODELS, PAPER_MODELS
from ..optim import OPTIMIZERS, SCHEDULES
from .checkpoint import checkpoint_path, read_checkpoint
from .config import LOSSES, RunConfig
from .flags import check_flags
from .loop import train

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
DEFAULT_LOSS = {"bptt": "sdt", "ssf": "sdt", "asf": "sdt", "dsr": "sdt", "rate": "sdt",
                "ottt": "tet", "sltt": "tet"}
#: flags that ``--resume`` may change; every other setting comes from the checkpoint
RESUME_OVERRIDES = ("epochs", "tit", "tit_lr", "device", "no_progress", "no_plots",
                    "max_batches", "max_eval_batches", "out", "blas_threads", "distributed")

__all__ = ["DEFAULTS", "build_parser", "explicit_args", "parse_tit", "resolve_config", "main",
           "cli"]


# ================================================================================================
# command line
# ================================================================================================

def _asf_refresh(s: str) -> int | str:
    if s == "batch":
        return s
    try:
        return positive_int(s)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected an integer K >= 1 or 'batch', got {s!r}") from None


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
exit codes: 0 ok, 2 bad input (one line on stderr), 3 loss became NaN/inf, 130 interrupted,
143 terminated (SIGTERM).
guide: docs/training.md"""


def _add_data_args(p: ArgumentParser, D: dict[str, Any]) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default=D["dataset"],
                   help="digits: scikit-learn's 8x8 digits (built in, 80/20 split with seed 0); "
                        "mnist / fashion-mnist: IDX files in --data-dir; cifar10: the python "
                        "batches in --data-dir; npz: your arrays x, y (x_test, y_test) in the "
                        ".npz file --data-dir; digits-rows: the digits as sequences, one "
                        "8-pixel row per step (--encoder sequence). Inputs are standardised "
                        "per channel.")
    g.add_argument("--data-dir", default=None,
                   help="folder (npz: file) holding the dataset files; not used by digits "
                        "(with --download: where the files go, default ./data)")
    g.add_argument("--download", action="store_true",
                   help=f"fetch {', '.join(DOWNLOADABLE)} into --data-dir first (checked "
                        "against the published MD5s; files already there are kept; mirrors: "
                        f"the environment variable {MIRROR_ENV})")
    g.add_argument("--encoder", choices=ENCODERS, default=D["encoder"],
                   help="direct: the analog input at every step; poisson: Bernoulli spikes "
                        "with rate |x| (signed), seeded per epoch; events / sequence: the "
                        "per-sample steps of nmnist / digits-rows")
    g.add_argument("--augment", action="store_true",
                   help="random crop (4 px zero padding) + horizontal flip of training images "
                        "(the CIFAR augmentation of ASF-BP and TET)")


def _add_network_args(p: ArgumentParser, D: dict[str, Any]) -> None:
    g = p.add_argument_group("network and neurons")
    g.add_argument("--model", choices=MODELS, default=D["model"],
                   help="mlp: FC800; lenet: 16C3-AP2-32C3-AP2-FC128; vgg7; snn5 and vggsnn "
                        "(TET, with BN); resnet (small spiking ResNet, BN); lstm (spiking LSTM "
                        "on sequences, BPTT only); see pysnn_ref.models")
    g.add_argument("--neuron", choices=("lif", "if"), default=D["neuron"],
                   help="lif: leaky integrate-and-fire with decay --lam; if: integrate-and-fire "
                        "(lam = 1, ASF-BP's neuron)")
    g.add_argument("--lam", type=finite_float, default=D["lam"],
                   help="LIF membrane decay per step, in (0, 1] (lif only)")
    g.add_argument("--v-th", type=finite_float, default=D["v_th"], help="firing threshold, > 0")
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
    g.add_argument("--fdg-samples", type=positive_int, default=D["fdg_samples"],
                   help="--dspike-adapt: how many first-layer weights (a seeded random subset) "
                        "get a finite-difference gradient; 2 forward passes each")
    g.add_argument("--tdbn-alpha", type=finite_float, default=None,
                   help="models with BatchNorm: use tdBN with this alpha (normalised input "
                        "scaled by alpha * v_th, Dspike Eqs. 4-5) (default: none, plain BN)")
    g.add_argument("--width", type=finite_float, default=1.0,
                   help="the SSF Table 1 networks (resnet19, preact_resnet18, vgg11, "
                        "sew_resnet34): multiply every channel count by this (reduced-width "
                        "runs, benchmarks/ssf_accuracy.py)")
    g.add_argument("--dtype", choices=("float32", "float64"), default=D["dtype"],
                   help="floating-point type of parameters and activations")


def _add_method_args(p: ArgumentParser, D: dict[str, Any]) -> None:
    g = p.add_argument_group("training method and loss")
    g.add_argument("--method", choices=METHODS, default=D["method"],
                   help="bptt: exact backprop through time (memory ~ T); asf: accumulated "
                        "spiking flow (ASF-BP); ssf: stabilized spiking flow (SSF); dsr: "
                        "differentiation on spike representation (DSR); rate: rate-based "
                        "backpropagation; asf, ssf, dsr and rate keep no per-step history "
                        "and back-propagate once; ottt: online training through time (OTTT), "
                        "sltt: spatial learning through time (SLTT) -- each step forwarded "
                        "and back-propagated on its own, the neurons' past cut (mlp, lenet)")
    g.add_argument("--ottt-update", choices=OTTT_UPDATES, default=None,
                   help="ottt: A sums the per-step gradients, one optimizer step per batch "
                        "(OTTT_A); O steps the optimizer after every time step (OTTT_O) "
                        "(default: A)")
    g.add_argument("--sltt-k", type=positive_int, default=None,
                   help="sltt: SLTT-K, only K of the T steps (drawn per batch) get a backward "
                        "(default: all T)")
    g.add_argument("--dsr-alpha", type=finite_float, default=None,
                   help="dsr: fire at alpha v_th, in (0, 1] (the firing-mechanism "
                        "modification; 1 = DSR-noF) (default: 1)")
    g.add_argument("--dsr-spread", choices=DSR_SPREADS, default=None,
                   help="dsr: exact (the clamp network's gradient) or authors (the code's "
                        "uniform spreading) (default: exact)")
    g.add_argument("--dsr-train-threshold", action="store_true",
                   help="dsr: train every spiking layer's v_th (bounded below by 5e-4)")
    g.add_argument("--rate-detach", action="store_true",
                   help="rate: cut the eligibility's recursion through the reset")
    g.add_argument("--loss", choices=LOSSES, default=None,
                   help="sdt: cross-entropy of the time-averaged output (TET Eq. 7); tet: "
                        "per-step cross-entropy + MSE regulariser (TET Eq. 13); asf-mse: MSE "
                        "of the accumulated output membrane (ASF Eq. 6) (default: sdt)")
    g.add_argument("--tet-lambda", type=finite_float, default=D["tet_lambda"],
                   help="--loss tet: weight of the MSE regulariser (TET's lambda)")
    g.add_argument("--T", type=positive_int, default=D["T"], help="time steps per sample")
    g.add_argument("--time-chunk", type=positive_int, default=None,
                   help=f"flow methods: time steps streamed through the network at once "
                        f"(default: auto -- {DEFAULT_TIME_CHUNK}, or all T in one pass for a "
                        "BatchNorm network whose largest T-step activation fits 1 GiB)")
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


def _add_optim_args(p: ArgumentParser, D: dict[str, Any]) -> None:
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=positive_int, default=D["epochs"],
                   help="training epochs (ignored when --tit is given)")
    g.add_argument("--batch-size", type=positive_int, default=D["batch_size"],
                   help="mini-batch size (training and test)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=D["optimizer"],
                   help="sgd (momentum, L2 weight decay) or adam")
    g.add_argument("--lr", type=finite_float, default=None,
                   help=f"learning rate at epoch 0 (default: {DEFAULT_LR['adam']:g} for adam, "
                        f"{DEFAULT_LR['sgd']:g} for sgd)")
    g.add_argument("--momentum", type=finite_float, default=None,
                   help=f"sgd only: momentum (default: {DEFAULT_MOMENTUM:g})")
    g.add_argument("--weight-decay", type=finite_float, default=D["weight_decay"],
                   help="L2 penalty added to the gradient")
    g.add_argument("--schedule", choices=SCHEDULES, default=D["schedule"],
                   help="learning rate per epoch: cosine (to 0 at the last epoch), step (x0.1 "
                        "every third of the epochs) or constant")
    g.add_argument("--tit", default=None, metavar="T:EPOCHS,...",
                   help="time inheritance training (Dspike Sec. 4.4): stages run one after "
                        "another with the same weights and optimizer state, e.g. '6:30,2:10' "
                        "trains 30 epochs at T=6, then 10 at T=2 (increasing T works too); "
                        "each stage restarts --schedule; replaces --T and --epochs")
    g.add_argument("--tit-lr", type=finite_float, default=None,
                   help="--tit: learning rate of the stages after the first (default: --lr; "
                        "the Dspike paper uses 0.4 x the first stage's)")


def _add_run_args(p: ArgumentParser, D: dict[str, Any]) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=nonnegative_int, default=D["seed"],
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
                        "--max-eval-batches, --blas-threads, --distributed")
    g.add_argument("--blas-threads", type=nonnegative_int, default=D["blas_threads"],
                   help="cpu: threads of NumPy's BLAS during the run (0: leave it alone). The "
                        "Numba kernels already use every core; BLAS threads of their own "
                        "compete with them and made epochs 1.6-10x slower on a 2-core machine")
    g.add_argument("--no-plots", action="store_true",
                   help="do not draw curves.png and firing_rates.png (saves ~1-2 s per run)")
    g.add_argument("--no-progress", action="store_true",
                   help="no progress bar (the per-epoch summary lines are still printed)")
    g.add_argument("--max-batches", type=positive_int, default=None,
                   help="train on at most N mini-batches per epoch (quick tests) (default: all)")
    g.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI: start with mpiexec -n W; each rank trains on "
                        "its slice of every --batch-size batch, gradients are all-reduced; "
                        "rank 0 writes the run folder (needs the [mpi] extra; "
                        "docs/distributed.md)")
    g.add_argument("--max-eval-batches", type=positive_int, default=None,
                   help="test on at most N mini-batches (quick tests) (default: the whole "
                        "test set)")


def build_parser() -> ArgumentParser:
    """The ``python -m pysnn_ref.train`` argument parser (``--help`` shows every default)."""
    D = DEFAULTS
    p = ArgumentParser(
        prog=PROG,
        description="Train a spiking neural network with BPTT, ASF or SSF.\nWith no flags: "
                    "the 8x8 digits, an MLP (800 LIF neurons), T=4, 20 epochs on the CPU.",
        epilog=EPILOG)
    _add_data_args(p, D)
    _add_network_args(p, D)
    _add_method_args(p, D)
    _add_optim_args(p, D)
    _add_run_args(p, D)
    return p


def explicit_args(argv: Sequence[str] | None) -> set[str]:
    """Names of the flags given on the command line (not left at their defaults)."""
    p = build_parser()
    for a in p._actions:  # argparse lists its actions nowhere public
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


def resolve_config(args: argparse.Namespace, explicit: set[str]) -> RunConfig:
    """Every setting of a run, with defaults that depend on other flags resolved: the run's
    :class:`~pysnn_ref.train.config.RunConfig` (validated there: types, choices, ranges).

    Raises ``ValueError`` (naming the flag) for combinations that make no sense, e.g. an ASF
    option with ``--method ssf``: a flag that would be silently ignored is an error.
    """
    cfg = {k: v for k, v in vars(args).items() if k not in ("resume", "download")}

    def only(flag_dest: str, ok: bool, what: str) -> None:
        if flag_dest in explicit and not ok:
            flag = "--" + flag_dest.replace("_", "-")
            raise ValueError(f"{flag} only applies to {what}")

    m = cfg["method"]
    only("asf_variant", m == "asf", "--method asf")
    only("asf_refresh", m == "asf", "--method asf")
    only("r_granularity", m == "ssf", "--method ssf")
    only("time_chunk", m not in ("bptt", *ONLINE),
         "--method asf, ssf, dsr and rate (bptt runs all T at once, ottt / sltt one step "
         "at a time)")
    for flag in ("dsr_alpha", "dsr_spread", "dsr_train_threshold"):
        only(flag, m == "dsr", "--method dsr")
    only("rate_detach", m == "rate", "--method rate")
    only("width", cfg["model"] in PAPER_MODELS, "the SSF Table 1 networks (--model resnet19, "
         "preact_resnet18, vgg11, sew_resnet34)")
    only("ottt_update", m == "ottt", "--method ottt")
    only("sltt_k", m == "sltt", "--method sltt")
    _check_method_model(m, cfg, explicit)
    only("lam", cfg["neuron"] == "lif", "--neuron lif (IF has lam = 1)")
    only("momentum", cfg["optimizer"] == "sgd", "--optimizer sgd")
    only("fdg_samples", cfg["dspike_adapt"], "--dspike-adapt")
    only("tit_lr", cfg["tit"] is not None, "--tit")
    only("data_dir", cfg["dataset"] not in ("digits", "digits-rows"),
         "datasets read from files (digits and digits-rows are built in)")
    if cfg["model"] == "lstm":  # the spiking LSTM has no LIF/IF neurons: their flags do nothing
        for flag in ("neuron", "lam", "reset", "tdbn_alpha", "dspike_adapt"):
            only(flag, False, "models with LIF/IF neurons, not --model lstm")
        if "v_th" not in explicit:
            cfg["v_th"] = LSTM_V_TH  # its membrane o tanh(c) lies in (-1, 1)
    if cfg["loss"] != "tet":
        only("tet_lambda", False, "--loss tet")
    if m == "asf":
        cfg["asf_variant"] = cfg["asf_variant"] or "paper"
        cfg["asf_refresh"] = cfg["asf_refresh"] or DEFAULT_ASF_REFRESH
    if m == "ssf":
        cfg["r_granularity"] = cfg["r_granularity"] or "neuron"
    if m == "ottt":
        cfg["ottt_update"] = cfg["ottt_update"] or "A"
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
    rc = RunConfig.from_dict(cfg)   # types, choices, ranges: one ValueError naming the flag
    check_flags(rc, explicit)       # memory estimate, flags the method does not use
    return rc


def _check_method_model(m: str, cfg: dict[str, Any], explicit: set[str]) -> None:
    """Start-up refusals of a method for a model it cannot train (before any data is read);
    DSR's reset is soft unless --reset says otherwise (then it is refused)."""
    model = cfg["model"]
    if m != "bptt" and model in ("lstm", "window"):
        raise ValueError(f"--method {m} cannot train --model {model}: its recurrence has no "
                         "equivalent rate network; use method 'bptt' (--method bptt)")
    if m in FAMILY_FLOW and (model in LAYER_STRINGS or model == "resnet"):
        # DSR trains BatchNorm (IF, or lam < 1 with the authors' spread: Method checks that)
        spec, bn = LAYER_STRINGS.get(model, ("", True))
        if (bn and m == "rate") or "MP" in spec:
            raise ValueError(f"--method {m} cannot train --model {model} (its "
                             f"{'max pooling' if 'MP' in spec else 'BatchNorm'} has no {m} "
                             "backward); use --model mlp or lenet")
    bn_model = model in PAPER_MODELS or model == "resnet" or LAYER_STRINGS.get(model, ("",
                                                                                   False))[1]
    if (m == "dsr" and bn_model and cfg["neuron"] == "lif" and cfg["lam"] != 1.0
            and (cfg["dsr_spread"] or "exact") == "exact"):
        raise ValueError(f"--dsr-spread exact with --neuron lif (lam < 1) cannot train the "
                         f"BatchNorm of --model {model} (DSR's gradient then differs per step); "
                         "use --dsr-spread authors or --neuron if")
    if m == "dsr":
        if "reset" in explicit and cfg["reset"] != "soft":
            raise ValueError("--reset: --method dsr defines only the soft reset, got "
                             f"{cfg['reset']!r}")
        cfg["reset"] = "soft"
    if m in ONLINE:
        _check_online(m, cfg)


def _check_online(m: str, cfg: dict[str, Any]) -> None:
    """OTTT / SLTT: the networks they run (flat: mlp, lenet), a per-step loss (tet), one
    process (--sltt-k <= T is a range: flags.check_ranges)."""
    if cfg["model"] not in ("mlp", "lenet"):
        raise ValueError(f"--method {m} cannot train --model {cfg['model']} (it runs one step "
                         "at a time through Linear, Conv2d, LIF/IF, AvgPool2d and Flatten "
                         "only); use --model mlp or lenet")
    if cfg["loss"] not in (None, "tet"):
        raise ValueError(f"--loss {cfg['loss']}: --method {m} trains on a loss per time step, "
                         "and only --loss tet (TET's per-step loss) is one; use --loss tet")
    if cfg["distributed"]:
        raise ValueError(f"--distributed does not combine with --method {m} (not implemented "
                         "for the online methods)")


# ================================================================================================
# entry points
# ================================================================================================

def _resume_config(args: argparse.Namespace, explicit: set[str]) -> tuple[RunConfig, Path]:
    """The configuration of a resumed run: the checkpoint's (validated like any configuration
    read from disk), with the allowed overrides."""
    path = checkpoint_path(args.resume, "last")
    _, _, meta = read_checkpoint(path)
    cfg = RunConfig.from_dict(meta["config"], f"checkpoint {path} (meta 'config')")
    bad = sorted(explicit - set(RESUME_OVERRIDES) - {"resume"})
    if bad:
        flags = ", ".join("--" + b.replace("_", "-") for b in bad)
        allowed = ", ".join("--" + o.replace("_", "-") for o in RESUME_OVERRIDES)
        raise ValueError(f"--resume takes the settings from the checkpoint; {flags} cannot "
                         f"change (only {allowed} can)")
    over = {k: getattr(args, k) for k in explicit & set(RESUME_OVERRIDES)}
    if "out" not in explicit:
        over["out"] = str(path.parent)
    if "tit" in explicit or "epochs" in explicit:
        tit = over.get("tit", cfg.tit)
        if tit:
            stages = [tuple(s) for s in parse_tit(tit)]
            over["tit_lr"] = over.get("tit_lr", cfg.tit_lr) or cfg.lr
        else:
            stages = [(cfg.T, over.get("epochs", cfg.epochs))]
        over.update(stages=stages, epochs=sum(e for _, e in stages))
    return cfg.replace(**over), path


def fetch(cfg: RunConfig) -> RunConfig:
    """``--download``: fetch the dataset into ``cfg.data_dir`` (default ``./data``); the
    configuration with that folder."""
    if cfg.dataset not in DOWNLOADABLE:
        raise ValueError(f"--download only applies to --dataset {', '.join(DOWNLOADABLE)}, "
                         f"not {cfg.dataset}")
    if cfg.data_dir is None:
        cfg = cfg.replace(data_dir="data")
    download(cfg.dataset, cfg.data_dir)
    return cfg


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
    if args.download:
        cfg = fetch(cfg)
    if cfg.tit is not None and "epochs" in explicit:
        print(f"note: --epochs {args.epochs} is ignored, --tit {cfg.tit} sets "
              f"{cfg.epochs} epochs", flush=True)
    if cfg.tit is not None and "T" in explicit:
        print(f"note: --T {args.T} is ignored, --tit {cfg.tit} sets T per stage", flush=True)
    train(cfg)
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """``main`` with the CLI's error handling: exit code 2 (bad input) or 3 (NaN loss), one
    line on stderr, never a traceback."""
    return run_main(main, PROG, argv)


if __name__ == "__main__":
    sys.exit(cli())

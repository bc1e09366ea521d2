"""Checks of a run's settings that need no data: the documented valid range of every numeric
setting, a memory estimate of the encoded input, and flags the chosen method or model does not
use (docs/reliability.md, "Ranges").  Called by :func:`pysnn_ref.train.__main__.resolve_config`
before any data is loaded or folder made; :func:`check_model_flags` once the network is built.
"""

from __future__ import annotations

import math
from typing import Any

from .. import nn as nn_
from .._check import machine_memory
from ..functional.surrogate import get_surrogate

__all__ = ["RANGES", "MAX_T", "MAX_BATCH", "check_ranges", "input_bytes", "check_memory",
           "check_unused_flags", "check_model_flags", "check_flags"]

MAX_T = 10_000          #: time steps per sample (--T, --tit stages)
MAX_BATCH = 100_000     #: --batch-size
MAX_EPOCHS = 1_000_000  #: --epochs (and the sum of the --tit stages)

#: setting -> (low, high, inclusive low, text): the documented valid ranges
RANGES: dict[str, tuple[float, float, bool, str]] = {
    "T": (1, MAX_T, True, f"an integer in [1, {MAX_T}]"),
    "batch_size": (1, MAX_BATCH, True, f"an integer in [1, {MAX_BATCH}]"),
    "epochs": (1, MAX_EPOCHS, True, f"an integer in [1, {MAX_EPOCHS}]"),
    "v_th": (0, 1e6, False, "a number in (0, 1e6]"),
    "lr": (0, 1e6, False, "a number in (0, 1e6]"),
    "tit_lr": (0, 1e6, False, "a number in (0, 1e6]"),
    "weight_decay": (0, 1e6, True, "a number in [0, 1e6]"),
    "tdbn_alpha": (0, 1e6, False, "a number in (0, 1e6]"),
    "tet_lambda": (0, 1e6, True, "a number in [0, 1e6]"),
    "momentum": (0, 1, True, "a number in [0, 1)"),
    "surrogate_param": (1e-3, 1e3, True, "a surrogate parameter in [1e-3, 1e3]"),
}

#: input shape of each built-in dataset (npz: known only once its file is read)
DATASET_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28),
                  "cifar10": (3, 32, 32), "nmnist": (2, 34, 34), "digits-rows": (8,)}

#: methods whose backward does not use the surrogate gradient of the spike (ASF/SSF: the flow
#: gain; DSR: the clamp of its spike representation); bptt and rate (its eligibility) do
SURROGATE_FREE = ("asf", "ssf", "dsr")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_ranges(cfg: dict[str, Any]) -> None:
    """One ``ValueError`` naming the flag and its range for a value outside :data:`RANGES`."""
    vals = {k: cfg.get(k) for k in RANGES if k != "surrogate_param"}
    vals["surrogate_param"] = get_surrogate(cfg["surrogate"]).a
    for k, v in vals.items():
        if v is None:
            continue
        lo, hi, incl, what = RANGES[k]
        if k == "momentum":
            ok = 0 <= v < 1
        else:
            ok = (v >= lo if incl else v > lo) and v <= hi
        if not ok:
            flag = "--surrogate" if k == "surrogate_param" else _flag(k)
            raise ValueError(f"{flag} must be {what}, got {v!r}")
    for T, E in cfg["stages"]:
        if not 1 <= T <= MAX_T or not 1 <= E <= MAX_EPOCHS:
            raise ValueError(f"--tit stages need T in [1, {MAX_T}] and epochs in "
                             f"[1, {MAX_EPOCHS}], got {T}:{E}")


def input_bytes(cfg: dict[str, Any]) -> int | None:
    """Bytes of one encoded input batch ``(T, B, *input_shape)`` of the largest stage, for the
    built-in datasets (``None`` for npz)."""
    shape = DATASET_SHAPES.get(cfg["dataset"])
    if shape is None:
        return None
    T = max(t for t, _ in cfg["stages"])
    item = 8 if cfg["dtype"] == "float64" else 4
    return T * cfg["batch_size"] * math.prod(shape) * item


def check_memory(cfg: dict[str, Any], ram: int | None = None) -> None:
    """Refuse a run whose encoded input batch alone exceeds half the machine's memory (the
    network's activations are several times larger still): one line with the estimate."""
    need, ram = input_bytes(cfg), ram if ram is not None else machine_memory()
    if need is not None and ram is not None and need > ram // 2:
        raise ValueError(f"--T {max(t for t, _ in cfg['stages'])} x --batch-size "
                         f"{cfg['batch_size']}: one encoded {cfg['dataset']} input batch needs "
                         f"{need / 2**30:.3g} GiB, more than half of this machine's "
                         f"{ram / 2**30:.3g} GiB; lower --T or --batch-size")


def check_unused_flags(cfg: dict[str, Any], explicit: set[str]) -> None:
    """Flags given on the command line that the chosen method does not use."""
    if "surrogate" in explicit and cfg["method"] in SURROGATE_FREE:
        raise ValueError(f"--surrogate only applies to methods that back-propagate through the "
                         f"spike's surrogate gradient (bptt, rate); --method {cfg['method']} "
                         "does not use it")
    if "tit_lr" in explicit and len(cfg["stages"]) < 2:
        raise ValueError("--tit-lr sets the learning rate of the --tit stages after the first; "
                         f"--tit {cfg['tit']} has one stage")


def check_flags(cfg: dict[str, Any], explicit: set[str]) -> None:
    """:func:`check_ranges`, :func:`check_unused_flags`, :func:`check_memory`."""
    check_ranges(cfg)
    check_unused_flags(cfg, explicit)
    check_memory(cfg)


def check_model_flags(cfg: dict[str, Any], net: nn_.Module) -> None:
    """Flags that only some networks use: ``--tdbn-alpha`` needs BatchNorm layers."""
    if cfg.get("tdbn_alpha") is not None and not any(
            isinstance(m, nn_.BatchNorm) for _, m in net.named_modules()):
        raise ValueError(f"--tdbn-alpha only applies to models with BatchNorm (snn5, vggsnn, "
                         f"resnet, ...); --model {cfg['model']} has none")

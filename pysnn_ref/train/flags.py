"""Checks of a run's settings that need no data: the documented valid range of every numeric
setting (the table :data:`RANGES` is :data:`pysnn_ref.cli.RANGES`, shared by every command line),
a memory estimate of the encoded input, and flags the chosen method or model does not use
(docs/reliability.md, "Ranges").  Called by :func:`pysnn_ref.train.__main__.resolve_config`
before any data is loaded or folder made; :func:`check_model_flags` once the network is built.
"""

from __future__ import annotations

import math
from typing import Any

from .. import nn as nn_
from .._check import machine_memory
from ..cli import INT_SETTINGS, MAX_BATCH, MAX_EPOCHS, MAX_T, RANGES, flag_name, in_range
from ..functional.surrogate import get_surrogate

__all__ = ["RANGES", "INT_SETTINGS", "MAX_T", "MAX_BATCH", "MAX_EPOCHS", "in_range", "flag_name",
           "check_ranges", "input_bytes", "check_memory", "check_unused_flags",
           "check_model_flags", "check_flags"]

#: input shape of each built-in dataset (npz: known only once its file is read)
DATASET_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28),
                  "cifar10": (3, 32, 32), "nmnist": (2, 34, 34), "digits-rows": (8,)}

#: methods whose backward does not use the surrogate gradient of the spike (ASF/SSF: the flow
#: gain; DSR: the clamp of its spike representation); bptt, rate (its eligibility), ottt and
#: sltt (per step) do
SURROGATE_FREE = ("asf", "ssf", "dsr")


def check_ranges(cfg: Any) -> None:
    """One ``ValueError`` naming the flag and its range for a value of the run configuration
    ``cfg`` (:class:`~pysnn_ref.train.config.RunConfig`) outside :data:`RANGES`."""
    for k in RANGES:
        if k == "surrogate_param":
            v = get_surrogate(cfg.surrogate).a
        elif not hasattr(cfg, k):   # another command line's setting
            continue
        else:
            v = getattr(cfg, k)
        if v is not None and not isinstance(v, str) and not in_range(k, v):
            raise ValueError(f"{flag_name(k)} must be {RANGES[k][3]}, got {v!r}")
    k, T_min = cfg.sltt_k, min(t for t, _ in cfg.stages)
    if k is not None and k > T_min:
        raise ValueError(f"--sltt-k must be an integer in [1, T = {T_min}] (SLTT-K samples K "
                         f"of the T steps), got {k}")
    for T, E in cfg.stages:
        if not 1 <= T <= MAX_T or not 1 <= E <= MAX_EPOCHS:
            raise ValueError(f"--tit stages need T in [1, {MAX_T}] and epochs in "
                             f"[1, {MAX_EPOCHS}], got {T}:{E}")


def input_bytes(cfg: Any) -> int | None:
    """Bytes of one encoded input batch ``(T, B, *input_shape)`` of the largest stage, for the
    built-in datasets (``None`` for npz)."""
    shape = DATASET_SHAPES.get(cfg.dataset)
    if shape is None:
        return None
    T = max(t for t, _ in cfg.stages)
    item = 8 if cfg.dtype == "float64" else 4
    return T * cfg.batch_size * math.prod(shape) * item


def check_memory(cfg: Any, ram: int | None = None) -> None:
    """Refuse a run whose encoded input batch alone exceeds half the machine's memory (the
    network's activations are several times larger still): one line with the estimate."""
    need, ram = input_bytes(cfg), ram if ram is not None else machine_memory()
    if need is not None and ram is not None and need > ram // 2:
        raise ValueError(f"--T {max(t for t, _ in cfg.stages)} x --batch-size "
                         f"{cfg.batch_size}: one encoded {cfg.dataset} input batch needs "
                         f"{need / 2**30:.3g} GiB, more than half of this machine's "
                         f"{ram / 2**30:.3g} GiB; lower --T or --batch-size")


def check_unused_flags(cfg: Any, explicit: set[str]) -> None:
    """Flags given on the command line that the chosen method does not use."""
    if "surrogate" in explicit and cfg.method in SURROGATE_FREE:
        raise ValueError(f"--surrogate only applies to methods that back-propagate through the "
                         f"spike's surrogate gradient (bptt, rate, ottt, sltt); --method "
                         f"{cfg.method} does not use it")
    if "tit_lr" in explicit and len(cfg.stages) < 2:
        raise ValueError("--tit-lr sets the learning rate of the --tit stages after the first; "
                         f"--tit {cfg.tit} has one stage")


def check_flags(cfg: Any, explicit: set[str]) -> None:
    """What the command line needs beyond the configuration's own validation (types and
    :func:`check_ranges`, in :class:`~pysnn_ref.train.config.RunConfig`): flags the run does not
    use (:func:`check_unused_flags`) and the memory estimate (:func:`check_memory`)."""
    check_unused_flags(cfg, explicit)
    check_memory(cfg)


def check_model_flags(cfg: Any, net: nn_.Module) -> None:
    """Flags that only some networks use: ``--tdbn-alpha`` needs BatchNorm layers."""
    if cfg.tdbn_alpha is not None and not any(
            isinstance(m, nn_.BatchNorm) for _, m in net.named_modules()):
        raise ValueError(f"--tdbn-alpha only applies to models with BatchNorm (snn5, vggsnn, "
                         f"resnet, ...); --model {cfg.model} has none")

"""The pieces of a training run built from its configuration (a ``cfg`` dict of
:func:`pysnn_ref.train.__main__.resolve_config`): the network, the method, the loss, the input
encoder and the seeded random streams of an epoch.  Used by :mod:`pysnn_ref.train.loop`,
:mod:`pysnn_ref.train.checkpoint` (to rebuild a saved network) and :mod:`pysnn_ref.evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import nn as nn_
from ..data import make_encoder as _make_encoder
from ..functional import loss as L
from ..methods import Method, make_method
from ..models import make_model

LOSSES = L.LOSSES
SPLIT_SEED = 0          # the digits / npz train-test split never depends on --seed

# random streams of an epoch
S_ORDER, S_POISSON, S_AUGMENT, S_FDG, S_FDG_INPUT = 0, 1, 2, 3, 4
_EVAL_EPOCH = 2**31 - 1  # the evaluation's Poisson stream: the same in every evaluation

__all__ = ["LOSSES", "SPLIT_SEED", "build_model", "build_method", "loss_functions",
           "make_encoder", "epoch_rng"]


def build_model(cfg: dict[str, Any], input_shape: Sequence[int], num_classes: int) -> nn_.Module:
    """The network of ``cfg`` (on the host; move it with ``.to(device)``)."""
    lam, v_th, reset, sg = cfg["lam"], cfg["v_th"], cfg["reset"], cfg["surrogate"]
    if cfg["neuron"] == "lif":
        neuron = lambda: nn_.LIF(lam, v_th, reset, sg)
    else:
        neuron = lambda: nn_.IF(v_th, reset, sg)
    return make_model(cfg["model"], tuple(input_shape), num_classes, neuron,
                      tdbn_alpha=cfg["tdbn_alpha"], v_th=v_th, seed=cfg["seed"],
                      dtype=np.dtype(cfg["dtype"]), surrogate=sg)


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
    if m == "dsr":  # .get: configs saved before DSR existed have no such keys
        opts.update(dsr_alpha=cfg.get("dsr_alpha"), dsr_spread=cfg.get("dsr_spread"),
                    dsr_train_threshold=cfg.get("dsr_train_threshold"))
    if m == "rate":
        opts["rate_detach"] = cfg.get("rate_detach") or None
    return make_method(m, **opts)


def loss_functions(cfg: dict[str, Any]) -> tuple[Callable, Callable]:
    """``(forward(y, labels) -> (loss, cache), backward(cache) -> dy)`` of ``cfg["loss"]``."""
    return L.loss_pair(cfg["loss"], tet_lambda=cfg.get("tet_lambda"),
                       v_th=cfg.get("v_th"))


def _seed_int(*keys: int) -> int:
    """A 32-bit seed derived from ``keys`` (run seed, epoch, stream): independent streams."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def epoch_rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    """The generator of one random stream in one epoch: resuming at ``epoch`` draws exactly
    what the uninterrupted run would have drawn."""
    return np.random.default_rng(_seed_int(seed, epoch, stream))


def make_encoder(cfg: dict[str, Any], epoch: int | None, stream: int = S_POISSON) -> Any:
    """The input encoder for a training epoch (``epoch``) or for evaluation (``None``); the
    Poisson encoder's spikes are seeded by (seed, epoch, stream)."""
    e = _EVAL_EPOCH if epoch is None else epoch
    return _make_encoder(cfg["encoder"], seed=_seed_int(cfg["seed"], e, stream))

"""The run configuration and the pieces of a training run built from it.

:class:`RunConfig` is every setting of a run: a frozen, typed dataclass, validated once when it
is made -- from the command line (:func:`pysnn_ref.train.__main__.resolve_config`), from a dict
(:meth:`RunConfig.from_dict`: the Python API, a ``config.json`` or a checkpoint's ``config``
read from disk) or as a changed copy (:meth:`RunConfig.replace`).  Each field's type, choices
and range are the run-folder schema's (:data:`pysnn_ref.train.schema.CONFIG`), whose ranges are
the command line's (:data:`pysnn_ref.train.flags.RANGES`): one place per rule.  On disk it is a
plain JSON object (:meth:`RunConfig.to_dict`).

From it: the network, the method, the loss, the input encoder and the seeded random streams of
an epoch.  Used by :mod:`pysnn_ref.train.loop`, :mod:`pysnn_ref.train.checkpoint` (to rebuild a
saved network) and :mod:`pysnn_ref.evaluate`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import nn as nn_
from ..data import make_encoder as _make_encoder
from ..functional import loss as L
from ..methods import ONLINE, Method, make_method
from ..models import make_model
from .flags import check_ranges, flag_name
from .schema import CONFIG, check_config

LOSSES = L.LOSSES
SPLIT_SEED = 0          # the digits / npz train-test split never depends on --seed

# random streams of an epoch
S_ORDER, S_POISSON, S_AUGMENT, S_FDG, S_FDG_INPUT = 0, 1, 2, 3, 4
_EVAL_EPOCH = 2**31 - 1  # the evaluation's Poisson stream: the same in every evaluation

__all__ = ["LOSSES", "SPLIT_SEED", "DATA_KEYS", "RunConfig", "as_run_config", "build_model",
           "build_method", "loss_functions", "make_encoder", "epoch_rng"]


#: keys known only once the data is read (None in a configuration made before that)
DATA_KEYS = ("input_shape", "num_classes", "n_train", "n_test")


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a training run (docs/training.md lists the flags; docs/reliability.md
    the ranges).  Frozen: a changed copy is :meth:`replace`; each copy is validated.

    The fields are the flags of ``python -m pysnn_ref.train`` with their defaults resolved,
    then what the run adds: ``stages`` ((T, epochs) per time-inheritance stage), the data's
    ``input_shape`` / ``num_classes`` / ``n_train`` / ``n_test`` (None until the data is read),
    ``world_size`` (``--distributed``) and, once ``config.json`` is written, ``format_version``,
    ``versions``, ``model_repr``, ``n_parameters``.
    """

    # data
    dataset: str
    data_dir: str | None
    encoder: str
    augment: bool
    # network and neurons
    model: str
    neuron: str
    lam: float
    v_th: float
    reset: str
    surrogate: str
    dspike_adapt: bool
    fdg_samples: int | None
    tdbn_alpha: float | None
    dtype: str
    # method and loss
    method: str
    loss: str
    tet_lambda: float
    T: int
    time_chunk: int | None
    asf_variant: str | None
    asf_refresh: int | str | None
    r_granularity: str | None
    # optimisation
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float | None
    weight_decay: float
    schedule: str
    tit: str | None
    tit_lr: float | None
    stages: tuple[tuple[int, int], ...]
    # run
    seed: int
    device: str
    out: str | None
    max_batches: int | None
    # settings added after the first format (absent in older run folders: their defaults)
    dsr_alpha: float | None = None
    dsr_spread: str | None = None
    dsr_train_threshold: bool = False
    width: float = 1.0  # the SSF Table 1 networks' channel multiplier (models.make_model)
    rate_detach: bool = False
    ottt_update: str | None = None
    sltt_k: int | None = None
    max_eval_batches: int | None = None
    blas_threads: int = 0
    no_plots: bool = False
    no_progress: bool = False
    distributed: bool = False
    world_size: int = 1
    # what the run adds
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    n_train: int | None = None
    n_test: int | None = None
    format_version: int | None = None
    versions: Mapping[str, str] | None = None
    model_repr: str | None = None
    n_parameters: int | None = None

    def __post_init__(self) -> None:
        """Normalise the sequences to tuples, then validate every field (types, choices,
        ranges) and the ranges of :func:`~pysnn_ref.train.flags.check_ranges`: one
        ``ValueError`` naming the flag and what was expected."""
        set_ = object.__setattr__  # frozen: the constructor's own normalisation
        if isinstance(self.stages, (list, tuple)) and all(isinstance(s, (list, tuple))
                                                          for s in self.stages):
            set_(self, "stages", tuple(tuple(s) for s in self.stages))
        if isinstance(self.input_shape, list):
            set_(self, "input_shape", tuple(self.input_shape))
        d = self.to_dict()
        for k, f in CONFIG.items():
            v = d.get(k)
            if v is None and (k in DATA_KEYS or not f.required):
                continue
            if not f.valid(v):
                raise ValueError(f"{flag_name(k)}: expected {f.expected()}, got {v!r} "
                                 f"(run configuration key {k!r})")
        check_ranges(self)

    def to_dict(self) -> dict[str, Any]:
        """The plain JSON object of ``config.json`` (tuples as lists; what is not known yet,
        e.g. ``input_shape`` before the data is read, left out)."""
        return {k: _plain(v) for k, v in dataclasses.asdict(self).items()
                if v is not None or CONFIG[k].nullable}   # not yet known: left out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str | None = None) -> RunConfig:
        """A configuration from a dict: the Python API's (``where=None``: the same validation
        as the command line's) or one read from disk (``where`` names the file: first the
        run-folder schema, :func:`~pysnn_ref.train.schema.check_config`, with the file, the key
        and what was expected in the error).  Keys the configuration does not know (written by
        a newer version) are ignored; keys added since an older run folder was written take
        their defaults."""
        if where is not None:
            check_config(d, where)
        elif not isinstance(d, Mapping):
            raise TypeError(f"cfg must be a RunConfig or a dict, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if where is None and unknown:   # a typo in a caller's dict is not silently dropped
            raise ValueError(f"cfg: unknown setting {unknown[0]!r} (a RunConfig has "
                             f"{', '.join(sorted(names))})")
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.name not in d]
        if missing:
            raise ValueError(f"{where or 'cfg'}: key {missing[0]!r} is missing "
                             f"(flag {flag_name(missing[0])})")
        try:
            return cls(**{k: v for k, v in d.items() if k in names})
        except ValueError as e:
            raise ValueError(f"{where}: {e}" if where else str(e)) from None

    def replace(self, **changes: Any) -> RunConfig:
        """A validated copy with ``changes`` (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


def _plain(v: Any) -> Any:
    """Tuples as lists, recursively (JSON's form)."""
    return [_plain(x) for x in v] if isinstance(v, (tuple, list)) else v


def as_run_config(cfg: RunConfig | Mapping[str, Any]) -> RunConfig:
    """``cfg`` itself, or a :class:`RunConfig` made (and validated) from a dict (the Python
    API's ``train(cfg)`` takes either)."""
    return cfg if isinstance(cfg, RunConfig) else RunConfig.from_dict(cfg)


def build_model(cfg: RunConfig, input_shape: Sequence[int], num_classes: int) -> nn_.Module:
    """The network of ``cfg`` (on the host; move it with ``.to(device)``)."""
    lam, v_th, reset, sg = cfg.lam, cfg.v_th, cfg.reset, cfg.surrogate
    if cfg.neuron == "lif":
        neuron = lambda: nn_.LIF(lam, v_th, reset, sg)
    else:
        neuron = lambda: nn_.IF(v_th, reset, sg)
    return make_model(cfg.model, tuple(input_shape), num_classes, neuron,
                      tdbn_alpha=cfg.tdbn_alpha, v_th=v_th, seed=cfg.seed,
                      dtype=np.dtype(cfg.dtype), surrogate=sg, width=cfg.width)


def build_method(cfg: RunConfig) -> Method:
    """The training method of ``cfg``, given only the options that apply to it."""
    m = cfg.method
    opts: dict[str, Any] = {}
    if m not in ("bptt", *ONLINE):
        opts["time_chunk"] = cfg.time_chunk
        opts["loss"] = cfg.loss  # a per-step loss (TET): the output layer's exact backward
    if m == "asf":
        opts.update(asf_variant=cfg.asf_variant, asf_refresh=cfg.asf_refresh)
    if m == "ssf":
        opts["r_granularity"] = cfg.r_granularity
    if m == "dsr":
        opts.update(dsr_alpha=cfg.dsr_alpha, dsr_spread=cfg.dsr_spread,
                    dsr_train_threshold=cfg.dsr_train_threshold)
    if m == "rate":
        opts["rate_detach"] = cfg.rate_detach or None
    if m == "ottt":
        opts["ottt_update"] = cfg.ottt_update
    if m == "sltt":
        opts["sltt_k"] = cfg.sltt_k
    if m in ONLINE:
        opts["seed"] = cfg.seed     # SLTT-K's sampled steps
    return make_method(m, **opts)


def loss_functions(cfg: RunConfig) -> tuple[Callable, Callable]:
    """``(forward(y, labels) -> (loss, cache), backward(cache) -> dy)`` of ``cfg.loss``."""
    return L.loss_pair(cfg.loss, tet_lambda=cfg.tet_lambda, v_th=cfg.v_th)


def _seed_int(*keys: int) -> int:
    """A 32-bit seed derived from ``keys`` (run seed, epoch, stream): independent streams."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def epoch_rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    """The generator of one random stream in one epoch: resuming at ``epoch`` draws exactly
    what the uninterrupted run would have drawn."""
    return np.random.default_rng(_seed_int(seed, epoch, stream))


def make_encoder(cfg: RunConfig, epoch: int | None, stream: int = S_POISSON) -> Any:
    """The input encoder for a training epoch (``epoch``) or for evaluation (``None``); the
    Poisson encoder's spikes are seeded by (seed, epoch, stream)."""
    e = _EVAL_EPOCH if epoch is None else epoch
    return _make_encoder(cfg.encoder, seed=_seed_int(cfg.seed, e, stream))

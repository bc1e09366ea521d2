"""The run folder as a validated format: the schema of ``config.json`` (also the ``config``
inside every checkpoint), ``metrics.jsonl``, the checkpoints' ``meta`` and ``energy.json``
(docs/reliability.md, "The run folder format").

A schema maps each key to a :class:`Field`: its JSON type(s), whether ``null`` is allowed,
whether the key is required, and a range or a list of choices.  :func:`check` raises one
:class:`~pysnn_ref.errors.RunFormatError` line naming the file, the key and what was expected;
it is called on every read (``evaluate``, ``train --resume``, ``checkpoint.load``).
Keys a schema does not list are allowed (newer writers may add some).  The tests generate one
case per key and per violation from these tables (tests/test_run_format.py), so a key added
here is covered without writing a test for it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import backend
from ..data import DATASETS, ENCODERS
from ..errors import RunFormatError
from ..functional.dsr import DSR_SPREADS
from ..functional.loss import LOSSES
from ..functional.surrogate import get_surrogate
from ..methods import METHODS, OTTT_UPDATES
from ..models import MODELS
from ..optim import OPTIMIZERS, SCHEDULES
from .flags import INT_SETTINGS, RANGES, in_range

__all__ = ["FORMAT_VERSION", "Field", "CONFIG", "METRICS", "META", "NEURON", "ENERGY",
           "ENERGY_LAYER", "check", "check_config", "check_energy", "read_json", "read_metrics"]

FORMAT_VERSION = 1   #: written into config.json (``format_version``) and checkpoints (``version``)

NUM = (int, float)


@dataclass(frozen=True)
class Field:
    """One key of a schema: JSON ``types``, ``null`` allowed, required, and a value test
    ``ok`` described by ``what`` (e.g. ``"an integer >= 1"``)."""

    types: tuple[type, ...]
    what: str
    nullable: bool = False
    required: bool = True
    ok: Callable[[Any], bool] | None = None
    choices: tuple[Any, ...] | None = None

    def valid(self, v: Any) -> bool:
        """Whether ``v`` (a value read from JSON) has this field's type, choices and range."""
        if v is None:
            return self.nullable
        if isinstance(v, bool) and bool not in self.types:
            return False
        if not isinstance(v, self.types):
            return False
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if self.choices is not None and v not in self.choices:
            return False
        try:
            return self.ok is None or bool(self.ok(v))
        except (TypeError, ValueError):
            return False

    def expected(self) -> str:
        """What the field must hold, in words, for the one-line error."""
        what = self.what
        if self.choices is not None:
            what = "one of " + ", ".join(repr(c) for c in self.choices)
        return what + (" or null" if self.nullable else "")


def _int(lo: int, nullable: bool = False, required: bool = True) -> Field:
    return Field((int,), f"an integer >= {lo}", nullable, required, lambda v: v >= lo)


def _num(what: str = "a finite number", ok: Callable[[Any], bool] | None = None,
         nullable: bool = False, required: bool = True) -> Field:
    return Field(NUM, what, nullable, required, ok)


def _str(nullable: bool = False, required: bool = True) -> Field:
    return Field((str,), "a string", nullable, required)


def _choice(choices: tuple[Any, ...], nullable: bool = False, required: bool = True) -> Field:
    return Field((str,), "", nullable, required, choices=tuple(choices))


def _ranged(name: str, nullable: bool = False, required: bool = True) -> Field:
    """A number whose range is the command line's (:data:`~pysnn_ref.train.flags.RANGES`)."""
    types = (int,) if name in INT_SETTINGS else NUM
    return Field(types, RANGES[name][3], nullable, required, ok=lambda v: in_range(name, v))


def _bool(required: bool = True) -> Field:
    return Field((bool,), "true or false", required=required)


def _int_list(lo: int, n: int | None = None) -> Callable[[Any], bool]:
    return lambda v: (len(v) >= 1 and (n is None or len(v) == n)
                      and all(isinstance(k, int) and not isinstance(k, bool) and k >= lo
                              for k in v))


def _surrogate(v: str) -> bool:
    get_surrogate(v)
    return True


def _stages(v: list) -> bool:
    return len(v) >= 1 and all(isinstance(s, list) and _int_list(1, 2)(s) for s in v)


def _asf_refresh(v: Any) -> bool:
    return v == "batch" or (isinstance(v, int) and not isinstance(v, bool)
                            and in_range("asf_refresh", v))


#: config.json and a checkpoint's ``config``: every setting of the run
CONFIG: dict[str, Field] = {
    "dataset": _choice(DATASETS),
    "data_dir": _str(nullable=True),
    "encoder": _choice(ENCODERS),
    "augment": _bool(),
    "model": _choice(MODELS),
    "neuron": _choice(("lif", "if")),
    "lam": _ranged("lam"),
    "v_th": _ranged("v_th"),
    "reset": _choice(("hard", "soft")),
    "surrogate": Field((str,), "a surrogate 'name:param' (e.g. 'triangle:1')", ok=_surrogate),
    "dspike_adapt": _bool(),
    "fdg_samples": _ranged("fdg_samples", nullable=True),
    "tdbn_alpha": _ranged("tdbn_alpha", nullable=True),
    "dtype": _choice(("float32", "float64")),
    "method": _choice(METHODS),
    "dsr_alpha": _ranged("dsr_alpha", nullable=True, required=False),
    "dsr_spread": _choice(DSR_SPREADS, nullable=True, required=False),
    "dsr_train_threshold": _bool(required=False),
    "width": _ranged("width", required=False),
    "rate_detach": _bool(required=False),
    "ottt_update": _choice(OTTT_UPDATES, nullable=True, required=False),
    "sltt_k": _ranged("sltt_k", nullable=True, required=False),
    "loss": _choice(tuple(LOSSES)),
    "tet_lambda": _ranged("tet_lambda"),
    "T": _ranged("T"),
    "time_chunk": _ranged("time_chunk", nullable=True),
    "asf_variant": _choice(("paper", "code"), nullable=True),
    "asf_refresh": Field((int, str), RANGES["asf_refresh"][3], True, ok=_asf_refresh),
    "r_granularity": _choice(("neuron", "channel", "sample", "layer"), nullable=True),
    "epochs": _ranged("epochs"),
    "batch_size": _ranged("batch_size"),
    "optimizer": _choice(tuple(OPTIMIZERS)),
    "lr": _ranged("lr"),
    "momentum": _ranged("momentum", nullable=True),
    "weight_decay": _ranged("weight_decay"),
    "schedule": _choice(tuple(SCHEDULES)),
    "tit": _str(nullable=True),
    "tit_lr": _ranged("tit_lr", nullable=True),
    "seed": _ranged("seed"),
    "device": _choice(backend.DEVICES),
    "out": _str(nullable=True),
    "max_batches": _ranged("max_batches", nullable=True),
    "max_eval_batches": _ranged("max_eval_batches", nullable=True, required=False),
    "blas_threads": _ranged("blas_threads", required=False),
    "no_plots": _bool(required=False),
    "no_progress": _bool(required=False),
    "distributed": _bool(required=False),
    "world_size": _int(1, required=False),
    "stages": Field((list,), "a non-empty list of [T, epochs] pairs of integers >= 1",
                    ok=_stages),
    "input_shape": Field((list,), "a non-empty list of integers >= 1", ok=_int_list(1)),
    "num_classes": _int(1),
    "n_train": _int(0),
    "n_test": _int(0),
    "format_version": Field((int,), f"{FORMAT_VERSION}", required=False,
                            ok=lambda v: v == FORMAT_VERSION),
    "versions": Field((dict,), "an object", required=False),
    "model_repr": _str(required=False),
    "n_parameters": _int(0, required=False),
}

#: one line of metrics.jsonl (one epoch)
METRICS: dict[str, Field] = {
    "epoch": _int(1),
    "stage": _int(1),
    "T": _int(1),
    "lr": _num("a number >= 0", lambda v: v >= 0),
    "loss": _num(),
    "train_acc": _num("a number in [0, 1]", lambda v: 0 <= v <= 1),
    "test_loss": _num(),
    "test_acc": _num("a number in [0, 1]", lambda v: 0 <= v <= 1),
    "firing_rate": _num("a number in [0, 1]", lambda v: 0 <= v <= 1),
    "firing_rates": Field((dict,), "an object {layer: rate}"),
    "forward_s": _num("a number >= 0", lambda v: v >= 0),
    "backward_s": _num("a number >= 0", lambda v: v >= 0),
    "epoch_s": _num("a number >= 0", lambda v: v >= 0),
}

#: a checkpoint's JSON ``meta`` (its ``config`` follows :data:`CONFIG`)
META: dict[str, Field] = {
    "version": Field((int,), f"{FORMAT_VERSION}", required=False,
                     ok=lambda v: v == FORMAT_VERSION),
    "epoch": _int(0),
    "T": _int(1),
    "config": Field((dict,), "an object (the run's config.json)"),
    "neurons": Field((list,), "a list of objects, one per spiking layer"),
    "best_acc": _num("a number in [-1, 1]", lambda v: -1 <= v <= 1),
    "best_epoch": _int(0, nullable=True),
    "test_acc": _num("a number in [0, 1]", lambda v: 0 <= v <= 1, nullable=True),
    "dspike_b": _num("a number > 0", lambda v: v > 0, nullable=True, required=False),
}

#: one entry of a checkpoint's ``meta["neurons"]``
NEURON: dict[str, Field] = {
    "S": _num(),
    "asf_tot": Field((list,), "a list of 2 or 3 finite numbers",
                     ok=lambda v: len(v) in (2, 3) and all(
                         isinstance(x, NUM) and not isinstance(x, bool) and math.isfinite(x)
                         for x in v)),
    "surrogate": Field((str,), "a surrogate 'name:param'", ok=_surrogate),
}

#: energy.json (:meth:`pysnn_ref.energy.EnergyReport.to_dict`)
ENERGY: dict[str, Field] = {
    "T": _int(1),
    "batch": _int(1),
    "e_mac_pj": _num("a number >= 0", lambda v: v >= 0),
    "e_ac_pj": _num("a number >= 0", lambda v: v >= 0),
    "layers": Field((list,), "a list of objects, one per layer"),
    "macs": _num("a number >= 0", lambda v: v >= 0),
    "sops": _num("a number >= 0", lambda v: v >= 0),
    "ann_macs": _num("a number >= 0", lambda v: v >= 0),
    "energy_pj": _num("a number >= 0", lambda v: v >= 0),
    "ann_energy_pj": _num("a number >= 0", lambda v: v >= 0),
    "ann_over_snn": _num(nullable=True),
}

#: one entry of energy.json's ``layers``
ENERGY_LAYER: dict[str, Field] = {
    "name": _str(),
    "kind": _str(),
    "macs": _num("a number >= 0", lambda v: v >= 0),
    "sops": _num("a number >= 0", lambda v: v >= 0),
    "ann_macs": _num("a number >= 0", lambda v: v >= 0),
    "input_rate": _num("a number >= 0", lambda v: v >= 0),
    "energy_pj": _num("a number >= 0", lambda v: v >= 0),
    "ann_energy_pj": _num("a number >= 0", lambda v: v >= 0),
}


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def check(obj: Any, schema: dict[str, Field], where: str, prefix: str = "") -> None:
    """Raise :class:`RunFormatError` (``"<where>: key '<k>': expected ..., got ..."``) at the
    first key of ``obj`` that breaks ``schema``."""
    at = f" in {prefix}" if prefix else ""
    if not isinstance(obj, dict):
        raise RunFormatError(f"{where}: expected a JSON object{at}, got {type(obj).__name__} "
                             f"{_short(obj)}")
    for k, f in schema.items():
        if k not in obj:
            if f.required:
                raise RunFormatError(f"{where}: key {k!r}{at} is missing; expected "
                                     f"{f.expected()}")
            continue
        if not f.valid(obj[k]):
            raise RunFormatError(f"{where}: key {k!r}{at}: expected {f.expected()}, got "
                                 f"{_short(obj[k])}")


def check_config(cfg: Any, where: str) -> None:
    """:data:`CONFIG`, and the options the run's method needs (asf / ssf)."""
    check(cfg, CONFIG, where)
    need = {"asf": ("asf_variant", "asf_refresh"), "ssf": ("r_granularity",)}
    for k in need.get(cfg["method"], ()):
        if cfg[k] is None:
            raise RunFormatError(f"{where}: key {k!r}: expected {CONFIG[k].what or 'a value'} "
                                 f"for method {cfg['method']!r}, got None")


def check_meta(meta: Any, where: str) -> None:
    """:data:`META`, each ``neurons`` entry (:data:`NEURON`) and the ``config``."""
    check(meta, META, where, "meta")
    for i, s in enumerate(meta["neurons"]):
        check(s, NEURON, where, f"meta neurons[{i}]")
    check_config(meta["config"], f"{where} (meta 'config')")


def check_energy(obj: Any, where: str) -> None:
    """:data:`ENERGY` and each of its ``layers`` (:data:`ENERGY_LAYER`): energy.json, checked
    when the run writes it (:func:`pysnn_ref.train.runlog.write_energy`) and on every read
    (:func:`pysnn_ref.train.runlog.read_energy`: ``evaluate``)."""
    check(obj, ENERGY, where)
    for i, row in enumerate(obj["layers"]):
        check(row, ENERGY_LAYER, where, f"layers[{i}]")


def read_json(path: str | Path, schema: dict[str, Field]) -> dict[str, Any]:
    """A JSON file checked against ``schema`` (energy.json: also each layer)."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise RunFormatError(f"{path}: not a readable JSON file ({type(e).__name__}: "
                             f"{e})") from None
    if schema is CONFIG:
        check_config(obj, str(path))
    elif schema is ENERGY:
        check_energy(obj, str(path))
    else:
        check(obj, schema, str(path))
    return obj


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The epoch records of ``metrics.jsonl`` (blank lines skipped; a missing file is an empty
    history), each checked against :data:`METRICS`, epochs 1, 2, 3, ... without gaps or
    repeats."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise RunFormatError(f"{path}: not a readable text file ({e})") from None
    recs: list[dict[str, Any]] = []
    for i, s in enumerate(lines, 1):
        if not s.strip():
            continue
        try:
            rec = json.loads(s)
        except ValueError:
            raise RunFormatError(f"{path}: line {i} is not valid JSON") from None
        check(rec, METRICS, f"{path} line {i}")
        want = len(recs) + 1
        if rec["epoch"] != want:
            raise RunFormatError(f"{path} line {i}: key 'epoch': expected {want} (epochs "
                                 f"1, 2, ... in order, no repeats), got {rec['epoch']}")
        recs.append(rec)
    return recs

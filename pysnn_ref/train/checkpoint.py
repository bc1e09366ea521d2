"""Checkpoints of a training run (:mod:`pysnn_ref.train.loop`): one ``.npz`` per checkpoint with
``model/<key>`` and ``optim/<key>`` arrays and a JSON ``meta`` entry (epoch, T, test accuracy,
best so far, Dspike temperature, the spiking layers' state beyond the state_dict, the run's
configuration).  :func:`load` rebuilds a trained network from a run folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import nn as nn_
from ..functional.surrogate import get_surrogate
from ..optim import Optimizer
from .config import build_model

__all__ = ["neuron_state", "restore_neuron_state", "save_checkpoint", "read_checkpoint",
           "checkpoint_path", "load"]


# ---- neuron state that is not in the state_dict (LIF.asf_state, the surrogate) ---------------

def neuron_state(net: nn_.Module) -> list[dict[str, Any]]:
    """What a checkpoint must keep of each spiking layer beyond the state_dict."""
    return [{"S": float(n.S), "asf_tot": [float(v) for v in n.asf_state()["asf_tot"]],
             "surrogate": f"{n.p.surrogate.name}:{n.p.surrogate.a!r}"}
            for n in nn_.spiking_layers(net)]


def restore_neuron_state(net: nn_.Module, states: list[dict[str, Any]]) -> None:
    """Put the spiking layers' state saved by :func:`neuron_state` back into ``net``."""
    layers = nn_.spiking_layers(net)
    if len(layers) != len(states):
        raise ValueError(f"checkpoint has {len(states)} spiking layers, the network "
                         f"{len(layers)}")
    for n, s in zip(layers, states, strict=True):
        tot = [float(v) for v in s["asf_tot"]]
        if len(tot) == 2:  # before sum |FI| was kept: |sum FI| is its best lower bound
            tot.append(abs(tot[1]))
        n.load_asf_state(float(s["S"]), tot)
        n.set_surrogate(get_surrogate(s["surrogate"]))


# ---- the .npz file ------------------------------------------------------------------------------

def save_checkpoint(path: str | Path, net: nn_.Module, opt: Optimizer,
                    meta: dict[str, Any]) -> Path:
    """Write ``model/<key>``, ``optim/<key>`` arrays and a JSON ``meta`` (epoch, config, neuron
    state, ...) into one ``.npz``; atomically (a temporary file, then a rename)."""
    path = Path(path)
    arrays = {f"model/{k}": v for k, v in net.state_dict().items()}
    arrays.update({f"optim/{k}": v for k, v in opt.state_dict().items()})
    arrays["meta"] = np.array(json.dumps({**meta, "version": CHECKPOINT_VERSION}))
    tmp = path.with_name(path.stem + ".tmp.npz")
    with open(tmp, "wb") as f:             # temp file in the same folder, flushed to the disk
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)                  # atomic: readers see the old or the new file, whole
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)                   # make the rename itself durable
        finally:
            os.close(fd)
    except OSError:                        # platforms without directory fsync
        pass
    return path


CHECKPOINT_VERSION = 1   #: the schema written by :func:`save_checkpoint`

#: meta entries every checkpoint carries, with their JSON types
_META_KEYS = {"epoch": int, "T": int, "config": dict, "neurons": list, "best_acc": (int, float),
              "best_epoch": (int, type(None)), "test_acc": (int, float, type(None))}


def _check_meta(path: Path, meta: Any) -> None:
    """One ``ValueError`` line naming the file when ``meta`` is not a checkpoint's."""
    if not isinstance(meta, dict) or not meta:
        raise ValueError(f"checkpoint {path}: meta must be a non-empty JSON object, got "
                         f"{type(meta).__name__}")
    if meta.get("version", CHECKPOINT_VERSION) != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {path}: schema version {meta['version']!r}, this "
                         f"pysnn_ref reads version {CHECKPOINT_VERSION}")
    for k, t in _META_KEYS.items():
        if k not in meta:
            raise ValueError(f"checkpoint {path}: meta has no {k!r} entry")
        v = meta[k]
        if isinstance(v, bool) or not isinstance(v, t):
            raise ValueError(f"checkpoint {path}: meta {k!r} has the wrong type "
                             f"({type(v).__name__}: {v!r})")
    if meta["epoch"] < 0:
        raise ValueError(f"checkpoint {path}: meta 'epoch' must be >= 0, got {meta['epoch']}")
    for s in meta["neurons"]:
        if not isinstance(s, dict) or not {"S", "asf_tot", "surrogate"} <= set(s):
            raise ValueError(f"checkpoint {path}: meta 'neurons' entries must hold S, asf_tot "
                             "and surrogate")
    for k in ("input_shape", "num_classes"):
        if k not in meta["config"]:
            raise ValueError(f"checkpoint {path}: meta 'config' has no {k!r} entry")


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
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError:
        raise ValueError(f"checkpoint {path}: meta is not valid JSON") from None
    _check_meta(path, meta)
    model = {k[6:]: v for k, v in arrays.items() if k.startswith("model/")}
    if not model:
        raise ValueError(f"checkpoint {path} holds no model arrays")
    for k, v in model.items():
        if v.dtype.kind != "f" or not np.isfinite(v).all():
            raise ValueError(f"checkpoint {path}: model array {k!r} is not finite floats "
                             f"(dtype {v.dtype}); refusing to load NaN/inf weights")
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
         checkpoint: str = "last") -> tuple[nn_.Module, dict[str, Any]]:
    """Rebuild a trained network from a run folder (its ``last.npz`` by default, as
    ``python -m pysnn_ref.evaluate``; or ``best.npz``) or a checkpoint file.  Returns
    ``(net, config)``: the network on ``device`` in eval mode, and the run's configuration
    plus ``config["checkpoint"]`` (path, epoch, T, test_acc)."""
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

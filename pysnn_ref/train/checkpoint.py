"""Checkpoints of a training run (:mod:`pysnn_ref.train.loop`): one ``.npz`` per checkpoint with
``model/<key>`` and ``optim/<key>`` arrays and a JSON ``meta`` entry (epoch, T, test accuracy,
best so far, Dspike temperature, the spiking layers' state beyond the state_dict, the run's
configuration).  :func:`load` rebuilds a trained network from a run folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .. import nn as nn_
from .._check import not_a_regular_file
from ..functional.surrogate import get_surrogate
from ..optim import Optimizer
from .config import RunConfig, build_model
from .files import atomic_write
from .schema import FORMAT_VERSION, check_meta

__all__ = ["neuron_state", "restore_neuron_state", "save_checkpoint", "read_checkpoint",
           "checkpoint_path", "load_run", "load"]


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
    atomic_write(path, lambda f: np.savez(f, **arrays))  # readers see the old or the new file
    return path


CHECKPOINT_VERSION = FORMAT_VERSION   #: the schema written by :func:`save_checkpoint`


def read_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                                                dict[str, Any]]:
    """``(model state, optimizer state, meta)`` of a checkpoint written by
    :func:`save_checkpoint`.  Raises ``ValueError`` naming the file when it is not one."""
    path = Path(path)
    if (why := not_a_regular_file(path)) is not None:
        raise ValueError(f"checkpoint {path}: {why}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ValueError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # noqa: BLE001 - BadZipFile, truncated file, ...
        raise ValueError(f"checkpoint {path} is not a readable .npz ({type(e).__name__}: {e})"
                         ) from None
    if not isinstance(arrays, dict) or any(not isinstance(v, np.ndarray)
                                           for v in arrays.values()):
        raise ValueError(f"checkpoint {path} is a zip whose members are not .npy arrays (not an "
                         ".npz written by pysnn_ref.train)")
    if "meta" not in arrays:
        raise ValueError(f"checkpoint {path} has no 'meta' entry: not written by "
                         "pysnn_ref.train")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except ValueError:
        raise ValueError(f"checkpoint {path}: meta is not valid JSON") from None
    check_meta(meta, f"checkpoint {path}")
    model = {k[6:]: v for k, v in arrays.items() if k.startswith("model/")}
    if not model:
        raise ValueError(f"checkpoint {path} holds no model arrays")
    for k, v in model.items():
        if v.dtype.kind != "f" or not np.isfinite(v).all():
            raise ValueError(f"checkpoint {path}: model array {k!r} is not finite floats "
                             f"(dtype {v.dtype}); refusing to load NaN/inf weights")
    optim = {k[6:]: v for k, v in arrays.items() if k.startswith("optim/")}
    for k, v in optim.items():
        if v.dtype.kind in "fc" and not np.isfinite(v).all():
            raise ValueError(f"checkpoint {path}: optimizer array {k!r} holds NaN/inf; "
                             "refusing to resume from a diverged optimizer state")
        if v.dtype.kind not in "fiuU":
            raise ValueError(f"checkpoint {path}: optimizer array {k!r} has dtype {v.dtype}; "
                             "expected numbers (or the optimizer's name)")
    return model, optim, meta


def checkpoint_path(run_dir_or_path: str | Path, which: str = "last") -> Path:
    """``RUN_DIR/<which>.npz`` for a run folder, the path itself for a file."""
    p = Path(run_dir_or_path).expanduser()
    if p.is_dir():
        if which not in ("best", "last"):
            raise ValueError(f"checkpoint must be 'best' or 'last', got {which!r}")
        p = p / f"{which}.npz"
    if p.exists() and (why := not_a_regular_file(p)) is not None:
        raise ValueError(f"checkpoint {p}: {why}")
    if not p.is_file() and p.name == "last.npz" and (p.parent / "config.json").is_file():
        raise ValueError(f"checkpoint {p} does not exist: the run {p.parent} stopped before its "
                         f"first checkpoint, there is nothing to resume; start it again with "
                         f"--out {p.parent} (the same flags)")
    if not p.is_file():
        raise ValueError(f"checkpoint {p} does not exist (expected a run folder with "
                         "best.npz / last.npz, or an .npz file)")
    return p


def load_run(run_dir_or_path: str | Path, device: str = "cpu", checkpoint: str = "last"
             ) -> tuple[nn_.Module, RunConfig, dict[str, Any]]:
    """Rebuild a trained network from a run folder (its ``last.npz`` by default, or
    ``best.npz``) or a checkpoint file.  Returns ``(net, config, info)``: the network on
    ``device`` in eval mode, the run's validated :class:`~pysnn_ref.train.config.RunConfig` and
    the checkpoint's ``path``, ``epoch``, ``T`` and ``test_acc``."""
    path = checkpoint_path(run_dir_or_path, checkpoint)
    model_state, _, meta = read_checkpoint(path)
    cfg = RunConfig.from_dict(meta["config"], f"checkpoint {path} (meta 'config')")
    net = build_model(cfg, cfg.input_shape, cfg.num_classes)
    net.load_state_dict(model_state)
    restore_neuron_state(net, meta["neurons"])
    net.to(device)
    net.eval()
    info = {"path": str(path), "epoch": meta["epoch"], "T": meta["T"],
            "test_acc": meta["test_acc"]}
    return net, cfg, info


def load(run_dir_or_path: str | Path, device: str = "cpu",
         checkpoint: str = "last") -> tuple[nn_.Module, dict[str, Any]]:
    """Rebuild a trained network from a run folder (its ``last.npz`` by default, as
    ``python -m pysnn_ref.evaluate``; or ``best.npz``) or a checkpoint file.  Returns
    ``(net, config)``: the network on ``device`` in eval mode, and the run's configuration as a
    plain dict plus ``config["checkpoint"]`` (path, epoch, T, test_acc) -- :func:`load_run`
    with the configuration as a dict."""
    net, cfg, info = load_run(run_dir_or_path, device, checkpoint)
    return net, {**cfg.to_dict(), "checkpoint": info}

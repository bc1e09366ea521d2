"""The run folder of a training run (:mod:`pysnn_ref.train.loop`) and what it prints.

Folder: ``config.json`` (every setting, library versions, the model), ``metrics.jsonl`` (one
JSON object per epoch), the checkpoints (:mod:`pysnn_ref.train.checkpoint`) and the figures
(:mod:`pysnn_ref.train.plots`).  Log lines: a header, one line per epoch, the summary; the last line
is ``test_acc=0.XXXX``.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numba
import numpy as np

from .. import __version__
from .._check import not_a_regular_file
from ..errors import RunFormatError
from .checkpoint import read_checkpoint
from .config import RunConfig
from .files import RunLock, atomic_write, atomic_write_text
from .flags import SURROGATE_FREE
from .schema import ENERGY, FORMAT_VERSION, check_energy, read_json, read_metrics

__all__ = ["default_out", "versions", "fmt_time", "open_run_dir", "write_config",
           "write_energy", "read_energy", "energy_line", "append_metrics", "log_header",
           "epoch_line", "finish_log"]


def default_out(cfg: RunConfig) -> Path:
    """``runs/<date>-<time>-<model>-<method>`` (with ``-2``, ``-3``, ... if it exists)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{stamp}-{cfg.model}-{cfg.method}"
    out, k = base, 1
    while out.exists():
        k += 1
        out = base.with_name(f"{base.name}-{k}")
    return out


def versions() -> dict[str, str]:
    """Versions of pysnn_ref, NumPy, Numba and Python (recorded in config.json)."""
    return {"pysnn_ref": __version__, "numpy": np.__version__, "numba": numba.__version__,
            "python": platform.python_version()}


def fmt_time(s: float) -> str:
    """Seconds as a short string: two decimals below 100 s, whole seconds above."""
    return f"{s:.2f}s" if s < 100 else f"{s:.0f}s"


def open_run_dir(cfg: RunConfig, resume: str | Path | None, start_epoch: int,
                 log: Callable[[str], None] | None = None
                 ) -> tuple[Path, list[dict[str, Any]], RunLock]:
    """Lock and prepare the run folder (``cfg.out`` or :func:`default_out`; the caller
    records it in the configuration) and start its ``metrics.jsonl``: empty for a new run,
    the history up to ``start_epoch`` for a resumed one.  Returns ``(run_dir, history,
    lock)``; the caller releases the lock (:class:`~pysnn_ref.train.files.RunLock`) when the
    run ends.

    One writer per run, nothing lost (docs/reliability.md):

    * the folder is locked first: a second process writing the same run is refused;
    * a folder that holds a run (``config.json`` and ``last.npz``) is never written by a new run,
      nor by ``--resume OTHER --out FOLDER``: resuming into another folder copies the resumed
      run's checkpoints and history into a folder that holds no run;
    * a folder with ``config.json`` but no ``last.npz`` (a run stopped before its first
      checkpoint) holds nothing to keep: it is started over;
    * resuming in place re-reads ``last.npz`` under the lock: if another process moved the run on
      since this one read it, this one stops instead of rewinding the run.
    """
    run_dir = Path(cfg.out) if cfg.out else default_out(cfg)
    lock = RunLock(run_dir)
    try:
        history = _prepare_run_dir(run_dir, resume, start_epoch, log)
    except BaseException:
        lock.release()
        raise
    return run_dir, history, lock


def _prepare_run_dir(run_dir: Path, resume: str | Path | None, start_epoch: int,
                     log: Callable[[str], None] | None) -> list[dict[str, Any]]:
    """:func:`open_run_dir` once the folder is locked: the checks, the copy, the history."""
    src = Path(resume).parent if resume is not None else None
    in_place = src is not None and src.resolve() == run_dir.resolve()
    holds_run = (run_dir / "config.json").exists() and (run_dir / "last.npz").exists()
    if in_place:
        now = read_checkpoint(resume)[2]["epoch"]
        if now != start_epoch:
            raise ValueError(f"--resume {run_dir}: another process moved the run from epoch "
                             f"{start_epoch} to {now} while this one started; run --resume "
                             "again to continue from there")
    elif holds_run:
        how = (f"--resume {src} --out {run_dir} would overwrite it; resuming into another "
               "folder copies the run into a folder that holds none" if src is not None else
               f"choose another folder, or continue it with --resume {run_dir}")
        raise ValueError(f"--out {run_dir} already holds a run (config.json, last.npz); {how}")
    elif (run_dir / "config.json").exists():
        if log is not None:
            log(f"note: {run_dir} holds a run stopped before its first checkpoint; starting "
                "it over")
        for stale in ("best.npz", "metrics.jsonl", "energy.json"):
            (run_dir / stale).unlink(missing_ok=True)
    history: list[dict[str, Any]] = []
    if src is not None:
        history = [m for m in read_metrics(src / "metrics.jsonl") if m["epoch"] <= start_epoch]
        if not in_place:  # a copy of the resumed run: its checkpoints, then its history
            for name in ("best.npz", "last.npz"):
                if (src / name).is_file():
                    data = (src / name).read_bytes()
                    atomic_write(run_dir / name, lambda f, d=data: f.write(d))
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in history))
    return history


def write_config(run_dir: Path, cfg: RunConfig, model_repr: str, n_params: int) -> RunConfig:
    """Write ``config.json`` (atomically): ``cfg`` with the run folder's format version, the
    library versions, the model and its parameter count -- the configuration returned."""
    cfg = cfg.replace(format_version=FORMAT_VERSION, versions=versions(),
                      model_repr=model_repr, n_parameters=n_params)
    atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
    return cfg


def write_energy(run_dir: Path, report: dict[str, Any]) -> None:
    """``energy.json`` (:meth:`pysnn_ref.energy.EnergyReport.to_dict`), checked against its
    schema before it is written (an infinite ANN/SNN ratio, a network without spikes, is
    written as null) and written atomically."""
    rep = dict(report)
    r = rep.get("ann_over_snn")
    if isinstance(r, float) and not math.isfinite(r):
        rep["ann_over_snn"] = None
    path = run_dir / "energy.json"
    check_energy(rep, f"{path} (being written)")
    atomic_write_text(path, json.dumps(rep, indent=1) + "\n")


def read_energy(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``energy.json``, checked against its schema (one
    :class:`~pysnn_ref.errors.RunFormatError` line naming the file and the key), or None if the
    run has none (stopped before its end)."""
    path = Path(run_dir) / "energy.json"
    if not path.exists():
        return None
    if (why := not_a_regular_file(path)) is not None:
        raise RunFormatError(f"{path}: {why}")
    return read_json(path, ENERGY)


def energy_line(rep: dict[str, Any], path: Path) -> str:
    """One line of a recorded energy.json (as the training log's energy line)."""
    ratio = rep["ann_over_snn"]
    return (f"{path}: energy/sample (45 nm, T={rep['T']}): SNN {rep['energy_pj'] / 1e6:.4g} uJ "
            f"({rep['macs']:.4g} MAC + {rep['sops']:.4g} SOP), ANN "
            f"{rep['ann_energy_pj'] / 1e6:.4g} uJ, ANN/SNN = "
            f"{'inf' if ratio is None else format(ratio, '.3g')}")


def append_metrics(run_dir: Path, rec: dict[str, Any]) -> None:
    """One epoch's record as a line of ``metrics.jsonl``; the file is rewritten atomically (a
    crash leaves the old lines or the new ones, never a half line)."""
    path = run_dir / "metrics.jsonl"
    old = path.read_text() if path.is_file() else ""
    atomic_write_text(path, old + json.dumps(rec) + "\n")


def log_header(log: Callable[[str], None], cfg: RunConfig, input_shape: tuple[int, ...],
               n_params: int, n_spiking: int, total: int, method_text: str = "") -> None:
    """The lines that open a run: data, model, device; method and optimisation; what the
    method does (``method_text``, :meth:`pysnn_ref.methods.Method.describe`)."""
    log(f"pysnn_ref {__version__} | {cfg.dataset}: {cfg.n_train} train / "
        f"{cfg.n_test} test, input {tuple(input_shape)} | {cfg.model} "
        f"({n_params:,} parameters, {n_spiking} spiking layers) | {cfg.device}")
    tit = f" | TIT {cfg.tit}" if cfg.tit else ""
    neuron = f"lstm v_th={cfg.v_th:g}" if cfg.model == "lstm" else cfg.neuron
    surrogate = "" if cfg.method in SURROGATE_FREE else f"surrogate={cfg.surrogate} "
    log(f"method={cfg.method} loss={cfg.loss} neuron={neuron} "
        f"{surrogate}T={cfg.T} epochs={total} batch={cfg.batch_size} "
        f"{cfg.optimizer} lr={cfg.lr:g} {cfg.schedule}{tit} | run folder {cfg.out}")
    if method_text:
        log(f"method {cfg.method}: {method_text}")


def epoch_line(rec: dict[str, Any], total: int) -> str:
    """The summary line of one epoch's record."""
    return (f"epoch {rec['epoch']:>3}/{total} T={rec['T']} loss={rec['loss']:.4f} "
            f"train_acc={rec['train_acc']:.4f} test_acc={rec['test_acc']:.4f} "
            f"rate={rec['firing_rate']:.3f} fwd={fmt_time(rec['forward_s'])} "
            f"bwd={fmt_time(rec['backward_s'])} lr={rec['lr']:.3g}")


def finish_log(log: Callable[[str], None], run_dir: Path, cfg: RunConfig,
               history: list[dict[str, Any]], best_acc: float, best_epoch: int,
               last_acc: float) -> None:
    """Draw the figures (unless ``no_plots``), list the files, print the last lines."""
    if history:
        pngs: list[Path] = []
        if not cfg.no_plots:
            from .plots import plot_run  # lazy: plots imports matplotlib; --no-plots never loads it

            pngs = plot_run(run_dir, f"{cfg.model} / {cfg.method} / {cfg.dataset}")
        log(f"wrote {run_dir}/" + ", ".join(["config.json", "metrics.jsonl", "best.npz",
                                             "last.npz"] + [p.name for p in pngs]))
    log(f"best test_acc={best_acc:.4f} at epoch {best_epoch} (best.npz); final epoch below")
    log(f"test_acc={last_acc:.4f}")

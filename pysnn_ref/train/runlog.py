"""The run folder of a training run (:mod:`pysnn_ref.train.loop`) and what it prints.

Folder: ``config.json`` (every setting, library versions, the model), ``metrics.jsonl`` (one
JSON object per epoch), the checkpoints (:mod:`pysnn_ref.train.checkpoint`) and the figures
(:mod:`pysnn_ref.train.plots`).  Log lines: a header, one line per epoch, the summary; the last line
is ``test_acc=0.XXXX``.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numba
import numpy as np

from .. import __version__

__all__ = ["default_out", "versions", "fmt_time", "open_run_dir", "write_config",
           "append_metrics", "log_header", "epoch_line", "finish_log"]


def default_out(cfg: dict[str, Any]) -> Path:
    """``runs/<date>-<time>-<model>-<method>`` (with ``-2``, ``-3``, ... if it exists)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{stamp}-{cfg['model']}-{cfg['method']}"
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


def open_run_dir(cfg: dict[str, Any], resume: str | Path | None,
                 start_epoch: int) -> tuple[Path, list[dict[str, Any]]]:
    """Create the run folder (``cfg["out"]`` or :func:`default_out`; ``cfg["out"]`` is set to
    it) and start its ``metrics.jsonl``: empty for a new run, the history up to
    ``start_epoch`` for a resumed one (from this folder, or the resumed run's).  Returns
    ``(run_dir, history)``.  A folder that already holds a run is refused unless resuming."""
    run_dir = Path(cfg["out"]) if cfg["out"] else default_out(cfg)
    cfg["out"] = str(run_dir)
    metrics_path = run_dir / "metrics.jsonl"
    if resume is None and (run_dir / "config.json").exists():
        raise ValueError(f"--out {run_dir} already holds a run (config.json); choose another "
                         f"folder, or continue it with --resume {run_dir}")
    run_dir.mkdir(parents=True, exist_ok=True)
    history: list[dict[str, Any]] = []
    if resume is not None:
        src = Path(resume).parent / "metrics.jsonl"
        for path in (metrics_path, src):
            if path.is_file():
                history = [json.loads(s) for s in path.read_text().splitlines() if s.strip()]
                history = [m for m in history if m["epoch"] <= start_epoch]
                break
    metrics_path.write_text("".join(json.dumps(m) + "\n" for m in history))
    return run_dir, history


def write_config(run_dir: Path, cfg: dict[str, Any], model_repr: str, n_params: int) -> None:
    """Add versions, the model and its parameter count to ``cfg``; write ``config.json``."""
    cfg["versions"] = versions()
    cfg["model_repr"] = model_repr
    cfg["n_parameters"] = n_params
    (run_dir / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def append_metrics(run_dir: Path, rec: dict[str, Any]) -> None:
    """One epoch's record as a line of ``metrics.jsonl``."""
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(rec) + "\n")


def log_header(log: Callable[[str], None], cfg: dict[str, Any], input_shape: tuple[int, ...],
               n_params: int, n_spiking: int, total: int) -> None:
    """The two lines that open a run: data, model, device; method and optimisation."""
    log(f"pysnn_ref {__version__} | {cfg['dataset']}: {cfg['n_train']} train / "
        f"{cfg['n_test']} test, input {tuple(input_shape)} | {cfg['model']} "
        f"({n_params:,} parameters, {n_spiking} spiking layers) | {cfg['device']}")
    tit = f" | TIT {cfg['tit']}" if cfg["tit"] else ""
    neuron = f"lstm v_th={cfg['v_th']:g}" if cfg["model"] == "lstm" else cfg["neuron"]
    log(f"method={cfg['method']} loss={cfg['loss']} neuron={neuron} "
        f"surrogate={cfg['surrogate']} T={cfg['T']} epochs={total} batch={cfg['batch_size']} "
        f"{cfg['optimizer']} lr={cfg['lr']:g} {cfg['schedule']}{tit} | run folder {cfg['out']}")


def epoch_line(rec: dict[str, Any], total: int) -> str:
    """The summary line of one epoch's record."""
    return (f"epoch {rec['epoch']:>3}/{total} T={rec['T']} loss={rec['loss']:.4f} "
            f"train_acc={rec['train_acc']:.4f} test_acc={rec['test_acc']:.4f} "
            f"rate={rec['firing_rate']:.3f} fwd={fmt_time(rec['forward_s'])} "
            f"bwd={fmt_time(rec['backward_s'])} lr={rec['lr']:.3g}")


def finish_log(log: Callable[[str], None], run_dir: Path, cfg: dict[str, Any],
               history: list[dict[str, Any]], best_acc: float, best_epoch: int,
               last_acc: float) -> None:
    """Draw the figures (unless ``no_plots``), list the files, print the last lines."""
    if history:
        pngs: list[Path] = []
        if not cfg.get("no_plots"):
            from .plots import plot_run  # lazy: plots imports matplotlib; --no-plots never loads it

            pngs = plot_run(run_dir, f"{cfg['model']} / {cfg['method']} / {cfg['dataset']}")
        log(f"wrote {run_dir}/" + ", ".join(["config.json", "metrics.jsonl", "best.npz",
                                             "last.npz"] + [p.name for p in pngs]))
    log(f"best test_acc={best_acc:.4f} at epoch {best_epoch} (best.npz); final epoch below")
    log(f"test_acc={last_acc:.4f}")

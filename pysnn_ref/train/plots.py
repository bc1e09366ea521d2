"""Training plots of a run folder, drawn with matplotlib's non-interactive Agg backend.

:func:`plot_run` reads ``metrics.jsonl`` (one JSON object per epoch, written by
:mod:`pysnn_ref.train`) and writes two PNG files next to it:

* ``curves.png``: training and test loss, training and test accuracy per epoch (and the Dspike
  temperature ``b`` when the run adapted it).  With time inheritance training the stages are
  marked by dotted vertical lines labelled with their ``T``.
* ``firing_rates.png``: the mean firing rate (spikes per neuron per time step, over the training
  batches of an epoch) of every spiking layer, per epoch (left) and for the last epoch (right).

The functions take plain lists of dicts, so they also plot metrics you assemble yourself.
:func:`raster` draws the spikes one layer fired (e.g. recorded by
:class:`pysnn_ref.nn.SpikeMonitor`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display needed; must precede the pyplot import
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

__all__ = ["read_metrics", "plot_curves", "plot_firing_rates", "plot_run", "raster"]


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The epoch records of a ``metrics.jsonl`` file (blank lines skipped)."""
    lines = Path(path).read_text().splitlines()
    return [json.loads(s) for s in lines if s.strip()]


def _stage_marks(ax: Any, metrics: Sequence[dict[str, Any]]) -> None:
    """Dotted lines where T changes (time inheritance training), labelled with the new T; whole
    epochs on the x axis."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for prev, cur in zip(metrics, metrics[1:], strict=False):
        if cur.get("T") != prev.get("T"):
            x = cur["epoch"] - 0.5
            ax.axvline(x, color="grey", linestyle=":", linewidth=1)
            ax.text(x, 1.0, f" T={cur['T']}", transform=ax.get_xaxis_transform(),
                    va="top", ha="left", fontsize=8, color="grey")


def plot_curves(metrics: Sequence[dict[str, Any]], path: str | Path,
                title: str | None = None) -> Path:
    """Loss and accuracy per epoch (train and test), saved as a PNG at ``path``."""
    if not metrics:
        raise ValueError("metrics must hold at least one epoch record, got none")
    ep = [m["epoch"] for m in metrics]
    has_b = any(m.get("dspike_b") is not None for m in metrics)
    ncols = 3 if has_b else 2
    fig, axes = plt.subplots(1, ncols, figsize=(4.6 * ncols, 3.6), constrained_layout=True)
    ax = axes[0]
    ax.plot(ep, [m["loss"] for m in metrics], "o-", ms=3, label="train")
    if all("test_loss" in m for m in metrics):
        ax.plot(ep, [m["test_loss"] for m in metrics], "s-", ms=3, label="test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss")
    ax.legend()
    _stage_marks(ax, metrics)
    ax = axes[1]
    ax.plot(ep, [100 * m["train_acc"] for m in metrics], "o-", ms=3, label="train")
    ax.plot(ep, [100 * m["test_acc"] for m in metrics], "s-", ms=3, label="test")
    best = max(metrics, key=lambda m: m["test_acc"])
    ax.annotate(f"{100 * best['test_acc']:.2f}%", (best["epoch"], 100 * best["test_acc"]),
                textcoords="offset points", xytext=(0, -14), ha="center", fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("accuracy")
    ax.legend(loc="lower right")
    _stage_marks(ax, metrics)
    if has_b:
        ax = axes[2]
        pts = [(m["epoch"], m["dspike_b"]) for m in metrics if m.get("dspike_b") is not None]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3, color="C2")
        ax.set_xlabel("epoch")
        ax.set_ylabel("b")
        ax.set_title("Dspike temperature (FDG-adapted)")
        _stage_marks(ax, metrics)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_firing_rates(metrics: Sequence[dict[str, Any]], path: str | Path,
                      title: str | None = None) -> Path:
    """Per-layer firing rates per epoch (left) and in the last epoch (right), as a PNG."""
    if not metrics or not metrics[-1].get("firing_rates"):
        raise ValueError("metrics must hold epoch records with per-layer 'firing_rates'")
    layers = list(metrics[-1]["firing_rates"])
    ep = [m["epoch"] for m in metrics]
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for name in layers:
        a0.plot(ep, [m["firing_rates"].get(name, float("nan")) for m in metrics], "o-", ms=3,
                label=name)
    a0.set_xlabel("epoch")
    a0.set_ylabel("spikes / neuron / step")
    a0.set_title("firing rate per spiking layer")
    if len(layers) <= 12:
        a0.legend(fontsize=7, title="layer", title_fontsize=7)
    _stage_marks(a0, metrics)
    last = metrics[-1]["firing_rates"]
    a1.bar(range(len(layers)), [last[n] for n in layers], color="C1")
    a1.set_xticks(range(len(layers)), layers, rotation=45 if len(layers) > 6 else 0,
                  fontsize=8)
    a1.set_xlabel("spiking layer (index path in the network)")
    a1.set_ylabel("spikes / neuron / step")
    a1.set_title(f"epoch {metrics[-1]['epoch']}")
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_run(run_dir: str | Path, title: str | None = None) -> list[Path]:
    """Draw ``curves.png`` and ``firing_rates.png`` from ``run_dir/metrics.jsonl``."""
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir / "metrics.jsonl")
    if not metrics:
        return []
    return [plot_curves(metrics, run_dir / "curves.png", title),
            plot_firing_rates(metrics, run_dir / "firing_rates.png", title)]


def raster(spikes: Any, path: str | Path | None = None, *, sample: int = 0,
           max_neurons: int = 200, ax: Any = None, title: str | None = None) -> Any:
    """Spike raster of one sample: a dot at (t, neuron) for every spike.

    Args:
        spikes: one layer's output spikes, time-major ``(T, B, ...)`` (e.g. an entry of
            ``SpikeMonitor.spikes``); the neuron axes are flattened.
        path: if given, the figure is saved there as a PNG.
        sample: which batch element to draw.
        max_neurons: draw the first ``max_neurons`` neurons only.
        ax: a matplotlib Axes to draw into (else a new figure is made).
        title: the axes title (default: the neuron count and the firing rate).
    Returns the Axes.
    """

    o = np.asarray(spikes)
    if o.ndim < 2:
        raise ValueError(f"spikes must be time-major (T, B, ...), got shape {o.shape}")
    if not 0 <= sample < o.shape[1]:
        raise ValueError(f"sample must be in [0, {o.shape[1]}), got {sample}")
    if max_neurons < 1:
        raise ValueError(f"max_neurons must be >= 1, got {max_neurons}")
    o = o[:, sample].reshape(o.shape[0], -1)[:, :max_neurons]
    t, n = np.nonzero(o)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.6), constrained_layout=True)
    ax.scatter(t, n, s=4, marker="|", color="black")
    ax.set_xlim(-0.5, o.shape[0] - 0.5)
    ax.set_ylim(-0.5, o.shape[1] - 0.5)
    ax.set_xlabel("time step t")
    ax.set_ylabel("neuron")
    ax.set_title(title or f"{o.shape[1]} neurons, firing rate {o.mean():.3f}")
    if path is not None:
        ax.figure.savefig(path, dpi=120)
    if fig is not None:
        plt.close(fig)
    return ax

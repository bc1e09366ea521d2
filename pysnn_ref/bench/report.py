"""Reports of ``python -m pysnn_ref.bench`` (:mod:`pysnn_ref.bench`): the text and Markdown
tables, the headline summary lines, JSON / CSV records and the PNG figures (time, speed-up and
memory vs T).  The records come from :func:`pysnn_ref.bench.measure.run_benchmark`.
"""

from __future__ import annotations

import csv
import json
import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numba
import numpy as np

from .measure import F64_CHECK_BATCH, FIELDS

__all__ = ["format_table", "format_markdown", "summary", "write_json", "write_csv",
    "METHOD_COLORS", "METHOD_STYLES", "write_plots"]

# --------------------------------------------------------------------------------------------
# Output: table, JSON, CSV, plots
# --------------------------------------------------------------------------------------------

def _fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1e3:.2f}"


def _fmt_x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _fmt_mib(v: int | None) -> str:
    return "-" if v is None else f"{v / 2**20:.2f}"


def _columns() -> list[tuple[str, Callable[[dict[str, Any]], str]]]:
    return [("method", lambda r: r["method"]), ("T", lambda r: str(r["T"])),
            ("fwd ms", lambda r: _fmt_ms(r["forward_s"])),
            ("bwd ms", lambda r: _fmt_ms(r["backward_s"])),
            ("opt ms", lambda r: _fmt_ms(r["optimizer_s"])),
            ("step ms", lambda r: _fmt_ms(r["step_s"])),
            ("min ms", lambda r: _fmt_ms(r["step_min_s"])),
            ("1st-med ms", lambda r: _fmt_ms(r["compile_s"])),
            ("peak MiB", lambda r: _fmt_mib(r["peak_mem_bytes"])),
            ("rate", lambda r: "-" if r["firing_rate"] is None else f"{r['firing_rate']:.3f}"),
            ("bwd x bptt", lambda r: _fmt_x(r["backward_speedup_vs_bptt"])),
            ("step x bptt", lambda r: _fmt_x(r["step_speedup_vs_bptt"])),
            ("bptt/torch", lambda r: "-" if r["bptt_over_torch"] is None
             else f"{r['bptt_over_torch']:.2f}"),
            ("grad diff", lambda r: "-" if r["grad_max_rel_diff"] is None
             else f"{r['grad_max_rel_diff']:.1e}"),
            ("spike flips", lambda r: "-" if r["spike_mismatches"] is None
             else f"{r['spike_mismatches']}/{r['spikes_total']}"),
            ("f64 diff", lambda r: "-" if r["grad_max_rel_diff_f64_smooth"] is None
             else f"{r['grad_max_rel_diff_f64_smooth']:.1e}")]


def format_table(records: list[dict[str, Any]]) -> str:
    """The records as a fixed-width text table (times in ms, memory in MiB)."""
    cols = _columns()
    rows = [[f(r) for _, f in cols] for r in records]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, (h, _) in enumerate(cols)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
    out = [line([h for h, _ in cols]), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    return "\n".join(out)


def format_markdown(records: list[dict[str, Any]], command: str,
                    figures: Sequence[str | Path] = ()) -> str:
    """A Markdown fragment: the command, the environment, the table, the summary, the figures."""

    cols = _columns()
    keep = [i for i, (h, f) in enumerate(cols) if any(f(r) != "-" for r in records)]
    head = [cols[i][0] for i in keep]
    lines = [f"Command: `{command}`", "",
             f"Environment: {platform.machine()}, {os.cpu_count()} CPUs; ours: "
             f"{records[0]['threads']} Numba threads, {records[0]['blas_threads']} BLAS "
             f"thread(s), OMP_WAIT_POLICY {records[0].get('omp_wait_policy', 'default')}; "
             f"Python {platform.python_version()}, NumPy {np.__version__}, "
             f"Numba {numba.__version__}"
             + (f"; PyTorch {_torch_version()} with torch.set_num_threads("
                f"{records[0]['threads']})" if any(r['method'] == 'torch' for r in records)
                else "") + ".", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---:" for _ in head) + "|"]
    for r in records:
        lines.append("| " + " | ".join(cols[i][1](r) for i in keep) + " |")
    lines.append("")
    lines += [f"- {s}" for s in summary(records)]
    if figures:
        lines.append("")
        lines += [f"![{Path(p).stem}]({p})" for p in figures]
    return "\n".join(lines) + "\n"


def _torch_version() -> str:
    try:
        import torch  # optional: torch's version, where it is installed
    except ImportError:
        return "?"
    return str(torch.__version__)


def summary(records: list[dict[str, Any]]) -> list[str]:
    """One line per headline ratio: flow backward/step speed-up at the largest T, memory growth
    from the smallest to the largest T, our BPTT step over PyTorch's."""
    lines = []
    Ts = sorted({r["T"] for r in records})
    by = {(r["method"], r["T"]): r for r in records}
    lo, hi = Ts[0], Ts[-1]
    for m in ("asf", "ssf", "dsr", "rate"):
        r = by.get((m, hi))
        if r and r["backward_speedup_vs_bptt"] is not None:
            lines.append(f"{m} vs bptt at T={hi}: backward {r['backward_speedup_vs_bptt']:.1f}x "
                         f"faster (0.5*T = {0.5 * hi:g}), whole step "
                         f"{r['step_speedup_vs_bptt']:.1f}x faster")
    if len(Ts) > 1:
        for m in sorted({r["method"] for r in records}):
            a, b = by.get((m, lo)), by.get((m, hi))
            if a and b and a["peak_mem_bytes"] and b["peak_mem_bytes"] is not None:
                lines.append(f"{m} peak memory T={hi} / T={lo}: "
                             f"{b['peak_mem_bytes'] / a['peak_mem_bytes']:.2f}x "
                             f"({_fmt_mib(a['peak_mem_bytes'])} -> "
                             f"{_fmt_mib(b['peak_mem_bytes'])} MiB)")
    for T in Ts:
        r = by.get(("torch", T))
        if r and r["bptt_over_torch"] is not None:
            lines.append(f"T={T}: our bptt step / PyTorch autograd step = "
                         f"{r['bptt_over_torch']:.2f} ({_fmt_ms(by[('bptt', T)]['step_s'])} ms vs "
                         f"{_fmt_ms(r['step_s'])} ms)")
        elif r:
            lines.append(f"T={T}: PyTorch autograd step {_fmt_ms(r['step_s'])} ms")
        if r and r["grad_max_rel_diff"] is not None:
            lines.append(f"T={T}: bptt gradients vs autograd: max rel diff "
                         f"{r['grad_max_rel_diff']:.1e} ({r['dtype']}, Heaviside, "
                         f"worst {r['grad_worst_param']}; {r['spike_mismatches']} of "
                         f"{r['spikes_total']} spikes differ), "
                         f"{r['grad_max_rel_diff_f64_smooth']:.1e} (float64 smooth mode, "
                         f"{min(F64_CHECK_BATCH, r['batch'])} samples)")
    return lines


def write_json(records: list[dict[str, Any]], path: str | Path) -> None:
    """Write the benchmark records to ``path`` as JSON."""
    Path(path).write_text(json.dumps(records, indent=1) + "\n")


def write_csv(records: list[dict[str, Any]], path: str | Path) -> None:
    """Write the benchmark records to ``path`` as CSV, one row per (method, T)."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(FIELDS))
        w.writeheader()
        for r in records:
            row = {k: r.get(k) for k in FIELDS}
            row["input_shape"] = "x".join(str(s) for s in r["input_shape"])
            w.writerow({k: "" if v is None else v for k, v in row.items()})


METHOD_COLORS = {"bptt": "tab:red", "asf": "tab:blue", "ssf": "tab:green", "dsr": "tab:purple",
                 "rate": "tab:orange", "torch": "tab:gray"}
METHOD_STYLES = {"bptt": "o-", "asf": "s--", "ssf": "^-", "dsr": "v-.", "rate": "P:",
                 "torch": "D-"}


def _log_T_axis(ax: Any, Ts: list[int]) -> None:
    from matplotlib.ticker import NullFormatter  # lazy: matplotlib only when figures are drawn

    ax.set_xscale("log")
    ax.set_xticks(Ts, [str(T) for T in Ts])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("T (time steps)")


def write_plots(records: list[dict[str, Any]], outdir: str | Path) -> list[Path]:
    """Three PNG figures under ``outdir``; returns their paths.

    ``<model>-time.png``: forward / backward / optimizer time vs T, stacked bars, one panel per
    method; ``<model>-speedup.png``: backward and whole-step speed-up of the
    flow methods (asf, ssf, dsr, rate) over bptt vs T;
    ``<model>-memory.png``: peak step memory vs T per method.
    """
    import matplotlib  # lazy: matplotlib (and its Agg backend) only when figures are drawn

    matplotlib.use("Agg")

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    model = records[0]["model"]
    head = (f"{model}, batch {records[0]['batch']}, {records[0]['device']}, "
            f"{records[0]['dtype']}, {records[0]['threads']} threads")
    methods = list(dict.fromkeys(r["method"] for r in records))
    Ts = sorted({r["T"] for r in records})
    by = {(r["method"], r["T"]): r for r in records}
    figs = [("time", _plot_time(plt, by, methods, Ts, head))]
    flows = [m for m in ("asf", "ssf", "dsr", "rate") if m in methods]
    if "bptt" in methods and flows:
        figs.append(("speedup", _plot_speedup(plt, by, flows, Ts, head)))
    if any(r["peak_mem_bytes"] is not None for r in records):
        figs.append(("memory", _plot_memory(plt, by, methods, Ts, head)))
    paths = []
    for name, fig in figs:
        p = outdir / f"{model}-{name}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


def _plot_time(plt: Any, by: dict[tuple[str, int], dict[str, Any]], methods: list[str],
               Ts: list[int], head: str) -> Any:
    """Time vs T, stacked bars per method.  Each panel has its own y scale (PyTorch's can be
    10x ours); the median step times are written on the bars."""
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 3.8), squeeze=False)
    xs = np.arange(len(Ts))
    for ax, m in zip(axes[0], methods, strict=True):
        f = np.array([by[(m, T)]["forward_s"] * 1e3 if (m, T) in by else 0 for T in Ts])
        b = np.array([by[(m, T)]["backward_s"] * 1e3 if (m, T) in by else 0 for T in Ts])
        o = np.array([by[(m, T)]["optimizer_s"] * 1e3 if (m, T) in by else 0 for T in Ts])
        ax.bar(xs, f, color="tab:blue", label="forward")
        ax.bar(xs, b, bottom=f, color="tab:orange", label="backward")
        ax.bar(xs, o, bottom=f + b, color="tab:gray", label="optimizer")
        tot = f + b + o
        step = [by[(m, T)]["step_s"] * 1e3 if (m, T) in by else 0 for T in Ts]
        for xi, v, label in zip(xs, tot, step, strict=True):  # label: the table's step median
            ax.text(xi, v, f"{label:.0f}", ha="center", va="bottom", fontsize=7)
        ax.set_ylim(0, 1.12 * max(tot.max(), 1e-9))
        ax.set_xticks(xs, [str(T) for T in Ts])
        ax.set_xlabel("T (time steps)")
        ax.set_title(m if m != "torch" else "PyTorch autograd")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("median time per training step (ms)")
    for ax in axes[0][1:]:
        ax.set_ylabel("ms")
    axes[0][0].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Training-step time vs T ({head}); bars: medians of forward / backward / "
                 "optimizer, numbers: median step (ms)", fontsize=10)
    fig.tight_layout()
    return fig


def _plot_speedup(plt: Any, by: dict[tuple[str, int], dict[str, Any]], flows: list[str],
                  Ts: list[int], head: str) -> Any:
    """Backward and whole-step speed-up of the flow methods over bptt vs T."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for m in flows:
        c = METHOD_COLORS[m]
        bw = [by[(m, T)]["backward_speedup_vs_bptt"] for T in Ts]
        st = [by[(m, T)]["step_speedup_vs_bptt"] for T in Ts]
        mk = "o" if m == "asf" else "^"
        ax.plot(Ts, bw, mk + "-", color=c, label=f"{m}: backward")
        ax.plot(Ts, st, mk + "--", color=c, label=f"{m}: whole step")
    ax.plot(Ts, [0.5 * T for T in Ts], ":", color="k", label="0.5·T")
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_yscale("log")
    _log_T_axis(ax, Ts)
    ax.set_ylabel("speed-up over bptt (x)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(f"Speed-up of ASF/SSF over BPTT ({head})", fontsize=9)
    fig.tight_layout()
    return fig


def _plot_memory(plt: Any, by: dict[tuple[str, int], dict[str, Any]], methods: list[str],
                 Ts: list[int], head: str) -> Any:
    """Peak step memory vs T per method."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for m in methods:
        pts = [(T, by[(m, T)]["peak_mem_bytes"]) for T in Ts
               if (m, T) in by and by[(m, T)]["peak_mem_bytes"] is not None]
        if pts:
            ax.plot([t for t, _ in pts], [v / 2**20 for _, v in pts],
                    METHOD_STYLES.get(m, "o-"), color=METHOD_COLORS.get(m),
                    label=m if m != "torch" else "PyTorch autograd", alpha=0.85)
    ax.set_yscale("log")
    _log_T_axis(ax, Ts)
    ax.set_ylabel("peak memory of one step (MiB)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(f"Peak step memory vs T ({head})", fontsize=9)
    fig.tight_layout()
    return fig

"""Benchmark: what one training step costs under each method (bptt, asf, ssf, dsr, rate, ottt,
sltt) -- time and memory vs T.

``python -m pysnn_ref.bench --model convnet --methods bptt,asf,ssf --T 4,10,20,40,80``

``python -m pysnn_ref.bench --paper ssf-table1 [--T 20] [--batch-size 1] [--dry-run]``: the
backward-time column of SSF's Table 1 on its networks (:mod:`pysnn_ref.bench.paper`);
``--paper ssf-table2 [--T 5,10,20] [--batch-size 1] [--dry-run]``: SSF's Table 2, the whole
training step of bptt, ssf, dsr and dsr-noF on PreAct-ResNet-18 (IF), speed-ups vs bptt.

For every method and number of time steps T, on a synthetic batch of the model's input shape
(direct encoding by default: the same analog input at every step), the benchmark runs whole
training steps through :meth:`pysnn_ref.methods.Method.train_step` -- ``zero_grad``,
``Method.forward`` + loss, loss backward + ``Method.backward``, ``SGD.step``; for ottt / sltt the
same per time step -- and reports the **median** over ``--repeats`` steps taken after ``--warmup``
warm-up steps of

* ``forward_s``   network forward + loss forward,
* ``backward_s``  loss backward + the method's backward (:meth:`pysnn_ref.methods.Method.backward`),
* ``optimizer_s`` the SGD step (momentum 0.9),
* ``step_s``      the whole step (zero_grad + the three above; median of the totals),

plus ``first_step_s`` (the very first step, which pays any Numba JIT compile / cache load and
first-touch allocations) and ``compile_s = first_step_s - step_s``.  The configurations of one
T (every method, and PyTorch) are timed *interleaved* -- round after round of one step each, the
order rotating -- so that background load on a shared machine hits them alike; ``step_min_s``
(the fastest timed step) is recorded beside the median.

**Peak memory** (``peak_mem_bytes``) is measured honestly and narrowly:

* CPU: :mod:`tracemalloc` around one extra training step.  NumPy reports every array data
  allocation to tracemalloc, so this is the peak of the traced bytes during the step (forward,
  loss, backward, optimizer) **above the traced bytes live just before it** -- i.e. "tracked
  NumPy allocations during one step, excluding weights, gradients, optimizer state and anything
  else allocated before the step".  Not seen: OpenBLAS' internal work buffers and memory Numba's
  runtime allocates inside compiled code (our kernels allocate their outputs in NumPy).
* GPU: a CuPy memory hook (``cupy.cuda.MemoryHook``) counts the bytes of memory-pool blocks
  handed out and returned during the step (rounded block sizes); the same "above what was live
  before" rule.  It is not the pool's reserved memory nor the driver's view.
* ``--vs-torch`` (CPU): the PyTorch profiler's memory events (``profile_memory=True``: every
  allocation/free of PyTorch's CPU allocator) summed in time order over one step, peak above
  the start.  PyTorch's optimizer zeroes the gradients in place (``set_to_none=False``) as ours
  does, so on both sides the persistent ``.grad`` arrays are outside the measured peak.

``--vs-torch`` also builds the same network in PyTorch (:mod:`pysnn_ref.bench.torch_ref`,
imported only then; torch is not a dependency), copies the weights, times its autograd training
step with ``torch.set_num_threads`` equal to our (Numba) thread count, and, per T, compares BPTT's
gradients with autograd's on the same weights and input: ``grad_max_rel_diff`` = max over
parameters of ``max|g_ours - g_torch| / max|g_torch|``
(see :func:`pysnn_ref.bench.measure.compare_gradients`).

The measurement is :mod:`pysnn_ref.bench.measure`, the tables, files and figures
:mod:`pysnn_ref.bench.report`; this module is the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .._check import check_choice
from ..backend import get_backend
from ..cli import RANGES, ArgumentParser, in_range, ranged, run_main
from ..functional.loss import LOSSES
from .distributed import format_workers_table, run_workers
from .measure import (
    DTYPES,
    ENCODER_CHOICES,
    MEM_METHOD,
    METHOD_CHOICES,
    all_models,
    blas_threads,
    build_model,
    default_input_shape,
    omp_wait_policy,
    run_benchmark,
    set_threads,
    thread_count,
)
from .report import format_markdown, format_table, summary, write_csv, write_json, write_plots

PROG = "python -m pysnn_ref.bench"


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def _int_list(name: str, text: str) -> list[int]:
    """``--NAME a,b,c``: integers >= 1 (within the range of :data:`pysnn_ref.cli.RANGES` where
    the setting has one, e.g. ``T``); errors name the flag."""
    flag, key = "--" + name, name.replace("-", "_")
    what = RANGES[key][3] if key in RANGES else "an integer >= 1"
    out = []
    for tok in text.split(","):
        try:
            v = int(tok.strip())
        except ValueError:
            raise ValueError(f"{flag} must be a comma-separated list of integers, each "
                             f"{what}, got {text!r}") from None
        if v < 1 or (key in RANGES and not in_range(key, v)):
            raise ValueError(f"{flag}: every value must be {what}, got {v}")
        out.append(v)
    return out


def _validate(args: argparse.Namespace) -> None:
    check_choice("model", args.model, all_models())
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise ValueError(f"methods must name at least one of {METHOD_CHOICES}")
    for m in methods:
        check_choice("methods", m, METHOD_CHOICES)
    args.methods = list(dict.fromkeys(methods))
    args.T = _int_list("T", args.T)
    args.input_shape = (tuple(_int_list("input-shape", args.input_shape))
                        if args.input_shape else default_input_shape(args.model))
    # build the network once now: a bad shape or option fails before anything runs
    build_model(args.model, args.input_shape, args.classes, lam=args.lam, v_th=args.v_th,
                reset=args.reset, surrogate=args.surrogate, seed=args.seed)
    if args.workers is not None:
        args.workers = _int_list("workers", args.workers)


def make_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(
        prog=PROG,
        description="Time one training step (forward, backward, SGD step) and measure its peak "
                    "memory under BPTT, ASF and SSF for several T, on synthetic inputs.")
    ap.add_argument("--model", default="convnet",
                    help="convnet (16C3-AP2-32C3-AP2, no BN), mlp (784-800-10) or any model of "
                         "pysnn_ref.models (default: convnet)")
    ap.add_argument("--methods", default="bptt,asf,ssf",
                    help="comma list of bptt, asf, ssf, dsr (run with reset soft, DSR's only "
                         "reset), rate, ottt (OTTT_A), sltt (one step at a time; models mlp, "
                         "convnet, lenet) (default: bptt,asf,ssf)")
    ap.add_argument("--T", default="4,10,20,40,80", help="comma list of time steps")
    ap.add_argument("--batch-size", type=ranged("batch_size"), default=64,
                    help="samples per step")
    ap.add_argument("--device", default="cpu", choices=("cpu", "gpu"),
                    help="cpu: NumPy + Numba; gpu: CuPy + numba.cuda (the [gpu] extra)")
    ap.add_argument("--dtype", default="float32", choices=DTYPES,
                    help="parameters, activations and gradients")
    ap.add_argument("--loss", default="sdt", choices=LOSSES,
                    help="sdt (CE of the mean output), tet (per-step CE, TET), asf-mse "
                         "(ASF's output-membrane MSE)")
    ap.add_argument("--encoder", default="direct", choices=ENCODER_CHOICES,
                    help="direct: the synthetic image at every step; poisson: Bernoulli "
                         "spikes of rate |x|")
    ap.add_argument("--repeats", type=ranged("repeats"), default=5, help="timed steps (median)")
    ap.add_argument("--warmup", type=ranged("warmup"), default=2,
                    help="untimed steps first (>= 1; the first is reported as first_step_s)")
    ap.add_argument("--input-shape", default=None,
                    help="C,H,W of one sample (default: 1,28,28 for mlp/convnet/lenet, "
                         "else 3,32,32)")
    ap.add_argument("--classes", type=ranged("classes"), default=10,
                    help="outputs of the classifier")
    ap.add_argument("--time-chunk", type=ranged("time_chunk"), default=None,
                    help="flow methods: steps streamed at once (default: the method's)")
    ap.add_argument("--lam", type=ranged("lam"), default=0.5, help="LIF decay (default 0.5)")
    ap.add_argument("--v-th", type=ranged("v_th"), default=1.0,
                    help="firing threshold (default 1.0)")
    ap.add_argument("--reset", default="hard", choices=("hard", "soft"),
                    help="hard: to 0 (SSF Eq. 6); soft: subtract v_th (Eq. 16)")
    ap.add_argument("--surrogate", default="triangle",
                    help="NAME[:a] of the BPTT surrogate gradient, e.g. triangle, atan:2")
    ap.add_argument("--lr", type=ranged("lr"), default=0.01,
                    help="SGD learning rate (momentum 0.9)")
    ap.add_argument("--seed", type=ranged("seed"), default=0, help="weights and synthetic inputs")
    ap.add_argument("--threads", type=ranged("threads"), default=None,
                    help="Numba threads (default: all cores); BLAS is capped at the same; "
                         "PyTorch gets torch.set_num_threads(threads)")
    ap.add_argument("--json", default=None, help="write the records as JSON to this file")
    ap.add_argument("--csv", default=None, help="write the records as CSV to this file")
    ap.add_argument("--plots", default=None, help="write PNG figures into this directory")
    ap.add_argument("--markdown", default=None,
                    help="write a Markdown fragment (command, table, summary, figures)")
    ap.add_argument("--vs-torch", action="store_true",
                    help="also time PyTorch autograd on the same network and compare BPTT "
                         "gradients (needs torch installed)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    ap.add_argument("--workers", default=None, metavar="W,...",
                    help="data-parallel over MPI instead: step time and speed-up of W ranks "
                         "sharing the global --batch-size, per method (needs the [mpi] extra; "
                         "--threads per rank, default 1; docs/distributed.md)")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile one extra step per configuration and print the top entries")
    ap.add_argument("--kernel-times", type=ranged("kernel_times"), default=0, metavar="N",
                    help="run N extra steps per method with every kernel of the device timed; "
                         "print ms per step per kernel (default 0: off)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the benchmark; errors propagate (see :func:`cli`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--paper" or a.startswith("--paper=") for a in argv):
        from .paper import main as paper_main  # SSF Tables 1 and 2 (bench/paper.py)

        return paper_main(argv)
    args = make_parser().parse_args(argv)
    _validate(args)

    get_backend(args.device, need_random=args.encoder == "poisson")  # one line if not usable
    if args.workers is not None:
        return _run_workers(args)
    restore = set_threads(args.threads) if args.threads is not None else None
    try:
        return _run(args, argv)
    finally:
        if restore is not None:
            restore()


def _run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    for out in (args.json, args.csv, args.markdown):  # fail before the run, not after it
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
    if args.plots:
        Path(args.plots).mkdir(parents=True, exist_ok=True)
    shape = "x".join(map(str, args.input_shape))
    print(f"pysnn_ref bench: model={args.model} input={shape} classes={args.classes} "
          f"batch={args.batch_size} device={args.device} dtype={args.dtype} loss={args.loss} "
          f"encoder={args.encoder} threads={thread_count()} blas_threads={blas_threads()} "
          f"OMP_WAIT_POLICY={omp_wait_policy()} warmup={args.warmup} "
          f"repeats={args.repeats} (times: medians)", flush=True)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    records = run_benchmark(args, log)
    print(format_table(records))
    if not args.no_memory:
        print(f"peak MiB = {MEM_METHOD[args.device]}"
              + (f"; torch: {MEM_METHOD['torch']}" if args.vs_torch else ""))
    print("1st-med = first step minus the median step (JIT compile / cache load, first-touch "
          "allocation)")
    for line in summary(records):
        print(line)
    if args.json:
        write_json(records, args.json)
    if args.csv:
        write_csv(records, args.csv)
    figures: list[Path] = []
    if args.plots:
        figures = write_plots(records, args.plots)
        for p in figures:
            print(f"wrote {p}")
    if args.markdown:
        command = "python -m pysnn_ref.bench " + " ".join(
            sys.argv[1:] if argv is None else list(argv))
        rel = [os.path.relpath(f, Path(args.markdown).resolve().parent) for f in
               (Path(f).resolve() for f in figures)]
        Path(args.markdown).write_text(format_markdown(records, command, rel))
        print(f"wrote {args.markdown}")
    return 0


def _run_workers(args: argparse.Namespace) -> int:
    """``--workers``: :mod:`pysnn_ref.bench.distributed` (mpiexec -n W per row)."""
    if args.device != "cpu":
        raise ValueError("--workers runs on the cpu (the GPU path stages through the host; "
                         "docs/distributed.md)")
    print(f"pysnn_ref bench --workers: model={args.model} global batch={args.batch_size} "
          f"dtype={args.dtype} threads per rank={args.threads or 1} warmup={args.warmup} "
          f"repeats={args.repeats} (medians)", flush=True)
    records = run_workers(args, args.workers,
                          lambda s: print(s, file=sys.stderr, flush=True))
    print(format_workers_table(records))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_json(records, args.json)
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """:func:`main` with the CLI's error handling: bad input -> one line on stderr, exit 2."""
    return run_main(main, PROG, argv)


if __name__ == "__main__":
    raise SystemExit(cli())

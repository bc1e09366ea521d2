"""``python -m pysnn_ref.bench --workers 1,2``: data-parallel step time and speed-up per method.

The SSF paper's Table 4 asks how training time scales with more workers.  Here the global
batch ``--batch-size`` B is fixed (strong scaling): with W workers each MPI rank runs the
training step on its B/W samples, then the one flat gradient all-reduce of
:func:`pysnn_ref.train.distributed.allreduce_gradients`, then the SGD step.  For every method, T and
W the launcher starts ``mpiexec -n W python -m pysnn_ref.bench.distributed ...`` (W = 1 too,
so that every row runs the same code); rank 0 prints one JSON line; the table gives the
median step time (rank 0's; the all-reduce synchronises the ranks every step), the median
all-reduce time and ``speedup = step(W=1) / step(W)``.  Each rank uses ``--threads`` Numba
threads (default 1, so that 2 ranks on 2 cores compare with 1 process on 1 core).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data import make_encoder
from ..methods import ONLINE, make_method
from ..optim import SGD
from ..train import distributed as D
from .measure import build_model, loss_functions, set_threads, synthetic_batch

__all__ = ["find_mpiexec", "worker_cli", "run_workers", "format_workers_table"]


def find_mpiexec() -> str:
    """The ``mpiexec`` next to this Python (the ``mpich`` wheel) or on PATH."""
    local = Path(sys.executable).parent / "mpiexec"
    found = str(local) if local.exists() else shutil.which("mpiexec")
    if found is None:
        raise ValueError("--workers needs mpiexec and mpi4py: pip install -e '.[mpi]'")
    return found


def _worker_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m pysnn_ref.bench.distributed")
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--input-shape", default="1,28,28")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--method", default="bptt")
    ap.add_argument("--T", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64, help="global batch")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--loss", default="sdt")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    return ap


def _worker(a: argparse.Namespace) -> dict[str, Any] | None:
    """Time ``a.steps`` data-parallel training steps on this rank; rank 0's record."""
    comm = D.init(True)
    set_threads(a.threads)
    shape = tuple(int(s) for s in a.input_shape.split(","))
    net = build_model(a.model, shape, a.classes, dtype=np.dtype(a.dtype), seed=a.seed)
    net.train()
    method = make_method(a.method, **({} if a.method in ONLINE else {"loss": a.loss}))
    opt = SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fwd, loss_bwd = loss_functions(a.loss)
    x, y = synthetic_batch(a.batch_size, shape, a.classes, np.dtype(a.dtype), a.seed)
    part = D.shard_slice(a.batch_size, comm.rank, comm.size)
    x, y = x[part], y[part]
    encoder = make_encoder("direct")
    D.broadcast_parameters(comm, net.parameters())
    steps, comms = [], []
    comm_s: list[float] = []

    def update(loss: Any) -> Any:
        """The all-reduce (timed) and the SGD step, after the method's backward."""
        t1 = time.perf_counter()
        D.allreduce_gradients(comm, net.parameters(), loss, len(y))
        comm_s.append(time.perf_counter() - t1)
        opt.step()
        return loss

    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        comm_s.clear()
        net.zero_grad()
        method.train_step(net, x, y, a.T, encoder, loss_fwd, loss_bwd, update,
                          time.perf_counter)
        if i >= a.warmup:
            steps.append(time.perf_counter() - t0)
            comms.append(sum(comm_s))
    if comm.rank != 0:
        return None
    return {"model": a.model, "method": a.method, "T": a.T, "batch": a.batch_size,
            "workers": comm.size, "threads": a.threads, "step_s": float(np.median(steps)),
            "allreduce_s": float(np.median(comms)),
            "n_params": int(sum(p.data.size for p in net.parameters()))}


def worker_cli(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m pysnn_ref.bench.distributed`` (under mpiexec)."""
    rec = _worker(_worker_parser().parse_args(argv))
    if rec is not None:
        print(json.dumps(rec), flush=True)
    return 0


def run_workers(args: argparse.Namespace, workers: Sequence[int],
                log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One record per (method, T, W): ``mpiexec -n W`` of the worker, rank 0's JSON line."""
    mpiexec = find_mpiexec()
    threads = 1 if args.threads is None else args.threads
    shape = ",".join(map(str, args.input_shape))
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    records = []
    for T in args.T:
        for m in args.methods:
            for W in workers:
                cmd = [mpiexec, "-n", str(W), sys.executable, "-m", "pysnn_ref.bench.distributed",
                       "--model", args.model, "--input-shape", shape, "--classes",
                       str(args.classes), "--method", m, "--T", str(T), "--batch-size",
                       str(args.batch_size), "--dtype", args.dtype, "--loss", args.loss,
                       "--steps", str(args.repeats), "--warmup", str(args.warmup),
                       "--threads", str(threads), "--seed", str(args.seed)]
                r = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if r.returncode != 0:
                    tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
                    raise RuntimeError(f"mpiexec -n {W} worker failed (exit {r.returncode}): "
                                       f"{tail}")
                rec = json.loads(r.stdout.strip().splitlines()[-1])
                log(f"  {m} T={T} workers={W}: step {rec['step_s'] * 1e3:.1f} ms")
                records.append(rec)
    for rec in records:
        base = next(b for b in records if b["method"] == rec["method"] and b["T"] == rec["T"]
                    and b["workers"] == min(workers))
        rec["speedup"] = base["step_s"] / rec["step_s"]
    return records


def format_workers_table(records: Sequence[dict[str, Any]]) -> str:
    """Markdown table: method, T, workers, step ms, all-reduce ms, speed-up."""
    lines = ["| method | T | workers | step ms | all-reduce ms | speed-up |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in records:
        lines.append(f"| {r['method']} | {r['T']} | {r['workers']} | {r['step_s'] * 1e3:.1f} | "
                     f"{r['allreduce_s'] * 1e3:.2f} | {r['speedup']:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - run under mpiexec by bench --workers
    sys.exit(worker_cli())

"""Benchmark: what one training step costs under BPTT, ASF and SSF -- time and memory vs T.

``python -m pysnn_ref.bench --model convnet --methods bptt,asf,ssf --T 4,10,20,40,80``

For every method and number of time steps T, on a synthetic batch of the model's input shape
(direct encoding by default: the same analog input at every step), the benchmark runs whole
training steps -- ``zero_grad``, ``Method.forward`` + loss, loss backward + ``Method.backward``,
``SGD.step`` -- and reports the **median** over ``--repeats`` steps taken after ``--warmup``
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

``--vs-torch`` also builds the same network in PyTorch (:mod:`pysnn_ref.torch_ref`, imported only
then; torch is not a dependency), copies the weights, times its autograd training step with
``torch.set_num_threads`` equal to our (Numba) thread count, and, per T, compares BPTT's
gradients with autograd's on the same weights and input: ``grad_max_rel_diff`` = max over
parameters of ``max|g_ours - g_torch| / max|g_torch|`` (see :func:`compare_gradients`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._check import check_choice, check_int

PROG = "python -m pysnn_ref.bench"
METHOD_CHOICES = ("bptt", "asf", "ssf")
LOSSES = ("sdt", "tet", "asf-mse")
ENCODER_CHOICES = ("direct", "poisson")
DTYPES = ("float32", "float64")
#: the benchmark's own models (beside pysnn_ref.models.MODELS)
CONVNET_SPEC = "16C3-AP2-32C3-AP2"
BENCH_ONLY_MODELS = ("convnet",)
SMALL_INPUT_MODELS = ("mlp", "convnet", "lenet")

FIELDS = ("model", "method", "T", "batch", "device", "dtype", "loss", "encoder", "input_shape",
          "classes", "threads", "blas_threads", "repeats", "warmup", "forward_s", "backward_s",
          "optimizer_s", "step_s", "step_min_s", "first_step_s", "compile_s", "peak_mem_bytes",
          "mem_method", "firing_rate", "time_chunk", "backward_speedup_vs_bptt",
          "step_speedup_vs_bptt", "bptt_over_torch", "grad_max_rel_diff", "grad_worst_param",
          "spike_mismatches", "spikes_total", "grad_max_rel_diff_f64_smooth")

MEM_METHOD = {
    "cpu": "tracemalloc: peak tracked NumPy allocations during one step above those live before "
           "it (excludes weights/grads/optimizer state allocated before)",
    "gpu": "CuPy MemoryHook: peak bytes of memory-pool blocks in use during one step above those "
           "live before it",
    "torch": "torch.profiler profile_memory: peak of the CPU allocator's bytes during one step "
             "above those live before it (grads kept, zeroed in place, as ours)",
}


def all_models() -> tuple[str, ...]:
    from .models import MODELS

    return (*MODELS, *BENCH_ONLY_MODELS)


# --------------------------------------------------------------------------------------------
# Building the network, data and step
# --------------------------------------------------------------------------------------------

def default_input_shape(model: str) -> tuple[int, ...]:
    """(1, 28, 28) for the MNIST-sized models (mlp, convnet, lenet), else (3, 32, 32)."""
    return (1, 28, 28) if model in SMALL_INPUT_MODELS else (3, 32, 32)


def build_model(model: str, input_shape: Sequence[int], classes: int, *, dtype: Any = np.float32,
                lam: float = 0.5, v_th: float = 1.0, reset: str = "hard",
                surrogate: str = "triangle", detach_reset: bool = False, smooth: bool = False,
                tdbn_alpha: float | None = None, batch_norm: bool | None = None,
                seed: int = 0) -> Any:
    """A benchmark network: any of :data:`pysnn_ref.models.MODELS`, or ``"convnet"`` (BN-free
    ``16C3-AP2-32C3-AP2`` + linear classifier).  LIF neurons (``lam``, ``v_th``, ``reset``,
    ``surrogate``) everywhere."""
    from . import nn
    from .models import build_from_string, make_model

    check_choice("model", model, all_models())

    def neuron():
        return nn.LIF(lam=lam, v_th=v_th, reset=reset, surrogate=surrogate,
                      detach_reset=detach_reset, smooth=smooth)

    shape = tuple(int(s) for s in input_shape)
    if model == "convnet":
        if len(shape) != 3:
            raise ValueError(f"model 'convnet' needs image input (C, H, W), got input_shape "
                             f"{shape}")
        return build_from_string(CONVNET_SPEC, shape, classes, neuron,
                                 batch_norm=bool(batch_norm), tdbn_alpha=tdbn_alpha, v_th=v_th,
                                 seed=seed, dtype=dtype)
    return make_model(model, shape, classes, neuron, tdbn_alpha=tdbn_alpha, v_th=v_th,
                      seed=seed, dtype=dtype, batch_norm=batch_norm)


def synthetic_batch(batch: int, input_shape: Sequence[int], classes: int, dtype: Any,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Uniform [0, 1) inputs ``(B, *input_shape)`` and uniform random labels (host arrays)."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, *input_shape)).astype(dtype)
    labels = rng.integers(0, classes, batch).astype(np.int64)
    return x, labels


def loss_functions(name: str) -> tuple[Callable, Callable]:
    """(forward, backward) of loss ``name`` ("sdt", "tet", "asf-mse")."""
    from .functional import loss as L

    check_choice("loss", name, LOSSES)
    return {"sdt": (L.sdt_loss_forward, L.sdt_loss_backward),
            "tet": (L.tet_loss_forward, L.tet_loss_backward),
            "asf-mse": (L.asf_mse_loss_forward, L.asf_mse_loss_backward)}[name]


def thread_count() -> int:
    """Threads of Numba's kernels (BLAS's count is :func:`blas_threads`)."""
    from . import backend

    backend.get_backend("cpu")  # the library's thread policy first (passive OpenMP, BLAS)
    import numba

    return int(numba.get_num_threads())


def blas_threads() -> int | None:
    """OpenBLAS/MKL threads NumPy uses (threadpoolctl), or None if that cannot be read."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    n = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return int(max(n)) if n else None


def set_threads(n: int) -> Callable[[], None]:
    """At most ``n`` threads: Numba's kernels get ``n``, NumPy's BLAS ``min(n, its current
    count)`` (pysnn_ref itself runs BLAS single-threaded by default, see
    :func:`pysnn_ref.backend.set_blas_threads`).  Returns a function restoring both."""
    from . import backend

    backend.get_backend("cpu")  # imports kernels.cpu and applies the library's thread policy
    import numba

    old = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    limiter = None
    cur = blas_threads()
    if cur is not None and cur > n:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(limits=n, user_api="blas")

    def restore() -> None:
        numba.set_num_threads(old)
        if limiter is not None:
            limiter.restore_original_limits()

    return restore


class Runner:
    """One configuration: a network, a method, an optimizer and a batch, ready to step."""

    def __init__(self, args: argparse.Namespace, method_name: str, T: int) -> None:
        from . import backend
        from .data import make_encoder
        from .gradcheck import named_parameters
        from .methods import make_method
        from .optim import SGD

        self.be = backend.get_backend(args.device)
        self.dtype = np.dtype(args.dtype)
        self.T = T
        self.net = build_model(args.model, args.input_shape, args.classes, dtype=self.dtype,
                               lam=args.lam, v_th=args.v_th, reset=args.reset,
                               surrogate=args.surrogate, seed=args.seed)
        self.net.to(args.device)
        self.net.train()
        opts = {}
        if method_name != "bptt" and args.time_chunk is not None:
            opts["time_chunk"] = args.time_chunk
        self.method = make_method(method_name, **opts)
        self.method.check_network(self.net)
        self.encoder = make_encoder(args.encoder, seed=args.seed)
        # named_parameters walks every layer's own parameters (robust to container details)
        self.opt = SGD(list(named_parameters(self.net).values()), lr=args.lr, momentum=0.9)
        x, labels = synthetic_batch(args.batch_size, args.input_shape, args.classes, self.dtype,
                                    args.seed)
        self.x = self.be.asarray(x)
        self.labels = self.be.asarray(labels)
        self.loss_fwd, self.loss_bwd = loss_functions(args.loss)

    def step(self) -> tuple[float, float, float, float]:
        """One training step; returns (forward, backward, optimizer, total) seconds."""
        sync, clock = self.be.synchronize, time.perf_counter
        sync()
        t0 = clock()
        self.opt.zero_grad()
        y = self.method.forward(self.net, self.x, self.T, self.encoder)
        _, cache = self.loss_fwd(y, self.labels)
        sync()
        t1 = clock()
        dy = self.loss_bwd(cache)
        del y, cache
        self.method.backward(self.net, dy)
        del dy
        sync()
        t2 = clock()
        self.opt.step()
        sync()
        t3 = clock()
        return t1 - t0, t2 - t1, t3 - t2, t3 - t0

    def firing_rate(self) -> float:
        from .nn import spiking_layers

        rates = [n.firing_rate for n in spiking_layers(self.net)]
        return float(np.mean(rates)) if rates else 0.0

    def time_chunk(self) -> int | None:
        return self.method.time_chunk_for(self.net, self.T) if self.method.is_flow else None

    def peak_memory(self) -> int:
        """Peak bytes allocated during one step above those live before it (see module doc)."""
        if self.be.name == "gpu":
            return _cupy_peak(self.step)
        return _tracemalloc_peak(self.step)


def _tracemalloc_peak(step: Callable[[], Any]) -> int:
    """Peak traced bytes during ``step()`` above the traced bytes live before it.

    One step runs traced first, so that whatever the previous step left alive (and the next one
    frees) is traced too and its release is counted; then the peak of a second step is taken.
    """
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        step()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return max(0, int(peak - base))


def _cupy_peak(step: Callable[[], Any]) -> int:  # pragma: no cover - needs a GPU
    """Peak bytes of CuPy memory-pool blocks in use during ``step()`` above the start."""
    import cupy

    class PeakHook(cupy.cuda.MemoryHook):
        name = "pysnn_ref_bench_peak"

        def __init__(self) -> None:
            self.cur = 0
            self.peak = 0

        def malloc_postprocess(self, **kw: Any) -> None:
            self.cur += int(kw["mem_size"])
            self.peak = max(self.peak, self.cur)

        def free_postprocess(self, **kw: Any) -> None:
            self.cur -= int(kw["mem_size"])

    step()
    cupy.cuda.get_current_stream().synchronize()
    hook = PeakHook()
    with hook:
        step()
        cupy.cuda.get_current_stream().synchronize()
    return max(0, hook.peak)


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def _summarize(first: tuple[float, ...], runs: list[tuple[float, ...]]) -> dict[str, float]:
    cols = list(zip(*runs, strict=True))
    out = {"forward_s": _median(cols[0]), "backward_s": _median(cols[1]),
           "optimizer_s": _median(cols[2]), "step_s": _median(cols[3]),
           "step_min_s": float(min(cols[3])), "first_step_s": float(first[3])}
    out["compile_s"] = max(0.0, out["first_step_s"] - out["step_s"])
    return out


def time_steps(steps: dict[str, Callable[[], tuple[float, ...]]], warmup: int, repeats: int
               ) -> dict[str, dict[str, float]]:
    """Time several configurations *interleaved*: each one's first step (reported apart), then
    ``warmup - 1`` more rounds, then ``repeats`` timed rounds of one step of every configuration
    (the order rotating round by round).  On a shared machine a burst of background load then
    hits all configurations alike instead of one of them.  Returns medians per configuration."""
    names = list(steps)
    first = {n: steps[n]() for n in names}
    for _ in range(warmup - 1):
        for n in names:
            steps[n]()
    runs: dict[str, list[tuple[float, ...]]] = {n: [] for n in names}
    for i in range(repeats):
        k = i % len(names)
        for n in names[k:] + names[:k]:
            runs[n].append(steps[n]())
    return {n: _summarize(first[n], runs[n]) for n in names}


# --------------------------------------------------------------------------------------------
# PyTorch comparison (only with --vs-torch)
# --------------------------------------------------------------------------------------------

class TorchRunner:  # pragma: no cover - exercised where torch is installed
    """The same configuration in PyTorch autograd (BPTT through the LIF loop)."""

    def __init__(self, args: argparse.Namespace, T: int, threads: int) -> None:
        from . import torch_ref

        torch = torch_ref.require_torch()
        torch.set_num_threads(threads)
        self.torch, self.T, self.loss = torch, T, args.loss
        self.dev = "cpu"
        if args.device == "gpu":
            if not torch.cuda.is_available():
                raise ValueError("--vs-torch with --device gpu needs a CUDA build of torch")
            self.dev = "cuda"
        if args.encoder != "direct":
            raise ValueError("--vs-torch supports --encoder direct only")
        dtype = np.dtype(args.dtype)
        net = build_model(args.model, args.input_shape, args.classes, dtype=dtype, lam=args.lam,
                          v_th=args.v_th, reset=args.reset, surrogate=args.surrogate,
                          seed=args.seed)
        self.tnet = torch_ref.build_torch_net(net, device=self.dev)
        self.opt = torch.optim.SGD(self.tnet.parameters(), lr=args.lr, momentum=0.9)
        x, labels = synthetic_batch(args.batch_size, args.input_shape, args.classes, dtype,
                                    args.seed)
        self.x = torch.from_numpy(x).to(self.dev)
        self.labels = torch.from_numpy(labels).to(self.dev)
        self.v_th = args.v_th

    def _sync(self) -> None:
        if self.dev == "cuda":
            self.torch.cuda.synchronize()

    def step(self) -> tuple[float, float, float, float]:
        from .torch_ref import torch_loss

        clock = time.perf_counter
        self._sync()
        t0 = clock()
        # gradients kept and zeroed in place, as our optimizer does (same memory semantics)
        self.opt.zero_grad(set_to_none=False)
        y = self.tnet(self.x, self.T)
        L = torch_loss(self.loss, y, self.labels, v_th=self.v_th)
        self._sync()
        t1 = clock()
        L.backward()
        del L, y
        self._sync()
        t2 = clock()
        self.opt.step()
        self._sync()
        t3 = clock()
        return t1 - t0, t2 - t1, t3 - t2, t3 - t0

    def peak_memory(self) -> int | None:
        torch = self.torch
        self.step()
        if self.dev == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            self.step()
            return int(torch.cuda.max_memory_allocated() - base)
        from torch.profiler import ProfilerActivity, profile, record_function

        # two steps profiled, the peak taken over the second: what the first left alive and the
        # second frees is then seen (as with tracemalloc)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            self.step()
            with record_function("bench_measured_step"):
                self.step()
        try:
            events = list(prof.profiler.kineto_results.events())
        except AttributeError:
            return None
        marks = [e for e in events if e.name() == "bench_measured_step"]
        if not marks:
            return None
        start = marks[0].start_ns()
        mem = sorted((e for e in events if e.name() == "[memory]"), key=lambda e: e.start_ns())
        cur = base = 0
        peak = None
        for e in mem:
            if e.start_ns() >= start and peak is None:
                base = peak = cur
            cur += int(e.nbytes())
            if peak is not None:
                peak = max(peak, cur)
        return None if peak is None else int(peak - base)
        return peak


F64_CHECK_BATCH = 8


def compare_gradients(args: argparse.Namespace, T: int) -> dict[str, Any]:  # pragma: no cover
    """BPTT's gradients vs PyTorch autograd's on identical fresh weights and input.

    * in the benchmark's dtype with Heaviside spikes, on the whole batch: ``grad_max_rel_diff``
      and ``spike_mismatches`` / ``spikes_total`` (spikes that differ between the two forwards:
      in float32 a membrane within rounding of the threshold can fire on one side only);
    * in float64 smooth mode (the spike is the surrogate's primitive, so both are the exact
      gradient of the same function), on the first :data:`F64_CHECK_BATCH` samples:
      ``grad_max_rel_diff_f64_smooth``.
    """
    from . import backend, torch_ref
    from .data import make_encoder
    from .gradcheck import method_gradients

    be = backend.get_backend(args.device)
    tdev = "cuda" if args.device == "gpu" else "cpu"
    out: dict[str, Any] = {}
    for smooth in (False, True):
        dtype = np.dtype(np.float64 if smooth else args.dtype)
        net = build_model(args.model, args.input_shape, args.classes, dtype=dtype, lam=args.lam,
                          v_th=args.v_th, reset=args.reset, surrogate=args.surrogate,
                          smooth=smooth, seed=args.seed)
        tnet = torch_ref.build_torch_net(net, device=tdev)
        x, labels = synthetic_batch(args.batch_size, args.input_shape, args.classes, dtype,
                                    args.seed)
        if smooth:
            x, labels = x[:F64_CHECK_BATCH], labels[:F64_CHECK_BATCH]
        net.to(args.device)
        if not smooth:
            out["spike_mismatches"], out["spikes_total"] = torch_ref.compare_spikes(
                net, tnet, x, T)
        _, ours = method_gradients(net, "bptt", be.asarray(x), be.asarray(labels),
                                   loss=args.loss, T=T, encoder=make_encoder("direct"))
        ours = {k: backend.to_numpy(v) for k, v in ours.items()}
        _, theirs, _ = torch_ref.torch_gradients(tnet, x, labels, T, args.loss)
        d, where = torch_ref.gradient_difference(ours, theirs)
        if smooth:
            out["grad_max_rel_diff_f64_smooth"] = d
        else:
            out["grad_max_rel_diff"], out["grad_worst_param"] = d, where
    return out


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

def run_benchmark(args: argparse.Namespace, log: Callable[[str], None] = print
                  ) -> list[dict[str, Any]]:
    """Every (T, method) configuration of ``args``; returns the list of records."""
    from . import backend

    backend.get_backend(args.device)  # a clear error now if the GPU is not usable
    if args.vs_torch:
        from . import torch_ref

        torch_ref.require_torch()
    threads = thread_count()
    common = {"model": args.model, "batch": args.batch_size, "device": args.device,
              "dtype": args.dtype, "loss": args.loss, "encoder": args.encoder,
              "input_shape": list(args.input_shape), "classes": args.classes,
              "threads": threads, "blas_threads": blas_threads(), "repeats": args.repeats,
              "warmup": args.warmup}
    records: list[dict[str, Any]] = []
    for T in args.T:
        runners: dict[str, Any] = {name: Runner(args, name, T) for name in args.methods}
        if args.vs_torch:
            runners["torch"] = TorchRunner(args, T, threads)
        timings = time_steps({n: r.step for n, r in runners.items()}, args.warmup, args.repeats)
        by_method: dict[str, dict[str, Any]] = {}
        for name, r in runners.items():
            rec = {**common, "method": name, "T": T, **timings[name]}
            if name != "torch":
                rec["firing_rate"] = r.firing_rate()
                rec["time_chunk"] = r.time_chunk()
            if args.profile:
                _profile_step(r.step, f"{args.model} {name} T={T}", log)
            if args.no_memory:
                rec["peak_mem_bytes"] = rec["mem_method"] = None
            else:
                rec["peak_mem_bytes"] = r.peak_memory()
                rec["mem_method"] = MEM_METHOD["torch" if name == "torch" and args.device == "cpu"
                                               else args.device]
            if name == "torch":
                rec.update(compare_gradients(args, T))
                if "bptt" in by_method:
                    rec["bptt_over_torch"] = by_method["bptt"]["step_s"] / rec["step_s"]
            by_method[name] = rec
            records.append(rec)
            log(_progress(rec))
        del runners, r
        if "bptt" in by_method:
            b = by_method["bptt"]
            for name in ("asf", "ssf"):
                if name in by_method:
                    f = by_method[name]
                    f["backward_speedup_vs_bptt"] = b["backward_s"] / f["backward_s"]
                    f["step_speedup_vs_bptt"] = b["step_s"] / f["step_s"]
    for rec in records:
        for f in FIELDS:
            rec.setdefault(f, None)
    return records


def _profile_step(step: Callable[[], Any], title: str, log: Callable[[str], None]) -> None:
    """cProfile one step; log the top entries by own time."""
    import cProfile
    import io
    import pstats

    pr = cProfile.Profile()
    pr.enable()
    step()
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(12)
    log(f"--- profile of one step: {title} ---\n{s.getvalue()}")


def _progress(rec: dict[str, Any]) -> str:
    return (f"  done {rec['method']:>5} T={rec['T']:<3} step {rec['step_s'] * 1e3:9.2f} ms "
            f"(first {rec['first_step_s'] * 1e3:.0f} ms)")


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
    import platform

    import numba

    cols = _columns()
    keep = [i for i, (h, f) in enumerate(cols) if any(f(r) != "-" for r in records)]
    head = [cols[i][0] for i in keep]
    lines = [f"Command: `{command}`", "",
             f"Environment: {platform.machine()}, {os.cpu_count()} CPUs; ours: "
             f"{records[0]['threads']} Numba threads, {records[0]['blas_threads']} BLAS "
             f"thread(s); Python {platform.python_version()}, NumPy {np.__version__}, "
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
        import torch
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
    for m in ("asf", "ssf"):
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
    Path(path).write_text(json.dumps(records, indent=1) + "\n")


def write_csv(records: list[dict[str, Any]], path: str | Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(FIELDS))
        w.writeheader()
        for r in records:
            row = {k: r.get(k) for k in FIELDS}
            row["input_shape"] = "x".join(str(s) for s in r["input_shape"])
            w.writerow({k: "" if v is None else v for k, v in row.items()})


METHOD_COLORS = {"bptt": "tab:red", "asf": "tab:blue", "ssf": "tab:green", "torch": "tab:gray"}
METHOD_STYLES = {"bptt": "o-", "asf": "s--", "ssf": "^-", "torch": "D-"}


def _log_T_axis(ax: Any, Ts: list[int]) -> None:
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_xticks(Ts, [str(T) for T in Ts])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("T (time steps)")


def write_plots(records: list[dict[str, Any]], outdir: str | Path) -> list[Path]:
    """Three PNG figures under ``outdir``; returns their paths.

    ``<model>-time.png``: forward / backward / optimizer time vs T, stacked bars, one panel per
    method; ``<model>-speedup.png``: backward and whole-step speed-up of asf/ssf over bptt vs T;
    ``<model>-memory.png``: peak step memory vs T per method.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    model = records[0]["model"]
    head = (f"{model}, batch {records[0]['batch']}, {records[0]['device']}, "
            f"{records[0]['dtype']}, {records[0]['threads']} threads")
    methods = list(dict.fromkeys(r["method"] for r in records))
    Ts = sorted({r["T"] for r in records})
    by = {(r["method"], r["T"]): r for r in records}
    paths = []

    # 1. time vs T, stacked bars per method
    # each panel has its own y scale (PyTorch's can be 10x ours); totals are written on the bars
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
    p = outdir / f"{model}-time.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    # 2. speed-up of the flow methods over bptt
    flows = [m for m in ("asf", "ssf") if m in methods]
    if "bptt" in methods and flows:
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
        p = outdir / f"{model}-speedup.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)

    # 3. peak memory vs T
    if any(r["peak_mem_bytes"] is not None for r in records):
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
        p = outdir / f"{model}-memory.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def _int_list(name: str, text: str) -> list[int]:
    out = []
    for tok in text.split(","):
        tok = tok.strip()
        try:
            v = int(tok)
        except ValueError:
            raise ValueError(f"{name} must be a comma-separated list of integers >= 1, got "
                             f"{text!r}") from None
        out.append(check_int(name, v))
    if not out:
        raise ValueError(f"{name} must not be empty")
    return out


def _validate(args: argparse.Namespace) -> None:
    check_choice("model", args.model, all_models())
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if not methods:
        raise ValueError("methods must name at least one of ('bptt', 'asf', 'ssf')")
    for m in methods:
        check_choice("methods", m, METHOD_CHOICES)
    args.methods = list(dict.fromkeys(methods))
    args.T = _int_list("T", args.T)
    check_int("batch-size", args.batch_size)
    check_int("repeats", args.repeats)
    check_int("warmup", args.warmup)
    check_int("classes", args.classes, minimum=2)
    if args.time_chunk is not None:
        check_int("time-chunk", args.time_chunk)
    args.input_shape = (tuple(_int_list("input-shape", args.input_shape))
                        if args.input_shape else default_input_shape(args.model))
    # build the network once now: a bad shape or option fails before anything runs
    build_model(args.model, args.input_shape, args.classes, lam=args.lam, v_th=args.v_th,
                reset=args.reset, surrogate=args.surrogate, seed=args.seed)
    if args.threads is not None:
        check_int("threads", args.threads)
    if args.lr < 0:
        raise ValueError(f"lr must be >= 0, got {args.lr}")


def make_parser() -> argparse.ArgumentParser:
    from .cli import ArgumentParser

    ap = ArgumentParser(
        prog=PROG,
        description="Time one training step (forward, backward, SGD step) and measure its peak "
                    "memory under BPTT, ASF and SSF for several T, on synthetic inputs.")
    ap.add_argument("--model", default="convnet",
                    help="convnet (16C3-AP2-32C3-AP2, no BN), mlp (784-800-10) or any model of "
                         "pysnn_ref.models (default: convnet)")
    ap.add_argument("--methods", default="bptt,asf,ssf", help="comma list (default: all three)")
    ap.add_argument("--T", default="4,10,20,40,80", help="comma list of time steps")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    ap.add_argument("--dtype", default="float32", choices=DTYPES)
    ap.add_argument("--loss", default="sdt", choices=LOSSES)
    ap.add_argument("--encoder", default="direct", choices=ENCODER_CHOICES)
    ap.add_argument("--repeats", type=int, default=5, help="timed steps (median)")
    ap.add_argument("--warmup", type=int, default=2,
                    help="untimed steps first (>= 1; the first is reported as first_step_s)")
    ap.add_argument("--input-shape", default=None,
                    help="C,H,W of one sample (default: 1,28,28 for mlp/convnet/lenet, "
                         "else 3,32,32)")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--time-chunk", type=int, default=None,
                    help="flow methods: steps streamed at once (default: the method's)")
    ap.add_argument("--lam", type=float, default=0.5, help="LIF decay (default 0.5)")
    ap.add_argument("--v-th", type=float, default=1.0)
    ap.add_argument("--reset", default="hard", choices=("hard", "soft"))
    ap.add_argument("--surrogate", default="triangle")
    ap.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (momentum 0.9)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
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
    ap.add_argument("--profile", action="store_true",
                    help="cProfile one extra step per configuration and print the top entries")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the benchmark; errors propagate (see :func:`cli`)."""
    args = make_parser().parse_args(argv)
    _validate(args)
    from .backend import get_backend

    get_backend(args.device)
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
          f"warmup={args.warmup} "
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


def cli(argv: Sequence[str] | None = None) -> int:
    """:func:`main` with the CLI's error handling: bad input -> one line on stderr, exit 2."""
    from .cli import run_main

    return run_main(main, PROG, argv)


if __name__ == "__main__":
    raise SystemExit(cli())

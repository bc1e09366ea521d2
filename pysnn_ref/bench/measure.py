"""Measurement half of ``python -m pysnn_ref.bench`` (the CLI is :mod:`pysnn_ref.bench`,
the tables / files / figures :mod:`pysnn_ref.bench.report`): the benchmark's network, synthetic
batch and loss, thread control, one training step per method (:class:`Runner`), its timing
(:func:`time_steps`, interleaved rounds, medians) and its peak memory (tracemalloc on the CPU, a
CuPy memory hook on the GPU), the PyTorch comparison (:class:`TorchRunner`,
:func:`compare_gradients`) and the whole sweep (:func:`run_benchmark`).  What is measured, and
how, is described in :mod:`pysnn_ref.bench`.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from .. import backend, nn
from .. import kernels as kernel_contract
from .._check import check_choice
from ..data import make_encoder
from ..functional import loss as L
from ..gradcheck import method_gradients
from ..methods import FAMILY_FLOW, METHODS, ONLINE, make_method
from ..models import MODELS, build_from_string, make_model
from ..nn import spiking_layers
from ..optim import SGD

__all__ = ["METHOD_CHOICES", "ENCODER_CHOICES", "DTYPES", "CONVNET_SPEC", "BENCH_ONLY_MODELS",
    "SMALL_INPUT_MODELS", "FIELDS", "MEM_METHOD", "all_models", "default_input_shape",
    "build_model", "synthetic_batch", "loss_functions", "thread_count", "omp_wait_policy",
    "blas_threads", "set_threads", "Runner", "time_steps", "TorchRunner", "F64_CHECK_BATCH",
    "compare_gradients", "run_benchmark", "kernel_times", "format_kernel_times"]

METHOD_CHOICES = METHODS  # bptt, asf, ssf, the family in flow mode (dsr, rate), ottt, sltt
ENCODER_CHOICES = ("direct", "poisson")
DTYPES = ("float32", "float64")
#: the benchmark's own models (beside pysnn_ref.models.MODELS)
CONVNET_SPEC = "16C3-AP2-32C3-AP2"
BENCH_ONLY_MODELS = ("convnet",)
SMALL_INPUT_MODELS = ("mlp", "convnet", "lenet")

FIELDS = ("model", "method", "T", "batch", "device", "dtype", "loss", "encoder", "input_shape",
          "classes", "threads", "blas_threads", "omp_wait_policy", "repeats", "warmup",
          "forward_s", "backward_s",
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
    """Every model the benchmark can build: those of pysnn_ref.models, then its own."""
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
    return L.loss_pair(name)


def thread_count() -> int:
    """Threads of Numba's kernels (BLAS's count is :func:`blas_threads`)."""
    backend.get_backend("cpu")  # the library's thread policy first (OpenMP wait policy, BLAS)

    return int(numba.get_num_threads())


def omp_wait_policy() -> str:
    """``OMP_WAIT_POLICY`` as the OpenMP runtimes of this process read it ("default" if unset).

    It is process-wide: it applies to PyTorch's OpenMP threads as much as to Numba's, and
    PASSIVE made PyTorch's MLP step 2.6x slower on a 2-core Xeon (22.9 -> 60.3 ms, T = 20), so
    ``bench`` records it with every run (see :func:`pysnn_ref.backend._openmp_wait_policy`)."""
    return os.environ.get("OMP_WAIT_POLICY", "default")


def blas_threads() -> int | None:
    """OpenBLAS/MKL threads NumPy uses (threadpoolctl), or None if that cannot be read."""
    try:
        from threadpoolctl import threadpool_info  # optional: see the except below
    except ImportError:
        return None
    n = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
    return int(max(n)) if n else None


def set_threads(n: int) -> Callable[[], None]:
    """At most ``n`` threads: Numba's kernels get ``n``, NumPy's BLAS ``min(n, its current
    count)`` (pysnn_ref itself runs BLAS single-threaded by default, see
    :func:`pysnn_ref.backend.set_blas_threads`).  Returns a function restoring both."""
    backend.get_backend("cpu")  # imports kernels.cpu and applies the library's thread policy

    old = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    limiter = None
    cur = blas_threads()
    if cur is not None and cur > n:
        limiter = threadpool_limits(limits=n, user_api="blas")

    def restore() -> None:
        numba.set_num_threads(old)
        if limiter is not None:
            limiter.restore_original_limits()

    return restore


class Runner:
    """One configuration: a network, a method, an optimizer and a batch, ready to step.

    ``inputs`` (optional): an already time-major input ``(T, B, *input_shape)`` (e.g. spikes a
    Poisson encoder drew once, shared with other libraries) that every step takes as it is, with
    no encoder, in place of ``args.encoder`` applied to the synthetic batch (same labels)."""

    def __init__(self, args: argparse.Namespace, method_name: str, T: int,
                 inputs: Any = None) -> None:
        self.be = backend.get_backend(args.device)
        self.dtype = np.dtype(args.dtype)
        self.T = T
        # DSR defines only the soft reset: it runs the same network with reset="soft"
        reset = "soft" if method_name == "dsr" else args.reset
        self.net = build_model(args.model, args.input_shape, args.classes, dtype=self.dtype,
                               lam=args.lam, v_th=args.v_th, reset=reset,
                               surrogate=args.surrogate, seed=args.seed)
        self.net.to(args.device)
        self.net.train()
        opts = {}
        if method_name not in ("bptt", *ONLINE):
            opts["loss"] = args.loss  # a per-step loss (TET): the exact output layer
            if args.time_chunk is not None:
                opts["time_chunk"] = args.time_chunk
        self.method = make_method(method_name, **opts)
        self.method.check_network(self.net)
        self.encoder = make_encoder(args.encoder, seed=args.seed) if inputs is None else None
        # named_parameters walks every layer's own parameters (robust to container details)
        self.opt = SGD(list(self.net.named_parameters().values()), lr=args.lr, momentum=0.9)
        x, labels = synthetic_batch(args.batch_size, args.input_shape, args.classes, self.dtype,
                                    args.seed)
        if inputs is not None and tuple(inputs.shape) != (T, *x.shape):
            raise ValueError(f"inputs must have shape (T, batch, *input_shape) = {(T, *x.shape)}"
                             f", got {tuple(inputs.shape)}")
        self.x = self.be.asarray(x if inputs is None else inputs.astype(self.dtype, copy=False))
        self.labels = self.be.asarray(labels)
        self.loss_fwd, self.loss_bwd = loss_functions(args.loss)

    def step(self) -> tuple[float, float, float, float]:
        """One training step through the method's own step
        (:meth:`pysnn_ref.methods.Method.train_step`: per time step for ottt / sltt); returns
        (forward + loss, loss gradient + backward, optimizer, total) seconds."""
        sync, clock = self.be.synchronize, time.perf_counter
        opt_s: list[float] = []

        def mark() -> float:
            sync()
            return clock()

        def update(loss: Any) -> Any:
            a = mark()
            self.opt.step()
            opt_s.append(mark() - a)
            return loss

        t0 = mark()
        self.opt.zero_grad()
        _, _, times = self.method.train_step(self.net, self.x, self.labels, self.T,
                                             self.encoder, self.loss_fwd, self.loss_bwd,
                                             update, mark)
        total = mark() - t0
        return (sum(b - a for a, b in times.forward), sum(b - a for a, b in times.backward),
                sum(opt_s), total)

    def firing_rate(self) -> float:
        """Mean spikes per neuron per step of the last forward, over the spiking layers."""
        rates = [float(r) for r in self.method.spike_rates(spiking_layers(self.net))]
        return float(np.mean(rates)) if rates else 0.0

    def time_chunk(self) -> int | None:
        """The steps the flow method streams at once (None for BPTT)."""
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
    import cupy  # optional: CuPy, only on the GPU

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
        from . import torch_ref  # optional: torch_ref imports torch, only with --vs-torch

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
        """One timed PyTorch training step: forward, loss, backward, SGD update."""
        from .torch_ref import torch_loss  # optional: torch_ref imports torch, only with --vs-torch

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
        """Peak bytes of one PyTorch step: the CUDA allocator's peak, or on the CPU the torch
        profiler's memory events (None where they cannot be read)."""
        torch = self.torch
        self.step()
        if self.dev == "cuda":
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            self.step()
            return int(torch.cuda.max_memory_allocated() - base)
        from torch.profiler import (  # optional: torch, only with --vs-torch
            ProfilerActivity,
            profile,
            record_function,
        )

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
    from . import torch_ref  # optional: torch_ref imports torch, only with --vs-torch

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
    backend.get_backend(args.device)  # a clear error now if the GPU is not usable
    if args.vs_torch:
        from . import torch_ref  # optional: torch_ref imports torch, only with --vs-torch

        torch_ref.require_torch()
    threads = thread_count()
    common = {"model": args.model, "batch": args.batch_size, "device": args.device,
              "dtype": args.dtype, "loss": args.loss, "encoder": args.encoder,
              "input_shape": list(args.input_shape), "classes": args.classes,
              "threads": threads, "blas_threads": blas_threads(),
              "omp_wait_policy": omp_wait_policy(), "repeats": args.repeats,
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
            if args.kernel_times and name != "torch":
                log(format_kernel_times(kernel_times(r, args.kernel_times),
                                        f"{args.model} {name} T={T}", args.kernel_times))
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
            for name in ("asf", "ssf", *FAMILY_FLOW, *ONLINE):
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
    pr = cProfile.Profile()
    pr.enable()
    step()
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(12)
    log(f"--- profile of one step: {title} ---\n{s.getvalue()}")


def kernel_times(runner: Runner, steps: int) -> list[tuple[str, float, float]]:
    """Run ``steps`` more training steps of ``runner`` with every public function of its
    device's kernel set (``kernels.cpu`` or ``kernels.cuda``) wrapped by a timer (with a device
    sync before and after each call).  Returns ``(name, calls per step, ms per step)`` of every
    kernel called, slowest first; the kernel set is restored afterwards."""
    K = backend.kernels_for(runner.x)
    sync = runner.be.synchronize
    spent: dict[str, list[float]] = {}

    def timed(name: str, f: Callable) -> Callable:
        def call(*a: Any, **kw: Any) -> Any:
            sync()
            t0 = time.perf_counter()
            out = f(*a, **kw)
            sync()
            spent.setdefault(name, []).append(time.perf_counter() - t0)
            return out
        return call

    names = [*kernel_contract.COMMON, *sorted(K.PROVIDES)]
    originals = {n: getattr(K, n) for n in names}
    try:
        for n, f in originals.items():
            setattr(K, n, timed(n, f))
        for _ in range(steps):
            runner.step()
    finally:
        for n, f in originals.items():
            setattr(K, n, f)
    rows = [(n, len(ts) / steps, 1e3 * sum(ts) / steps) for n, ts in spent.items()]
    return sorted(rows, key=lambda r: -r[2])


def format_kernel_times(rows: list[tuple[str, float, float]], title: str, steps: int) -> str:
    """The table of :func:`kernel_times`."""
    lines = [f"--- kernel times, mean of {steps} steps: {title} ---",
             f"{'kernel':>34}  calls/step  ms/step"]
    lines += [f"{n:>34}  {c:10.1f}  {ms:7.2f}" for n, c, ms in rows]
    lines.append(f"{'all kernels':>34}  {'':10}  {sum(r[2] for r in rows):7.2f}")
    return "\n".join(lines)


def _progress(rec: dict[str, Any]) -> str:
    return (f"  done {rec['method']:>5} T={rec['T']:<3} step {rec['step_s'] * 1e3:9.2f} ms "
            f"(first {rec['first_step_s'] * 1e3:.0f} ms)")

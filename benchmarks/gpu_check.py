"""One-command check of the GPU path on a real GPU (issue 13, item 3): parity, time, memory.

    pip install -e ".[gpu]"
    python benchmarks/gpu_check.py                 # about 1-3 minutes; --json gpu_check.json

It prints, and writes to one JSON file (``--json``, default ``gpu_check.json``):

1. **Kernel parity** -- every public kernel of :mod:`pysnn_ref.kernels.cuda` on device arrays
   against the CPU tier :mod:`pysnn_ref.kernels.cpu` (which the test suite holds equal to the
   loop-by-loop :mod:`pysnn_ref.kernels.reference`) on the same random host inputs, float64 and
   float32: max abs error, max relative error (``max|gpu - cpu| / max|cpu|``), pass / fail.
   A real GPU contracts ``a*b + c`` into FMA and takes ``exp``/``tanh``/``atan`` from libdevice
   (docs/gpu.md, "Numerics"), so a neuron whose membrane lands within rounding of ``v_th`` may
   spike on one side only; the neuron kernels therefore count such *spike flips* (neurons whose
   spike trains differ), compare everything else of the other neurons, and pass while flips stay
   under :data:`MAX_FLIP_FRACTION` of the neurons.
2. **Training-step time and peak device memory** for BPTT, ASF and SSF at T = 4, 20, 80 on LeNet
   (``16C3-AP2-32C3-AP2-FC128``, no BN), batch 64, float32, SGD momentum -- measured by the
   benchmark's own code, :func:`pysnn_ref.bench.measure.run_benchmark` (interleaved rounds,
   medians; peak memory = CuPy memory-pool blocks in use during one step above those live before
   it, a ``cupy.cuda.MemoryHook``).  Per T the CuPy pool's ``used_bytes`` / ``total_bytes``
   after the T's run are recorded too (the pool is emptied before each T, so ``total_bytes`` is
   the most it reserved for all configurations of that T together).
3. **The same against PyTorch autograd** (BPTT through the LIF loop,
   :mod:`pysnn_ref.bench.torch_ref`),
   plus BPTT's gradients vs autograd's, when torch with CUDA is importable; otherwise the JSON's
   ``torch.status`` says why not ("not installed", "no CUDA", "skipped (--no-torch)").
4. **The Open Neuromorphic SNN-library benchmark workload** (open-neuromorphic.org, "SNN library
   benchmarks", G. Lenz et al. 2023; code: github.com/open-neuromorphic/open-neuromorphic):
   one Linear + LIF layer of 16k neurons (16k inputs), batch 16, T = 500, float32, forward and
   backward time (the loss is the sum of the spikes; no gradient for the input) -- ours
   (:mod:`pysnn_ref.nn`, BPTT), PyTorch autograd
   (:func:`pysnn_ref.bench.torch_ref.build_torch_net` of
   the same layer) and SpikingJelly's multi-step ``LIFNode`` (its CuPy backend, else its torch
   one) where they import.  ``--smoke`` runs it at 64 neurons, T = 5, and PyTorch / SpikingJelly
   on the CPU when torch has no CUDA, so that their code paths are tested without a GPU.

Exit codes: 0 all parity checks passed, 1 a parity check failed (the JSON is written anyway),
2 no usable GPU or a bad option (one line on stderr).

``--smoke`` runs tiny sizes (T = 1, 2; batch 1; 4x4 input; one timed step) so that the whole
script runs in well under a minute under numba's CUDA simulator with the test suite's NumPy-backed
CuPy stand-in (``tests/test_gpu_check.py``); its figures say nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PROG = "benchmarks/gpu_check.py"
SCHEMA = "pysnn_ref.gpu_check/1"
#: the kernels of pysnn_ref.kernels.cuda, all of which are checked
KERNELS = ("surrogate_primitive", "surrogate_grad", "lif_forward", "lif_backward",
           "lif_forward_flows", "ssf_gain", "im2col", "col2im", "maxpool2d_forward",
           "maxpool2d_backward")
#: max relative error (max|gpu - cpu| / max|cpu|) per dtype
RTOL = {"float64": 1e-9, "float32": 1e-4}
#: neurons whose spike trains may differ (a membrane within rounding of v_th)
MAX_FLIP_FRACTION = 1e-3
#: the issue's time limit for the whole script on a real GPU
TIME_LIMIT_S = 480.0

FULL = {"T": (4, 20, 80), "batch": 64, "input_shape": None, "repeats": 5, "warmup": 2,
        "parity": {"T": 16, "N": 20000, "img": (16, 8, 14, 14)}}
SMOKE = {"T": (1, 2), "batch": 1, "input_shape": (1, 4, 4), "repeats": 1, "warmup": 1,
         "parity": {"T": 3, "N": 70, "img": (1, 2, 5, 5)}}
#: the Open Neuromorphic benchmark's workload (section 4), full size and smoke size
ON_FULL = {"inputs": 16384, "neurons": 16384, "batch": 16, "T": 500, "repeats": 3, "warmup": 1}
ON_SMOKE = {"inputs": 32, "neurons": 64, "batch": 2, "T": 5, "repeats": 1, "warmup": 1}

#: surrogate kind -> its parameter a in the parity cases (kinds: reference.SURROGATE_KINDS)
SURROGATE_A = {"rectangular": 1.0, "triangle": 1.0, "sigmoid": 4.0, "atan": 2.0, "dspike": 3.0}
LAM, V_TH = 0.6, 1.0


# --------------------------------------------------------------------------------------------
# 1. Kernel parity: numba.cuda on device arrays vs the Numba CPU kernels on host arrays
# --------------------------------------------------------------------------------------------

def _compare(ref: Sequence[np.ndarray], got: Sequence[np.ndarray],
             neuron_kernel: bool) -> tuple[float, float, float, int, int]:
    """(max abs, max |ref|, max rel, spike flips, neurons) over matching outputs.

    For a neuron kernel the first output is the spike tensor (..., N): the neurons whose spikes
    differ by more than 1/2 are counted as flips and left out of every output's comparison.
    """
    keep = None
    flips = neurons = 0
    if neuron_kernel:
        differs = np.abs(ref[0] - got[0]) > 0.5
        flipped = differs.reshape(-1, differs.shape[-1]).any(axis=0)
        flips, neurons = int(flipped.sum()), int(flipped.size)
        keep = ~flipped
    err = scale = 0.0
    for r, g in zip(ref, got, strict=True):
        if r.shape != g.shape:
            return float("inf"), 1.0, float("inf"), flips, neurons
        r64, g64 = r.astype(np.float64), g.astype(np.float64)
        if keep is not None:
            r64, g64 = r64[..., keep], g64[..., keep]
        if r64.size:
            err = max(err, float(np.max(np.abs(r64 - g64))))
            scale = max(scale, float(np.max(np.abs(r64))))
    rel = err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))
    return err, scale, rel, flips, neurons


def _run_both(cpu: Any, gpu: Any, be: Any, name: str, args: Sequence[Any],
              inplace: Sequence[int] = ()) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Call kernel ``name`` of both tiers on copies of the same host arguments; return their
    outputs (and the arguments at ``inplace``, which the kernel updates) as host arrays."""
    host = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    dev = [be.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    r = getattr(cpu, name)(*host)
    g = getattr(gpu, name)(*dev)
    r = list(r) if isinstance(r, tuple) else [r]
    g = list(g) if isinstance(g, tuple) else [g]
    r += [host[i] for i in inplace]
    g += [dev[i] for i in inplace]
    be.synchronize()
    return [np.asarray(x) for x in r], [be.to_numpy(x) for x in g]


def _neuron_cases(cpu: Any, rng: np.random.Generator, dtype: np.dtype, T: int, N: int
                  ) -> dict[str, list[tuple[tuple, tuple[int, ...]]]]:
    """Argument lists (and in-place argument positions) of the three neuron kernels."""
    from pysnn_ref.kernels.reference import SURROGATE_KINDS

    def I_():
        return rng.uniform(-0.5, 1.5, (T, N)).astype(dtype)

    cases: dict[str, list[tuple[tuple, tuple[int, ...]]]] = {
        "lif_forward": [], "lif_backward": [], "lif_forward_flows": []}
    tri = SURROGATE_KINDS["triangle"]
    for soft in (False, True):
        for smooth in (False, True):
            cases["lif_forward"].append(((I_(), LAM, V_TH, soft, smooth, tri, 1.0), ()))
        for detach in (False, True):
            _, u = cpu.lif_forward(I_(), LAM, V_TH, soft, False, tri, 1.0)
            do = rng.normal(size=(T, N)).astype(dtype)
            cases["lif_backward"].append(((do, u, LAM, V_TH, soft, False, detach, tri, 1.0), ()))
        for w in (1.0, LAM):  # ASF Eq. 7 (w = 1), SSF Sec. 3.3 (w = lam)
            state = [rng.uniform(0.0, 0.9, N).astype(dtype)] + \
                    [rng.uniform(0.0, 2.0, N).astype(dtype) for _ in range(3)]
            v, sI, sO, sOU = state
            cases["lif_forward_flows"].append(
                ((I_(), v, LAM, V_TH, soft, False, tri, 1.0, w, sI, sO, sOU), (1, 9, 10, 11)))
    return cases


def _other_cases(cpu: Any, rng: np.random.Generator, dtype: np.dtype, T: int, N: int,
                 img: tuple[int, int, int, int]
                 ) -> dict[str, list[tuple[tuple, tuple[int, ...]]]]:
    """Argument lists of the surrogate, gain, im2col/col2im and max-pool kernels."""
    from pysnn_ref.kernels.reference import SURROGATE_KINDS

    x = rng.uniform(-2.0, 2.0, T * N).astype(dtype)
    cases: dict[str, list[tuple[tuple, tuple[int, ...]]]] = {
        k: [] for k in ("surrogate_primitive", "surrogate_grad", "ssf_gain", "im2col", "col2im",
                        "maxpool2d_forward", "maxpool2d_backward")}
    for kind, a in SURROGATE_A.items():
        cases["surrogate_primitive"].append(((x, SURROGATE_KINDS[kind], a), ()))
        cases["surrogate_grad"].append(((x, SURROGATE_KINDS[kind], a), ()))
    FI = rng.uniform(-0.2, 1.2, (T, N)).astype(dtype)
    R = rng.uniform(0.5, 3.0, (T, N)).astype(dtype)
    for soft in (False, True):
        cases["ssf_gain"].append(((FI, R, V_TH, soft, 2.0), ()))
    xi = rng.normal(size=img).astype(dtype)
    for KH, stride, pad in ((3, 1, 1), (3, 2, 1), (5, 1, 2)):
        cases["im2col"].append(((xi, KH, KH, stride, pad), ()))
        shape = cpu.im2col(xi, KH, KH, stride, pad).shape
        cols = rng.normal(size=shape).astype(dtype)
        cases["col2im"].append(((cols, img, KH, KH, stride, pad), ()))
    for k, stride in ((2, 2), (3, 2)):  # LeNet's pooling, and overlapping windows
        cases["maxpool2d_forward"].append(((xi, k, stride), ()))
        out, idx = cpu.maxpool2d_forward(xi, k, stride)
        dout = rng.normal(size=out.shape).astype(dtype)
        cases["maxpool2d_backward"].append(((dout, idx, img, k, stride), ()))
    return cases


def kernel_parity(be: Any, sizes: dict[str, Any], seed: int = 0,
                  log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per (kernel, dtype): the worst case over the kernel's variants."""
    from pysnn_ref.kernels import cpu

    gpu = be.kernels
    rows = []
    for dtype in (np.dtype(np.float64), np.dtype(np.float32)):
        rng = np.random.default_rng(seed)
        T, N = sizes["T"], sizes["N"]
        cases = {**_neuron_cases(cpu, rng, dtype, T, N),
                 **_other_cases(cpu, rng, dtype, T, N, tuple(sizes["img"]))}
        for name in KERNELS:
            worst = {"max_abs": 0.0, "max_rel": 0.0, "spike_flips": 0, "neurons": 0}
            for args, inplace in cases[name]:
                ref, got = _run_both(cpu, gpu, be, name, args, inplace)
                err, _, rel, flips, neurons = _compare(ref, got, name.startswith("lif_forward"))
                worst["max_abs"] = max(worst["max_abs"], err)
                worst["max_rel"] = max(worst["max_rel"], rel)
                worst["spike_flips"] += flips
                worst["neurons"] += neurons
            tol = RTOL[dtype.name]
            ok = (worst["max_rel"] <= tol
                  and worst["spike_flips"] <= MAX_FLIP_FRACTION * max(worst["neurons"], 1))
            row = {"kernel": name, "dtype": dtype.name, "cases": len(cases[name]), **worst,
                   "rtol": tol, "pass": bool(ok)}
            rows.append(row)
            log(_parity_line(row))
    return rows


def _parity_line(r: dict[str, Any]) -> str:
    flips = f"  flips {r['spike_flips']}/{r['neurons']}" if r["neurons"] else ""
    return (f"  {r['kernel']:<20} {r['dtype']:<8} cases {r['cases']:>2}  max abs "
            f"{r['max_abs']:9.2e}  max rel {r['max_rel']:9.2e} (tol {r['rtol']:.0e})"
            f"{flips}  {'PASS' if r['pass'] else 'FAIL'}")


# --------------------------------------------------------------------------------------------
# 2-3. Step time and memory: the benchmark's own measurement (pysnn_ref.bench.measure)
# --------------------------------------------------------------------------------------------

def torch_status() -> tuple[str, str | None]:
    """("measured" or why not, torch version) -- torch with CUDA is needed for the comparison."""
    try:
        import torch
    except ImportError:
        return "not installed", None
    if not torch.cuda.is_available():
        return "no CUDA (torch is installed but torch.cuda.is_available() is False)", \
            torch.__version__
    return "measured", torch.__version__


def bench_args(cfg: dict[str, Any], T: int, vs_torch: bool) -> argparse.Namespace:
    """The arguments of ``python -m pysnn_ref.bench`` for one T (parsed and checked by it)."""
    from pysnn_ref.bench import __main__ as bench

    argv = ["--model", "lenet", "--methods", "bptt,asf,ssf", "--T", str(T),
            "--batch-size", str(cfg["batch"]), "--device", "gpu", "--dtype", "float32",
            "--repeats", str(cfg["repeats"]), "--warmup", str(cfg["warmup"])]
    if cfg["input_shape"]:
        argv += ["--input-shape", ",".join(map(str, cfg["input_shape"]))]
    if vs_torch:
        argv.append("--vs-torch")
    args = bench.make_parser().parse_args(argv)
    bench._validate(args)
    return args


def step_benchmark(be: Any, cfg: dict[str, Any], vs_torch: bool,
                   log: Callable[[str], None] = print) -> tuple[list[dict], list[dict]]:
    """Per T: :func:`pysnn_ref.bench.measure.run_benchmark` (bptt, asf, ssf and, with
    ``vs_torch``, torch), then the CuPy pool's bytes.  Returns (records, pool rows)."""
    from pysnn_ref.bench.measure import run_benchmark

    pool = be.xp.get_default_memory_pool()
    records, pools = [], []
    for T in cfg["T"]:
        be.synchronize()
        pool.free_all_blocks()
        recs = run_benchmark(bench_args(cfg, T, vs_torch), log)
        be.synchronize()
        pools.append({"T": T, "pool_used_bytes": int(pool.used_bytes()),
                      "pool_total_bytes": int(pool.total_bytes())})
        records += recs
    return records, pools


def _step_table(records: list[dict], pools: list[dict]) -> str:
    mib = 2.0 ** 20
    total = {p["T"]: p["pool_total_bytes"] for p in pools}
    lines = [f"  {'method':<6} {'T':>3} {'step ms':>9} {'fwd ms':>8} {'bwd ms':>8} "
             f"{'peak MiB':>9} {'pool MiB':>9}  vs bptt / torch"]
    for r in records:
        peak = "-" if r["peak_mem_bytes"] is None else f"{r['peak_mem_bytes'] / mib:9.2f}"
        extra = ""
        if r.get("step_speedup_vs_bptt"):
            extra = f"x{r['step_speedup_vs_bptt']:.2f} faster than bptt"
        if r.get("bptt_over_torch"):
            extra = (f"bptt/torch step {r['bptt_over_torch']:.2f}, grad rel diff "
                     f"{r['grad_max_rel_diff']:.1e}")
        lines.append(f"  {r['method']:<6} {r['T']:>3} {r['step_s'] * 1e3:9.2f} "
                     f"{r['forward_s'] * 1e3:8.2f} {r['backward_s'] * 1e3:8.2f} {peak:>9} "
                     f"{total[r['T']] / mib:9.2f}  {extra}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# 4. The Open Neuromorphic benchmark workload: Linear + LIF, 16k neurons, batch 16, T = 500
# --------------------------------------------------------------------------------------------

def _median_times(run: Callable[[], tuple[float, float]], repeats: int, warmup: int
                  ) -> dict[str, float]:
    """Median forward / backward / total seconds of ``run()`` (which returns (fwd, bwd))."""
    for _ in range(warmup):
        run()
    f, b = zip(*(run() for _ in range(repeats)), strict=True)
    return {"forward_s": float(np.median(f)), "backward_s": float(np.median(b)),
            "step_s": float(np.median(np.add(f, b)))}


def on_layer(cfg: dict[str, Any], seed: int = 0) -> Any:
    """Our Linear(inputs -> neurons) + LIF (lam 0.5, v_th 1, hard reset, triangle surrogate),
    float32, on the host (``net.to(device)`` moves it)."""
    from pysnn_ref import nn

    rng = np.random.default_rng(seed)
    return nn.Sequential(nn.Linear(cfg["inputs"], cfg["neurons"], rng=rng, dtype=np.float32),
                         nn.LIF(0.5, 1.0, "hard", "triangle"))


def on_ours(be: Any, net: Any, x: np.ndarray, cfg: dict[str, Any]) -> dict[str, Any]:
    """Forward (the layer on x (T, B, inputs)) and backward (dL/do = 1, no dx) of our layer."""
    xd = be.asarray(x)
    dy = be.xp.ones((cfg["T"], cfg["batch"], cfg["neurons"]), dtype=np.float32)
    net.to(be.name)
    pool = be.xp.get_default_memory_pool() if be.name == "gpu" else None
    if pool is not None:
        be.synchronize()
        pool.free_all_blocks()

    last: dict[str, Any] = {}

    def run() -> tuple[float, float]:
        net.zero_grad()
        be.synchronize()
        t0 = time.perf_counter()
        y = net.forward(xd)
        be.synchronize()
        t1 = time.perf_counter()
        net.backward(dy, need_dx=False)
        be.synchronize()
        last["rate"] = y.mean()
        return t1 - t0, time.perf_counter() - t1

    rec = _median_times(run, cfg["repeats"], cfg["warmup"])
    rec["firing_rate"] = float(last["rate"])
    rec["pool_total_bytes"] = None if pool is None else int(pool.total_bytes())
    return rec


def _torch_sync(torch: Any, device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def on_torch(net: Any, x: np.ndarray, cfg: dict[str, Any], device: str) -> dict[str, Any]:
    """The same layer in PyTorch autograd
    (:func:`pysnn_ref.bench.torch_ref.build_torch_net`, the LIF
    a Python loop over t) on torch device ``device``: forward, then ``y.backward(ones)``."""
    import torch

    from pysnn_ref.bench import torch_ref

    net.to("cpu")
    tnet = torch_ref.build_torch_net(net, static_input=False, device=device)
    xt = torch.as_tensor(x, device=device)
    dy = torch.ones((cfg["T"], cfg["batch"], cfg["neurons"]), device=device)
    last: dict[str, float] = {}

    def run() -> tuple[float, float]:
        tnet.zero_grad(set_to_none=True)
        _torch_sync(torch, device)
        t0 = time.perf_counter()
        y = tnet(xt)
        _torch_sync(torch, device)
        t1 = time.perf_counter()
        y.backward(dy)
        _torch_sync(torch, device)
        last["rate"] = float(y.detach().mean())
        return t1 - t0, time.perf_counter() - t1

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rec = _median_times(run, cfg["repeats"], cfg["warmup"])
    rec["firing_rate"] = last["rate"]
    rec["peak_mem_bytes"] = int(torch.cuda.max_memory_allocated()) if device == "cuda" else None
    return rec


def on_spikingjelly(cfg: dict[str, Any], x: np.ndarray, device: str, W: np.ndarray,
                    b: np.ndarray) -> dict[str, Any]:
    """SpikingJelly's multi-step Linear (weights ``W``, ``b``: ours) + LIFNode (tau =
    1/(1 - lam) = 2, decay_input=False, v_reset 0: our u = lam v + I), backend "cupy" on CUDA
    (its fused kernels) else "torch"."""
    import inspect

    import torch
    from spikingjelly.activation_based import functional, layer, neuron

    # SpikingJelly 0.0.0.0.14 chooses the kernels with backend=; 2.0 has no such argument
    has_backend = "backend" in inspect.signature(neuron.LIFNode.__init__).parameters
    backends = (["cupy", "torch"] if device == "cuda" else ["torch"]) if has_backend else \
        ["(its default)"]
    errors: list[str] = []
    last: dict[str, float] = {}
    for bk in backends:
        try:
            kw = {"backend": bk} if has_backend else {}
            model = torch.nn.Sequential(
                layer.Linear(cfg["inputs"], cfg["neurons"], step_mode="m"),
                neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=1.0, v_reset=0.0,
                               step_mode="m", **kw)).to(device)
            with torch.no_grad():
                model[0].weight.copy_(torch.as_tensor(W))
                model[0].bias.copy_(torch.as_tensor(b))
            xt = torch.as_tensor(x, device=device)

            def run(model: Any = model, xt: Any = xt) -> tuple[float, float]:
                functional.reset_net(model)
                model.zero_grad(set_to_none=True)
                _torch_sync(torch, device)
                t0 = time.perf_counter()
                y = model(xt)
                _torch_sync(torch, device)
                t1 = time.perf_counter()
                y.sum().backward()
                _torch_sync(torch, device)
                last["rate"] = float(y.detach().mean())
                return t1 - t0, time.perf_counter() - t1

            rec = _median_times(run, cfg["repeats"], cfg["warmup"])
            rec.update(firing_rate=last["rate"], backend=bk, errors=errors,
                       version=_version("spikingjelly"))
            return rec
        except Exception as e:  # noqa: BLE001 - e.g. its cupy backend cannot compile here
            errors.append(f"backend {bk}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    raise RuntimeError("; ".join(errors))


def _version(dist: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return None


def on_benchmark(be: Any, cfg: dict[str, Any], torch_device: str | None,
                 log: Callable[[str], None] = print) -> dict[str, Any]:
    """Section 4: ours, and PyTorch / SpikingJelly on ``torch_device`` (None: not measured)."""
    rng = np.random.default_rng(1)
    x = (rng.random((cfg["T"], cfg["batch"], cfg["inputs"]), dtype=np.float32) < 0.5)
    x = x.astype(np.float32)                       # Bernoulli(0.5) input spikes
    net = on_layer(cfg)
    res: dict[str, Any] = {"workload": dict(cfg), "ours": on_ours(be, net, x, cfg),
                           "torch": None, "spikingjelly": None, "torch_device": torch_device}
    if torch_device is not None:
        res["torch"] = on_torch(net, x, cfg, torch_device)
        try:
            lin = net.layers[0]
            res["spikingjelly"] = on_spikingjelly(cfg, x, torch_device, lin.W.data, lin.b.data)
        except ImportError as e:
            res["spikingjelly"] = {"status": f"not installed ({e.name})"}
        except RuntimeError as e:
            res["spikingjelly"] = {"status": f"failed: {e}"}
    for name in ("ours", "torch", "spikingjelly"):
        r = res[name]
        if r and "step_s" in r:
            log(f"  {name:<13} forward {r['forward_s'] * 1e3:9.2f} ms  backward "
                f"{r['backward_s'] * 1e3:9.2f} ms  total {r['step_s'] * 1e3:9.2f} ms  "
                f"rate {r['firing_rate']:.3f}")
        elif r:
            log(f"  {name:<13} {r['status']}")
    return res


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

#: --smoke under the simulator: every launch is one block of this many threads
SIM_LAUNCH = {"max_blocks": 1, "threads_per_block": 32}


def cap_simulator_launches(kernels: Any) -> dict[str, int]:
    """Launch one 32-thread block per kernel (``--smoke`` under the CUDA simulator only).

    The simulator runs every CUDA thread as a Python thread, and starting one costs about a
    millisecond on a busy machine -- most of a smoke step's time with the default launch
    configuration.  Every kernel is a grid-stride loop, so one small block computes the same
    results (tests/test_cuda_sim.py checks one-block launches against the reference); the
    launch configuration itself is what a real-GPU run checks.
    """
    kernels.MAX_BLOCKS = SIM_LAUNCH["max_blocks"]
    kernels.TPB_SMALL = kernels.TPB_LARGE = SIM_LAUNCH["threads_per_block"]
    return dict(SIM_LAUNCH)

def device_info(be: Any) -> dict[str, Any]:
    """Name, compute capability and memory of device 0, and the versions that matter."""
    import numba

    xp = be.xp
    info: dict[str, Any] = {"simulator": os.environ.get("NUMBA_ENABLE_CUDASIM") == "1",
                            "cupy": getattr(xp, "__version__", None),
                            "numba": numba.__version__, "numpy": np.__version__,
                            "python": platform.python_version()}
    try:
        from importlib.metadata import version

        info["numba_cuda"] = version("numba-cuda")
    except Exception:  # noqa: BLE001 - not installed: numba's built-in CUDA target
        info["numba_cuda"] = None
    try:
        props = xp.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        info["name"] = name.decode() if isinstance(name, bytes) else str(name)
        info["compute_capability"] = f"{props['major']}.{props['minor']}"
        info["total_memory_bytes"] = int(props["totalGlobalMem"])
        info["driver_version"] = int(xp.cuda.runtime.driverGetVersion())
        info["runtime_version"] = int(xp.cuda.runtime.runtimeGetVersion())
    except Exception:  # noqa: BLE001 - the simulator's stand-in has no device properties
        info.setdefault("name", "CUDA simulator" if info["simulator"] else "unknown")
    return info


def make_parser() -> argparse.ArgumentParser:
    from pysnn_ref.cli import ArgumentParser

    ap = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", default="gpu_check.json", help="where to write the results")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes (T = 1,2, batch 1, 4x4 input, one timed step): checks "
                         "the script, e.g. under the CUDA simulator; no meaningful figures")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    ap.add_argument("--no-steps", action="store_true",
                    help="kernel parity only (no training steps, no Open Neuromorphic workload)")
    return ap


def torch_device_for_on(status: str, smoke: bool) -> str | None:
    """Where section 4 runs PyTorch / SpikingJelly: CUDA when torch has it; in ``--smoke``
    the CPU when torch is installed without CUDA (to test that code); else nowhere."""
    if status == "measured":
        return "cuda"
    if smoke and status.startswith("no CUDA"):
        return "cpu"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, check the GPU, run parity and the step benchmark, write the JSON."""
    args = make_parser().parse_args(argv)
    from pysnn_ref import backend

    be = backend.get_backend("gpu")  # GPUUnavailableError -> one line, exit 2 (run_main)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = SMOKE if args.smoke else FULL
    t0 = time.perf_counter()
    dev = device_info(be)
    if args.smoke and dev["simulator"]:
        dev["sim_launch"] = cap_simulator_launches(be.kernels)
    print(f"gpu_check: {dev['name']} (cupy {dev['cupy']}, numba {dev['numba']}, numba-cuda "
          f"{dev['numba_cuda']}){' -- smoke sizes' if args.smoke else ''}", flush=True)
    print("1. kernel parity, numba.cuda on device arrays vs kernels.cpu (max rel = "
          "max|gpu - cpu| / max|cpu|):", flush=True)
    parity = kernel_parity(be, cfg["parity"], log=lambda s: print(s, flush=True))
    status, tver = ("skipped (--no-torch)", None) if args.no_torch else torch_status()
    result: dict[str, Any] = {
        "schema": SCHEMA, "smoke": bool(args.smoke), "command": [PROG, *(argv or sys.argv[1:])],
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "device": dev,
        "parity": {"against": "pysnn_ref.kernels.cpu", "pass": all(r["pass"] for r in parity),
                   "max_flip_fraction": MAX_FLIP_FRACTION, "sizes": cfg["parity"],
                   "rows": parity},
        "steps": None, "open_neuromorphic": None, "torch": {"status": status, "version": tver}}
    if not args.no_steps:
        print(f"2. training steps, LeNet batch {cfg['batch']}, float32 "
              f"(python -m pysnn_ref.bench's measurement; torch: {status}):", flush=True)
        records, pools = step_benchmark(be, cfg, status == "measured",
                                        log=lambda s: print(s, flush=True))
        print(_step_table(records, pools), flush=True)
        result["steps"] = {"model": "lenet", "batch": cfg["batch"], "T": list(cfg["T"]),
                           "records": records, "pool": pools}
        on_cfg = ON_SMOKE if args.smoke else ON_FULL
        tdev = None if args.no_torch else torch_device_for_on(status, args.smoke)
        print(f"4. Open Neuromorphic workload: Linear + LIF, {on_cfg['neurons']} neurons, batch "
              f"{on_cfg['batch']}, T = {on_cfg['T']}, float32, forward + backward (torch / "
              f"SpikingJelly: {tdev or status}):", flush=True)
        result["open_neuromorphic"] = on_benchmark(be, on_cfg, tdev,
                                                   log=lambda s: print(s, flush=True))
    result["wall_s"] = time.perf_counter() - t0
    out.write_text(json.dumps(result, indent=1, default=_json_default) + "\n")
    ok = result["parity"]["pass"]
    over = "" if args.smoke or result["wall_s"] <= TIME_LIMIT_S else \
        f" -- over the {TIME_LIMIT_S:.0f} s limit"
    print(f"parity {'PASS' if ok else 'FAIL'}; wall {result['wall_s']:.1f} s{over}; "
          f"wrote {out}", flush=True)
    return 0 if ok else 1


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def cli(argv: Sequence[str] | None = None) -> int:
    """:func:`main` with the CLIs' error handling (one line on stderr, exit 2)."""
    from pysnn_ref.cli import run_main

    return run_main(main, PROG, argv)


if __name__ == "__main__":
    raise SystemExit(cli())

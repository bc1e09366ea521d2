"""One BPTT training step of pysnn_ref against its real peers, SpikingJelly and snnTorch, on CPU.

    python benchmarks/peers.py --model convnet --T 20 --batch-size 64 --repeats 15 --warmup 3
    python benchmarks/peers.py --model mlp --encoder poisson --threads 1 --json out/p.json
    python benchmarks/peers.py --model mlp --peers torch,snntorch --json out/peers-mlp.json
    python benchmarks/peers.py --model on-lif    # the Open Neuromorphic workload (peers_on.py)

**What is measured.** The benchmark network of :mod:`pysnn_ref.bench` (``convnet``:
Conv2d(1,16,3,p1) LIF AvgPool2d(2) Conv2d(16,32,3,p1) LIF AvgPool2d(2) Flatten Linear(1568,10);
``mlp``: Flatten Linear(784,800) LIF Linear(800,10)) is built once in pysnn_ref and then, with
the same weights copied in, in every peer (the builders: ``peers_nets.py``).  Every
configuration runs the same whole training step on the same synthetic batch (uniform [0, 1)
images, float32): ``zero_grad`` (in place, ``set_to_none=False`` on the torch side), forward +
loss (cross-entropy of the time-mean of the output layer, ``sdt``), backward, SGD (lr 0.01,
momentum 0.9).  The configurations are timed *interleaved*
(:func:`pysnn_ref.bench.measure.time_steps`, the order rotating round by round, so background
load hits them alike): ``--warmup`` untimed rounds, then ``--repeats`` timed rounds; medians of
forward / backward / optimizer / whole step and the fastest step are reported.  Threads: every
torch configuration runs with ``torch.set_num_threads`` equal to our Numba thread count, which
is Numba's default or ``--threads N`` (then Numba gets N, ``numba.set_num_threads``, and
NumPy's BLAS is capped at N as :func:`pysnn_ref.bench.measure.set_threads` does; N must not
exceed the cores nor ``NUMBA_NUM_THREADS``).

**The input** (``--encoder``).  ``direct`` (default): the same analog image at each of the T
steps.  The first layer then sees a static input, so every configuration runs it once on
``(B, ...)`` and reuses its output at all T steps (our stride-0 path, ``torch_ref``'s
``expand``, the peers as below).  ``poisson``: one spike tensor ``(T, B, C, H, W)`` is drawn
*once*, before anything is built or timed, by our Poisson encoder
(:class:`pysnn_ref.data.PoissonEncoder`, seed 0, rate = the image's intensity, so about half
the entries fire per step), and every configuration gets that same tensor (each record carries
``input_sha256``, the digest of the input the configuration holds; the summary line says
whether they are all equal).  No configuration draws spikes inside the timed step: what is
timed is the network on a spiking input, where the first layer has a different input at every
step and runs on all ``T * B`` rows *everywhere* -- ours through a
:class:`pysnn_ref.bench.measure.Runner` given the tensor as its (already time-major) input, no
encoder; ``torch`` through ``torch_ref`` with ``static_input=False``; SpikingJelly with its
first conv / linear in ``step_mode='m'``; snnTorch with its first layer inside the per-step
loop, on ``x[t]``.  The gradient check and the spike comparison below run on the same spikes.

**Correctness first.** Before timing, on identical fresh weights and input, each configuration's
parameter gradients are compared with ours: ``grad diff`` = max over parameters of
``max|g_peer - g_ours| / max|g_ours|``, and the spikes of every LIF layer of both forwards are
compared (``spikes differ``: how many of all differ; in float32 a membrane within rounding of the
threshold can fire on one side only, since the currents are summed in another order).

**The configurations and their dynamics** (ours, the benchmark defaults: ``u[t] = 0.5 v[t-1] +
I[t]``, ``o = H(u - 1)`` with ``H(0) = 1``, hard reset ``v = u (1 - o)`` *not* detached,
triangle surrogate ``sigma'(x) = max(0, 1 - |x|)``):

* ``ours`` -- pysnn_ref BPTT (:class:`pysnn_ref.bench.measure.Runner`).
* ``torch`` -- plain PyTorch autograd through the LIF loop (:mod:`pysnn_ref.bench.torch_ref`,
  :class:`pysnn_ref.bench.measure.TorchRunner`; Poisson input: the same network with
  ``static_input=False``, stepped like the peers).  Same dynamics exactly.  (Its LIF loop walks
  ``I.unbind(0)``; it used to read ``I[t]``, whose backward materialises a zero ``(T, B, ...)``
  gradient per step: 866 vs 207 ms per conv-net step at T = 20.)
* ``spikingjelly`` -- SpikingJelly 2.0.0 ``layer.*`` with ``step_mode='m'`` and
  ``neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=1.0, v_reset=0.0,
  surrogate_function=surrogate.PiecewiseQuadratic(alpha=1.0), detach_reset=False)``.  Same
  dynamics exactly: with ``decay_input=False`` the charge is ``H = V - (V - V_reset)/tau + X``
  (``spikingjelly/_ops/lif/reference.py: charge``) = ``V - V/2 + X``, which is ``0.5 V + X`` to
  the bit (``V/2`` and ``V - V/2`` are exact in binary floating point); the spike is
  ``H - V_th >= 0``; the hard reset ``spike * V_reset + (1 - spike) * H``
  (``_ops/reset.py: voltage``) is ``(1 - o) u`` with the gradient through the spike kept; the
  PiecewiseQuadratic gradient is ``(alpha - alpha^2 |x|).clamp_min(0)``
  (``_ops/surrogate.py: _surrogate_gradient``, id 2), our triangle for alpha = 1.  2.0.0 has no
  ``backend=`` argument: with a built-in surrogate on float32 CPU tensors the multi-step LIF
  runs the registered op ``torch.ops.sj_lif.forward``, whose CPU autograd kernel is the
  "torch-reference" Python loop (``functional.neuron_implementation`` reports
  ``torch-reference`` for every CPU neuron).  Its CUDA implementations (native ``cuda``,
  ``triton``) and the ``cuda_graph`` execution mode need a GPU and are not timed.  The static
  first layer runs once (``step_mode='s'``) and is expanded over T (no copy) -- SpikingJelly
  2.0.0's own examples instead expand the *image* and run the first conv T times (as every
  configuration does with ``--encoder poisson``, ``step_mode='m'``).
* ``spikingjelly-compile`` -- the same network under ``torch.compile`` (inductor), SpikingJelly
  2.0.0's ``execution_mode='compile'`` (``examples/common/train_classify.py``), its only fused
  CPU path.  The one-off compile time is printed; spikes are not counted (no hooks inside the
  compiled graph), the gradient check covers it.
* ``snntorch`` -- snnTorch 1.0.0's idiom: the first layer once outside the loop (Poisson input:
  on ``x[t]`` inside it), then
  ``for t in range(T): spk, mem = lif(cur, mem)`` with per-step layers, ``snn.Leaky(beta=0.5,
  threshold=1.0, reset_mechanism='zero', spike_grad=surrogate.custom_surrogate(triangle))``
  (snnTorch's own ``surrogate.triangular`` is not a triangle: its gradient is +-threshold).
  ``Leaky`` (default ``reset_delay=True``) resets from the *previous* step's membrane,
  ``mem[t] = beta (1 - H(mem[t-1] - 1)) mem[t-1] + I[t]``, which is our forward, but the reset
  signal is detached (``SpikingNeuron.mem_reset``: ``spike_grad(mem - threshold).clone()
  .detach()``): the gradients are those of our ``detach_reset=True``, not of our default.
  Its spike is ``mem - threshold > 0`` (``H(0) = 0``, ``surrogate.CustomSurrogate.forward``),
  which differs from ours only when a membrane equals the threshold exactly -- rare, but with a
  static input the membrane converges to ``2 I`` and float32 lands on 1.0 exactly now and then:
  on the convnet (T = 20, seed 0) that flips 11 spikes of the first LIF layer and, through them,
  42 of the second, all of the spike differences (with ``>=`` patched in, none remain and the
  gradients agree to 8e-6).  The script also reports the gradient difference to our
  ``detach_reset=True`` network, which shows that the detached reset is the other difference.
* ``snntorch-nodelay`` -- the same with ``reset_delay=False``: the reset then applies in the
  same step, ``mem = mem - spk * mem`` with the gradient through ``spk`` kept (the delayed,
  detached reset is then always 0, since the membrane it reads is already reset): exactly our
  dynamics and gradients.

**Installing the peers.** SpikingJelly and snnTorch are *not* dependencies of pysnn_ref.  Use a
separate virtualenv holding torch and pysnn_ref (``pip install -e .``), then
``pip install spikingjelly==2.0.0 snntorch==1.0.0``; if pip would replace your torch (spikingjelly
2.0.0 asks for torchvision, torchaudio, tensorboard, ...), install them with ``--no-deps`` and add
``loguru``, the one further package the modules used here import.

Bad arguments and a missing peer: one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PROG = "benchmarks/peers.py"
MODELS = ("convnet", "mlp", "on-lif")  # on-lif: benchmarks/peers_on.py
#: library -> its configurations (a library name in --peers selects all of them)
PEER_GROUPS = {
    "torch": ("torch",),
    "spikingjelly": ("spikingjelly", "spikingjelly-compile"),
    "snntorch": ("snntorch", "snntorch-nodelay"),
    "norse": (),  # on-lif only (peers_on.ON_GROUPS)
}
CONFIGS = tuple(c for group in PEER_GROUPS.values() for c in group)
DESCRIPTIONS = {
    "ours": "pysnn_ref BPTT (NumPy/Numba)",
    "torch": "PyTorch autograd of the same net (pysnn_ref.bench.torch_ref)",
    "spikingjelly": "LIFNode step_mode='m', eager (CPU: torch-reference op), PiecewiseQuadratic(1)",
    "spikingjelly-compile": "the same under torch.compile (inductor)",
    "snntorch": "snn.Leaky per-step loop, reset_delay=True (reset detached), custom triangle",
    "snntorch-nodelay": "snn.Leaky per-step loop, reset_delay=False, custom triangle",
}
INSTALL = ("install torch and the peers in a separate venv with pysnn_ref (they are not its "
           "dependencies): pip install torch spikingjelly==2.0.0 snntorch==1.0.0 (the peers with "
           "--no-deps, plus loguru, if pip would replace your torch)")
ENCODERS = ("direct", "poisson")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def make_parser() -> argparse.ArgumentParser:
    """The script's parser; its errors are one line on stderr, exit 2."""
    from pysnn_ref.cli import ArgumentParser, ranged

    ap = ArgumentParser(prog=PROG, description="Time one BPTT training step of pysnn_ref against "
                        "PyTorch autograd, SpikingJelly and snnTorch on the same network (CPU).")
    ap.add_argument("--model", default="convnet", choices=MODELS,
                    help="convnet (16C3-AP2-32C3-AP2 + linear), mlp (784-800-10) or on-lif "
                         "(the Open Neuromorphic Linear + LIF workload, peers_on.py)")
    ap.add_argument("--T", type=int, default=None, help="time steps (20; on-lif: 500)")
    ap.add_argument("--batch-size", type=int, default=None, help="samples (64; on-lif: 16)")
    ap.add_argument("--neurons", type=int, default=16384, help="on-lif: n of Linear(n, n)")
    ap.add_argument("--check-neurons", type=int, default=1024,
                    help="on-lif: n of the instance whose gradients are checked first")
    ap.add_argument("--repeats", type=int, default=15, help="timed rounds (medians)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed rounds first (>= 1)")
    ap.add_argument("--peers", default=None,
                    help=f"comma list of libraries {tuple(PEER_GROUPS)} (each: all its "
                         f"configurations) or single configurations {CONFIGS} (default: "
                         "torch,spikingjelly,snntorch; on-lif: also norse, peers_on.ON_GROUPS)")
    ap.add_argument("--encoder", default="direct", choices=ENCODERS,
                    help="convnet / mlp input: direct (the image at every step; the first layer "
                         "runs once) or poisson (one (T, B, ...) spike tensor drawn before timing,"
                         " the same for every configuration; the first layer runs T times)")
    ap.add_argument("--threads", type=ranged("threads"), default=None,
                    help="threads of every configuration: Numba's (BLAS capped to it, as the "
                         "library does) and torch.set_num_threads (default: Numba's count)")
    ap.add_argument("--json", default=None, help="write the records as JSON to this file")
    return ap


def set_threads(n: int | None) -> Callable[[], None]:
    """``--threads n``: Numba's threads and the BLAS cap (:func:`pysnn_ref.bench.measure
    .set_threads`); every torch configuration then takes the same count.  ``n`` (>= 1, the
    parser checks) must not exceed the cores this process may use, nor ``NUMBA_NUM_THREADS``
    (Numba's pool; torch would otherwise get more threads than Numba).  Returns a
    function restoring the previous counts (nothing to restore for ``None``)."""
    import os

    import numba

    from pysnn_ref.bench import measure

    if n is None:
        return lambda: None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    limit = min(int(cores or 1), int(numba.config.NUMBA_NUM_THREADS))
    if not 1 <= n <= limit:
        raise ValueError(f"threads must be between 1 and {limit} (cores this process may use: "
                         f"{cores}, NUMBA_NUM_THREADS: {numba.config.NUMBA_NUM_THREADS}), got {n}")
    return measure.set_threads(n)


def select_configs(text: str, groups: dict[str, tuple[str, ...]] | None = None
                   ) -> list[str]:
    """The configurations named by ``--peers`` (library names expand to all their configs in
    ``groups``, default :data:`PEER_GROUPS`)."""
    groups = PEER_GROUPS if groups is None else groups
    configs = tuple(c for g in groups.values() for c in g)
    out: list[str] = []
    for tok in (t.strip() for t in text.split(",")):
        if not tok:
            continue
        if tok in groups and groups[tok]:
            out.extend(groups[tok])
        elif tok in configs:
            out.append(tok)
        else:
            raise ValueError(f"peers: unknown name {tok!r} for this model; choose from "
                             f"{tuple(g for g in groups if groups[g])} or {configs}")
    if not out:
        raise ValueError(f"peers must name at least one of {tuple(PEER_GROUPS)}")
    return list(dict.fromkeys(out))


def bench_args(args: argparse.Namespace) -> argparse.Namespace:
    """The namespace :class:`pysnn_ref.bench.measure.Runner` / ``TorchRunner`` take, built and
    validated by ``pysnn_ref.bench``'s own parser (bad values raise ``ValueError``)."""
    from pysnn_ref.bench import __main__ as bench

    b = bench.make_parser().parse_args([
        "--model", args.model, "--methods", "bptt", "--T", str(args.T or 20),
        "--batch-size", str(args.batch_size or 64), "--repeats", str(args.repeats),
        "--warmup", str(args.warmup), "--vs-torch", "--no-memory"])
    bench._validate(b)
    return b


def library_of(config: str) -> str:
    return next(lib for lib, group in PEER_GROUPS.items() if config in group)


def import_peer(library: str) -> Any:
    """The peer's module, or a one-line ``ValueError`` saying how to install it."""
    import importlib
    import logging

    # torch.library.triton_op warns once per op that Triton is missing (CPU-only torch)
    logging.getLogger("torch._library.triton").setLevel(logging.ERROR)
    name = {"spikingjelly": "spikingjelly.activation_based.neuron",
            "norse": "norse.torch"}.get(library, library)
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ValueError(f"{library} is not importable here ({e}); {INSTALL}") from None


def version_of(library: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------------------------
# Correctness: gradients and spikes against ours
# --------------------------------------------------------------------------------------------

def our_reference(b: argparse.Namespace, inputs: np.ndarray | None = None,
                  detach_reset: bool = False) -> dict[str, Any]:
    """Our network on fresh weights: its BPTT gradients and every LIF layer's spikes, on the
    static synthetic batch (direct encoding) or on the (T, B, ...) spikes ``inputs``."""
    from pysnn_ref import nn as snn
    from pysnn_ref.backend import to_numpy
    from pysnn_ref.bench.measure import build_model, synthetic_batch
    from pysnn_ref.data import make_encoder
    from pysnn_ref.gradcheck import method_gradients

    T = b.T[0]
    net = build_model(b.model, b.input_shape, b.classes, detach_reset=detach_reset, seed=b.seed)
    x, labels = synthetic_batch(b.batch_size, b.input_shape, b.classes, np.float32, b.seed)
    X = make_encoder("direct").encode(x, T) if inputs is None else inputs
    _, grads = method_gradients(net, "bptt", X, labels, loss=b.loss)
    with snn.SpikeMonitor(net) as monitor:  # each LIF's output (as torch_ref.compare_spikes)
        net.forward(X)
    return {"net": net, "x": x, "labels": labels, "spikes": monitor.spikes,
            "static": inputs is None, "grads": {k: to_numpy(v) for k, v in grads.items()}}


def poisson_input(b: argparse.Namespace) -> np.ndarray:
    """The (T, B, C, H, W) float32 spikes of ``--encoder poisson``, drawn once: our Poisson
    encoder (:class:`pysnn_ref.data.PoissonEncoder`, seed ``b.seed``) at rate = the synthetic
    image's intensity (uniform [0, 1), so half the entries fire per step on average)."""
    from pysnn_ref.bench.measure import synthetic_batch
    from pysnn_ref.data import make_encoder

    x, _ = synthetic_batch(b.batch_size, b.input_shape, b.classes, np.float32, b.seed)
    return np.ascontiguousarray(make_encoder("poisson", seed=b.seed).encode(x, b.T[0]))


def input_digest(x: Any) -> str:
    """sha256 (first 16 hex digits) of an input array or CPU tensor: its shape, dtype, bytes."""
    import hashlib

    a = np.ascontiguousarray(x.detach().numpy() if hasattr(x, "detach") else np.asarray(x))
    h = hashlib.sha256(f"{a.shape} {a.dtype}".encode())
    h.update(a.tobytes())
    return h.hexdigest()[:16]


def spike_mismatch(ours: list[np.ndarray], theirs: list[np.ndarray] | None
                   ) -> tuple[int | None, int | None]:
    if theirs is None:
        return None, None
    if [a.shape for a in ours] != [a.shape for a in theirs]:
        raise ValueError(f"spike shapes differ: ours {[a.shape for a in ours]}, the peer's "
                         f"{[a.shape for a in theirs]}")
    diff = sum(int(np.count_nonzero(a != c)) for a, c in zip(ours, theirs, strict=True))
    return diff, sum(int(a.size) for a in ours)


def check(name: str, runner: Any, ref: dict[str, Any], b: argparse.Namespace,
          detached: dict[str, Any] | None) -> dict[str, Any]:
    """``name``'s gradients and spikes vs ours (fresh weights; ``runner`` is not updated)."""
    from pysnn_ref.bench import torch_ref

    t0 = time.perf_counter()
    if name == "torch" and ref["static"]:  # measure.TorchRunner (direct input)
        _, grads, _ = torch_ref.torch_gradients(runner.tnet, ref["x"], ref["labels"], b.T[0],
                                                b.loss)
        first_call = time.perf_counter() - t0
        diff, total = torch_ref.compare_spikes(ref["net"], runner.tnet, ref["x"], b.T[0])
    else:
        grads = runner.gradients()
        first_call = time.perf_counter() - t0
        diff, total = spike_mismatch(ref["spikes"], runner.spikes())
    # scale: our gradient (gradient_difference divides by its second argument's max |g|)
    d, where = torch_ref.gradient_difference(grads, ref["grads"])
    out = {"grad_max_rel_diff": d, "grad_worst_param": where, "spike_mismatches": diff,
           "spikes_total": total, "first_call_s": first_call}
    if detached is not None:
        out["grad_max_rel_diff_vs_detach_reset"] = torch_ref.gradient_difference(
            grads, detached["grads"])[0]
    return out


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

def build_runners(b: argparse.Namespace, configs: Sequence[str], threads: int,
                  inputs: np.ndarray | None) -> dict[str, Any]:
    """Ours and every configuration, on the static batch (``inputs`` None) or on ``inputs``."""
    from pysnn_ref.bench.measure import Runner, TorchRunner

    runners: dict[str, Any] = {"ours": Runner(b, "bptt", b.T[0], inputs=inputs)}
    for c in configs:
        runners[c] = (TorchRunner(b, b.T[0], threads) if c == "torch" and inputs is None
                      else sibling("peers_nets").PeerRunner(c, b, threads, inputs))
    return runners


def run(b: argparse.Namespace, configs: Sequence[str], encoder: str = "direct",
        threads_from: str = "Numba's default") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Check every configuration against ours, then time them all interleaved; returns the
    common fields and one record per configuration (ours first)."""
    from pysnn_ref.bench.measure import blas_threads, omp_wait_policy, thread_count, time_steps

    threads = thread_count()
    inputs = poisson_input(b) if encoder == "poisson" else None
    common = {"model": b.model, "T": b.T[0], "batch": b.batch_size, "dtype": "float32",
              "loss": b.loss, "encoder": encoder,
              "input_rate": None if inputs is None else float(inputs.mean()),
              "threads": threads, "threads_from": threads_from, "blas_threads": blas_threads(),
              "omp_wait_policy": omp_wait_policy(), "repeats": b.repeats, "warmup": b.warmup,
              "versions": {lib: version_of(lib) for lib in PEER_GROUPS}}
    print(header(common), flush=True)
    runners = build_runners(b, configs, threads, inputs)
    ref = our_reference(b, inputs)
    detached = our_reference(b, inputs, detach_reset=True) if "snntorch" in configs else None
    checks = {c: check(c, runners[c], ref, b, detached if c == "snntorch" else None)
              for c in configs}
    timings = time_steps({n: r.step for n, r in runners.items()}, b.warmup, b.repeats)
    records = []
    for name, r in runners.items():
        rec = {**common, "config": name, "library": "pysnn_ref" if name == "ours"
               else library_of(name), "description": DESCRIPTIONS[name],
               "input_sha256": input_digest(r.x), **timings[name], **checks.get(name, {})}
        if name != "ours":
            rec["ours_over_peer"] = timings["ours"]["step_s"] / rec["step_s"]
        records.append(rec)
    return common, records


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

def header(common: dict[str, Any]) -> str:
    v = common["versions"]
    enc = ("direct (the same image at every step)" if common["encoder"] == "direct" else
           f"poisson (one (T, B, ...) spike tensor drawn once, mean rate "
           f"{common['input_rate']:.3f}, the same in every configuration)")
    return (f"peers: model={common['model']} T={common['T']} batch={common['batch']} float32 "
            f"loss={common['loss']} encoder={enc} threads={common['threads']} (Numba, "
            f"{common['threads_from']}; torch.set_num_threads the same) "
            f"blas_threads={common['blas_threads']} "
            f"OMP_WAIT_POLICY={common['omp_wait_policy']} | torch {v['torch']} "
            f"spikingjelly {v['spikingjelly'] or '-'} snntorch {v['snntorch'] or '-'} | "
            f"warmup={common['warmup']} repeats={common['repeats']} (medians)")


def _ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.2f}"


def format_table(records: Sequence[dict[str, Any]]) -> str:
    cols = f"{'config':<22}{'step ms':>9}{'min ms':>9}{'fwd ms':>9}{'bwd ms':>9}{'opt ms':>8}" \
           f"{'1st ms':>9}{'grad diff':>11}  spikes differ"
    lines = [cols, "-" * len(cols)]
    for r in records:
        g = r.get("grad_max_rel_diff")
        sp = ("-" if r.get("spikes_total") is None
              else f"{r['spike_mismatches']} / {r['spikes_total']}")
        lines.append(f"{r['config']:<22}{_ms(r['step_s']):>9}{_ms(r['step_min_s']):>9}"
                     f"{_ms(r['forward_s']):>9}{_ms(r['backward_s']):>9}"
                     f"{_ms(r['optimizer_s']):>8}{_ms(r['first_step_s']):>9}"
                     f"{'-' if g is None else f'{g:.1e}':>11}  {sp}")
    return "\n".join(lines)


def summary(records: Sequence[dict[str, Any]]) -> list[str]:
    ours = records[0]
    digests = {r["config"]: r["input_sha256"] for r in records}
    out = [f"input ({ours['encoder']}): sha256 {ours['input_sha256']} in every configuration"
           if len(set(digests.values())) == 1 else f"INPUTS DIFFER (sha256): {digests}"]
    for r in records[1:]:
        out.append(f"our bptt step / {r['config']} step = {r['ours_over_peer']:.2f} "
                   f"({_ms(ours['step_s'])} ms vs {_ms(r['step_s'])} ms)")
    for r in records:
        if "grad_max_rel_diff_vs_detach_reset" in r:
            out.append(f"{r['config']}: snn.Leaky detaches its reset, grad diff vs ours with "
                       f"detach_reset=True = {r['grad_max_rel_diff_vs_detach_reset']:.1e} "
                       f"(vs ours, reset not detached = {r['grad_max_rel_diff']:.1e})")
        if r["config"].endswith("-compile"):
            out.append(f"{r['config']}: first call "
                       f"{r['first_call_s']:.1f} s (compile + forward/backward; shorter when "
                       "inductor's on-disk cache already holds the graphs)")
    return out


def legend(records: Sequence[dict[str, Any]]) -> list[str]:
    lines = [f"  {r['config']:<22}{r['description']}" for r in records]
    if any(r["library"] == "spikingjelly" for r in records):
        import torch

        if not torch.cuda.is_available():
            lines.append("  (spikingjelly's CUDA implementations 'cuda' / 'triton' and its "
                         "'cuda_graph' mode need a GPU: not available here, not timed)")
    return lines


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run, print; errors propagate (see :func:`cli`)."""
    args = make_parser().parse_args(argv)
    if args.model == "on-lif" and args.encoder != "direct":
        raise ValueError("encoder: --model on-lif has its own input (torch.randn, the blog's); "
                         "--encoder applies to convnet and mlp")
    restore = set_threads(args.threads)
    try:
        if args.model == "on-lif":
            return main_on(args)
        return main_nets(args)
    finally:
        restore()


def main_nets(args: argparse.Namespace) -> int:
    """``--model convnet | mlp``: check, time and print."""
    configs = select_configs(args.peers or "torch,spikingjelly,snntorch")
    b = bench_args(args)
    for lib in dict.fromkeys(["torch", *(library_of(c) for c in configs)]):
        import_peer(lib)
    if args.json:  # fail before the run, not after it
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    _, records = run(b, configs, args.encoder,
                     "Numba's default" if args.threads is None else "--threads")
    print(format_table(records))
    print("grad diff = max over parameters of max|g_peer - g_ours| / max|g_ours| (fresh weights, "
          "same batch); 1st = first timed-loop step")
    print("\n".join(legend(records)))
    for line in summary(records):
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


@functools.cache
def sibling(name: str) -> Any:
    """``benchmarks/<name>.py`` (``peers_nets``, ``peers_on``), imported by path once (a script
    folder, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def on_module() -> Any:
    """benchmarks/peers_on.py (the Open Neuromorphic workload)."""
    return sibling("peers_on")


def main_on(args: argparse.Namespace) -> int:
    """``--model on-lif``: check, time and print the Open Neuromorphic workload."""
    return on_module().main_on(args, select_configs, import_peer)


def cli(argv: Sequence[str] | None = None) -> int:
    """:func:`main` with the CLIs' error handling: bad input -> one line on stderr, exit 2."""
    from pysnn_ref.cli import run_main

    return run_main(main, PROG, argv)


if __name__ == "__main__":
    sys.exit(cli())

"""One BPTT training step of pysnn_ref against its real peers, SpikingJelly and snnTorch, on CPU.

    python benchmarks/peers.py --model convnet --T 20 --batch-size 64 --repeats 15 --warmup 3
    python benchmarks/peers.py --model mlp --peers torch,snntorch --json out/peers-mlp.json
    python benchmarks/peers.py --model on-lif    # the Open Neuromorphic workload (peers_on.py)

**What is measured.** The benchmark network of :mod:`pysnn_ref.bench` (``convnet``:
Conv2d(1,16,3,p1) LIF AvgPool2d(2) Conv2d(16,32,3,p1) LIF AvgPool2d(2) Flatten Linear(1568,10);
``mlp``: Flatten Linear(784,800) LIF Linear(800,10)) is built once in pysnn_ref and then, with
the same weights copied in, in every peer.  Every configuration runs the same whole training step
on the same synthetic batch (uniform [0, 1) images, direct encoding: the same analog image at
each of the T steps, float32): ``zero_grad`` (in place, ``set_to_none=False`` on the torch
side), forward + loss (cross-entropy of the time-mean of the output layer, ``sdt``), backward,
SGD (lr 0.01, momentum 0.9).  The configurations are timed *interleaved*
(:func:`pysnn_ref.bench.measure.time_steps`, the order rotating round by round, so background
load hits them alike): ``--warmup`` untimed rounds, then ``--repeats`` timed rounds; medians of
forward / backward / optimizer / whole step and the fastest step are reported.  Every torch
configuration runs with ``torch.set_num_threads`` equal to our Numba thread count.  The first
layer sees a static input, so every configuration runs it once on ``(B, ...)`` and reuses its
output at all T steps (our stride-0 path, ``torch_ref``'s ``expand``, the peers as below).

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
  :class:`pysnn_ref.bench.measure.TorchRunner`).  Same dynamics exactly.  (Its LIF loop walks
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
  2.0.0's own examples instead expand the *image* and run the first conv T times.
* ``spikingjelly-compile`` -- the same network under ``torch.compile`` (inductor), SpikingJelly
  2.0.0's ``execution_mode='compile'`` (``examples/common/train_classify.py``), its only fused
  CPU path.  The one-off compile time is printed; spikes are not counted (no hooks inside the
  compiled graph), the gradient check covers it.
* ``snntorch`` -- snnTorch 1.0.0's idiom: the first layer once outside the loop, then
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
LAM, V_TH, SJ_TAU = 0.5, 1.0, 2.0  # SpikingJelly: decay_input=False -> V - V/tau + X = 0.5 V + X


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

def make_parser() -> argparse.ArgumentParser:
    """The script's parser; its errors are one line on stderr, exit 2."""
    from pysnn_ref.cli import ArgumentParser

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
    ap.add_argument("--json", default=None, help="write the records as JSON to this file")
    return ap


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
# The peers' networks (weights copied from ours)
# --------------------------------------------------------------------------------------------

def copy_weights(net: Any, layers: Sequence[Any]) -> dict[str, Any]:
    """Copy our parameters, in order, into the ``weight`` / ``bias`` of the torch ``layers``;
    returns ``{our parameter name: torch Parameter}``."""
    import torch

    from pysnn_ref.backend import to_numpy


    theirs = [p for m in layers for p in (m.weight, m.bias)]
    ours = net.named_parameters()
    if len(theirs) != len(ours):
        raise ValueError(f"{len(ours)} parameters in our net but {len(theirs)} in the peer's")
    out = {}
    with torch.no_grad():
        for (name, p), t in zip(ours.items(), theirs, strict=True):
            w = np.ascontiguousarray(to_numpy(p.data))
            if tuple(t.shape) != w.shape:
                raise ValueError(f"{name}: shape {w.shape} vs the peer's {tuple(t.shape)}")
            t.copy_(torch.from_numpy(w))
            out[name] = t
    return out


def spikingjelly_net(model: str, T: int) -> tuple[Any, Callable, list[Any]]:
    """(modules, forward(x) -> (T, B, classes), weighted layers in our order)."""
    import torch
    from spikingjelly.activation_based import layer, neuron, surrogate

    def lif() -> Any:
        return neuron.LIFNode(tau=SJ_TAU, decay_input=False, v_threshold=V_TH, v_reset=0.0,
                              surrogate_function=surrogate.PiecewiseQuadratic(alpha=1.0),
                              detach_reset=False, step_mode="m")

    m = "m"
    if model == "convnet":
        c1 = layer.Conv2d(1, 16, 3, padding=1)  # step_mode 's': once on the static batch
        c2 = layer.Conv2d(16, 32, 3, padding=1, step_mode=m)
        fc = layer.Linear(1568, 10, step_mode=m)
        first = c1
        body = torch.nn.Sequential(lif(), layer.AvgPool2d(2, step_mode=m), c2, lif(),
                                   layer.AvgPool2d(2, step_mode=m), layer.Flatten(step_mode=m),
                                   fc)
        weighted = [c1, c2, fc]
    else:
        fc1, fc2 = layer.Linear(784, 800), layer.Linear(800, 10, step_mode=m)
        first = torch.nn.Sequential(layer.Flatten(), fc1)
        body = torch.nn.Sequential(lif(), fc2)
        weighted = [fc1, fc2]

    def forward(x: Any) -> Any:
        h = first(x)
        return body(h.unsqueeze(0).expand(T, *h.shape))

    return torch.nn.ModuleList([first, body]), forward, weighted


def triangle_surrogate(input_: Any, grad_input: Any, spikes: Any) -> Any:
    """Our triangle with a = 1, ``max(0, 1 - |x|)``, in snnTorch's custom-surrogate signature."""
    return grad_input * (1.0 - input_.abs()).clamp(min=0.0)


def snntorch_net(model: str, T: int, reset_delay: bool) -> tuple[Any, Callable, list[Any]]:
    """(modules, forward(x) -> (T, B, classes), weighted layers in our order): snnTorch's
    per-time-step loop, the first layer computed once outside it."""
    import snntorch as snn
    import torch
    from snntorch import surrogate

    def leaky() -> Any:
        return snn.Leaky(beta=LAM, threshold=V_TH, reset_mechanism="zero", reset_delay=reset_delay,
                         spike_grad=surrogate.custom_surrogate(triangle_surrogate))

    nn = torch.nn
    if model == "convnet":
        c1, c2, fc = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1), \
            nn.Linear(1568, 10)
        lif1, lif2, pool = leaky(), leaky(), nn.AvgPool2d(2)

        def forward(x: Any) -> Any:
            mem1, mem2 = lif1.init_leaky(), lif2.init_leaky()
            cur1 = c1(x)
            out = []
            for _ in range(T):
                spk1, mem1 = lif1(cur1, mem1)
                spk2, mem2 = lif2(c2(pool(spk1)), mem2)
                out.append(fc(pool(spk2).flatten(1)))
            return torch.stack(out)

        return nn.ModuleList([c1, lif1, c2, lif2, fc]), forward, [c1, c2, fc]
    fc1, fc2, lif1 = nn.Linear(784, 800), nn.Linear(800, 10), leaky()

    def forward_mlp(x: Any) -> Any:
        mem1 = lif1.init_leaky()
        cur1 = fc1(x.flatten(1))
        out = []
        for _ in range(T):
            spk1, mem1 = lif1(cur1, mem1)
            out.append(fc2(spk1))
        return torch.stack(out)

    return nn.ModuleList([fc1, lif1, fc2]), forward_mlp, [fc1, fc2]


# --------------------------------------------------------------------------------------------
# One peer configuration, ready to step
# --------------------------------------------------------------------------------------------

class PeerRunner:
    """A peer's network, its SGD and the batch: ``step()`` times one training step as
    :class:`pysnn_ref.bench.measure.TorchRunner` does."""

    def __init__(self, config: str, b: argparse.Namespace, threads: int) -> None:
        import torch

        from pysnn_ref.bench.measure import build_model, synthetic_batch

        torch.set_num_threads(threads)
        self.torch = torch
        net = build_model(b.model, b.input_shape, b.classes, seed=b.seed)  # our fresh weights
        self.reset: Callable[[], None] | None = None
        if config.startswith("spikingjelly"):
            from spikingjelly.activation_based import functional, neuron

            self.modules, forward, weighted = spikingjelly_net(b.model, b.T[0])
            self.reset = lambda: functional.reset_net(self.modules)
            self.spiking_type: Any = neuron.LIFNode
        else:
            import snntorch as snn

            self.modules, forward, weighted = snntorch_net(b.model, b.T[0],
                                                           reset_delay=config == "snntorch")
            self.spiking_type = snn.Leaky
        self.params = copy_weights(net, weighted)
        self.compiled = config.endswith("-compile")
        if self.compiled:
            import torch._inductor.config as inductor_config

            inductor_config.compile_threads = 1  # no compile-worker pool on a shared machine
            forward = torch.compile(forward)
        self.forward = forward
        self.opt = torch.optim.SGD(list(self.params.values()), lr=b.lr, momentum=0.9)
        x, labels = synthetic_batch(b.batch_size, b.input_shape, b.classes, np.float32, b.seed)
        self.x, self.labels = torch.from_numpy(x), torch.from_numpy(labels)

    def _loss(self) -> Any:
        from pysnn_ref.bench.torch_ref import torch_loss

        if self.reset is not None:  # SpikingJelly's neurons keep v between calls
            self.reset()
        return torch_loss("sdt", self.forward(self.x), self.labels)

    def step(self) -> tuple[float, float, float, float]:
        """One training step; returns (forward, backward, optimizer, total) seconds."""
        clock = time.perf_counter
        t0 = clock()
        self.opt.zero_grad(set_to_none=False)
        loss = self._loss()
        t1 = clock()
        loss.backward()
        del loss
        t2 = clock()
        self.opt.step()
        t3 = clock()
        return t1 - t0, t2 - t1, t3 - t2, t3 - t0

    def gradients(self) -> dict[str, np.ndarray]:
        """Every parameter's gradient (by our names) at the current weights; no update."""
        self.opt.zero_grad(set_to_none=False)
        self._loss().backward()
        grads = {k: p.grad.detach().numpy().copy() for k, p in self.params.items()}
        self.opt.zero_grad(set_to_none=False)
        return grads

    def spikes(self) -> list[np.ndarray] | None:
        """Every spiking layer's (T, B, ...) spikes of one forward (None when compiled)."""
        if self.compiled:
            return None
        cells = [m for m in self.modules.modules() if isinstance(m, self.spiking_type)]
        seen: dict[int, list[Any]] = {id(m): [] for m in cells}

        def hook(mod: Any, inputs: Any, out: Any) -> None:  # snnTorch returns (spk, mem)
            seen[id(mod)].append((out[0] if isinstance(out, tuple) else out).detach())

        handles = [m.register_forward_hook(hook) for m in cells]
        try:
            with self.torch.no_grad():
                if self.reset is not None:
                    self.reset()
                self.forward(self.x)
        finally:
            for h in handles:
                h.remove()
        return [(s[0] if len(s) == 1 else self.torch.stack(s)).numpy()
                for s in (seen[id(m)] for m in cells)]


# --------------------------------------------------------------------------------------------
# Correctness: gradients and spikes against ours
# --------------------------------------------------------------------------------------------

def our_reference(b: argparse.Namespace, detach_reset: bool = False) -> dict[str, Any]:
    """Our network on fresh weights: its BPTT gradients and every LIF layer's spikes."""
    from pysnn_ref import nn as snn
    from pysnn_ref.backend import to_numpy
    from pysnn_ref.bench.measure import build_model, synthetic_batch
    from pysnn_ref.data import make_encoder
    from pysnn_ref.gradcheck import method_gradients

    T = b.T[0]
    net = build_model(b.model, b.input_shape, b.classes, detach_reset=detach_reset, seed=b.seed)
    x, labels = synthetic_batch(b.batch_size, b.input_shape, b.classes, np.float32, b.seed)
    _, grads = method_gradients(net, "bptt", x, labels, loss=b.loss, T=T,
                                encoder=make_encoder("direct"))
    with snn.SpikeMonitor(net) as monitor:  # each LIF's output (as torch_ref.compare_spikes)
        net.forward(make_encoder("direct").encode(x, T))
    spikes = monitor.spikes
    return {"net": net, "x": x, "labels": labels, "spikes": spikes,
            "grads": {k: to_numpy(v) for k, v in grads.items()}}


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
    if name == "torch":
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

def build_runners(b: argparse.Namespace, configs: Sequence[str], threads: int) -> dict[str, Any]:
    from pysnn_ref.bench.measure import Runner, TorchRunner

    runners: dict[str, Any] = {"ours": Runner(b, "bptt", b.T[0])}
    for c in configs:
        runners[c] = TorchRunner(b, b.T[0], threads) if c == "torch" else PeerRunner(c, b, threads)
    return runners


def run(b: argparse.Namespace, configs: Sequence[str]
        ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Check every configuration against ours, then time them all interleaved; returns the
    common fields and one record per configuration (ours first)."""
    from pysnn_ref.bench.measure import blas_threads, omp_wait_policy, thread_count, time_steps

    threads = thread_count()
    common = {"model": b.model, "T": b.T[0], "batch": b.batch_size, "dtype": "float32",
              "loss": b.loss, "threads": threads, "blas_threads": blas_threads(),
              "omp_wait_policy": omp_wait_policy(), "repeats": b.repeats, "warmup": b.warmup,
              "versions": {lib: version_of(lib) for lib in PEER_GROUPS}}
    print(header(common), flush=True)
    runners = build_runners(b, configs, threads)
    ref = our_reference(b)
    detached = our_reference(b, detach_reset=True) if "snntorch" in configs else None
    checks = {c: check(c, runners[c], ref, b, detached if c == "snntorch" else None)
              for c in configs}
    timings = time_steps({n: r.step for n, r in runners.items()}, b.warmup, b.repeats)
    records = []
    for name in runners:
        rec = {**common, "config": name, "library": "pysnn_ref" if name == "ours"
               else library_of(name), "description": DESCRIPTIONS[name], **timings[name],
               **checks.get(name, {})}
        if name != "ours":
            rec["ours_over_peer"] = timings["ours"]["step_s"] / rec["step_s"]
        records.append(rec)
    return common, records


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

def header(common: dict[str, Any]) -> str:
    v = common["versions"]
    return (f"peers: model={common['model']} T={common['T']} batch={common['batch']} float32 "
            f"loss={common['loss']} threads={common['threads']} (Numba; torch.set_num_threads "
            f"the same) blas_threads={common['blas_threads']} "
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
    out = []
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
    if args.model == "on-lif":
        return main_on(args)
    configs = select_configs(args.peers or "torch,spikingjelly,snntorch")
    b = bench_args(args)
    for lib in dict.fromkeys(["torch", *(library_of(c) for c in configs)]):
        import_peer(lib)
    if args.json:  # fail before the run, not after it
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    _, records = run(b, configs)
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


def on_module() -> Any:
    """benchmarks/peers_on.py (the Open Neuromorphic workload), imported by path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("peers_on", Path(__file__).with_name(
        "peers_on.py"))
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def main_on(args: argparse.Namespace) -> int:
    """``--model on-lif``: check, time and print the Open Neuromorphic workload."""
    return on_module().main_on(args, select_configs, import_peer)


def cli(argv: Sequence[str] | None = None) -> int:
    """:func:`main` with the CLIs' error handling: bad input -> one line on stderr, exit 2."""
    from pysnn_ref.cli import run_main

    return run_main(main, PROG, argv)


if __name__ == "__main__":
    sys.exit(cli())

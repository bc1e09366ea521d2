"""The Open Neuromorphic SNN-library benchmark workload, ours against the peers (CPU).

    python benchmarks/peers.py --model on-lif                      # n = 16384, B = 16, T = 500
    python benchmarks/peers.py --model on-lif --neurons 4096 --repeats 5 --peers torch,norse

**The workload** is the one of the Open Neuromorphic blog post "Spiking Neural Network (SNN)
Library Benchmarks" (G. Lenz, K. Heckel, S. B. Shrestha, C. Barker, J. E. Pedersen, 2023, last
updated 2024-02-20, https://open-neuromorphic.org/blog/spiking-neural-network-framework-benchmarking/),
whose code is in the GitHub repository ``open-neuromorphic/open-neuromorphic.github.io``, folder
``content/blog/spiking-neural-network-framework-benchmarking/docker/``: ``run_benchmark.py``
defines it and ``utils.py`` times it.  One fully connected layer ``Linear(n, n)`` (with bias)
followed by one layer of ``n`` LIF neurons; the input is ``torch.randn(n_steps, batch_size,
n_neurons)`` (``n_steps = 500``; batch 16 in the current version, 10 in the first); *forward*
is ``output = model(input)`` (the spikes, ``(T, B, n)``), *backward* is
``output.sum().backward()`` (``loss.backward(retain_graph=True)``); the input needs no gradient,
there is no optimizer step.  Sizes ``n_neurons`` in 4096, 8192, 16384 (the figures are for
16k).  ``utils.timeit`` runs one warm-up call, then at least 3 calls and at least 2 s, and the
post reports the mean forward and the mean backward time.

**What differs here, and why.**  (1) The blog's libraries each run their own neuron parameters
(snnTorch ``beta=0.95``, SpikingJelly ``tau=5`` with ATan, Norse ``tau_mem_inv=100`` ...), so
their outputs and gradients are not comparable.  Here every configuration runs *one* dynamics,
ours (``u[t] = 0.5 v[t-1] + I[t]``, ``o = H(u - 1)``, hard reset ``v = u (1 - o)`` not
detached, triangle surrogate ``max(0, 1 - |x|)``), set in each library as in ``peers.py``, and
every configuration's gradients are checked against ours before anything is timed.  (2) Every
configuration folds time into the batch for the linear layer (one GEMM of ``T*B`` rows), the
blog's SpikingJelly and Norse runs do the same; its snnTorch script calls ``fc`` once per step
(500 GEMMs of 16 rows), which only adds weight traffic.  (3) The blog's Norse entry calls a
``LIFBoxCell`` (one time step) on the whole ``(T, B, n)`` tensor, i.e. it simulates a single
step of ``T*B`` samples; here Norse's cell runs in a loop over the T steps (Norse's own
recurrent idiom).  (4) The configurations are timed *interleaved* (round-robin, as
``pysnn_ref.bench.measure.time_steps``), medians of ``--repeats`` rounds, forward and backward
apart and together, on the CPU (the blog's figures are GPU figures).

**Configurations** (weights and input shared by all; ``torch.set_num_threads`` = our Numba
thread count):

* ``ours`` -- ``pysnn_ref.nn.Sequential(Linear(n, n), LIF())``; ``forward`` then
  ``backward(ones, need_dx=False)`` (the gradient of ``sum(o)``).
* ``torch`` -- ``torch.nn.functional.linear`` and :class:`pysnn_ref.bench.torch_ref.TLIF`, the
  plain autograd loop over the steps.
* ``spikingjelly`` -- ``layer.Linear(step_mode='m')`` + ``neuron.LIFNode(tau=2,
  decay_input=False, PiecewiseQuadratic(1), detach_reset=False, step_mode='m')`` (see
  ``peers.py``: bit-equal dynamics).
* ``snntorch-nodelay`` / ``snntorch`` -- the Linear once, then ``snn.Leaky(beta=0.5,
  reset_mechanism='zero')`` per step with the triangle as custom surrogate; ``reset_delay=False``
  is our dynamics, the default ``True`` detaches the reset (compared against our
  ``detach_reset=True``).
* ``norse`` / ``norse-compile`` -- Norse 1.1's ``LIFBoxCell`` (the blog's neuron) in a loop over
  the steps, ``LIFBoxParameters(tau_mem_inv=500, v_th=1, v_reset=0, method='triangle',
  alpha=1)`` with ``dt = 0.001``: ``v' = v + 0.5 (i - v)``, spike ``H(v' - 1)`` with ``H(0) = 0``,
  reset ``(1 - z) v'`` through ``z`` (not detached), Norse's triangle ``alpha relu(1 - |x|)``.
  Its input is scaled by 2 (the layer's weight and bias are ``2 W``, ``2 b``), so that
  ``v' = 0.5 v + (W x + b)`` is our membrane (up to rounding); its gradients are then half of
  ours and are doubled before the check.  ``norse-compile`` runs the same cell under
  ``torch.compile`` (the blog compiled its Norse model).

Bad arguments and a missing peer: one line on stderr, exit code 2 (``peers.py``'s handling).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ON_SOURCE", "ON_CONFIGS", "ON_GROUPS", "OnWorkload", "run_on", "main_on"]

ON_SOURCE = ("open-neuromorphic/open-neuromorphic.github.io: content/blog/"
             "spiking-neural-network-framework-benchmarking/docker/run_benchmark.py (+ utils.py)")
#: library -> its configurations for this workload
ON_GROUPS = {
    "torch": ("torch",),
    "spikingjelly": ("spikingjelly",),
    "snntorch": ("snntorch-nodelay", "snntorch"),
    "norse": ("norse", "norse-compile"),
}
ON_CONFIGS = tuple(c for g in ON_GROUPS.values() for c in g)
ON_DESCRIPTIONS = {
    "ours": "pysnn_ref Sequential(Linear, LIF), BPTT (NumPy/Numba)",
    "torch": "F.linear + torch_ref.TLIF autograd loop",
    "spikingjelly": "layer.Linear + LIFNode step_mode='m' (CPU: torch-reference op)",
    "snntorch-nodelay": "nn.Linear + snn.Leaky loop, reset_delay=False",
    "snntorch": "nn.Linear + snn.Leaky loop, reset_delay=True (reset detached)",
    "norse": "nn.Linear (2W, 2b) + LIFBoxCell loop, method='triangle'",
    "norse-compile": "the same, the cell under torch.compile",
}
LAM, V_TH = 0.5, 1.0


class OnWorkload:
    """The shared weights and input of one workload size: ``W`` (n, n), ``b`` (n,), ``x``
    (T, B, n) float32, ours built first (its Kaiming init, seed ``seed``)."""

    def __init__(self, n: int, T: int, B: int, seed: int = 0) -> None:
        for name, v in (("neurons", n), ("T", T), ("batch", B)):
            if int(v) < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        self.n, self.T, self.B = int(n), int(T), int(B)
        self.net = self.our_net(detach_reset=False, seed=seed)
        lin = self.net.children()[0]
        self.W, self.b = lin.W.data, lin.b.data
        rng = np.random.default_rng(seed + 1)
        self.x = rng.standard_normal((T, B, n), dtype=np.float32)  # the blog's torch.randn
        self.ones = np.ones((T, B, n), np.float32)  # d sum(o) / do

    def our_net(self, detach_reset: bool, seed: int = 0) -> Any:
        from pysnn_ref import nn

        return nn.Sequential(nn.Linear(self.n, self.n, rng=np.random.default_rng(seed)),
                             nn.LIF(lam=LAM, v_th=V_TH, detach_reset=detach_reset))


# --------------------------------------------------------------------------------------------
# The configurations: forward(x) -> spikes (T, B, n), and the parameters to read gradients from
# --------------------------------------------------------------------------------------------

class OursOn:
    """Our forward and backward of ``sum(o)``; gradients in the layer's ``W.grad``/``b.grad``."""

    def __init__(self, w: OnWorkload, net: Any = None) -> None:
        self.w, self.net = w, (net if net is not None else w.net)
        if net is not None:  # a second net (detach_reset): the workload's weights copied in
            lin = net.children()[0]
            lin.W.data[...] = w.W
            lin.b.data[...] = w.b

    def step(self) -> tuple[float, float, float, float]:
        clock = time.perf_counter
        t0 = clock()
        self.net.zero_grad()
        o = self.net.forward(self.w.x)
        t1 = clock()
        self.net.backward(self.w.ones, need_dx=False)
        del o
        t2 = clock()
        return t1 - t0, t2 - t1, 0.0, t2 - t0

    def gradients(self) -> dict[str, np.ndarray]:
        self.step()
        lin = self.net.children()[0]
        return {"W": lin.W.grad.copy(), "b": lin.b.grad.copy()}

    def spikes(self) -> np.ndarray:
        return np.asarray(self.net.forward(self.w.x))


def _triangle(input_: Any, grad_input: Any, spikes: Any) -> Any:
    return grad_input * (1.0 - input_.abs()).clamp(min=0.0)


def _peer_forward(config: str, w: OnWorkload, lin: Any) -> Callable[[Any], Any]:
    """The peer's forward ``x -> spikes (T, B, n)`` around the torch linear layer ``lin``."""
    import torch

    if config == "torch":
        from pysnn_ref.bench.torch_ref import TLIF

        lif = TLIF(w.net.children()[1].p)
        return lambda x: lif(lin(x))
    if config == "spikingjelly":
        from spikingjelly.activation_based import functional, neuron, surrogate

        node = neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=V_TH, v_reset=0.0,
                              surrogate_function=surrogate.PiecewiseQuadratic(alpha=1.0),
                              detach_reset=False, step_mode="m")

        def sj(x: Any) -> Any:
            functional.reset_net(node)
            return node(lin(x))
        return sj
    if config.startswith("snntorch"):
        import snntorch as snn
        from snntorch import surrogate

        leaky = snn.Leaky(beta=LAM, threshold=V_TH, reset_mechanism="zero",
                          reset_delay=config == "snntorch",
                          spike_grad=surrogate.custom_surrogate(_triangle))

        def snt(x: Any) -> Any:
            mem = leaky.init_leaky()
            out = []
            for It in lin(x).unbind(0):
                spk, mem = leaky(It, mem)
                out.append(spk)
            return torch.stack(out)
        return snt
    from norse.torch.functional.lif_box import LIFBoxParameters
    from norse.torch.module.lif_box import LIFBoxCell

    p = LIFBoxParameters(tau_mem_inv=torch.as_tensor(500.0), v_leak=torch.as_tensor(0.0),
                         v_th=torch.as_tensor(V_TH), v_reset=torch.as_tensor(0.0),
                         method="triangle", alpha=1.0)
    cell = LIFBoxCell(p, dt=0.001)
    step = torch.compile(cell) if config == "norse-compile" else cell

    def norse(x: Any) -> Any:
        state = None
        out = []
        for It in lin(x).unbind(0):
            z, state = step(It, state)
            out.append(z)
        return torch.stack(out)
    return norse


class PeerOn:
    """One peer configuration on the workload's weights (shared memory with ours, but Norse's
    doubled copy) and input."""

    def __init__(self, config: str, w: OnWorkload, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.torch, self.config = torch, config
        self.scale = 2.0 if config.startswith("norse") else 1.0
        W, b = torch.from_numpy(w.W), torch.from_numpy(w.b)
        if self.scale != 1.0:
            W, b = W * self.scale, b * self.scale
        lin = torch.nn.Linear(w.n, w.n)
        lin.weight = torch.nn.Parameter(W)
        lin.bias = torch.nn.Parameter(b)
        self.lin = lin
        self.forward = _peer_forward(config, w, lin)
        self.x = torch.from_numpy(w.x)

    def step(self) -> tuple[float, float, float, float]:
        clock = time.perf_counter
        t0 = clock()
        self.lin.zero_grad(set_to_none=True)
        out = self.forward(self.x)
        t1 = clock()
        out.sum().backward()
        del out
        t2 = clock()
        self.lin.zero_grad(set_to_none=True)  # free the (n, n) gradient between rounds
        return t1 - t0, t2 - t1, 0.0, t2 - t0

    def gradients(self) -> dict[str, np.ndarray]:
        self.lin.zero_grad(set_to_none=True)
        self.forward(self.x).sum().backward()
        g = {"W": self.lin.weight.grad.numpy() * self.scale,
             "b": self.lin.bias.grad.numpy() * self.scale}
        self.lin.zero_grad(set_to_none=True)
        return g

    def spikes(self) -> np.ndarray:
        with self.torch.no_grad():
            return self.forward(self.x).numpy()


# --------------------------------------------------------------------------------------------
# The run: gradients checked on a small instance, then the timing at the asked size
# --------------------------------------------------------------------------------------------

def check_on(configs: Sequence[str], n: int, T: int, B: int, threads: int) -> dict[str, dict]:
    """Every configuration's ``dW``, ``db`` and spikes against ours on an ``n``-neuron instance
    of the workload (same T and B): ``grad_max_rel_diff`` (max over W, b of max|g - g_ours| /
    max|g_ours|) and ``spike_mismatches`` of ``spikes_total``."""
    from pysnn_ref.bench.torch_ref import gradient_difference

    w = OnWorkload(n, T, B)
    ours = OursOn(w)
    ref, ref_spikes = ours.gradients(), ours.spikes()
    detached = None
    out = {}
    for c in configs:
        peer = PeerOn(c, w, threads)
        t0 = time.perf_counter()
        g = peer.gradients()
        first = time.perf_counter() - t0
        s = peer.spikes()
        rec = {"grad_max_rel_diff": gradient_difference(g, ref)[0],
               "spike_mismatches": int(np.count_nonzero(s != ref_spikes)),
               "spikes_total": int(s.size), "check_first_call_s": first}
        if c == "snntorch":  # reset detached: the reference is ours with detach_reset=True
            if detached is None:
                detached = OursOn(w, w.our_net(detach_reset=True)).gradients()
            rec["grad_max_rel_diff_vs_detach_reset"] = gradient_difference(g, detached)[0]
        out[c] = rec
        del peer
    return out


def run_on(configs: Sequence[str], n: int, T: int, B: int, warmup: int, repeats: int,
           check_neurons: int, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Check (at ``check_neurons``), then time every configuration interleaved at ``n``;
    one record per configuration, ours first, with ``ours_over_peer``."""
    from pysnn_ref.bench.measure import blas_threads, thread_count, time_steps

    threads = thread_count()
    common = {"workload": "open-neuromorphic Linear+LIF", "source": ON_SOURCE, "neurons": n,
              "T": T, "batch": B, "dtype": "float32", "threads": threads,
              "blas_threads": blas_threads(), "warmup": warmup, "repeats": repeats,
              "check_neurons": check_neurons}
    log(f"on-lif: Linear({n},{n}) + LIF, T={T} batch={B} float32, forward + backward of "
        f"sum(spikes); threads={threads} blas_threads={common['blas_threads']}; gradients "
        f"checked at n={check_neurons}; warmup={warmup} repeats={repeats} (medians, "
        f"interleaved); workload: {ON_SOURCE}")
    checks = check_on(configs, check_neurons, T, B, threads)
    w = OnWorkload(n, T, B)
    runners: dict[str, Any] = {"ours": OursOn(w)}
    for c in configs:
        runners[c] = PeerOn(c, w, threads)
    timings = time_steps({k: r.step for k, r in runners.items()}, warmup, repeats)
    records = []
    for name in runners:
        rec = {**common, "config": name, "description": ON_DESCRIPTIONS[name],
               **timings[name], **checks.get(name, {})}
        if name != "ours":
            rec["ours_over_peer"] = timings["ours"]["step_s"] / rec["step_s"]
        records.append(rec)
    return records


def format_on(records: Sequence[dict[str, Any]]) -> str:
    """The table and one summary line per peer."""
    cols = (f"{'config':<18}{'fwd+bwd s':>10}{'min s':>8}{'fwd s':>8}{'bwd s':>8}{'1st s':>8}"
            f"{'grad diff':>11}  spikes differ")
    lines = [cols, "-" * len(cols)]
    for r in records:
        g = r.get("grad_max_rel_diff")
        sp = "-" if "spikes_total" not in r else f"{r['spike_mismatches']} / {r['spikes_total']}"
        lines.append(f"{r['config']:<18}{r['step_s']:>10.3f}{r['step_min_s']:>8.3f}"
                     f"{r['forward_s']:>8.3f}{r['backward_s']:>8.3f}{r['first_step_s']:>8.3f}"
                     f"{'-' if g is None else f'{g:.1e}':>11}  {sp}")
    lines.append("grad diff = max over W, b of max|g_peer - g_ours| / max|g_ours| (checked at "
                 f"n={records[0]['check_neurons']}); 1st = first (untimed) call")
    lines += [f"  {r['config']:<18}{r['description']}" for r in records]
    for r in records[1:]:
        lines.append(f"ours / {r['config']} = {r['ours_over_peer']:.2f} "
                     f"({records[0]['step_s']:.3f} s vs {r['step_s']:.3f} s)")
        if "grad_max_rel_diff_vs_detach_reset" in r:
            lines.append(f"  {r['config']}: grad diff vs ours with detach_reset=True = "
                         f"{r['grad_max_rel_diff_vs_detach_reset']:.1e}")
    return "\n".join(lines)


def main_on(args: Any, select_configs: Callable, import_peer: Callable) -> int:
    """``peers.py --model on-lif``: validate, check, time and print (``select_configs`` and
    ``import_peer`` are peers.py's)."""
    configs = select_configs(args.peers or "torch,spikingjelly,snntorch,norse", ON_GROUPS)
    for name, v in (("neurons", args.neurons), ("check-neurons", args.check_neurons),
                    ("repeats", args.repeats), ("warmup", args.warmup)):
        if v < 1:
            raise ValueError(f"--{name} must be >= 1, got {v}")
    for lib in dict.fromkeys(["torch", *(g for g, cs in ON_GROUPS.items()
                                         if set(cs) & set(configs))]):
        import_peer(lib)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    records = run_on(configs, args.neurons, args.T or 500, args.batch_size or 16, args.warmup,
                     args.repeats, args.check_neurons, log=lambda s: print(s, flush=True))
    print(format_on(records))
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0

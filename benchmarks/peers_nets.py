"""The peers' networks for ``benchmarks/peers.py``: our benchmark network rebuilt in SpikingJelly
2.0.0, snnTorch 1.0.0 and :mod:`pysnn_ref.bench.torch_ref`, with our weights copied in.

Each builder returns ``(modules, forward, weighted)``: the ``torch.nn.Module`` holding
everything, ``forward(x) -> (T, B, classes)`` and the weighted layers in the order of our
``named_parameters`` (for :func:`copy_weights`).  ``static=True`` (direct input): ``x`` is the
image batch ``(B, C, H, W)``, the same at every step, and the first layer runs once on it, its
output reused at all T steps.  ``static=False`` (Poisson input): ``x`` is a time-major spike
tensor ``(T, B, C, H, W)`` and the first layer runs on all ``T * B`` rows -- SpikingJelly's
first conv / linear in ``step_mode='m'``, snnTorch's first layer inside its per-step loop,
``torch_ref`` with ``static_input=False`` (:func:`torch_ref_net`, which returns the parameter
dict instead).  :class:`PeerRunner` steps one such configuration.  The dynamics each peer is set
to, and why they equal ours, are in ``peers.py``'s docstring.  Imported by path from
``peers.py`` (a script folder, not a package); torch and the peers are imported only inside the
functions.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

LAM, V_TH, SJ_TAU = 0.5, 1.0, 2.0  # SpikingJelly: decay_input=False -> V - V/tau + X = 0.5 V + X


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


def spikingjelly_net(model: str, T: int, static: bool = True
                     ) -> tuple[Any, Callable, list[Any]]:
    """SpikingJelly ``layer.*`` + ``neuron.LIFNode`` (multi-step); the first layer in
    ``step_mode='s'`` once on the static batch, or ``'m'`` on the (T, B, ...) spikes."""
    import torch
    from spikingjelly.activation_based import layer, neuron, surrogate

    def lif() -> Any:
        return neuron.LIFNode(tau=SJ_TAU, decay_input=False, v_threshold=V_TH, v_reset=0.0,
                              surrogate_function=surrogate.PiecewiseQuadratic(alpha=1.0),
                              detach_reset=False, step_mode="m")

    m, m1 = "m", ("s" if static else "m")
    if model == "convnet":
        c1 = layer.Conv2d(1, 16, 3, padding=1, step_mode=m1)
        c2 = layer.Conv2d(16, 32, 3, padding=1, step_mode=m)
        fc = layer.Linear(1568, 10, step_mode=m)
        first = c1
        body = torch.nn.Sequential(lif(), layer.AvgPool2d(2, step_mode=m), c2, lif(),
                                   layer.AvgPool2d(2, step_mode=m), layer.Flatten(step_mode=m),
                                   fc)
        weighted = [c1, c2, fc]
    else:
        fc1, fc2 = layer.Linear(784, 800, step_mode=m1), layer.Linear(800, 10, step_mode=m)
        first = torch.nn.Sequential(layer.Flatten(step_mode=m1), fc1)
        body = torch.nn.Sequential(lif(), fc2)
        weighted = [fc1, fc2]

    def forward(x: Any) -> Any:
        h = first(x)
        return body(h.unsqueeze(0).expand(T, *h.shape) if static else h)

    return torch.nn.ModuleList([first, body]), forward, weighted


def triangle_surrogate(input_: Any, grad_input: Any, spikes: Any) -> Any:
    """Our triangle with a = 1, ``max(0, 1 - |x|)``, in snnTorch's custom-surrogate signature."""
    return grad_input * (1.0 - input_.abs()).clamp(min=0.0)


def snntorch_net(model: str, T: int, reset_delay: bool, static: bool = True
                 ) -> tuple[Any, Callable, list[Any]]:
    """snnTorch's per-time-step loop; the first layer computed once outside it (static batch)
    or on ``x[t]`` inside it (the (T, B, ...) spikes, snnTorch's tutorials' idiom)."""
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
            cur1 = c1(x) if static else None
            out = []
            for t in range(T):
                spk1, mem1 = lif1(cur1 if static else c1(x[t]), mem1)
                spk2, mem2 = lif2(c2(pool(spk1)), mem2)
                out.append(fc(pool(spk2).flatten(1)))
            return torch.stack(out)

        return nn.ModuleList([c1, lif1, c2, lif2, fc]), forward, [c1, c2, fc]
    fc1, fc2, lif1 = nn.Linear(784, 800), nn.Linear(800, 10), leaky()

    def forward_mlp(x: Any) -> Any:
        mem1 = lif1.init_leaky()
        cur1 = fc1(x.flatten(1)) if static else None
        out = []
        for t in range(T):
            spk1, mem1 = lif1(cur1 if static else fc1(x[t].flatten(1)), mem1)
            out.append(fc2(spk1))
        return torch.stack(out)

    return nn.ModuleList([fc1, lif1, fc2]), forward_mlp, [fc1, fc2]


def torch_ref_net(net: Any) -> tuple[Any, Callable, dict[str, Any]]:
    """:mod:`pysnn_ref.bench.torch_ref`'s network of ``net`` (its weights copied) run on a
    time-major input (``static_input=False``: the first layer on all T * B rows); returns
    ``(module, forward, {our parameter name: torch Parameter})``."""
    from pysnn_ref.bench import torch_ref

    tnet = torch_ref.build_torch_net(net, static_input=False)
    return tnet, tnet, tnet.params


# --------------------------------------------------------------------------------------------
# One peer configuration, ready to step
# --------------------------------------------------------------------------------------------

class PeerRunner:
    """A peer's network, its SGD and the batch: ``step()`` times one training step as
    :class:`pysnn_ref.bench.measure.TorchRunner` does.  ``inputs``: the (T, B, ...) Poisson
    spikes every configuration gets (None: the static synthetic batch, direct input)."""

    def __init__(self, config: str, b: argparse.Namespace, threads: int,
                 inputs: np.ndarray | None = None) -> None:
        import torch

        from pysnn_ref.bench.measure import build_model, synthetic_batch

        torch.set_num_threads(threads)
        self.torch, static = torch, inputs is None
        net = build_model(b.model, b.input_shape, b.classes, seed=b.seed)  # our fresh weights
        self.reset: Callable[[], None] | None = None
        if config == "torch":  # Poisson input only (direct: measure.TorchRunner)
            from pysnn_ref.bench.torch_ref import TLIF

            self.modules, forward, self.params = torch_ref_net(net)
            self.spiking_type: Any = TLIF
        elif config.startswith("spikingjelly"):
            from spikingjelly.activation_based import functional, neuron

            self.modules, forward, weighted = spikingjelly_net(b.model, b.T[0], static)
            self.reset = lambda: functional.reset_net(self.modules)
            self.spiking_type = neuron.LIFNode
        else:
            import snntorch as snn

            self.modules, forward, weighted = snntorch_net(
                b.model, b.T[0], reset_delay=config == "snntorch", static=static)
            self.spiking_type = snn.Leaky
        if config != "torch":
            self.params = copy_weights(net, weighted)
        self.compiled = config.endswith("-compile")
        if self.compiled:
            import torch._inductor.config as inductor_config

            inductor_config.compile_threads = 1  # no compile-worker pool on a shared machine
            forward = torch.compile(forward)
        self.forward = forward
        self.opt = torch.optim.SGD(list(self.params.values()), lr=b.lr, momentum=0.9)
        x, labels = synthetic_batch(b.batch_size, b.input_shape, b.classes, np.float32, b.seed)
        self.x = torch.from_numpy(x if static else inputs)
        self.labels = torch.from_numpy(labels)

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

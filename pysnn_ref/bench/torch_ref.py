"""The same network in PyTorch: the autograd baseline that ``bench --vs-torch`` compares against.

PyTorch is **not** a dependency of pysnn_ref: this module is imported only when a comparison is
asked for (``python -m pysnn_ref.bench --vs-torch``, ``tests/test_vs_torch.py``), and raises a
one-line ``ValueError`` if ``torch`` is not importable.

:func:`build_torch_net` walks a :class:`pysnn_ref.nn.Sequential` and builds the same layers as
``torch.nn.Module`` s, with the same weights (copied), time-major ``(T, B, ...)`` like ours:

========================  ==================================================================
ours                      PyTorch
========================  ==================================================================
Linear                    ``F.linear`` on ``(T, B, F)`` (one GEMM for all steps)
Conv2d                    ``F.conv2d`` on time folded into batch ``(T*B, C, H, W)``
BatchNorm (BN / tdBN)     ``F.batch_norm`` on ``(T*B, C, ...)`` with weight ``gamma*scale``
                          (tdBN, Dspike Eqs. 4-5: ``y = gamma * alpha * v_th * x_hat + beta``)
AvgPool2d / MaxPool2d     ``F.avg_pool2d`` / ``F.max_pool2d`` on ``(T*B, C, H, W)``
Flatten                   ``x.flatten(2)``
Residual                  ``main(x) + shortcut(x)``
LIF / IF                  a Python loop over t, the spike a ``torch.autograd.Function``
                          (:class:`SpikeFunction`): Heaviside forward, our surrogate's gradient
                          backward; in smooth mode the forward is the surrogate's primitive,
                          written with differentiable torch ops (autograd differentiates it)
========================  ==================================================================

The LIF loop is SSF Eqs. 6-7 / 16-17 exactly as :mod:`pysnn_ref.functional.neuron` states them,
``u[t] = lam * v[t-1] + I[t]``, ``o[t] = H(u[t] - v_th)``, hard reset ``v[t] = u[t] (1 - o[t])``,
soft reset ``v[t] = u[t] - v_th o[t]``; ``detach_reset`` detaches the spike in the reset term.
Autograd through this loop is the exact BPTT recurrence our hand-written backward implements,
so the gradients must agree to rounding (float64 smooth mode) -- the check
:func:`gradient_difference` makes.

**Static input (direct encoding).** With a time-broadcast input the leading weight / pooling
layers (those before the first spiking or batch-norm layer) see the same tensor at every step.
Like our stride-0 fast path, and like SpikingJelly's examples (a "static" first conv whose
output is repeated over T), the reference runs them once on ``(1, B, ...)`` and expands the
result to T steps (``expand``: no copy; autograd sums the T gradients).  Pass
``static_input=False`` to run them T times.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import nn as snn
from ..backend import array_module, to_numpy
from ..data import make_encoder
from ..kernels.reference import SURROGATE_KINDS

try:  # pragma: no cover - exercised only where torch is installed
    import torch
    import torch.nn.functional as TF
except ImportError:  # pragma: no cover
    torch = None
    TF = None

__all__ = ["require_torch", "SpikeFunction", "surrogate_grad", "surrogate_primitive",
           "build_torch_net", "TorchNet", "torch_loss", "torch_gradients", "gradient_difference",
           "compare_spikes", "torch_dtype"]

RECT, TRI, SIG, ATAN, DSPIKE = (SURROGATE_KINDS[k] for k in
                                ("rectangular", "triangle", "sigmoid", "atan", "dspike"))


def require_torch() -> Any:
    """The ``torch`` module, or a one-line ``ValueError`` saying how to get it."""
    if torch is None:
        raise ValueError("--vs-torch needs PyTorch (torch), which is not importable here; it is "
                         "not a dependency of pysnn_ref -- install it in a separate venv "
                         "(pip install torch) together with pysnn_ref")
    return torch


def torch_dtype(dtype: Any) -> Any:
    """The torch dtype of a NumPy float dtype."""
    require_torch()
    return {np.dtype(np.float32): torch.float32,
            np.dtype(np.float64): torch.float64}[np.dtype(dtype)]


# --------------------------------------------------------------------------------------------
# Surrogates: the formulas of pysnn_ref.kernels.reference (Sec. 1), elementwise in torch.
# --------------------------------------------------------------------------------------------

def surrogate_grad(x: Any, kind: int, a: float) -> Any:
    """sigma'(x) of surrogate ``kind`` with parameter ``a`` (reference.surrogate_grad_scalar)."""
    if kind == RECT:
        return (x.abs() < 0.5 * a).to(x.dtype) / a
    if kind == TRI:
        return (a - x.abs()).clamp(min=0.0) / (a * a)
    if kind == SIG:
        s = torch.sigmoid(a * x)
        return a * s * (1.0 - s)
    if kind == ATAN:
        z = 0.5 * math.pi * a * x
        return 0.5 * a / (1.0 + z * z)
    if kind == DSPIKE:
        th = torch.tanh(a * x)
        g = a * (1.0 - th * th) / (2.0 * math.tanh(0.5 * a))
        return torch.where(x.abs() > 0.5, torch.zeros_like(x), g)
    raise ValueError(f"unknown surrogate kind {kind!r}")


def surrogate_primitive(x: Any, kind: int, a: float) -> Any:
    """sigma(x), the smooth-mode spike, as differentiable torch ops
    (reference.surrogate_primitive_scalar)."""
    if kind == RECT:
        return (x / a + 0.5).clamp(0.0, 1.0)
    if kind == TRI:
        lo = (x + a) ** 2 / (2.0 * a * a)
        hi = 1.0 - (a - x) ** 2 / (2.0 * a * a)
        mid = torch.where(x < 0.0, lo, hi)
        return torch.where(x <= -a, torch.zeros_like(x), torch.where(x >= a, torch.ones_like(x),
                                                                     mid))
    if kind == SIG:
        return torch.sigmoid(a * x)
    if kind == ATAN:
        return torch.atan(0.5 * math.pi * a * x) / math.pi + 0.5
    if kind == DSPIKE:
        t2 = math.tanh(0.5 * a)
        mid = (torch.tanh(a * x) + t2) / (2.0 * t2)
        return torch.where(x < -0.5, torch.zeros_like(x), torch.where(x > 0.5,
                                                                      torch.ones_like(x), mid))
    raise ValueError(f"unknown surrogate kind {kind!r}")


if torch is not None:

    class SpikeFunction(torch.autograd.Function):
        """o = H(x) with H(0) = 1 forward; dL/dx = dL/do * sigma'(x) backward."""

        @staticmethod
        def forward(ctx, x, kind, a):  # type: ignore[override]
            ctx.save_for_backward(x)
            ctx.kind, ctx.a = kind, a
            return (x >= 0).to(x.dtype)

        @staticmethod
        def backward(ctx, grad_out):  # type: ignore[override]
            (x,) = ctx.saved_tensors
            return grad_out * surrogate_grad(x, ctx.kind, ctx.a), None, None

    _Module = torch.nn.Module
else:  # pragma: no cover
    SpikeFunction = None  # type: ignore[assignment]
    _Module = object  # type: ignore[assignment,misc]


# --------------------------------------------------------------------------------------------
# Layers (time-major (T, B, ...)).
# --------------------------------------------------------------------------------------------

def _fold(x):
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def _unfold(y, T):
    return y.reshape(T, y.shape[0] // T, *y.shape[1:])


class TLinear(_Module):
    def __init__(self, W, b):
        super().__init__()
        self.W, self.b = W, b

    def forward(self, x):
        return TF.linear(x, self.W, self.b)


class TConv2d(_Module):
    def __init__(self, W, b, stride, padding):
        super().__init__()
        self.W, self.b, self.stride, self.padding = W, b, stride, padding

    def forward(self, x):
        y = TF.conv2d(_fold(x), self.W, self.b, stride=self.stride, padding=self.padding)
        return _unfold(y, x.shape[0])


class TBatchNorm(_Module):
    """Batch norm over time x batch (x space) per channel; tdBN multiplies gamma by scale."""

    def __init__(self, gamma, beta, running_mean, running_var, momentum, eps, scale):
        super().__init__()
        self.gamma, self.beta = gamma, beta
        self.register_buffer("running_mean", running_mean)
        self.register_buffer("running_var", running_var)
        self.momentum, self.eps, self.scale = momentum, eps, scale

    def forward(self, x):
        w = self.gamma * self.scale if self.scale != 1.0 else self.gamma
        y = TF.batch_norm(_fold(x), self.running_mean, self.running_var, w, self.beta,
                          training=self.training, momentum=self.momentum, eps=self.eps)
        return _unfold(y, x.shape[0])


class TPool(_Module):
    def __init__(self, kind, k, stride):
        super().__init__()
        self.kind, self.k, self.stride = kind, k, stride if stride is not None else k

    def forward(self, x):
        f = TF.avg_pool2d if self.kind == "avg" else TF.max_pool2d
        return _unfold(f(_fold(x), self.k, self.stride), x.shape[0])


class TFlatten(_Module):
    def forward(self, x):
        return x.flatten(2)


class TLIF(_Module):
    """LIF/IF neurons over time (SSF Eqs. 6-7, 16-17), autograd through the loop."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, I):
        p = self.p
        lam, v_th, kind, a = p.lam, p.v_th, p.surrogate.kind, p.surrogate.a
        v = None
        out = []
        # unbind, not I[t]: the backward of each I[t] writes its gradient into a zero tensor of
        # I's full (T, ...) shape, T such tensors per step -- O(T^2) memory traffic, which made
        # this baseline 4x slower at T = 20 (866 vs 207 ms for the conv net) and superlinear in T
        for It in I.unbind(0):
            u = It if v is None else (v if lam == 1.0 else lam * v) + It
            x = u - v_th
            o = surrogate_primitive(x, kind, a) if p.smooth else SpikeFunction.apply(x, kind, a)
            o_r = o.detach() if p.detach_reset else o
            v = u - v_th * o_r if p.soft else u * (1.0 - o_r)
            out.append(o)
        return torch.stack(out)


class TSequential(_Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = torch.nn.ModuleList(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class TResidual(_Module):
    def __init__(self, main, shortcut):
        super().__init__()
        self.main, self.shortcut = main, shortcut

    def forward(self, x):
        return self.main(x) + (x if self.shortcut is None else self.shortcut(x))


class TorchNet(_Module):
    """The converted network: ``forward(x, T)`` with ``x`` either time-major ``(T, B, ...)`` or,
    for direct encoding, a static ``(B, ...)`` batch presented at every step.

    ``params``: ``{name: torch Parameter}`` under the names of
    :meth:`pysnn_ref.nn.Module.named_parameters` of the source network.
    """

    def __init__(self, body, params, static_input):
        super().__init__()
        self.body = body
        self.params = params  # the same Parameter objects the layers hold
        self.static_input = static_input
        layers = list(body.layers)
        n = 0
        if static_input:
            while n < len(layers) and isinstance(layers[n], (TLinear, TConv2d, TPool, TFlatten)):
                n += 1
        self.n_static = n

    def forward(self, x, T=None):
        if T is None:  # already time-major
            return self.body(x)
        h = x[None]
        layers = list(self.body.layers)
        for layer in layers[:self.n_static]:
            h = layer(h)
        h = h.expand(T, *h.shape[1:])
        for layer in layers[self.n_static:]:
            h = layer(h)
        return h


def build_torch_net(net: Any, *, static_input: bool = True, device: str = "cpu") -> Any:
    """A :class:`TorchNet` computing what ``net`` computes, with copies of its weights, on
    torch device ``device`` ("cpu" or "cuda")."""
    require_torch()
    named = net.named_parameters()
    by_id = {id(p): name for name, p in named.items()}
    params: dict[str, Any] = {}

    def param(p):
        if p is None:
            return None
        t = torch.nn.Parameter(torch.from_numpy(np.array(to_numpy(p.data), copy=True)).to(device))
        params[by_id[id(p)]] = t
        return t

    def convert(m):
        if isinstance(m, snn.Sequential):
            return TSequential([convert(c) for c in m.layers])
        if isinstance(m, snn.Residual):
            sc = None if m.shortcut is None else convert(m.shortcut)
            return TResidual(convert(m.main), sc)
        if isinstance(m, snn.Linear):
            return TLinear(param(m.W), param(m.b))
        if isinstance(m, snn.Conv2d):
            return TConv2d(param(m.W), param(m.b), m.stride, m.padding)
        if isinstance(m, snn.BatchNorm):
            bn = TBatchNorm(param(m.gamma), param(m.beta),
                            torch.from_numpy(np.array(to_numpy(m.running_mean))).to(device),
                            torch.from_numpy(np.array(to_numpy(m.running_var))).to(device),
                            m.momentum, m.eps, m.scale)
            bn.train(m.training)
            return bn
        if isinstance(m, snn.AvgPool2d):
            return TPool("avg", m.k, m.stride)
        if isinstance(m, snn.MaxPool2d):
            return TPool("max", m.k, m.stride)
        if isinstance(m, snn.Flatten):
            return TFlatten()
        if isinstance(m, snn.LIF):
            return TLIF(m.p)
        raise ValueError(f"torch_ref: no PyTorch equivalent for layer {type(m).__name__}")

    if not isinstance(net, snn.Sequential):
        raise ValueError(f"net must be a pysnn_ref.nn.Sequential, got {type(net).__name__}")
    body = convert(net)
    tnet = TorchNet(body, {k: params[k] for k in named if k in params}, static_input)
    tnet.train(net.training)
    return tnet


# --------------------------------------------------------------------------------------------
# Losses (pysnn_ref.functional.loss, same reductions).
# --------------------------------------------------------------------------------------------

def torch_loss(name: str, y: Any, labels: Any, *, tet_lam: float = 0.05, phi: float = 1.0,
               v_th: float = 1.0) -> Any:
    """``"sdt"`` (TET Eq. 7), ``"tet"`` (TET Eqs. 9, 12, 13) or ``"asf-mse"`` (ASF Eq. 6)."""
    T, B, C = y.shape
    if name == "sdt":
        return TF.cross_entropy(y.mean(0), labels)
    if name == "tet":
        l_tet = TF.cross_entropy(y.reshape(T * B, C), labels.repeat(T))
        return (1.0 - tet_lam) * l_tet + tet_lam * ((y - phi) ** 2).mean()
    if name == "asf-mse":
        onehot = TF.one_hot(labels, C).to(y.dtype)
        err = y.sum(0) / (T * v_th) - onehot
        return 0.5 * (err * err).sum() / B
    raise ValueError(f"loss must be one of ('sdt', 'tet', 'asf-mse'), got {name!r}")


def torch_gradients(tnet: Any, x: np.ndarray, labels: np.ndarray, T: int, loss: str = "sdt",
                    static: bool = True) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
    """Loss, every parameter's gradient (NumPy, by our parameter names) and the output."""
    require_torch()
    for p in tnet.parameters():
        p.grad = None
    dev = next(tnet.parameters()).device
    xt = torch.from_numpy(np.ascontiguousarray(x)).to(dev)
    y = tnet(xt, T) if static else tnet(xt)
    L = torch_loss(loss, y, torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(dev))
    L.backward()
    grads = {k: (p.grad.detach().cpu().numpy().copy() if p.grad is not None
                 else np.zeros(tuple(p.shape))) for k, p in tnet.params.items()}
    return float(L.detach()), grads, y.detach().cpu().numpy()


def gradient_difference(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]
                        ) -> tuple[float, str]:
    """Max over parameters of ``max|g_ours - g_torch| / max|g_torch|`` (the difference relative
    to the parameter's largest gradient entry), and the parameter where it is largest."""
    worst, where = 0.0, ""
    for k, b in theirs.items():
        a = np.asarray(ours[k], dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        d = float(np.max(np.abs(a - b))) if b.size else 0.0
        r = d / scale if scale > 0 else d
        if r >= worst:
            worst, where = r, k
    return worst, where


def compare_spikes(net: Any, tnet: Any, x: np.ndarray, T: int) -> tuple[int, int]:
    """Run both networks forward on the static batch ``x`` for ``T`` steps and count the spikes
    that differ, over every LIF layer: ``(n_different, n_total)``.

    In float32 the two sides compute the same sums in a different order, so a membrane within
    rounding of the threshold may fire on one side only; each such flip changes the gradients
    by far more than rounding, which is why the float32 gradient comparison reports it.
    """
    require_torch()

    with snn.SpikeMonitor(net) as monitor:
        params = list(net.named_parameters().values())
        xp = array_module(params[0].data) if params else np
        net.forward(make_encoder("direct").encode(xp.asarray(x), T))
    ours = monitor.spikes
    theirs: list[np.ndarray] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: theirs.append(o.detach().cpu().numpy()))
             for m in tnet.modules() if isinstance(m, TLIF)]
    try:
        dev = next(tnet.parameters()).device
        with torch.no_grad():
            tnet(torch.from_numpy(np.ascontiguousarray(x)).to(dev), T)
    finally:
        for h in hooks:
            h.remove()
    if len(ours) != len(theirs):
        raise ValueError(f"compare_spikes: {len(ours)} spiking layers in net but {len(theirs)} "
                         "in the torch net")
    diff = sum(int(np.count_nonzero(a != b)) for a, b in zip(ours, theirs, strict=True))
    return diff, sum(int(a.size) for a in ours)

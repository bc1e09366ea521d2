"""Whole-network gradients: a method's weight gradients (:func:`method_gradients`), the
finite-difference gradient of the true spiking loss (:func:`finite_difference_gradient`, Dspike
Sec. 4.2 Eq. 10), and the network gradient checks (:func:`network_gradcheck_cases`: BPTT through
small networks in smooth mode, float64, vs finite differences).

Spikes are step functions, so spiking layers are checked in *smooth mode* (the forward spike
is the surrogate's primitive), where the hand-written BPTT backward is the exact gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import nn
from ..backend import get_backend, to_numpy
from ..functional import loss as L
from ..functional.loss import sdt_loss_backward, sdt_loss_forward
from ..methods import Method, make_method
from ..nn import LIF
from .finite_diff import numerical_gradient, rel_error

__all__ = ["PreservedState", "encode_once", "method_gradients", "finite_difference_gradient",
           "network_gradcheck_cases"]


# --------------------------------------------------------------------------------------------
# Whole-network comparisons: a method's weight gradients vs BPTT's, or vs the finite-difference
# gradient (FDG) of the true spiking loss (Dspike Sec. 4.2, Eq. 10).
# --------------------------------------------------------------------------------------------

def _loss_fns(loss: Any):
    """``(forward, backward)`` of a loss given by name, or the pair itself."""
    if isinstance(loss, tuple):
        return loss
    return L.loss_pair(loss)


class PreservedState:
    """Context manager: restore every buffer (BN running statistics) and every spiking layer's
    ASF scale-factor state after measuring gradients, so a measurement does not train the
    network.  ``with PreservedState(net): ...``"""

    def __init__(self, net: nn.Module) -> None:
        self.net = net

    def __enter__(self) -> nn.Module:
        self.buffers = [(m, n, getattr(m, n).copy()) for m in self.net.modules()
                        for n in m.buffer_names()]
        self.asf = [(m, m.asf_state()) for m in self.net.modules() if isinstance(m, LIF)]
        return self.net

    def __exit__(self, *exc: object) -> None:
        for m, n, val in self.buffers:
            getattr(m, n)[...] = val
        for m, state in self.asf:
            m.load_asf_state(**state)


def encode_once(x: Any, T: int | None, encoder: Any) -> tuple[Any, None]:
    """Encode a static batch once, so repeated forward passes see the same (Poisson) spikes."""
    if encoder is None:
        return x, None
    return encoder.encode(x, T), None


def method_gradients(net: nn.Module, method: str | Method, x: Any, labels: Any, *,
                     loss: Any = "sdt", T: int | None = None,
                     encoder: Any = None) -> tuple[float, dict[str, np.ndarray]]:
    """Loss and every parameter's gradient under ``method`` (a name or a Method; a name is
    made with ``loss`` when that is a loss name, so a per-step loss gets its exact output layer).

    The network's buffers and ASF state are restored afterwards (:class:`PreservedState`)."""
    # a loss given by name reaches the method (a per-step loss: the exact output layer)
    m = method if isinstance(method, Method) else make_method(
        method, **({"loss": loss} if isinstance(loss, str) and method != "bptt" else {}))
    fwd, bwd = _loss_fns(loss)
    x, encoder = encode_once(x, T, encoder)
    with PreservedState(net):
        net.zero_grad()
        y = m.forward(net, x)
        value, cache = fwd(y, labels)
        m.backward(net, bwd(cache))
        grads = {k: p.grad.copy() for k, p in net.named_parameters().items()}
    return float(value), grads


def finite_difference_gradient(net: nn.Module, x: Any, labels: Any, params: list[str], *,
                               loss: Any = "sdt", T: int | None = None, encoder: Any = None,
                               eps: float = 0.1,
                               indices: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """FDG (Dspike Eq. 10): (L(w + eps e_i) - L(w - eps e_i)) / 2 eps for every element of the
    named parameters, with the true spiking (Heaviside) forward.

    ``indices`` (optional, ``{name: flat indices}``) limits the check to those elements (the
    others stay 0), since each element costs two forward passes.  The input is encoded once, so
    a Poisson encoder does not turn the differences into noise, and the network's buffers and
    ASF state are restored afterwards.
    """
    m = make_method("bptt")
    fwd, _ = _loss_fns(loss)
    named = net.named_parameters()
    x, _ = encode_once(x, T, encoder)
    out = {}
    with PreservedState(net):
        for name in params:
            w = named[name].data
            g = np.zeros(w.shape)
            flat = w.reshape(-1)
            idx = range(flat.size) if indices is None or name not in indices else indices[name]
            for i in idx:
                old = flat[i].copy()  # CuPy's flat[i] is a 0-d VIEW: it would follow flat[i]
                flat[i] = old + eps
                lp = fwd(m.forward(net, x), labels)[0]
                flat[i] = old - eps
                lm = fwd(m.forward(net, x), labels)[0]
                flat[i] = old
                g.reshape(-1)[i] = float(lp - lm) / (2 * eps)  # a device loss: read here
            out[name] = g
    return out


# --------------------------------------------------------------------------------------------
# A small whole network: conv -> tdBN -> LIF -> avg-pool -> linear, loss on the time average.
# --------------------------------------------------------------------------------------------

def network_gradcheck_cases(device: str = "cpu", T: int = 4,
                            seed: int = 0) -> list[tuple[str, str, float]]:
    """BPTT through a small conv network in smooth mode vs finite differences, per parameter
    (and the input).  Analytic gradients on ``device``, finite differences on the CPU."""
    rng = np.random.default_rng(seed)
    rows = []
    for reset in ("hard", "soft"):
        net = nn.Sequential(
            # no conv bias: BN removes it, so its true gradient is 0 and only round-off is left
            nn.Conv2d(2, 3, 3, padding=1, bias=False, rng=rng, dtype=np.float64),
            nn.BatchNorm(3, alpha=1.0, v_th=1.0, dtype=np.float64),
            nn.LIF(lam=0.8, v_th=1.0, reset=reset, surrogate="sigmoid", smooth=True),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(3 * 2 * 2, 5, rng=rng, dtype=np.float64),
        )
        x = rng.normal(0.5, 1.0, (T, 3, 2, 4, 4))
        labels = rng.integers(0, 5, 3)
        named = net.named_parameters()

        def loss(net=net, x=x, labels=labels):
            return sdt_loss_forward(net.forward(x), labels)[0]

        numeric = {k: numerical_gradient(loss, p.data) for k, p in named.items()}
        numeric["x"] = numerical_gradient(loss, x)
        be = get_backend(device)
        net.to(device)
        net.zero_grad()
        _, cache = sdt_loss_forward(net.forward(be.asarray(x)), be.asarray(labels))
        dx = net.backward(sdt_loss_backward(cache))
        case = f"network conv-tdBN-LIF({reset})-avgpool-linear T={T}"
        for k, p in net.named_parameters().items():
            rows.append((case, k, rel_error(to_numpy(p.grad), numeric[k])))
        rows.append((case, "x", rel_error(to_numpy(dx), numeric["x"])))
        net.to("cpu")
    return rows + _static_input_network_rows(device, T, rng)


def _static_input_network_rows(device: str, T: int, rng: np.random.Generator
                               ) -> list[tuple[str, str, float]]:
    """Direct encoding (one image broadcast over T steps) and no input gradient: the first
    weight layer's gradient comes from the time sum that the LIF above hands down
    (``nn.Sequential``'s time-summed backward), through LIF + pooling fused and a plain LIF."""
    def lif():
        return nn.LIF(lam=0.7, v_th=1.0, surrogate="sigmoid", smooth=True)

    nets = {
        "conv-LIF-avgpool-linear": nn.Sequential(
            nn.Conv2d(2, 3, 3, padding=1, rng=rng, dtype=np.float64), lif(), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(3 * 2 * 2, 5, rng=rng, dtype=np.float64)),
        "linear-LIF-linear": nn.Sequential(
            nn.Flatten(), nn.Linear(2 * 4 * 4, 6, rng=rng, dtype=np.float64), lif(),
            nn.Linear(6, 5, rng=rng, dtype=np.float64)),
    }
    x = np.broadcast_to(rng.normal(0.5, 1.0, (3, 2, 4, 4)), (T, 3, 2, 4, 4))
    labels = rng.integers(0, 5, 3)
    rows = []
    be = get_backend(device)
    for name, net in nets.items():
        named = net.named_parameters()

        def loss(net=net):
            return sdt_loss_forward(net.forward(x), labels)[0]

        numeric = {k: numerical_gradient(loss, p.data) for k, p in named.items()}
        net.to(device)
        net.zero_grad()
        xd = be.asarray(x[0])
        _, cache = sdt_loss_forward(net.forward(be.xp.broadcast_to(xd, x.shape)),
                                    be.asarray(labels))
        net.backward(sdt_loss_backward(cache), need_dx=False)
        case = f"network {name} static input (time-summed backward) T={T}"
        for k, p in named.items():
            rows.append((case, k, rel_error(to_numpy(p.grad), numeric[k])))
        net.to("cpu")
    return rows

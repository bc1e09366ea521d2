"""Whole-network gradient checks of the online methods ``ottt`` and ``sltt``
(:class:`pysnn_ref.methods.OnlineMethod`) against central finite differences of the objective
each one's gradient is exact for (:mod:`pysnn_ref.functional.online`), float64, smooth mode:

* SLTT ("Towards Memory- and Time-Efficient Backpropagation for Training Spiking Neural
  Networks", Meng et al., ICCV 2023): ``sum_t loss(y[t]) / T`` with every neuron's ``v[t-1]``
  frozen at its forward value;
* OTTT ("Online Training Through Time for Spiking Neural Networks", Xiao et al., NeurIPS 2022):
  the same, with the presynaptic traces ``a_hat[t-1]`` frozen too and each layer fed by spiking
  neurons computing ``W (lam a_hat[t-1] + o[t]) + b - W0 lam a_hat[t-1]`` (value ``W o[t] + b``,
  the weight gradient through the trace; W0 the weight at the base point).

The loss is TET's (a loss per time step: the online methods' loss).  Network: Linear-LIF-Linear-
LIF-Linear (soft reset, sigmoid surrogate).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import nn
from ..functional import loss as L
from ..functional.linear import linear_forward
from ..functional.online import OnlineState, online_forward
from ..methods import make_method
from .finite_diff import numerical_gradient, rel_error

__all__ = ["online_network_rows", "online_gradcheck_cases"]

LOSS = L.loss_pair("tet", tet_lambda=0.05)


def _network(reset: str, seed: int) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    lif = lambda: nn.LIF(0.6, 0.5, reset, "sigmoid:4", smooth=True)  # noqa: E731
    return nn.Sequential(nn.Linear(5, 6, rng=rng, dtype=np.float64), lif(),
                         nn.Linear(6, 4, rng=rng, dtype=np.float64), lif(),
                         nn.Linear(4, 3, rng=rng, dtype=np.float64))


def _frozen(net: nn.Sequential, x: Any) -> list[list[tuple[Any, Any]]]:
    """Base-point forward: per step, each LIF layer's (v[t-1], a_hat[t-1])."""
    layers = net.children()
    states = {i: OnlineState.zeros((x.shape[1], layers[i - 1].W.data.shape[0]), x.dtype,
                                   trace=True)
              for i, m in enumerate(layers) if isinstance(m, nn.LIF)}
    rec = []
    for t in range(x.shape[0]):
        rec.append([(states[i].v.copy(), states[i].a_hat.copy()) for i in sorted(states)])
        h = x[t:t + 1]
        for i, m in enumerate(layers):
            h = (online_forward(h, m.p, states[i])[0] if isinstance(m, nn.LIF)
                 else linear_forward(h, m.W.data, m.b.data)[0])
    return rec


def _cut_objective(net: nn.Sequential, x: Any, labels: Any, rec: list, W0: list[Any],
                   traced: bool) -> float:
    """sum_t loss(y[t]) / T of the cut network (module doc), at the current parameters."""
    layers, T, total = net.children(), x.shape[0], 0.0
    for t in range(T):
        h, k, prev = x[t:t + 1], 0, None
        for i, m in enumerate(layers):
            if isinstance(m, nn.LIF):
                v, a = rec[t][k]
                o = online_forward(h, m.p, OnlineState(v.copy()))[0]
                h, prev, k = (m.p.lam * a[None] + o if traced else o), m.p.lam * a[None], k + 1
            else:
                z = linear_forward(h, m.W.data, m.b.data)[0]
                if traced and prev is not None:
                    z = z - prev @ W0[i].T
                h, prev = z, None
        total += float(LOSS[0](h, labels)[0]) / T
    return total


def online_network_rows(name: str, reset: str = "soft", T: int = 4, B: int = 3,
                        seed: int = 5) -> list[tuple[str, str, float]]:
    """``("<name> network ...", parameter, rel. error)`` per weight and bias."""
    net = _network(reset, seed)
    rng = np.random.default_rng(seed + 1)
    x, labels = rng.normal(0.6, 1.0, (T, B, 5)), rng.integers(0, 3, B)
    m = make_method(name)
    m.check_network(net)
    net.zero_grad()
    y = m.forward(net, x)
    m.backward(net, LOSS[1](LOSS[0](y, labels)[1]))
    rec = _frozen(net, x)
    W0 = {i: la.W.data.copy() for i, la in enumerate(net.children()) if isinstance(la, nn.Linear)}
    rows = []
    for pname, p in net.named_parameters().items():
        num = numerical_gradient(lambda: _cut_objective(net, x, labels, rec, W0,
                                                        name == "ottt"), p.data)
        rows.append((f"{name} network LIF {reset} smooth T={T}", pname, rel_error(p.grad, num)))
    return rows


def online_gradcheck_cases(device: str = "cpu") -> list[tuple[str, str, float]]:
    """OTTT and SLTT networks, soft and hard reset (CPU only: the online methods run on the
    host, so on ``device="gpu"`` there are none)."""
    if device != "cpu":
        return []
    return [row for name in ("ottt", "sltt") for reset in ("soft", "hard")
            for row in online_network_rows(name, reset)]

"""Whole-network gradient checks of the T-independent family's flow-mode methods: ``dsr`` and
``rate`` (:mod:`pysnn_ref.methods`) against central finite differences of the objective each
one is the exact gradient of (float64):

* DSR (Meng et al., CVPR 2022): the clamp network through the spiking rates -- layer l outputs
  ``a = abar0 + clamp(Ibar(W), 0, v_th) - clamp(Ibar0, 0, v_th0)`` with ``Ibar = W a_below + b``
  (IF neurons, so the weights of the representation are uniform); its value is the spiking
  network's weighted rate, its slope the clamp's (:mod:`pysnn_ref.functional.dsr`).  The
  thresholds are trained (their gradient is checked too).
* Rate-BP (Yu et al., NeurIPS 2024): the linearised rate network ``r = r0 + e (Ibar - Ibar0)``
  with r0, e, Ibar0 frozen at pass 1 (:mod:`pysnn_ref.functional.rate`), smooth mode.

The loss is linear, ``sum_t <c[t], y>``, with the readout's value constant in time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import nn
from ..functional.dsr import dsr_forward
from ..functional.linear import linear_forward
from ..functional.rate import rate_forward
from ..methods import make_method
from .finite_diff import numerical_gradient, rel_error

__all__ = ["SIZES", "dsr_network_rows", "rate_network_rows", "family_gradcheck_cases"]

SIZES = (6, 9, 7, 3)


def _network(neuron: Callable[[], nn.Module], seed: int) -> nn.Sequential:
    rng = np.random.default_rng(seed)
    a, b, c, d = SIZES
    return nn.Sequential(nn.Linear(a, b, rng=rng, dtype=np.float64), neuron(),
                         nn.Linear(b, c, rng=rng, dtype=np.float64), neuron(),
                         nn.Linear(c, d, rng=rng, dtype=np.float64))


def _weights(net: nn.Sequential) -> list[tuple[Any, Any]]:
    return [(la.W.data, la.b.data) for la in net.layers[::2]]


def _readout(net: nn.Sequential, a: Any, c: Any) -> float:
    W, b = _weights(net)[-1]
    return float((c.sum(axis=0) * (a @ W.T + b)).sum())


def dsr_network_rows(T: int = 6, B: int = 5, v_th: float = 0.6, alpha: float = 0.7,
                     seed: int = 1) -> list[tuple[str, str, float]]:
    """``("dsr network ...", parameter, rel. error)`` per parameter (weights, biases, v_th)."""
    net = _network(lambda: nn.IF(v_th, reset="soft"), 0)
    rng = np.random.default_rng(seed)
    x = rng.normal(0.4, 1.0, (T, B, SIZES[0]))
    c = rng.normal(size=(T, B, SIZES[-1]))
    m = make_method("dsr", dsr_alpha=alpha, dsr_train_threshold=True)
    m.check_network(net)
    net.zero_grad()
    m.forward(net, x)
    m.backward(net, c)
    h, frozen = x, []
    for W, b in _weights(net)[:-1]:
        h, cache = dsr_forward(linear_forward(h, W, b)[0], v_th=v_th, alpha=alpha)
        frozen.append((cache.Ibar, h.mean(axis=0)))
    vs = [n.v_th_param.data for n in nn.spiking_layers(net)]

    def objective() -> float:
        a = x.mean(axis=0)
        for (W, b), (Ib0, ab0), v in zip(_weights(net)[:-1], frozen, vs, strict=True):
            a = ab0 + np.clip(a @ W.T + b, 0, v[0]) - np.clip(Ib0, 0, v_th)
        return _readout(net, a, c)

    return [(f"dsr network IF alpha={alpha} T={T}", name,
             rel_error(p.grad, numerical_gradient(objective, p.data)))
            for name, p in net.named_parameters().items()]


def rate_network_rows(T: int = 6, B: int = 5, seed: int = 3) -> list[tuple[str, str, float]]:
    """``("rate network ...", parameter, rel. error)`` per weight and bias."""
    net = _network(lambda: nn.LIF(0.8, 0.5, "hard", "sigmoid", smooth=True), 0)
    rng = np.random.default_rng(seed)
    x = rng.normal(0.3, 1.0, (T, B, SIZES[0]))
    c = rng.normal(size=(T, B, SIZES[-1]))
    m = make_method("rate")
    m.check_network(net)
    net.zero_grad()
    m.forward(net, x)
    m.backward(net, c)
    p = nn.spiking_layers(net)[0].p
    h, frozen = x, []
    for W, b in _weights(net)[:-1]:
        I = linear_forward(h, W, b)[0]
        h, cache = rate_forward(I, p)
        frozen.append((I.mean(axis=0), cache))

    def objective() -> float:
        a = x.mean(axis=0)
        for (W, b), (Ib0, (r0, e)) in zip(_weights(net)[:-1], frozen, strict=True):
            a = r0 + e * (a @ W.T + b - Ib0)
        return _readout(net, a, c)

    return [(f"rate network LIF hard smooth T={T}", name,
             rel_error(q.grad, numerical_gradient(objective, q.data)))
            for name, q in net.named_parameters().items()]


def family_gradcheck_cases(device: str = "cpu") -> list[tuple[str, str, float]]:
    """The family's network rows (CPU only: the family has no CUDA kernels yet, so on
    ``device="gpu"`` there are none)."""
    if device != "cpu":
        return []
    return dsr_network_rows() + rate_network_rows()

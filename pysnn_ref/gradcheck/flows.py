"""Finite-difference checks of the flow methods and of the losses.

* ASF and SSF (:func:`flow_gradcheck_cases`): their backward is the exact gradient of the
  *equivalent rate network* (ASF-BP Fig. 2b, Eqs. 9-11; SSF Fig. 2b, Eqs. 13-15): the time-mean
  input runs through the weight layers, and every spiking layer is replaced by its flow mapping
  linearised at the real network's operating point -- value = the real mean spike rate ``FO0``,
  slope = the method's flow gain (ASF's scale factor S, SSF's mapping R), the straight-through
  construction of the ASF authors' code. The loss is SDT on that mean output.
* The losses (:func:`loss_gradcheck_cases`): SDT (TET Eq. 7), TET (TET Eqs. 9, 12-13) and ASF's
  output-membrane MSE (ASF-BP Eq. 6), each against central differences of its own value.

Both run in float64 and return ``(case, parameter, relative error)`` rows, as the other checks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import nn
from ..backend import get_backend, to_numpy
from ..functional.conv import conv2d_forward
from ..functional.loss import loss_pair, sdt_loss_backward, sdt_loss_forward
from ..methods import make_method
from .finite_diff import numerical_gradient, rel_error

__all__ = ["operating_points", "rate_network_loss", "flow_gradcheck_cases", "loss_gradcheck_cases"]


def operating_points(net: nn.Sequential, X: np.ndarray) -> list[tuple[Any, Any]]:
    """Per spiking layer: the time-mean input current FI0 and output rate FO0 of the real SNN."""
    points, x = [], X
    for layer in net.layers:
        y = layer.forward(x)
        if isinstance(layer, nn.LIF):
            points.append((x.mean(0), y.mean(0)))
        x = y
    return points


def rate_network_loss(net: nn.Sequential, X: np.ndarray, labels: np.ndarray,
                      gains: list[Any], points: list[tuple[Any, Any]]) -> float:
    """SDT loss of the equivalent rate network of ``net`` (see the module docstring): spiking
    layer ``l`` maps its time-mean input ``x`` to ``FO0_l + gain_l (x - FI0_l)``."""
    x = X.mean(0)
    it = iter(zip(gains, points, strict=True))
    for layer in net.layers:
        if isinstance(layer, nn.LIF):
            gain, (FI0, FO0) = next(it)
            x = FO0 + gain * (x - FI0)
        elif isinstance(layer, nn.Linear):
            x = x @ layer.W.data.T + (0 if layer.b is None else layer.b.data)
        elif isinstance(layer, nn.Conv2d):
            x = conv2d_forward(x, layer.W.data, None if layer.b is None else layer.b.data,
                               stride=layer.stride, padding=layer.padding)[0]
        else:                                  # pooling, flatten: linear, applied per step
            x = layer.forward(x[None])[0]
    return sdt_loss_forward(x[None], labels)[0]


def _small_conv_net(rng: np.random.Generator) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, rng=rng, dtype=np.float64), nn.LIF(lam=0.9, v_th=1.0),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(3 * 3 * 3, 5, rng=rng, dtype=np.float64),
        nn.LIF(lam=0.9, v_th=1.0), nn.Linear(5, 4, rng=rng, dtype=np.float64))


def flow_gradcheck_cases(device: str = "cpu", T: int = 6,
                         seed: int = 8) -> list[tuple[str, str, float]]:
    """ASF and SSF weight gradients of a small conv net (streamed in chunks of 4 steps) against
    finite differences of its equivalent rate network; analytic gradients on ``device``."""
    rows = []
    be = get_backend(device)
    for method in ("asf", "ssf"):
        rng = np.random.default_rng(seed)
        net = _small_conv_net(rng)
        X = rng.uniform(0, 2, (T, 4, 1, 6, 6))
        labels = rng.integers(0, 4, 4)
        m = make_method(method, time_chunk=4)
        net.to(device)
        net.zero_grad()
        _, cache = sdt_loss_forward(m.forward(net, be.asarray(X)), be.asarray(labels))
        m.backward(net, sdt_loss_backward(cache))
        grads = {k: to_numpy(p.grad) for k, p in net.named_parameters().items()}
        gains = [to_numpy(layer.flow_gain) for layer in net.layers if isinstance(layer, nn.LIF)]
        net.to("cpu")                          # (moving the net resets its gradient buffers)
        points = operating_points(net, X)
        case = f"{method} conv-LIF-avgpool-linear-LIF-linear vs its rate network T={T}"

        def loss(net=net, X=X, labels=labels, gains=gains, points=points) -> float:
            return rate_network_loss(net, X, labels, gains, points)

        for name, p in net.named_parameters().items():
            rows.append((case, name, rel_error(grads[name], numerical_gradient(loss, p.data))))
    return rows


def loss_gradcheck_cases(device: str = "cpu", T: int = 4,
                         seed: int = 3) -> list[tuple[str, str, float]]:
    """Each loss's backward against central differences of its value, w.r.t. the output y."""
    rng = np.random.default_rng(seed)
    y = rng.normal(0, 1.5, (T, 5, 6))
    labels = rng.integers(0, 6, 5)
    be = get_backend(device)
    rows = []
    for name in ("sdt", "tet", "asf-mse"):
        fwd, bwd = loss_pair(name)
        _, cache = fwd(be.asarray(y), be.asarray(labels))
        dy = to_numpy(bwd(cache))
        num = numerical_gradient(lambda fwd=fwd: fwd(y, labels)[0], y)
        rows.append((f"loss {name} T={T}", "y", rel_error(dy, num)))
    return rows

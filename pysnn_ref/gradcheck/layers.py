"""Finite-difference checks of every layer backward in :mod:`pysnn_ref.functional` other than the
neurons: linear, conv2d, avg/max pooling, batch norm / tdBN, flatten and the residual add, and
the spiking LSTM's BPTT (smooth mode, sigmoid surrogate: the exact gradient).

:func:`layer_gradcheck_cases` runs them all in float64 and returns ``(case, parameter, max
relative error)`` rows -- the gradient-check CLI prints them and the tests assert them (rel
error <= 1e-6; typically 1e-9 or smaller, these layers being linear or smooth).  Each case
draws a random upstream gradient ``G`` and compares the hand-written backward with the central
difference gradient of ``sum(forward(...) * G)``
(:func:`pysnn_ref.gradcheck.finite_diff.numerical_gradient`).

Max pooling is checked on inputs whose values are at least 0.05 apart, so that no perturbation
of 1e-6 changes a window's winner (at a tie the function has no derivative).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..backend import get_backend, to_numpy
from ..functional.batchnorm import batchnorm_backward, batchnorm_forward
from ..functional.conv import conv2d_backward, conv2d_forward
from ..functional.linear import linear_backward, linear_forward
from ..functional.lstm import lstm_backward, lstm_forward, make_lstm_params
from ..functional.pool import (
    avgpool2d_backward,
    avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
)
from ..functional.shape import add_backward, add_forward, flatten_backward, flatten_forward
from .finite_diff import numerical_gradient, rel_error

__all__ = ["Arrays", "Case", "layer_gradcheck_cases"]

Arrays = dict[str, np.ndarray]
#: a case: (name, arrays, forward(arrays) -> out, backward(arrays, G) -> {param: grad})
Case = tuple[str, Arrays, Callable[[Arrays], Any], Callable[[Arrays, Any], dict[str, Any]]]


def _distinct(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values at least 0.05 apart (a shuffled grid plus small noise): no ties in max pooling."""
    n = int(np.prod(shape))
    v = rng.permutation(n) * 0.1 + rng.uniform(-0.02, 0.02, n)
    return (v - v.mean()).reshape(shape)


class _Cases:
    """Builds the layer cases, in order, from one seeded generator (``rng``); the analytic
    backward of each case runs on ``device`` (``dev`` moves an array there)."""

    def __init__(self, device: str) -> None:
        self.be = get_backend(device)
        self.dev = self.be.asarray
        self.rng = np.random.default_rng(0)
        self.N = self.rng.normal
        self.cases: list[Case] = []

    def linear(self, name: str, xshape: tuple, bias: bool) -> None:
        N, dev = self.N, self.dev
        arrs = {"x": N(size=xshape), "W": N(size=(4, xshape[-1]))}
        if bias:
            arrs["b"] = N(size=4)

        def fwd(a: Arrays) -> Any:
            return linear_forward(a["x"], a["W"], a.get("b"))[0]

        def bwd(a: Arrays, G: Any) -> dict[str, Any]:
            _, c = linear_forward(dev(a["x"]), dev(a["W"]), None if not bias else dev(a["b"]))
            dx, dW, db = linear_backward(dev(G), c)
            return {"x": dx, "W": dW, **({"b": db} if bias else {})}

        self.cases.append((name, arrs, fwd, bwd))

    def static(self, name: str, layer_fwd: Callable, layer_bwd: Callable, x0shape: tuple,
               arrs: Arrays, T: int = 3, **kw: Any) -> None:
        """Time-broadcast input: FD w.r.t. the weights, and w.r.t. x0 = sum_t dx[t]."""
        dev, xp = self.dev, self.be.xp
        arrs = {"x0": self.N(size=x0shape), **arrs}

        def fwd(a: Arrays) -> Any:
            return np.array(layer_fwd(np.broadcast_to(a["x0"], (T, *x0shape)), a["W"], a["b"],
                                      **kw)[0])

        def bwd(a: Arrays, G: Any) -> dict[str, Any]:
            xd = xp.broadcast_to(dev(a["x0"]), (T, *x0shape))
            _, c = layer_fwd(xd, dev(a["W"]), dev(a["b"]), **kw)
            dx, dW, db = layer_bwd(dev(G), c)
            return {"x0": dx.sum(axis=0), "W": dW, "b": db}

        self.cases.append((name, arrs, fwd, bwd))

    def conv(self, name: str, xshape: tuple, wshape: tuple, stride: int, padding: int,
             bias: bool = True) -> None:
        N, dev = self.N, self.dev
        arrs = {"x": N(size=xshape), "W": N(size=wshape)}
        if bias:
            arrs["b"] = N(size=wshape[0])

        def fwd(a: Arrays) -> Any:
            return conv2d_forward(a["x"], a["W"], a.get("b"), stride, padding)[0]

        def bwd(a: Arrays, G: Any) -> dict[str, Any]:
            _, c = conv2d_forward(dev(a["x"]), dev(a["W"]), dev(a["b"]) if bias else None,
                                  stride, padding)
            dx, dW, db = conv2d_backward(dev(G), c)
            return {"x": dx, "W": dW, **({"b": db} if bias else {})}

        self.cases.append((name, arrs, fwd, bwd))

    def pool(self, name: str, kind: str, xshape: tuple, k: int, s: int | None) -> None:
        dev = self.dev
        f, b = ((avgpool2d_forward, avgpool2d_backward) if kind == "avg"
                else (maxpool2d_forward, maxpool2d_backward))
        arrs = {"x": _distinct(self.rng, xshape) if kind == "max" else self.N(size=xshape)}

        def fwd(a: Arrays) -> Any:
            return f(a["x"], k, s)[0]

        def bwd(a: Arrays, G: Any) -> dict[str, Any]:
            _, c = f(dev(a["x"]), k, s)
            return {"x": b(dev(G), c)}

        self.cases.append((name, arrs, fwd, bwd))

    def bn(self, name: str, xshape: tuple, training: bool, scale: float,
           time_major: bool) -> None:
        N, dev = self.N, self.dev
        C = xshape[2 if time_major else 1]
        arrs = {"x": N(size=xshape) * 2 + 0.5, "gamma": N(size=C), "beta": N(size=C)}
        rm, rv = N(size=C), self.rng.uniform(0.5, 2.0, C)
        kw = dict(training=training, scale=scale, time_major=time_major)

        def fwd(a: Arrays) -> Any:
            return batchnorm_forward(a["x"], a["gamma"], a["beta"], rm.copy(), rv.copy(),
                                     **kw)[0]

        def bwd(a: Arrays, G: Any) -> dict[str, Any]:
            _, c = batchnorm_forward(dev(a["x"]), dev(a["gamma"]), dev(a["beta"]), dev(rm),
                                     dev(rv), **kw)
            dx, dg, db = batchnorm_backward(dev(G), c)
            return {"x": dx, "gamma": dg, "beta": db}

        self.cases.append((name, arrs, fwd, bwd))

    def shape_layers(self) -> None:
        """Flatten (it returns a view of x: copy it, or the FD sees no change) and the
        residual add."""
        N, dev = self.N, self.dev
        fl = {"x": N(size=(2, 3, 2, 2, 2))}
        self.cases.append(
            ("flatten time-major", fl, lambda a: np.array(flatten_forward(a["x"])[0]),
             lambda a, G: {"x": flatten_backward(dev(G), flatten_forward(dev(a["x"]))[1])}))

        def add_bwd(a: Arrays, G: Any) -> dict[str, Any]:
            da, db = add_backward(dev(G), add_forward(dev(a["a"]), dev(a["b"]))[1])
            return {"a": da, "b": db}

        self.cases.append(("residual add", {"a": N(size=(2, 3, 4)), "b": N(size=(2, 3, 4))},
                           lambda a: add_forward(a["a"], a["b"])[0], add_bwd))


    def lstm(self) -> None:
        """The spiking LSTM over T = 3 steps (window-partition supplement's LSNN), smooth mode."""
        N, dev = self.N, self.dev
        D, H = 3, 4
        arrs = {"x": N(size=(3, 2, D)), "W_x": N(0, 0.7, (4 * H, D)),
                "W_h": N(0, 0.7, (4 * H, H)), "b": N(0, 0.5, 4 * H)}
        p = make_lstm_params(0.3, "sigmoid:4", smooth=True)
        keys = ("x", "W_x", "W_h", "b")

        def fwd(a: Arrays) -> Any:
            return lstm_forward(*(a[k] for k in keys), p)[0]

        def bwd(a: Arrays, G: Any) -> dict[str, Any]:
            cache = lstm_forward(*(dev(a[k]) for k in keys), p)[1]
            return dict(zip(keys, lstm_backward(dev(G), cache), strict=True))

        self.cases.append(("spiking LSTM time-major (T, B, D), smooth sigmoid", arrs, fwd, bwd))


def _cases(device: str) -> list[Case]:
    c = _Cases(device)
    N = c.N
    c.linear("linear (B, in)", (3, 5), True)
    c.linear("linear time-major (T, B, in)", (2, 3, 5), True)
    c.linear("linear no bias", (2, 3, 5), False)
    c.static("linear static input (time-broadcast)", linear_forward, linear_backward, (3, 5),
             {"W": N(size=(4, 5)), "b": N(size=4)})
    c.conv("conv2d 3x3 stride 1 pad 1", (2, 2, 5, 5), (3, 2, 3, 3), 1, 1)
    c.conv("conv2d 3x3 stride 2 pad 0, odd size", (2, 2, 7, 6), (3, 2, 3, 3), 2, 0)
    c.conv("conv2d 2x3 kernel stride 2 pad 2", (1, 2, 5, 4), (2, 2, 2, 3), 2, 2)
    c.conv("conv2d 1x1 no bias", (2, 3, 4, 4), (2, 3, 1, 1), 1, 0, bias=False)
    c.conv("conv2d 1x1 stride 2 (shortcut)", (2, 3, 5, 5), (2, 3, 1, 1), 2, 0)
    c.conv("conv2d time-major (T, B, C, H, W)", (2, 2, 2, 4, 4), (3, 2, 3, 3), 1, 1)
    c.static("conv2d static input (time-broadcast)", conv2d_forward, conv2d_backward,
             (2, 2, 4, 4), {"W": N(size=(3, 2, 3, 3)), "b": N(size=3)}, stride=1, padding=1)
    c.pool("avgpool 2x2 (N, C, H, W), odd width", "avg", (2, 2, 4, 5), 2, None)
    c.pool("avgpool 3x3 stride 2 (overlapping)", "avg", (2, 2, 7, 6), 3, 2)
    c.pool("avgpool 2x2 time-major", "avg", (2, 2, 2, 4, 4), 2, None)
    c.pool("maxpool 2x2 (N, C, H, W), odd size", "max", (2, 2, 5, 4), 2, None)
    c.pool("maxpool 3x3 stride 2 (overlapping)", "max", (2, 2, 7, 7), 3, 2)
    c.pool("maxpool 2x2 time-major", "max", (2, 2, 2, 4, 4), 2, None)
    c.bn("batchnorm train, time-major (T, B, C, H, W)", (2, 3, 2, 2, 2), True, 1.0, True)
    c.bn("batchnorm train, (N, C)", (5, 3), True, 1.0, False)
    c.bn("tdBN train, scale = alpha * V_th = 0.7", (2, 3, 2, 3), True, 0.7, True)
    c.bn("batchnorm eval (running stats)", (2, 3, 2, 2, 2), False, 1.0, True)
    c.bn("tdBN eval, scale 0.7", (4, 3, 2, 2), False, 0.7, False)
    c.shape_layers()
    c.lstm()
    return c.cases


def layer_gradcheck_cases(device: str = "cpu") -> list[tuple[str, str, float]]:
    """``(case, parameter, max relative error)`` of every layer backward against central finite
    differences, in float64.  The analytic gradient runs on ``device``; the finite differences
    always run on the CPU."""
    rows = []
    rng = np.random.default_rng(1)
    for name, arrs, fwd, bwd in _cases(device):
        G = rng.normal(size=np.shape(fwd(arrs)))
        grads = bwd(arrs, G)
        for pname, g in grads.items():
            num = numerical_gradient(lambda f=fwd, a=arrs: f(a), arrs[pname], G)
            rows.append((name, pname, rel_error(to_numpy(g), num)))
    return rows

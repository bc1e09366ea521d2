"""Dspike's temperature adaptation (Li et al., NeurIPS 2021, Algorithm 1, Sec. 4.2-4.3): the
surrogate temperature b follows the finite-difference gradient (FDG) of the true spiking loss.
``python -m pysnn_ref.train --dspike-adapt`` runs :func:`adapt_dspike` on each epoch's first
batch (:mod:`pysnn_ref.train.loop`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import backend
from .. import nn as nn_
from ..functional.surrogate import dspike
from ..gradcheck import cosine, finite_difference_gradient, method_gradients
from ..methods import Method

__all__ = ["FDG_EPS", "DSPIKE_STEP", "first_weight", "adapt_dspike"]

FDG_EPS = 0.1           # Dspike Sec. 4.2: the best finite-difference step
DSPIKE_STEP = 0.2       # Dspike Sec. 5: the temperature's update step, delta b


def first_weight(net: nn_.Module) -> tuple[str, Any]:
    """``(name, parameter)`` of the network's first weight (Linear / Conv2d ``W``), bottom up."""
    for name, p in net.named_parameters().items():
        if name.endswith("W"):
            return name, p
    raise ValueError("net has no Linear or Conv2d weight")


def adapt_dspike(net: nn_.Module, method: Method, x: Any, labels: Any, b: float,
                 loss_forward: Callable, loss_backward: Callable, *, n_samples: int,
                 rng: np.random.Generator, eps: float = FDG_EPS,
                 step: float = DSPIKE_STEP) -> tuple[float, dict[float, float]]:
    """One temperature update of Dspike's Algorithm 1 (Li et al., NeurIPS 2021, Sec. 4.2-4.3).

    ``x`` is one training batch, already encoded and time-major ``(T, B, ...)`` (so that every
    forward pass sees the same input spikes).  The finite-difference gradient (FDG, Dspike
    Eq. 10) of the loss of the true spiking network, ``(L(w + eps e_i) - L(w - eps e_i)) / 2 eps``,
    is computed for ``n_samples`` randomly chosen elements ``i`` of the first layer's weight
    (all of them when the layer is smaller; the paper uses the whole first layer, which costs
    two forward passes per weight -- too many for a 64 x 800 layer).  The surrogate gradient of
    the same elements is computed with the Dspike temperature ``b - step``, ``b`` and
    ``b + step`` (candidates <= 0 are skipped); every spiking layer is left with the one whose
    gradient has the highest cosine similarity with the FDG (ties keep ``b``).

    BatchNorm running statistics are restored afterwards; parameter gradients are zeroed.
    Returns ``(new b, {candidate b: cosine})``.
    """
    layers = nn_.spiking_layers(net)
    name, W = first_weight(net)
    idx = np.sort(rng.choice(W.data.size, size=min(n_samples, W.data.size), replace=False))
    loss = (loss_forward, loss_backward)
    fdg = finite_difference_gradient(net, x, labels, [name], loss=loss, eps=eps,
                                     indices={name: idx})[name].reshape(-1)[idx]
    cos: dict[float, float] = {}
    for cand in (b, round(b - step, 6), round(b + step, 6)):
        if cand <= 0:
            continue
        for n in layers:
            n.set_surrogate(dspike(cand))
        _, g = method_gradients(net, method, x, labels, loss=loss)
        cos[cand] = cosine(backend.to_numpy(g[name]).reshape(-1)[idx], fdg)
    best = max(cos, key=lambda c: cos[c])  # first maximum: b itself on a tie
    for n in layers:
        n.set_surrogate(dspike(best))
    net.zero_grad()
    return best, cos

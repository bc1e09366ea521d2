"""Cosine similarity of gradients: a method's weight gradients against BPTT's or against the
finite-difference gradient (FDG) of the true spiking loss (Dspike Sec. 4.2, Eq. 10).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..nn import Module
from .networks import encode_once, finite_difference_gradient, method_gradients

__all__ = ["cosine", "cosine_vs"]


def cosine(a: Any, b: Any) -> float:
    """Cosine similarity of two arrays, flattened (0 if either is zero)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return 0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb))


def cosine_vs(net: Module, method: Any, x: Any, labels: Any, *, reference: str = "bptt",
              loss: str = "sdt",
              T: int | None = None, encoder: Any = None, eps: float = 0.1,
              params: list[str] | None = None,
              reference_grads: dict[str, Any] | None = None) -> dict[str, float]:
    """Cosine similarity between ``method``'s weight gradients and a reference.

    ``reference="bptt"``: BPTT's surrogate gradients of the same network and batch.
    ``reference="fdg"``: the finite-difference gradient of the true spiking loss with step
    ``eps`` (Dspike Sec. 4.2, Eq. 10) -- costly (two forward passes per weight), so by default
    only the first layer's weight is compared.
    ``reference_grads`` skips computing the reference (e.g. one FDG reused for several
    surrogates).  The network's buffers and ASF state are left as they were.
    Returns ``{parameter name: cosine}``.
    """
    if reference not in ("bptt", "fdg"):
        raise ValueError(f"reference must be 'bptt' or 'fdg', got {reference!r}")
    names = list(net.named_parameters())
    if params is None:
        params = names[:1] if reference == "fdg" else [n for n in names if n.endswith("W")]
    for p in params:
        if p not in names:
            raise ValueError(f"params: unknown parameter {p!r}; expected one of {names}")
    x, encoder = encode_once(x, T, encoder)
    _, g = method_gradients(net, method, x, labels, loss=loss)
    if reference_grads is not None:
        ref = reference_grads
    elif reference == "bptt":
        _, ref = method_gradients(net, "bptt", x, labels, loss=loss)
    else:
        ref = finite_difference_gradient(net, x, labels, params, loss=loss, eps=eps)
    return {p: cosine(g[p], ref[p]) for p in params}

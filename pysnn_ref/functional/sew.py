"""Spike-element-wise (SEW) residual connections: ADD, AND, IAND.

Fang et al., "Deep Residual Learning in Spiking Neural Networks", NeurIPS 2021 (arXiv
2102.04159), Sec. 3.2 and Table 1. A SEW block joins the spikes ``A[t]`` of its residual branch
(``A = SN(BN(conv(SN(BN(conv(S))))))``) with the block's input spikes ``S[t]`` (or, when it
downsamples, ``SN(BN(conv1x1(S)))``) by an element-wise connect function ``g``:

    ADD:   O = A + S            dO/dA = 1,     dO/dS = 1
    AND:   O = A * S            dO/dA = S,     dO/dS = A
    IAND:  O = (1 - A) * S      dO/dA = -S,    dO/dS = 1 - A

On spikes AND and IAND give spikes again, ADD gives counts in {0, 1, 2}. With ``A`` the output
of a spiking neuron, ``g(A, S) = S`` is reached by ``A = 0`` for ADD and IAND (and ``A = 1`` for
AND), which is why the block can learn the identity map: the paper's argument for SEW over the
plain spiking ResNet. The gradients above are the exact partial derivatives of the polynomial
``g`` (checked by finite differences on real-valued inputs, where ``g`` is defined as written).
Time-major ``(T, B, ...)`` or any equal shapes: the functions act element by element.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .._check import check_choice, check_float_array, check_same_shape

__all__ = ["CONNECT_FUNCTIONS", "SEWCache", "sew_connect_forward", "sew_connect_backward"]

CONNECT_FUNCTIONS = ("ADD", "AND", "IAND")


class SEWCache(NamedTuple):
    """What :func:`sew_connect_backward` needs: the connect function and, for AND / IAND, the
    two inputs (for ADD nothing but the shape)."""

    g: str
    A: Any
    S: Any
    shape: tuple[int, ...]


def sew_connect_forward(A: Any, S: Any, g: str = "ADD") -> tuple[Any, SEWCache]:
    """``O = g(A, S)`` for the SEW connect function ``g`` (SEW-ResNet, Table 1).

    Inputs:
      A: the residual branch's output spikes; S: the shortcut's spikes, same shape and dtype.
      g: ``"ADD"``, ``"AND"`` or ``"IAND"``.
    Returns ``(O, cache)``.
    """
    check_choice("g", g, CONNECT_FUNCTIONS)
    check_float_array("A", A)
    check_float_array("S", S)
    check_same_shape("S", S, tuple(A.shape))
    if A.dtype != S.dtype:
        raise ValueError(f"S must have the dtype of A ({A.dtype}), got {S.dtype}")
    if g == "ADD":
        return A + S, SEWCache(g, None, None, tuple(A.shape))
    if g == "AND":
        return A * S, SEWCache(g, A, S, tuple(A.shape))
    return (1 - A) * S, SEWCache(g, A, S, tuple(A.shape))


def sew_connect_backward(dO: Any, cache: SEWCache) -> tuple[Any, Any]:
    """``(dA, dS)`` of :func:`sew_connect_forward`, from the partial derivatives of ``g``.

    ADD: ``(dO, dO)`` (the same array: do not modify one in place while using the other);
    AND: ``(dO * S, dO * A)``; IAND: ``(-dO * S, dO * (1 - A))``.
    """
    check_float_array("dO", dO)
    check_same_shape("dO", dO, cache.shape)
    if cache.g == "ADD":
        return dO, dO
    if cache.g == "AND":
        return dO * cache.S, dO * cache.A
    return -dO * cache.S, dO * (1 - cache.A)

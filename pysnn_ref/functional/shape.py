"""Shape-only layers: flatten (time-major aware) and the residual add.

Flatten joins every axis from ``start_dim`` on: for a time-major (T, B, C, H, W) tensor the
default ``start_dim=2`` keeps (T, B) and gives (T, B, C*H*W), the input of the fully connected
layers of every network in the papers; ``start_dim=1`` flattens an (N, C, H, W) tensor.  Its
backward reshapes the gradient back.

The residual add ``y = a + b`` joins the two branches of a spiking ResNet block (main path and
shortcut, before the block's spiking neuron); its backward hands ``dout`` to both branches.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .._check import check_float_array, check_int, check_same_shape

__all__ = ["FlattenCache", "AddCache", "flatten_forward", "flatten_backward", "add_forward",
    "add_backward"]


class FlattenCache(NamedTuple):
    """The input shape and ``start_dim``, to undo the flatten."""

    x_shape: tuple
    start_dim: int


class AddCache(NamedTuple):
    """The shape of the two (equal-shaped) inputs."""

    shape: tuple


def flatten_forward(x: Any, start_dim: int = 2) -> tuple[Any, FlattenCache]:
    """Join the axes ``start_dim, ..., ndim-1`` of x into one.

    ``start_dim=2`` (default) for time-major (T, B, ...), ``1`` for (N, ...).  Returns a view
    when x is contiguous.
    """
    check_float_array("x", x, min_ndim=1)
    check_int("start_dim", start_dim, minimum=0)
    if start_dim > x.ndim - 1:
        raise ValueError(f"start_dim must be <= x.ndim - 1 = {x.ndim - 1}, got {start_dim} "
                         f"(x has shape {tuple(x.shape)})")
    return x.reshape(*x.shape[:start_dim], -1), FlattenCache(tuple(x.shape), start_dim)


def flatten_backward(dout: Any, cache: FlattenCache) -> Any:
    """Reshape the gradient back to the input shape."""
    x_shape, start_dim = cache
    n = 1
    for d in x_shape[start_dim:]:
        n *= d
    check_float_array("dout", dout)
    check_same_shape("dout", dout, (*x_shape[:start_dim], n))
    return dout.reshape(x_shape)


def add_forward(a: Any, b: Any) -> tuple[Any, AddCache]:
    """Residual add ``a + b`` of two equal-shaped tensors (no broadcasting)."""
    check_float_array("a", a)
    check_float_array("b", b)
    check_same_shape("b", b, tuple(a.shape))
    if a.dtype != b.dtype:
        raise ValueError(f"b must have the dtype of a ({a.dtype}), got {b.dtype}")
    return a + b, AddCache(tuple(a.shape))


def add_backward(dout: Any, cache: AddCache) -> tuple[Any, Any]:
    """``(da, db) = (dout, dout)``: both branches receive the upstream gradient (the same array;
    callers must not modify one in place if they still use the other)."""
    check_float_array("dout", dout)
    check_same_shape("dout", dout, cache.shape)
    return dout, dout

"""A trainable array and its gradient: what layers expose and optimizers update."""

from __future__ import annotations

from typing import Any

__all__ = ["Parameter"]


class Parameter:
    """A named trainable array ``data`` with a gradient buffer ``grad`` of the same shape.

    Layers write ``grad`` in their backward; optimizers read it and update ``data`` in place.
    """

    __slots__ = ("name", "data", "grad")

    def __init__(self, name: str, data: Any) -> None:
        self.name = name
        self.data = data
        self.grad = data * 0

    def zero_grad(self) -> None:
        """Set the gradient buffer to zero, in place."""
        self.grad[...] = 0

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={tuple(self.data.shape)}, dtype={self.data.dtype})"

"""Surrogate gradients: what a spike's derivative is taken to be in the backward pass.

A spike is o = H(u - v_th), whose derivative is zero almost everywhere.  Surrogate-gradient
training keeps the Heaviside in the forward pass and uses a smooth stand-in sigma'(x),
x = u - v_th, in the backward pass.  Each surrogate here has

* ``grad(x)``      -- sigma'(x), the surrogate gradient;
* ``primitive(x)`` -- sigma(x), the smooth function it is the derivative of.  In *smooth mode*
  the neuron's forward spike is sigma(x) itself, so the hand-written backward becomes the exact
  gradient and can be checked by finite differences.

==============  =====================================  =========================================
name            surrogate gradient sigma'(x)           parameter (``a``) and source
==============  =====================================  =========================================
rectangular     1/a  if abs(x) < a/2                   width a = 1 (Dspike Eq. 7, Wu et al. 2018)
triangle        max(0, g - abs(x)) / g^2               gamma g = 1 (TET Eq. 5)
sigmoid         k s(1 - s),  s = 1/(1+exp(-k x))       slope k = 4
atan            (a/2) / (1 + (pi/2 a x)^2)             alpha a = 2 (SpikingJelly/snnTorch ATan)
dspike          b (1 - tanh^2(b x)) / (2 tanh(b/2))    temperature b = 1 (Dspike Eqs. 11-12)
==============  =====================================  =========================================

Dspike is defined in the paper on x in [0, 1] with the threshold at 0.5; we centre it on the
threshold (x = u - v_th, window abs(x) <= 1/2), which is the paper's function for V_th = 0.5 and
its natural shift otherwise.  The formulas themselves live once, as scalar functions, in
:mod:`pysnn_ref.kernels.reference`; the Numba and CUDA kernels compile those same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import backend
from .._check import check_choice, check_positive
from ..kernels.reference import SURROGATE_KINDS

__all__ = ["DEFAULT_PARAM", "PARAM_NAME", "Surrogate", "rectangular", "triangle", "sigmoid",
    "atan", "dspike", "get_surrogate"]

DEFAULT_PARAM = {"rectangular": 1.0, "triangle": 1.0, "sigmoid": 4.0, "atan": 2.0, "dspike": 1.0}
PARAM_NAME = {"rectangular": "a", "triangle": "gamma", "sigmoid": "k", "atan": "alpha",
              "dspike": "b"}


@dataclass(frozen=True)
class Surrogate:
    """A surrogate gradient: its ``name`` (see the module table) and its one parameter ``a``."""

    name: str
    a: float

    def __post_init__(self) -> None:
        check_choice("surrogate", self.name, SURROGATE_KINDS)
        check_positive(f"surrogate parameter {PARAM_NAME[self.name]}", self.a)

    @property
    def kind(self) -> int:
        """The integer code the kernels use for this surrogate."""
        return SURROGATE_KINDS[self.name]

    def grad(self, x: Any) -> Any:
        """sigma'(x), elementwise."""
        return backend.kernels_for(x).surrogate_grad(x, self.kind, self.a)

    def primitive(self, x: Any) -> Any:
        """sigma(x), elementwise: the smooth-mode spike."""
        return backend.kernels_for(x).surrogate_primitive(x, self.kind, self.a)

    def __str__(self) -> str:
        return f"{self.name}({PARAM_NAME[self.name]}={self.a:g})"


def rectangular(a: float = 1.0) -> Surrogate:
    """Rectangular surrogate of width ``a`` (Dspike Eq. 7)."""
    return Surrogate("rectangular", a)


def triangle(gamma: float = 1.0) -> Surrogate:
    """Triangle surrogate of half-width ``gamma`` (TET Eq. 5)."""
    return Surrogate("triangle", gamma)


def sigmoid(k: float = 4.0) -> Surrogate:
    """Sigmoid surrogate of slope ``k``."""
    return Surrogate("sigmoid", k)


def atan(alpha: float = 2.0) -> Surrogate:
    """Arctangent surrogate with ``alpha`` (SpikingJelly / snnTorch default)."""
    return Surrogate("atan", alpha)


def dspike(b: float = 1.0) -> Surrogate:
    """Dspike surrogate with temperature ``b`` (Dspike Eqs. 11-12)."""
    return Surrogate("dspike", b)


def get_surrogate(spec: str | Surrogate) -> Surrogate:
    """A :class:`Surrogate` from an object, a name (``"triangle"``) or ``"name:param"``."""
    if isinstance(spec, Surrogate):
        return spec
    if not isinstance(spec, str):
        raise ValueError(
            f"surrogate must be a name from {tuple(SURROGATE_KINDS)} or a Surrogate, got {spec!r}"
        )
    name, sep, param = spec.partition(":")
    check_choice("surrogate", name, SURROGATE_KINDS)
    if sep and not param:
        raise ValueError(f"surrogate parameter is empty in {spec!r}; expected {name!r} or "
                         f"'{name}:<number>'")
    if param:
        try:
            a = float(param)
        except ValueError:
            raise ValueError(f"surrogate parameter must be a number, got {spec!r}") from None
    else:
        a = DEFAULT_PARAM[name]
    return Surrogate(name, a)

"""Spike encoders: a batch ``x`` of shape ``(B, ...)`` -> a time-major input ``(T, B, ...)``.

* :class:`DirectEncoder` repeats ``x`` at every step (a stride-0 view, no copy);
* :class:`PoissonEncoder` draws Bernoulli spikes with rate ``|x|`` per step (ASF-BP's input);
* :class:`EventEncoder` passes per-sample event frames ``(B, F, 2, H, W)`` through as
  ``(T, B, 2, H, W)`` (``"nmnist"``; F / T frames summed per step);
* :class:`SequenceEncoder` does the same for per-sample sequences ``(B, F, D)``
  (``"digits-rows"``: one image row per step) -> ``(T, B, D)``.

All of them also stream the steps in chunks (:meth:`Encoder.chunks`) so that a forward pass
never holds all ``T`` steps of the input. Encoders keep the array module of their input: a CuPy
batch gives a CuPy encoding, drawn on the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import backend
from .._check import check_choice, check_fits_memory, check_float_array, check_int

__all__ = ["ENCODERS", "TIME_ENCODERS", "Encoder", "DirectEncoder", "PoissonEncoder",
    "EventEncoder", "SequenceEncoder", "check_encoder", "make_encoder"]

ENCODERS = ("direct", "poisson", "events", "sequence")
#: datasets whose samples already carry their time steps, and the encoder that passes them on
TIME_ENCODERS = {"nmnist": "events", "digits-rows": "sequence"}


# ----------------------------------------------------------------------------------------------
# encoders: (B, ...) -> time-major (T, B, ...)
# ----------------------------------------------------------------------------------------------

class Encoder:
    """Turns a batch ``x`` ``(B, ...)`` into the network's time-major input ``(T, B, ...)``.

    Subclasses implement :meth:`_next_steps` (the next ``n`` steps); :meth:`encode` returns all
    ``T`` at once, :meth:`chunks` streams them. For the same encoder state, the concatenation of
    ``chunks(x, T, time_chunk)`` along axis 0 equals ``encode(x, T)``.
    """

    name = "encoder"

    def _next_steps(self, x: Any, n: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, x: Any, T: int) -> Any:
        """All ``T`` steps, shape ``(T,) + x.shape``, same array module and dtype as ``x``."""
        check_float_array("x", x, min_ndim=1)
        T = check_int("T", T, minimum=1)
        check_fits_memory("T", T * int(x.size) * x.dtype.itemsize,
                          f"{T} steps of an input of shape {tuple(x.shape)}")
        return self._next_steps(x, T)

    def chunks(self, x: Any, T: int, time_chunk: int) -> Iterator[Any]:
        """Successive ``(Tc, B, ...)`` pieces of the encoding, ``Tc = time_chunk`` (the last may
        be shorter), so that a streaming forward never holds all ``T`` steps of the input."""
        check_float_array("x", x, min_ndim=1)
        T = check_int("T", T, minimum=1)
        time_chunk = check_int("time_chunk", time_chunk, minimum=1)

        def pieces() -> Iterator[Any]:
            for t0 in range(0, T, time_chunk):
                yield self._next_steps(x, min(time_chunk, T - t0))

        return pieces()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class DirectEncoder(Encoder):
    """Direct (repeat) encoding: the analog input is presented unchanged at every step.

    ``encode(x, T)`` is ``xp.broadcast_to(x, (T,) + x.shape)``: a read-only view with stride 0
    on the time axis, no copy. A first layer can detect it (``x.strides[0] == 0``) and run its
    GEMM once on ``x[0]`` instead of ``T`` times on identical rows. Do not write into it.
    """

    name = "direct"

    def _next_steps(self, x: Any, n: int) -> Any:
        xp = backend.array_module(x)
        return xp.broadcast_to(x, (n,) + tuple(x.shape))


class PoissonEncoder(Encoder):
    """Bernoulli ("Poisson") rate coding, ASF-BP's input layer (paper Alg. 1 line 3,
    the authors' code, github.com/neural-lab/ASF-BP).

    At every step, independently for each entry::

        spike = (|x| > U) · sign(x),    U ~ Uniform[0, 1)        (signed=True)
        spike = (x > U)                                          (signed=False)

    so an entry fires with rate ``clip(|x|, 0, 1)``: ``|x| >= 1`` fires every step, ``x = 0``
    never, and with ``signed=False`` negative entries never fire. Signed coding lets
    mean/std-normalised images (which are negative below the mean) drive the network, as in the
    ASF-BP CIFAR code; its MNIST scripts use rate ``|x|/2`` (scale ``x`` yourself for that).

    Randomness comes from a generator seeded with ``seed``, one per array module: NumPy's
    ``default_rng`` on the host, ``cupy.random.RandomState`` for CuPy inputs (drawn on the
    device). Each step draws one uniform array of ``x.shape`` in ``x.dtype``, so ``encode`` and
    ``chunks`` consume the generator identically.
    """

    name = "poisson"

    def __init__(self, seed: int = 0, signed: bool = True) -> None:
        self.seed = check_int("seed", seed, minimum=0)
        self.signed = bool(signed)
        self._generators: dict[str, Any] = {}

    def _uniform(self, xp: Any, shape: tuple[int, ...], dtype: Any) -> Any:
        gen = self._generators.get(xp.__name__)
        if gen is None:
            gen = (np.random.default_rng(self.seed) if xp is np
                   else xp.random.RandomState(self.seed))
            self._generators[xp.__name__] = gen
        if xp is np:
            return gen.random(shape, dtype=dtype)
        return gen.random_sample(size=shape, dtype=dtype)

    def _next_steps(self, x: Any, n: int) -> Any:
        xp = backend.array_module(x)
        out = xp.empty((n,) + tuple(x.shape), dtype=x.dtype)
        rate = xp.abs(x) if self.signed else x
        sign = xp.sign(x) if self.signed else None
        for t in range(n):
            fired = rate > self._uniform(xp, tuple(x.shape), x.dtype)
            if sign is None:
                out[t] = fired
            else:
                xp.multiply(fired, sign, out=out[t])
        return out

    def __repr__(self) -> str:
        return f"PoissonEncoder(seed={self.seed}, signed={self.signed})"


class EventEncoder(Encoder):
    """Event frames pass through: a batch of per-sample frames ``(B, F, C, H, W)`` (the
    ``"nmnist"`` dataset, :mod:`pysnn_ref.data.events`) becomes time-major ``(T, B, C, H, W)``.

    ``T`` must divide ``F``; each step is the sum of ``F / T`` consecutive frames, which is
    exactly the ``T``-frame integration of the same events (the binnings nest), so one stored
    framing serves every ``T`` that divides it (TIT stages too).
    """

    name = "events"

    frame_ndim = 5             #: ``(B, F, C, H, W)``
    frames = "event frames"    #: what the F axis holds (for the error message)

    def encode(self, x: Any, T: int) -> Any:
        check_float_array("x", x, ndim=self.frame_ndim)
        T = check_int("T", T, minimum=1)
        B, F = int(x.shape[0]), int(x.shape[1])
        if F % T:
            raise ValueError(f"T must divide the {F} {self.frames} per sample, got {T}")
        xp = backend.array_module(x)
        xt = xp.moveaxis(x, 1, 0)
        if F != T:
            xt = xt.reshape(T, F // T, B, *x.shape[2:]).sum(axis=1)
        return xp.ascontiguousarray(xt)

    def chunks(self, x: Any, T: int, time_chunk: int) -> Iterator[Any]:
        full = self.encode(x, T)
        time_chunk = check_int("time_chunk", time_chunk, minimum=1)
        return (full[t0:t0 + time_chunk] for t0 in range(0, int(full.shape[0]), time_chunk))


class SequenceEncoder(EventEncoder):
    """Per-sample sequences pass through: ``(B, F, D)`` (``"digits-rows"``: F = 8 rows of
    D = 8 pixels) becomes time-major ``(T, B, D)``.  As for events, ``T`` must divide ``F``
    and each step sums ``F / T`` consecutive entries (T = F: one row per step)."""

    name = "sequence"
    frame_ndim = 3
    frames = "steps"


def check_encoder(dataset: str, encoder: str) -> None:
    """Datasets that carry their own time steps (:data:`TIME_ENCODERS`) go with their encoder,
    and that encoder only with them; one error line otherwise."""
    need = TIME_ENCODERS.get(dataset)
    if need is not None and encoder != need:
        raise ValueError(f"--encoder {encoder} with --dataset {dataset}: its samples carry their "
                         f"own time steps; use --encoder {need}")
    if need is None and encoder in TIME_ENCODERS.values():
        owner = [d for d, e in TIME_ENCODERS.items() if e == encoder][0]
        raise ValueError(f"--encoder {encoder} with --dataset {dataset}: it passes on per-sample "
                         f"time steps (--dataset {owner}); use --encoder direct or poisson")


def make_encoder(name: str, seed: int = 0) -> Encoder:
    """``"direct"`` -> :class:`DirectEncoder`; ``"poisson"`` -> :class:`PoissonEncoder(seed)`;
    ``"events"`` -> :class:`EventEncoder` (event-frame datasets); ``"sequence"`` ->
    :class:`SequenceEncoder` (sequence datasets)."""
    check_choice("encoder", name, ENCODERS)
    if name == "events":
        return EventEncoder()
    if name == "sequence":
        return SequenceEncoder()
    return DirectEncoder() if name == "direct" else PoissonEncoder(seed)

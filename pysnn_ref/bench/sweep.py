"""The benchmark sweep called from Python: :func:`benchmark` takes the command line's options as
keyword arguments (``python -m pysnn_ref.bench --model mlp --T 4,8`` is
``benchmark(model="mlp", T=(4, 8))``), checks them and returns the records of
:func:`pysnn_ref.bench.measure.run_benchmark` -- one dict per (method, T) with the fields of
:data:`pysnn_ref.bench.measure.FIELDS` (``forward_s``, ``backward_s``, ``peak_mem_bytes``, ...).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from .._check import check_choice, check_int
from ..functional.loss import LOSSES
from ..methods import FAMILY_FLOW
from .measure import (
    DTYPES,
    ENCODER_CHOICES,
    METHOD_CHOICES,
    all_models,
    build_model,
    default_input_shape,
    run_benchmark,
)

__all__ = ["benchmark"]


def benchmark(*, model: str = "mlp", methods: Sequence[str] = ("bptt", "asf", "ssf"),
              T: Sequence[int] = (4, 8, 16, 32), batch_size: int = 64, device: str = "cpu",
              dtype: str = "float32", loss: str = "sdt", encoder: str = "direct",
              repeats: int = 5, warmup: int = 2, input_shape: Sequence[int] | None = None,
              classes: int = 10, time_chunk: int | None = None, lam: float = 0.5,
              v_th: float = 1.0, reset: str = "hard", surrogate: str = "triangle",
              lr: float = 0.01, seed: int = 0, memory: bool = True,
              log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Time one training step (forward, backward, SGD step) and measure its peak memory for
    every method and every T (SSF Fig. 1, Table 1), as ``python -m pysnn_ref.bench`` does.
    The keyword arguments not listed below are the command line's flags of the same names
    (``batch_size`` is ``--batch-size``, ``v_th`` is ``--v-th``, ...).

    Args:
        model: ``mlp``, ``convnet`` or any model of :mod:`pysnn_ref.models`.
        methods: training methods (``bptt``, ``asf``, ``ssf``, ``dsr``, ``rate``).
        T: the numbers of time steps to sweep.
        repeats: timed steps per configuration (the records hold their medians).
        warmup: untimed steps first (>= 1).
        input_shape: one sample's shape (default: the model's, e.g. ``(1, 28, 28)``).
        memory: also measure the peak memory of one step (``peak_mem_bytes``).
        log: called with one progress line per configuration (default: silent).

    Returns:
        One record (dict) per (method, T), fields as in :data:`pysnn_ref.bench.measure.FIELDS`.
    """
    check_choice("model", model, all_models())
    if isinstance(methods, str) or not methods:
        raise ValueError(f"methods must be a non-empty sequence of {METHOD_CHOICES}, "
                         f"got {methods!r}")
    for m in methods:
        check_choice("methods", m, METHOD_CHOICES)
        if m in FAMILY_FLOW and device != "cpu":
            raise ValueError(f"methods: {m!r} has no GPU kernels yet; use device='cpu'")
    if isinstance(T, int) or not T:
        raise ValueError(f"T must be a non-empty sequence of integers >= 1, got {T!r}")
    Ts = [check_int("T", t) for t in T]
    check_choice("device", device, ("cpu", "gpu"))
    check_choice("dtype", dtype, DTYPES)
    check_choice("loss", loss, LOSSES)
    check_choice("encoder", encoder, ENCODER_CHOICES)
    check_choice("reset", reset, ("hard", "soft"))
    for name, v in (("batch_size", batch_size), ("repeats", repeats), ("warmup", warmup)):
        check_int(name, v)
    check_int("classes", classes, minimum=2)
    if time_chunk is not None:
        check_int("time_chunk", time_chunk)
    shape = tuple(input_shape) if input_shape is not None else default_input_shape(model)
    # build the network once now: a bad shape or option fails before anything runs
    build_model(model, shape, classes, lam=lam, v_th=v_th, reset=reset, surrogate=surrogate,
                seed=seed)
    args = argparse.Namespace(
        model=model, methods=list(dict.fromkeys(methods)), T=Ts, batch_size=batch_size,
        device=device, dtype=dtype, loss=loss, encoder=encoder, repeats=repeats, warmup=warmup,
        input_shape=shape, classes=classes, time_chunk=time_chunk, lam=lam, v_th=v_th,
        reset=reset, surrogate=surrogate, lr=lr, seed=seed, no_memory=not memory,
        vs_torch=False, profile=False, kernel_times=0)
    return run_benchmark(args, log=log if log is not None else (lambda s: None))

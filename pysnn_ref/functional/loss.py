"""Losses on the per-time-step readout ``y`` of shape ``(T, B, C)`` and integer labels ``(B,)``.

The output layer of every network here does not spike: ``y[t]`` is the pre-synaptic input (the
readout current) of the output neurons at step ``t`` -- TET's ``O(t)``, ASF's ``I^{t,N}``.
Each loss is a forward/backward pair in the style of the layers::

    loss, cache = tet_loss_forward(y, labels, lam=0.05)
    dy = tet_loss_backward(cache)          # dL/dy, shaped like y

``loss`` is a Python ``float`` for NumPy ``y`` and a 0-d CuPy array for CuPy ``y``: the
reductions are CuPy ops and their result stays on the device, so a training step never waits
for the GPU to read its loss (``float(loss)`` reads it; the trainer does so once per read-out,
see docs/gpu.md "Host syncs in the step").  ``dy`` is an array of the same module (NumPy or
CuPy), shape and dtype as ``y``.

Losses implemented (reductions are stated in each docstring):

* :func:`sdt_loss_forward` -- TET paper Eq. 7, cross-entropy of the time-averaged output
  ("standard direct training").
* :func:`tet_loss_forward` -- TET paper Eqs. 9, 12, 13: per-step cross-entropy plus the
  ``(y - phi)^2`` regulariser.
* :func:`asf_mse_loss_forward` -- ASF-BP paper Eq. 6: squared error between the one-hot label and
  the output membrane ``u_T = sum_t y[t]`` scaled by ``1 / (T * v_th)``.

:func:`predict` and :func:`accuracy` read the class from the time-averaged output, the rule used
at test time by both papers (the largest average membrane potential / input increment).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from .. import backend
from .._check import check_choice, check_float_array, check_in_range, check_positive

__all__ = [
    "sdt_loss_forward",
    "sdt_loss_backward",
    "tet_loss_forward",
    "tet_loss_backward",
    "asf_mse_loss_forward",
    "asf_mse_loss_backward",
    "log_softmax",
    "predict",
    "accuracy",
    "LOSSES",
    "PER_STEP_LOSSES",
    "is_per_step",
    "loss_pair",
]


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------

def log_softmax(z: Any, axis: int = -1) -> Any:
    """Numerically stable ``log softmax(z)`` along ``axis``: ``z - m - log Σ exp(z - m)``, m=max."""
    xp = backend.array_module(z)
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def _check_output(y: Any) -> tuple[int, int, int]:
    """``y`` must be a float array ``(T, B, C)`` with T, B, C >= 1."""
    check_float_array("y", y, ndim=3)
    T, B, C = (int(s) for s in y.shape)
    if T < 1 or B < 1 or C < 1:
        raise ValueError(f"y must have shape (T, B, C) with T, B, C >= 1, got {tuple(y.shape)}")
    return T, B, C


def _check_labels(labels: Any, B: int, C: int, xp: Any) -> Any:
    """``labels`` must be an integer array of shape ``(B,)`` with values in ``[0, C)``.

    Returns it as an int64 array of the module ``xp`` (the module of ``y``).  The value range is
    checked for host (NumPy) labels only: for labels already on the device it would cost a
    device->host sync per call (the trainer's labels come from a :class:`~pysnn_ref.data.Dataset`,
    whose labels lie in ``[0, num_classes)``).
    """
    if not hasattr(labels, "dtype") or not hasattr(labels, "shape"):
        raise ValueError(f"labels must be an integer array of shape ({B},), "
                         f"got {type(labels).__name__}")
    if np.dtype(labels.dtype).kind not in "iu":
        raise ValueError(f"labels must have an integer dtype, got {labels.dtype}")
    if tuple(labels.shape) != (B,):
        raise ValueError(f"labels must have shape ({B},) (one label per batch element of y), "
                         f"got {tuple(labels.shape)}")
    if not backend.is_gpu_array(labels):
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= C:
            raise ValueError(f"labels must lie in [0, {C}) (C = y.shape[2]), "
                             f"got values in [{lo}, {hi}]")
    return xp.asarray(labels, dtype=np.int64)


def _one_hot(labels: Any, C: int, dtype: Any, xp: Any) -> Any:
    """``(B, C)`` one-hot matrix of ``labels`` in ``dtype``."""
    out = xp.zeros((labels.shape[0], C), dtype=dtype)
    out[xp.arange(labels.shape[0]), labels] = 1
    return out


# ----------------------------------------------------------------------------------------------
# SDT: cross-entropy of the mean output (TET paper Eq. 7)
# ----------------------------------------------------------------------------------------------

def sdt_loss_forward(y: Any, labels: Any) -> tuple[float, dict[str, Any]]:
    """Standard direct training loss, TET paper (Deng et al., ICLR 2022) Eq. 7.

    ``L_SDT = CE( (1/T) Σ_t y[t], labels )``: the cross-entropy of the time-averaged output,
    averaged over the batch (``-(1/B) Σ_b log softmax(ȳ_b)[labels_b]``).

    Args:
        y: output-layer readout, float array ``(T, B, C)``.
        labels: integer class labels ``(B,)`` in ``[0, C)``.

    Returns:
        ``(loss, cache)``; pass ``cache`` to :func:`sdt_loss_backward`.
    """
    T, B, C = _check_output(y)
    xp = backend.array_module(y)
    labels = _check_labels(labels, B, C, xp)
    y_mean = y.mean(axis=0)                                   # (B, C), Eq. 7's O_mean
    logp = log_softmax(y_mean, axis=1)
    loss = -backend.as_scalar(logp[xp.arange(B), labels].mean())
    cache = {"p": xp.exp(logp), "labels": labels, "shape": (T, B, C), "dtype": y.dtype}
    return loss, cache


def sdt_loss_backward(cache: dict[str, Any]) -> Any:
    """Gradient of :func:`sdt_loss_forward` (TET paper Eq. 8's error term).

    ``dL/dy[t] = (softmax(ȳ) - onehot(labels)) / (T · B)`` -- the same for every step ``t``,
    returned as a read-only view ``(T, B, C)`` of one row (axis 0 of stride 0).
    """
    T, B, C = cache["shape"]
    p, labels = cache["p"], cache["labels"]
    xp = backend.array_module(p)
    d_mean = (p - _one_hot(labels, C, p.dtype, xp)) / B       # dL/dȳ, (B, C)
    # ȳ = (1/T) Σ_t y[t]: one row for every step, as a read-only time-broadcast view (the
    # output layer then needs one GEMM of B rows, functional/linear.py)
    return xp.broadcast_to((d_mean / T).astype(cache["dtype"], copy=False), (T, B, C))


# ----------------------------------------------------------------------------------------------
# TET: per-step cross-entropy + MSE regulariser (TET paper Eqs. 9, 12, 13)
# ----------------------------------------------------------------------------------------------

def tet_loss_forward(y: Any, labels: Any, lam: float = 0.05,
                     phi: float = 1.0) -> tuple[float, dict[str, Any]]:
    """Temporal efficient training loss, TET paper (Deng et al., ICLR 2022) Eqs. 9, 12, 13.

    * Eq. 9:  ``L_TET = (1/T) Σ_t CE(y[t], labels)``, each CE averaged over the batch.
    * Eq. 12: ``L_MSE = (1/T) Σ_t MSE(y[t], phi)``, where MSE averages ``(y[t] - phi)^2`` over
      the ``B · C`` entries -- i.e. the mean of ``(y - phi)^2`` over all ``T · B · C`` entries
      of the output (pre-synaptic input of the output layer, the paper's ``O(t)``).
    * Eq. 13: ``L = (1 - lam) · L_TET + lam · L_MSE``.

    This matches the authors' ``TET_loss``
    (github.com/brain-intelligence-lab/temporal_efficient_training: ``MSELoss``, mean reduction,
    against ``full_like(outputs, phi)``). The paper sets ``phi = V_th = 1`` and ``lam = 0.05`` on
    CIFAR (1e-3 on ImageNet / DVS-CIFAR10, also the code's default).

    Args:
        y: output-layer readout, float array ``(T, B, C)``.
        labels: integer class labels ``(B,)`` in ``[0, C)``.
        lam: weight of the regulariser, in ``[0, 1]``.
        phi: target of the regulariser (a finite number).

    Returns:
        ``(loss, cache)``; ``cache["l_tet"]`` and ``cache["l_mse"]`` hold the two terms.
    """
    T, B, C = _check_output(y)
    xp = backend.array_module(y)
    labels = _check_labels(labels, B, C, xp)
    lam = check_in_range("lam", lam, 0.0, 1.0, lo_open=False)
    try:
        phi = float(phi)
    except (TypeError, ValueError):
        raise ValueError(f"phi must be a finite number, got {phi!r}") from None
    if not np.isfinite(phi):
        raise ValueError(f"phi must be a finite number, got {phi!r}")
    logp = log_softmax(y, axis=2)                             # (T, B, C)
    l_tet = -backend.as_scalar(logp[:, xp.arange(B), labels].mean())    # mean over t and b: Eq. 9
    l_mse = backend.as_scalar(((y - phi) ** 2).mean())                  # mean over t, b, c: Eq. 12
    loss = (1.0 - lam) * l_tet + lam * l_mse                  # Eq. 13
    cache = {"p": xp.exp(logp), "y": y, "labels": labels, "lam": lam, "phi": phi,
             "l_tet": l_tet, "l_mse": l_mse}
    return loss, cache


def tet_loss_backward(cache: dict[str, Any]) -> Any:
    """Gradient of :func:`tet_loss_forward` (TET paper Eq. 10 plus the regulariser).

    ``dL/dy[t] = (1 - lam) · (softmax(y[t]) - onehot) / (T·B) + lam · 2 (y[t] - phi) / (T·B·C)``.
    """
    p, y, labels, lam, phi = (cache[k] for k in ("p", "y", "labels", "lam", "phi"))
    xp = backend.array_module(p)
    T, B, C = p.shape
    dy = p.copy()                                             # softmax(y[t])
    dy[:, xp.arange(B), labels] -= 1                          # - onehot
    dy *= (1.0 - lam) / (T * B)
    dy += (2.0 * lam / (T * B * C)) * (y - phi)
    return dy.astype(y.dtype, copy=False)


# ----------------------------------------------------------------------------------------------
# ASF: MSE on the accumulated output membrane (ASF-BP paper Eq. 6)
# ----------------------------------------------------------------------------------------------

def asf_mse_loss_forward(y: Any, labels: Any, v_th: float = 1.0) -> tuple[float, dict[str, Any]]:
    """Output-membrane MSE loss, ASF-BP paper (Wu et al., AAAI 2021) Eq. 6.

    The output layer never fires; its membrane accumulates the inputs, ``u_T = Σ_t y[t]``, and

    ``L = (1/B) Σ_b  1/2 || Y_b - u_T,b / (T · v_th) ||^2``

    with ``Y`` the one-hot label: summed over the ``C`` classes, **averaged** over the batch. The
    authors' code (github.com/neural-lab/ASF-BP) uses ``MSELoss(reduction='sum')``, i.e. sums over
    the batch (and omits the 1/2); we average so that the learning rate does not depend on the batch
    size. Multiply the loss and gradient by ``2B`` to recover the code's values.

    Args:
        y: output-layer readout (input current of the non-spiking output neurons), ``(T, B, C)``.
        labels: integer class labels ``(B,)`` in ``[0, C)``.
        v_th: firing threshold used to scale the membrane, > 0.

    Returns:
        ``(loss, cache)``; pass ``cache`` to :func:`asf_mse_loss_backward`.
    """
    T, B, C = _check_output(y)
    xp = backend.array_module(y)
    labels = _check_labels(labels, B, C, xp)
    v_th = check_positive("v_th", v_th)
    out = y.sum(axis=0) / (T * v_th)                          # u_T / (T v_th), (B, C)
    err = out - _one_hot(labels, C, y.dtype, xp)
    loss = 0.5 * backend.as_scalar((err * err).sum()) / B
    cache = {"err": err, "shape": (T, B, C), "v_th": v_th}
    return loss, cache


def asf_mse_loss_backward(cache: dict[str, Any]) -> Any:
    """Gradient of :func:`asf_mse_loss_forward`.

    ``dL/dy[t] = (u_T / (T v_th) - Y) / (B · T · v_th)`` -- the same for every step ``t``.
    """
    T, B, C = cache["shape"]
    err = cache["err"]
    xp = backend.array_module(err)
    dy = xp.empty((T, B, C), dtype=err.dtype)
    dy[...] = err / (B * T * cache["v_th"])
    return dy


# ----------------------------------------------------------------------------------------------
# prediction
# ----------------------------------------------------------------------------------------------

def predict(y: Any) -> Any:
    """Predicted classes ``(B,)``: ``argmax_c (1/T) Σ_t y[t, :, c]`` (int64, same module as ``y``).

    The time-averaged output is the test-time rule of TET (``outputs.mean(1)``) and, up to the
    positive factor ``T``, ASF's "neuron with the highest membrane potential".
    """
    _check_output(y)
    return y.mean(axis=0).argmax(axis=1).astype(np.int64)


def accuracy(y: Any, labels: Any) -> float:
    """Fraction of the batch whose :func:`predict` equals ``labels`` (a Python float in [0, 1])."""
    _, B, C = _check_output(y)
    xp = backend.array_module(y)
    labels = _check_labels(labels, B, C, xp)
    return float((predict(y) == labels).mean())


# ----------------------------------------------------------------------------------------------
# the losses by name (the training CLI, the benchmark and the gradient checks use this table)
# ----------------------------------------------------------------------------------------------

#: ``name -> (forward, backward)`` with the forward's default hyper-parameters
LOSS_PAIRS: dict[str, tuple[Callable, Callable]] = {
    "sdt": (sdt_loss_forward, sdt_loss_backward),
    "tet": (tet_loss_forward, tet_loss_backward),
    "asf-mse": (asf_mse_loss_forward, asf_mse_loss_backward),
}
LOSSES = tuple(LOSS_PAIRS)
#: the losses whose gradient ``dL/dy[t]`` differs from step to step (TET Eq. 9: a loss per
#: step); the others' is the same at every step (SDT Eq. 7 and ASF Eq. 6 read only the time
#: mean / sum of ``y``) -- the one place that says which is which
PER_STEP_LOSSES = ("tet",)


def is_per_step(name: str) -> bool:
    """Whether loss ``name`` (one of :data:`LOSSES`) has a per-step gradient
    (:data:`PER_STEP_LOSSES`).

    A flow method back-propagates such a gradient per step through the layers above the top
    spiking layer (the output layer's ``dW = sum_t dy[t]^T x[t]`` exactly); for the others it
    collapses ``dy`` to one ``(B, C)`` gradient first, which is exact there
    (:meth:`pysnn_ref.methods.Method.backward`)."""
    return check_choice("loss", name, LOSSES) in PER_STEP_LOSSES


def loss_pair(name: str, *, tet_lambda: float | None = None,
              v_th: float | None = None) -> tuple[Callable, Callable]:
    """``(forward(y, labels) -> (loss, cache), backward(cache) -> dy)`` of loss ``name``, one of
    :data:`LOSSES`.  ``tet_lambda`` (TET's lambda) and ``v_th`` (the ASF MSE target's scale) bind
    the forward's hyper-parameter where given; otherwise its default holds."""
    fwd, bwd = LOSS_PAIRS[check_choice("loss", name, LOSSES)]
    if name == "tet" and tet_lambda is not None:
        fwd = partial(fwd, lam=tet_lambda)
    elif name == "asf-mse" and v_th is not None:
        fwd = partial(fwd, v_th=v_th)
    return fwd, bwd

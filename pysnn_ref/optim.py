"""Optimizers and learning-rate schedules, written out from their update equations.

Optimizers update a list of :class:`pysnn_ref.parameter.Parameter` in place. Every operation is
an array operation of the parameter's own module (NumPy or CuPy), so on the GPU a step never
copies to the host. The update rules are those of ``torch.optim.SGD`` and ``torch.optim.Adam``
(written out in each class docstring), so hyperparameters carry over from the papers' code::

    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = CosineLR(0.1, total_epochs=100)
    for epoch in range(100):
        opt.lr = sched.lr_at(epoch)
        for xb, yb in batches:
            opt.zero_grad()
            ...                         # forward, loss, backward fill p.grad
            opt.step()

``state_dict()`` returns a plain ``dict[str, numpy.ndarray]`` (scalars as 0-d arrays), so a
checkpoint is ``numpy.savez(path, **opt.state_dict())`` and
``opt.load_state_dict(numpy.load(path))``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from . import backend
from ._check import check_choice, check_in_range, check_int, check_positive
from .kernels import provides
from .parameter import Parameter

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "Schedule",
    "ConstantLR",
    "StepLR",
    "CosineLR",
    "OPTIMIZERS",
    "SCHEDULES",
    "make_optimizer",
    "make_schedule",
]

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "step", "cosine")


def _check_nonneg(name: str, v: Any) -> float:
    """``v`` must be a finite number >= 0."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0, got {v!r}") from None
    if not math.isfinite(f) or f < 0:
        raise ValueError(f"{name} must be a number >= 0, got {v!r}")
    return f


class Optimizer:
    """Base class: holds the parameters, the learning rate ``lr`` and the step count.

    Subclasses define ``_hyper`` (names of float hyperparameters saved in the state dict),
    ``_buffers`` (names of per-parameter state arrays) and :meth:`step`.
    """

    name = "optimizer"
    _hyper: tuple[str, ...] = ()
    _buffers: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        params = list(params)
        if not params:
            raise ValueError("params must be a non-empty list of Parameter, got an empty list")
        for i, p in enumerate(params):
            if not (hasattr(p, "data") and hasattr(p, "grad")):
                raise ValueError(f"params[{i}] must be a Parameter (with .data and .grad), "
                                 f"got {type(p).__name__}")
        self.params: list[Parameter] = params
        self.lr = lr
        self.steps = 0
        # per-parameter state, None until the first step creates it
        self.state: dict[str, list[Any]] = {b: [None] * len(params) for b in self._buffers}

    @property
    def lr(self) -> float:
        """The learning rate used by the next :meth:`step` (settable, e.g. by a schedule)."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _check_nonneg("lr", value)

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero (in place)."""
        for p in self.params:
            p.grad[...] = 0

    def step(self) -> None:  # pragma: no cover - abstract
        """Update every parameter in place from its ``grad`` (one optimizer step)."""
        raise NotImplementedError

    def _regularised_grad(self, p: Parameter, weight_decay: float) -> Any:
        """``g = grad + weight_decay · data`` (L2 penalty in the gradient); ``grad`` untouched."""
        if weight_decay == 0.0:
            return p.grad
        return p.grad + weight_decay * p.data

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """The optimizer state as ``{str: numpy.ndarray}``: host copies, safe to ``np.savez``.

        Keys: ``"optimizer"`` (the name), ``"lr"``, ``"steps"``, one per hyperparameter, and
        ``"<buffer>.<i>"`` for each per-parameter state array that exists (index ``i`` into
        ``params``).
        """
        sd: dict[str, np.ndarray] = {
            "optimizer": np.array(self.name),
            "lr": np.array(self.lr, dtype=np.float64),
            "steps": np.array(self.steps, dtype=np.int64),
        }
        for h in self._hyper:
            sd[h] = np.array(getattr(self, h), dtype=np.float64)
        for b, bufs in self.state.items():
            for i, buf in enumerate(bufs):
                if buf is not None:
                    sd[f"{b}.{i}"] = backend.to_numpy(buf).copy()
        return sd

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` (also a ``numpy.load`` of a saved one).

        Restores ``lr``, the step count, the hyperparameters (as ``torch.optim`` does) and the
        per-parameter buffers, moved to each parameter's device. Raises ``ValueError`` when the
        state belongs to another optimizer or to parameters of other shapes.
        """
        try:
            name = str(np.asarray(state["optimizer"]))
        except KeyError:
            raise ValueError("state must be an optimizer state_dict with key 'optimizer'") from None
        if name != self.name:
            raise ValueError(f"state is for optimizer {name!r}, cannot load into {self.name!r}")
        buffers: dict[str, list[Any]] = {b: [None] * len(self.params) for b in self._buffers}
        for key in state:
            if "." not in key:
                continue
            b, _, idx = key.partition(".")
            if b not in buffers or not idx.isdigit() or int(idx) >= len(self.params):
                raise ValueError(f"state has key {key!r}, which does not fit this {self.name} "
                                 f"with {len(self.params)} parameters")
            i = int(idx)
            p = self.params[i]
            arr = np.asarray(state[key])
            if arr.shape != tuple(p.data.shape):
                raise ValueError(f"state[{key!r}] must have shape {tuple(p.data.shape)} "
                                 f"(params[{i}]), got {arr.shape}")
            xp = backend.array_module(p.data)
            buffers[b][i] = xp.array(arr, dtype=p.data.dtype)
        try:
            lr = float(np.asarray(state["lr"]))
            steps = int(np.asarray(state["steps"]))
            hyper = {h: float(np.asarray(state[h])) for h in self._hyper}
        except KeyError as e:
            raise ValueError(f"state is missing key {e.args[0]!r}") from None
        self._set_hyper(**hyper)
        self.lr = lr
        self.steps = check_int("steps", steps, minimum=0)
        self.state = buffers

    def _set_hyper(self, **hyper: float) -> None:  # pragma: no cover - overridden
        for k, v in hyper.items():
            setattr(self, k, v)

    def __repr__(self) -> str:
        hyper = ", ".join(f"{h}={getattr(self, h)!r}" for h in self._hyper)
        return f"{type(self).__name__}(lr={self.lr!r}, {hyper}, params={len(self.params)})"


def _fused_kernels(p: Parameter, *state: Any) -> Any:
    """The CPU kernel module when it has the fused updates (kernels/cpu/ section 9) and every
    array is C-contiguous with the parameter's dtype, else None (the NumPy/CuPy code of the
    optimizers, the teaching text, runs).  Small parameters keep the NumPy code too: a parallel
    kernel launch costs more than their update (``K.FUSED_UPDATE_MIN_SIZE``)."""
    K = backend.kernels_for(p.data)
    if not provides(K, "adam_update") or p.data.size < K.FUSED_UPDATE_MIN_SIZE:
        return None
    arrays = (p.data, p.grad, *state)
    if all(a.flags.c_contiguous and a.dtype == p.data.dtype for a in arrays):
        return K
    return None


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay.

    The update of ``torch.optim.SGD`` (dampening 0), per parameter ``p`` with gradient ``grad``::

        g = grad + weight_decay · p
        if momentum > 0:
            buf = g                          (first step)
            buf = momentum · buf + g         (later steps)
            g = g + momentum · buf  if nesterov  else  buf
        p = p - lr · g
    """

    name = "sgd"
    _hyper = ("momentum", "weight_decay", "nesterov")
    _buffers = ("momentum_buffer",)

    def __init__(self, params: Iterable[Parameter], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(params, lr)
        self._set_hyper(momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)

    def _set_hyper(self, momentum: float, weight_decay: float, nesterov: float | bool) -> None:
        self.momentum = check_in_range("momentum", momentum, 0.0, 1.0, lo_open=False,
                                       hi_open=True)
        self.weight_decay = _check_nonneg("weight_decay", weight_decay)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0, got momentum=0")

    def step(self) -> None:
        """One update of every parameter from its current ``.grad`` (in place)."""
        lr, mu = self.lr, self.momentum
        bufs = self.state["momentum_buffer"]
        for i, p in enumerate(self.params):
            first = mu != 0.0 and bufs[i] is None
            if first:
                bufs[i] = backend.array_module(p.data).empty_like(p.data)
            buf = p.data if mu == 0.0 else bufs[i]  # without momentum the kernel ignores it
            K = _fused_kernels(p, buf)
            if K is not None:  # the same update, one fused Numba pass (kernels/cpu/ sec. 9)
                K.sgd_update(p.data, p.grad, buf, lr, mu, self.weight_decay, first, self.nesterov)
                continue
            g = self._regularised_grad(p, self.weight_decay)
            if mu != 0.0:
                if first:
                    bufs[i][...] = g
                else:
                    bufs[i] *= mu
                    bufs[i] += g
                g = g + mu * bufs[i] if self.nesterov else bufs[i]
            p.data -= lr * g
        self.steps += 1


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with L2 weight decay added to the gradient.

    The update of ``torch.optim.Adam`` (``amsgrad=False``), step count ``t = 1, 2, ...``::

        g = grad + weight_decay · p          (L2 in the gradient, as torch.optim.Adam;
                                              this is not AdamW's decoupled decay)
        m = β1 · m + (1 - β1) · g
        v = β2 · v + (1 - β2) · g²
        p = p - (lr / (1 - β1^t)) · m / (sqrt(v) / sqrt(1 - β2^t) + eps)

    ``m`` and ``v`` start at zero; the two ``1 - β^t`` factors are the bias corrections.
    ASF-BP trains with Adam, lr 5e-4 / 8.5e-4 and weight decay 5e-4 (the authors' code,
    github.com/neural-lab/ASF-BP); TET with Adam lr 1e-3 (its authors' code).
    """

    name = "adam"
    _hyper = ("beta1", "beta2", "eps", "weight_decay")
    _buffers = ("exp_avg", "exp_avg_sq")

    def __init__(self, params: Iterable[Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
        self._set_hyper(beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay)

    def _set_hyper(self, beta1: float, beta2: float, eps: float, weight_decay: float) -> None:
        self.beta1 = check_in_range("betas[0]", beta1, 0.0, 1.0, lo_open=False, hi_open=True)
        self.beta2 = check_in_range("betas[1]", beta2, 0.0, 1.0, lo_open=False, hi_open=True)
        self.eps = check_positive("eps", eps)
        self.weight_decay = _check_nonneg("weight_decay", weight_decay)

    @property
    def betas(self) -> tuple[float, float]:
        """The two moment decay rates ``(beta1, beta2)``."""
        return (self.beta1, self.beta2)

    def step(self) -> None:
        """One update of every parameter from its current ``.grad`` (in place)."""
        self.steps += 1
        t = self.steps
        b1, b2 = self.beta1, self.beta2
        step_size = self.lr / (1.0 - b1 ** t)
        sqrt_bc2 = math.sqrt(1.0 - b2 ** t)
        m_all, v_all = self.state["exp_avg"], self.state["exp_avg_sq"]
        for i, p in enumerate(self.params):
            xp = backend.array_module(p.data)
            if m_all[i] is None:
                m_all[i] = xp.zeros_like(p.data)
                v_all[i] = xp.zeros_like(p.data)
            m, v = m_all[i], v_all[i]
            K = _fused_kernels(p, m, v)
            if K is not None:  # the same update, one fused Numba pass (kernels/cpu/ sec. 9)
                K.adam_update(p.data, p.grad, m, v, step_size, b1, b2, sqrt_bc2, self.eps,
                              self.weight_decay)
                continue
            g = self._regularised_grad(p, self.weight_decay)
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * (g * g)
            denom = xp.sqrt(v)
            denom /= sqrt_bc2
            denom += self.eps
            p.data -= step_size * (m / denom)


# ----------------------------------------------------------------------------------------------
# learning-rate schedules (per epoch)
# ----------------------------------------------------------------------------------------------

class Schedule:
    """A learning rate as a function of the epoch: ``lr_at(epoch) -> float`` (epoch from 0)."""

    def lr_at(self, epoch: int) -> float:  # pragma: no cover - abstract
        """The learning rate of epoch ``epoch`` (0-based)."""
        raise NotImplementedError

    @staticmethod
    def _epoch(epoch: int) -> int:
        return check_int("epoch", epoch, minimum=0)


class ConstantLR(Schedule):
    """``lr_at(epoch) = base_lr`` for every epoch.

    (Not ``torch.optim.lr_scheduler.ConstantLR``, which scales the first epochs by a factor.)
    """

    def __init__(self, base_lr: float) -> None:
        self.base_lr = check_positive("base_lr", base_lr)

    def lr_at(self, epoch: int) -> float:
        self._epoch(epoch)
        return self.base_lr


class StepLR(Schedule):
    """``lr_at(epoch) = base_lr · gamma^(epoch // step_size)``, as torch's ``StepLR``.

    ASF-BP's code decays Adam's learning rate this way with ``gamma = 0.2``
    (github.com/neural-lab/ASF-BP).
    """

    def __init__(self, base_lr: float, step_size: int, gamma: float = 0.1) -> None:
        self.base_lr = check_positive("base_lr", base_lr)
        self.step_size = check_int("step_size", step_size, minimum=1)
        self.gamma = check_in_range("gamma", gamma, 0.0, 1.0)

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (self._epoch(epoch) // self.step_size)


class CosineLR(Schedule):
    """Cosine annealing from ``base_lr`` at epoch 0 to ``min_lr`` at ``total_epochs``.

    ``lr_at(e) = min_lr + (base_lr - min_lr) · (1 + cos(π · e / total_epochs)) / 2``, the closed
    form of ``torch.optim.lr_scheduler.CosineAnnealingLR`` with ``T_max = total_epochs``; epochs
    past ``total_epochs`` stay at ``min_lr``. TET trains with this schedule
    (github.com/brain-intelligence-lab/temporal_efficient_training).
    """

    def __init__(self, base_lr: float, total_epochs: int, min_lr: float = 0.0) -> None:
        self.base_lr = check_positive("base_lr", base_lr)
        self.total_epochs = check_int("total_epochs", total_epochs, minimum=1)
        self.min_lr = _check_nonneg("min_lr", min_lr)
        if self.min_lr > self.base_lr:
            raise ValueError(f"min_lr must be <= base_lr ({self.base_lr}), got {min_lr!r}")

    def lr_at(self, epoch: int) -> float:
        e = min(self._epoch(epoch), self.total_epochs)
        cos = (1.0 + math.cos(math.pi * e / self.total_epochs)) / 2.0
        return self.min_lr + (self.base_lr - self.min_lr) * cos


# ----------------------------------------------------------------------------------------------
# factories (the CLI's --optimizer / --schedule)
# ----------------------------------------------------------------------------------------------

def make_optimizer(name: str, params: Iterable[Parameter], lr: float, **kw: Any) -> Optimizer:
    """``"sgd"`` -> :class:`SGD`, ``"adam"`` -> :class:`Adam`; ``kw`` go to the constructor."""
    check_choice("optimizer", name, OPTIMIZERS)
    cls = {"sgd": SGD, "adam": Adam}[name]
    return cls(params, lr=lr, **kw)


def make_schedule(name: str, base_lr: float, epochs: int, **kw: Any) -> Schedule:
    """``"constant"``, ``"step"`` or ``"cosine"`` schedule for a run of ``epochs`` epochs.

    * ``"constant"``: :class:`ConstantLR` (``epochs`` is only validated).
    * ``"step"``: :class:`StepLR`; ``step_size`` defaults to ``max(1, epochs // 3)``,
      ``gamma`` to 0.1.
    * ``"cosine"``: :class:`CosineLR` with ``total_epochs = epochs``; ``min_lr`` defaults to 0.
    """
    check_choice("schedule", name, SCHEDULES)
    epochs = check_int("epochs", epochs, minimum=1)
    if name == "constant":
        return ConstantLR(base_lr, **kw)
    if name == "step":
        kw.setdefault("step_size", max(1, epochs // 3))
        return StepLR(base_lr, **kw)
    return CosineLR(base_lr, total_epochs=epochs, **kw)

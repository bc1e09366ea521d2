"""Spiking LSTM cell over T steps, forward and exact BPTT backward (the "LSNN" of the
window-partition supplement, Yao et al., Sec. 3.1 Eqs. 1-2).

**What the supplement says.**  Its Eq. 1 counts the cost of one LSNN layer in a window,
``Omega(LSNN-W) = d_x*d_h*8 + d_h*(d_h*8 + 20)``: four gates, each with a ``d_x x d_h`` input
and a ``d_h x d_h`` recurrent weight (a multiply and an add per weight: the factor 8 = 4 gates x
2), plus a few elementwise operations per hidden unit.  It names LSTM-SNN work (Lotfi
Rezaabad & Vishwanath 2020; Datta et al. 2022) but prints no cell equations.  **Where it is
silent we take what a user of the field expects**: the standard LSTM cell (Hochreiter &
Schmidhuber 1997; gate order i, f, g, o and one bias per gate, as PyTorch's ``nn.LSTM`` with
its two biases merged) whose hidden output is a **spike**, as snnTorch's ``SLSTM`` does --
with one change: the recurrent input is the layer's own *spikes* ``s[t-1]`` (snnTorch feeds
back the analog ``o tanh(c)``), so that neurons talk to each other only by spikes.  The gates
stay analog (Lotfi Rezaabad & Vishwanath, and SpikingJelly's ``SpikingLSTMCell``, spike the
gates too; not done here).  Equations, per time step t (``s[-1] = 0``, ``c[-1] = 0``)::

    (L1) z[t] = x[t] W_x^T + s[t-1] W_h^T + b           z = (z_i, z_f, z_g, z_o), each H wide
    (L2) i = sigma(z_i)  f = sigma(z_f)  g = tanh(z_g)  o = sigma(z_o)
    (L3) c[t] = f * c[t-1] + i * g                        the cell state (f plays the leak)
    (L4) u[t] = o * tanh(c[t])                            the membrane, in (-1, 1)
         s[t] = H(u[t] - v_th)                            spike; 0 < v_th < 1

Backward (exact BPTT with the surrogate sigma'(u - v_th) for dH/du; in smooth mode, where the
spike is the surrogate's primitive, it is the exact gradient, checked by finite differences)::

    (B1) ds[t] = dL/ds[t] (from above) + dz[t+1] W_h      dz[T] = 0
    (B2) du = ds sigma'(u - v_th);  do = du tanh(c);  dc[t] = du o (1 - tanh^2 c) + dc[t+1] f[t+1]
    (B3) dz_i = dc g i(1-i);  dz_f = dc c[t-1] f(1-f);  dz_g = dc i (1-g^2);  dz_o = do o(1-o)
    (B4) dx = dz W_x;  dW_x = sum_t dz[t]^T x[t];  dW_h = sum_t dz[t]^T s[t-1];  db = sum dz

Time is folded into the batch wherever the math allows: the input GEMM of (L1) and all of
(B4) run once over all T*B rows (through :mod:`pysnn_ref.functional.linear`, which also takes
the one-GEMM path for a time-broadcast input); only the recurrent GEMMs ``s[t-1] W_h^T`` and
``dz[t+1] W_h`` run per step.  The elementwise (L2)-(L4) and (B2)-(B3) are one fused kernel
call per step (``kernels.reference`` section 8, compiled in ``kernels.cpu``).  The spike and
its surrogate are the library's (:mod:`pysnn_ref.functional.surrogate`).  On the GPU (a kernel
set without a fused LSTM kernel: there is no numba.cuda one yet) the same step runs as CuPy
array code, :func:`cell_forward_array` / :func:`cell_backward_array`, with the spike through
the kernel set's surrogate functions; tested equal to the reference.

Weights: ``W_x`` (4H, D), ``W_h`` (4H, H), ``b`` (4H,), rows in gate order (i, f, g, o).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import backend
from .._check import check_float_array, check_same_shape, check_time_major
from ..kernels import provides
from .linear import LinearCache, linear_backward, linear_forward
from .surrogate import Surrogate, get_surrogate

__all__ = ["LSTMParams", "LSTMCache", "make_lstm_params", "lstm_forward", "lstm_backward",
           "cell_forward_array", "cell_backward_array"]


class LSTMParams(NamedTuple):
    """The spiking LSTM's non-trainable settings: threshold, surrogate, smooth mode."""

    v_th: float
    surrogate: Surrogate
    smooth: bool


class LSTMCache(NamedTuple):
    """What :func:`lstm_backward` needs: the input GEMM's cache, the recurrent weight, the
    activated gates A (T, B, 4H), cell states C (T, B, H) and spikes S (T, B, H)."""

    lin: LinearCache
    W_h: Any
    A: Any
    C: Any
    S: Any
    p: LSTMParams


def make_lstm_params(v_th: float = 0.5, surrogate: str | Surrogate = "triangle",
                     smooth: bool = False) -> LSTMParams:
    """Validate: ``v_th`` in (0, 1) (the membrane u = o tanh(c) lies in (-1, 1)), a known
    surrogate."""
    try:
        v = float(v_th)
    except (TypeError, ValueError):
        v = float("nan")
    if not 0.0 < v < 1.0:
        raise ValueError(f"v_th must be in (0, 1) for the spiking LSTM (its membrane "
                         f"u = o tanh(c) lies in (-1, 1)), got {v_th!r}")
    return LSTMParams(v, get_surrogate(surrogate), bool(smooth))


def _check_weights(x: Any, W_x: Any, W_h: Any, b: Any) -> int:
    check_time_major("x", x, min_ndim=3)
    if x.ndim != 3:
        raise ValueError(f"x must be time-major (T, B, features), got shape {tuple(x.shape)}")
    check_float_array("W_h", W_h, ndim=2)
    H = W_h.shape[1]
    check_same_shape("W_h", W_h, (4 * H, H))
    check_float_array("W_x", W_x, ndim=2)
    check_same_shape("W_x", W_x, (4 * H, x.shape[-1]))
    check_float_array("b", b, ndim=1)
    check_same_shape("b", b, (4 * H,))
    for name, w in (("W_x", W_x), ("W_h", W_h), ("b", b)):
        if w.dtype != x.dtype:
            raise ValueError(f"{name} must have the dtype of x ({x.dtype}), got {w.dtype}")
    return H


def _sigmoid(xp: Any, v: Any) -> Any:
    return 0.5 * (xp.tanh(0.5 * v) + 1.0)      # = 1 / (1 + exp(-v)), never overflows


def cell_forward_array(z: Any, c_prev: Any, v_th: float, smooth: bool, kind: int,
                       a: float) -> tuple[Any, Any, Any]:
    """(L2)-(L4) (WP Sec. 3.1's LSNN cell) for one step as array code: ``(A, c, s)`` like
    the kernels' ``lstm_cell_forward`` (the path of kernel sets without one: the GPU)."""
    xp = backend.array_module(z)
    H = c_prev.shape[1]
    i, f, o = (_sigmoid(xp, z[:, k * H:(k + 1) * H]) for k in (0, 1, 3))
    g = xp.tanh(z[:, 2 * H:3 * H])
    c = f * c_prev + i * g
    x = o * xp.tanh(c) - v_th
    K = backend.kernels_for(z)
    s = K.surrogate_primitive(x, kind, a) if smooth else (x >= 0).astype(z.dtype)
    return xp.concatenate([i, f, g, o], axis=1), c, s


def cell_backward_array(ds: Any, dc_next: Any, A: Any, c_prev: Any, c: Any, v_th: float,
                        kind: int, a: float) -> tuple[Any, Any]:
    """(B2)-(B3), the cell's BPTT adjoint, for one step as array code: ``(dz, dc_carry)``
    like the kernels' ``lstm_cell_backward``."""
    xp = backend.array_module(A)
    H = c_prev.shape[1]
    i, f, g, o = (A[:, k * H:(k + 1) * H] for k in range(4))
    tc = xp.tanh(c)
    du = ds * backend.kernels_for(A).surrogate_grad(o * tc - v_th, kind, a)
    dc = du * o * (1.0 - tc * tc) + dc_next
    dz = xp.concatenate([dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f),
                         dc * i * (1.0 - g * g), du * tc * o * (1.0 - o)], axis=1)
    return dz, dc * f


def lstm_input_gemm(x: Any, W_x: Any, b: Any) -> tuple[Any, LinearCache]:
    """(L1) of WP Sec. 3.1's LSNN (Eq. 1's d_x x d_h gate weights), input part, for all T
    at once: ``x[t] W_x^T + b`` as one GEMM over T*B rows."""
    return linear_forward(x, W_x, b)


def lstm_forward(x: Any, W_x: Any, W_h: Any, b: Any, p: LSTMParams | None = None
                 ) -> tuple[Any, LSTMCache]:
    """Run the spiking LSTM (WP Sec. 3.1, Eq. 1's LSNN) over ``x`` (T, B, D): (L1)-(L4).

    ``p`` from :func:`make_lstm_params` (default: v_th 0.5, triangle surrogate, Heaviside).
    Returns ``(s, cache)``: the spikes (T, B, H) and the cache for :func:`lstm_backward`.
    """
    p = p or make_lstm_params()
    H = _check_weights(x, W_x, W_h, b)
    T, B = x.shape[0], x.shape[1]
    xp = backend.array_module(x)
    K = backend.kernels_for(x)
    cell = K.lstm_cell_forward if provides(K, "lstm_cell_forward") else cell_forward_array
    Zx, lin = lstm_input_gemm(x, W_x, b)                       # (T, B, 4H), (L1) input part
    A = xp.empty((T, B, 4 * H), dtype=x.dtype)
    C = xp.empty((T, B, H), dtype=x.dtype)
    S = xp.empty((T, B, H), dtype=x.dtype)
    c = xp.zeros((B, H), dtype=x.dtype)
    for t in range(T):
        z = Zx[t] if t == 0 else Zx[t] + S[t - 1] @ W_h.T       # (L1) recurrent part
        A[t], C[t], S[t] = cell(z, c, p.v_th, p.smooth, p.surrogate.kind,
                                p.surrogate.a)                  # (L2)-(L4)
        c = C[t]
    return S, LSTMCache(lin, W_h, A, C, S, p)


def lstm_backward(dS: Any, cache: LSTMCache, need_dx: bool = True
                  ) -> tuple[Any | None, Any, Any, Any]:
    """Exact BPTT (B1)-(B4) through :func:`lstm_forward`: ``(dx, dW_x, dW_h, db)`` from
    ``dS`` = dL/ds (T, B, H).  (B1)-(B3) per step, backwards in time; (B4) as GEMMs over all T."""
    lin, W_h, A, C, S, p = cache
    check_time_major("dS", dS, min_ndim=3)
    check_same_shape("dS", dS, S.shape)
    if dS.dtype != S.dtype:
        dS = dS.astype(S.dtype)
    T, B, H = S.shape
    xp = backend.array_module(S)
    K = backend.kernels_for(S)
    cell_bwd = K.lstm_cell_backward if provides(K, "lstm_cell_backward") else cell_backward_array
    dZ = xp.empty((T, B, 4 * H), dtype=S.dtype)
    dc = xp.zeros((B, H), dtype=S.dtype)
    zero = xp.zeros((B, H), dtype=S.dtype)
    for t in range(T - 1, -1, -1):
        ds = dS[t] if t == T - 1 else dS[t] + dZ[t + 1] @ W_h    # (B1)
        dZ[t], dc = cell_bwd(ds, dc, A[t], C[t - 1] if t else zero, C[t],
                             p.v_th, p.surrogate.kind, p.surrogate.a)  # (B2)-(B3)
    dx, dW_x, db = linear_backward(dZ, lin, need_dx=need_dx)      # (B4), all T at once
    if T > 1:
        dW_h = dZ[1:].reshape(-1, 4 * H).T @ S[:-1].reshape(-1, H)
    else:
        dW_h = xp.zeros_like(W_h)
    return dx, dW_x, dW_h, db

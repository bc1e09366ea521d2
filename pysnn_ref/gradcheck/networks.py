"""Finite-difference gradient checking (CS231n style), in float64.

``numerical_gradient(f, x, df)`` perturbs each element of ``x`` by ``±h`` and returns
``Σ (f(x+h) − f(x−h)) · df / 2h`` -- the gradient of ``<f(x), df>`` with respect to ``x``,
which is exactly what a hand-written backward returns for upstream gradient ``df``.
``rel_error`` is the largest difference relative to the arrays' scale,
``max|a−b| / max(1e-8, max|a| + max|b|)``.

Spikes are step functions, so spiking layers are checked in *smooth mode* (the forward spike
is the surrogate's primitive), where the hand-written BPTT backward is the exact gradient.

The two primitives live in :mod:`pysnn_ref.gradcheck.finite_diff` (shared with
:mod:`pysnn_ref.gradcheck.layers`, which this module imports); ``from pysnn_ref.gradcheck import
numerical_gradient, rel_error`` keeps working, as documented in the tutorials.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .finite_diff import numerical_gradient, rel_error
from .layers import layer_gradcheck_cases

__all__ = ["rel_error", "numerical_gradient", "check_neuron", "neuron_gradcheck_cases",
           "named_parameters", "method_gradients", "finite_difference_gradient", "cosine",
           "cosine_vs", "network_gradcheck_cases", "layer_gradcheck_cases",
           "all_gradcheck_cases", "main"]


# --------------------------------------------------------------------------------------------
# Neuron checks: every reset x surrogate x (lam < 1, lam = 1), smooth mode, float64.
# --------------------------------------------------------------------------------------------

def check_neuron(reset: str, surrogate: str, lam: float, *, T: int = 5, shape: tuple = (3, 4),
                 v_th: float = 1.0, detach_reset: bool = False, seed: int = 0,
                 device: str = "cpu") -> float:
    """Max relative error between :func:`lif_backward` and finite differences of the smooth
    forward, for a loss ``sum(o * G)`` with random G.  The analytic gradient runs on
    ``device``; the finite differences always run on the CPU in float64."""
    from ..backend import get_backend, to_numpy
    from ..functional.neuron import lif_backward, lif_forward

    rng = np.random.default_rng(seed)
    I = rng.normal(0.6, 0.8, size=(T, *shape))
    G = rng.normal(size=(T, *shape))
    kw = dict(lam=lam, v_th=v_th, reset=reset, surrogate=surrogate, smooth=True,
              detach_reset=detach_reset)
    be = get_backend(device)
    o, cache = lif_forward(be.asarray(I), **kw)
    dI = to_numpy(lif_backward(be.asarray(G), cache))
    num = numerical_gradient(lambda: lif_forward(I, **kw)[0], I, G)
    return rel_error(dI, num)


def neuron_gradcheck_cases(device: str = "cpu") -> list[tuple[str, str, float]]:
    """(case, parameter, max rel. error) for every neuron configuration."""
    from ..functional.surrogate import SURROGATE_KINDS

    rows = []
    for reset in ("hard", "soft"):
        for sg in SURROGATE_KINDS:
            for lam in (0.8, 1.0):
                name = f"{'LIF' if lam < 1 else 'IF'} reset={reset} surrogate={sg} lam={lam}"
                rows.append((name, "I", check_neuron(reset, sg, lam, device=device)))
    return rows


# --------------------------------------------------------------------------------------------
# Whole-network comparisons: a method's weight gradients vs BPTT's, or vs the finite-difference
# gradient (FDG) of the true spiking loss (Dspike Sec. 4.2, Eq. 10).
# --------------------------------------------------------------------------------------------

def _loss_fns(loss: Any):
    """``(forward, backward)`` of a loss given by name, or the pair itself."""
    from ..functional import loss as L

    if isinstance(loss, tuple):
        return loss
    table = {"sdt": (L.sdt_loss_forward, L.sdt_loss_backward),
             "tet": (L.tet_loss_forward, L.tet_loss_backward),
             "asf-mse": (L.asf_mse_loss_forward, L.asf_mse_loss_backward)}
    if loss not in table:
        raise ValueError(f"loss must be one of {tuple(table)}, got {loss!r}")
    return table[loss]


def named_parameters(net) -> dict[str, Any]:
    """``{"<layer index path>.<name>": Parameter}`` for every parameter of ``net``."""
    out = {}

    def walk(m, prefix):
        for i, c in enumerate(m.children()):
            walk(c, f"{prefix}{i}.")
        for p in m.own_parameters():
            out[prefix + p.name] = p

    walk(net, "")
    return out


class preserved_state:
    """Context manager: restore every buffer (BN running statistics) and every spiking layer's
    ASF scale-factor state after measuring gradients, so a measurement does not train the
    network.  ``with preserved_state(net): ...``"""

    def __init__(self, net) -> None:
        self.net = net

    def __enter__(self):
        from ..nn import LIF

        self.buffers = [(m, n, getattr(m, n).copy()) for m in self.net.modules()
                        for n in m.buffer_names()]
        self.asf = [(m, m.S, list(m._asf_tot)) for m in self.net.modules() if isinstance(m, LIF)]
        return self.net

    def __exit__(self, *exc) -> None:
        for m, n, val in self.buffers:
            getattr(m, n)[...] = val
        for m, S, tot in self.asf:
            m.S, m._asf_tot = S, tot


def _encoded(x, T, encoder):
    """Encode a static batch once, so repeated forward passes see the same (Poisson) spikes."""
    if encoder is None:
        return x, None
    return encoder.encode(x, T), None


def method_gradients(net, method, x, labels, *, loss: str = "sdt", T: int | None = None,
                     encoder: Any = None) -> tuple[float, dict[str, np.ndarray]]:
    """Loss and every parameter's gradient under ``method`` (a name or a Method).

    The network's buffers and ASF state are restored afterwards (:class:`preserved_state`)."""
    from ..methods import Method, make_method

    m = method if isinstance(method, Method) else make_method(method)
    fwd, bwd = _loss_fns(loss)
    x, encoder = _encoded(x, T, encoder)
    with preserved_state(net):
        net.zero_grad()
        y = m.forward(net, x)
        value, cache = fwd(y, labels)
        m.backward(net, bwd(cache))
        grads = {k: p.grad.copy() for k, p in named_parameters(net).items()}
    return float(value), grads


def finite_difference_gradient(net, x, labels, params: list[str], *, loss: str = "sdt",
                               T: int | None = None, encoder: Any = None, eps: float = 0.1,
                               indices: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    """FDG (Dspike Eq. 10): (L(w + eps e_i) - L(w - eps e_i)) / 2 eps for every element of the
    named parameters, with the true spiking (Heaviside) forward.

    ``indices`` (optional, ``{name: flat indices}``) limits the check to those elements (the
    others stay 0), since each element costs two forward passes.  The input is encoded once, so
    a Poisson encoder does not turn the differences into noise, and the network's buffers and
    ASF state are restored afterwards.
    """
    from ..methods import make_method

    m = make_method("bptt")
    fwd, _ = _loss_fns(loss)
    named = named_parameters(net)
    x, _ = _encoded(x, T, encoder)
    out = {}
    with preserved_state(net):
        for name in params:
            w = named[name].data
            g = np.zeros(w.shape)
            flat = w.reshape(-1)
            idx = range(flat.size) if indices is None or name not in indices else indices[name]
            for i in idx:
                old = flat[i]
                flat[i] = old + eps
                lp = fwd(m.forward(net, x), labels)[0]
                flat[i] = old - eps
                lm = fwd(m.forward(net, x), labels)[0]
                flat[i] = old
                g.reshape(-1)[i] = float(lp - lm) / (2 * eps)  # a device loss: read here
            out[name] = g
    return out


def cosine(a: Any, b: Any) -> float:
    """Cosine similarity of two arrays, flattened (0 if either is zero)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return 0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb))


def cosine_vs(net, method, x, labels, *, reference: str = "bptt", loss: str = "sdt",
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
    names = list(named_parameters(net))
    if params is None:
        params = names[:1] if reference == "fdg" else [n for n in names if n.endswith("W")]
    for p in params:
        if p not in names:
            raise ValueError(f"params: unknown parameter {p!r}; expected one of {names}")
    x, encoder = _encoded(x, T, encoder)
    _, g = method_gradients(net, method, x, labels, loss=loss)
    if reference_grads is not None:
        ref = reference_grads
    elif reference == "bptt":
        _, ref = method_gradients(net, "bptt", x, labels, loss=loss)
    else:
        ref = finite_difference_gradient(net, x, labels, params, loss=loss, eps=eps)
    return {p: cosine(g[p], ref[p]) for p in params}


# --------------------------------------------------------------------------------------------
# A small whole network: conv -> tdBN -> LIF -> avg-pool -> linear, loss on the time average.
# --------------------------------------------------------------------------------------------

def network_gradcheck_cases(device: str = "cpu", T: int = 4,
                            seed: int = 0) -> list[tuple[str, str, float]]:
    """BPTT through a small conv network in smooth mode vs finite differences, per parameter
    (and the input).  Analytic gradients on ``device``, finite differences on the CPU."""
    from .. import nn
    from ..backend import get_backend, to_numpy
    from ..functional.loss import sdt_loss_backward, sdt_loss_forward

    rng = np.random.default_rng(seed)
    rows = []
    for reset in ("hard", "soft"):
        net = nn.Sequential(
            # no conv bias: BN removes it, so its true gradient is 0 and only round-off is left
            nn.Conv2d(2, 3, 3, padding=1, bias=False, rng=rng, dtype=np.float64),
            nn.BatchNorm(3, alpha=1.0, v_th=1.0, dtype=np.float64),
            nn.LIF(lam=0.8, v_th=1.0, reset=reset, surrogate="sigmoid", smooth=True),
            nn.AvgPool2d(2),
            nn.Flatten(),
            nn.Linear(3 * 2 * 2, 5, rng=rng, dtype=np.float64),
        )
        x = rng.normal(0.5, 1.0, (T, 3, 2, 4, 4))
        labels = rng.integers(0, 5, 3)
        named = named_parameters(net)

        def loss(net=net, x=x, labels=labels):
            return sdt_loss_forward(net.forward(x), labels)[0]

        numeric = {k: numerical_gradient(loss, p.data) for k, p in named.items()}
        numeric["x"] = numerical_gradient(loss, x)
        be = get_backend(device)
        net.to(device)
        net.zero_grad()
        _, cache = sdt_loss_forward(net.forward(be.asarray(x)), be.asarray(labels))
        dx = net.backward(sdt_loss_backward(cache))
        case = f"network conv-tdBN-LIF({reset})-avgpool-linear T={T}"
        for k, p in named_parameters(net).items():
            rows.append((case, k, rel_error(to_numpy(p.grad), numeric[k])))
        rows.append((case, "x", rel_error(to_numpy(dx), numeric["x"])))
        net.to("cpu")
    return rows + _static_input_network_rows(device, T, rng)


def _static_input_network_rows(device: str, T: int, rng: np.random.Generator
                               ) -> list[tuple[str, str, float]]:
    """Direct encoding (one image broadcast over T steps) and no input gradient: the first
    weight layer's gradient comes from the time sum that the LIF above hands down
    (``nn.Sequential``'s time-summed backward), through LIF + pooling fused and a plain LIF."""
    from .. import nn
    from ..backend import get_backend, to_numpy
    from ..functional.loss import sdt_loss_backward, sdt_loss_forward

    def lif():
        return nn.LIF(lam=0.7, v_th=1.0, surrogate="sigmoid", smooth=True)

    nets = {
        "conv-LIF-avgpool-linear": nn.Sequential(
            nn.Conv2d(2, 3, 3, padding=1, rng=rng, dtype=np.float64), lif(), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(3 * 2 * 2, 5, rng=rng, dtype=np.float64)),
        "linear-LIF-linear": nn.Sequential(
            nn.Flatten(), nn.Linear(2 * 4 * 4, 6, rng=rng, dtype=np.float64), lif(),
            nn.Linear(6, 5, rng=rng, dtype=np.float64)),
    }
    x = np.broadcast_to(rng.normal(0.5, 1.0, (3, 2, 4, 4)), (T, 3, 2, 4, 4))
    labels = rng.integers(0, 5, 3)
    rows = []
    be = get_backend(device)
    for name, net in nets.items():
        named = named_parameters(net)

        def loss(net=net):
            return sdt_loss_forward(net.forward(x), labels)[0]

        numeric = {k: numerical_gradient(loss, p.data) for k, p in named.items()}
        net.to(device)
        net.zero_grad()
        xd = be.asarray(x[0])
        _, cache = sdt_loss_forward(net.forward(be.xp.broadcast_to(xd, x.shape)),
                                    be.asarray(labels))
        net.backward(sdt_loss_backward(cache), need_dx=False)
        case = f"network {name} static input (time-summed backward) T={T}"
        for k, p in named.items():
            rows.append((case, k, rel_error(to_numpy(p.grad), numeric[k])))
        net.to("cpu")
    return rows


def all_gradcheck_cases(device: str = "cpu") -> list[tuple[str, str, float]]:
    """Every check the CLI runs: layers, neurons, a whole network."""
    return (layer_gradcheck_cases(device) + neuron_gradcheck_cases(device)
            + network_gradcheck_cases(device))


TOLERANCE = 1e-6


def _main(argv: list[str] | None = None) -> int:
    from ..cli import ArgumentParser

    ap = ArgumentParser(
        prog="python -m pysnn_ref.gradcheck",
        description="Check every hand-written backward against central finite differences "
                    f"(float64, smooth-mode spikes); fails if any relative error > "
                    f"{TOLERANCE:g}.")
    ap.add_argument("--device", default="cpu", choices=("cpu", "gpu"),
                    help="where the analytic gradients run")
    args = ap.parse_args(argv)
    rows = all_gradcheck_cases(args.device)
    width = max(len(c) for c, _, _ in rows)
    print(f"{'case':<{width}}  {'param':<8} {'rel err':>9}  ok")
    bad = 0
    for case, param, err in rows:
        ok = err <= TOLERANCE
        bad += not ok
        print(f"{case:<{width}}  {param:<8} {err:9.2e}  {'yes' if ok else 'NO'}")
    print(f"{len(rows) - bad} passed, {bad} failed")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m pysnn_ref.gradcheck``: one row per (case, parameter), exit 1 on failure."""
    from ..cli import run_main

    return run_main(_main, "python -m pysnn_ref.gradcheck", argv)


"""Export networks to, and import them from, NIR (the Neuromorphic Intermediate Representation).

NIR (Pedersen et al., "Neuromorphic intermediate representation: a unified instruction set for
interoperable brain-inspired computing", Nature Communications 15, 8122 (2024); the ``nir``
package, github.com/neuromorphs/NIR) is the format snnTorch, Norse, SpikingJelly, Lava and
several chips exchange networks in. :func:`export` turns an :class:`~pysnn_ref.nn.Sequential`
of ``Linear``, ``Conv2d``, ``AvgPool2d``, ``Flatten`` and ``LIF`` layers into a
``nir.NIRGraph``; :func:`import_graph` turns such a chain back into a network. ``nir.write`` /
``nir.read`` store a graph in a file. Install the optional extra: ``pip install -e ".[nir]"``.

The neuron mapping
------------------
NIR's LIF is a continuous-time model,

    tau * dv/dt = (v_leak - v) + r * I,   spike when v > v_threshold, then v <- v_reset,

and a simulator that runs it with time step ``dt`` takes the forward-Euler step

    v[t] = v[t-1] + (dt / tau) * (v_leak - v[t-1] + r * I[t])
         = (1 - dt/tau) * v[t-1] + (dt/tau) * r * I[t]          (v_leak = 0).

Ours (SSF Eqs. 6-7, hard reset) is ``u[t] = lam * v[t-1] + I[t]``, ``o[t] = H(u[t] - v_th)``,
``v[t] = u[t] (1 - o[t])``. The two agree step for step when

    lam = 1 - dt/tau      ->  tau = dt / (1 - lam),
    (dt/tau) * r = 1      ->  r = tau / dt = 1 / (1 - lam),
    v_leak = 0,  v_reset = 0,  v_threshold = v_th,

the mapping snnTorch uses for its ``Leaky`` neuron (its beta is our lam). IF (``lam = 1``) is
NIR's ``IF``, ``dv/dt = r * I``: the Euler step ``v[t] = v[t-1] + dt * r * I[t]`` needs
``r = 1 / dt``. ``dt`` is free (the discrete network does not know its time unit); the default
1e-4 s is snnTorch's, and it is written into the graph's metadata so that :func:`import_graph`
reads it back. Two details differ only on a set of measure zero: we fire at ``u >= v_th``, NIR at
``v > v_threshold``.

What NIR cannot express exactly is refused with one :class:`NIRError` line rather than
approximated: soft reset (NIR resets to ``v_reset``, it does not subtract the threshold), batch
norm (fold it into the weights first), residual blocks, max pooling, the spiking LSTM and the
window model, and on import any neuron whose leak, reset, resistance or threshold has no
counterpart here (``v_leak != 0``, ``v_reset != 0``, ``r != tau/dt``, parameters that differ
between neurons of one layer). NIR carries the network's forward pass: training state (the
surrogate, ASF's scale factor, optimizer moments) is not part of it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import nn

__all__ = ["DEFAULT_DT", "NIRError", "export", "import_graph"]

#: the time step the discrete network is read at, when nothing else says (snnTorch's default)
DEFAULT_DT = 1e-4


class NIRError(ValueError):
    """A network or graph that NIR, or this library, cannot express exactly (one line)."""


def _nir() -> Any:
    try:
        import nir  # optional dependency: the "nir" extra
    except ImportError:
        raise ImportError('pysnn_ref.nir needs the nir package: pip install -e ".[nir]"') from None
    return nir


def _check_dt(dt: Any) -> float:
    if not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt must be a positive number of seconds, got {dt!r}")
    return float(dt)


def _pool_out(n: int, k: int, s: int, p: int = 0) -> int:
    return (n + 2 * p - k) // s + 1


def _neuron_node(nir: Any, layer: nn.LIF, shape: tuple[int, ...], dt: float, where: str) -> Any:
    """NIR's LIF (``lam < 1``) or IF (``lam = 1``) node for one of our LIF layers."""
    p = layer.p
    if p.reset != "hard":
        raise NIRError(f"{where}: LIF with {p.reset} reset cannot be exported: NIR's neurons reset "
                       "to v_reset (hard reset) and do not subtract the threshold")
    full = np.ones(shape)
    thr, zero = full * p.v_th, np.zeros(shape)
    if p.lam == 1.0:
        return nir.IF(r=full / dt, v_threshold=thr, v_reset=zero)
    tau = dt / (1.0 - p.lam)
    return nir.LIF(tau=full * tau, r=full * (tau / dt), v_leak=zero, v_threshold=thr,
                   v_reset=zero)


def _export_layer(nir: Any, layer: nn.Module, shape: tuple[int, ...], dt: float,
                  where: str) -> tuple[Any, tuple[int, ...]]:
    """One layer's NIR node and the per-sample shape it outputs."""
    if isinstance(layer, nn.Linear):
        W = np.asarray(layer.W.data, dtype=np.float64)          # (out, in): y = W x + b
        if shape != (W.shape[1],):
            raise NIRError(f"{where}: Linear takes {W.shape[1]} features, gets shape {shape}")
        if layer.b is None:
            return nir.Linear(weight=W), (W.shape[0],)
        return nir.Affine(weight=W, bias=np.asarray(layer.b.data, np.float64)), (W.shape[0],)
    if isinstance(layer, nn.Conv2d):
        W = np.asarray(layer.W.data, dtype=np.float64)          # (F, C, KH, KW)
        if len(shape) != 3 or shape[0] != W.shape[1]:
            raise NIRError(f"{where}: Conv2d takes {W.shape[1]} channels, gets shape {shape}")
        b = np.zeros(W.shape[0]) if layer.b is None else np.asarray(layer.b.data, np.float64)
        s, pad = layer.stride, layer.padding
        node = nir.Conv2d(input_shape=shape[1:], weight=W, stride=s, padding=pad, dilation=1,
                          groups=1, bias=b)
        out = tuple(_pool_out(n, W.shape[2], s, pad) for n in shape[1:])
        return node, (W.shape[0], *out)
    if isinstance(layer, nn.AvgPool2d):
        k, s = layer.k, layer.stride or layer.k
        node = nir.AvgPool2d(kernel_size=np.array([k, k]), stride=np.array([s, s]),
                             padding=np.array([0, 0]))
        return node, (shape[0], *(_pool_out(n, k, s) for n in shape[1:]))
    if isinstance(layer, nn.Flatten):
        node = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
        return node, (int(np.prod(shape)),)
    if isinstance(layer, nn.LIF):
        return _neuron_node(nir, layer, shape, dt, where), shape
    raise NIRError(f"{where}: {type(layer).__name__} cannot be exported to NIR; supported: "
                   "Linear, Conv2d, AvgPool2d, Flatten, LIF/IF with hard reset")


def export(net: nn.Sequential, input_shape: tuple[int, ...], dt: float = DEFAULT_DT) -> Any:
    """The ``nir.NIRGraph`` of ``net``: a chain ``input -> layer 0 -> ... -> output``.

    Args:
        net: a :class:`~pysnn_ref.nn.Sequential` of Linear, Conv2d, AvgPool2d, Flatten and LIF
            (hard reset) layers; nested Sequentials are walked in order.
        input_shape: the shape of one sample at one time step, e.g. ``(1, 28, 28)`` or
            ``(784,)`` (no time or batch axis: NIR describes one step of one sample).
        dt: the time step the discrete network is read at (see the module docstring).

    Nodes are named by the layer's index path (``"0"``, ``"1"``, ...); weights are float64.
    Raises :class:`NIRError` for a layer NIR cannot express exactly.
    """
    nir = _nir()
    dt = _check_dt(dt)
    if not isinstance(net, nn.Sequential):
        raise TypeError(f"net must be a pysnn_ref.nn.Sequential, got {type(net).__name__}")
    shape = tuple(int(n) for n in input_shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"input_shape must be positive sizes of one sample, got {input_shape!r}")
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(shape)})}
    previous = "input"
    edges = []
    for name, layer in _walk(net):
        node, shape = _export_layer(nir, layer, shape, dt, f"layer {name}")
        nodes[name] = node
        edges.append((previous, name))
        previous = name
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    edges.append((previous, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": dt, "source": "pysnn_ref"},
                        type_check=False)


def _walk(net: nn.Sequential, prefix: str = "") -> list[tuple[str, nn.Module]]:
    out = []
    for i, layer in enumerate(net.layers):
        name = f"{prefix}{i}"
        out += _walk(layer, name + ".") if isinstance(layer, nn.Sequential) else [(name, layer)]
    return out


# ----------------------------------------------------------------------------------------------
# import
# ----------------------------------------------------------------------------------------------

def _chain(graph: Any) -> list[str]:
    """The node names from the graph's one Input to its one Output, refusing any branching."""
    nir = _nir()
    inputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise NIRError(f"graph has {len(inputs)} input nodes; expected one (a chain of layers)")
    succ: dict[str, list[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
    order, name = [], inputs[0]
    while not isinstance(graph.nodes[name], nir.Output):
        nxt = succ.get(name, [])
        if len(nxt) != 1 or nxt[0] in order:
            raise NIRError(f"node {name!r} has {len(nxt)} successors (or a cycle); only a chain "
                           "of layers can be imported")
        name = nxt[0]
        order.append(name)
    if len(order) + 1 != len(graph.nodes):
        raise NIRError(f"graph has {len(graph.nodes)} nodes but its chain from input to output "
                       f"has {len(order) + 1}; branches cannot be imported")
    return order[:-1]


def _one(name: str, what: str, values: Any) -> float:
    """The single value of a per-neuron parameter array (ours are scalars per layer)."""
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0 or np.ptp(a) > 1e-12 * max(1.0, float(np.abs(a).max())):
        raise NIRError(f"node {name!r}: {what} differs between neurons; pysnn_ref's LIF has one "
                       "value per layer")
    return float(a[0])


def _import_neuron(nir: Any, name: str, node: Any, dt: float) -> nn.LIF:
    v_th = _one(name, "v_threshold", node.v_threshold)
    if _one(name, "v_reset", node.v_reset) != 0.0:
        raise NIRError(f"node {name!r}: v_reset must be 0 (pysnn_ref's hard reset is to 0)")
    r = _one(name, "r", node.r)
    if isinstance(node, nir.IF):
        if not math.isclose(r * dt, 1.0, rel_tol=1e-6):
            raise NIRError(f"node {name!r}: IF with r*dt = {r * dt:g}; pysnn_ref's IF adds the "
                           f"input unscaled, so r must be 1/dt = {1 / dt:g} (dt = {dt:g})")
        return nn.LIF(lam=1.0, v_th=v_th)
    tau = _one(name, "tau", node.tau)
    if _one(name, "v_leak", node.v_leak) != 0.0:
        raise NIRError(f"node {name!r}: v_leak must be 0 (pysnn_ref's LIF leaks to 0)")
    lam = 1.0 - dt / tau
    if not 0.0 < lam <= 1.0:
        raise NIRError(f"node {name!r}: tau = {tau:g} gives lam = 1 - dt/tau = {lam:g} at "
                       f"dt = {dt:g}; expected lam in (0, 1] (tau >= dt)")
    if not math.isclose(r, tau / dt, rel_tol=1e-6):
        raise NIRError(f"node {name!r}: r = {r:g} but pysnn_ref's LIF takes the input unscaled, "
                       f"which needs r = tau/dt = {tau / dt:g}")
    return nn.LIF(lam=lam, v_th=v_th)


def _set(param: Any, value: Any, name: str) -> None:
    value = np.asarray(value)
    if value.shape != param.data.shape:
        raise NIRError(f"node {name!r}: weight shape {value.shape}, expected {param.data.shape}")
    param.data[...] = value


def _import_weights(nir: Any, name: str, node: Any, dtype: Any) -> nn.Module:
    W = np.asarray(node.weight)
    bias = getattr(node, "bias", None)
    if isinstance(node, (nir.Affine, nir.Linear)):
        if W.ndim != 2:
            raise NIRError(f"node {name!r}: weight of shape {W.shape}; expected (out, in)")
        layer = nn.Linear(W.shape[1], W.shape[0], bias=bias is not None, dtype=dtype)
    else:
        stride, pad = np.atleast_1d(node.stride), node.padding
        if isinstance(pad, str):
            raise NIRError(f"node {name!r}: padding {pad!r}; expected integer padding")
        pad, dil = np.atleast_1d(pad), np.atleast_1d(node.dilation)
        if (W.shape[2] != W.shape[3] or np.ptp(stride) or np.ptp(pad) or np.any(dil != 1)
                or node.groups != 1):
            raise NIRError(f"node {name!r}: Conv2d with kernel {W.shape[2:]}, stride {stride}, "
                           f"padding {pad}, dilation {dil}, groups {node.groups}; expected a "
                           "square kernel, equal strides and padding, dilation 1, groups 1")
        layer = nn.Conv2d(W.shape[1], W.shape[0], W.shape[2], stride=int(stride[0]),
                          padding=int(pad[0]), bias=bias is not None, dtype=dtype)
    _set(layer.W, W, name)
    if bias is not None:
        _set(layer.b, bias, name)
    return layer


def _import_node(nir: Any, name: str, node: Any, dt: float, dtype: Any) -> nn.Module:
    if isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)):
        return _import_weights(nir, name, node, dtype)
    if isinstance(node, (nir.LIF, nir.IF)):
        return _import_neuron(nir, name, node, dt)
    if isinstance(node, nir.AvgPool2d):
        k, s, p = (np.atleast_1d(a) for a in (node.kernel_size, node.stride, node.padding))
        if np.ptp(k) or np.ptp(s) or np.any(p != 0):
            raise NIRError(f"node {name!r}: AvgPool2d kernel {k}, stride {s}, padding {p}; "
                           "expected a square kernel, equal strides, no padding")
        return nn.AvgPool2d(int(k[0]), int(s[0]))
    if isinstance(node, nir.Flatten):
        if node.start_dim != 0 or node.end_dim != -1:
            raise NIRError(f"node {name!r}: Flatten(start_dim={node.start_dim}, end_dim="
                           f"{node.end_dim}); expected all of a sample's axes (0, -1)")
        return nn.Flatten()
    raise NIRError(f"node {name!r}: {type(node).__name__} has no pysnn_ref layer; supported: "
                   "Affine, Linear, Conv2d, AvgPool2d, Flatten, LIF, IF")


def import_graph(graph: Any, dt: float | None = None, dtype: Any = np.float32) -> nn.Sequential:
    """The :class:`~pysnn_ref.nn.Sequential` of a chain-shaped ``nir.NIRGraph``.

    Args:
        graph: a ``nir.NIRGraph`` (e.g. from :func:`export`, ``nir.read`` or another library's
            export) whose nodes form one chain from its Input to its Output.
        dt: the time step to read the neurons' time constants at (``lam = 1 - dt/tau``); default
            the graph's ``metadata["dt"]`` if present, else :data:`DEFAULT_DT`.
        dtype: the weights' dtype.

    Raises :class:`NIRError` for a node with no exact counterpart here (see the module
    docstring).
    """
    nir = _nir()
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"graph must be a nir.NIRGraph, got {type(graph).__name__}")
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    dt = _check_dt(dt if dt is not None else float(meta.get("dt", DEFAULT_DT)))
    layers = [_import_node(nir, n, graph.nodes[n], dt, dtype) for n in _chain(graph)]
    return nn.Sequential(*layers)

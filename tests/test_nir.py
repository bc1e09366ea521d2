"""NIR export / import: round trips give identical spikes and outputs, the lam <-> (tau, r, dt)
mapping reproduces NIR's own LIF equations step by step, and what NIR cannot express is refused.
Needs the optional ``nir`` package (in the ``nir`` and ``dev`` extras)."""

from __future__ import annotations

import numpy as np
import pytest

from pysnn_ref import nir as pnir
from pysnn_ref import nn

nir = pytest.importorskip("nir")


def _net(rng: np.random.Generator) -> nn.Sequential:
    net = nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=1, padding=1, rng=rng), nn.LIF(lam=0.8, v_th=0.5),
        nn.AvgPool2d(2),
        nn.Sequential(nn.Conv2d(4, 3, 3, stride=2, padding=0, bias=False, rng=rng),
                      nn.LIF(lam=1.0, v_th=0.7)),
        nn.Flatten(), nn.Linear(3 * 1 * 1, 5, rng=rng), nn.LIF(lam=0.6, v_th=0.3),
        nn.Linear(5, 3, bias=False, rng=rng),
    )
    for p in net.parameters():
        p.data[...] = rng.normal(0, 0.8, p.data.shape)
    return net


def _run(net: nn.Sequential, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Output and every LIF layer's spikes (recorded by wrapping the layers' forward)."""
    spikes = []
    out = x
    for layer in _flat(net):
        out = layer.forward(out)
        if isinstance(layer, nn.LIF):
            spikes.append(np.array(out))
    return out, spikes


def _flat(net):
    for layer in net.layers:
        yield from (_flat(layer) if isinstance(layer, nn.Sequential) else (layer,))


def test_export_import_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    net = _net(rng)
    x = rng.uniform(0, 2, (6, 3, 2, 8, 8)).astype(np.float32)        # (T, B, C, H, W)
    graph = pnir.export(net, (2, 8, 8))
    assert [type(graph.nodes[k]).__name__ for k in ("0", "1", "3.0", "3.1", "6")] == \
        ["Conv2d", "LIF", "Conv2d", "IF", "LIF"]
    nir.write(tmp_path / "net.nir", graph)
    for g in (graph, nir.read(tmp_path / "net.nir")):
        back = pnir.import_graph(g)
        y0, s0 = _run(net, x)
        y1, s1 = _run(back, x)
        assert sum(s.sum() for s in s0) > 0                   # the spikes are not all silent
        for a, b in zip(s0, s1, strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(y0, y1)
        assert repr(back) == repr(nn.Sequential(*_flat(net)))


@pytest.mark.parametrize("lam", [0.5, 0.9, 1.0])
def test_the_mapping_reproduces_nirs_lif_equations(lam):
    """Forward-Euler of NIR's ODE with the exported (tau, r, v_leak, v_reset, dt) gives our
    spikes: an independent simulator of NIR's node definitions, not our kernels."""
    dt = 1e-3
    net = nn.Sequential(nn.LIF(lam=lam, v_th=1.0))
    node = pnir.export(net, (50,), dt=dt).nodes["0"]
    rng = np.random.default_rng(1)
    current = rng.uniform(-0.2, 1.2, (40, 1, 50))
    ours = net.layers[0].forward(current)
    v, spikes = np.zeros(50), []
    for I in current[:, 0]:
        if isinstance(node, nir.IF):
            v = v + dt * node.r * I                              # dv/dt = r I
        else:
            v = v + dt / node.tau * (node.v_leak - v + node.r * I)   # tau dv/dt = v_leak - v + r I
        z = v > node.v_threshold
        v = np.where(z, node.v_reset, v)
        spikes.append(z)
    np.testing.assert_array_equal(ours[:, 0], np.array(spikes, dtype=ours.dtype))
    assert ours.sum() > 0


def test_dt_travels_in_the_metadata_and_can_be_overridden():
    net = nn.Sequential(nn.Linear(3, 2), nn.LIF(lam=0.75))
    g = pnir.export(net, (3,), dt=0.01)
    assert g.metadata["dt"] == 0.01
    assert np.allclose(g.nodes["1"].tau, 0.04) and np.allclose(g.nodes["1"].r, 4.0)
    assert pnir.import_graph(g).layers[1].p.lam == pytest.approx(0.75)
    g.metadata = {}
    with pytest.raises(pnir.NIRError, match="lam"):       # tau = 0.04 < dt = 0.1 means lam < 0
        pnir.import_graph(g, dt=0.1)


@pytest.mark.parametrize("layer, needle", [
    (nn.LIF(reset="soft"), "soft reset"),
    (nn.BatchNorm(3), "BatchNorm cannot be exported"),
    (nn.MaxPool2d(2), "MaxPool2d cannot be exported"),
])
def test_what_nir_cannot_express_is_refused(layer, needle):
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), layer)
    with pytest.raises(pnir.NIRError, match=needle) as e:
        pnir.export(net, (1, 8, 8))
    assert "\n" not in str(e.value) and "layer 1" in str(e.value)


def _lif_graph(**over):
    params = dict(tau=np.full(4, 2e-4), r=np.full(4, 2.0), v_leak=np.zeros(4),
                  v_threshold=np.ones(4), v_reset=np.zeros(4))
    params.update(over)
    return nir.NIRGraph.from_list(nir.LIF(**params), type_check=False)


@pytest.mark.parametrize("over, needle", [
    ({"v_leak": np.full(4, 0.1)}, "v_leak must be 0"),
    ({"v_reset": np.full(4, -1.0)}, "v_reset must be 0"),
    ({"r": np.full(4, 3.0)}, "r = 3 but"),
    ({"tau": np.array([2e-4, 2e-4, 3e-4, 2e-4])}, "tau differs between neurons"),
])
def test_import_refuses_neurons_without_a_counterpart(over, needle):
    assert isinstance(pnir.import_graph(_lif_graph()).layers[0], nn.LIF)     # the base imports
    with pytest.raises(pnir.NIRError, match=needle):
        pnir.import_graph(_lif_graph(**over))


def test_import_refuses_branches_and_unknown_nodes():
    lin = nir.Affine(weight=np.ones((2, 2)), bias=np.zeros(2))
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([2])}), "a": lin,
                            "b": nir.Affine(weight=np.ones((2, 2)), bias=np.zeros(2)),
                            "output": nir.Output(output_type={"output": np.array([2])})},
                     edges=[("input", "a"), ("input", "b"), ("a", "output"), ("b", "output")],
                     type_check=False)
    with pytest.raises(pnir.NIRError, match="successors"):
        pnir.import_graph(g)
    g2 = nir.NIRGraph.from_list(nir.Scale(scale=np.ones(3)), type_check=False)
    with pytest.raises(pnir.NIRError, match="Scale has no pysnn_ref layer"):
        pnir.import_graph(g2)


def test_bad_arguments():
    net = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="dt must be"):
        pnir.export(net, (3,), dt=0)
    with pytest.raises(TypeError, match="net must be"):
        pnir.export(nn.Linear(3, 2), (3,))
    with pytest.raises(pnir.NIRError, match="Linear takes 3 features"):
        pnir.export(net, (4,))
    with pytest.raises(TypeError, match="graph must be"):
        pnir.import_graph({"nodes": {}})


# ----------------------------------------------------------------------------------------------
# against snnTorch (optional: torch + snntorch + nirtorch installed)
# ----------------------------------------------------------------------------------------------

def _snntorch():
    torch = pytest.importorskip("torch")
    snn = pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    return torch, snn


def _steps(tnet, x, torch):
    """Run an snnTorch network (hidden state kept inside its neurons) one step at a time."""
    out = []
    with torch.no_grad():
        for x_t in x:
            y = tnet(torch.from_numpy(x_t))
            out.append((y[0] if isinstance(y, tuple) else y).numpy())
    return np.array(out)


def test_snntorch_imports_our_graph_and_spikes_the_same():
    """Tolerance: exact (spikes are 0/1; both fire at u >= / > v_th, equal only on a null set)."""
    torch, _ = _snntorch()
    from snntorch.import_nir import import_from_nir

    rng = np.random.default_rng(2)
    net = nn.Sequential(nn.Linear(20, 16, rng=rng), nn.LIF(lam=0.8, v_th=0.5),
                        nn.Linear(16, 5, rng=rng), nn.LIF(lam=0.6, v_th=0.3))
    x = rng.uniform(0, 1.5, (30, 4, 20)).astype(np.float32)
    ours = net.forward(x)
    theirs = _steps(import_from_nir(pnir.export(net, (20,))), x, torch)
    assert ours.sum() > 20
    np.testing.assert_array_equal(theirs, ours)


def test_a_graph_snntorch_exports_imports_into_ours():
    torch, snn = _snntorch()
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    lif = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)

    def leaky(n, beta, thr, **kw):     # per-neuron tensors: snnTorch 1.0 exports scalar ones
        return snn.Leaky(beta=torch.full((n,), beta), threshold=torch.full((n,), thr), **kw)

    tnet = torch.nn.Sequential(torch.nn.Linear(12, 10), leaky(10, 0.85, 0.4, **lif),
                               torch.nn.Linear(10, 3), leaky(3, 0.7, 0.2, output=True, **lif))
    with torch.no_grad():
        for lin in (tnet[0], tnet[2]):
            lin.weight.mul_(4.0)                      # enough drive for the neurons to fire
    graph = export_to_nir(tnet, torch.zeros(12))
    net = pnir.import_graph(graph)
    assert [type(m).__name__ for m in net.layers] == ["Linear", "LIF", "Linear", "LIF"]
    assert net.layers[1].p.lam == pytest.approx(0.85) and net.layers[3].p.v_th == \
        pytest.approx(0.2)
    x = np.random.default_rng(3).uniform(0, 1.5, (25, 4, 12)).astype(np.float32)
    theirs = _steps(tnet, x, torch)
    ours = net.forward(x)
    assert ours.sum() > 10
    np.testing.assert_array_equal(ours, theirs)

"""docs/derivations.md maps each implemented paper equation to its function, test and tutorial;
this keeps the map true: every function imports, every test exists, every chapter exists."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| (?P<eq>[^|]+) \| `(?P<fn>[\w.]+:[\w.]+)` \| `(?P<test>[\w/.]+::\w+)` \| "
                 r"(?P<tut>`[\w.]+`|-) \|$")


def _rows() -> list[dict[str, str]]:
    text = (ROOT / "docs" / "derivations.md").read_text()
    return [m.groupdict() for line in text.splitlines() if (m := ROW.match(line))]


def test_the_map_has_every_paper() -> None:
    rows = _rows()
    assert len(rows) >= 25, len(rows)
    for paper in ("SSF", "ASF", "TET", "Dspike", "WP"):
        assert any(r["eq"].startswith(paper) for r in rows), paper


@pytest.mark.parametrize("row", _rows(), ids=lambda r: r["fn"])
def test_row_points_at_real_code_tests_and_chapters(row: dict[str, str]) -> None:
    module, qualname = row["fn"].split(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    assert callable(obj), row["fn"]
    path, name = row["test"].split("::")
    tree = ast.parse((ROOT / path).read_text())
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert name in names, f"{path} has no {name}"
    if row["tut"] != "-":
        assert (ROOT / "tutorials" / row["tut"].strip("`")).is_file(), row["tut"]


@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_ssf_electricity_balance_eqs_12_18(reset: str) -> None:
    """SSF Eq. 12 (hard) / 18 (soft): the membrane left after step T-1 is the lam-weighted input
    minus what the spikes took (u[t] for a hard reset, v_th for a soft one), to round-off."""
    from pysnn_ref.functional.neuron import lif_forward

    rng = np.random.default_rng(1)
    T, lam, v_th = 7, 0.8, 1.0
    I = rng.normal(0.6, 0.9, (T, 5, 40))
    o, cache = lif_forward(I, lam=lam, v_th=v_th, reset=reset)
    u = np.asarray(cache.u)
    assert 0 < o.mean() < 1                                   # some spikes, not all
    took = o * u if reset == "hard" else v_th * o
    w = lam ** np.arange(T - 1, -1, -1)[:, None, None]
    balance = (w * (I - took)).sum(0)
    v_last = u[-1] - took[-1]
    np.testing.assert_allclose(v_last, balance, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------
# Equations whose rows above would otherwise rest on a kernel-vs-kernel test: each is checked
# here against the equation as printed in the paper.
# ------------------------------------------------------------------------------------------

def _printed_lif(I: np.ndarray, lam: float, v_th: float, soft: bool) -> tuple[np.ndarray, ...]:
    """SSF Eq. 6 (hard) / Eq. 16 (soft) and Eq. 7 / 17, exactly as printed."""
    u, o = np.zeros_like(I), np.zeros_like(I)
    for t in range(I.shape[0]):
        if t == 0:
            u[0] = I[0]
        elif soft:
            u[t] = lam * (u[t - 1] - v_th * o[t - 1]) + I[t]        # Eq. 16
        else:
            u[t] = lam * u[t - 1] * (1 - o[t - 1]) + I[t]           # Eq. 6
        o[t] = (u[t] >= v_th).astype(I.dtype)                       # Eq. 7 / 17, H(0) = 1
    return o, u


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("lam", [0.7, 1.0])
def test_lif_forward_is_the_printed_recurrence_ssf_eqs_6_7_16_17(soft: bool, lam: float) -> None:
    from pysnn_ref.functional.neuron import lif_forward
    from pysnn_ref.kernels import cpu, reference

    I = np.random.default_rng(2).normal(0.5, 0.9, (9, 60))
    I[:, 0] = 0.8                                    # exactly at threshold (u = 1.0) at t = 1
    o, u = _printed_lif(I, lam, 0.8, soft)
    assert 0 < o.mean() < 1
    for mod in (reference, cpu):
        o_k, u_k = mod.lif_forward(I, lam, 0.8, soft, False, 1, 1.0)
        assert np.array_equal(o_k, o) and np.allclose(u_k, u, rtol=0, atol=1e-12), mod.__name__
    o_f, cache = lif_forward(I, lam=lam, v_th=0.8, reset="soft" if soft else "hard")
    assert np.array_equal(o_f, o) and np.allclose(cache.u, u, rtol=0, atol=1e-12)


@pytest.mark.parametrize("v_th", [0.5, 1.0])
def test_triangle_is_tet_eq_5_and_dspike_eq_8(v_th: float) -> None:
    """TET Eq. 5: (1/g^2) max(0, g - |u - V_th|); with g = V_th it is Dspike's Eq. 8,
    gamma max(0, 1 - |u/V_th - 1|), for gamma = 1/V_th."""
    from pysnn_ref.functional.surrogate import triangle

    u = np.linspace(-1.0, 3.0, 401)
    g = 0.7
    assert np.allclose(triangle(g).grad(u - v_th), np.maximum(0, g - np.abs(u - v_th)) / g**2,
                       rtol=0, atol=1e-14)
    dspike_eq8 = (1 / v_th) * np.maximum(0, 1 - np.abs(u / v_th - 1))
    assert np.allclose(triangle(v_th).grad(u - v_th), dspike_eq8, rtol=0, atol=1e-14)


def test_dspike_eq_12_and_its_limits_eqs_13_14() -> None:
    """Dspike Eq. 12 on the window u in [0, 1] around V_th = 0.5 (the library's x = u - V_th),
    and Lemma 4.1 (Eqs. 13-14): b -> 0 gives the identity, b -> infinity the step."""
    from pysnn_ref.functional.surrogate import dspike

    u = np.linspace(0.0, 1.0, 201)
    for b in (0.5, 1.0, 3.0):
        eq12 = (np.tanh(b * (u - 0.5)) + np.tanh(b / 2)) / (2 * np.tanh(b / 2))
        assert np.allclose(dspike(b).primitive(u - 0.5), eq12, rtol=0, atol=1e-14)
    assert np.allclose(dspike(1e-4).primitive(u - 0.5), u, atol=1e-8)          # b -> 0: x
    far = np.abs(u - 0.5) > 0.05
    step = (u > 0.5).astype(float)
    assert np.allclose(dspike(400.0).primitive(u - 0.5)[far], step[far], atol=1e-8)  # b -> inf
    assert dspike(400.0).primitive(np.zeros(1))[0] == pytest.approx(0.5)      # Eq. 14, x = 0.5


@pytest.mark.parametrize("soft", [False, True])
def test_ssf_gain_is_the_slope_of_eqs_14_19(soft: bool) -> None:
    """The flow gain is dFO/dFI of FO = max(0, FI/(R V_th)) (Eq. 14) or clamp(FI/V_th, 0, 1)
    (Eq. 19), measured by central differences away from the kinks."""
    from pysnn_ref.kernels import reference

    rng = np.random.default_rng(3)
    v_th, r_max, h = 0.9, 2.0, 1e-6
    FI = rng.uniform(-1.0, 2.0, 300)
    R = rng.uniform(0.5, 1.8, 300)
    if soft:
        FO = lambda fi: np.clip(fi / v_th, 0, 1)                           # noqa: E731
        kinks = np.minimum(np.abs(FI), np.abs(FI - v_th))
    else:
        FO = lambda fi: np.maximum(0, fi / (R * v_th))                     # noqa: E731
        kinks = np.abs(FI)
    slope = (FO(FI + h) - FO(FI - h)) / (2 * h)
    gain = reference.ssf_gain(FI, R, v_th, soft, r_max)
    ok = kinks > 1e-3
    assert ok.sum() > 250 and np.allclose(gain[ok], slope[ok], rtol=1e-6, atol=1e-9)


def _small_net(spiking: bool):
    from pysnn_ref import nn

    rng = np.random.default_rng(4)
    layers = [nn.Linear(6, 8, rng=rng, dtype=np.float64)]
    layers += [nn.LIF(lam=0.8, v_th=1.0)] if spiking else []
    layers += [nn.Linear(8, 3, rng=rng, dtype=np.float64)]
    return nn.Sequential(*layers), rng.uniform(0, 1, (5, 6)), rng.integers(0, 3, 5)


def test_fdg_is_dspike_eq_10() -> None:
    """Dspike Eq. 10: the FDG tends to the true gradient as eps -> 0 where the loss is smooth
    (no spiking layer), and is exactly 0 for a tiny eps through the spiking step function,
    nonzero for eps = 0.1 (the paper's point)."""
    from pysnn_ref.data import DirectEncoder
    from pysnn_ref.gradcheck import finite_difference_gradient, method_gradients

    net, x, labels = _small_net(spiking=False)
    X = DirectEncoder().encode(x, 3)
    fdg = finite_difference_gradient(net, X, labels, ["0.W"], eps=1e-5)["0.W"]
    exact = method_gradients(net, "bptt", X, labels)[1]["0.W"]
    assert np.allclose(fdg, exact, rtol=1e-6, atol=1e-9)
    net, x, labels = _small_net(spiking=True)
    X = DirectEncoder().encode(x, 3)
    assert not finite_difference_gradient(net, X, labels, ["0.W"], eps=1e-10)["0.W"].any()
    assert np.count_nonzero(finite_difference_gradient(net, X, labels, ["0.W"], eps=0.1)["0.W"])


def test_cosine_vs_fdg_is_the_cosine_of_method_and_fdg_dspike_sec_4_2() -> None:
    from pysnn_ref.data import DirectEncoder
    from pysnn_ref.gradcheck import cosine, cosine_vs, finite_difference_gradient, method_gradients

    net, x, labels = _small_net(spiking=True)
    X = DirectEncoder().encode(x, 4)
    for method in ("bptt", "asf", "ssf"):
        cos = cosine_vs(net, method, X, labels, reference="fdg", eps=0.1)
        g = method_gradients(net, method, X, labels)[1]["0.W"]
        fdg = finite_difference_gradient(net, X, labels, ["0.W"], eps=0.1)["0.W"]
        assert cos == {"0.W": pytest.approx(cosine(g, fdg), abs=1e-12)}, method
    assert cosine_vs(net, "bptt", X, labels)["0.W"] == pytest.approx(1.0, abs=1e-12)


# ------------------------------------------------------------------------------------------
# Coverage: every equation the issue names has a row (issue 12: SSF Eqs. 8-19, ASF Eqs. 7-12,
# the TET loss, Dspike's equations + FDG, WP Alg. 1 / Eq. 6 / Eqs. 1-2).
# ------------------------------------------------------------------------------------------

REQUIRED = {
    "SSF": {f"Eq. {n}" for n in range(8, 20)},
    "ASF": {f"Eq. {n}" for n in range(7, 13)},
    "TET": {"Eq. 7", "Eq. 9", "Eq. 12", "Eq. 13"},
    "Dspike": {f"Eq. {n}" for n in (4, 5, 7, 10, 11, 12)} | {"Sec. 4.2", "Alg. 1"},
    "WP": {"Alg. 1", "Eq. 1", "Eq. 2", "Eq. 6"},
}


def _numbers(text: str) -> list[int]:
    """'8–10, 12 and 14' -> [8, 9, 10, 12, 14]"""
    out: list[int] = []
    for a, b in re.findall(r"(\d+)(?:\s*[–-]\s*(\d+))?", text):
        out += list(range(int(a), int(b or a) + 1))
    return out


def covered(eq_cell: str) -> dict[str, set[str]]:
    """The equations a row's first cell names: 'SSF Eq. 15 / ASF Eqs. 9–10: ...' ->
    {'SSF': {'Eq. 15'}, 'ASF': {'Eq. 9', 'Eq. 10'}}; also 'Alg. N' and 'Sec. N.M'."""
    out: dict[str, set[str]] = {}
    head = eq_cell.split(":")[0]
    for part in re.split(r"\s/\s|\(|\)|;", head):
        m = re.match(r"\s*(SSF|ASF|TET|Dspike|WP)\b(.*)", part)
        if not m:
            continue
        paper, rest = m.groups()
        got = out.setdefault(paper, set())
        for kind, nums in re.findall(r"(Eqs?|Alg)\.\s*([\d–\-, and]+\d)", rest):
            got |= {f"{'Alg' if kind == 'Alg' else 'Eq'}. {n}" for n in _numbers(nums)}
        got |= {f"Sec. {s}" for s in re.findall(r"Sec\.\s*(\d+(?:\.\d+)?)", rest)}
    return out


def test_covered_parses_the_row_formats() -> None:
    assert covered("SSF Eq. 15 / ASF Eqs. 9–10: backward") == {
        "SSF": {"Eq. 15"}, "ASF": {"Eq. 9", "Eq. 10"}}
    assert covered("TET Eqs. 9, 12, 13 (Dspike Sec. 4.2): loss") == {
        "TET": {"Eq. 9", "Eq. 12", "Eq. 13"}, "Dspike": {"Sec. 4.2"}}
    assert covered("ASF Eq. 12, Alg. 1: S") == {"ASF": {"Eq. 12", "Alg. 1"}}


def test_every_required_equation_has_a_row() -> None:
    have: dict[str, set[str]] = {}
    for row in _rows():
        for paper, eqs in covered(row["eq"]).items():
            have.setdefault(paper, set()).update(eqs)
    missing = {p: sorted(req - have.get(p, set())) for p, req in REQUIRED.items()}
    assert not any(missing.values()), missing


def test_each_chapter_named_cites_the_row_paper() -> None:
    """The tutorial named in a row at least names the row's papers (docstring or output)."""
    missing = []
    for row in _rows():
        if row["tut"] == "-":
            continue
        text = (ROOT / "tutorials" / row["tut"].strip("`")).read_text()
        missing += [(row["tut"], paper) for paper in covered(row["eq"]) if paper not in text]
    assert not missing, missing

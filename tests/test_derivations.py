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

"""docs/derivations.md maps each implemented paper equation to its function, test and tutorial;
this keeps the map true: every function imports, every test exists, every chapter exists."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

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

"""Every ```python block of the README and of docs/*.md runs as it stands.

The blocks of one file run in order in one fresh process (as a reader pastes them into one
session), in an empty temporary folder, with the checkout on the path. A file whose blocks import
an optional package that is not installed (``nir``) is skipped, naming the package.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
OPTIONAL = ("nir", "torch", "cupy")


def _blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


PAGES_WITH_CODE = [p for p in PAGES if _blocks(p)]


def test_the_pages_with_python_blocks_are_found():
    names = {p.name for p in PAGES_WITH_CODE}
    assert {"README.md", "methods.md", "training.md"} <= names, names


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=[p.name for p in PAGES_WITH_CODE])
def test_python_blocks_run(page: Path, tmp_path: Path) -> None:
    code = "\n".join(_blocks(page))
    for mod in OPTIONAL:
        if re.search(rf"^\s*(import|from) {mod}\b", code, re.M) and \
                importlib.util.find_spec(mod) is None:
            pytest.skip(f"{page.name} needs the optional package {mod!r}")
    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                          if p))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{page.name}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"

"""The layers stack downwards only (CLIs -> methods/models -> nn -> functional -> backend ->
kernels): no kernel module imports the backend or anything above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

KERNELS = Path(__file__).resolve().parents[1] / "pysnn_ref" / "kernels"


@pytest.mark.parametrize("path", sorted(KERNELS.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(KERNELS)))
def test_kernels_import_nothing_above_them(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            # relative imports must stay inside kernels/, never reach the package
            depth = len(path.relative_to(KERNELS).parts)  # 1 for kernels/x.py, 2 for cpu/x.py
            assert node.level <= depth, f"{path.name}:{node.lineno} imports from ..{mod}"
            assert not mod.startswith("pysnn_ref") or mod.startswith("pysnn_ref.kernels"), \
                f"{path.name}:{node.lineno} imports {mod}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                assert not alias.name.startswith("pysnn_ref") or \
                    alias.name.startswith("pysnn_ref.kernels"), \
                    f"{path.name}:{node.lineno} imports {alias.name}"

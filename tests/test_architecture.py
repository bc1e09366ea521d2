"""The package's shape, read from its source (ast), not from running it:

* the imports form no circle and stack one way -- CLIs -> train / bench / gradcheck ->
  methods / models / data / energy -> nn -> functional -> backend -> kernels (leaf modules such as
  errors.py may be imported from anywhere);
* imports sit at module top, except those a comment explains (optional dependencies, lazy
  heavy ones) -- function-level imports need a comment on their line or the line above;
* no module reads or writes another object's underscore attribute (``obj._x`` with ``obj`` not
  ``self``/``cls``, ``getattr(obj, "_x")``), nor imports another module's underscore name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "pysnn_ref"

#: layer of each module, by longest matching prefix (a module may import its own layer or lower)
LAYERS = {
    "pysnn_ref.kernels": 0, "pysnn_ref.errors": 0, "pysnn_ref._check": 0,
    "pysnn_ref.parameter": 0,
    "pysnn_ref.backend": 1,
    "pysnn_ref.functional": 2, "pysnn_ref.cli": 2, "pysnn_ref": 2,  # __init__: version, backend
    "pysnn_ref.nn": 3,
    "pysnn_ref.methods": 4, "pysnn_ref.models": 4, "pysnn_ref.optim": 4, "pysnn_ref.data": 4,
    "pysnn_ref.energy": 4, "pysnn_ref.ecml": 4, "pysnn_ref.nir": 4,
    "pysnn_ref.gradcheck": 5, "pysnn_ref.train": 5, "pysnn_ref.bench": 5,
    # the command lines
    "pysnn_ref.__main__": 6, "pysnn_ref.evaluate": 6, "pysnn_ref.train.__main__": 6,
    "pysnn_ref.bench.__main__": 6, "pysnn_ref.gradcheck.__main__": 6,
    "pysnn_ref.energy.__main__": 6,
}

#: files other helpers own whose function-level imports are documented in their docstrings:
#: backend.py imports CuPy / numba.cuda / the kernel sets only when a device asks for them (the
#: CPU path never needs the GPU stack); kernels/cuda.py imports CuPy only on the GPU path
LAZY_IMPORT_FILES = {"backend.py", "kernels/cuda.py"}

#: ``obj._name`` reads that are allowed, with the reason:
PRIVATE_ALLOWED = {
    # argparse has no public way to test "is this a store_true/store_false action"
    ("cli.py", "argparse._StoreTrueAction"), ("cli.py", "argparse._StoreFalseAction"),
    # nor a list of a parser's actions (to find the flags given explicitly)
    ("train/__main__.py", "p._actions"),
    # numba does not say publicly whether its threading layer has started (the wait policy
    # must be set before it starts)
    ("backend.py", "getattr(_parallel, '_is_initialized', False)"),
    # os._exit is the standard library's public way to end a process without its clean-up
    # (Ctrl-C during the imports; after an interrupt a library swallowed)
    ("__init__.py", "_os._exit"), ("cli.py", "os._exit"),
    # the module's own compiled float64 twin (kernels/retype.py) of its private kernels
    ("kernels/cuda.py", "_K64.*"), ("kernels/cuda.py", "_typed(*)._*"),
}


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """``(imported module, line, at module top)`` for every pysnn_ref import in ``path``."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if _is_package(path) else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # "from pkg import sub" imports the submodule where one exists
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod
                       for a in node.names]
        else:
            continue
        for t in targets:
            while t not in MODULES and "." in t:
                t = t.rsplit(".", 1)[0]
            if t in MODULES and t != name:
                out.append((t, node.lineno, id(node) in top))
    return out


def _layer(name: str) -> int:
    best = max((k for k in LAYERS if name == k or name.startswith(k + ".")), key=len)
    return LAYERS[best]


def test_every_module_has_a_layer():
    for name in MODULES:
        assert any(name == k or name.startswith(k + ".") for k in LAYERS), name


def test_imports_stack_one_way():
    """No module imports a module of a higher layer (CLIs -> train/bench/gradcheck ->
    methods/models/data/energy -> nn -> functional -> backend -> kernels)."""
    bad = [f"{name} (layer {_layer(name)}) imports {t} (layer {_layer(t)}), line {line}"
           for name, path in MODULES.items() for t, line, _ in _imports(name, path)
           if _layer(t) > _layer(name)]
    assert not bad, "\n".join(bad)


def test_no_import_circle():
    """Every import counts, at module top or inside a function: a lazy import in a circle is
    still a circle (it only moves the failure)."""
    graph = {n: sorted({t for t, _, _ in _imports(n, p)}) for n, p in MODULES.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in graph[n]:
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in graph:
        if n not in state:
            cycle = visit(n)
            assert cycle is None, " -> ".join(cycle)


def _function_level_imports(path: Path) -> list[tuple[int, str]]:
    src = path.read_text()
    lines = src.splitlines()
    tree = ast.parse(src)
    out = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                out.append((node.lineno, lines[node.lineno - 1]))
    return sorted(set(out))


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_at_top_unless_a_comment_says_why(path: Path):
    rel = str(path.relative_to(PKG))
    if rel in LAZY_IMPORT_FILES:
        return
    lines = path.read_text().splitlines()
    bad = []
    found = _function_level_imports(path)
    linenos = {ln for ln, _ in found}
    for ln, text in found:
        # a comment on the line, on the line above, or above a block of imports it starts
        k = ln
        while k - 1 in linenos:
            k -= 1
        if "#" not in text and not lines[k - 2].strip().startswith("#") \
                and not any("#" in lines[j - 1] for j in range(k, ln + 1)):
            bad.append(f"{rel}:{ln}: {text.strip()}")
    assert not bad, "function-level imports without a comment saying why:\n" + "\n".join(bad)


def _private_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            out.append(ast.unparse(node))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("getattr", "setattr", "hasattr", "delattr") \
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) \
                and str(node.args[1].value).startswith("_") \
                and not str(node.args[1].value).startswith("__"):
            if isinstance(node.args[0], ast.Name) and node.args[0].id in ("self", "cls"):
                continue
            out.append(ast.unparse(node))
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            out += [f"from {node.module} import {a.name}" for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
    return out


def _allowed(rel: str, use: str) -> bool:
    for f, pattern in PRIVATE_ALLOWED:
        if f != rel:
            continue
        if pattern == use or (pattern.endswith("*") and pattern.split("*")[0]
                              and use.startswith(pattern.split("*")[0])):
            return True
    return False


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_no_module_touches_another_objects_private_state(path: Path):
    rel = str(path.relative_to(PKG))
    bad = [u for u in _private_uses(path) if not _allowed(rel, u)]
    assert not bad, f"{rel}: " + "; ".join(bad)


def test_the_checks_see_what_they_forbid(tmp_path):
    """The three checkers flag what they are meant to flag (so a green run means something)."""
    p = tmp_path / "x.py"
    p.write_text("def f(layer):\n    import os\n    layer._w = 1\n    return getattr(layer, '_s')\n"
                 "from a import _private\n")
    assert _function_level_imports(p) == [(2, "    import os")]
    uses = _private_uses(p)
    assert "layer._w" in uses and "getattr(layer, '_s')" in uses \
        and "from a import _private" in uses
    assert _layer("pysnn_ref.nn.neurons") == 3 and _layer("pysnn_ref.train.__main__") == 6


def test_kernel_sets_keep_the_declared_contract():
    """Every kernel set has the common functions; each declares which fast paths it has
    (``PROVIDES``, a subset of ``FAST_PATHS``) and has exactly those callables."""
    import importlib

    from pysnn_ref import kernels

    sets = ["pysnn_ref.kernels.reference", "pysnn_ref.kernels.cpu"]
    try:
        import numba.cuda  # noqa: F401  (kernels.cuda needs it to import)
        sets.append("pysnn_ref.kernels.cuda")
    except ImportError:  # pragma: no cover
        pass
    for name in sets:
        K = importlib.import_module(name)
        missing = [f for f in kernels.COMMON if not callable(getattr(K, f, None))]
        assert not missing, f"{name} lacks {missing}"
        assert K.PROVIDES <= set(kernels.FAST_PATHS), name
        for f in kernels.FAST_PATHS:
            assert kernels.provides(K, f) == callable(getattr(K, f, None)), (name, f)
    with pytest.raises(ValueError, match="name must be one of"):
        kernels.provides(K, "no_such_kernel")


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_no_probing_of_kernel_sets(path: Path):
    """Callers ask ``kernels.provides(K, name)``; nobody probes a kernel set with
    ``hasattr`` / ``getattr(..., default)`` for a kernel's name."""
    from pysnn_ref import kernels

    names = set(kernels.COMMON) | set(kernels.FAST_PATHS)
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("hasattr", "getattr") and len(node.args) > 1 \
                and isinstance(node.args[1], ast.Constant) and node.args[1].value in names:
            bad.append(f"{node.lineno}: {ast.unparse(node)}")
    assert not bad, "; ".join(bad)


def test_python_m_pysnn_ref_lists_every_command(capsys):
    """``python -m pysnn_ref`` names each command line, and each one it names exists and runs
    as ``python -m pysnn_ref.<name>`` (a module with a ``__main__`` guard or a package with a
    ``__main__``)."""
    import importlib.util

    from pysnn_ref import __main__ as top

    assert top.main() == 0
    out = capsys.readouterr().out
    for name, _ in top.COMMANDS:
        assert f"  {name} " in out
        spec = importlib.util.find_spec(f"pysnn_ref.{name}")
        assert spec is not None, name
        path = Path(spec.origin)
        if path.name == "__init__.py":
            assert (path.parent / "__main__.py").exists(), name
        else:
            assert 'if __name__ == "__main__":' in path.read_text(), name
    clis = {n for n, p in MODULES.items() if p.name == "__main__.py" and n != "pysnn_ref"}
    clis |= {n for n, p in MODULES.items() if p.name != "__main__.py"
             and 'if __name__ == "__main__":' in p.read_text()}
    listed = {f"pysnn_ref.{name}" for name, _ in top.COMMANDS}
    listed |= {f"{n}.__main__" for n in listed}
    assert clis - {"pysnn_ref.__main__", "pysnn_ref.bench.distributed"} <= listed


MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80
#: functions allowed over the limit (none: every tutorial main is split into one function per
#: section) -- the list may only shrink
LONG_FUNCTIONS_ALLOWED: set[str] = set()
#: public functions without full type hints that are allowed: the Numba / CUDA kernels (their
#: types come from the arrays at JIT time) and torch_ref's torch.nn modules (torch's own forward
#: signatures); and nested helpers
HINTS_EXEMPT_DIRS = ("kernels/",)
HINTS_EXEMPT_FILES = ("bench/torch_ref.py",)


def _functions(path: Path):
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef)
    tree = ast.parse(path.read_text())
    nested = {id(c) for f in ast.walk(tree) if isinstance(f, kinds)
              for c in ast.walk(f) if c is not f and isinstance(c, kinds)}
    return [(f, id(f) in nested) for f in ast.walk(tree) if isinstance(f, kinds)]


def test_files_and_functions_stay_small():
    root = PKG.parent
    big = [f"{p.relative_to(root)}: {n} lines" for p in sorted(PKG.rglob("*.py"))
           if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES]
    assert not big, big
    long = []
    for p in [*sorted(PKG.rglob("*.py")), *sorted((root / "tutorials").glob("*.py"))]:
        for f, _ in _functions(p):
            key = f"{p.relative_to(root)}:{f.name}"
            n = f.end_lineno - f.lineno + 1
            if n > MAX_FUNCTION_LINES and key not in LONG_FUNCTIONS_ALLOWED:
                long.append(f"{key} ({n} lines)")
    assert not long, long


def test_public_functions_have_type_hints():
    missing = []
    for p in sorted(PKG.rglob("*.py")):
        rel = str(p.relative_to(PKG))
        if rel.startswith(HINTS_EXEMPT_DIRS) or rel in HINTS_EXEMPT_FILES:
            continue
        for f, nested in _functions(p):
            if nested or f.name.startswith("_"):
                continue
            args = [a for a in f.args.args + f.args.kwonlyargs if a.arg not in ("self", "cls")]
            if f.returns is None or any(a.annotation is None for a in args):
                missing.append(f"{rel}:{f.lineno} {f.name}")
    assert not missing, missing

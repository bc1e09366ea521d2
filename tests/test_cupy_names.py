"""The CuPy stand-in is as strict as CuPy, and the library uses only what CuPy 14 has (issue 22).

* Every array-module attribute (``xp.NAME``, ``xp.cuda.NAME``, ``xp.random.NAME``) and every
  keyword of such a call in ``pysnn_ref/`` exists in CuPy: checked against the committed list
  ``tests/fakecupy/cupy/_cupy_names.py`` always, and against the real package when ``cupy`` is
  importable (skipped otherwise; ``pip install cupy-cuda12x`` in a venv of your own -- no GPU
  is needed to read its namespace).
* The stand-in: an element read by integer indexing is a 0-d *view*, arrays have no
  ``__index__``, names and keywords CuPy lacks are refused, calls that synchronise in CuPy are
  counted as transfers, and ``FAKECUPY_MISSING`` makes cuBLAS / cuRAND / NVRTC fail as CuPy
  does without them.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "fakecupy"
ROOTS = {"xp", "cupy", "cp"}            # how the library names its array module
SUB = {"cuda": "CUDA", "random": "RANDOM"}


def _names_table():
    spec = importlib.util.spec_from_file_location("_cupy_names", FAKE / "cupy" / "_cupy_names.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _gen_names():
    spec = importlib.util.spec_from_file_location("_gen_names", FAKE / "gen_names.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def library_uses() -> dict[tuple[str, str], set[str]]:
    """``{(table, name): keywords}`` for every ``xp.NAME`` / ``xp.cuda.NAME`` /
    ``xp.random.NAME`` (also ``self.xp``, ``be.xp``, ``cupy.``) in ``pysnn_ref/``."""
    uses: dict[tuple[str, str], set[str]] = {}

    def root_chain(node: ast.AST) -> list[str] | None:
        chain = []
        while isinstance(node, ast.Attribute):
            chain.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            chain.append(node.id)
        chain.reverse()   # e.g. ["self", "xp", "cuda", "Event"]
        for i, c in enumerate(chain):
            if c in ROOTS:
                return chain[i + 1:]
        return None

    for f in sorted((ROOT / "pysnn_ref").rglob("*.py")):
        tree = ast.parse(f.read_text())
        calls = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            chain = root_chain(node)
            if not chain or chain[0].startswith("__"):
                continue
            if chain[:2] == ["cuda", "device"] and len(chain) == 3:
                key = ("CUDA_DEVICE", chain[2])
            elif chain[0] in SUB and len(chain) >= 2:
                key = (SUB[chain[0]], chain[1])
                if len(chain) > 2:
                    continue
            elif len(chain) == 1:
                key = ("MODULE", chain[0])
            else:
                continue
            kws = uses.setdefault(key, set())
            call = calls.get(id(node))
            if call is not None:
                kws.update(k.arg for k in call.keywords if k.arg)
    return uses


def test_the_scan_finds_the_library_calls():
    uses = library_uses()
    # a few that must be there (so an empty scan cannot pass the checks below)
    assert ("MODULE", "matmul") in uses and "out" in uses[("MODULE", "matmul")]
    assert ("CUDA", "get_current_stream") in uses and ("RANDOM", "RandomState") in uses
    assert ("CUDA_DEVICE", "get_cublas_handle") in uses
    assert len(uses) > 20


def _missing(table_of, uses) -> list[str]:
    bad = []
    for (table, name), kws in sorted(uses.items()):
        t = table_of(table)
        if name not in t:
            bad.append(f"{table}.{name}")
            continue
        allowed = t[name]
        bad += [f"{table}.{name}({k}=)" for k in sorted(kws) if allowed is not None
                and k not in allowed]
    return bad


def test_library_uses_only_names_of_the_committed_cupy_list():
    names = _names_table()
    assert _missing(lambda t: getattr(names, t), library_uses()) == []


def _real_cupy():
    saved = {k: v for k, v in sys.modules.items() if k == "cupy" or k.startswith("cupy.")}
    for k in saved:
        del sys.modules[k]
    path = [p for p in sys.path if Path(p or ".").resolve() != FAKE]
    old, sys.path[:] = sys.path[:], path
    try:
        import cupy
    except ImportError:
        cupy = None
    finally:
        sys.path[:] = old
        sys.modules.update(saved)
    if cupy is None or cupy.__version__.endswith("fake"):
        pytest.skip("the real CuPy is not importable here (pip install cupy-cuda12x; no GPU "
                    "needed)")
    return cupy


def test_library_uses_only_names_the_real_cupy_has():
    cupy = _real_cupy()
    gen = _gen_names()
    objs = {"MODULE": cupy, "CUDA": cupy.cuda, "RANDOM": cupy.random,
            "CUDA_DEVICE": cupy.cuda.device}
    tables = {t: gen.names_of(o) for t, o in objs.items()}
    assert _missing(tables.__getitem__, library_uses()) == []


def test_committed_list_is_the_real_cupys():
    cupy = _real_cupy()
    names = _names_table()
    if cupy.__version__ != names.VERSION:
        pytest.skip(f"CuPy {cupy.__version__} here, the list is of {names.VERSION}")
    import cupy.cuda.device
    import cupy.random

    gen = _gen_names()
    assert gen.names_of(cupy) == names.MODULE
    assert gen.names_of(cupy.ndarray) == names.NDARRAY
    assert gen.names_of(cupy.random.RandomState) == names.RANDOM_STATE


# ------------------------------------------------------------------------------------------
# the stand-in itself
# ------------------------------------------------------------------------------------------

@pytest.fixture()
def fake(monkeypatch):
    """The stand-in imported as ``cupy`` for one test; the previous modules come back after."""
    saved = {k: v for k, v in sys.modules.items() if k == "cupy" or k.startswith("cupy.")}
    for k in saved:
        del sys.modules[k]
    monkeypatch.syspath_prepend(str(FAKE))
    cp = importlib.import_module("cupy")
    assert cp.__version__.endswith("fake")
    cp.reset_transfers()
    yield cp
    for k in [k for k in sys.modules if k == "cupy" or k.startswith("cupy.")]:
        del sys.modules[k]
    sys.modules.update(saved)


def test_an_element_is_a_view_as_in_cupy(fake):
    a = fake.asarray(np.array([1.0, 2.0, 3.0]))
    old = a[1]
    a[1] = old + 0.5
    assert np.all(old.get() == 2.5)        # NumPy's a[1] would still be 2.0
    flat = fake.asarray(np.zeros((2, 2))).reshape(-1)
    e = flat[3]
    flat[3] = 7.0
    assert e.get() == 7.0


def test_arrays_have_no_index(fake):
    n = fake.asarray(3)
    with pytest.raises(TypeError):
        range(n)
    assert not hasattr(fake.ndarray, "__index__")


def test_names_and_keywords_cupy_lacks_are_refused(fake):
    a = fake.asarray(np.ones(4))
    assert hasattr(np, "asmatrix") and not hasattr(fake, "asmatrix")
    with pytest.raises(AttributeError, match="real CuPy"):
        _ = fake.asmatrix
    with pytest.raises(TypeError, match="does not take"):
        fake.sum(a, where=a > 0)                # NumPy's sum has where=, CuPy's has not
    with pytest.raises(TypeError, match="does not take"):
        a.sum(initial=0.0)
    with pytest.raises(AttributeError):
        _ = a.resize                              # NumPy arrays have it, CuPy's not
    assert float(fake.sum(a, axis=0, dtype=np.float64)) == 4.0


def test_calls_that_sync_in_cupy_are_counted(fake):
    a = fake.asarray(np.arange(6.0))
    fake.reset_transfers()
    fake.shares_memory(a, a[2:])
    assert fake.transfers() == 1 and "shares_memory" in fake.transfer_log()[0]
    a[a > 2]
    a[a > 2] = 0.0
    fake.nonzero(a)
    fake.where(a > 1)
    assert fake.transfers() == 5
    fake.where(a > 1, a, 0.0)                   # the three-argument form does not sync
    a.sum(), a[1], a.reshape(2, 3)
    assert fake.transfers() == 5


@pytest.mark.parametrize("lib", ["cublas", "curand", "nvrtc"])
def test_missing_cuda_libraries_fail_as_in_cupy(fake, monkeypatch, lib):
    a = fake.asarray(np.ones((2, 2)))
    monkeypatch.setenv("FAKECUPY_MISSING", lib)
    calls = {"cublas": [lambda: fake.cuda.device.get_cublas_handle(), lambda: a @ a,
                        lambda: fake.matmul(a, a), lambda: fake.tensordot(a, a, 1)],
             "curand": [lambda: fake.random.RandomState(0)],
             "nvrtc": [lambda: a + 1.0, lambda: fake.exp(a)]}[lib]
    so = {"cublas": "libcublas.so.12", "curand": "libcurand.so.10", "nvrtc": "libnvrtc.so.12"}
    for call in calls:
        with pytest.raises(ImportError, match=so[lib]):
            call()
    monkeypatch.delenv("FAKECUPY_MISSING")
    for call in calls:
        call()

"""Every public function, class, method and property of the package has a docstring (its own or
the one it overrides: ``inspect.getdoc``), and every public module declares ``__all__`` listing
names it has. The kernels (``pysnn_ref.kernels``: Numba/CUDA twins of documented reference
functions) and the PyTorch baseline's torch modules are left out."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pysnn_ref

SKIP = ("pysnn_ref.kernels", "pysnn_ref.bench.torch_ref")


def _public_modules() -> list[str]:
    names = []
    for m in pkgutil.walk_packages(pysnn_ref.__path__, "pysnn_ref."):
        parts = m.name.split(".")[1:]
        if m.name.startswith(SKIP) or parts[-1] == "__main__" or any(
                p.startswith("_") for p in parts):
            continue
        names.append(m.name)
    return names


def test_public_objects_have_docstrings():
    missing = []
    for name in _public_modules():
        mod = importlib.import_module(name)
        for attr, obj in vars(mod).items():
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            if inspect.isfunction(obj) and not inspect.getdoc(obj):
                missing.append(f"{name}.{attr}")
            elif inspect.isclass(obj):
                if not inspect.getdoc(obj):
                    missing.append(f"{name}.{attr}")
                for a, v in vars(obj).items():
                    if a.startswith("_"):
                        continue
                    if isinstance(v, property) and not inspect.getdoc(v):
                        missing.append(f"{name}.{attr}.{a}")
                    elif inspect.isfunction(v) and not inspect.getdoc(getattr(obj, a)):
                        missing.append(f"{name}.{attr}.{a}")
    assert not missing, missing


def test_public_modules_declare_all():
    missing, wrong = [], []
    for name in _public_modules():
        mod = importlib.import_module(name)
        if not hasattr(mod, "__all__"):
            missing.append(name)
            continue
        wrong += [f"{name}.{a}" for a in mod.__all__ if not hasattr(mod, a)]
    assert not missing, f"modules without __all__: {missing}"
    assert not wrong, f"__all__ names that do not exist: {wrong}"

"""Write ``tests/fakecupy/cupy/_cupy_names.py``: the names (and keywords) of the real CuPy.

The NumPy-backed stand-in (``tests/fakecupy/cupy``) refuses every array-module attribute,
``ndarray`` attribute and keyword argument that this list does not hold, so a library call that
real CuPy lacks fails in the CPU tests instead of on the first GPU run.

Regenerate it (no GPU needed: importing CuPy and reading its namespace works without a driver)::

    python3 -m venv /tmp/cupy-names && /tmp/cupy-names/bin/pip install "cupy-cuda12x==14.*"
    /tmp/cupy-names/bin/python tests/fakecupy/gen_names.py

and commit the file it writes.  The committed list came from cupy-cuda12x 14.2.0 (Python 3.11).

What is recorded, for the module ``cupy``, for ``cupy.ndarray``, ``cupy.cuda``,
``cupy.cuda.device``, ``cupy.random`` and ``cupy.random.RandomState``: each public name, and for
a callable the names of its keyword-capable parameters -- from ``inspect.signature`` where it
works, from the first line of the docstring for Cython methods (``_ndarray_base.sum(self,
axis=None, ...)``), ``out``/``dtype``/``casting`` for a ufunc (found by calling ``cupy.add``
with each keyword: the others raise ``TypeError: Wrong arguments``), the documented keywords for
a generalized ufunc (``matmul``).  ``None`` where it cannot be read: any keyword is allowed then.
"""

from __future__ import annotations

import inspect
import pprint
import re
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "cupy" / "_cupy_names.py"
UFUNC_KW = ("out", "dtype", "casting")
GUFUNC_KW = ("axes", "axis", "keepdims", "casting", "dtype", "signature", "order", "out")


def _from_doc(obj: Any) -> tuple[str, ...] | None:
    """Parameter names from a Cython docstring's first line ``name(self, a, b=1, *c, d=2)``."""
    doc = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    m = re.match(r"^[\w.]+\((.*)\)", doc[0]) if doc else None
    if not m:
        return None
    names = []
    for p in m.group(1).split(","):
        p = p.strip().split("=")[0].strip()
        p = p.split()[-1] if p else p   # "int axis" (a typed Cython argument) -> "axis"
        if p.startswith("**"):
            return None
        if p and p not in ("self", "*") and not p.startswith("*"):
            names.append(p)
    return tuple(names)


def params(obj: Any) -> tuple[str, ...] | None:
    """The keyword names ``obj`` accepts, or None when they cannot be read."""
    kind = type(obj).__name__
    if kind == "ufunc":
        return UFUNC_KW
    if kind == "_GUFunc":
        return GUFUNC_KW
    if isinstance(obj, type) or not callable(obj):
        return None
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return _from_doc(obj)
    ps = sig.parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in ps):
        return None
    return tuple(p.name for p in ps if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                 and p.name != "self")


def names_of(obj: Any) -> dict[str, tuple[str, ...] | None]:
    out = {}
    for n in dir(obj):
        if n.startswith("_") and not (n.startswith("__") and n.endswith("__")):
            continue
        try:
            out[n] = params(getattr(obj, n))
        except Exception:  # noqa: BLE001 - an attribute that needs a device: name only
            out[n] = None
    return out


def main() -> None:
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != here]
    import cupy  # the real one: this folder (which holds the stand-in) is off the path

    if cupy.__version__.endswith("fake"):
        raise SystemExit("found the stand-in, not the real CuPy: pip install cupy-cuda12x")
    import cupy.cuda.device
    import cupy.random

    tables = {
        "MODULE": names_of(cupy),
        "NDARRAY": names_of(cupy.ndarray),
        "CUDA": names_of(cupy.cuda),
        "CUDA_DEVICE": names_of(cupy.cuda.device),
        "RANDOM": names_of(cupy.random),
        "RANDOM_STATE": names_of(cupy.random.RandomState),
    }
    head = (f'"""Names of the real CuPy {cupy.__version__} (Python '
            f'{sys.version_info.major}.{sys.version_info.minor}), written by\n'
            "tests/fakecupy/gen_names.py -- do not edit; regenerate as its docstring says.\n\n"
            "name -> the keyword names its callable accepts (None: not callable, or unknown).\n"
            '"""\n\n')
    body = f"VERSION = {cupy.__version__!r}\n\n"
    for k, v in tables.items():
        body += f"{k} = {pprint.pformat(v, width=99, compact=True)}\n\n"
    OUT.write_text(head + body)
    print(f"wrote {OUT} ({', '.join(f'{k} {len(v)}' for k, v in tables.items())})")


if __name__ == "__main__":
    main()

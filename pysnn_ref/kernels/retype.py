"""The reference module's scalar formulas with their float literals in a given dtype.

A float literal is float64 in Numba's typing, so a formula such as ``max(0.0, a - abs(x)) / (a *
a)`` compiled for a float32 ``x`` is computed in float64 (a conversion per operand, scalar
float64 division) and the loops around it vectorise poorly.  :func:`retyped` re-compiles a scalar
function of :mod:`pysnn_ref.kernels.reference` with every float literal ``c`` written ``_F(c)``
and ``math.pi`` written ``_F(math.pi)``, ``_F`` the dtype's scalar type, so that each formula
keeps ONE definition (the reference's) and a float32 kernel does float32 maths only.  Used by
:mod:`pysnn_ref.kernels.cpu` (a twin per dtype, picked at compile time by the argument's type) and
:mod:`pysnn_ref.kernels.cuda` (device functions built per dtype).
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any

from . import reference as _ref

__all__ = ["retyped_tree", "retyped"]


class _TypedLiterals(ast.NodeTransformer):
    """``c`` -> ``_F(c)`` for every float literal, ``math.pi`` -> ``_F(math.pi)``."""

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        if type(node.value) is float:
            return ast.Call(ast.Name("_F", ast.Load()), [node], [])
        return node

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if isinstance(node.value, ast.Name) and node.value.id == "math" and node.attr == "pi":
            return ast.Call(ast.Name("_F", ast.Load()), [node], [])
        return self.generic_visit(node)


def retyped_tree(fn: Any) -> ast.Module:
    """The syntax tree of ``fn`` with every float constant written ``_F(c)``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    ast.increment_lineno(tree, fn.__code__.co_firstlineno - 1)  # tracebacks: reference.py
    return ast.fix_missing_locations(_TypedLiterals().visit(tree))


def retyped(fn: Any, F: Any, **callees: Any) -> Any:
    """The reference scalar function ``fn`` (plain Python) with its float constants of type
    ``F``, defined in the reference module's namespace -- with the names in ``callees`` (other
    reference scalars that ``fn`` calls) bound to the given compiled twins instead."""
    ns = dict(vars(_ref), _F=F, **callees)
    exec(compile(retyped_tree(fn), inspect.getsourcefile(fn), "exec"), ns)  # noqa: S102
    return ns[fn.__name__]

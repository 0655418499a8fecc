"""SQL statements in a Python plugin are the plugin's constants: the check ``omnicore build``
and ``omnicore test`` run on its sources (specs/abi.md §4.10.1).

In a plugin that imports the SDK's ``sql`` module, the statement of every call of a method
named ``query`` or ``execute`` (its first argument, or ``statement=``) must be

- a string literal (implicit concatenation of literals is one literal to Python),
- a ``+`` of such statements, or
- a name bound once in its file, at module level (``NAME = ...`` or ``NAME: T = ...``), to
  such a statement, and bound nowhere else in that file (no parameter, local, loop variable,
  import, ``global`` of that name).

Anything else is refused: an f-string (even one with no placeholder), ``%`` or
``str.format``, a call, an attribute, a subscript, a name that is a parameter or a local. The
receiver's type is not known without running the code, so every ``.query(...)`` and
``.execute(...)`` call of such a plugin is checked, whatever object it is called on.

A guard against the mistake, not a wall against the author: Python reaches a method by any
name at run time (``getattr``, an alias), which no reading of the source can follow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HINT", "METHODS", "Problem", "problems"]

#: The SDK's methods that take a statement (``Connection`` and ``Transaction``).
METHODS = ("query", "execute")


@dataclass(frozen=True)
class Problem:
    """A statement that is not a constant: where, and what it is instead."""

    path: Path
    line: int
    method: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: the statement of {self.method}() is {self.what}"


#: What to do about a :class:`Problem`, said once after them.
HINT = ("a SQL statement must be the plugin's constant (a string literal, or a module-level "
        "name bound once to one): put every value in params, as db.query(\"select qty from "
        "stock where sku = $1\", [sku]) (specs/abi.md §4.10.1)")


def problems(tree: ast.Module, path: Path) -> list[Problem]:
    """The calls in ``tree`` whose statement is not a constant, in source order."""
    constants = _Constants(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in METHODS):
            continue
        statement = _statement(node)
        if statement is None:
            continue  # no statement at all: the SDK's own TypeError says so when it runs
        what = constants.refusal(statement)
        if what is not None:
            found.append(Problem(path, statement.lineno, node.func.attr, what))
    return sorted(found, key=lambda p: p.line)


def _statement(call: ast.Call) -> ast.expr | None:
    if call.args:
        return call.args[0]
    for kw in call.keywords:
        if kw.arg == "statement" or kw.arg is None:  # `**kwargs` may carry it
            return kw.value
    return None


class _Constants:
    """The module-level names of one file that are bound once, to a constant statement."""

    def __init__(self, tree: ast.Module) -> None:
        self._bindings: dict[str, int] = {}
        for name in _bound_names(tree):
            self._bindings[name] = self._bindings.get(name, 0) + 1
        self._values: dict[str, ast.expr] = {}
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        self._values[target.id] = stmt.value
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) \
                    and stmt.value is not None:
                self._values[stmt.target.id] = stmt.value

    def refusal(self, node: ast.expr, seen: frozenset[str] = frozenset()) -> str | None:
        """None when ``node`` is a constant statement, else what it is."""
        if isinstance(node, ast.Constant):
            return None if isinstance(node.value, str) else f"{type(node.value).__name__} " \
                                                            f"{node.value!r}, not a string"
        if isinstance(node, ast.JoinedStr):
            return "an f-string"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.refusal(node.left, seen) or self.refusal(node.right, seen)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            return "a %-formatted string"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("format", "join", "replace"):
            return f"a str.{node.func.attr}() call"
        if isinstance(node, ast.Name):
            return self._name(node.id, seen)
        return f"an expression computed at run time ({ast.unparse(node)[:60]})"

    def _name(self, name: str, seen: frozenset[str]) -> str | None:
        value = self._values.get(name)
        if value is None or self._bindings.get(name) != 1:
            return (f"the name {name}, which is not a module-level constant bound once to a "
                    f"literal")
        if name in seen:
            return f"the name {name}, defined by itself"
        inner = self.refusal(value, seen | {name})
        return None if inner is None else f"the name {name}, bound to {inner}"


def _bound_names(tree: ast.AST) -> Iterable[str]:
    """Every name a binding in ``tree`` binds, once per binding (assignment targets, loop
    and ``with`` targets, parameters, definitions, imports, ``except ... as``, ``global``,
    match captures)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            yield node.id
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name
        elif isinstance(node, ast.arg):
            yield node.arg
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                yield alias.asname or alias.name.split(".")[0]
        elif isinstance(node, ast.ExceptHandler) and node.name:
            yield node.name
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            yield from node.names
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            yield node.name
        elif isinstance(node, ast.MatchMapping) and node.rest:
            yield node.rest

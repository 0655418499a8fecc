"""``${{ … }}`` expressions of workflow definitions, evaluated by CEL (cel-python).

A string that is one expression (``"${{ steps.fetch.output.items }}"``) becomes the
expression's value, typed; a string with expressions inside (``"Hello ${{ inputs.name }}!"``)
becomes text. Objects and lists are walked. ``if`` and ``for_each`` may also be written bare
(``if: steps.check.output.ok``). The variables are ``inputs``, ``steps`` (``steps.ID.output``,
``.state``, ``.error``), ``item`` / ``index`` (inside a ``for_each``), ``run`` (``id``,
``workflow``, ``version``, ``started_by``), ``step`` (``id``, ``attempt``,
``idempotency_key``) and ``trigger``.

``secrets.NAME`` is only a reference: the workflow service resolves it at the moment a
connector step sends its request, for that request's headers only; what it records (the
step's input, the history, logs) shows ``[secret NAME]`` instead. Anywhere else a definition
using ``secrets`` is refused at load.

CEL cannot call Python, has no loops beyond bounded macros over the data it is given, and
cannot reach the file system or network: it is safe to evaluate expressions from definition
files, and inputs from webhooks only ever flow in as data.
"""

from __future__ import annotations

import base64
import datetime
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from omnicore.workflows.errors import ExpressionError

__all__ = ["ROOTS", "Compiled", "compile_condition", "compile_value", "to_json"]

#: The variables an expression can use.
ROOTS = frozenset({"inputs", "steps", "item", "index", "run", "step", "trigger", "secrets"})
MAX_EXPRESSION = 4096
_EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
_IDENT = re.compile(r"(?<![\w.\"'])([A-Za-z_]\w*)")
_STEP_REF = re.compile(r"(?<![\w.])steps\s*\.\s*([A-Za-z_]\w*)")
_SECRET_REF = re.compile(r"(?<![\w.])secrets\s*\.\s*([A-Za-z_][A-Za-z0-9_.-]*)")
_BOUND = re.compile(r"\.\s*(?:map|filter|all|exists|exists_one)\s*\(\s*([A-Za-z_]\w*)")
_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")


@functools.cache
def _env() -> celpy.Environment:
    # Building CEL's parser takes ~80 ms (lark computes its LALR tables): paid by the first
    # expression compiled, not by every process that imports the app (`omnicore call`).
    return celpy.Environment()


def to_json(value: Any) -> Any:
    """A CEL value as plain JSON data."""
    if value is None or isinstance(value, celtypes.NullType):
        return None
    if isinstance(value, (bool, celtypes.BoolType)):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, Mapping):
        return {str(to_json(k)): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return str(value)


@dataclass(frozen=True, slots=True)
class _Expr:
    text: str
    where: str
    program: Any

    def evaluate(self, activation: Mapping[str, Any]) -> Any:
        try:
            result = self.program.evaluate(activation)
        except CELEvalError as exc:
            raise ExpressionError(f"{self.where}: ${{{{ {self.text} }}}}: {_reason(exc)}",
                                  where=self.where) from None
        except Exception as exc:  # cel-python's own failures (type mixups) end the same way
            raise ExpressionError(f"{self.where}: ${{{{ {self.text} }}}}: "
                                  f"{type(exc).__name__}: {exc}", where=self.where) from None
        if isinstance(result, CELEvalError):
            raise ExpressionError(f"{self.where}: ${{{{ {self.text} }}}}: {_reason(result)}",
                                  where=self.where)
        return to_json(result)


def _reason(exc: BaseException) -> str:
    args = getattr(exc, "args", ())
    return str(args[0]) if args else str(exc)


@dataclass(frozen=True)
class Compiled:
    """A definition value with its expressions compiled; :meth:`evaluate` gives JSON data."""

    value: Any
    exprs: tuple[_Expr, ...] = ()
    steps: frozenset[str] = frozenset()      # step ids referenced as steps.ID
    secrets: frozenset[str] = frozenset()    # secret names referenced as secrets.NAME
    roots: frozenset[str] = frozenset()
    _build: Callable[[Mapping[str, Any]], Any] | None = field(default=None, repr=False)

    @property
    def constant(self) -> bool:
        return not self.exprs

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The value with every expression replaced, over ``context`` (JSON data by root)."""
        if self._build is None:
            return self.value
        activation = {k: json_to_cel(v) for k, v in context.items()
                      if k in self.roots}
        return self._build(activation)


def _compile(text: str, where: str, offset: int) -> _Expr:
    if len(text) > MAX_EXPRESSION:
        raise ExpressionError(f"{where}: an expression is limited to {MAX_EXPRESSION} "
                              f"characters", where=where)
    if not text.strip():
        raise ExpressionError(f"{where}: empty expression at column {offset + 1}", where=where)
    try:
        ast = _env().compile(text)
    except CELParseError as exc:
        column = (getattr(exc, "column", None) or 1) + offset
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
        raise ExpressionError(f"{where}: expression syntax error at column {column}: "
                              f"{first!r} is not valid CEL", where=where,
                              column=column) from None
    bare = _STRING.sub('""', text)
    nested = _nested_macro(bare)
    if nested:
        # One macro walks its list once; one inside another walks it once per item, and a
        # webhook's megabyte of input then costs the host minutes of CPU per step.
        raise ExpressionError(f"{where}: {nested}() inside another macro's body; macros "
                              "may not nest (their cost would multiply with the data)",
                              where=where)
    bound = set(_BOUND.findall(bare))  # macro variables: items.map(x, x * 2)
    unknown = sorted({m for m in _IDENT.findall(bare) if m not in ROOTS} - _CEL_WORDS - bound)
    if unknown:
        raise ExpressionError(f"{where}: unknown name {unknown[0]!r} in ${{{{ {text.strip()} }}}}"
                              f" (use {', '.join(sorted(ROOTS))})", where=where)
    return _Expr(text.strip(), where, _env().program(ast))


def _nested_macro(bare: str) -> str | None:
    """The name of a comprehension macro used inside another's arguments, if any."""
    for outer in _BOUND.finditer(bare):
        start = bare.index("(", outer.start())
        depth, end = 0, len(bare)
        for i in range(start, len(bare)):
            depth += {"(": 1, ")": -1}.get(bare[i], 0)
            if depth == 0:
                end = i
                break
        inner = _BOUND.search(bare, start + 1, end)
        if inner:
            return inner.group(0).split("(")[0].strip(". ")
    return None


# CEL's keywords, macros and standard functions (names an expression may use bare).
_CEL_WORDS = frozenset({
    "true", "false", "null", "in", "has", "size", "int", "uint", "double", "string", "bytes",
    "bool", "type", "dyn", "duration", "timestamp", "matches", "contains", "startsWith",
    "endsWith", "all", "exists", "exists_one", "map", "filter", "list", "lowerAscii",
    "upperAscii", "getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getFullYear",
    "getHours", "getMilliseconds", "getMinutes", "getMonth", "getSeconds"})


def compile_value(value: Any, where: str,
                  errors: list[ExpressionError] | None = None) -> Compiled:
    """Compile every ``${{ }}`` in ``value`` (any JSON data); ExpressionError names where.

    With ``errors``, every failing expression is appended there instead of raising the first.
    """
    exprs: list[_Expr] = []

    def one(text: str, path: str, offset: int) -> _Expr:
        try:
            return _compile(text, path, offset)
        except ExpressionError as exc:
            if errors is None:
                raise
            errors.append(exc)
            return _Expr(text, path, None)

    def walk(v: Any, path: str) -> Callable[[Mapping[str, Any]], Any] | None:
        if isinstance(v, str):
            found = list(_EXPR.finditer(v))
            if not found:
                return None
            parts = [one(m[1], path, m.start(1)) for m in found]
            exprs.extend(parts)
            if len(found) == 1 and found[0].span() == (0, len(v)):
                only = parts[0]
                return only.evaluate
            pieces: list[str | _Expr] = []
            last = 0
            for m, expr in zip(found, parts, strict=True):
                pieces.append(v[last:m.start()])
                pieces.append(expr)
                last = m.end()
            pieces.append(v[last:])

            def text(act: Mapping[str, Any]) -> str:
                return "".join(p if isinstance(p, str) else _as_text(p.evaluate(act))
                               for p in pieces)
            return text
        if isinstance(v, Mapping):
            built = {k: walk(x, f"{path}.{k}") for k, x in v.items()}
            if not any(built.values()):
                return None
            return lambda act: {k: (b(act) if b else v[k]) for k, b in built.items()}
        if isinstance(v, list):
            items = [walk(x, f"{path}[{i}]") for i, x in enumerate(v)]
            if not any(items):
                return None
            return lambda act: [b(act) if b else v[i] for i, b in enumerate(items)]
        return None

    build = walk(value, where)
    return _finish(value, exprs, build)


def compile_condition(value: Any, where: str,
                      errors: list[ExpressionError] | None = None) -> Compiled:
    """``if`` / ``for_each``: a ``${{ }}`` template or a bare CEL expression."""
    if isinstance(value, str) and "${{" not in value:
        try:
            expr = _compile(value, where, 0)
        except ExpressionError as exc:
            if errors is None:
                raise
            errors.append(exc)
            return Compiled(value)
        return _finish(value, [expr], expr.evaluate)
    return compile_value(value, where, errors)


def _finish(value: Any, exprs: list[_Expr],
            build: Callable[[Mapping[str, Any]], Any] | None) -> Compiled:
    texts = [_STRING.sub('""', e.text) for e in exprs]
    roots = frozenset(n for t in texts for n in _IDENT.findall(t) if n in ROOTS)
    return Compiled(value, tuple(exprs),
                    frozenset(s for t in texts for s in _STEP_REF.findall(t)),
                    frozenset(s for t in texts for s in _SECRET_REF.findall(t)),
                    roots, build)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    import json
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

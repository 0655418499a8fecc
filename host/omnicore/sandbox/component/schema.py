"""A WIT type as the JSON Schema of its JSON mapping (specs/components.md, "Values").

The schema says what :meth:`Codec.check` accepts, so that a form or an agent can build a
valid argument before the call: the console's invoke form for components and the MCP tool
of an exported function (whose input is an object keyed by parameter names; see
:func:`arguments_schema`) are both generated from it. The check stays the authority: a
schema never admits a value that the check refuses, though it may say less (float
spellings of non-finite values aside, nothing is lost).
"""

from __future__ import annotations

from typing import Any

from omnicore.sandbox.component import values as v

__all__ = ["arguments_list", "arguments_schema", "schema_of"]


def _cases(cases: dict[str, v.Codec | None]) -> dict[str, Any]:
    return {"oneOf": [{"type": "object", "properties": {
        name: schema_of(codec) if codec is not None else {"type": "null"}},
        "required": [name], "additionalProperties": False} for name, codec in cases.items()]}


def schema_of(codec: v.Codec) -> dict[str, Any]:
    """The JSON Schema (2020-12) of the values ``codec`` accepts."""
    schema: dict[str, Any]
    if isinstance(codec, v._Bool):
        schema = {"type": "boolean"}
    elif isinstance(codec, v._Int):
        schema = {"type": "integer", "minimum": codec.lo, "maximum": codec.hi}
    elif isinstance(codec, v._Float):
        schema = {"anyOf": [{"type": "number"}, {"enum": sorted(v._NON_FINITE)}]}
    elif isinstance(codec, v._Char):
        schema = {"type": "string", "minLength": 1, "maxLength": 1}
    elif isinstance(codec, v._String):
        schema = {"type": "string"}
    elif isinstance(codec, v._List):
        schema = {"type": "array", "items": schema_of(codec.element)}
    elif isinstance(codec, v._Record):
        schema = {"type": "object",
                  "properties": {name: schema_of(c) for name, c in codec.fields},
                  "required": [name for name, _ in codec.fields],
                  "additionalProperties": False}
    elif isinstance(codec, v._Tuple):
        schema = {"type": "array", "prefixItems": [schema_of(e) for e in codec.elements],
                  "items": False, "minItems": len(codec.elements),
                  "maxItems": len(codec.elements)}
    elif isinstance(codec, (v._Variant, v._Result)):
        schema = _cases(codec.cases)
    elif isinstance(codec, v._Option):
        schema = {"anyOf": [{"type": "null"}, schema_of(codec.payload)]}
    elif isinstance(codec, v._Enum):
        schema = {"type": "string", "enum": list(codec.names)}
    elif isinstance(codec, v._Flags):
        schema = {"type": "array", "items": {"type": "string", "enum": list(codec.names)},
                  "uniqueItems": True}
    else:  # a codec added without a schema: say nothing rather than something wrong
        schema = {}
    return {**schema, "description": codec.wit} if codec.wit != "?" else schema


def arguments_schema(params: tuple[tuple[str, v.Codec], ...]) -> dict[str, Any]:
    """The arguments of a function as one object keyed by the WIT parameter names (MCP tools
    take objects); :func:`arguments_list` turns such an object into the call's array."""
    return {"type": "object",
            "properties": {name: schema_of(codec) for name, codec in params},
            "required": [name for name, _ in params], "additionalProperties": False}


def arguments_list(params: tuple[tuple[str, v.Codec], ...], args: object) -> list[Any]:
    """The call's argument array from an object keyed by parameter names; ValueError names
    a missing or unknown parameter. The values themselves are checked by the call."""
    if not isinstance(args, dict):
        raise ValueError("the arguments must be an object keyed by the parameter names ("
                         + ", ".join(name for name, _ in params) + ")")
    names = [name for name, _ in params]
    unknown = sorted(str(k) for k in args if k not in names)
    if unknown:
        raise ValueError(f"no parameter {unknown[0]!r} (parameters: {', '.join(names) or 'none'})")
    missing = [name for name in names if name not in args]
    if missing:
        raise ValueError(f"missing parameter {missing[0]!r} (parameters: {', '.join(names)})")
    return [args[name] for name in names]

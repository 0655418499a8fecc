"""The invoke form's fields, one per argument, made from a handler's ``input_schema``: a
component's exports have one from their WIT signature, a plugin built with our SDKs has one
where its ``omnicore.toml`` declares it. The posted fields become the JSON object the
handler takes (a component takes its arguments as an object keyed by parameter names).

A scalar is a typed input (an integer's bounds become the input's, an enum a select, a bool a
checkbox); anything else (records, lists, variants, options) is a JSON text field showing
its WIT type. What the form cannot express it leaves to JSON, and the call checks every
value whatever the form said.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from omnicore.console.errors import ApiError

__all__ = ["Field", "arguments_from", "field_name", "fields_of"]

#: How many fields a handler's form shows at most (a schema of 10,000 properties is not a form).
MAX_FIELDS = 64


@dataclass(frozen=True)
class Field:
    """One argument: its name, the input ``kind`` (integer, number, boolean, string, enum,
    json), and what to show beside it."""

    name: str
    kind: str
    hint: str
    minimum: int | None = None
    maximum: int | None = None
    options: tuple[str, ...] = ()


def _field(name: str, schema: Any) -> Field:
    if not isinstance(schema, dict):
        return Field(name, "json", "JSON")
    hint = str(schema.get("description") or schema.get("type") or "JSON")[:200]
    kind = schema.get("type")
    if kind == "integer":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        return Field(name, "integer", hint, lo if isinstance(lo, int) else None,
                     hi if isinstance(hi, int) else None)
    if kind == "boolean":
        return Field(name, "boolean", hint)
    if kind == "string" and isinstance(schema.get("enum"), list):
        return Field(name, "enum", hint, options=tuple(str(o) for o in schema["enum"]))
    if kind == "string":
        return Field(name, "string", hint)
    if kind == "number" or (isinstance(schema.get("anyOf"), list)
                            and {"type": "number"} in schema["anyOf"]):
        return Field(name, "number", hint)
    return Field(name, "json", hint)


def fields_of(manifest: dict[str, Any]) -> dict[str, list[Field]]:
    """Per handler with an object ``input_schema`` naming its properties, the form's fields."""
    out: dict[str, list[Field]] = {}
    for entry in manifest.get("handlers") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        schema = entry.get("input_schema")
        props = schema.get("properties") if isinstance(schema, dict) else None
        if not isinstance(props, dict) or not props or len(props) > MAX_FIELDS:
            continue
        out[entry["name"]] = [_field(str(name), sub) for name, sub in props.items()]
    return out


def _value(field: Field, raw: str | None) -> Any:
    text = (raw or "").strip()
    if field.kind == "boolean":
        return raw is not None  # a checkbox posts only when ticked
    if field.kind in ("string", "enum"):
        return raw or ""
    if field.kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise ApiError(422, f"argument {field.name!r} must be an integer ({field.hint})",
                           type="BadRequest") from None
    if field.kind == "number":
        if text in ("nan", "inf", "-inf"):
            return text
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ApiError(422, f"argument {field.name!r} must be a number ({field.hint})",
                           type="BadRequest")
        return number
    if not text:
        return None  # an option left empty is none
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ApiError(422, f"argument {field.name!r} must be JSON ({field.hint})",
                       type="BadRequest") from None


def field_name(handler: str, field: Field) -> str:
    """The form field of ``handler``'s argument (every handler's fieldset is in one form)."""
    return f"arg.{handler}.{field.name}"


def arguments_from(form: dict[str, str], handler: str, fields: list[Field]) -> dict[str, Any]:
    """The posted fields of ``handler`` as its JSON object, each parsed by its kind."""
    return {field.name: _value(field, form.get(field_name(handler, field))) for field in fields}

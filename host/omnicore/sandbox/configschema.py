"""The JSON Schema a plugin's manifest gives for its config section (specs/abi.md §5).

The schema comes from the plugin, so it is hostile input like the rest of the module: it is
checked when the module loads and used offline only. A ``$ref`` may point inside the schema
(``#/...``) and nowhere else, so no file dropped into a folder can make the host fetch a URL
(or read a file); a schema that refers to itself without end fails as a ConfigError instead
of exhausting the stack.

A plain schema (:func:`_plain`: no ``$schema``, only a few keywords of draft 2020-12 with the
values its metaschema allows) and a config it plainly accepts (:func:`_accepts`) are judged
here without importing jsonschema, which is about a quarter of a bare file's ``omnicore
call`` (issue 63). Both only ever answer "valid for sure": anything else (another keyword, a
value they do not know to be right, a config they do not accept) goes to jsonschema, which
refuses it with its own words, so every refusal stays jsonschema's.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from omnicore.errors import ConfigError, InvalidModule

__all__ = ["check", "validate"]

_REF_KEYS = ("$ref", "$dynamicRef", "$recursiveRef")


def _refs(node: object) -> list[str]:
    """Every reference in the schema, walked iteratively (the depth is bounded already)."""
    found: list[str] = []
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in _REF_KEYS:
                    found.append(value if isinstance(value, str) else repr(value))
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return found


@contextmanager
def _no_collection() -> Iterator[None]:
    """No garbage collection while a hostile schema may take the stack to the recursion
    limit: a collection there runs other objects' finalizers (wasmtime stores, files) at
    that depth, where they fail with RecursionError and leave what they should free."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _no_retrieval(uri: str) -> Any:
    from referencing.exceptions import NoSuchResource

    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # attrs field, mypy misses it


def _validator(schema: Mapping[str, Any]) -> Any:
    import jsonschema
    import referencing

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    registry = referencing.Registry(retrieve=_no_retrieval)  # type: ignore[call-arg]
    return cls(schema, registry=registry)


_TYPES = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})
_TEXT_KEYS = frozenset({"title", "description", "$comment", "format"})
_NUMBER_KEYS = frozenset({"minimum", "maximum"})
_LENGTH_KEYS = frozenset({"minLength", "maxLength"})
_SUBSCHEMA_KEYS = frozenset({"items", "additionalProperties"})
#: Keywords whose values a plain schema may hold (draft 2020-12's metaschema: ``default`` may
#: be anything, ``examples`` and ``enum`` any array, ``const`` anything).
_PLAIN_KEYS = (_TEXT_KEYS | _NUMBER_KEYS | _LENGTH_KEYS | _SUBSCHEMA_KEYS
               | {"type", "properties", "required", "default", "examples", "enum", "const"})
_PLAIN_DEPTH = 64


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _plain(schema: object, depth: int = 0) -> bool:
    """Whether ``schema`` is a valid draft 2020-12 schema (what jsonschema takes a schema
    without ``$schema`` for) made of the keywords above only; False when unsure."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict) or depth > _PLAIN_DEPTH or not schema.keys() <= _PLAIN_KEYS:
        return False
    for key, value in schema.items():
        if key in _TEXT_KEYS:
            ok = isinstance(value, str)
        elif key in _NUMBER_KEYS:
            ok = _number(value)
        elif key in _LENGTH_KEYS:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        elif key in _SUBSCHEMA_KEYS:
            ok = _plain(value, depth + 1)
        elif key == "type":
            names = value if isinstance(value, list) else [value]
            ok = bool(names) and all(isinstance(n, str) and n in _TYPES for n in names) \
                and len(set(names)) == len(names)
        elif key == "properties":
            ok = isinstance(value, dict) and all(_plain(v, depth + 1) for v in value.values())
        elif key == "required":
            ok = isinstance(value, list) and all(isinstance(n, str) for n in value) \
                and len(set(value)) == len(value)
        elif key in ("examples", "enum"):
            ok = isinstance(value, list)
        else:  # default, const: any value
            ok = True
        if not ok:
            return False
    return True


def _is_type(value: object, name: str) -> bool:
    """Whether ``value`` (decoded JSON) is of JSON Schema type ``name`` for sure."""
    if name == "object":
        return isinstance(value, dict)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if name == "array":
        return isinstance(value, list)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return name == "number" and _number(value)


def _accepts(schema: object, value: object) -> bool:
    """Whether the plain ``schema`` accepts ``value`` for sure; False when unsure (a float
    for an integer, any ``enum`` or ``const``: jsonschema's equality is its own)."""
    if isinstance(schema, bool):
        return schema
    assert isinstance(schema, dict)
    if "enum" in schema or "const" in schema:
        return False
    types = schema.get("type")
    if types is not None and not any(
            _is_type(value, t) for t in (types if isinstance(types, list) else [types])):
        return False
    if _number(value):
        number: Any = value
        if ("minimum" in schema and not number >= schema["minimum"]) or (
                "maximum" in schema and not number <= schema["maximum"]):
            return False
    if isinstance(value, str) and (len(value) < schema.get("minLength", 0)
                                   or len(value) > schema.get("maxLength", len(value))):
        return False
    if isinstance(value, list):
        return all(_accepts(schema.get("items", True), item) for item in value)
    if isinstance(value, dict):
        if any(name not in value for name in schema.get("required", ())):
            return False
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        return all(_accepts(props[k] if k in props else extra, v) for k, v in value.items())
    return True


def check(schema: Mapping[str, Any], plugin: str | None) -> None:
    """Raise InvalidModule unless ``schema`` is a valid JSON Schema with local refs only."""
    for ref in _refs(schema):
        if not ref.startswith("#"):
            raise InvalidModule(
                f"manifest config schema: $ref {ref[:200]!r} points outside the schema; only "
                "local references (#/...) are allowed, nothing is fetched", plugin=plugin)
    if _plain(schema):
        return  # valid, and without a reference: nothing to recurse on
    import jsonschema

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        with _no_collection():
            cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidModule(f"manifest config schema is invalid: {exc.message[:300]}",
                            plugin=plugin) from None
    except RecursionError:
        raise InvalidModule("manifest config schema is nested too deeply",
                            plugin=plugin) from None
    # A reference cycle that consumes no input ({"$ref": "#"}) recurses on any instance.
    from referencing.exceptions import Unresolvable

    try:
        with _no_collection():
            _validator(schema).is_valid({})
    except RecursionError:
        raise InvalidModule("manifest config schema refers to itself without end",
                            plugin=plugin) from None
    except Unresolvable as exc:
        raise InvalidModule(f"manifest config schema has a reference that does not resolve: "
                            f"{str(exc)[:300]}", plugin=plugin) from None


#: A validator per module that has a schema (its key: the compiled module every copy of it
#: shares), with the schema it was built from: loading another copy validates its config
#: without building one again (issue 63).
_VALIDATORS: weakref.WeakKeyDictionary[object, tuple[Mapping[str, Any], Any]] = \
    weakref.WeakKeyDictionary()
_VALIDATORS_LOCK = threading.Lock()


def _validator_of(schema: Mapping[str, Any], owner: object | None) -> Any:
    if owner is None:
        return _validator(schema)
    with _VALIDATORS_LOCK:
        found = _VALIDATORS.get(owner)
    if found is not None and found[0] == schema:
        return found[1]
    made = _validator(schema)
    with _VALIDATORS_LOCK:
        _VALIDATORS[owner] = (schema, made)
    return made


def validate(config: Mapping[str, Any], schema: Mapping[str, Any], plugin: str, *,
             owner: object | None = None) -> None:
    """Raise ConfigError (naming the key) unless ``config`` satisfies ``schema``.

    ``owner``: what the schema belongs to and lives as long as it (a plugin's compiled
    module): the validator built for it is kept while it lives and used again for the same
    schema."""
    if _plain(schema) and _accepts(schema, dict(config)):
        return
    import jsonschema
    from referencing.exceptions import Unresolvable

    try:
        with _no_collection():
            _validator_of(schema, owner).validate(dict(config))
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ConfigError(f"plugin {plugin!r}: config {where}: {exc.message[:500]}",
                          key=f"plugins.{plugin}.config.{where}", value=exc.instance) from None
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"plugin {plugin!r}: its manifest's config schema is invalid: "
                          f"{exc.message[:300]}", key=f"plugins.{plugin}.config") from None
    except Unresolvable as exc:
        raise ConfigError(f"plugin {plugin!r}: its manifest's config schema has a reference "
                          f"that does not resolve: {str(exc)[:300]}",
                          key=f"plugins.{plugin}.config") from None
    except RecursionError:
        raise ConfigError(f"plugin {plugin!r}: its manifest's config schema refers to itself "
                          "without end", key=f"plugins.{plugin}.config") from None

"""The JSON Schema a plugin's manifest gives for its config section (specs/abi.md §5).

The schema comes from the plugin, so it is hostile input like the rest of the module: it is
checked when the module loads and used offline only. A ``$ref`` may point inside the schema
(``#/...``) and nowhere else, so no file dropped into a folder can make the host fetch a URL
(or read a file); a schema that refers to itself without end fails as a ConfigError instead
of exhausting the stack.
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


def check(schema: Mapping[str, Any], plugin: str | None) -> None:
    """Raise InvalidModule unless ``schema`` is a valid JSON Schema with local refs only."""
    for ref in _refs(schema):
        if not ref.startswith("#"):
            raise InvalidModule(
                f"manifest config schema: $ref {ref[:200]!r} points outside the schema; only "
                "local references (#/...) are allowed, nothing is fetched", plugin=plugin)
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

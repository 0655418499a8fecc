"""Writing the ``omnicore.manifest`` custom section (specs/abi.md §5) for SDK builds.

Every language's build ends here, so the manifest is the same whatever the source language:
the author describes the plugin once in ``omnicore.toml`` beside the sources::

    [plugin]
    name = "greeter"
    version = "0.1.0"
    description = "Greets people"
    handlers = ["greet"]              # optional: defaults to every handler-typed export
    [plugin.config]                   # optional JSON Schema of the plugin's config section
    type = "object"
    [plugin.handler.greet]            # optional, per handler: what an AI agent is told
    description = "Greet someone by name"
    input_schema = {type = "object", properties = {name = {type = "string"}}}

A ``[plugin.handler.NAME]`` table makes that handler's entry in the manifest an object
``{"name", "description", "input_schema"}`` (the MCP tool's description and input schema,
specs/abi.md §5); handlers without one stay plain names.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import wasmtime

from omnicore import __version__
from omnicore.errors import BuildError
from omnicore.sandbox.wasmbin import set_custom_section

__all__ = ["MANIFEST_FILE", "SECTION", "embed_manifest", "handler_exports", "read_plugin_meta"]

MANIFEST_FILE = "omnicore.toml"
SECTION = "omnicore.manifest"
_KNOWN = ("name", "version", "description", "handlers", "handler", "config", "subscriptions",
          "schedules")
_HANDLER_KEYS = ("description", "input_schema")


def read_plugin_meta(src: Path) -> dict[str, Any]:
    """The ``[plugin]`` table of ``src/omnicore.toml`` (empty if there is none)."""
    path = src / MANIFEST_FILE
    if not path.exists():
        return {}
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"{path}: invalid TOML: {exc}") from exc
    meta = doc.get("plugin", {})
    if not isinstance(meta, dict):
        raise BuildError(f"{path}: [plugin] must be a table")
    unknown = sorted(set(meta) - set(_KNOWN))
    if unknown:
        raise BuildError(f"{path}: unknown [plugin] keys {unknown}; known: {list(_KNOWN)}")
    return meta


def handler_exports(wasm: bytes) -> list[str]:
    """Exports of the handler type ``(i32, i32) -> i64`` that are not reserved names."""
    module = wasmtime.Module(wasmtime.Engine(), wasm)
    names = []
    for exp in module.exports:
        ty = exp.type
        if not isinstance(ty, wasmtime.FuncType) or exp.name.startswith(("omni_", "_")):
            continue
        params = [str(p) for p in ty.params]
        results = [str(r) for r in ty.results]
        if params == ["i32", "i32"] and results == ["i64"]:
            names.append(exp.name)
    return names


def embed_manifest(wasm: bytes, meta: dict[str, Any], *, language: str,
                   default_name: str, exported: list[str] | None = None) -> bytes:
    """Return ``wasm`` carrying a manifest built from ``meta`` (see :func:`read_plugin_meta`).

    ``exported`` names the handlers of a component (its toolchain knows them); a core
    module's are read from its exports.
    """
    component = wasm[4:8] == b"\x0d\x00\x01\x00"
    manifest: dict[str, Any] = {"abi": "component" if component else 1,
                                "name": meta.get("name", default_name),
                                "version": meta.get("version", "0.0.0"),
                                "description": meta.get("description", "")}
    if exported is None:
        exported = handler_exports(wasm)
    handlers = meta.get("handlers", exported)
    missing = [h for h in handlers if h not in exported]
    if missing:
        raise BuildError(f"omnicore.toml lists handlers {missing} that the module does not "
                         f"export with type (i32, i32) -> i64; exported handlers: {exported}",
                         plugin=manifest["name"], toolchain=language)
    manifest["handlers"] = _described(handlers, meta.get("handler", {}), manifest["name"],
                                      language)
    for key in ("config", "subscriptions", "schedules"):
        if key in meta:
            manifest[key] = meta[key]
    _check_entries(manifest, language)
    manifest["sdk"] = {"language": language, "version": __version__}
    payload = json.dumps(manifest, separators=(",", ":"), ensure_ascii=False).encode()
    return set_custom_section(wasm, SECTION, payload)


def _check_entries(manifest: dict[str, Any], language: str) -> None:
    """The checks every load runs on the entries a capability reads (a schedule's interval,
    a subscription's handler), here at build time: a plugin that would fail to load with
    the reason fails to build with it instead."""
    from omnicore.capabilities.builtin import builtin_registry
    from omnicore.errors import ConfigError

    names = [h if isinstance(h, str) else h["name"] for h in manifest["handlers"]]
    try:
        for check in builtin_registry().manifest_checks(manifest):
            check(manifest["name"], manifest, names)
    except ConfigError as exc:
        raise BuildError(f"omnicore.toml: {exc}", plugin=manifest["name"],
                         toolchain=language) from None


def _described(handlers: list[str], tables: object, plugin: str,
               language: str) -> list[str | dict[str, Any]]:
    """``handlers`` with each ``[plugin.handler.NAME]`` table folded in as an object."""
    if not isinstance(tables, dict):
        raise BuildError("omnicore.toml: [plugin.handler] must hold one table per handler",
                         plugin=plugin, toolchain=language)
    for name, table in tables.items():
        if name not in handlers:
            raise BuildError(f"omnicore.toml: [plugin.handler.{name}] describes no handler of "
                             f"this plugin (handlers: {handlers})", plugin=plugin,
                             toolchain=language)
        bad = sorted(set(table) - set(_HANDLER_KEYS)) if isinstance(table, dict) else ["?"]
        schema = table.get("input_schema", {"type": "object"}) if not bad else None
        if bad or not isinstance(table.get("description", ""), str) or \
                not isinstance(schema, dict) or schema.get("type") != "object":
            raise BuildError(f"omnicore.toml: [plugin.handler.{name}] may hold description "
                             "(a string) and input_schema (a JSON Schema with type = "
                             "\"object\")", plugin=plugin, toolchain=language)
    return [{"name": h, **tables[h]} if h in tables else h for h in handlers]

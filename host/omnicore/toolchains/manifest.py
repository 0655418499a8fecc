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

Most of a handler's description comes from its code instead: the SDKs derive the input and
output schemas from the handler's types and take the description from its doc comment. A
core module says so through its ``omni_describe`` / ``omni_describe_NAME`` exports, which
the build calls here in a sandbox with every import a trap (specs/abi.md §5.1); a language
whose output is a component (python) or whose types vanish in the bundle (TypeScript) hands
the build what its toolchain read from the sources. ``[plugin.handler.NAME]`` keys win over
the code's, key by key. A described handler's entry in the manifest is an object
``{"name", "description", "title", "input", "input_schema", "output_schema", "destructive",
"long_running", "asks_first", "content"}``; handlers with nothing said stay plain names.
``input = "text"`` says the handler reads its whole input as text, not JSON (an MCP tool of it
takes one string argument): such a handler has no ``input_schema``.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import wasmtime

from omnicore import __version__
from omnicore.errors import BuildError, ConfigError
from omnicore.sandbox import wasmbin
from omnicore.sandbox._wasmtime import use_winch
from omnicore.sandbox.wasmbin import set_custom_section

__all__ = ["MANIFEST_FILE", "SECTION", "embed_manifest", "handler_exports", "read_plugin_meta"]

MANIFEST_FILE = "omnicore.toml"
SECTION = "omnicore.manifest"
_KNOWN = ("name", "version", "description", "handlers", "handler", "config", "subscriptions",
          "schedules", "prompts", "resources", "routes")
_HANDLER_KEYS = ("description", "title", "input", "input_schema", "output_schema",
                 "destructive", "long_running", "asks_first", "content")
#: Exports a core module describes its handlers through: one for all handlers (a JSON object
#: keyed by handler), or one per handler (its object); both of the handler type.
DESCRIBE = "omni_describe"
#: Fuel for running a module's start code and describe exports at build time (a Go runtime
#: starts in about 10 million instructions): a loop in them fails the build, not hangs it.
_DESCRIBE_FUEL = 2_000_000_000


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


_I32, _I64 = 0x7F, 0x7E


def handler_exports(wasm: bytes) -> list[str]:
    """Exports of the handler type ``(i32, i32) -> i64`` that are not reserved names.

    Validated by wasmtime (a toolchain's invalid output fails the build here, as before) and
    read from the bytes: wasmtime tells a module's export types only once it has compiled it,
    4 s of CPU for a Go plugin, at every build."""
    wasmtime.Module.validate(wasmtime.Engine(), wasm)
    return [name for name, params, results in wasmbin.function_exports(wasm)
            if not name.startswith(("omni_", "_"))
            and params == bytes([_I32, _I32]) and results == bytes([_I64])]


def embed_manifest(wasm: bytes, meta: dict[str, Any], *, language: str,
                   default_name: str, exported: list[str] | None = None,
                   described: dict[str, dict[str, Any]] | None = None) -> bytes:
    """Return ``wasm`` carrying a manifest built from ``meta`` (see :func:`read_plugin_meta`).

    ``exported`` names the handlers of a component (its toolchain knows them); a core
    module's are read from its exports. ``described`` holds what the toolchain read of each
    handler from its sources; a core module's own ``omni_describe`` exports add theirs.
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
    from_code = dict(described or {})
    if not component:
        for name, entry in describe_exports(wasm, manifest["name"], language).items():
            from_code[name] = {**from_code.get(name, {}), **entry}
    manifest["handlers"] = _described(handlers, meta.get("handler", {}), from_code,
                                      manifest["name"], language)
    # routes: proposals only, served once the operator accepts one (specs/http-routes.md §7)
    for key in ("config", "subscriptions", "schedules", "prompts", "resources", "routes"):
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


def _bad_entry(name: str, table: object) -> str | None:
    """Why a handler's description is unusable, or None."""
    if not isinstance(table, dict):
        return "must be a table"
    bad = sorted(set(table) - set(_HANDLER_KEYS))
    if bad:
        return f"has unknown keys {bad}; known: {list(_HANDLER_KEYS)}"
    for key in ("description", "title"):
        if not isinstance(table.get(key, ""), str):
            return f"{key} must be a string"
    for key in ("destructive", "asks_first", "content"):
        if not isinstance(table.get(key, False), bool):
            return f"{key} must be true or false"
    if table.get("long_running", False) not in (True, False, "required"):
        return "long_running must be true, false or \"required\""
    if table.get("input", "json") not in ("json", "text"):
        return "input must be \"json\" (the default) or \"text\" (the whole input as text)"
    if table.get("input") == "text" and "input_schema" in table:
        return "reads text (input = \"text\"), so it takes no input_schema"
    for key in ("input_schema", "output_schema"):
        schema = table.get(key, {"type": "object"})
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return f"{key} must be a JSON Schema with type = \"object\""
    return None


def _described(handlers: list[str], tables: object, from_code: dict[str, dict[str, Any]],
               plugin: str, language: str) -> list[str | dict[str, Any]]:
    """``handlers`` with what their code says and each ``[plugin.handler.NAME]`` table (which
    wins, key by key) folded in as an object."""
    if not isinstance(tables, dict):
        raise BuildError("omnicore.toml: [plugin.handler] must hold one table per handler",
                         plugin=plugin, toolchain=language)
    for name, table in tables.items():
        if name not in handlers:
            raise BuildError(f"omnicore.toml: [plugin.handler.{name}] describes no handler of "
                             f"this plugin (handlers: {handlers})", plugin=plugin,
                             toolchain=language)
        problem = _bad_entry(name, table)
        if problem:
            raise BuildError(f"omnicore.toml: [plugin.handler.{name}] {problem}",
                             plugin=plugin, toolchain=language)
    out: list[str | dict[str, Any]] = []
    for h in handlers:
        code = from_code.get(h, {})
        problem = _bad_entry(h, code)
        if problem:
            raise BuildError(f"the description of handler '{h}' from its code {problem}",
                             plugin=plugin, toolchain=language)
        entry = {k: v for k, v in {**code, **tables.get(h, {})}.items() if v not in ("", None)}
        if entry.get("input") == "text":
            entry.pop("input_schema", None)  # omnicore.toml says text: the code's schema goes
        out.append({"name": h, **entry} if entry else h)
    return out


def _compiled_once(wasm: bytes) -> tuple[wasmtime.Engine, wasmtime.Module]:
    """``wasm`` compiled to run once, for a moment, with fuel: by Winch, wasmtime's baseline
    compiler (0.9 s of CPU for a Go plugin, where Cranelift took 5), else by Cranelift."""
    def engine(baseline: bool) -> wasmtime.Engine:
        config = wasmtime.Config()
        config.consume_fuel = True
        if baseline:
            use_winch(config)
        return wasmtime.Engine(config)

    try:
        winch = engine(baseline=True)
        return winch, wasmtime.Module(winch, wasm)
    except (ConfigError, wasmtime.WasmtimeError):
        pass  # a wasmtime without Winch, or code Winch cannot compile (or invalid: said below)
    cranelift = engine(baseline=False)
    return cranelift, wasmtime.Module(cranelift, wasm)


def describe_exports(wasm: bytes, plugin: str, language: str) -> dict[str, dict[str, Any]]:
    """What a core module's ``omni_describe`` exports say of its handlers, by handler.

    The module runs here once, at build time, with WASI (a Go runtime needs it) and every
    other import defined as a trap: describing calls no capability.
    """
    # Compiling costs seconds for a module the size of an interpreter (Ruby): look for the
    # name in the export section's bytes first.
    export_sections = [wasm[start:end] for sid, start, end in wasmbin.sections(wasm) if sid == 7]
    if not any(DESCRIBE.encode() in section for section in export_sections):
        return {}
    engine, module = _compiled_once(wasm)
    names = [e.name for e in module.exports
             if e.name == DESCRIBE or e.name.startswith(DESCRIBE + "_")]
    if not names:
        return {}
    store = wasmtime.Store(engine)
    store.set_fuel(_DESCRIBE_FUEL)
    store.set_wasi(wasmtime.WasiConfig())
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    linker.define_unknown_imports_as_traps(module)
    out: dict[str, dict[str, Any]] = {}
    try:
        instance = linker.instantiate(store, module)
        exports = instance.exports(store)
        init = exports.get("_initialize")
        if isinstance(init, wasmtime.Func):
            init(store)
        memory = exports.get("memory")
        for name in names:
            func = exports[name]
            assert isinstance(func, wasmtime.Func) and isinstance(memory, wasmtime.Memory)
            packed = func(store, 0, 0)
            ptr, length = packed >> 32, packed & 0x7FFF_FFFF
            text = memory.read(store, ptr, ptr + length).decode()
            if packed & 0x8000_0000:
                raise BuildError(f"{name} failed: {text[:500]}", plugin=plugin,
                                 toolchain=language)
            doc = json.loads(text)
            if name == DESCRIBE:
                for handler, entry in (doc.get("handlers") or {}).items():
                    out[handler] = {**out.get(handler, {}), **entry}
            else:
                handler = name.removeprefix(DESCRIBE + "_")
                out[handler] = {**out.get(handler, {}), **doc}
    except (wasmtime.WasmtimeError, wasmtime.Trap, ValueError, AttributeError) as exc:
        raise BuildError(f"describing the handlers failed: {str(exc).splitlines()[0][:500]}",
                         plugin=plugin, toolchain=language) from None
    return out

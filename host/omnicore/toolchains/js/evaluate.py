"""The JS runtime run at build time: a plugin's exports, its bytecode, and the snapshot.

The build instantiates the runtime under wasmtime with stub host functions (which record
that they were called) to load the plugin once: syntax and top-level errors become a
:class:`BuildError` and the exported functions its handlers; the runtime itself compiles the
source to QuickJS bytecode (so versions match); and, when the top level calls no host
function, the memory right after ``_initialize`` becomes the module's data (a snapshot).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import wasmtime

from omnicore.errors import BuildError
from omnicore.sandbox import modcache, modkey
from omnicore.toolchains.js.commands import LANGUAGE
from omnicore.toolchains.js.rewrite import call_sites, mutable_globals, nonzero_segments
from omnicore.toolchains.js.source import CAPABILITIES

__all__ = ["BYTECODE", "LOAD_FUEL", "LoadedRuntime", "bytecode", "load_exports",
           "load_runtime", "pack_region", "snapshot"]

#: How long top-level code may run while the build loads the plugin (wasmtime fuel units).
LOAD_FUEL = 2_000_000_000


@dataclass(frozen=True)
class LoadedRuntime:
    """The runtime compiled for build-time use, with what every plugin build reads of it."""

    wasm: bytes
    sites: list[tuple[int, int, int]]
    region_ptr: int
    region_cap: int
    engine: wasmtime.Engine
    module: wasmtime.Module


@cache
def load_runtime(path: Path) -> LoadedRuntime:
    """The runtime at ``path``, compiled once per process (and cached beside it on disk)."""
    wasm = path.read_bytes()
    config = wasmtime.Config()
    config.consume_fuel = True
    engine = wasmtime.Engine(config)
    cached = path.with_suffix(f".wasmtime-{metadata.version('wasmtime')}.cwasm")
    digest = hashlib.sha256(wasm).hexdigest()
    # Authenticated before wasmtime sees it (sandbox/modcache.py), with the user's key.
    module = modcache.compiled(cached, modcache.Origin(digest, "js-evaluate/fuel"), engine,
                               wasmtime.Module, lambda: wasmtime.Module(engine, wasm),
                               modkey.user_key())
    store, instance = _instantiate(engine, module, [])
    exports = instance.exports(store)
    ptr = exports["omni_js_region_ptr"](store)  # type: ignore[operator]
    cap = exports["omni_js_region_cap"](store)  # type: ignore[operator]
    return LoadedRuntime(wasm, call_sites(wasm), int(ptr), int(cap), engine, module)


def _stub(ty: wasmtime.FuncType, name: str, calls: list[str]) -> Any:
    results = [str(r) for r in ty.results]

    def stub(*args: Any) -> Any:
        calls.append(name)
        if not results:
            return None
        return 0 if results == ["i64"] else -1  # i32: NOT_FOUND; i64: an empty §3.3 block

    return stub


def _instantiate(engine: wasmtime.Engine, module: wasmtime.Module, calls: list[str],
                 ) -> tuple[wasmtime.Store, wasmtime.Instance]:
    """An instance whose host functions are stubs that record their names in ``calls``."""
    store = wasmtime.Store(engine)
    store.set_fuel(LOAD_FUEL)
    store.set_wasi(wasmtime.WasiConfig())
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    for imp in module.imports:
        if imp.module.startswith("omnicore:") and isinstance(imp.type, wasmtime.FuncType):
            linker.define_func(imp.module, imp.name or "", imp.type,
                               _stub(imp.type, f"{imp.module}.{imp.name}", calls))
    return store, linker.instantiate(store, module)


def _unpack(store: wasmtime.Store, memory: wasmtime.Memory, packed: int) -> tuple[bool, bytes]:
    packed &= (1 << 64) - 1
    ptr, n = packed >> 32, packed & 0x7FFF_FFFF
    return bool(packed & 0x8000_0000), bytes(memory.read(store, ptr, ptr + n)) if n else b""


#: The region flag saying its code is QuickJS bytecode (the other bits: the capability mask).
BYTECODE = 1 << 31


def pack_region(code: bytes, handlers: list[str], flags: int) -> bytes:
    """The runtime's reserved region: ``OMJS``, flags, the handler names and the code."""
    names = "\n".join(handlers).encode()
    return b"OMJS" + struct.pack("<III", flags, len(names), len(code)) + names + code + b"\0"


def snapshot(rt: LoadedRuntime, region: bytes, plugin: str,
             ) -> tuple[list[tuple[int, bytes]], int] | None:
    """The linear memory right after ``_initialize``, as data segments, and its page count.

    Pre-initialising at build time (what Wizer does for Javy) makes a new instance a memory
    copy instead of creating a JS context and evaluating the plugin (≈1.5-6 ms). Not done
    when the top level called a host function: those calls must happen in every instance,
    with its own grants and config. A snapshot cannot capture mutable globals either, so a
    runtime with more than the stack pointer gets none.
    """
    if mutable_globals(rt.wasm) > 1:
        return None
    calls: list[str] = []
    store, instance = _instantiate(rt.engine, rt.module, calls)
    exports = instance.exports(store)
    memory = exports["memory"]
    assert isinstance(memory, wasmtime.Memory)
    memory.write(store, region, rt.region_ptr)
    exports["_initialize"](store)  # type: ignore[operator]
    if calls:
        return None
    image = bytes(memory.read(store, 0, memory.data_len(store)))
    pages = memory.size(store)
    # the bytecode must load as the source did (omni_js_exports reports a load error)
    failed, body = _unpack(store, memory, int(exports["omni_js_exports"](store)))  # type: ignore[operator]
    if failed:
        raise BuildError(f"the compiled plugin does not load: {body.decode(errors='replace')}",
                         plugin=plugin, toolchain=LANGUAGE)
    return nonzero_segments(image), pages


def bytecode(rt: LoadedRuntime, source: bytes, plugin: str) -> bytes:
    """The module compiled to QuickJS bytecode by the runtime itself (so versions match)."""
    store, instance = _instantiate(rt.engine, rt.module, [])
    exports = instance.exports(store)
    memory = exports["memory"]
    assert isinstance(memory, wasmtime.Memory)
    exports["_initialize"](store)  # type: ignore[operator]
    ptr = exports["omni_alloc"](store, len(source) + 1)  # type: ignore[operator]
    if not ptr:
        raise BuildError("the JS runtime ran out of memory compiling the plugin",
                         plugin=plugin, toolchain=LANGUAGE)
    memory.write(store, source + b"\0", int(ptr))
    packed = exports["omni_js_compile"](store, ptr, len(source))  # type: ignore[operator]
    failed, code = _unpack(store, memory, int(packed))
    if failed:
        raise BuildError(code.decode("utf-8", "replace"), plugin=plugin, toolchain=LANGUAGE)
    return code


def load_exports(rt: LoadedRuntime, source: bytes, plugin: str) -> list[str]:
    """Run the plugin's top level once; return its exported function names."""
    region = pack_region(source, [], (1 << len(CAPABILITIES)) - 1)
    if len(region) > rt.region_cap:
        raise BuildError(f"the bundled source is {len(source)} bytes; the JS runtime holds at "
                         f"most {rt.region_cap - 17} (drop unused dependencies or minify)",
                         plugin=plugin, toolchain=LANGUAGE)
    store, instance = _instantiate(rt.engine, rt.module, [])
    exports = instance.exports(store)
    memory = exports["memory"]
    assert isinstance(memory, wasmtime.Memory)
    memory.write(store, region, rt.region_ptr)
    try:
        exports["_initialize"](store)  # type: ignore[operator]
        packed = exports["omni_js_exports"](store)  # type: ignore[operator]
    except wasmtime.Trap as exc:
        reason = ("it ran out of time (an endless loop at top level?)"
                  if "fuel" in str(exc) else str(exc).splitlines()[0])
        raise BuildError(f"loading the plugin failed: {reason}", plugin=plugin,
                         toolchain=LANGUAGE) from exc
    failed, body = _unpack(store, memory, int(packed))
    if failed:
        raise BuildError(body.decode("utf-8", "replace"), plugin=plugin, toolchain=LANGUAGE)
    return list(json.loads(body))

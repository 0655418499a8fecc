"""Modules linked to an Extism plugin by name: the manifest's ``wasm`` list (specs/extism.md).

An Extism manifest may list several modules; the plugin's own is ``main`` and the others are
linked under their names, so ``main`` (and each other) import their exports as functions:
``(import "math" "add" ...)`` from the module named ``math``, or user host functions from a
module named ``extism:host/user``. :class:`Links` reads and compiles them, checks every import
of every module against what is provided (Extism's kernel and host functions, the user
functions, WASI, the other modules' exports), orders them so a module is linked after the
modules it imports from, and refuses a missing target or a cycle in one line.

Per instance (one store) :meth:`Links.define` links each module in that order with wasmtime's
``Linker.module``, Extism's own call: a reactor is instantiated once per store (its
``_initialize`` run), a command (one exporting ``_start``) once per call of each export.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import wasmtime

from omnicore.errors import ConfigError, InvalidModule
from omnicore.sandbox import wasmbin
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.module import EXTISM_ENV, EXTISM_USER, WASI_MODULE, PluginModule

__all__ = ["COMMAND_INSTANCES", "Links", "Signature"]

Signature = tuple[tuple[str, ...], tuple[str, ...]]
#: Instances of command modules one store may make (each call of a command's export makes
#: one, kept until the store is dropped): the calls past it fail, the next call starts afresh.
COMMAND_INSTANCES = 1000


def _kind(t: object) -> str:
    return {wasmtime.FuncType: "func", wasmtime.MemoryType: "memory",
            wasmtime.TableType: "table", wasmtime.GlobalType: "global"}.get(type(t), "other")


def _sig(t: object) -> Signature | None:
    if not isinstance(t, wasmtime.FuncType):
        return None
    return (tuple(str(p) for p in t.params), tuple(str(r) for r in t.results))


def fmt(sig: Signature) -> str:
    """``(i64, i64) -> i64``, as Extism's refusals print a type."""
    params, results = sig
    return f"({', '.join(params)}) -> {results[0] if len(results) == 1 else '()'}"


@dataclass(frozen=True)
class _Linked:
    name: str
    path: Path
    module: wasmtime.Module
    command: bool


class Links:
    """The modules linked to one Extism plugin, compiled and in link order."""

    def __init__(self, plugin: str, modules: tuple[_Linked, ...]) -> None:
        self.plugin = plugin
        self._modules = modules
        #: Some module is a command: every call of its exports makes an instance.
        self.commands = any(m.command for m in modules)
        #: Some module imports WASI (the runtime then defines it).
        self.uses_wasi = any(i.module == WASI_MODULE for m in modules for i in m.module.imports)

    def __len__(self) -> int:
        return len(self._modules)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self._modules)

    @classmethod
    def build(cls, engine: SandboxEngine, main: PluginModule, paths: Mapping[str, Path],
              provided: Mapping[tuple[str, str], Signature]) -> Links:
        """Read and compile ``paths`` (name -> file), check every import of ``main`` and of
        each against ``provided`` and the modules' exports; ConfigError for a file that
        cannot be read, InvalidModule for a bad module, a missing target or a cycle."""
        who = f"plugin {main.name!r}"
        compiled: dict[str, _Linked] = {}
        for name, path in paths.items():
            try:
                wasm = path.read_bytes()
            except OSError as exc:
                raise ConfigError(f"{who}: cannot read the module linked as {name!r} ({path}): "
                                  f"{exc.strerror or exc}; fix the Extism manifest's wasm list "
                                  "or --link", key="wasm", source=str(path)) from None
            if wasmbin.uses_gc(wasm):
                # As the main module (sandbox/module.py): an Extism plugin using Wasm GC is
                # not supported, whichever of its modules uses it.
                raise InvalidModule(f"{who}: the module linked as {name!r} ({path}) uses Wasm "
                                    "GC; an Extism plugin using Wasm GC is not supported "
                                    "(omnicore ABI v1 plugins may use it)", plugin=main.name)
            try:
                module = engine.compile(wasm)
            except wasmtime.WasmtimeError as exc:
                first = str(exc).strip().splitlines()[0]
                raise InvalidModule(f"{who}: the module linked as {name!r} ({path}) is not a "
                                    f"valid WebAssembly module: {first}",
                                    plugin=main.name) from None
            command = any(e.name == "_start" for e in module.exports)
            compiled[name] = _Linked(name, path, module, command)
        exports = {(n, e.name): (_kind(e.type), _sig(e.type))
                   for n, m in compiled.items() for e in m.module.exports}
        main_imports = [(i.module, i.name, i.kind, i.signature) for i in main.imports]
        cls._check(main.name, "", main_imports, provided, exports, compiled)
        for name, m in compiled.items():
            imports = [(i.module, i.name or "", _kind(i.type), _sig(i.type))
                       for i in m.module.imports]
            cls._check(main.name, f"the module linked as {name!r}: ", imports, provided,
                       exports, compiled)
        return cls(main.name, tuple(compiled[n] for n in _order(main.name, compiled)))

    @staticmethod
    def _check(plugin: str, what: str, imports: list[tuple[str, str, str, Signature | None]],
               provided: Mapping[tuple[str, str], Signature],
               exports: Mapping[tuple[str, str], tuple[str, Signature | None]],
               linked: Mapping[str, _Linked]) -> None:
        who = f"plugin {plugin!r}"
        for module, name, kind, sig in imports:
            if module == WASI_MODULE:
                continue
            if module in linked:
                have = exports.get((module, name))
                if have is None:
                    raise InvalidModule(
                        f"{who}: {what}import {module}.{name}: the module linked as "
                        f"{module!r} ({linked[module].path.name}) does not export {name}",
                        plugin=plugin)
                if have != (kind, sig):
                    got = fmt(sig) if sig else kind
                    exported = fmt(have[1]) if have[1] else have[0]
                    raise InvalidModule(f"{who}: {what}import {module}.{name} has type {got}, "
                                        f"and the module linked as {module!r} exports it as "
                                        f"{exported}", plugin=plugin)
                continue
            want = provided.get((module, name))
            if want is None or kind != "func":
                raise InvalidModule(f"{who}: {what}Invalid function import from "
                                    f"{module}: {name} ({_hint(module, name)})", plugin=plugin)
            if sig != want:
                raise InvalidModule(f"{who}: {what}import {module}.{name} has type "
                                    f"{fmt(sig or ((), ()))}, expected {fmt(want)}",
                                    plugin=plugin)

    def define(self, linker: wasmtime.Linker, store: wasmtime.Store) -> None:
        """Link every module into ``store`` (the caller holds the linker's lock)."""
        for m in self._modules:
            linker.define_module(store, m.name, m.module)


def _hint(module: str, name: str) -> str:
    if module == EXTISM_ENV:
        return "try updating the SDK"
    if module == EXTISM_USER:
        return (f"supply the host function {name}: link a module exporting it as "
                f"{EXTISM_USER} (the Extism manifest's wasm list with \"name\": "
                f"\"{EXTISM_USER}\", or omnicore call --link {EXTISM_USER}=FILE), or register "
                "it in Python with omnicore.extism.host_fn (app.plugins.extism_functions)")
    return (f"no module is linked as {module!r}: add it to the Extism manifest's wasm list "
            f"({{\"path\": \"FILE.wasm\", \"name\": \"{module}\"}}) or pass omnicore call "
            f"--link {module}=FILE.wasm")


def _order(plugin: str, modules: Mapping[str, _Linked]) -> list[str]:
    """Names in link order (a module after those it imports from); a cycle is refused."""
    who = f"plugin {plugin!r}"
    done: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*path[path.index(name):], name])
            raise InvalidModule(f"{who}: its linked modules import from each other in a cycle "
                                f"({cycle}); a module is linked after the ones it imports "
                                "from, so a cycle cannot be linked (Extism cannot either)",
                                plugin=plugin)
        state[name] = 1
        for dep in dict.fromkeys(i.module for i in modules[name].module.imports):
            if dep in modules and dep != name:
                visit(dep, [*path, name])
            elif dep == name:
                raise InvalidModule(f"{who}: the module linked as {name!r} imports from "
                                    "itself", plugin=plugin)
        state[name] = 2
        done.append(name)

    for name in modules:
        visit(name, [])
    return done

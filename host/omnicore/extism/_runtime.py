"""Extism plugins as omnicore runtimes: the same call surface as ``sandbox.PluginRuntime``.

Each instance (:mod:`omnicore.extism._instance`) is one store holding our kernel
(``kernel.wat``) and the plugin, linked under ``extism:host/env`` with the host functions of
:mod:`omnicore.extism._env` (raw trampolines) and any user functions. A call is one guest call
(the instance sets the input); the runtime then reads output and error from kernel memory:
Extism's protocol (specs/extism.md) at the cost of a native call.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import wasmtime

from omnicore.egress import Client, Policy
from omnicore.errors import (
    ConfigError,
    GuestError,
    InvalidModule,
    MemoryLimitExceeded,
    NeedsGrant,
    PluginCallError,
    Trap,
)
from omnicore.extism._env import ENV_FUNCTIONS, EnvState, KernelMemory
from omnicore.extism._failures import call_error
from omnicore.extism._instance import Instance, fd_table, plugin_memory
from omnicore.extism._kernel import FIRST_HANDLE, KERNEL_FUNCTIONS, kernel_wasm
from omnicore.extism._links import Links, Signature
from omnicore.extism._manifest import DEFAULT_MAX_VAR_BYTES
from omnicore.extism._user import CurrentPlugin, UserFunction, Val, as_user_function
from omnicore.sandbox import _wasmtime as engine_api
from omnicore.sandbox import grants as grant_rules
from omnicore.sandbox.capability import CapabilityRegistry
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.fastcall import GuestFailure, HostTrap, RawInstance
from omnicore.sandbox.hostfunc import define_host_function
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.module import EXTISM_ENV, PluginModule
from omnicore.sandbox.pluginlog import PluginLog
from omnicore.sandbox.pool import PooledRuntime
from omnicore.sandbox.wasi import define_wasi
from omnicore.sandbox.wasi_fd import FsState, parse_dirs
from omnicore.sandbox.wasi_fs import define_wasi_fs
from omnicore.sandbox.wasi_output import WasiOutput

__all__ = ["ExtismRuntime"]

#: Guest error messages longer than this are truncated (as specs/abi.md §2.2).
MAX_ERROR_MESSAGE = 4096
_OUT = struct.Struct("<3Q")  # output_offset, output_length, error at byte 24


class ExtismRuntime(PooledRuntime["Instance"]):
    """Instances of one Extism plugin, linked with our kernel and Extism's host functions.

    The constructor and :meth:`call` raise what ``sandbox.PluginRuntime`` raises. Extism's
    own words are kept: a guest error's text, ``Error code: N``, ``timeout``, ``oom``.
    ``functions`` are user host functions (:func:`omnicore.extism.host_fn` or the Extism
    SDK's ``host_fn``); ``links`` the modules linked by name (name -> ``.wasm`` file, see
    :mod:`omnicore.extism._links`). Grants, config and limits arrive with an Extism manifest already
    mapped onto them (the plugin host does that, see specs/extism.md); ``max_var_bytes`` is
    the manifest's ``memory.max_var_bytes``.
    """

    # Extism's words first: an Extism user knows "Function not found".
    _NO_HANDLER = ("plugin {plugin!r}: Function not found: {handler} (its exported functions: "
                   "{handlers})")

    def __init__(self, engine: SandboxEngine, module: PluginModule,
                 registry: CapabilityRegistry,
                 grants: Mapping[str, Mapping[str, Any]] | Iterable[str] | None = None,
                 config: Mapping[str, Any] | None = None, limits: Limits | None = None,
                 log: PluginLog | None = None, *, data_dir: Path | None = None,
                 functions: Sequence[Any] = (),
                 max_var_bytes: int = DEFAULT_MAX_VAR_BYTES,
                 links: Mapping[str, Path] | None = None) -> None:
        if module.abi != "extism":
            raise InvalidModule(f"plugin {module.name!r} is not an Extism plugin",
                                plugin=module.name)
        engine_api.require("extism")
        self.engine = engine
        self.module = module
        self._attach(module.name, limits, log)
        self._max_input = self.limits.max_input_bytes
        self._max_output = self.limits.max_output_bytes
        self.config: Mapping[str, Any] = dict(config or {})
        grant_map = grant_rules.of_plugin(self.name, grants, registry)
        http = grant_map.get("http")
        if http is not None and http.get("connectors"):
            raise ConfigError(f"plugin {self.name!r}: Extism plugins send URLs, so "
                              "grant.http.connectors is not available to them",
                              key="grant.http.connectors")
        self.granted = frozenset(grant_map) | registry.defaults()
        user = [as_user_function(f) for f in functions]
        provided: dict[tuple[str, str], Signature] = {
            (EXTISM_ENV, n): sig for n, sig in KERNEL_FUNCTIONS.items()}
        provided.update({(EXTISM_ENV, n): (p, r) for n, (p, r, _) in ENV_FUNCTIONS.items()})
        provided.update({(f.namespace, f.name): f.wasm_type for f in user})
        self.links = Links.build(engine, module, links or {}, provided)
        missing = tuple(sorted(module.requested - self.granted))
        if missing:
            raise NeedsGrant(f"plugin {self.name!r} needs grant: "
                             f"{', '.join('omnicore:' + m for m in missing)}; grant it in the "
                             f"sidecar/config (grants = [{', '.join(map(repr, missing))}]) or "
                             "with --grant", plugin=self.name, missing=missing)
        self.live: dict[int, RawInstance] = {}
        self._keepalive: list[Any] = []
        linker = wasmtime.Linker(engine.wasmtime)
        linker.allow_shadowing = True  # each new store's kernel replaces the last one
        # WASI stdout/stderr go to the plugin's log through omnicore's fd_write, and every
        # WASI function that waits or spends is bounded by the deadline (sandbox.wasi).
        uses_wasi = module.uses_wasi or self.links.uses_wasi
        self.wasi_output = WasiOutput(self.log) if uses_wasi else None
        if self.wasi_output is not None:
            define_wasi(linker, self.wasi_output, self.live, self._keepalive,
                        memory_of=plugin_memory)
        # The fs grant (the manifest's allowed_paths): omnicore's own WASI file functions.
        fs = grant_map.get("fs")
        self.preopens = parse_dirs(fs.get("dirs", []), "grant.fs.dirs") if fs else ()
        if self.preopens and self.wasi_output is not None:
            define_wasi_fs(linker, FsState(self.preopens, self.log, self.wasi_output, fd_table),
                           self.live, self._keepalive, memory_of=plugin_memory)
        # The same client as omnicore:http's, without connectors (refused above).
        client = None if http is None else Client(Policy.from_grant(http, self.name))
        state = EnvState(self.config, self.log, max_var_bytes, client)
        for fname, (params, results, impl) in ENV_FUNCTIONS.items():
            define_host_function(linker, EXTISM_ENV, fname, params, results, impl, state,
                                 self.live, self._keepalive)
        for fn in user:
            params, results = fn.wasm_type
            define_host_function(linker, fn.namespace, fn.name, params, results, _call_user,
                                 fn, self.live, self._keepalive)
        self.linker = linker
        self.link_lock = threading.Lock()
        self.kernel = engine.compile(kernel_wasm())
        self.ticks = engine.deadline_ticks(self.limits.timeout_ms)
        self.fuel: int | None = None
        if engine.fuel:
            self.fuel = self.limits.fuel if self.limits.fuel is not None else 2**62
        self.fuel_enabled = self.fuel is not None  # (read by a traced call's span)
        self._handlers = frozenset(module.handlers)
        #: The handlers of type () -> (): their "code" is 0.
        self.void_handlers = frozenset(
            e.name for e in module.wasmtime_module.exports
            if e.name in self._handlers and isinstance(e.type, wasmtime.FuncType)
            and not e.type.results)
        # The handlers whose instance serves the next call. Extism starts a fresh store after
        # _start; a store of a plugin linked with a command module keeps an instance of it
        # per call of its exports, so it serves one call.
        self._reusable = frozenset() if self.links.commands else self._handlers - {"_start"}
        # Vars of instances discarded after a failed call or _start: Extism keeps a plugin's
        # vars across both, so the next new instance takes them over (list ops are atomic).
        self._carried_vars: list[dict[str, bytes]] = []
        engine.reaper.watch(self._open_pool(
            self._new_instance, self.wasi_output.close if self.wasi_output is not None else None,
            hollow=engine.hollow))
        self._idle = self._pool.idle  # the call path pops and appends directly (sandbox.pool)

    @property
    def handlers(self) -> tuple[str, ...]:
        """The plugin's handler names (its ``() -> i32`` / ``() -> ()`` exports)."""
        return self.module.handlers

    def _new_instance(self, handler: str | None) -> Instance:
        try:
            inst = Instance(self)
        except GuestFailure as f:
            raise self._error(f, f.start_stage(handler) or handler or "(start)", None) from None
        if self._carried_vars:
            inst.vars = self._carried_vars.pop()
        return inst

    def call(self, handler: str, data: bytes) -> bytes:
        """Run ``handler`` with ``data``; return its output bytes (errors as PluginRuntime)."""
        if handler not in self._handlers or type(data) is not bytes or len(data) > self._max_input:
            data = self._admitted(handler, data)
        pool = self._pool
        idle = self._idle
        try:  # the pool's acquire, its hot path inline (sandbox.pool)
            inst = idle.pop() if pool.reuse else pool.acquire(handler)
        except IndexError:
            inst = pool.acquire(handler)
        keep = handler in self._reusable
        try:
            code = inst.call(inst.funcs[handler], data)
        except GuestFailure as f:
            if f.exit_status is None or f.exit_status != 0:
                try:
                    error = self._error(f, handler, inst)
                finally:
                    self._release(inst, False)  # whatever classifying does, the slot returns
                raise error from None
            code, keep = 0, False  # proc_exit(0): success, but that runtime has exited
        except MemoryError:
            self._release(inst, False)
            lim = self.limits
            raise MemoryLimitExceeded(
                f"plugin {self.name!r} handler {handler!r}: oom: the input of {len(data)} bytes "
                f"does not fit in kernel memory within limits.max_memory_bytes "
                f"({lim.max_memory_bytes})", plugin=self.name, handler=handler,
                limit="max_memory_bytes", value=lim.max_memory_bytes) from None
        except BaseException:
            self._release(inst, False)
            raise
        if inst.deadline_hit:  # a host function ran past the deadline; the guest went on
            self._release(inst, False)
            raise self._error(GuestFailure("timeout"), handler, inst)
        mem = inst.memory
        off, length, err = _OUT.unpack_from(mem.view, 24)
        if not err and not code and length <= self._max_output and (
                length == 0 or (off >= FIRST_HANDLE and off + length <= mem.size)):
            out = mem.view[off:off + length].tobytes() if length else b""
            if keep and pool.reuse:
                idle.append(inst)
                if pool.waiters:
                    pool.notify()
            else:
                self._release(inst, keep)
            return out
        return self._finish_slow(inst, handler, code, off, length, err, keep)

    def _release(self, inst: Instance, keep: bool) -> None:
        # Per-call isolation carries nothing from one call to the next, vars included.
        if not keep and inst.vars and not self._pool.per_call:
            self._carried_vars.append(inst.vars)
        super()._release(inst, keep)

    def _finish_slow(self, inst: Instance, handler: str, code: int, off: int, length: int,
                     err: int, keep: bool) -> bytes:
        who = f"plugin {self.name!r} handler {handler!r}"
        try:
            msg = self._error_text(inst) if err else None
            if msg is not None:
                raise GuestError(f"{who} failed: {msg}", plugin=self.name, handler=handler,
                                 guest_message=msg)
            if code:
                msg = f"Error code: {code}"
                raise GuestError(f"{who} failed: {msg}", plugin=self.name, handler=handler,
                                 guest_message=msg)
            if length > self.limits.max_output_bytes:
                raise self.limits.output_too_large(length, who, self.name, handler)
            size = inst.memory.refresh()
            if off < FIRST_HANDLE or off + length > size:
                raise Trap(f"{who} set an output handle ({off}, {length} bytes) outside kernel "
                           f"memory ({size} bytes)", plugin=self.name, handler=handler)
            return inst.memory.view[off:off + length].tobytes()
        finally:
            self._release(inst, keep)

    @staticmethod
    def _error_text(inst: Instance) -> str | None:
        """The error the plugin set, as Extism reads it: the block at the error handle (one
        that is not a live block is no error)."""
        try:
            handle = _OUT.unpack_from(inst.memory.view, 24)[2]
            n = min(inst.kernel_length(handle), MAX_ERROR_MESSAGE) if handle else 0
            return inst.memory.read(handle, n).decode("utf-8", "replace") if n else None
        except HostTrap:
            return None

    def _error(self, f: GuestFailure, handler: str, inst: Instance | None) -> PluginCallError:
        said = self._error_text(inst) if inst is not None else None
        return call_error(self.name, self.limits, f, handler, inst, said)


def _call_user(fn: UserFunction, mem: KernelMemory, *args: Any) -> int | None:
    inputs = [Val(t, a) for t, a in zip(fn.params, args, strict=True)]
    outputs = [Val(t, 0) for t in fn.results]
    fn.callback(CurrentPlugin(mem.owner), inputs, outputs, *fn.user_data)
    return int(outputs[0].value) if outputs else None

"""A plugin bound to its grants, config and limits, with a pool of instances to call."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import wasmtime

from omnicore.errors import (
    GuestError,
    MemoryLimitExceeded,
    PluginCallError,
    PluginLoadError,
    Trap,
)
from omnicore.sandbox import configschema
from omnicore.sandbox import grants as grant_rules
from omnicore.sandbox._wasmtime import require
from omnicore.sandbox.capability import CapabilityRegistry, PluginContext
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.failures import Facts, classify
from omnicore.sandbox.fastcall import (
    GuestFailure,
    GuestMemory,
    HostTrap,
    RawInstance,
    address_of,
)
from omnicore.sandbox.grants import check_requested
from omnicore.sandbox.hostfunc import define_host_function
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.module import PluginModule
from omnicore.sandbox.pluginlog import PluginLog
from omnicore.sandbox.pool import PooledRuntime
from omnicore.sandbox.usage import FuelMeter, Usage, measure
from omnicore.sandbox.wasi import define_wasi
from omnicore.sandbox.wasi_fd import FdTable, FsState, parse_dirs
from omnicore.sandbox.wasi_fs import define_wasi_fs
from omnicore.sandbox.wasi_output import WasiOutput

__all__ = ["MAX_ERROR_MESSAGE", "PluginRuntime"]

#: specs/abi.md §2.2: longer guest error messages are truncated.
MAX_ERROR_MESSAGE = 4096


class PluginRuntime(PooledRuntime["RawInstance"]):
    """Instances of one plugin, linked with exactly the granted capabilities.

    Raises NeedsGrant when the module requests capabilities that were not granted (``log`` is
    granted by default), InvalidModule for imports the registry cannot satisfy, ConfigError
    for bad grants/config, PluginLoadError when the first instance cannot start.
    :meth:`call` is thread-safe; up to ``limits.pool_size`` calls run in parallel.
    """

    def __init__(self, engine: SandboxEngine, module: PluginModule,
                 registry: CapabilityRegistry,
                 grants: Mapping[str, Mapping[str, Any]] | Iterable[str] | None = None,
                 config: Mapping[str, Any] | None = None, limits: Limits | None = None,
                 log: PluginLog | None = None, *, data_dir: Path | None = None) -> None:
        require("host-functions")  # the Python call path's names (sandbox/_wasmtime.py)
        if module.needs_gc and engine.baseline:
            engine = engine.gc  # where it was compiled: Winch has no Wasm GC
        self.engine = engine
        self.module = module
        self._attach(module.name, limits, log)
        self.config: Mapping[str, Any] = dict(config or {})
        grant_map = grant_rules.of_plugin(self.name, grants, registry)
        module.check_imports(registry)
        self.granted = frozenset(grant_map) | registry.defaults()
        check_requested(self.name, module.requested, self.granted)
        self._validate_config()
        self._wasi_output = WasiOutput(self.log) if module.uses_wasi else None
        self._handlers = frozenset(module.handlers)
        self._has_init = any(e.name == "_initialize" for e in module.exports)
        self._live: dict[int, RawInstance] = {}
        self._meter = FuelMeter()
        self._keepalive: list[Any] = []
        linker = wasmtime.Linker(engine.wasmtime)
        if self._wasi_output is not None:
            define_wasi(linker, self._wasi_output, self._live, self._keepalive)
        # The fs grant's directories: WASI preopens served by sandbox.wasi_fs.
        fs = grant_map.get("fs")
        self._preopens = parse_dirs(fs.get("dirs", []), "grant.fs.dirs") if fs else ()
        if self._preopens and self._wasi_output is not None:
            define_wasi_fs(linker, FsState(self._preopens, self.log, self._wasi_output,
                                           _fd_table), self._live, self._keepalive)
        # A default capability the operator gave options is bound even when not imported:
        # the log grant's level also governs WASI stdout/stderr.
        bound = module.requested | (registry.defaults() & set(grant_map))
        for cname in sorted(bound):
            cap = registry.get(cname)
            assert cap is not None  # check_imports and of_plugin (its validate) guarantee it
            opts = grant_map.get(cname, {})
            state = cap.bind(PluginContext(self.name, opts, self.config, self.log, data_dir,
                                           module.handlers))
            if cname not in module.requested:
                continue
            for fn in cap.functions:
                define_host_function(linker, cap.namespace, fn.name, fn.params, fn.results,
                                     fn.impl, state, self._live, self._keepalive)
        try:
            self._pre = linker.instantiate_pre(module.wasmtime_module)
        except wasmtime.WasmtimeError as exc:
            raise PluginLoadError(f"plugin {self.name!r} cannot be linked: {exc}",
                                  plugin=self.name) from None
        self._linker = linker
        self._engine_addr = address_of(engine.wasmtime)
        self._pre_addr = address_of(self._pre)
        self._ticks = engine.deadline_ticks(self.limits.timeout_ms)
        self._max_input = self.limits.max_input_bytes
        self._max_output = self.limits.max_output_bytes
        # A fuel-metering engine starts every store at zero fuel: unlimited means "a lot".
        self._fuel: int | None = None
        if engine.fuel:
            self._fuel = self.limits.fuel if self.limits.fuel is not None else 2**62
        #: Whether calls are metered (the engine has fuel on); Limits.fuel is ignored if not.
        #: (An attribute: a traced call's span reads it on every call.)
        self.fuel_enabled = self._fuel is not None
        # One instance starts now: a broken _initialize shows at load, not at the first call.
        engine.reaper.watch(self._open_pool(
            self._new_instance,
            self._wasi_output.close if self._wasi_output is not None else None,
            hollow=engine.hollow))
        # The call path pops and appends here directly (see sandbox.pool).
        self._idle = self._pool.idle

    def _validate_config(self) -> None:
        schema = self.module.manifest.get("config")
        if schema:
            configschema.validate(self.config, schema, self.name,
                                  owner=self.module.wasmtime_module)

    def usage(self) -> Usage:
        """Memory its live instances hold and fuel its calls burnt (:mod:`sandbox.usage`)."""
        return measure(self._pool, self._live,
                       self._meter.total if self._fuel is not None else None)

    @property
    def handlers(self) -> tuple[str, ...]:
        """The plugin's handler names."""
        return self.module.handlers

    def _new_instance(self, handler: str | None) -> RawInstance:
        lim = self.limits
        wasi = self._wasi_output.config() if self._wasi_output is not None else None
        try:
            inst = RawInstance(self._engine_addr, self._pre_addr,
                               memory_limit=lim.max_memory_bytes,
                               deadline_ticks=self._ticks, clock=self.engine,
                               fuel=self._fuel,
                               burnt=self._meter.add if self._fuel is not None else None,
                               wasi=wasi, live=self._live,
                               has_initialize=self._has_init, timeout_s=lim.timeout_ms / 1000,
                               table_elements=lim.max_table_elements, tables=lim.max_tables,
                               files=FdTable(self._preopens) if self._preopens else None,
                               handler=handler)
        except GuestFailure as f:
            raise self._classify(f, f.start_stage(handler) or handler or "_initialize",
                                 None) from None
        except MemoryError:
            raise MemoryLimitExceeded(
                f"plugin {self.name!r}: omni_alloc could not allocate the input buffer within "
                f"{self.limits.max_memory_bytes} bytes (limits.max_memory_bytes)",
                plugin=self.name, handler=handler, limit="max_memory_bytes",
                value=self.limits.max_memory_bytes) from None
        except (ValueError, HostTrap, wasmtime.WasmtimeError) as exc:
            raise Trap(f"plugin {self.name!r}: cannot start an instance: {exc}",
                       plugin=self.name, handler=handler) from None
        if inst.slot is not None and self.engine.clock is not None:
            inst.slot.watch(inst._store, self.engine.clock)  # short calls may keep the GIL
        return inst

    def _classify(self, f: GuestFailure, handler: str,
                  inst: RawInstance | None, mark: int | None = None) -> PluginCallError:
        # A guest that cannot unwind (Rust panic=abort, Go's runtime, C abort) logs why and
        # then traps: that line is the most useful part of the error, so carry it along.
        said = tuple(ln.message.strip() for ln in self.log.since(mark)
                     if ln.level in ("warn", "error")) if mark is not None else ()
        return classify(self.name, handler, self.limits, Facts(
            message=f.message, code=f.code, exit_status=f.exit_status, logged=said,
            deadline=inst.deadline_hit if inst is not None else f.deadline_hit,
            instantiating=(f.stage == "instantiate" and f.code is None and f.refusal is None
                           and not f.deadline_hit),
            # wasmtime's store limiter refuses growth silently: the classifier judges by size.
            memory_bytes=inst.memory_size() if inst is not None else 0,
            refusal=inst.refusal if inst is not None else f.refusal))

    def call(self, handler: str, data: bytes) -> bytes:
        """Run ``handler`` with ``data``; return its output bytes.

        Raises HandlerNotFound, InputTooLarge, OutputTooLarge, GuestError, Trap,
        DeadlineExceeded, FuelExhausted, MemoryLimitExceeded (all name plugin and handler).
        """
        if handler not in self._handlers or type(data) is not bytes or len(data) > self._max_input:
            data = self._admitted(handler, data)
        inst = self._pool.acquire(handler)
        mark = self.log.written
        try:
            func = inst._funcs.get(handler) or inst.func(handler)
            slot = inst.slot
            out: bytes | None = None
            if slot is None:  # (it arms through the door: sandbox.deadline)
                packed = inst.call(func, data, self._ticks, 0)  # type: ignore[arg-type]
            else:
                # 0: a watched slot reads the epoch from its ticker itself.
                got = slot.call(func, data, self._ticks, 0, self._max_output)
                if got is False:
                    inst.fit_input(len(data), self._ticks)
                    got = slot.call(func, data, self._ticks, -1, self._max_output)
                if got is None:
                    raise inst.slot_failure()
                if got.__class__ is bytes:
                    out = got
                else:
                    packed = got
        except GuestFailure as f:
            if inst.call_ends:
                inst.end_call()
            # Classify before releasing: release frees the store the classifier inspects.
            try:
                error = self._classify(f, handler, inst, mark)
            finally:
                self._release(inst, False)  # whatever classifying does, the slot comes back
            raise error from None
        except MemoryError:
            self._release(inst, False)
            lim = self.limits
            raise MemoryLimitExceeded(
                f"plugin {self.name!r} handler {handler!r}: omni_alloc could not grow the "
                f"input buffer to {len(data)} bytes within limits.max_memory_bytes "
                f"({lim.max_memory_bytes}); the instance was discarded", plugin=self.name,
                handler=handler, limit="max_memory_bytes", value=lim.max_memory_bytes) from None
        except BaseException:
            self._release(inst, False)  # (closing it ends the call)
            raise
        if inst.call_ends:  # a host function left work for the call's end (a transaction)
            inst.end_call()
        if out is None:
            length = packed & 0x7FFF_FFFF
            ptr = packed >> 32
            mem = inst.memory
            # The common case, kept flat: success, within limits, inside memory as last seen.
            # (The C path copied such an output already.)
            if packed & 0x8000_0000 or length > self._max_output or ptr + length > mem.size:
                return self._finish_slow(inst, handler, packed)
            out = mem.view[ptr:ptr + length].tobytes()
        pool = self._pool
        if pool.reuse:
            self._idle.append(inst)
            if pool.waiters:
                pool.notify()
            return out
        pool.release(inst, True)
        return out

    def _finish_slow(self, inst: RawInstance, handler: str, packed: int) -> bytes:
        keep = False
        try:
            lim = self.limits
            ptr = packed >> 32
            length = packed & 0x7FFF_FFFF
            is_error = packed & 0x8000_0000
            if not is_error and length > lim.max_output_bytes:
                keep = True
                raise lim.output_too_large(
                    length, f"plugin {self.name!r} handler {handler!r}", self.name, handler)
            try:
                # abi.md §2.2: (ptr, len) out of bounds is a trap, error or not; only then is
                # a long error message cut. An empty output has no bytes: its ptr is ignored.
                if length:
                    inst.memory.check(ptr, length, "handler output")
                if is_error:
                    length = min(length, MAX_ERROR_MESSAGE)
                out = inst.read(ptr, length) if length else b""
            except HostTrap as exc:
                raise Trap(f"plugin {self.name!r} handler {handler!r} returned out-of-bounds "
                           f"output ({exc}); the instance was discarded", plugin=self.name,
                           handler=handler) from None
            keep = True
            if is_error:
                msg = out.decode("utf-8", "replace")
                raise GuestError(f"plugin {self.name!r} handler {handler!r} failed: {msg}",
                                 plugin=self.name, handler=handler, guest_message=msg)
            return out
        finally:
            self._release(inst, keep)




def _fd_table(mem: GuestMemory) -> FdTable:
    table = mem.instance.fs_table
    assert isinstance(table, FdTable)  # the file functions are defined only with preopens
    return table

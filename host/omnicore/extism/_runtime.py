"""Extism plugins as omnicore runtimes: the same call surface as ``sandbox.PluginRuntime``.

Each instance is one store holding our kernel (``kernel.wat``) and the plugin, linked under
``extism:host/env`` with the host functions of :mod:`omnicore.extism._env` (raw trampolines)
and any user functions. A call writes the input straight into kernel memory (the kernel's
``reset`` + ``alloc`` + ``input_set`` as one memory write), makes one guest call on the C
API's unchecked path, and reads output and error from kernel memory: Extism's protocol
(specs/extism.md) at the cost of a native call.
"""

from __future__ import annotations

import ctypes
import struct
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from ctypes import c_uint64, c_void_p
from pathlib import Path
from typing import Any, cast

import wasmtime

from omnicore.egress import Client, Policy
from omnicore.errors import (
    ConfigError,
    GuestError,
    HandlerNotFound,
    InputTooLarge,
    InvalidModule,
    MemoryLimitExceeded,
    NeedsGrant,
    OutputTooLarge,
    PluginCallError,
    PluginLoadError,
    Trap,
)
from omnicore.extism._env import ENV_FUNCTIONS, EnvState, KernelMemory
from omnicore.extism._failures import call_error
from omnicore.extism._failures import first_line as _first_line
from omnicore.extism._kernel import BLOCK_TAG, FIRST_HANDLE, KERNEL_FUNCTIONS, kernel_wasm
from omnicore.extism._links import COMMAND_INSTANCES, Links, Signature
from omnicore.extism._manifest import DEFAULT_MAX_VAR_BYTES
from omnicore.extism._user import CurrentPlugin, UserFunction, Val, as_user_function
from omnicore.sandbox.capability import CapabilityRegistry
from omnicore.sandbox.engine import SandboxEngine

# The fast path's C entry points (fastcall.PRIVATE_NAMES, checked by its test).
from omnicore.sandbox.fastcall import (
    GuestFailure,
    GuestMemory,
    HostTrap,
    RawInstance,
    _call_unchecked,
    _failure,
    _set_deadline,
    caller_memory,
    define_host_function,
)
from omnicore.sandbox.grants import merge as merge_grants
from omnicore.sandbox.grants import normalize as normalize_grants
from omnicore.sandbox.grants import validate as validate_grants
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.module import EXTISM_ENV, PluginModule
from omnicore.sandbox.pluginlog import PluginLog
from omnicore.sandbox.pool import InstancePool, PooledRuntime
from omnicore.sandbox.wasi import define_wasi
from omnicore.sandbox.wasi_fs import FdTable, FsState, define_wasi_fs, parse_dirs
from omnicore.sandbox.wasi_output import WasiOutput

__all__ = ["ExtismRuntime", "Instance"]

#: Guest error messages longer than this are truncated (as specs/abi.md §2.2).
MAX_ERROR_MESSAGE = 4096
_HEAD = struct.Struct("<10Q")  # the state words, free_hint, reserved, the input block header
_EMPTY = struct.pack("<7Q", 64, 0, 0, 0, 0, 0, 0)
_OUT = struct.Struct("<3Q")  # output_offset, output_length, error at byte 24
_monotonic = time.monotonic


def _addr(obj: Any) -> int:
    return int(ctypes.addressof(obj))


def _plugin_memory(kernel: GuestMemory, caller: int) -> GuestMemory:
    # WASI pointers are into the calling module's memory; host functions get the kernel's.
    owner = cast(KernelMemory, kernel).owner
    if not owner.linked_wasi:
        return owner.wasi_memory
    mem = caller_memory(caller, cast(RawInstance, owner), owner.caller_memories)
    if mem is None:
        raise HostTrap("a module calling WASI must export its memory as 'memory'")
    return mem


def _fd_table(mem: GuestMemory) -> FdTable:
    table = cast(Instance, mem.instance).fs_table
    assert table is not None  # the file functions are defined only with preopens
    return table


class Instance:
    """One store: the kernel and one plugin instance, driven through the C API."""

    def __init__(self, rt: ExtismRuntime) -> None:
        store = wasmtime.Store(rt.engine.wasmtime)
        self.store = store
        # Two instances (kernel, plugin), two memories; each memory within the limit. Tables
        # live outside linear memory: the same table limits as native plugins.
        lim = rt.limits
        # Linked modules add an instance each (a command one per call of its exports).
        n = 2 + len(rt.links) + (COMMAND_INSTANCES if rt.links.commands else 0)
        store.set_limits(memory_size=lim.max_memory_bytes, table_elements=lim.max_table_elements,
                         instances=n, tables=lim.max_tables * n, memories=n)
        if rt.fuel is not None:
            store.set_fuel(rt.fuel)
        if rt.wasi_output is not None:
            store.set_wasi(rt.wasi_output.config())
        self.ctx = int(ctypes.cast(store._context(), c_void_p).value or 0)
        # Slots 0-1: the call; 2-3: kernel calls from host functions; 8, 9: trap out-params.
        self._scratch = (c_uint64 * 10)()
        base = _addr(self._scratch)
        self._raw, self._raw2, self._trap, self._trap2 = base, base + 32, base + 64, base + 72
        self._i32 = (ctypes.c_int32 * 20).from_address(base)
        self.vars: dict[str, bytes] = {}
        # The last HTTP response's status and headers (http_status_code, http_headers).
        self.http_status = 0
        self.http_headers: dict[str, str] | None = None
        # Read by the raw host-function trampolines (fastcall): host functions run outside
        # the epoch check, so they stop at this wall-clock deadline and flag it.
        self.timeout_s = rt.limits.timeout_ms / 1000
        self.deadline = time.monotonic() + self.timeout_s
        self.deadline_hit = False
        self._live = rt.live
        self.fs_table = FdTable(rt.preopens) if rt.preopens else None
        # WASI called from linked modules: pointers into the caller's memory (one view each).
        self.linked_wasi = rt.links.uses_wasi
        self.caller_memories: dict[bytes, Any] = {}
        _set_deadline(self.ctx, rt.ticks)
        # What call() needs: the engine epoch of its last arm (-1: never), the input header
        # of the last input size, the deadline in ticks and the fuel each call starts with.
        self._armed = -1
        self._head_n, self._head = 0, b""
        self._engine, self._ticks, self._fuel = rt.engine, rt.ticks, rt.fuel
        rt.live[self.ctx] = cast(RawInstance, self)
        try:
            kernel = wasmtime.Instance(store, rt.kernel, [])
            with rt.link_lock:
                rt.linker.define_instance(store, EXTISM_ENV, kernel)
                rt.links.define(rt.linker, store)
                plugin = rt.linker.instantiate(store, rt.module.wasmtime_module)
        except wasmtime.Trap as exc:
            self.close()
            raise GuestFailure(exc.message, exc.trap_code) from None
        except wasmtime.WasmtimeError as exc:
            self.close()
            failure = GuestFailure(str(exc))
            failure.stage = "instantiate"
            raise failure from None
        kexp = kernel.exports(store)
        kmem = kexp["memory"]
        assert isinstance(kmem, wasmtime.Memory)
        self._kmem = kmem
        self.memory = KernelMemory(self.ctx, _addr(kmem._memory), cast(RawInstance, self))
        self.memory.owner = self
        funcs = {n: kexp[n] for n in ("alloc", "free", "length")}
        self._keep: list[Any] = [kernel, plugin, funcs]
        self._alloc, self._free, self._length = (_addr(f._func) for f in funcs.values()
                                                 if isinstance(f, wasmtime.Func))
        pexp = plugin.exports(store)
        self.funcs: dict[str, int] = {}
        for name in rt.module.handlers:
            f = pexp[name]
            assert isinstance(f, wasmtime.Func)
            self._keep.append(f)
            self.funcs[name] = _addr(f._func)
        pmem = pexp.get("memory")
        self.plugin_memory = pmem if isinstance(pmem, wasmtime.Memory) else None
        if self.plugin_memory is not None:
            # What WASI pointers refer to (host functions get the kernel's memory).
            self.wasi_memory = GuestMemory(self.ctx, _addr(self.plugin_memory._memory),
                                           cast(RawInstance, self))
        self._init(pexp)

    def _init(self, exports: Any) -> None:
        """Extism's guest runtime start: hs_init (after _initialize) for GHC, else
        __wasm_call_ctors or _initialize."""
        def func(name: str, sig: tuple[int, int] = (0, 0)) -> int | None:
            f = exports.get(name)
            if not isinstance(f, wasmtime.Func):
                return None
            t = f.type(self.store)
            if (len(t.params), len(t.results)) != sig and name != "hs_init":
                return None
            self._keep.append(f)
            return _addr(f._func)

        hs = func("hs_init")
        steps: list[tuple[str, int, int]] = []
        if hs is not None:
            init = func("_initialize")
            if init is not None:
                steps.append(("_initialize", init, 0))
            steps.append(("hs_init", hs, 2))
        else:
            init = func("__wasm_call_ctors")
            name = "__wasm_call_ctors"
            if init is None:
                init, name = func("_initialize"), "_initialize"
            if init is not None:
                steps.append((name, init, 0))
        for name, addr, nargs in steps:
            self._scratch[0] = self._scratch[2] = 0
            try:
                self._invoke(addr, max(nargs, 1))
            except GuestFailure as failure:
                failure.stage = name
                self.close()
                raise

    def _invoke(self, func: int, nslots: int) -> None:
        err = _call_unchecked(self.ctx, func, self._raw, nslots, self._trap)
        if err or self._scratch[8]:
            trap, self._scratch[8] = self._scratch[8], 0
            raise _failure(err, trap)

    def _kernel(self, func: int, *args: int) -> int:
        """Call a kernel function from a host function (re-entrant: its own slots)."""
        for i, a in enumerate(args):
            self._scratch[4 + 2 * i] = a & 0xFFFF_FFFF_FFFF_FFFF
        err = _call_unchecked(self.ctx, func, self._raw2, max(len(args), 1), self._trap2)
        if err or self._scratch[9]:
            trap, self._scratch[9] = self._scratch[9], 0
            message = _failure(err, trap).message
            if "extism_kernel!oom" in message:
                raise HostTrap("oom: kernel memory cannot grow within limits.max_memory_bytes "
                               "(the Extism manifest's memory.max_pages)")
            raise HostTrap(f"the Extism kernel failed: {_first_line(message)}")
        return int(self._scratch[4])

    # -- what host functions and user functions use ---------------------------------------

    def kernel_alloc(self, n: int) -> int:
        return self._kernel(self._alloc, n)

    def kernel_free(self, handle: int) -> None:
        self._kernel(self._free, handle)

    def kernel_length(self, handle: int) -> int:
        return self._kernel(self._length, handle) if handle else 0

    def kernel_view(self) -> memoryview:
        self.memory.refresh()
        return self.memory.view

    def new_block(self, data: bytes) -> int:
        """A new kernel block holding ``data``; its handle (0 for empty data)."""
        if not data:
            return 0
        handle = self.kernel_alloc(len(data))
        self.memory.write(handle, data, "kernel block")
        return handle

    def block_bytes(self, handle: int, what: str) -> bytes:
        """The bytes of the block at ``handle`` (0 is empty)."""
        if handle == 0:
            return b""
        n = self.kernel_length(handle)
        if n == 0:
            raise HostTrap(f"invalid handle {handle} for the {what}: not a live block of "
                           "kernel memory")
        return self.memory.read(handle, n, what)

    def take_bytes(self, handle: int, what: str) -> bytes:
        """The bytes of the block at ``handle``, which is then freed (0 is empty)."""
        data = self.block_bytes(handle, what)
        if handle:
            self.kernel_free(handle)
        return data

    def take_text(self, handle: int, what: str) -> str:
        return self.take_bytes(handle, what).decode("utf-8", "replace")

    # -- the call ---------------------------------------------------------------------------

    def call(self, func: int, data: bytes) -> int:
        """Set the input, run ``func``, return its i32 code (0 for a ``() -> ()`` export)."""
        n = len(data)
        mem = self.memory
        if FIRST_HANDLE + n > mem.size and FIRST_HANDLE + n > mem.refresh():
            self._grow(FIRST_HANDLE + n)
        view = mem.view
        if n:
            if n != self._head_n:  # the state words and input header depend on n alone
                cap = (n + 7) & ~7
                self._head = _HEAD.pack(FIRST_HANDLE + cap, FIRST_HANDLE, n, 0, 0, 0, 0, 0,
                                        cap | BLOCK_TAG, n)
                self._head_n = n
            view[0:80] = self._head
            view[80:80 + n] = data
        else:
            view[0:56] = _EMPTY
        if self._fuel is not None:
            self.store.set_fuel(self._fuel)
        self.deadline = _monotonic() + self.timeout_s
        # While the engine's epoch is the one of the last arm, the deadline (that epoch +
        # ticks) is already in place: one C call saved (it lags by at most one tick).
        epoch = self._engine.epoch
        if epoch != self._armed:
            _set_deadline(self.ctx, self._ticks)
            self._armed = epoch
        scratch = self._scratch
        scratch[0] = 0
        err = _call_unchecked(self.ctx, func, self._raw, 1, self._trap)
        if err or scratch[8]:
            trap, scratch[8] = scratch[8], 0
            raise _failure(err, trap)
        return self._i32[0]

    def _grow(self, need: int) -> None:
        pages = -(-need // 65536) - self._kmem.size(self.store)
        try:
            self._kmem.grow(self.store, pages)
        except wasmtime.WasmtimeError:
            raise MemoryError(f"kernel memory cannot hold {need} bytes") from None
        self.memory.refresh()

    def memory_sizes(self) -> tuple[int, int]:
        """Bytes of kernel memory and plugin memory (0 when the plugin has none)."""
        plugin = self.plugin_memory.data_len(self.store) if self.plugin_memory else 0
        return self.memory.refresh(), plugin

    def close(self) -> None:
        self._live.pop(self.ctx, None)
        if self.fs_table is not None:
            self.fs_table.close()


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
        self.engine = engine
        self.module = module
        self.name = module.name
        self.limits = limits or Limits()
        self._max_input = self.limits.max_input_bytes
        self._max_output = self.limits.max_output_bytes
        self.config: Mapping[str, Any] = dict(config or {})
        self.log = log if log is not None else PluginLog(module.name)
        self.log.rate_bytes = self.limits.max_log_bytes_per_s
        self.log.rate_lines = self.limits.max_log_lines_per_s
        grant_map = merge_grants(normalize_grants(grants, source=f"plugin {self.name!r}"))
        validate_grants(grant_map, registry, self.name)
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
                        memory_of=_plugin_memory)
        # The fs grant (the manifest's allowed_paths): omnicore's own WASI file functions.
        fs = grant_map.get("fs")
        self.preopens = parse_dirs(fs.get("dirs", []), "grant.fs.dirs") if fs else ()
        if self.preopens and self.wasi_output is not None:
            define_wasi_fs(linker, FsState(self.preopens, self.log, self.wasi_output, _fd_table),
                           self.live, self._keepalive, memory_of=_plugin_memory)
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
        self._handlers = frozenset(module.handlers)
        # The handlers whose instance serves the next call. Extism starts a fresh store after
        # _start; a store of a plugin linked with a command module keeps an instance of it
        # per call of its exports, so it serves one call.
        self._reusable = frozenset() if self.links.commands else self._handlers - {"_start"}
        # Vars of instances discarded after a failed call or _start: Extism keeps a plugin's
        # vars across both, so the next new instance takes them over (list ops are atomic).
        self._carried_vars: list[dict[str, bytes]] = []
        self._pool = InstancePool(
            self.name, self.limits.pool_size, self._new_instance,
            self.wasi_output.close if self.wasi_output is not None else None,
            limits=self.limits)
        self._idle = self._pool.idle  # the call path pops and appends directly (sandbox.pool)
        try:
            self._pool.seed()
        except PluginCallError as exc:
            if self.wasi_output is not None:
                self.wasi_output.close()
            raise PluginLoadError(f"plugin {self.name!r} failed to start: {exc}",
                                  plugin=self.name) from None
        engine.reaper.watch(self._pool)

    @property
    def handlers(self) -> tuple[str, ...]:
        """The plugin's handler names (its ``() -> i32`` / ``() -> ()`` exports)."""
        return self.module.handlers

    @property
    def fuel_enabled(self) -> bool:
        return self.fuel is not None

    def _new_instance(self, handler: str | None) -> Instance:
        try:
            inst = Instance(self)
        except GuestFailure as f:
            if f.stage == "instantiate" and f.code is None:
                if "memory minimum size" in f.message:
                    raise MemoryLimitExceeded(
                        f"plugin {self.name!r}: oom: it declares more initial memory than "
                        f"limits.max_memory_bytes ({self.limits.max_memory_bytes}, the Extism "
                        "manifest's memory.max_pages) allows",
                        plugin=self.name, handler=handler, limit="max_memory_bytes",
                        value=self.limits.max_memory_bytes) from None
                raise Trap(f"plugin {self.name!r} could not be instantiated: "
                           f"{_first_line(f.message)}", plugin=self.name,
                           handler=handler) from None
            raise self._error(f, f.stage or handler or "(start)", None) from None
        if self._carried_vars:
            inst.vars = self._carried_vars.pop()
        return inst

    def call(self, handler: str, data: bytes) -> bytes:
        """Run ``handler`` with ``data``; return its output bytes (errors as PluginRuntime)."""
        if handler not in self._handlers:
            # Extism's words first: an Extism user knows "Function not found".
            raise HandlerNotFound(
                f"plugin {self.name!r}: Function not found: {handler} (its exported "
                f"functions: {', '.join(self.module.handlers) or '(none)'})", plugin=self.name,
                handler=handler)
        if type(data) is not bytes:
            data = bytes(data)
        if len(data) > self._max_input:
            lim = self.limits
            raise InputTooLarge(
                f"plugin {self.name!r} handler {handler!r}: input of {len(data)} bytes exceeds "
                f"limits.max_input_bytes ({lim.max_input_bytes})", plugin=self.name,
                handler=handler, limit="max_input_bytes", value=lim.max_input_bytes)
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
                raise OutputTooLarge(
                    f"{who}: output of {length} bytes exceeds limits.max_output_bytes "
                    f"({self.limits.max_output_bytes})", plugin=self.name, handler=handler,
                    limit="max_output_bytes", value=self.limits.max_output_bytes)
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

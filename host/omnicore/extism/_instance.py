"""One Extism plugin instance: a store holding our kernel and the plugin, and its call.

A call writes the input straight into kernel memory (the kernel's ``reset`` + ``alloc`` +
``input_set`` as one memory write), makes one guest call and leaves output and error in kernel
memory for the runtime (:mod:`omnicore.extism._runtime`) to read. The guest call goes through
the C call path (``sandbox/_callpath.c``) when it is built and the call is not metered, else
through the C API's unchecked call from Python (``sandbox/fastcall.py``); the C functions and
wasmtime-py internals come from ``sandbox/_wasmtime.py``.
"""

from __future__ import annotations

import ctypes
import struct
import threading
import time
from ctypes import c_uint64
from typing import Any, Protocol, cast

import wasmtime

from omnicore.extism._env import KernelMemory
from omnicore.extism._failures import first_line as _first_line
from omnicore.extism._kernel import BLOCK_TAG, FIRST_HANDLE
from omnicore.extism._links import COMMAND_INSTANCES, Links
from omnicore.sandbox import _wasmtime as engine_api
from omnicore.sandbox._wasmtime import call_unchecked as _call_unchecked
from omnicore.sandbox.deadline import arm
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.failures import code_of
from omnicore.sandbox.fastcall import (
    CALLPATH,
    GuestFailure,
    GuestMemory,
    HostTrap,
    RawInstance,
    SlotDeadline,
    _failure,
)
from omnicore.sandbox.hostfunc import caller_memory
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.module import EXTISM_ENV, PluginModule
from omnicore.sandbox.wasi_fd import FdTable, Preopen
from omnicore.sandbox.wasi_output import WasiOutput

__all__ = ["Instance", "Runtime", "fd_table", "plugin_memory"]

_HEAD = struct.Struct("<10Q")  # the state words, free_hint, reserved, the input block header
_EMPTY = struct.pack("<7Q", 64, 0, 0, 0, 0, 0, 0)
_monotonic = time.monotonic


class Runtime(Protocol):
    """What an instance takes from its runtime (``ExtismRuntime``)."""

    engine: SandboxEngine
    module: PluginModule
    limits: Limits
    links: Links
    fuel: int | None
    ticks: int
    wasi_output: WasiOutput | None
    preopens: tuple[Preopen, ...]
    live: dict[int, RawInstance]
    kernel: wasmtime.Module
    linker: wasmtime.Linker
    link_lock: threading.Lock
    void_handlers: frozenset[str]


def _addr(obj: Any) -> int:
    return int(ctypes.addressof(obj))


def plugin_memory(kernel: GuestMemory, caller: int) -> GuestMemory:
    # WASI pointers are into the calling module's memory; host functions get the kernel's.
    owner = cast(Instance, cast(KernelMemory, kernel).owner)
    if not owner.linked_wasi and owner.wasi_memory is not None:
        return owner.wasi_memory
    # A linked module's call, or the plugin's start function before its exports are known.
    mem = caller_memory(caller, cast(RawInstance, owner), owner.caller_memories)
    if mem is None:
        raise HostTrap("a module calling WASI must export its memory as 'memory'")
    return mem


def fd_table(mem: GuestMemory) -> FdTable:
    table = cast(Instance, mem.instance).fs_table
    assert table is not None  # the file functions are defined only with preopens
    return table


class Instance(SlotDeadline):
    """One store: the kernel and one plugin instance, driven through the C API."""

    def __init__(self, rt: Runtime) -> None:
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
        self.ctx = engine_api.store_context_address(store)
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
        self.slot: Any = None  # the C call path's state, once the kernel memory is known
        self._deadline = time.monotonic() + self.timeout_s
        self.deadline_hit = False
        self.refusal: str | None = None  # what a host function that refused said
        self._live = rt.live
        self.fs_table = FdTable(rt.preopens) if rt.preopens else None
        # WASI called from linked modules: pointers into the caller's memory (one view each).
        self.linked_wasi = rt.links.uses_wasi
        self.caller_memories: dict[bytes, Any] = {}
        arm(rt.engine, self.ctx, rt.ticks)  # the start's (the deadline's door)
        # What call() needs: the engine epoch of its last arm (-1: never), the input header
        # of the last input size, the deadline in ticks and the fuel each call starts with.
        self._armed = -1
        self._head_n, self._head = 0, b""
        self._engine, self._ticks, self._fuel = rt.engine, rt.ticks, rt.fuel
        # WASI pointers are into the plugin's memory: known once its exports are (before that,
        # from the plugin's start function, plugin_memory asks the caller).
        self.wasi_memory: GuestMemory | None = None
        rt.live[self.ctx] = cast(RawInstance, self)
        try:
            kernel = wasmtime.Instance(store, rt.kernel, [])
            # The kernel is ready before the plugin is instantiated: a start function of the
            # plugin may call host functions (specs/abi.md §2.1), under this deadline.
            self._kernel_ready(rt, kernel)
            with rt.link_lock:
                rt.linker.define_instance(store, EXTISM_ENV, kernel)
                rt.links.define(rt.linker, store)
                plugin = rt.linker.instantiate(store, rt.module.wasmtime_module)
        except wasmtime.Trap as exc:
            failure = GuestFailure(exc.message, exc.trap_code)
            failure.deadline_hit, failure.refusal = self.deadline_hit, self.refusal
            self.close()
            raise failure from None
        except wasmtime.WasmtimeError as exc:
            # With the C call path's epoch watch armed, a start function stopped at its
            # deadline arrives here as an error whose text alone says "wasm trap: interrupt"
            # (no trap code): read the code from it, so the classifier names the deadline and
            # its setting as it does on the Python path (not "could not be instantiated").
            failure = GuestFailure(str(exc), code_of(str(exc)))
            failure.stage = "instantiate"
            failure.deadline_hit, failure.refusal = self.deadline_hit, self.refusal
            self.close()
            raise failure from None
        self._keep.append(plugin)
        pexp = plugin.exports(store)
        self.funcs: dict[str, int] = {}
        for name in rt.module.handlers:
            f = pexp[name]
            assert isinstance(f, wasmtime.Func)
            self._keep.append(f)
            self.funcs[name] = engine_api.func_address(f)
        self._void = frozenset(self.funcs[n] for n in rt.void_handlers)
        pmem = pexp.get("memory")
        self.plugin_memory = pmem if isinstance(pmem, wasmtime.Memory) else None
        if self.plugin_memory is not None:
            # What WASI pointers refer to (host functions get the kernel's memory).
            self.wasi_memory = GuestMemory(self.ctx,
                                           engine_api.memory_address(self.plugin_memory),
                                           cast(RawInstance, self))
        self._init(pexp)

    def _kernel_ready(self, rt: Runtime, kernel: wasmtime.Instance) -> None:
        """Kernel memory, its C call path slot and the kernel functions host functions use."""
        kexp = kernel.exports(self.store)
        kmem = kexp["memory"]
        assert isinstance(kmem, wasmtime.Memory)
        self._kmem = kmem
        self.memory = KernelMemory(self.ctx, engine_api.memory_address(kmem),
                                   cast(RawInstance, self))
        self.memory.owner = self
        if CALLPATH is not None and rt.fuel is None:  # metered calls keep the Python path
            # The C call path (sandbox/_callpath.c) copies the input to the input block's
            # data, arms the deadline and calls with the GIL released, in one Python call.
            slot = CALLPATH.Slot(self.ctx, engine_api.memory_address(kmem), self.timeout_s)
            slot.buf, slot.cap = FIRST_HANDLE, self.memory.size - FIRST_HANDLE
            slot.deadline = self._deadline
            if rt.engine.clock is not None:  # short calls may keep the GIL (sandbox/_epoch.c)
                slot.watch(engine_api.address_of(self.store), rt.engine.clock)
            self.slot = slot
        funcs = {n: kexp[n] for n in ("alloc", "free", "length")}
        self._keep: list[Any] = [kernel, funcs]
        self._alloc, self._free, self._length = (engine_api.func_address(f)
                                                 for f in funcs.values()
                                                 if isinstance(f, wasmtime.Func))

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
            return engine_api.func_address(f)

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
            raise _failure(err, trap, self.slot)

    def _kernel(self, func: int, *args: int) -> int:
        """Call a kernel function from a host function (re-entrant: its own slots)."""
        slot = self.slot
        if slot is not None and len(args) == 1:  # every kernel call host functions make
            out = slot.call1(func, args[0])
            if out is not None:
                return int(out)
            err, trap = slot.take_failure()
            message = _failure(err or None, trap, slot).message
        else:
            for i, a in enumerate(args):
                self._scratch[4 + 2 * i] = a & 0xFFFF_FFFF_FFFF_FFFF
            err = _call_unchecked(self.ctx, func, self._raw2, max(len(args), 1), self._trap2)
            if not err and not self._scratch[9]:
                return int(self._scratch[4])
            trap, self._scratch[9] = self._scratch[9], 0
            message = _failure(err, trap, self.slot).message
        if "extism_kernel!oom" in message:
            raise HostTrap("oom: kernel memory cannot grow within limits.max_memory_bytes "
                           "(the Extism manifest's memory.max_pages)")
        raise HostTrap(f"the Extism kernel failed: {_first_line(message)}")

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
        else:
            view[0:56] = _EMPTY
        slot = self.slot
        if slot is not None:
            # The handler takes no arguments: the two the C path passes (the input block and
            # n) are ignored, and the code comes back as its packed result. With no output
            # allowed, b"" means code 0 and an int any other code (or none: a () -> () export).
            out = slot.call(func, data, self._ticks, 0, 0)  # watched: C reads the epoch itself
            if out.__class__ is bytes:
                return 0
            if out is False:  # kernel memory grew since the slot last heard of its size
                slot.cap = mem.size - FIRST_HANDLE
                out = slot.call(func, data, self._ticks, -1, 0)
                if out.__class__ is bytes:
                    return 0
                if out is False:  # not reached: memory holds the input (checked above)
                    raise MemoryError(f"kernel memory cannot hold {n} bytes")
            if out is None:
                err, trap = slot.take_failure()
                raise _failure(err or None, trap, slot)
            code = int(out) & 0xFFFF_FFFF
            return 0 if func in self._void else code - (code >> 31 << 32)
        if n:
            view[80:80 + n] = data
        if self._fuel is not None:
            self.store.set_fuel(self._fuel)
        self._deadline = _monotonic() + self.timeout_s
        # While the clock is where it was at the last arm, the deadline is already in place:
        # one C call saved (the door: sandbox.deadline).
        self._armed = arm(self._engine, self.ctx, self._ticks, self._armed)
        scratch = self._scratch
        scratch[0] = 0
        err = _call_unchecked(self.ctx, func, self._raw, 1, self._trap)
        if err or scratch[8]:
            trap, scratch[8] = scratch[8], 0
            raise _failure(err, trap, self.slot)
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
        if self.slot is not None:
            self.slot.close()
        self._live.pop(self.ctx, None)
        if self.fs_table is not None:
            self.fs_table.close()

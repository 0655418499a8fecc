"""The fast call path: wasmtime's C API driven through ctypes with preallocated buffers.

wasmtime-py's public ``Func.__call__`` converts every value in Python (≈20-30 µs a call). Here a
call is a handful of direct C calls taking plain integers: set the epoch deadline, ``memmove``
the input into linear memory, ``wasmtime_func_call_unchecked`` on a preallocated
``wasmtime_val_raw_t`` buffer, ``string_at`` the output. ctypes releases the GIL around each C
call, so instances in different threads run in parallel.

Host functions are defined by :mod:`omnicore.sandbox.hostfunc` on the same C API.

The per-call path itself (copy in, call, copy out) has a second implementation in C,
``sandbox/_callpath.c``, built at install, and so has an instance's start
(``sandbox/_instantiate.c``): :data:`NATIVE` says which one runs. Set
``OMNICORE_CALLPATH=python`` to force this module's, ``native`` to require the C one (the
suite runs the sandbox tests on both).

Every private name of wasmtime this path uses (the C functions below, the C addresses the C
extension gets, wasmtime-py internals) comes from :mod:`omnicore.sandbox._wasmtime`, which
checks them against the pinned wasmtime at import: on a mismatch the C path is refused and
this module's Python path runs.
"""

from __future__ import annotations

import ctypes
import logging
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

import wasmtime

from omnicore.sandbox import _wasmtime as engine_api
from omnicore.sandbox import native
from omnicore.sandbox._wasmtime import EXTERN_OF as _EXTERN_OF
from omnicore.sandbox._wasmtime import ExternT as _ExternT
from omnicore.sandbox._wasmtime import address_of
from omnicore.sandbox._wasmtime import call_unchecked as _call_unchecked
from omnicore.sandbox._wasmtime import caller_context as _caller_context
from omnicore.sandbox._wasmtime import caller_export_get as _caller_export_get
from omnicore.sandbox._wasmtime import context_set_wasi as _set_wasi
from omnicore.sandbox._wasmtime import get_fuel as _get_fuel
from omnicore.sandbox._wasmtime import instance_export_get as _export_get
from omnicore.sandbox._wasmtime import instance_pre_instantiate as _pre_instantiate
from omnicore.sandbox._wasmtime import set_fuel as _set_fuel
from omnicore.sandbox._wasmtime import store_context as _store_context
from omnicore.sandbox._wasmtime import store_delete as _store_delete
from omnicore.sandbox._wasmtime import store_limiter as _store_limiter
from omnicore.sandbox._wasmtime import store_new as _store_new
from omnicore.sandbox.deadline import arm as _arm_deadline
from omnicore.sandbox.guestmem import GuestMemory, HostTrap

__all__ = [
    "CALLPATH",
    "NATIVE",
    "GuestFailure",
    "GuestMemory",
    "HostTrap",
    "RawInstance",
    "SlotDeadline",
    "address_of",
    "error_failure",
    "new_ticker",
]

_log = logging.getLogger("omnicore.sandbox")

_monotonic = time.monotonic
_EXTERN_FUNC = 0
_EXTERN_MEMORY = 3
#: wasmtime_extern_t kept in an instance's scratch block (memory, omni_alloc, two handlers).
_EXTERNS = 4
_SCRATCH_WORDS = 10 + 4 * _EXTERNS
_Scratch = ctypes.c_uint64 * _SCRATCH_WORDS


def _native_call_path() -> Any:
    """The C call path module, bound to this libwasmtime, or None (the Python path runs)."""
    _callpath = native.extension("_callpath", "C call path", engine=True)
    if _callpath is None:
        return None
    # RawInstance's start in C (_callpath.Instance, sandbox/_instantiate.c), same scratch layout.
    if getattr(_callpath, "SCRATCH_WORDS", None) != _SCRATCH_WORDS:
        raise RuntimeError("the C call path was built from other sources: rebuild it "
                           "(scripts/dev setup)")
    engine_api.hand_over(_callpath, _EXTERN_OF)
    return _callpath


_callpath = _native_call_path()
#: The C call path extension (sandbox/_callpath.c), or None where the Python path runs.
CALLPATH: Any = _callpath
#: True when plugin calls run through the C call path (sandbox/_callpath.c).
NATIVE = _callpath is not None


def new_ticker(period_ms: int) -> Any:
    """A C epoch ticker (sandbox/_epoch.c) for an engine, or None on the Python path."""
    return None if _callpath is None else _callpath.Ticker(period_ms)


# Internal, outside omnicore.errors' tree on purpose: raised and caught inside the sandbox and
# Extism runtimes, which make every one a PluginCallError through sandbox.failures.classify.
class GuestFailure(Exception):
    """A guest call did not return normally. ``code`` is a wasmtime.TrapCode or None."""

    def __init__(self, message: str, code: wasmtime.TrapCode | None = None,
                 exit_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.exit_status = exit_status
        #: where it failed while starting an instance: instantiate, _initialize, omni_alloc
        self.stage: str | None = None
        #: A failed start's instance is gone when the runtime classifies the failure: what
        #: its host functions found (the deadline passed, a refusal) travels here.
        self.deadline_hit = False
        self.refusal: str | None = None

    def start_stage(self, handler: str | None) -> str | None:
        """Where a failed instance start failed, as its error names the stage: past
        instantiation the stage itself (``_initialize``, ``omni_alloc``); at it, ``(start)``
        when the module's start function ran (its trap, or a host function's refusal or
        deadline then: specs/abi.md §2.1), else the handler the instance was for, or
        ``(instantiate)``."""
        if self.stage != "instantiate":
            return self.stage
        ran = self.code is not None or self.refusal is not None or self.deadline_hit
        return "(start)" if ran else handler or "(instantiate)"


def _failure(err: int | None, trap: int, slot: Any = None) -> GuestFailure:
    """The failure wasmtime returned (error or trap, taken over and freed). ``slot``: the
    instance's C slot, whose deadline callback ends a call with an error of its own that
    stands for wasmtime's epoch trap (sandbox/_epoch.c)."""
    if slot is not None and slot.take_hit():
        if err:
            engine_api.error_from(err)  # freed
        return GuestFailure("wasm trap: interrupt", wasmtime.TrapCode.INTERRUPT)
    if trap:
        t = engine_api.trap_from(trap)
        return GuestFailure(t.message, t.trap_code)
    # Ask for the exit status before WasmtimeError takes (and frees) the error.
    exit_status = engine_api.exit_status(err or 0)
    e = engine_api.error_from(err or 0)
    return GuestFailure(str(e), None, exit_status)


def error_failure(err: Any) -> GuestFailure:
    """The failure a ``wasmtime_error_t*`` stands for (taken over and freed), with its WASI
    exit status: how a component call's error is read."""
    return _failure(err, 0)


def _start_failure(got: tuple[str | None, int, int, str | None]) -> GuestFailure:
    """The GuestFailure for what a C Instance's instantiate or start returned."""
    stage, err, trap, message = got
    failure = GuestFailure(message) if message is not None else _failure(err or None, trap)
    failure.stage = stage
    return failure


class SlotDeadline:
    """The running call's deadline of an instance that may have a C call path slot: the slot
    keeps it when there is one (the C code sets it on every call), else ``_deadline``."""

    slot: Any
    _deadline: float

    @property
    def deadline(self) -> float:
        """The running call's deadline (``time.monotonic()`` seconds)."""
        slot = self.slot
        return self._deadline if slot is None else float(slot.deadline)

    @deadline.setter
    def deadline(self, value: float) -> None:
        if self.slot is None:
            self._deadline = value
        else:
            self.slot.deadline = value


class RawInstance(SlotDeadline):
    """One store + one instance of a plugin, driven through the C API. Single-threaded use.

    Construction instantiates, runs ``_initialize`` and allocates the input buffer
    (specs/abi.md §2.1). Any failure raises GuestFailure (or ValueError for ABI shape problems).
    With ``command``, a WASI command's instance (``sandbox.command``): only instantiated, on
    the Python path (it makes one call, ``_start``, through :meth:`run`); no allocator, no
    input buffer, and a module without a ``memory`` export gets host functions that trap.
    ``deadline_ticks``: the start's deadline, armed from ``clock`` (the SandboxEngine; None:
    nothing owed) through the door, :mod:`omnicore.sandbox.deadline` (or its C twin).
    """

    #: The store's context: the key of this instance in its runtime's ``live`` map.
    ctx: int

    def __init__(self, engine: wasmtime.Engine | int, pre: wasmtime.InstancePre | int, *,
                 memory_limit: int, deadline_ticks: int, fuel: int | None,
                 wasi: wasmtime.WasiConfig | None, live: dict[int, RawInstance],
                 has_initialize: bool = True, input_cap: int = 65536,
                 timeout_s: float = 3600.0, table_elements: int = -1,
                 tables: int = -1, files: Any = None,
                 burnt: Callable[[int], None] | None = None,
                 handler: str | None = None, command: bool = False,
                 clock: Any = None) -> None:
        # (No class-level defaults: an instance attribute shadowing a class attribute keeps
        # CPython from specialising its reads, which the Python call path does per call.)
        #: The instance's open files (``sandbox.wasi_fd.FdTable``), closed with it.
        self.fs_table = files
        self.fuel = fuel
        #: Told the fuel each metered handler call burnt (the runtime's total, which outlives
        #: instances freed after a trap, per call or when idle).
        self._burnt = burnt
        self.deadline_hit = False
        #: What host functions left to do when the running call ends, however it ends (an
        #: open SQL transaction rolled back), by capability; run by :meth:`end_call`.
        self.call_ends: dict[str, Callable[[], None]] | None = None
        #: What a host function that refused this call said (sandbox.failures reads it).
        self.refusal: str | None = None
        self._armed = -1
        #: What deadlines are armed from (sandbox.deadline): the SandboxEngine, or None.
        self._clock = clock
        self._live = live  # the runtime's instances by store context, for its host functions
        #: The running call's deadline (time.monotonic()) for host functions and WASI, which
        #: run outside the epoch check: past it they stop working and the call fails with
        #: DeadlineExceeded (deadline_hit) even if the guest then returns normally.
        self.timeout_s = timeout_s
        self._externs: list[Any] = []
        # Callers creating many instances pass raw addresses (see address_of): ctypes.cast
        # costs several microseconds, more than the pooled instantiation itself.
        engine_addr, pre_addr = address_of(engine), address_of(pre)
        wasi_addr = 0 if wasi is None else engine_api.wasi_raw(wasi)
        # Registered in ``live`` (by the start paths, as soon as the store exists) before
        # instantiation: the module's start function may call host functions (abi.md §2.1),
        # which find their instance there, under this deadline. Until the exports are
        # resolved, ``memory`` is None and host functions take it from their caller
        # (:meth:`start_memory`).
        #: The C call path's state for this instance (input block, deadline), or None.
        self.slot: Any = None
        self._deadline = _monotonic() + timeout_s
        self.memory = None  # type: ignore[assignment]
        # A failed start frees what it made now, not when the exception and its frames go.
        try:
            # Metered calls and commands keep the Python path (a command's one call is long:
            # the C path's per-call savings are nothing to it).
            if _callpath is not None and fuel is None and not command:
                self._start_native(engine_addr, pre_addr, wasi_addr, memory_limit,
                                   table_elements, tables, deadline_ticks, has_initialize,
                                   input_cap, handler)
            else:
                self._start_python(engine_addr, pre_addr, wasi_addr, memory_limit,
                                   table_elements, tables, deadline_ticks, has_initialize,
                                   input_cap, fuel, burnt, command)
        except BaseException as exc:
            if isinstance(exc, GuestFailure):
                exc.deadline_hit, exc.refusal = self.deadline_hit, self.refusal
            self.close()
            raise

    def start_memory(self, caller: int) -> GuestMemory:
        """The instance's memory for a host function called from the module's start function,
        before the exports are resolved: the caller's ``memory`` export (wasmtime answers it
        during instantiation). Its ``omni_alloc`` too, so re-entrant allocation works there."""
        ext = _ExternT()
        addr = ctypes.addressof(ext)
        if not _caller_export_get(caller, b"memory", 6, addr) or int(ext.kind) != _EXTERN_MEMORY:
            raise HostTrap("the module does not export its memory as 'memory'")
        self.ctx = ctx = _caller_context(caller)
        self._externs.append(ext)  # the view reads through the extern: it lives as long
        mem = self.memory = GuestMemory(ctx, addr + _EXTERN_OF, self)
        alloc = _ExternT()
        addr = ctypes.addressof(alloc)
        if _caller_export_get(caller, b"omni_alloc", 10, addr) and int(alloc.kind) == _EXTERN_FUNC:
            self._externs.append(alloc)
            self._alloc_addr = addr + _EXTERN_OF
        return mem

    def _start_python(self, engine: int, pre: int, wasi: int, memory_limit: int,
                      table_elements: int, tables: int, deadline_ticks: int,
                      has_initialize: bool, input_cap: int, fuel: int | None,
                      burnt: Callable[[int], None] | None, command: bool = False) -> None:
        live = self._live
        self._owner: Any = None  # the C Instance owning the store (native path)
        self._store: int | None = _store_new(engine, None, None)
        self.ctx = _store_context(self._store)
        # One instance and one memory per store: a module cannot multiply its allowance.
        # Tables live outside linear memory, so they get limits of their own.
        _store_limiter(self._store, memory_limit, table_elements, 1, tables, 1)
        # One scratch block, one ctypes object (each costs a fresh per-call instance about a
        # microsecond): slots 0-1 (32 B) for calls, slot 2 (16 B) for re-entrant omni_alloc
        # from host functions, the wasm_trap_t* out-parameter at byte 48, the fuel left after
        # a metered call at byte 56, the wasmtime_instance_t at byte 64, and room for the
        # first _EXTERNS exports' wasmtime_extern_t from byte 80. i32 arguments and results
        # are written and read as the low half of their 64-bit word (all are non-negative).
        self._u64 = scratch = _Scratch()
        self._set_scratch(ctypes.addressof(scratch))
        self._next_extern = 0
        self._funcs: dict[str, int] = {}
        if wasi:
            err = _set_wasi(self.ctx, wasi)
            if err:
                raise self._failure(err)
        self._arm(deadline_ticks)
        live[self.ctx] = self  # close() takes it out again
        err = _pre_instantiate(pre, self.ctx, self._inst_addr, self._trap_addr)
        if err or scratch[6]:
            failure = self._failure(err)
            failure.stage = "instantiate"
            raise failure
        mem = self._export(b"memory", _EXTERN_MEMORY)
        if mem is None:
            if command:
                return  # memory stays None: a host function's start_memory traps
            raise ValueError("the module does not export 'memory'")
        self.memory = GuestMemory(self.ctx, mem, self)
        if command:
            # A command exporting the allocator (a test program of `omnicore test`) gets the
            # §3.3 answers of host functions as a plugin does.
            alloc = self.func("omni_alloc")
            if alloc is not None:
                self._alloc_addr = alloc
            return
        alloc = self.func("omni_alloc")
        if alloc is None:
            raise ValueError("the module does not export omni_alloc")
        self._alloc_addr = alloc
        # omni_free is looked up when first needed (a bigger input): most instances never
        # free, and a fresh instance for every call should not pay for the lookup.
        if has_initialize:
            init = self.func("_initialize")
            if init is not None:
                try:
                    self._invoke(init, 0)
                except GuestFailure as failure:
                    failure.stage = "_initialize"
                    raise
        self.buf = 0
        self.cap = 0
        try:
            self._grow_input(input_cap)
        except GuestFailure as failure:
            failure.stage = "omni_alloc"
            raise

    def _set_scratch(self, addr: int) -> None:
        self._raw_addr = addr
        self._raw2_addr = addr + 32
        self._trap_addr = addr + 48
        self._fuel_addr = addr + 56
        self._inst_addr = addr + 64

    def _start_native(self, engine: int, pre: int, wasi: int, memory_limit: int,
                      table_elements: int, tables: int, ticks: int, has_initialize: bool,
                      input_cap: int, handler: str | None) -> None:
        """The Python path's steps, in C (``_callpath.Instance``, which owns the store and the
        scratch block, in the same layout); then a Slot for the calls."""
        self._owner = owner = _callpath.Instance()
        addr = owner.scratch
        self._u64 = _Scratch.from_address(addr)  # the owner's block (self._owner keeps it)
        self._set_scratch(addr)
        # The owner registers this instance in live as soon as its store exists, and takes it
        # out again if instantiation fails (then it frees the store).
        clock = self._clock
        got = owner.instantiate(engine, pre, wasi, memory_limit, table_elements, tables, ticks,
                                handler, self._live, self,
                                clock.c_clock if clock is not None else None)
        if got.__class__ is not int:
            raise _start_failure(got)
        self._store = owner.store
        self.ctx = got
        del self.memory  # made from the owner's scratch extern when first asked
        self.slot = slot = _callpath.Slot(got, addr + 80 + _EXTERN_OF, self.timeout_s)
        slot.deadline = self._deadline  # the start's deadline holds for _initialize too
        self._alloc_addr = alloc = addr + 112 + _EXTERN_OF
        self._funcs = {"omni_alloc": alloc}
        if owner.handler:
            self._funcs[handler] = owner.handler  # type: ignore[index]
        self._next_extern = owner.externs
        got = owner.start(has_initialize, input_cap)
        if got is not None:
            raise _start_failure(got)
        self._next_extern = owner.externs
        slot.buf = self.buf = owner.buf
        slot.cap = self.cap = owner.cap

    @cached_property
    def memory(self) -> GuestMemory:
        """The instance's linear memory (a native instance makes it when first asked)."""
        if not self._store:
            raise AttributeError("the instance is closed")
        return GuestMemory(self.ctx, self._raw_addr + 80 + _EXTERN_OF, self)

    def fit_input(self, n: int, deadline_ticks: int) -> None:
        """Grow the input block to hold ``n`` bytes (the C path answered False)."""
        self.deadline = _monotonic() + self.timeout_s
        self._arm(deadline_ticks)
        self._grow_input(n)
        slot = self.slot
        slot.buf, slot.cap, slot.armed = self.buf, self.cap, -1

    def slot_failure(self) -> GuestFailure:
        """The failure of the C path's last call (it answered None)."""
        err, trap = self.slot.take_failure()
        return _failure(err or None, trap, self.slot)

    def _failure(self, err: int | None) -> GuestFailure:
        trap = self._u64[6]
        self._u64[6] = 0
        return _failure(err, trap, self.slot)

    def _export(self, name: bytes, kind: int) -> int | None:
        """Address of the export's payload (wasmtime_func_t / wasmtime_memory_t), or None."""
        i = self._next_extern
        if i < _EXTERNS:
            addr = self._raw_addr + 80 + 32 * i
            if (not _export_get(self.ctx, self._inst_addr, name, len(name), addr)
                    or self._u64[10 + 4 * i] & 0xFF != kind):
                return None
            self._next_extern = i + 1
            return addr + _EXTERN_OF
        ext = _ExternT()
        addr = ctypes.addressof(ext)
        if (not _export_get(self.ctx, self._inst_addr, name, len(name), addr)
                or int(ext.kind) != kind):
            return None
        self._externs.append(ext)
        return addr + _EXTERN_OF

    def func(self, name: str) -> int | None:
        """Address of the exported function ``name`` (cached), or None."""
        f: int | None = self._funcs.get(name)
        if f is None:
            f = self._export(name.encode(), _EXTERN_FUNC)
            if f is None:
                return None
            self._funcs[name] = f
        return f

    def _arm(self, deadline_ticks: int) -> None:
        _arm_deadline(self._clock, self.ctx, deadline_ticks)
        if self.fuel is not None:
            err = _set_fuel(self.ctx, self.fuel)
            if err:
                raise self._failure(err)

    def _invoke(self, func_addr: int, nslots: int) -> None:
        err = _call_unchecked(self.ctx, func_addr, self._raw_addr, nslots, self._trap_addr)
        if err or self._u64[6]:
            raise self._failure(err)

    def _grow_input(self, need: int) -> None:
        cap = 1 << max(need - 1, 1).bit_length()
        if self.buf:
            free = self.func("omni_free")
            if free is None:
                raise ValueError("the module does not export omni_free")
            self._u64[0] = self.buf
            self._u64[2] = self.cap
            self._invoke(free, 2)
            self.buf = self.cap = 0
        self._u64[0] = cap
        self._invoke(self._alloc_addr, 1)
        ptr = self._u64[0] & 0xFFFF_FFFF
        if ptr == 0:
            raise MemoryError(f"omni_alloc({cap}) returned 0")
        try:
            self.memory.check(ptr, cap, "block")
        except HostTrap as exc:
            # An ABI violation by the guest, like a trap: the caller classifies it.
            raise GuestFailure(f"omni_alloc({cap}) returned an {exc}") from None
        self.buf, self.cap = ptr, cap

    def guest_alloc(self, n: int) -> int:
        """Re-entrant ``omni_alloc(n)`` (specs/abi.md §3.3); callable from host functions."""
        slot = self.slot
        if slot is not None:
            ptr = slot.call1(self._alloc_addr, n)
            if ptr is None:
                err, trap = slot.take_failure()
                raise self._reentry_failed(_failure(err or None, trap, slot))
            return int(ptr) & 0xFFFF_FFFF
        self._u64[4] = n
        err = _call_unchecked(self.ctx, self._alloc_addr, self._raw2_addr, 1, self._trap_addr)
        if err or self._u64[6]:
            raise self._reentry_failed(self._failure(err))
        return self._u64[4] & 0xFFFF_FFFF

    def _reentry_failed(self, f: GuestFailure) -> HostTrap:
        # The epoch interrupt of a re-entrant call is the call's deadline, whatever the clock
        # says: the epoch can reach the deadline a tick before time.monotonic() passes it, and
        # the handler around it then ends as a host function's refusal, not DeadlineExceeded.
        if f.code == wasmtime.TrapCode.INTERRUPT:
            self.deadline_hit = True
        return HostTrap(f"re-entrant omni_alloc failed: {f.message}")

    def call(self, func: int, data: bytes, deadline_ticks: int, epoch: int = -1) -> int:
        """Copy ``data`` in, call the handler at ``func``, return the packed i64 (unsigned).

        The deadline, ``deadline_ticks`` from now, is armed through the door
        (:mod:`omnicore.sandbox.deadline`), only when the clock moved since the last arm (it
        would be identical); ``epoch`` -1 arms it whatever it holds.
        """
        n = len(data)
        self._deadline = _monotonic() + self.timeout_s
        if n > self.cap:
            self._arm(deadline_ticks)
            self._grow_input(n)
            self._armed = -1
        if self.fuel is not None:
            self._arm(deadline_ticks)
        else:
            self._armed = _arm_deadline(self._clock, self.ctx, deadline_ticks,
                                        self._armed if epoch >= 0 else -1)
        if n:
            self.memory.view[self.buf:self.buf + n] = data
        u64 = self._u64
        u64[0] = self.buf
        u64[2] = n
        err = _call_unchecked(self.ctx, func, self._raw_addr, 2, self._trap_addr)
        if self.fuel is not None and self._burnt is not None and \
                not _get_fuel(self.ctx, self._fuel_addr):
            self._burnt(self.fuel - self._u64[7])   # trapped too: what it burnt counts
        if err or self._u64[6]:
            raise self._failure(err)
        return self._u64[0]

    def run(self, name: str) -> None:
        """Call the export ``name``, a ``() -> ()`` function, under the deadline set at
        construction (a command's ``_start``: its one call). Raises GuestFailure."""
        func = self.func(name)
        if func is None:
            raise ValueError(f"the module does not export {name!r}")
        self._invoke(func, 0)

    def read(self, ptr: int, length: int) -> bytes:
        """Copy guest bytes out; raises HostTrap when out of bounds."""
        mem = self.memory
        if ptr + length > mem.size:
            mem.check(ptr, length, "handler output")
        return mem.view[ptr:ptr + length].tobytes()

    def memory_size(self) -> int:
        """Current linear memory size in bytes (0: a command without a memory export)."""
        mem = self.memory
        return 0 if mem is None else mem.refresh()

    def end_call(self) -> None:
        """The running call has ended: run what its host functions left for then, once (the
        runtime calls it before the instance serves another call or is freed)."""
        ends, self.call_ends = self.call_ends, None
        for name, end in (ends or {}).items():
            try:
                end()
            except Exception:
                _log.exception("ending a call's %s state failed", name)

    def close(self) -> None:
        """Free the store (and with it the instance). Idempotent."""
        if getattr(self, "call_ends", None):
            self.end_call()
        files = getattr(self, "fs_table", None)
        if files is not None:
            self.fs_table = None
            files.close()
        if getattr(self, "_store", None):
            if self.slot is not None:
                self.slot.close()
            self._live.pop(self.ctx, None)
            if self._owner is None:
                _store_delete(self._store)
            else:
                self._owner.close()  # a store started in C is freed there
            self._store = None
            # The memory view points into the freed store: reading it now must fail loudly,
            # not read freed memory. It also ends the instance <-> memory cycle, so a closed
            # instance is freed at once instead of by the cyclic collector.
            self.__dict__.pop("memory", None)

    def __del__(self) -> None:
        self.close()

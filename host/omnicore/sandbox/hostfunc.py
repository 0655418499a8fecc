"""Host functions: wasmtime "unchecked" callbacks around Python implementations.

``Linker.define_func`` costs ≈28 µs a call; a raw ``wasmtime_linker_define_func_unchecked``
callback takes the guest's arguments as 16-byte slots. On the C call path the callback is
``_callpath.HostFunction`` (no ctypes frame); on the Python path it is the ctypes trampoline
below. Both call ``impl(state, memory, [caller,] *args)``, check the call's deadline on the way
back to the guest, and turn any exception into a trap naming the function.

Both find the calling instance in the runtime's ``live`` map by store context. An instance is
there from before its instantiation, so a module's start function may call host functions
(specs/abi.md §2.1); until its exports are resolved its ``memory`` is None and the memory is
its caller's (``RawInstance.start_memory``).
"""

from __future__ import annotations

import ctypes
import logging
import struct
import threading
import weakref
from collections.abc import Callable, Sequence
from ctypes import c_size_t, c_void_p
from typing import Any, cast

import wasmtime

from omnicore.sandbox import _wasmtime as engine_api
from omnicore.sandbox._wasmtime import EXTERN_OF as _EXTERN_OF
from omnicore.sandbox._wasmtime import MEMORY_T_SIZE as _MEMORY_T_SIZE
from omnicore.sandbox._wasmtime import ExternT as _ExternT
from omnicore.sandbox._wasmtime import caller_context as _caller_context
from omnicore.sandbox._wasmtime import caller_export_get as _caller_export_get
from omnicore.sandbox._wasmtime import linker_define_func_unchecked as _define_unchecked
from omnicore.sandbox._wasmtime import trap_new as _trap_new
from omnicore.sandbox.fastcall import (
    _EXTERN_MEMORY,
    CALLPATH,
    GuestMemory,
    HostTrap,
    RawInstance,
    _monotonic,
)

__all__ = ["HOST_PARAM_TYPES", "HostImpl", "caller_memory", "define_host_function"]

_log = logging.getLogger("omnicore.sandbox")

_CALLBACK = ctypes.CFUNCTYPE(c_size_t, c_void_p, c_void_p, c_void_p, c_size_t)
_string_at = ctypes.string_at

#: The most parameters a host function takes (the C callback's MAX_HOST_PARAMS).
MAX_HOST_PARAMS = 16
#: Host function parameter kinds and their letters in the C callback's signature (i: signed
#: i32, u: an i32 read unsigned (``ptr``/``len``), q: i64, f: f32, d: f64).
HOST_PARAM_TYPES = {"i32": "i", "ptr": "u", "len": "u", "i64": "q", "f32": "f", "f64": "d"}
_VALKIND = {"i32": 0, "ptr": 0, "len": 0, "i64": 1, "f32": 2, "f64": 3}



def caller_memory(caller: int, inst: RawInstance, cache: dict[bytes, Any]
                  ) -> GuestMemory | None:
    """The memory the calling instance exports as ``memory`` (None if it exports none), for
    a host function (``pass_caller``) serving several instances of one store: WASI of a
    module linked to an Extism plugin. ``cache`` keeps one view per memory of the store."""
    ext = _ExternT()
    addr = ctypes.addressof(ext)
    if not _caller_export_get(caller, b"memory", 6, addr) or int(ext.kind) != _EXTERN_MEMORY:
        return None
    key = _string_at(addr + _EXTERN_OF, _MEMORY_T_SIZE)
    hit = cache.get(key)
    if hit is None:
        # The extern must outlive the view: GuestMemory reads through its address.
        hit = cache[key] = (GuestMemory(_caller_context(caller), addr + _EXTERN_OF, inst), ext)
    return cast(GuestMemory, hit[0])


HostImpl = Callable[..., Any]


def _stray_message(qualified: str) -> bytes:
    # Every instance is registered before its module's start function runs (RawInstance,
    # the Extism instance): a store the runtime does not know is a host bug, never a guest's.
    return (f"host function {qualified} was called from a store its runtime does not know"
            ).encode()


def _refusal(qualified: str, exc: BaseException) -> str:
    """The trap message of host function ``qualified`` that raised ``exc``: a HostTrap is a
    refusal in its own words; anything else is a host bug, logged with its traceback."""
    if isinstance(exc, HostTrap):
        return f"host function {qualified}: {exc}"
    _log.error("host function %s failed", qualified, exc_info=exc)
    return f"host function {qualified} failed: {type(exc).__name__}: {exc}"


def _deadline_message(qualified: str) -> bytes:
    return f"host function {qualified}: the call's deadline has passed".encode()


def _python_trampoline(qualified: str, params: Sequence[str], result: str | None,
                       impl: HostImpl, state: Any, live: dict[int, RawInstance],
                       pass_caller: bool) -> Callable[[int, int, int, int], int]:
    """The ctypes callback of a host function: the C path's ``HostFunction`` in Python, for
    the pure-Python call path."""
    nparams = len(params)
    words = ctypes.c_uint32 * (4 * max(nparams, 1))
    # Args arrive as 16-byte slots; read each slot's low (and for i64 high) 32-bit word through
    # one ctypes array view — cheaper than string_at + struct. Fix-ups only where needed.
    signed32 = tuple(i for i, p in enumerate(params) if p == "i32")
    wide = tuple(i for i, p in enumerate(params) if p == "i64")
    floats = tuple((i, p) for i, p in enumerate(params) if p in ("f32", "f64"))
    plain = not (signed32 or wide or floats)

    def trampoline(_env: int, caller: int, args: int, _nargs: int) -> int:
        inst = None
        try:
            inst = live.get(_caller_context(caller))
            if inst is None:
                msg = _stray_message(qualified)
                return int(_trap_new(msg, len(msg)) or 0)
            memory = inst.memory
            if memory is None:  # called from the module's start function (abi.md §2.1)
                memory = inst.start_memory(caller)
            if nparams:
                view = words.from_address(args)
                values = view[0:4 * nparams:4]
                if not plain:
                    for i in signed32:
                        if values[i] >= 0x8000_0000:
                            values[i] -= 1 << 32
                    for i in wide:
                        v = values[i] | view[4 * i + 1] << 32
                        values[i] = v - (1 << 64) if v >= 1 << 63 else v
                    for i, kind in floats:
                        raw = _string_at(args + 16 * i, 8)
                        values[i] = struct.unpack("<f" if kind == "f32" else "<d",
                                                  raw[:4] if kind == "f32" else raw)[0]
                out = (impl(state, memory, caller, *values) if pass_caller
                       else impl(state, memory, *values))
            else:
                out = impl(state, memory, caller) if pass_caller else impl(state, memory)
            if result == "i32":
                ctypes.c_int32.from_address(args).value = out
            elif result == "i64":
                ctypes.c_int64.from_address(args).value = out
            # Checked on the way back to the guest, once: the epoch ticker needs the GIL,
            # which a guest looping on host calls keeps taking, and host work itself runs
            # outside the epoch check. Either way the call cannot outlive its deadline.
            if _monotonic() > inst.deadline:
                inst.deadline_hit = True
                msg = _deadline_message(qualified)
                return int(_trap_new(msg, len(msg)) or 0)
            return 0
        except Exception as exc:
            text = _refusal(qualified, exc)
            if inst is not None:
                inst.refusal = text
            msg = text.encode()
        # A host function that fails once the deadline has passed failed because of it: a
        # socket read cut at the deadline, or the re-entrant omni_alloc for its answer
        # interrupted by the epoch. The call is DeadlineExceeded, not a Trap, whichever of
        # those a loaded machine happened to reach first.
        if inst is not None and _monotonic() > inst.deadline:
            inst.deadline_hit = True
        return int(_trap_new(msg, len(msg)) or 0)

    return trampoline


#: Host function types by engine and signature, made once: every copy of every plugin on
#: an engine shares them (built per definition they were a third of loading one more copy:
#: issue 63). Per engine: wasmtime ties a type to the first engine it defines a function in
#: and aborts the process when another engine is handed it.
_FUNC_TYPES: weakref.WeakKeyDictionary[
    wasmtime.Engine, dict[tuple[tuple[str, ...], tuple[str, ...]], wasmtime.FuncType]] = \
    weakref.WeakKeyDictionary()
_FUNC_TYPES_LOCK = threading.Lock()


def _func_type(engine: wasmtime.Engine, params: tuple[str, ...],
               results: tuple[str, ...]) -> wasmtime.FuncType:
    with _FUNC_TYPES_LOCK:
        types = _FUNC_TYPES.get(engine)
        if types is None:
            types = _FUNC_TYPES[engine] = {}
        found = types.get((params, results))
        if found is None:
            kinds = [_VALKIND[p] for p in params], [_VALKIND[r] for r in results]
            found = types[(params, results)] = wasmtime.FuncType(
                [wasmtime.ValType.i32() if k == 0 else wasmtime.ValType.i64() if k == 1
                 else wasmtime.ValType.f32() if k == 2 else wasmtime.ValType.f64()
                 for k in kinds[0]],
                [wasmtime.ValType.i32() if k == 0 else wasmtime.ValType.i64() for k in kinds[1]])
        return found


def define_host_function(linker: wasmtime.Linker, module: str, name: str,
                         params: Sequence[str], results: Sequence[str], impl: HostImpl,
                         state: Any, live: dict[int, RawInstance],
                         keepalive: list[Any], *, pass_caller: bool = False) -> None:
    """Define ``module.name`` in ``linker`` as a raw unchecked trampoline around ``impl``.

    ``impl(state, memory: GuestMemory, *args)`` returns an int for a one-result function;
    with ``pass_caller`` it is ``impl(state, memory, caller, *args)`` (for
    :func:`caller_memory`).
    HostTrap (or any exception) traps the guest with a message naming the function; the
    callback object is appended to ``keepalive``, which must outlive the linker's instances.
    """
    for p in params:
        if p not in HOST_PARAM_TYPES:
            raise ValueError(f"unknown host parameter type {p!r}")
    if len(params) > MAX_HOST_PARAMS:
        # The C callback's bound (_hostfunc.c): both call paths refuse the same definitions.
        raise ValueError(f"host functions take at most {MAX_HOST_PARAMS} parameters, "
                         f"{module}.{name} takes {len(params)}")
    if len(results) > 1 or (results and results[0] not in ("i32", "i64")):
        raise ValueError("host functions return nothing, one i32 or one i64")
    result = results[0] if results else None
    qualified = f"{module}.{name}"
    if CALLPATH is not None:
        def fail(inst: RawInstance | None, exc: BaseException | None) -> bytes:
            if exc is None:
                return _deadline_message(qualified)
            msg = _refusal(qualified, exc)
            if inst is not None:
                inst.refusal = msg
            if inst is not None and _monotonic() > inst.deadline:
                inst.deadline_hit = True  # as in the Python trampoline above
            return msg.encode()

        kinds = "".join(HOST_PARAM_TYPES[p] for p in params)
        hf = CALLPATH.HostFunction(impl, state, live, fail, _stray_message(qualified), kinds,
                                    {"i32": "i", "i64": "q"}.get(result or "", ""), pass_caller)
        keepalive.append(hf)
        callback, env = hf.callback, id(hf)
    else:
        cb = _CALLBACK(_python_trampoline(qualified, params, result, impl, state, live,
                                          pass_caller))
        keepalive.append(cb)
        callback, env = ctypes.cast(cb, c_void_p).value, None
    ftype = _func_type(linker.engine, tuple(params), tuple(results))
    mod_b, name_b = module.encode(), name.encode()
    err = _define_unchecked(engine_api.address_of(linker), mod_b, len(mod_b), name_b,
                            len(name_b), engine_api.address_of(ftype), callback, env, None)
    if err:
        raise engine_api.error_from(err)


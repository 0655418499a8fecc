"""Linear memories of components, made by the host so the memory limit is ours to keep.

wasmtime-py offers only wasmtime's fixed store limiter, which refuses a ``memory.grow``
without telling anyone; a guest that then traps looks like any other trap. The components
engine therefore creates its linear memories through this module (wasmtime's host memory
creator): each memory belongs to the :class:`Limiter` of the store being instantiated, and a
growth past that limiter's ``max_bytes`` is refused *and recorded* there, so the runtime
classifies the failure from :attr:`Limiter.refused`, not from the trap's text.

A memory is one ``mmap`` reservation of what wasmtime asks for (the 4 GiB a 32-bit memory
may address, plus its guard region), inaccessible except the first ``size`` bytes: the same
layout wasmtime's own allocator uses, so the compiled code's bounds checks hold unchanged.
What it costs: wasmtime cannot map a component's initial data copy-on-write into a memory it
did not make, so each instance copies its data segments (specs/components.md "Limits").
"""

from __future__ import annotations

import ctypes
import itertools
import mmap
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from ctypes import CFUNCTYPE, c_size_t, c_void_p
from typing import Any

import wasmtime

from omnicore.sandbox._wasmtime import CAPI, error_raw, set_memory_creator

__all__ = ["Limiter", "LinearMemory", "install", "limiting", "live", "sole_memory"]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = c_void_p
_libc.mmap.argtypes = [c_void_p, c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long]
_libc.mprotect.argtypes = [c_void_p, c_size_t, ctypes.c_int]
_libc.munmap.argtypes = [c_void_p, c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)
_PAGE = mmap.PAGESIZE
_PROT_NONE, _PROT_RW = 0, mmap.PROT_READ | mmap.PROT_WRITE


class Limiter:
    """The memory limit of one store, and whether it refused anything since :meth:`arm`.

    ``max_bytes`` applies to each memory, as wasmtime's store limiter does.
    """

    __slots__ = ("max_bytes", "refused")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        #: Set when a memory of this store was refused a size over ``max_bytes``.
        self.refused = False

    def arm(self) -> None:
        """Forget earlier refusals: the next call starts clean."""
        self.refused = False


_CURRENT = threading.local()


@contextmanager
def limiting(limiter: Limiter) -> Iterator[Limiter]:
    """Memories created on this thread inside the ``with`` belong to ``limiter`` (wasmtime
    creates a store's memories on the thread that instantiates it)."""
    outer = getattr(_CURRENT, "limiter", None)
    _CURRENT.limiter = limiter
    try:
        yield limiter
    finally:
        _CURRENT.limiter = outer


class _Memory:
    __slots__ = ("base", "capacity", "limiter", "reserved", "size")

    def __init__(self, base: int, reserved: int, capacity: int, size: int,
                 limiter: Limiter | None) -> None:
        self.base = base
        self.reserved = reserved
        self.capacity = capacity
        self.size = size
        self.limiter = limiter


_MEMORIES: dict[int, _Memory] = {}
_NEXT = itertools.count(1)


def _error(text: str) -> int:
    return error_raw(text)


def _round(n: int) -> int:
    return -(-n // _PAGE) * _PAGE


@CAPI.wasmtime_memory_get_callback_t  # type: ignore[untyped-decorator]
def _get(env: int, size: Any, capacity: Any) -> int:
    mem = _MEMORIES[env or 0]
    size[0] = mem.size
    capacity[0] = mem.capacity
    return mem.base


@CAPI.wasmtime_memory_grow_callback_t  # type: ignore[untyped-decorator]
def _grow(env: int, new_size: int) -> int:
    try:  # as in _new: nothing may escape to wasmtime
        return _grow_to(_MEMORIES[env or 0], new_size)
    except Exception as exc:
        return _error(f"cannot grow a linear memory: {type(exc).__name__}: {exc}")


def _grow_to(mem: _Memory, new_size: int) -> int:
    lim = mem.limiter
    if lim is not None and new_size > lim.max_bytes:
        lim.refused = True
        return _error(f"memory of {new_size} bytes refused: the limit is {lim.max_bytes}")
    if new_size > mem.capacity:
        return _error(f"memory of {new_size} bytes exceeds its reservation")
    if new_size > mem.size and _libc.mprotect(mem.base, _round(new_size), _PROT_RW) != 0:
        return _error(f"mprotect failed (errno {ctypes.get_errno()})")
    mem.size = new_size
    return 0


@CFUNCTYPE(None, c_void_p)  # type: ignore[untyped-decorator]
def _free(env: int | None) -> None:
    memories = _MEMORIES  # None at interpreter exit: nothing left to free then
    if memories is None:
        return
    mem = memories.pop(env or 0, None)
    if mem is not None:
        _libc.munmap(mem.base, mem.reserved)


@CAPI.wasmtime_new_memory_callback_t  # type: ignore[untyped-decorator]
def _new(_env: int, _ty: Any, minimum: int, maximum: int, reserved: int, guard: int,
         out: Any) -> int:
    # An exception escaping a callback leaves wasmtime's answer unset, and wasmtime then
    # aborts the process: every failure becomes an error wasmtime reports instead.
    try:
        return _create(minimum, maximum, reserved, guard, out)
    except Exception as exc:
        return _error(f"cannot create a linear memory: {type(exc).__name__}: {exc}")


def _create(minimum: int, maximum: int, reserved: int, guard: int, out: Any) -> int:
    lim: Limiter | None = getattr(_CURRENT, "limiter", None)
    if lim is not None and minimum > lim.max_bytes:
        lim.refused = True
        return _error(f"memory minimum size of {minimum} bytes exceeds the limit of "
                      f"{lim.max_bytes}")
    # Without a reservation from wasmtime (a dynamic memory) the memory may never move
    # (memory_may_move is off), so reserve up to the limit (or the declared maximum) now.
    ceiling = lim.max_bytes if lim is not None else 1 << 32
    capacity = reserved if reserved else min(maximum, max(ceiling, minimum))
    total = _round(capacity) + _round(guard)
    base = _libc.mmap(None, total, _PROT_NONE,
                      mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0)
    if base is None or base == _MAP_FAILED:
        return _error(f"cannot reserve {total} bytes for a linear memory")
    if minimum and _libc.mprotect(base, _round(minimum), _PROT_RW) != 0:
        _libc.munmap(base, total)
        return _error("cannot make a linear memory accessible")
    key = next(_NEXT)
    # Everything past ``minimum`` stays PROT_NONE, the guard region included: an access
    # there faults and wasmtime turns the fault into a trap (tests: oob.wat).
    _MEMORIES[key] = _Memory(base, total, capacity, minimum, lim)
    out[0].env = key
    out[0].get_memory = _get
    out[0].grow_memory = _grow
    out[0].finalizer = _free
    return 0


_NO_FINALIZER = CFUNCTYPE(None, c_void_p)(lambda _env: None)
_CREATOR = CAPI.wasmtime_memory_creator_t(None, _new, _NO_FINALIZER)


#: One linear memory the host made: ``base`` its address (it never moves), ``size`` its
#: accessible bytes now.
LinearMemory = _Memory


def sole_memory(limiter: Limiter) -> LinearMemory | None:
    """The one linear memory of the store ``limiter`` belongs to, or None when it has several
    (or none): which of them a function's canonical options name is not known here."""
    mine = [m for m in list(_MEMORIES.values()) if m.limiter is limiter]
    return mine[0] if len(mine) == 1 else None


def live() -> int:
    """How many linear memories the host holds now (each is freed with its store)."""
    return len(_MEMORIES)


def install(config: wasmtime.Config) -> None:
    """Make ``config``'s engine create its linear memories here."""
    set_memory_creator(config, _CREATOR)


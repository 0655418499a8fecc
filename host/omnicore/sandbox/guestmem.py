"""Bounds-checked access to one instance's linear memory, for host functions and the call path.

Split from :mod:`omnicore.sandbox.fastcall` (which re-exports both names): it is the one place
that turns a guest's (pointer, length) into host bytes, so every check is here.
"""

from __future__ import annotations

import ctypes
from typing import Any, Protocol

from omnicore.errors import Refused
from omnicore.sandbox._wasmtime import memory_data as _memory_data
from omnicore.sandbox._wasmtime import memory_data_size as _memory_size

__all__ = ["GuestMemory", "HostTrap"]


class HostTrap(Refused):
    """Raised by a host function to trap the guest (bad pointer, ABI violation): the host
    refuses the guest's call, and the guest's caller gets :class:`~omnicore.errors.Trap`."""


class MemoryOwner(Protocol):
    """What a memory needs of its instance (:class:`omnicore.sandbox.fastcall.RawInstance`
    or an Extism instance): the running call's deadline, the guest's allocator, and the
    per-instance state host functions keep (the fs grant's descriptor table). A Protocol, so
    this module does not import the call path that imports it."""

    @property
    def deadline(self) -> float: ...
    fs_table: Any

    def guest_alloc(self, n: int) -> int: ...


class GuestMemory:
    """Bounds-checked access to one instance's linear memory, for host functions.

    The engine sets ``memory_may_move = False``, so the base address is stable for the
    instance's life; only the size grows and is re-read when an access looks out of bounds.
    ``view`` is a memoryview over the memory as last seen: slicing it copies 100 B in about a
    tenth of a microsecond, several times cheaper than ``ctypes.memmove``/``string_at``.
    """

    __slots__ = ("_ctx", "_inst", "_mem", "base", "size", "view")

    def __init__(self, ctx: int, mem: int, inst: MemoryOwner) -> None:
        self._ctx = ctx
        self._mem = mem
        self._inst = inst
        self.base = 0
        self.size = 0
        self.view = memoryview(b"")
        self.refresh()

    @property
    def instance(self) -> MemoryOwner:
        """The instance this memory belongs to (per-instance state of host functions)."""
        return self._inst

    @property
    def deadline(self) -> float:
        """The running call's deadline (``time.monotonic()`` seconds): host functions doing
        I/O bound their own time by it, since the epoch check does not reach them."""
        return self._inst.deadline

    def refresh(self) -> int:
        """Re-read base and size after the guest may have grown its memory; return size."""
        base = _memory_data(self._ctx, self._mem) or 0
        size = int(_memory_size(self._ctx, self._mem))
        if base != self.base or size != self.size:
            self.base, self.size = base, size
            self.view = (memoryview((ctypes.c_ubyte * size).from_address(base)).cast("B")
                         if size and base else memoryview(b""))
        return size

    def check(self, ptr: int, length: int, what: str = "buffer") -> None:
        """Trap unless ``[ptr, ptr+length)`` lies inside linear memory."""
        if ptr < 0 or length < 0 or (ptr + length > self.size and ptr + length > self.refresh()):
            raise HostTrap(f"out-of-bounds {what}: ptr={ptr} len={length} "
                           f"(memory is {self.size} bytes)")

    def read(self, ptr: int, length: int, what: str = "buffer") -> bytes:
        """Copy ``length`` bytes at ``ptr`` out of guest memory."""
        # check()'s first test inline: a span inside memory as last seen needs no call.
        if ptr < 0 or length < 0 or ptr + length > self.size:
            self.check(ptr, length, what)
        return self.view[ptr:ptr + length].tobytes()

    def read_str(self, ptr: int, length: int, what: str = "string") -> str:
        """Read UTF-8 text; invalid sequences are replaced, not refused."""
        return self.read(ptr, length, what).decode("utf-8", "replace")

    def read_name(self, ptr: int, length: int, limit: int, what: str = "name") -> str | None:
        """A name argument (a kv key, a collection, a secret): 1 to ``limit`` bytes of UTF-8,
        or None for anything else, which the host function refuses (``INVALID``). A span
        outside memory traps whether or not it would be refused."""
        self.check(ptr, length, what)
        if not 0 < length <= limit:
            return None
        try:
            return str(self.view[ptr:ptr + length], "utf-8")
        except UnicodeDecodeError:
            return None

    def write(self, ptr: int, data: bytes, what: str = "output buffer") -> None:
        """Copy ``data`` into guest memory at ``ptr``."""
        end = ptr + len(data)
        if ptr < 0 or end > self.size:  # as in read()
            self.check(ptr, len(data), what)
        self.view[ptr:end] = data

    def write_result(self, data: bytes, out_ptr: int, out_cap: int) -> int:
        """specs/abi.md §3.2: write if it fits, always return the full length."""
        if len(data) <= out_cap:
            self.write(out_ptr, data)
        else:
            self.check(out_ptr, out_cap)
        return len(data)

    def alloc_result(self, data: bytes, error: bool = False) -> int:
        """specs/abi.md §3.3: place ``data`` in a guest-owned block; return the packed i64."""
        n = len(data)
        if n > 0x7FFF_FFFF:
            raise HostTrap("result too large for the ABI (2 GiB)")
        ptr = self._inst.guest_alloc(n)
        if ptr == 0:
            raise HostTrap(f"omni_alloc({n}) returned 0 (guest out of memory)")
        if n:  # omni_alloc(0) may return any non-zero pointer (abi.md §1.1): nothing to write
            self.write(ptr, data, "omni_alloc block")
        packed = (ptr << 32) | n | (1 << 31 if error else 0)
        return packed - (1 << 64) if packed >= 1 << 63 else packed

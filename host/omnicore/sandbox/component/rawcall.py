"""A byte face (.rawlift) bound to one instance: its functions and its C values made once.

The handler of every omnicore plugin component (``call(handler, input)``) goes through its
byte face on each call: two ``realloc`` calls, the call, the post-return. Made per call, the
C values (three arrays, two values) and their fields set one ctypes access at a time cost
~6 µs of a ~24 µs handler call; kept per instance and written with one ``pack_into`` each,
they cost well under one, as :class:`.flatcall.Bound` does for the canonical faces. Where the
C component call path is built (:data:`.flatcall.COMPCALL`), the realloc calls, the call and
the post-return are one C call each through its ``Face`` instead (no ctypes, no packing).
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from ctypes import byref
from typing import Any

from omnicore.sandbox._wasmtime import CAPI, COMPONENT_KINDS
from omnicore.sandbox.component.flatcall import COMPCALL, _address, _CallFailed

__all__ = ["RawBound"]

_VAL = CAPI.wasmtime_component_val_t
_SIZE = ctypes.sizeof(_VAL)
_OF = _VAL.of.offset
_U32 = COMPONENT_KINDS.get("U32", 0)
_ONE = struct.Struct("<I")
#: A byte face's return area (.rawlift): ``result<list<u8>, string>``, ``list<u8>``/``string``.
_RESULT_AREA = struct.Struct("<B3xII")
_PAIR_AREA = struct.Struct("<II")


class RawBound:
    """The byte face of one export on one instance (used by one call at a time: an instance
    serves one call at a time)."""

    __slots__ = ("area", "area_ref", "c", "ctx", "flat", "grow", "grow_view", "params",
                 "params_view", "post", "ptr", "ptr_ref", "realloc", "values")

    def __init__(self, ctx: Any, realloc: Any, flat: Any, post: Any, nparams: int,
                 ticks: int | None = None, clock: Any = None) -> None:
        self.ctx = ctx
        self.realloc = realloc
        self.flat = flat
        self.post = post
        #: realloc(0, 0, 1, n): the canonical ABI's call for a new byte list or string.
        self.grow = (_VAL * 4)()
        for c in self.grow:
            c.kind = _U32
        self.grow[2].of.u32 = 1
        self.grow_view = memoryview(self.grow).cast("B")
        # Results too carry their kind (wasmtime checks it, and writes only the payload).
        self.ptr = _VAL()
        self.ptr.kind = _U32
        self.ptr_ref = byref(self.ptr)
        self.params = (_VAL * max(2 * nparams, 1))()
        for c in self.params:
            c.kind = _U32
        self.params_view = memoryview(self.params).cast("B")
        self.area = _VAL()
        self.area.kind = _U32
        self.area_ref = byref(self.area)
        #: The C face (sandbox/_compcall.c), arming deadlines of ``ticks`` from ``clock`` (the
        #: engine's C clock) through the door (sandbox/_deadline.h); None: ctypes.
        self.c: Any = None
        if COMPCALL is not None and ticks is not None and clock is not None:
            self.c = COMPCALL.Face(_address(ctx), _address(flat), _address(post),
                                   _address(realloc), "ii" * nparams, "i", ticks, clock=clock)
        #: The (ptr, len) pairs of the parameters, for the C face.
        self.values: list[int] = [0] * (2 * nparams)

    def alloc(self, n: int) -> tuple[Any, int]:
        """``realloc`` for ``n`` bytes: (wasmtime's error or None, the address)."""
        if self.c is not None:
            try:
                return None, self.c.alloc(1, n)
            except _CallFailed as exc:
                return exc.error, 0
        _ONE.pack_into(self.grow_view, 3 * _SIZE + _OF, n)
        error = CAPI.wasmtime_component_func_call(self.realloc, self.ctx, self.grow, 4,
                                                  self.ptr_ref, 1)
        if not error:
            error = CAPI.wasmtime_component_func_post_return(self.realloc, self.ctx)
        return error, (0 if error else int(self.ptr.of.u32))

    def set_param(self, i: int, at: int, n: int) -> None:
        """Parameter ``i``'s (ptr, len) pair."""
        if self.c is not None:
            self.values[2 * i] = at
            self.values[2 * i + 1] = n
            return
        # Two packs: one over both values would zero the second one's kind in its padding.
        at_of = 2 * i * _SIZE + _OF
        _ONE.pack_into(self.params_view, at_of, at)
        _ONE.pack_into(self.params_view, at_of + _SIZE, n)

    def call(self, nparams: int) -> tuple[Any, int]:
        """The face's call with the first ``nparams`` pairs, then its post-return:
        (wasmtime's error or None, the return area's address)."""
        if self.c is not None:
            try:
                return None, self.c.call_core(self.values, None)
            except _CallFailed as exc:
                return exc.error, 0
        error = CAPI.wasmtime_component_func_call(self.flat, self.ctx, self.params,
                                                  2 * nparams, self.area_ref, 1)
        if not error:
            error = CAPI.wasmtime_component_func_post_return(self.flat, self.ctx)
        return error, (0 if error else int(self.area.of.u32))

    def post_call(self) -> Any:
        """The post-return face with the last call's return area: wasmtime's error or None."""
        if self.c is not None:
            try:
                self.c.post_core()
            except _CallFailed as exc:
                return exc.error
            return None
        error = CAPI.wasmtime_component_func_call(self.post, self.ctx, self.area_ref, 1, None, 0)
        if not error:
            error = CAPI.wasmtime_component_func_post_return(self.post, self.ctx)
        return error

    def invoke(self, memory: Any, datas: list[bytes], result: str, max_output: int,
               failed: Callable[[Any], Exception], trap: Callable[[str], Exception],
               called: Callable[[], None]) -> tuple[int, int, bytes]:
        """The call with ``datas`` placed through ``realloc``, each one memory copy, and its
        answer read from the return area as the canonical ABI lifts it: ``(tag, n, bytes)``
        (``result``: ``result`` a discriminant then (ptr, len), else (ptr, len): tag 0).
        An ok payload over ``max_output`` is not copied (its ``n`` says how long it was).
        wasmtime's errors are raised as ``failed(error)``, a bad answer as ``trap(words)``;
        ``called`` runs after the call, before either is raised (the guest's output)."""
        for i, data in enumerate(datas):
            n = len(data)
            error, at = self.alloc(n)
            if error:
                raise failed(error)
            if at + n > memory.size:
                raise trap("realloc return: beyond end of memory")
            ctypes.memmove(memory.base + at, data, n)
            self.set_param(i, at, n)
        error, ret = self.call(len(datas))
        called()
        if error:
            raise failed(error)
        size = 12 if result == "result" else 8
        if ret % 4 or ret + size > memory.size:
            raise trap("return pointer not aligned or out of bounds of memory")
        if result == "result":
            tag, at, n = _RESULT_AREA.unpack(ctypes.string_at(memory.base + ret, 12))
        else:
            tag, (at, n) = 0, _PAIR_AREA.unpack(ctypes.string_at(memory.base + ret, 8))
        if tag > 1:
            raise trap("unexpected discriminant for result<list<u8>, string>")
        if at + n > memory.size:
            raise trap("list pointer/length out of bounds of memory")
        # The ok payload's size is refused before it is copied (an error message is cut).
        out = ctypes.string_at(memory.base + at, n) if n and (tag == 1 or n <= max_output) \
            else b""
        if self.post is not None:  # the area still holds ret, the post-return's argument
            error = self.post_call()
            if error:
                raise failed(error)
        return tag, n, out

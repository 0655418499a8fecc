"""Host callbacks' arguments read flat: one ``unpack`` of wasmtime's C values.

A host function a component imports (:mod:`.hostcalls`) gets its arguments from wasmtime as
an array of ``wasmtime_component_val_t``. Read through ctypes, each value costs a structure
object, a union object and a field read (a string two more, for its size and pointer): most
of a callback's Python time. For a signature whose parameters are scalars, ``char``, enums,
strings and ``list<u8>`` (every ``omnicore:plugin`` function the SDKs call on each call: log,
config get, kv get/set), :func:`reader` compiles one :class:`struct.Struct` over the whole
array from the parameters' canonical types (.canonabi's spelling), and the callback reads it
with one ``unpack``; a string or a byte list is then one slice at its (size, pointer) pair,
through one view of the process's memory, not a ctypes call. The values are those the codecs
of :mod:`.values` give, with the same exceptions (a string is decoded as strictly as there);
anything else (a record, an option, a list of other elements) keeps the codecs. A ``bool``
answer is written the same way (:func:`writer`).

wasmtime checked the values against the function's type before the callback (the imported
type was compared with the host's at load), so a value's kind is that of its parameter.
"""

from __future__ import annotations

import ctypes
import math
import struct
from collections.abc import Callable
from typing import Any

from omnicore.sandbox._wasmtime import CAPI, COMPONENT_KINDS

__all__ = ["Reader", "Writer", "reader", "writer"]

#: Reads the callback's ``args`` (the array's address) as the host function's arguments.
Reader = Callable[[int], list[Any]]
#: Writes a host function's answer into the callback's ``results`` (an address); False when
#: the answer is not one it writes (the codec writes it then).
Writer = Callable[[Any, int], bool]

_SIZE = ctypes.sizeof(CAPI.wasmtime_component_val_t)
_OF = CAPI.wasmtime_component_val_t.of.offset
#: Each flat scalar's struct code in the value's union.
_SCALAR = {"bool": "?", "s8": "b", "u8": "B", "s16": "h", "u16": "H", "s32": "i", "u32": "I",
           "s64": "q", "u64": "Q", "f32": "f", "f64": "d", "char": "I"}
#: A (size, pointer) pair: a string's, an enum case name's, a list's.
_VEC = "QQ" if ctypes.sizeof(ctypes.c_size_t) == 8 else "II"
#: The process's address space as one view (nothing is read until a callback reads the
#: addresses wasmtime handed it): a slice of it is a value's bytes, without a ctypes call.
_PROCESS = memoryview((ctypes.c_ubyte * (1 << (8 * ctypes.sizeof(ctypes.c_void_p) - 2)))
                      .from_address(0)).cast("B")


def _float(f: float) -> Any:
    # values._Float.lift's words for what JSON cannot write.
    if math.isfinite(f):
        return f
    return "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf")


def _text(size: int, data: int) -> str:
    # As strict as values._text (wasmtime checked the guest's UTF-8 already).
    return str(_PROCESS[data:data + size], "utf-8") if size else ""


def _bytes(size: int, data: int) -> bytes:
    # One C value per byte: the byte is the first of each value's payload.
    return bytes(_PROCESS[data + _OF:data + size * _SIZE:_SIZE]) if size else b""


def _param(t: tuple[Any, ...]) -> tuple[str, int, Callable[..., Any] | None] | None:
    """(struct code, how many unpacked values, conversion or None) for one parameter."""
    k = t[0]
    if k in ("string", "enum"):
        return _VEC, 2, _text
    if k == "list" and t[1] == ("u8",):
        return _VEC, 2, _bytes
    if k in _SCALAR:
        converts: dict[str, Callable[..., Any]] = {"char": chr, "f32": _float, "f64": _float}
        convert = converts.get(k)
        return _SCALAR[k], 1, convert
    return None


def reader(params: tuple[tuple[Any, ...], ...]) -> Reader | None:
    """A flat reader for parameters of these canonical types, None for one it cannot read."""
    parts = []
    for t in params:
        p = _param(t)
        if p is None:
            return None
        parts.append(p)
    if not parts:
        return lambda _args: []
    fmt = "<" + "".join(f"{_OF}x{code}{_SIZE - _OF - struct.calcsize('<' + code)}x"
                        for code, _n, _c in parts)
    unpack = struct.Struct(fmt).unpack_from
    view = _PROCESS
    if all(convert is None for _code, _n, convert in parts):
        return lambda args: list(unpack(view, args))
    # The common shapes spelled out (a comprehension per call costs more than the reads).
    if len(parts) == 1 and parts[0][1] == 2:
        one = parts[0][2]
        assert one is not None
        return lambda args: [one(*unpack(view, args))]
    if len(parts) == 2 and parts[0][1] == parts[1][1] == 2:
        first, second = parts[0][2], parts[1][2]
        assert first is not None and second is not None

        def read_two(args: int) -> list[Any]:
            n1, d1, n2, d2 = unpack(view, args)
            return [first(n1, d1), second(n2, d2)]

        return read_two
    steps = tuple((n, convert) for _code, n, convert in parts)

    def read(args: int) -> list[Any]:
        raw = unpack(view, args)
        out: list[Any] = []
        i = 0
        for n, convert in steps:
            if convert is None:
                out.append(raw[i])
            elif n == 1:
                out.append(convert(raw[i]))
            else:
                out.append(convert(raw[i], raw[i + 1]))
            i += n
        return out

    return read


_BOOL = struct.Struct(f"<B{_OF - 1}x?")
_memmove = ctypes.memmove


def writer(result: tuple[Any, ...] | None) -> Writer | None:
    """A flat writer for an answer of this canonical type (a ``bool``), else None."""
    if result != ("bool",):
        return None
    kind = COMPONENT_KINDS["BOOL"]
    true, false = _BOOL.pack(kind, True), _BOOL.pack(kind, False)
    n = _BOOL.size

    def write(answer: Any, results: int) -> bool:
        if answer is True:
            _memmove(results, true, n)
        elif answer is False:
            _memmove(results, false, n)
        else:
            return False  # the codec's own conversion, as the value API's path does
        return True

    return write

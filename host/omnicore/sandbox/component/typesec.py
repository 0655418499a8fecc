"""The type definitions of a component's binary, as far as the flat faces need them.

:mod:`.rawlift` and :mod:`.canonplan` read a component's top level to find each exported
function's lift and WIT type; this module reads the type section's entries (and skips
what it does not need in component and instance types). Anything it does not know raises
:class:`_Unknown`, and the component keeps wasmtime's value API for every call.
"""

from __future__ import annotations

from typing import Any

from omnicore.sandbox.wasmbin import read_uleb

__all__ = ["Kind", "deftype", "name_at"]


# An internal signal, private on purpose: the planners catch it and leave the component as it
# is, so it stays outside omnicore.errors' tree.
class _Unknown(Exception):
    """Something this reader does not parse: leave the component as it is."""


# What the planner reads of a type: ("list", valtype) | ("result", ok, err) | ("func",
# params, result) | None; a valtype is a primitive's byte code or ("idx", n).
Kind = Any


def _valtype(data: bytes, pos: int) -> tuple[Any, int]:
    b = data[pos]
    if 0x64 <= b <= 0x7F:  # a primitive (string, u8, ...), one byte
        return b, pos + 1
    idx, end = _read_s33(data, pos)
    return ("idx", idx), end


def _read_s33(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if byte & 0x40:
                result -= 1 << shift
            return result, pos


def _opt_valtype(data: bytes, pos: int) -> tuple[Any, int]:
    if data[pos] == 0x00:
        return None, pos + 1
    if data[pos] != 0x01:
        raise _Unknown("optional valtype")
    return _valtype(data, pos + 1)


def _labels(data: bytes, pos: int) -> tuple[tuple[str, ...], int]:
    count, pos = read_uleb(data, pos)
    names = []
    for _ in range(count):
        label, pos = name_at(data, pos)
        names.append(label)
    return tuple(names), pos


def deftype(data: bytes, pos: int) -> tuple[Kind, int]:
    """Skip one component type definition; what the planner needs of it."""
    form = data[pos]
    pos += 1
    if form == 0x40:  # func
        count, pos = read_uleb(data, pos)
        params = []
        for _ in range(count):
            _l, pos = name_at(data, pos)
            vt, pos = _valtype(data, pos)
            params.append(vt)
        if data[pos] == 0x00:
            result, pos = _valtype(data, pos + 1)
        elif data[pos:pos + 2] == b"\x01\x00":
            result, pos = None, pos + 2
        else:
            raise _Unknown("result list")
        return ("func", tuple(params), result), pos
    if form in (0x41, 0x42):  # component, instance types: declarations
        count, pos = read_uleb(data, pos)
        for _ in range(count):
            pos = _decl(data, pos)
        return None, pos
    if form == 0x3F:  # resource
        if data[pos] != 0x7F:
            raise _Unknown("resource representation")
        pos += 1
        if data[pos] == 0x01:
            _d, pos = read_uleb(data, pos + 1)
        elif data[pos] == 0x00:
            pos += 1
        else:
            raise _Unknown("resource destructor")
        return None, pos
    if 0x64 <= form <= 0x7F and form not in (0x72, 0x71, 0x70, 0x6F, 0x6E, 0x6D, 0x6B, 0x6A,
                                             0x69, 0x68, 0x67, 0x66, 0x65):
        return ("prim", form), pos  # a primitive
    if form in (0x72, 0x71):  # record, variant
        count, pos = read_uleb(data, pos)
        names, types = [], []
        for _ in range(count):
            label, pos = name_at(data, pos)
            if form == 0x72:
                t, pos = _valtype(data, pos)
            else:
                t, pos = _opt_valtype(data, pos)
                if data[pos] != 0x00:
                    raise _Unknown("variant case refinement")
                pos += 1
            names.append(label)
            types.append(t)
        return ("record" if form == 0x72 else "variant", tuple(names), tuple(types)), pos
    if form == 0x70:  # list
        vt, pos = _valtype(data, pos)
        return ("list", vt), pos
    if form == 0x67:  # fixed-size list
        _t, pos = _valtype(data, pos)
        _n, pos = read_uleb(data, pos)
        return None, pos
    if form == 0x6F:  # tuple
        count, pos = read_uleb(data, pos)
        types = []
        for _ in range(count):
            t, pos = _valtype(data, pos)
            types.append(t)
        return ("tuple", tuple(types)), pos
    if form in (0x6E, 0x6D):  # flags, enum
        labels, pos = _labels(data, pos)
        return ("flags" if form == 0x6E else "enum", labels), pos
    if form == 0x6B:  # option
        t, pos = _valtype(data, pos)
        return ("option", t), pos
    if form == 0x6A:  # result
        ok, pos = _opt_valtype(data, pos)
        err, pos = _opt_valtype(data, pos)
        return ("result", ok, err), pos
    if form in (0x69, 0x68):  # own, borrow
        _i, pos = read_uleb(data, pos)
        return None, pos
    if form in (0x66, 0x65):  # stream, future
        _t, pos = _opt_valtype(data, pos)
        return None, pos
    raise _Unknown(f"type form {form:#x}")


def _decl(data: bytes, pos: int) -> int:
    """Skip one declaration of a component or instance type."""
    tag = data[pos]
    pos += 1
    if tag == 0x00:  # a core type: only module types appear here
        return _core_type(data, pos)
    if tag == 0x01:
        return deftype(data, pos)[1]
    if tag == 0x02:  # alias
        return _skip_alias(data, pos)
    if tag in (0x03, 0x04):  # import, export
        pos = _skip_extern_name(data, pos)
        return _skip_externdesc(data, pos)
    raise _Unknown(f"declaration {tag:#x}")


def _core_type(data: bytes, pos: int) -> int:
    form = data[pos]
    pos += 1
    if form == 0x60:  # core func type
        for _ in range(2):
            count, pos = read_uleb(data, pos)
            for _ in range(count):
                if data[pos] not in (0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F):
                    raise _Unknown("core value type")
                pos += 1
        return pos
    if form == 0x50:  # module type
        count, pos = read_uleb(data, pos)
        for _ in range(count):
            tag = data[pos]
            pos += 1
            if tag == 0x01:
                pos = _core_type(data, pos)
            elif tag in (0x00, 0x03):  # import (module, name), export (name): a core externdesc
                _m, pos = name_at(data, pos)
                if tag == 0x00:
                    _n, pos = name_at(data, pos)
                kind = data[pos]
                if kind != 0x00:
                    raise _Unknown("core import kind")
                _t, pos = read_uleb(data, pos + 1)
            elif tag == 0x02:  # outer alias
                pos += 2
                _ct, pos = read_uleb(data, pos)
                _i, pos = read_uleb(data, pos)
            else:
                raise _Unknown(f"module declaration {tag:#x}")
        return pos
    raise _Unknown(f"core type form {form:#x}")


def _skip_alias(data: bytes, pos: int) -> int:
    sort = data[pos]
    pos += 2 if sort == 0x00 else 1
    target = data[pos]
    pos += 1
    if target in (0x00, 0x01):
        _i, pos = read_uleb(data, pos)
        return name_at(data, pos)[1]
    if target == 0x02:
        _ct, pos = read_uleb(data, pos)
        return read_uleb(data, pos)[1]
    raise _Unknown(f"alias target {target:#x}")


def _skip_extern_name(data: bytes, pos: int) -> int:
    form = data[pos]
    if form not in (0x00, 0x01):
        raise _Unknown(f"extern name form {form:#x}")
    _n, pos = name_at(data, pos + 1)
    if form == 0x01:
        _v, pos = name_at(data, pos)
    return pos


def _skip_externdesc(data: bytes, pos: int) -> int:
    sort = data[pos]
    pos += 1
    if sort == 0x00:
        return read_uleb(data, pos + 1)[1]
    if sort in (0x01, 0x04, 0x05):
        return read_uleb(data, pos)[1]
    if sort == 0x03:
        bound = data[pos]
        if bound == 0x00:
            return read_uleb(data, pos + 1)[1]
        if bound == 0x01:
            return pos + 1
    raise _Unknown(f"extern sort {sort:#x}")


def name_at(data: bytes, pos: int) -> tuple[str, int]:
    n, pos = read_uleb(data, pos)
    return data[pos:pos + n].decode("utf-8", "replace"), pos + n

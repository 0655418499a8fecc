"""WIT values <-> JSON, through wasmtime's C value type (the mapping of specs/components.md).

wasmtime-py's own conversion is not used: it hands back a ``result``/``variant`` as its bare
payload (the case is lost whenever two cases hold the same Python type), wraps integers that
do not fit (``u8`` 300 arrives as 44) and takes ``True`` for the integer 1. Here each WIT type
is compiled once into a :class:`Codec` that checks a JSON value against the type (naming the
path of the first thing that does not fit, before anything runs), writes it into a
``wasmtime_component_val_t``, and reads a result back into JSON.
"""

from __future__ import annotations

import ctypes
import json
import math
from collections.abc import Callable
from ctypes import byref
from typing import Any

from wasmtime import component as cm

from omnicore.sandbox._wasmtime import CAPI, COMPONENT_KINDS

__all__ = ["Codec", "Unsupported", "WrongValue", "codec_for", "delete", "lift_bytes"]

_F32_MAX = 3.4028234663852886e38
#: Non-finite floats have no JSON number: they travel as these strings, both ways.
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


# Internal, outside omnicore.errors' tree on purpose: the component runtime turns it into
# InvalidInput naming the plugin and handler before the guest runs.
class WrongValue(ValueError):
    """A JSON value does not fit its WIT type; ``path`` says where (``pts[0].x``)."""

    def __init__(self, path: str, expected: str, got: object, *, missing: bool = False) -> None:
        text = "nothing (the field is missing)" if missing else _json(got)
        super().__init__(f"{path}: expected {expected}, got "
                         f"{text if len(text) <= 80 else text[:77] + '...'}")
        self.path = path


def _json(v: object) -> str:
    try:
        return json.dumps(v, ensure_ascii=False)
    except ValueError:  # a circular structure from a Python caller
        return repr(v)


# Internal, outside omnicore.errors' tree on purpose: the world reader catches it and lists
# the export as unsupported (with this text) instead of failing the load.
class Unsupported(TypeError):
    """A WIT type the JSON mapping does not cover (resources, streams, futures, maps)."""


def _kind(name: str) -> int:
    return COMPONENT_KINDS[name]


def _text(vec: Any) -> str:
    return ctypes.string_at(vec.data, vec.size).decode("utf-8")


def delete(val: Any) -> None:
    """Free a value written by :meth:`Codec.lower` or returned by a call (recursively)."""
    CAPI.wasmtime_component_val_delete(byref(val))


class Codec:
    """One WIT type: ``wit`` is how it is written; check, lower and lift its values."""

    wit = "?"

    def check(self, v: Any, path: str) -> None:
        """Raise WrongValue unless ``v`` fits."""
        raise NotImplementedError

    def lower(self, v: Any, c: Any) -> None:
        """Write the checked ``v`` into the ``wasmtime_component_val_t`` ``c``."""
        raise NotImplementedError

    def lift(self, c: Any) -> Any:
        """Read ``c`` (left for the caller to free) as JSON."""
        raise NotImplementedError

    def canon(self) -> tuple[Any, ...]:
        """The type as :mod:`.canonabi` reads it (a scalar: its WIT name)."""
        return (self.wit,)


class _Bool(Codec):
    wit = "bool"
    _K = _kind("BOOL")

    def check(self, v: Any, path: str) -> None:
        if type(v) is not bool:
            raise WrongValue(path, "true or false", v)

    def lower(self, v: Any, c: Any) -> None:
        c.kind = self._K
        c.of.boolean = v

    def lift(self, c: Any) -> Any:
        return bool(c.of.boolean)


class _Int(Codec):
    def __init__(self, name: str, signed: bool, bits: int) -> None:
        self.wit = name
        self._field = name
        self._kind = _kind(name.upper())
        self.lo = -(1 << (bits - 1)) if signed else 0
        self.hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1

    def check(self, v: Any, path: str) -> None:
        # bool is an int subclass: true is not the integer 1 here.
        if type(v) is not int:
            raise WrongValue(path, f"an integer ({self.wit})", v)
        if not self.lo <= v <= self.hi:
            article = "an" if self.wit[0] == "s" else "a"  # "an s32", "a u8"
            raise WrongValue(path, f"{article} {self.wit} ({self.lo}..{self.hi})", v)

    def lower(self, v: Any, c: Any) -> None:
        c.kind = self._kind
        setattr(c.of, self._field, v)

    def lift(self, c: Any) -> Any:
        return int(getattr(c.of, self._field))


class _Float(Codec):
    def __init__(self, name: str) -> None:
        self.wit = name
        self._field = name
        self._kind = _kind(name.upper())

    def check(self, v: Any, path: str) -> None:
        if isinstance(v, str) and v in _NON_FINITE:
            return
        if type(v) not in (int, float):
            raise WrongValue(path, f"a number ({self.wit}; or \"nan\", \"inf\", \"-inf\")", v)
        try:
            f = float(v)
        except OverflowError:
            raise WrongValue(path, f"a {self.wit} in range", v) from None
        if self.wit == "f32" and math.isfinite(f) and abs(f) > _F32_MAX:
            raise WrongValue(path, "an f32 in range (|x| <= 3.4028234663852886e38)", v)

    def lower(self, v: Any, c: Any) -> None:
        c.kind = self._kind
        setattr(c.of, self._field, _NON_FINITE[v] if isinstance(v, str) else float(v))

    def lift(self, c: Any) -> Any:
        f = float(getattr(c.of, self._field))
        if math.isfinite(f):
            return f
        return "nan" if math.isnan(f) else ("inf" if f > 0 else "-inf")


class _Char(Codec):
    wit = "char"
    _K = _kind("CHAR")

    def check(self, v: Any, path: str) -> None:
        if not isinstance(v, str) or len(v) != 1 or 0xD800 <= ord(v) <= 0xDFFF:
            raise WrongValue(path, "a one-character string (a Unicode scalar value)", v)

    def lower(self, v: Any, c: Any) -> None:
        c.kind = self._K
        c.of.character = ord(v)

    def lift(self, c: Any) -> Any:
        return chr(c.of.character)


class _String(Codec):
    wit = "string"
    _K = _kind("STRING")

    def check(self, v: Any, path: str) -> None:
        if not isinstance(v, str):
            raise WrongValue(path, "a string", v)
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise WrongValue(path, "a string of Unicode scalar values (no lone surrogates)",
                             v) from None

    def lower(self, v: Any, c: Any) -> None:
        c.kind = self._K
        c.of.string = CAPI.str_to_capi(v)

    def lift(self, c: Any) -> Any:
        return _text(c.of.string)


class _List(Codec):
    _K = _kind("LIST")

    def __init__(self, element: Codec) -> None:
        self.element = element
        self.wit = f"list<{element.wit}>"

    def check(self, v: Any, path: str) -> None:
        if not isinstance(v, list):
            raise WrongValue(path, f"an array ({self.wit})", v)
        check = self.element.check
        for i, e in enumerate(v):
            check(e, f"{path}[{i}]")

    def lower(self, v: Any, c: Any) -> None:
        raw = CAPI.wasmtime_component_vallist_t()
        CAPI.wasmtime_component_vallist_new_uninit(raw, len(v))
        lower = self.element.lower
        for i, e in enumerate(v):
            lower(e, raw.data[i])
        c.kind = self._K
        c.of.list = raw

    def lift(self, c: Any) -> Any:
        data = c.of.list.data
        lift = self.element.lift
        return [lift(data[i]) for i in range(c.of.list.size)]

    def canon(self) -> tuple[Any, ...]:
        return ("list", self.element.canon())


class _Bytes(_List):
    """``list<u8>``: checked, written and read whole, not element by element.

    A C value per byte is a 32-byte struct; filling 4 KiB of them one ctypes field at a time
    costs milliseconds, while two strided slice assignments into one buffer cost microseconds.
    """

    _SIZE = ctypes.sizeof(CAPI.wasmtime_component_val_t)
    _OF = CAPI.wasmtime_component_val_t.of.offset
    _U8 = bytes([_kind("U8")])

    def check(self, v: Any, path: str) -> None:
        if isinstance(v, list) and set(map(type, v)) <= {int}:
            try:
                bytes(v)
                return
            except ValueError:
                pass
        super().check(v, path)  # find the element that does not fit, for its path

    def lower(self, v: Any, c: Any) -> None:
        n, size = len(v), self._SIZE
        raw = CAPI.wasmtime_component_vallist_t()
        CAPI.wasmtime_component_vallist_new_uninit(raw, n)
        if n:
            buf = bytearray(n * size)
            buf[0::size] = self._U8 * n
            buf[self._OF::size] = bytes(v)
            ctypes.memmove(raw.data, bytes(buf), len(buf))
        c.kind = self._K
        c.of.list = raw

    def lift(self, c: Any) -> Any:
        n = c.of.list.size
        if not n:
            return []
        return list(ctypes.string_at(c.of.list.data, n * self._SIZE)[self._OF::self._SIZE])


def lift_bytes(c: Any) -> bytes:
    """Read the ``list<u8>`` value ``c`` as bytes (where JSON would take an array)."""
    n = c.of.list.size
    if not n:
        return b""
    size = _Bytes._SIZE
    return ctypes.string_at(c.of.list.data, n * size)[_Bytes._OF::size]


class _Record(Codec):
    _K = _kind("RECORD")

    def __init__(self, fields: list[tuple[str, Codec]]) -> None:
        self.fields = fields
        self.names = frozenset(n for n, _ in fields)
        self.wit = "record { " + ", ".join(f"{n}: {t.wit}" for n, t in fields) + " }"

    def check(self, v: Any, path: str) -> None:
        if not isinstance(v, dict):
            raise WrongValue(path, f"an object with the fields {', '.join(sorted(self.names))}",
                             v)
        for name, codec in self.fields:
            if name not in v:
                raise WrongValue(f"{path}.{name}", codec.wit, None, missing=True)
            codec.check(v[name], f"{path}.{name}")
        if len(v) == len(self.fields):
            return  # every field present, so no other key (a call's hot path: no sort)
        extra = sorted(str(k) for k in v if k not in self.names)
        if extra:
            raise WrongValue(f"{path}.{extra[0]}",
                             f"no such field (fields: {', '.join(n for n, _ in self.fields)})",
                             v[extra[0]])

    def lower(self, v: Any, c: Any) -> None:
        raw = CAPI.wasmtime_component_valrecord_t()
        CAPI.wasmtime_component_valrecord_new_uninit(raw, len(self.fields))
        for i, (name, codec) in enumerate(self.fields):
            entry = raw.data[i]
            entry.name = CAPI.str_to_capi(name)
            codec.lower(v[name], entry.val)
        c.kind = self._K
        c.of.record = raw

    def lift(self, c: Any) -> Any:
        data = c.of.record.data
        return {name: codec.lift(data[i].val) for i, (name, codec) in enumerate(self.fields)}

    def canon(self) -> tuple[Any, ...]:
        return ("record", tuple(n for n, _ in self.fields),
                tuple(c.canon() for _, c in self.fields))


class _Tuple(Codec):
    _K = _kind("TUPLE")

    def __init__(self, elements: list[Codec]) -> None:
        self.elements = elements
        self.wit = f"tuple<{', '.join(e.wit for e in elements)}>"

    def check(self, v: Any, path: str) -> None:
        if not isinstance(v, list) or len(v) != len(self.elements):
            raise WrongValue(path, f"an array of {len(self.elements)} ({self.wit})", v)
        for i, (codec, e) in enumerate(zip(self.elements, v, strict=True)):
            codec.check(e, f"{path}[{i}]")

    def lower(self, v: Any, c: Any) -> None:
        raw = CAPI.wasmtime_component_valtuple_t()
        CAPI.wasmtime_component_valtuple_new_uninit(raw, len(self.elements))
        for i, (codec, e) in enumerate(zip(self.elements, v, strict=True)):
            codec.lower(e, raw.data[i])
        c.kind = self._K
        c.of.tuple = raw

    def lift(self, c: Any) -> Any:
        data = c.of.tuple.data
        return [codec.lift(data[i]) for i, codec in enumerate(self.elements)]

    def canon(self) -> tuple[Any, ...]:
        return ("tuple", tuple(c.canon() for c in self.elements))


def _boxed(codec: Codec | None, v: Any) -> Any:
    """A heap ``wasmtime_component_val_t *`` holding ``v`` (NULL for a case without payload)."""
    if codec is None:
        return None
    raw = CAPI.wasmtime_component_val_t()
    codec.lower(v, raw)
    return CAPI.wasmtime_component_val_new(byref(raw))


def _one_key(v: Any, path: str, cases: dict[str, Codec | None], what: str) -> tuple[str, Any]:
    if not isinstance(v, dict) or len(v) != 1:
        raise WrongValue(path, f"an object with one key, {what}", v)
    (case, payload), = v.items()
    if case not in cases:
        raise WrongValue(path, what, v)
    codec = cases[case]
    if codec is None:
        if payload is not None:
            raise WrongValue(f"{path}.{case}", "null (this case has no payload)", payload)
    else:
        codec.check(payload, f"{path}.{case}")
    return case, payload


class _Variant(Codec):
    _K = _kind("VARIANT")

    def __init__(self, cases: list[tuple[str, Codec | None]]) -> None:
        self.cases = dict(cases)
        self.wit = "variant { " + ", ".join(
            n + (f"({t.wit})" if t else "") for n, t in cases) + " }"
        self._what = "one of " + ", ".join(f'{{"{n}": ...}}' for n, _ in cases)

    def check(self, v: Any, path: str) -> None:
        _one_key(v, path, self.cases, self._what)

    def lower(self, v: Any, c: Any) -> None:
        (case, payload), = v.items()
        c.kind = self._K
        c.of.variant.discriminant = CAPI.str_to_capi(case)
        c.of.variant.val = _boxed(self.cases[case], payload)

    def lift(self, c: Any) -> Any:
        case = _text(c.of.variant.discriminant)
        codec = self.cases[case]
        return {case: codec.lift(c.of.variant.val.contents) if codec else None}

    def canon(self) -> tuple[Any, ...]:
        return ("variant", tuple(self.cases),
                tuple(c.canon() if c else None for c in self.cases.values()))


class _Result(Codec):
    _K = _kind("RESULT")

    def __init__(self, ok: Codec | None, err: Codec | None) -> None:
        self.cases = {"ok": ok, "err": err}
        self.wit = f"result<{ok.wit if ok else '_'}, {err.wit if err else '_'}>"

    def check(self, v: Any, path: str) -> None:
        _one_key(v, path, self.cases, '{"ok": ...} or {"err": ...}')

    def lower(self, v: Any, c: Any) -> None:
        (case, payload), = v.items()
        c.kind = self._K
        c.of.result.is_ok = case == "ok"
        c.of.result.val = _boxed(self.cases[case], payload)

    def lift(self, c: Any) -> Any:
        case = "ok" if c.of.result.is_ok else "err"
        codec = self.cases[case]
        return {case: codec.lift(c.of.result.val.contents) if codec else None}

    def canon(self) -> tuple[Any, ...]:
        ok, err = self.cases["ok"], self.cases["err"]
        return ("result", ok.canon() if ok else None, err.canon() if err else None)


class _Option(Codec):
    _K = _kind("OPTION")

    def __init__(self, payload: Codec) -> None:
        if isinstance(payload, _Option):
            # null could mean none or some(none): the mapping has no spelling for the second.
            raise Unsupported("option<option<...>> (no JSON spelling for some(none))")
        self.payload = payload
        self.wit = f"option<{payload.wit}>"

    def check(self, v: Any, path: str) -> None:
        if v is not None:
            self.payload.check(v, path)

    def lower(self, v: Any, c: Any) -> None:
        c.kind = self._K
        c.of.option = None if v is None else _boxed(self.payload, v)

    def lift(self, c: Any) -> Any:
        return self.payload.lift(c.of.option.contents) if c.of.option else None

    def canon(self) -> tuple[Any, ...]:
        return ("option", self.payload.canon())


class _Enum(Codec):
    _K = _kind("ENUM")

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.wit = f"enum {{ {', '.join(names)} }}"

    def check(self, v: Any, path: str) -> None:
        if v not in self.names or not isinstance(v, str):
            raise WrongValue(path, f"one of {', '.join(map(repr, self.names))}", v)

    def lower(self, v: Any, c: Any) -> None:
        c.kind = self._K
        c.of.enumeration = CAPI.str_to_capi(v)

    def lift(self, c: Any) -> Any:
        return _text(c.of.enumeration)

    def canon(self) -> tuple[Any, ...]:
        return ("enum", tuple(self.names))


class _Flags(Codec):
    _K = _kind("FLAGS")

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.wit = f"flags {{ {', '.join(names)} }}"

    def check(self, v: Any, path: str) -> None:
        if not isinstance(v, list):
            raise WrongValue(path, f"an array of flag names ({', '.join(self.names)})", v)
        for i, name in enumerate(v):
            if not isinstance(name, str) or name not in self.names:
                raise WrongValue(f"{path}[{i}]", f"one of {', '.join(map(repr, self.names))}",
                                 name)
        if len(set(v)) != len(v):
            raise WrongValue(path, "each flag at most once", v)

    def lower(self, v: Any, c: Any) -> None:
        raw = CAPI.wasmtime_component_valflags_t()
        CAPI.wasmtime_component_valflags_new_uninit(raw, len(v))
        for i, name in enumerate(v):
            raw.data[i] = CAPI.str_to_capi(name)
        c.kind = self._K
        c.of.flags = raw

    def lift(self, c: Any) -> Any:
        got = {_text(c.of.flags.data[i]) for i in range(c.of.flags.size)}
        return [n for n in self.names if n in got]  # in declaration order, like the WIT

    def canon(self) -> tuple[Any, ...]:
        return ("flags", tuple(self.names))


_SCALARS: dict[type, Callable[[], Codec]] = {
    cm.Bool: _Bool, cm.Char: _Char, cm.String: _String,
    cm.S8: lambda: _Int("s8", True, 8), cm.S16: lambda: _Int("s16", True, 16),
    cm.S32: lambda: _Int("s32", True, 32), cm.S64: lambda: _Int("s64", True, 64),
    cm.U8: lambda: _Int("u8", False, 8), cm.U16: lambda: _Int("u16", False, 16),
    cm.U32: lambda: _Int("u32", False, 32), cm.U64: lambda: _Int("u64", False, 64),
    cm.F32: lambda: _Float("f32"), cm.F64: lambda: _Float("f64"),
}


def codec_for(ty: Any) -> Codec:
    """The codec of wasmtime's value type ``ty``; Unsupported for types JSON cannot carry."""
    make = _SCALARS.get(type(ty))
    if make is not None:
        return make()
    if isinstance(ty, cm.ListType):
        element = codec_for(ty.element)
        return _Bytes(element) if element.wit == "u8" else _List(element)
    if isinstance(ty, cm.RecordType):
        return _Record([(n, codec_for(t)) for n, t in ty.fields])
    if isinstance(ty, cm.TupleType):
        return _Tuple([codec_for(t) for t in ty.elements])
    if isinstance(ty, cm.VariantType):
        return _Variant([(n, codec_for(t) if t is not None else None) for n, t in ty.cases])
    if isinstance(ty, cm.ResultType):
        ok, err = ty.ok, ty.err
        return _Result(codec_for(ok) if ok is not None else None,
                       codec_for(err) if err is not None else None)
    if isinstance(ty, cm.OptionType):
        return _Option(codec_for(ty.payload))
    if isinstance(ty, cm.EnumType):
        return _Enum(ty.names)
    if isinstance(ty, cm.FlagsType):
        return _Flags(ty.names)
    if isinstance(ty, (cm.OwnType, cm.BorrowType)):
        raise Unsupported("resources (own/borrow handles)")
    raise Unsupported(type(ty).__name__.removesuffix("Type").lower() or "this type")

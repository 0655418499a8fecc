"""Faces of a component's exports: the same core function lifted again, typed flat.

wasmtime's component C API carries every value as one 32-byte C value per WIT value (a
``list<u8>`` as one per byte, converted each in Rust both ways: a 4 KiB round trip cost
~440 µs, and a call copying over ~2 MB traps). So at load, beside each exported function the
host can call itself (:mod:`.canonplan` chooses them and their types), the component gets one
more export: the *same core function* lifted again with the canonical ABI's flat form of its
signature, one C value per core value and the result the core result (a return area's
address for anything in memory). Its ``realloc`` and its post-return are lifted too:
wasmtime runs a lift's post-return inside the call, before the host could read the bytes it
frees. The host then does the canonical ABI's work itself (.canonabi, .flatcall, the C
face): one memory copy per list or string each way, the host having made that memory
(``component/memory.py``) so it knows its address.

This module reads a component's top level (which lift belongs to which export, their
canonical options) and writes the faces into it (:func:`rewrite`). The extra exports use the
lift's own canonical options (memory, realloc, string encoding), so wasmtime validates each
new lift against the core function's type when it compiles: a component the planner misreads
does not compile, and the caller keeps the original.

Which lift belongs to which export is read from the core export the lift aliases: toolchains
(wit-bindgen, componentize-py, jco) name it after the component export (``greet``, or
``ns:pkg/iface#greet``). Only the component's top level is read; anything this reader does
not know (async built-ins, value imports, nested names it cannot count) leaves the component
as it is, and its calls take wasmtime's value API as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omnicore.sandbox.component.typesec import Kind, _Unknown, deftype, name_at
from omnicore.sandbox.wasmbin import WasmFormatError, read_uleb, sections, write_uleb

__all__ = ["RAW_PREFIX", "Lift", "Planned", "RawForm", "Reader", "label", "named_lifts", "read",
           "rewrite"]

#: Export names of the flat faces (a kebab-case label no WIT export of a plugin uses).
RAW_PREFIX = "omnicore-raw-"

_U32, _STRING = 0x79, 0x73


@dataclass(frozen=True, slots=True)
class RawForm:
    """How to call one function through its flat face (.canonplan: the host does its whole
    canonical ABI)."""

    #: The flat face's export name, its realloc's and its post-return's (None: it has none).
    export: str
    realloc: str | None
    post_return: str | None
    #: The core function's parameter and result types (``"i32"``...): the face's signature;
    #: a parameter ``"string"`` is a WIT string the face keeps (.canonplan: wasmtime lowers
    #: it; two core values in the core function's signature).
    core_params: tuple[str, ...] = ()
    core_result: tuple[str, ...] = ("i32",)
    #: A canonical face's WIT parameter and result types, as .canonabi reads them.
    types: tuple[Any, ...] = ()
    result_type: Any = None


@dataclass(frozen=True, slots=True)
class Lift:
    core_func: int
    #: The canonical options but the post-return, encoded (vec count included).
    options: bytes
    realloc: int | None
    memory: int | None
    post_return: int | None
    #: The string encoding is UTF-8 (the flat face reads and writes strings as UTF-8).
    utf8: bool
    #: Its function type (a component type index).
    type: int


@dataclass(frozen=True, slots=True)
class _Options:
    realloc: int | None
    memory: int | None
    post_return: int | None
    utf8: bool
    #: The options but the post-return, encoded (vec count included).
    kept: bytes


def _options(data: bytes, pos: int) -> tuple[int, _Options]:
    count, pos = read_uleb(data, pos)
    realloc = memory = post = None
    utf8 = True
    kept: list[bytes] = []
    for _ in range(count):
        op = data[pos]
        start = pos
        pos += 1
        if op in (0x00, 0x01, 0x02):  # string encodings: utf8, utf16, latin1+utf16
            utf8 = utf8 and op == 0x00
        elif op in (0x03, 0x04, 0x05):  # memory, realloc, post-return
            idx, pos = read_uleb(data, pos)
            if op == 0x03:
                memory = idx
            elif op == 0x04:
                realloc = idx
            else:
                post = idx
                continue
        else:
            raise _Unknown(f"canonical option {op:#x}")  # async, callback: not flat
        kept.append(data[start:pos])
    return pos, _Options(realloc, memory, post, utf8,
                         write_uleb(len(kept)) + b"".join(kept))


class Reader:
    """The top-level index spaces of a component, as far as the planner needs them."""

    def __init__(self, wasm: bytes) -> None:
        self.funcs = 0  # component functions
        self.types = 0  # component types
        self.core_funcs = 0
        #: component type index -> what the flat face needs to know of it (None: other)
        self.kinds: dict[int, Kind] = {}
        #: core function index -> the core export name it aliases
        self.core_names: dict[int, str] = {}
        #: component function index -> its lift
        self.lifts: dict[int, Lift] = {}
        #: top-level export name -> component function index
        self.exports: dict[str, int] = {}
        for sid, start, end in sections(wasm):
            self._section(sid, wasm[start:end])

    def _section(self, sid: int, data: bytes) -> None:
        if sid in (0, 1, 2, 3, 4, 5):  # custom, core module/instance/type, component, instance
            return
        if sid == 7:
            count, pos = read_uleb(data, 0)
            for _ in range(count):
                kind, pos = deftype(data, pos)
                self.kinds[self.types] = kind
                self.types += 1
            return
        if sid not in (6, 8, 10, 11):  # start, value: not read
            raise _Unknown(f"section {sid}")
        count, pos = read_uleb(data, 0)
        for _ in range(count):
            pos = {6: self._alias, 8: self._canon, 10: self._import, 11: self._export}[sid](
                data, pos)

    def _add(self, sort: int) -> None:
        if sort == 0x01:
            self.funcs += 1
        elif sort == 0x03:
            self.types += 1

    def _alias(self, data: bytes, pos: int) -> int:
        sort = data[pos]
        core = None
        pos += 1
        if sort == 0x00:
            core = data[pos]
            pos += 1
        target = data[pos]
        pos += 1
        if target in (0x00, 0x01):
            _inst, pos = read_uleb(data, pos)
            name, pos = name_at(data, pos)
            if core == 0x00:
                if target == 0x01:
                    self.core_names[self.core_funcs] = name
                self.core_funcs += 1
        elif target == 0x02:
            _ct, pos = read_uleb(data, pos)
            _idx, pos = read_uleb(data, pos)
            if core == 0x00:
                self.core_funcs += 1
        else:
            raise _Unknown(f"alias target {target:#x}")
        if core is None:
            self._add(sort)
        return pos

    def _canon(self, data: bytes, pos: int) -> int:
        op = data[pos]
        pos += 1
        if op == 0x00:  # lift
            if data[pos] != 0x00:
                raise _Unknown("canon lift form")
            core_func, pos = read_uleb(data, pos + 1)
            pos, opts = _options(data, pos)
            ty, pos = read_uleb(data, pos)
            self.lifts[self.funcs] = Lift(core_func, opts.kept, opts.realloc, opts.memory,
                                           opts.post_return, opts.utf8, ty)
            self.funcs += 1
            return pos
        if op == 0x01:  # lower
            if data[pos] != 0x00:
                raise _Unknown("canon lower form")
            _f, pos = read_uleb(data, pos + 1)
            pos = _options(data, pos)[0]
        elif op in (0x02, 0x03, 0x04, 0x07):  # resource.new/drop/rep, drop async
            _t, pos = read_uleb(data, pos)
        else:
            raise _Unknown(f"canon {op:#x}")
        self.core_funcs += 1
        return pos

    def _externdesc(self, data: bytes, pos: int) -> tuple[int, int]:
        sort = data[pos]
        pos += 1
        if sort == 0x00:
            pos += 1  # 0x11: core module
            _t, pos = read_uleb(data, pos)
        elif sort in (0x01, 0x04, 0x05):
            _t, pos = read_uleb(data, pos)
        elif sort == 0x03:
            bound = data[pos]
            pos += 1
            if bound == 0x00:
                _t, pos = read_uleb(data, pos)
            elif bound != 0x01:
                raise _Unknown(f"type bound {bound:#x}")
        else:
            raise _Unknown(f"extern sort {sort:#x}")
        return sort, pos

    def _extern_name(self, data: bytes, pos: int) -> tuple[str, int]:
        form = data[pos]
        if form not in (0x00, 0x01):
            raise _Unknown(f"extern name form {form:#x}")
        name, pos = name_at(data, pos + 1)
        if form == 0x01:  # a version suffix
            _suffix, pos = name_at(data, pos)
        return name, pos

    def _import(self, data: bytes, pos: int) -> int:
        _, pos = self._extern_name(data, pos)
        sort, pos = self._externdesc(data, pos)
        self._add(sort)
        return pos

    def _export(self, data: bytes, pos: int) -> int:
        name, pos = self._extern_name(data, pos)
        sort = data[pos]
        pos += 1
        if sort == 0x00:
            raise _Unknown("core sort export")
        idx, pos = read_uleb(data, pos)
        has_type = data[pos]
        pos += 1
        if has_type == 0x01:
            _s, pos = self._externdesc(data, pos)
        elif has_type != 0x00:
            raise _Unknown("export type ascription form")
        if sort == 0x01:
            self.exports[name] = idx
            self.funcs += 1
        else:
            if sort == 0x03:  # an exported type is a new index of the same type
                self.kinds[self.types] = self.kinds.get(idx)
            self._add(sort)
        return pos


Planned = dict[str, tuple[RawForm, Lift]]


def read(wasm: bytes) -> Reader | None:
    """The component's top level as the planners read it; None when this reader cannot."""
    try:
        return Reader(wasm)
    except (_Unknown, WasmFormatError, IndexError, UnicodeDecodeError):
        return None


def named_lifts(reader: Reader) -> list[tuple[str, Lift]]:
    """Each function with exactly one lift, by name, sorted."""
    named: dict[str, list[Lift]] = {}
    exported = {func: name for name, func in reader.exports.items()}
    for func, lift in reader.lifts.items():
        # A top-level export names its lift; an interface's function is found by the core
        # export the toolchains name after it.
        name = exported.get(func) or reader.core_names.get(lift.core_func)
        if name is not None:
            named.setdefault(name, []).append(lift)
    return [(name, lifts[0]) for name, lifts in sorted(named.items()) if len(lifts) == 1]


def label(n: int) -> str:
    """The ``n``-th kebab-case label: a, b, ..., z, aa, ..."""
    out = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(ord("a") + r) + out
    return out


def _section(sid: int, entries: list[bytes]) -> bytes:
    body = write_uleb(len(entries)) + b"".join(entries)
    return bytes([sid]) + write_uleb(len(body)) + body


def _str(s: str) -> bytes:
    raw = s.encode()
    return write_uleb(len(raw)) + raw


def rewrite(wasm: bytes, planned: Planned) -> bytes:
    """``wasm`` with the flat faces of ``planned`` appended (types, lifts, exports)."""
    reader = Reader(wasm)
    u32 = bytes([_U32])
    type_base = reader.types
    types = [  # realloc(a, b, c, d: u32) -> u32
        b"\x40" + write_uleb(4) + b"".join(_str(p) + u32 for p in "abcd") + b"\x00" + u32]
    faces: list[tuple[str, bytes]] = []  # (export name, canon lift entry)
    for form, lift in planned.values():
        # The flat function answers its core results as they are (a return area's address
        # for anything in memory): wasmtime would run the post-return before the host read
        # what it frees, so the lift has none and the post-return is a face of its own,
        # called after the copy.
        params = b"".join(_str(f"p{i}") + bytes([_CORE[c]])
                          for i, c in enumerate(form.core_params))
        ty = type_base + len(types)
        types.append(b"\x40" + write_uleb(len(form.core_params)) + params + _results(form))
        faces.append((form.export, b"\x00\x00" + write_uleb(lift.core_func) + lift.options
                      + write_uleb(ty)))
        if form.realloc is not None:
            assert lift.realloc is not None
            faces.append((form.realloc, b"\x00\x00" + write_uleb(lift.realloc) + write_uleb(0)
                          + write_uleb(type_base)))
        if form.post_return is not None:
            assert lift.post_return is not None
            post = type_base + len(types)
            types.append(b"\x40" + write_uleb(len(form.core_result)) + b"".join(
                _str(f"r{i}") + bytes([_CORE[c]]) for i, c in enumerate(form.core_result))
                + b"\x01\x00")
            faces.append((form.post_return, b"\x00\x00" + write_uleb(lift.post_return)
                          + write_uleb(0) + write_uleb(post)))
    out = bytearray(wasm)
    out += _section(7, types)
    func = reader.funcs
    for name, entry in faces:
        # Each lift, then its export: the lift is function ``func``, the export ``func + 1``.
        out += _section(8, [entry])
        out += _section(11, [b"\x00" + _str(name) + b"\x01" + write_uleb(func) + b"\x00"])
        func += 2
    return bytes(out)


#: A core value type as the face's component type carries it (i32 as u32, i64 as u64; a
#: string parameter the face keeps as a string).
_CORE = {"i32": _U32, "i64": 0x77, "f32": 0x76, "f64": 0x75, "string": _STRING}


def _results(form: RawForm) -> bytes:
    if not form.core_result:
        return b"\x01\x00"
    return b"\x00" + bytes([_CORE[form.core_result[0]]])

"""Just enough of the WebAssembly binary format to read and write custom sections, and to
read a core module's signatures (exports' types, v128 where the C API cannot take it).

wasmtime's Python API does not expose custom sections, nor a module's types before it has
compiled the whole module, and SDK builds need to append the
``omnicore.manifest`` section without a native toolchain, so both use this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "COMPONENT_HEADER",
    "MAGIC",
    "WasmFormatError",
    "custom_sections",
    "declared_sizes",
    "function_exports",
    "hollow",
    "indescribable_signature",
    "is_component",
    "processed_by",
    "read_uleb",
    "sections",
    "set_custom_section",
    "uses_gc",
    "v128_in_signatures",
    "write_sleb",
    "write_uleb",
]

MAGIC = b"\x00asm\x01\x00\x00\x00"
CUSTOM = 0


# Internal, outside omnicore.errors' tree on purpose: every reader of a user's file turns it
# into InvalidModule; elsewhere (the toolchains' rewriters) it reads omnicore's own build
# output, where it means a host bug and is shown as one.
class WasmFormatError(ValueError):
    """The bytes are not a well-formed WebAssembly binary (at the section level)."""


#: The version and layer fields of a component's preamble (a core module has 1, 0, 0, 0).
COMPONENT_HEADER = b"\x0d\x00\x01\x00"


def is_component(wasm: bytes) -> bool:
    """Whether ``wasm`` is a Component Model component (not a core module): its header alone,
    so telling the two apart imports nothing of the component runtime."""
    return wasm[:4] == b"\0asm" and wasm[4:8] == COMPONENT_HEADER


def read_uleb(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Decode an unsigned LEB128 at ``pos``; return (value, next position)."""
    result = shift = 0
    while True:
        if pos >= len(data):
            raise WasmFormatError("truncated LEB128 integer")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 35:
            raise WasmFormatError("LEB128 integer too long")


def write_uleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def write_sleb(value: int) -> bytes:
    """``value`` as a signed LEB128 (an ``i32.const``/``i64.const`` immediate)."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def sections(wasm: bytes) -> Iterator[tuple[int, int, int]]:
    """Yield ``(section id, payload start, payload end)`` for every section."""
    for sid, _header, start, end in _sections(wasm):
        yield sid, start, end


def _sections(wasm: bytes) -> Iterator[tuple[int, int, int, int]]:
    if len(wasm) < 8 or wasm[:4] != MAGIC[:4]:
        raise WasmFormatError("not a WebAssembly module (bad magic bytes)")
    # A component (version 0x0d, layer 1) frames its sections the same way.
    if wasm[4:8] not in (MAGIC[4:], b"\x0d\x00\x01\x00"):
        raise WasmFormatError("unsupported WebAssembly binary version (not a core module v1 "
                              "or a component)")
    pos = 8
    while pos < len(wasm):
        sid = wasm[pos]
        size, start = read_uleb(wasm, pos + 1)
        end = start + size
        if end > len(wasm):
            raise WasmFormatError(f"section {sid} runs past the end of the file (truncated?)")
        yield sid, pos, start, end
        pos = end


def _custom_name(wasm: bytes, start: int, end: int) -> tuple[str, int]:
    nlen, npos = read_uleb(wasm, start)
    if npos + nlen > end:
        raise WasmFormatError("custom section name runs past its section")
    try:
        return wasm[npos:npos + nlen].decode("utf-8"), npos + nlen
    except UnicodeDecodeError as exc:
        raise WasmFormatError("custom section name is not UTF-8") from exc


def custom_sections(wasm: bytes, name: str) -> list[bytes]:
    """The payloads of every custom section called ``name``, in file order."""
    found = []
    for sid, start, end in sections(wasm):
        if sid == CUSTOM:
            sname, payload = _custom_name(wasm, start, end)
            if sname == name:
                found.append(bytes(wasm[payload:end]))
    return found


def processed_by(wasm: bytes) -> tuple[str, ...]:
    """The tool names in the ``processed-by`` field of ``wasm``'s own ``producers`` sections
    (a component's, not its core modules': those are nested, not top-level sections); () when
    it has none, and what could be read when one is malformed (it is a hint, never a verdict)."""
    names: list[str] = []
    try:
        for payload in custom_sections(wasm, "producers"):
            fields, pos = read_uleb(payload, 0)
            for _ in range(fields):
                n, pos = read_uleb(payload, pos)
                field_name = payload[pos:pos + n].decode("utf-8", "replace")
                pos += n
                values, pos = read_uleb(payload, pos)
                for _ in range(values):
                    n, pos = read_uleb(payload, pos)
                    value = payload[pos:pos + n].decode("utf-8", "replace")
                    pos += n
                    n, pos = read_uleb(payload, pos)  # the version
                    pos += n
                    if field_name == "processed-by":
                        names.append(value)
    except (WasmFormatError, IndexError, ValueError):
        pass
    return tuple(names)


def set_custom_section(wasm: bytes, name: str, payload: bytes) -> bytes:
    """Return ``wasm`` with every section called ``name`` replaced by one holding ``payload``."""
    out = bytearray(wasm[:8])
    for sid, header_start, start, end in _sections(wasm):
        if sid == CUSTOM and _custom_name(wasm, start, end)[0] == name:
            continue
        out += wasm[header_start:end]
    encoded = name.encode("utf-8")
    body = write_uleb(len(encoded)) + encoded + payload
    out += bytes([CUSTOM]) + write_uleb(len(body)) + body
    return bytes(out)


_V128 = 0x7B
_REF_TYPES = (0x63, 0x64)  # (ref null? heaptype): a heap type follows
_FUNCREF, _EXTERNREF = 0x70, 0x6F
#: Value types wasmtime's C API describes (wasmtime-py asks it for every import's and export's
#: signature): numbers, funcref and externref. It aborts the process (exit 134: "support for
#: non-externref and non-funcref references is not implemented") on any other reference type,
#: and on v128.
_SAFE_VALTYPES = frozenset((0x7F, 0x7E, 0x7D, 0x7C, _FUNCREF, _EXTERNREF))
#: The Wasm GC type section's prefixes: a recursion group, a subtype (final or not), and the
#: composite types (function, struct, array).
_REC, _SUB, _SUB_FINAL, _FUNC, _STRUCT, _ARRAY = 0x4E, 0x50, 0x4F, 0x60, 0x5F, 0x5E
#: Packed storage types of struct and array fields.
_PACKED = (0x78, 0x77)


def _valtype(wasm: bytes, pos: int) -> tuple[int, int]:
    """A value type's kind byte and the position after it. ``(ref null func)`` and
    ``(ref null extern)`` are read as funcref and externref (the same types); any other
    reference to a heap type is 0x63 or 0x64."""
    kind = wasm[pos]
    pos += 1
    if kind in _REF_TYPES:
        heap = wasm[pos]
        pos = _skip_sleb(wasm, pos)
        if kind == 0x63 and heap in (_FUNCREF, _EXTERNREF):
            return heap, pos
    return kind, pos


def _subtype(wasm: bytes, pos: int) -> tuple[tuple[bytes, bytes] | None, bool, int]:
    """One (sub)type of a type section: ``((params, results) or None for a struct or an
    array, whether it is GC's, next position)``."""
    gc = False
    if wasm[pos] in (_SUB, _SUB_FINAL):
        gc = True
        supers, pos = read_uleb(wasm, pos + 1)
        for _ in range(supers):
            _, pos = read_uleb(wasm, pos)
    form = wasm[pos]
    pos += 1
    if form == _FUNC:
        sig: list[bytes] = []
        for _part in range(2):
            n, pos = read_uleb(wasm, pos)
            kinds = bytearray()
            for _v in range(n):
                kind, pos = _valtype(wasm, pos)
                kinds.append(kind)
            sig.append(bytes(kinds))
        return (sig[0], sig[1]), gc, pos
    if form in (_STRUCT, _ARRAY):
        fields = 1
        if form == _STRUCT:
            fields, pos = read_uleb(wasm, pos)
        for _f in range(fields):
            if wasm[pos] in _PACKED:
                pos += 1
            else:
                _, pos = _valtype(wasm, pos)
            pos += 1  # mutability
        return None, True, pos
    raise WasmFormatError(f"unknown type form {form:#x} in the type section")


def _skip_sleb(wasm: bytes, pos: int) -> int:
    while True:
        if pos >= len(wasm):
            raise WasmFormatError("truncated LEB128 integer")
        pos += 1
        if not wasm[pos - 1] & 0x80:
            return pos


def _skip_limits(wasm: bytes, pos: int) -> int:
    flags = wasm[pos]
    _, pos = read_uleb(wasm, pos + 1)
    if flags & 1:
        _, pos = read_uleb(wasm, pos)
    return pos


def _skip_name(wasm: bytes, pos: int) -> tuple[str, int]:
    n, pos = read_uleb(wasm, pos)
    return wasm[pos:pos + n].decode("utf-8", "replace"), pos + n


#: Opcodes a constant expression may hold (with how many immediate bytes, -1: one LEB128).
_CONST_OPS = {0x41: -1, 0x42: -1, 0x43: 4, 0x44: 8, 0x23: -1, 0xD2: -1, 0xD0: -1,
              0x6A: 0, 0x6B: 0, 0x6C: 0, 0x7C: 0, 0x7D: 0, 0x7E: 0}
#: GC's constant instructions (after 0xFB: the sub-opcode, then this many LEB128
#: immediates): struct.new, struct.new_default, array.new, array.new_default,
#: array.new_fixed, any.convert_extern, extern.convert_any, ref.i31.
_GC_CONST_OPS = {0x00: 1, 0x01: 1, 0x06: 1, 0x07: 1, 0x08: 2, 0x1A: 0, 0x1B: 0, 0x1C: 0}


def _skip_const_expr(wasm: bytes, pos: int) -> int:
    while True:
        op = wasm[pos]
        pos += 1
        if op == 0x0B:
            return pos
        if op == 0xFD:  # v128.const: a LEB128 sub-opcode, then 16 bytes
            _, pos = read_uleb(wasm, pos)
            pos += 16
            continue
        if op == 0xFB:
            sub, pos = read_uleb(wasm, pos)
            count = _GC_CONST_OPS.get(sub)
            if count is None:
                raise WasmFormatError(f"unsupported GC opcode 0xfb {sub:#x} in a constant "
                                      "expression")
            for _ in range(count):
                _, pos = read_uleb(wasm, pos)
            continue
        width = _CONST_OPS.get(op)
        if width is None:
            raise WasmFormatError(f"unsupported opcode {op:#x} in a constant expression")
        pos = _skip_sleb(wasm, pos) if width < 0 else pos + width


@dataclass
class _Signatures:
    """What a core module's sections say of its function and global types."""

    #: (params, results) by type index; None for a struct or array type (GC).
    types: list[tuple[bytes, bytes] | None] = field(default_factory=list)
    func_types: list[int] = field(default_factory=list)  # imported functions first
    func_imports: dict[int, str] = field(default_factory=dict)  # index -> "import m.f"
    func_exports: list[tuple[str, int]] = field(default_factory=list)  # (name, index)
    globals: int = 0  # imported and defined
    #: Each global's value type and where it comes from ("import m.g" or "global N").
    global_types: list[tuple[int, str]] = field(default_factory=list)
    #: Each table's element type and where it comes from, imported tables first.
    table_types: list[tuple[int, str]] = field(default_factory=list)
    #: Exported globals and tables: (name, index).
    global_exports: list[tuple[str, int]] = field(default_factory=list)
    table_exports: list[tuple[str, int]] = field(default_factory=list)
    v128_global: str | None = None  # where a global's type is v128
    #: The module uses Wasm GC's type forms (a recursion group, a subtype, a struct or array).
    gc_type: bool = False


def _signatures(wasm: bytes, *, functions: bool | None) -> _Signatures:
    """The module's types, imports, functions, globals, tables and exports.
    ``functions=None`` reads the function and export sections (one entry per function: tens of
    thousands in a Go or JS plugin) only when some function type holds a value type wasmtime's
    C API cannot describe (v128, a GC reference)."""
    found = _Signatures()
    any_unsafe_type = False  # in a function type
    any_unsafe_other = False  # a global's or table's type
    try:
        for sid, start, end in sections(wasm):
            pos = start
            if sid == 3 and not (functions or (functions is None and any_unsafe_type)):
                continue
            if sid == 7 and not (functions or (functions is None and (
                    any_unsafe_type or any_unsafe_other))):
                continue
            if sid in (1, 2, 3, 4, 6, 7):
                count, pos = read_uleb(wasm, pos)
            else:
                continue
            for _ in range(count):
                if sid == 1:
                    members = 1
                    if wasm[pos] == _REC:  # a recursion group: one index per member
                        found.gc_type = True
                        members, pos = read_uleb(wasm, pos + 1)
                    for _member in range(members):
                        sig, gc, pos = _subtype(wasm, pos)
                        found.gc_type = found.gc_type or gc
                        found.types.append(sig)
                        unsafe = set(sig[0] + sig[1]) - _SAFE_VALTYPES if sig else set()
                        any_unsafe_type = any_unsafe_type or bool(unsafe)
                        # A typed or GC reference: what the GC proposals let validate.
                        found.gc_type = found.gc_type or bool(unsafe - {_V128})
                elif sid == 2:
                    module, pos = _skip_name(wasm, pos)
                    name, pos = _skip_name(wasm, pos)
                    kind = wasm[pos]
                    pos += 1
                    if kind == 0:
                        idx, pos = read_uleb(wasm, pos)
                        found.func_imports[len(found.func_types)] = f"import {module}.{name}"
                        found.func_types.append(idx)
                    elif kind == 1:
                        vt, pos = _valtype(wasm, pos)
                        found.table_types.append((vt, f"import {module}.{name}"))
                        any_unsafe_other = any_unsafe_other or vt not in _SAFE_VALTYPES
                        pos = _skip_limits(wasm, pos)
                    elif kind == 2:
                        pos = _skip_limits(wasm, pos)
                    elif kind == 3:
                        vt, pos = _valtype(wasm, pos)
                        if vt == _V128 and found.v128_global is None:
                            found.v128_global = f"import {module}.{name}"
                        found.global_types.append((vt, f"import {module}.{name}"))
                        any_unsafe_other = any_unsafe_other or vt not in _SAFE_VALTYPES
                        found.globals += 1
                        pos += 1
                    elif kind == 4:
                        _, pos = read_uleb(wasm, pos + 1)
                    else:
                        raise WasmFormatError(f"unknown import kind {kind:#x}")
                elif sid == 3:
                    idx, pos = read_uleb(wasm, pos)
                    found.func_types.append(idx)
                elif sid == 4:
                    where = f"table {len(found.table_types)}"
                    if wasm[pos] == 0x40:  # a table with an initialiser (function references)
                        vt, pos = _valtype(wasm, pos + 2)
                        pos = _skip_const_expr(wasm, _skip_limits(wasm, pos))
                    else:
                        vt, pos = _valtype(wasm, pos)
                        pos = _skip_limits(wasm, pos)
                    found.table_types.append((vt, where))
                    any_unsafe_other = any_unsafe_other or vt not in _SAFE_VALTYPES
                elif sid == 6:
                    vt, pos = _valtype(wasm, pos)
                    where = f"global {found.globals}"
                    if vt == _V128 and found.v128_global is None:
                        found.v128_global = where
                    found.global_types.append((vt, where))
                    any_unsafe_other = any_unsafe_other or vt not in _SAFE_VALTYPES
                    found.globals += 1
                    pos = _skip_const_expr(wasm, pos + 1)
                else:
                    name, pos = _skip_name(wasm, pos)
                    kind = wasm[pos]
                    idx, pos = read_uleb(wasm, pos + 1)
                    if kind == 0:
                        found.func_exports.append((name, idx))
                    elif kind == 1:
                        found.table_exports.append((name, idx))
                    elif kind == 3:
                        found.global_exports.append((name, idx))
                if pos > end:
                    raise WasmFormatError(f"section {sid} is shorter than its contents")
    except IndexError:
        raise WasmFormatError("a section ends in the middle of an entry (truncated?)") from None
    return found


def _function_type(found: _Signatures, fidx: int) -> tuple[bytes, bytes] | None:
    if fidx < len(found.func_types) and found.func_types[fidx] < len(found.types):
        return found.types[found.func_types[fidx]]
    return None


def v128_in_signatures(wasm: bytes) -> str | None:
    """Where a ``v128`` appears in an import/export signature or a global's type, else None.

    wasmtime's C API aborts the process when asked for the kind of a v128 value type, and
    reading a module's imports and exports asks exactly that, so this is checked from the
    bytes before compiling. SIMD inside function bodies is fine (specs/abi.md §1.5).
    Raises WasmFormatError for sections too malformed to read.
    """
    # When no function type mentions v128 (or a GC reference), no function signature can,
    # and the function and export sections need not be read at all.
    found = _signatures(wasm, functions=None)
    if found.v128_global is not None:
        return found.v128_global
    named = {**found.func_imports, **{idx: f"export {name!r}" for name, idx in found.func_exports}}
    for fidx, where in named.items():
        sig = _function_type(found, fidx)
        if sig is not None and (_V128 in sig[0] or _V128 in sig[1]):
            return where
    return None


def indescribable_signature(wasm: bytes) -> str | None:
    """Where an import or export of a core module has a type wasmtime's C API cannot describe
    (it aborts the whole process when asked: a v128, or a reference other than funcref and
    externref: Wasm GC's and typed function references'), else None.

    Every import and export is asked about once a module is compiled (its signature checked,
    its kind shown), so a module for which this is not None is refused before wasmtime sees
    it. Inside function bodies, in struct and array fields and in globals and tables that are
    neither imported nor exported, every type is fine. Raises WasmFormatError for sections
    too malformed to read.
    """
    found = _signatures(wasm, functions=None)
    named = {**found.func_imports, **{idx: f"export {name!r}" for name, idx in found.func_exports}}
    for fidx, where in named.items():
        sig = _function_type(found, fidx)
        if sig is not None and set(sig[0] + sig[1]) - _SAFE_VALTYPES:
            return where
    for vt, where in (*found.global_types, *found.table_types):
        if where.startswith("import ") and vt not in _SAFE_VALTYPES:
            return where
    for exports, types in ((found.global_exports, found.global_types),
                           (found.table_exports, found.table_types)):
        for name, idx in exports:
            if idx < len(types) and types[idx][0] not in _SAFE_VALTYPES:
                return f"export {name!r}"
    return None


def uses_gc(wasm: bytes) -> bool:
    """Whether a core module uses Wasm GC or typed function references in its types (what
    Winch, wasmtime's baseline compiler, cannot compile): its type section alone. False for
    bytes too malformed to read (compiling them says why)."""
    try:
        for sid, header, _start, end in _sections(wasm):
            if sid == 1:
                return _signatures(wasm[:8] + wasm[header:end], functions=False).gc_type
    except (WasmFormatError, IndexError):
        return False
    return False


def function_exports(wasm: bytes) -> list[tuple[str, bytes, bytes]]:
    """Each exported function of a core module as ``(name, params, results)``, the types as
    their value-type bytes (``0x7F`` i32, ``0x7E`` i64, ...), in the export section's order:
    read from the bytes, where asking wasmtime means compiling the module (4 s of CPU for a Go
    plugin). Raises WasmFormatError for sections too malformed to read."""
    found = _signatures(wasm, functions=True)
    out = []
    for name, idx in found.func_exports:
        sig = _function_type(found, idx)
        if sig is not None:
            out.append((name, *sig))
    return out



def declared_sizes(wasm: bytes) -> tuple[list[int], list[int]]:
    """The initial sizes a core module declares, imported and defined: its memories' (in
    64 KiB pages) and its tables' (in elements), what instantiating it asks of a store's
    limits before any of its code runs (``omnicore inspect`` starts no instance, so it reads
    them here). Raises WasmFormatError for sections too malformed to read, and for a
    component (which of its modules it instantiates, this does not read)."""
    if is_component(wasm):
        raise WasmFormatError("a component: the sizes of the modules it nests are not read")
    memories: list[int] = []
    tables: list[int] = []
    try:
        for sid, start, end in sections(wasm):
            if sid not in (_IMPORT, _TABLE, _MEMORY):
                continue
            count, pos = read_uleb(wasm, start)
            for _ in range(count):
                kind = {_TABLE: 1, _MEMORY: 2}.get(sid)
                if sid == _IMPORT:
                    pos = _skip_name(wasm, _skip_name(wasm, pos)[1])[1]
                    kind = wasm[pos]
                    pos += 1
                if kind == 0:
                    _, pos = read_uleb(wasm, pos)
                elif kind == 3:
                    pos = _valtype(wasm, pos)[1] + 1
                elif kind == 4:
                    _, pos = read_uleb(wasm, pos + 1)
                elif kind == 2:
                    memories.append(read_uleb(wasm, pos + 1)[0])
                    pos = _skip_limits(wasm, pos)
                elif kind == 1:
                    init = sid == _TABLE and wasm[pos] == 0x40  # a table with an initialiser
                    pos = _valtype(wasm, pos + 2 if init else pos)[1]
                    tables.append(read_uleb(wasm, pos + 1)[0])
                    pos = _skip_limits(wasm, pos)
                    if init:
                        pos = _skip_const_expr(wasm, pos)
                else:
                    raise WasmFormatError(f"unknown import kind {kind:#x}")
                if pos > end:
                    raise WasmFormatError(f"section {sid} is shorter than its contents")
    except IndexError:
        raise WasmFormatError("a section ends in the middle of an entry (truncated?)") from None
    return memories, tables


#: Section ids: a core module's function, table, global, export, start, element, code, data
#: and data count sections; a component's nested core module and component, and its start.
_IMPORT, _FUNCTION, _TABLE, _MEMORY, _GLOBAL, _EXPORT, _START, _ELEMENT, _CODE, _DATA, \
    _DATA_COUNT = 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12
_CORE_MODULE, _COMPONENT = 1, 4
#: A function body of no locals that traps at once (``unreachable``, ``end``): valid for any
#: function type, since nothing after ``unreachable`` is type-checked against the stack.
_TRAP_BODY = b"\x03\x00\x00\x0b"
_REF_FUNC = 0xD2


def hollow(wasm: bytes, check: Callable[[bytes], object] | None = None) -> bytes:
    """``wasm`` (a core module or a component) as what links like it and runs nothing: the
    same imports, exports (of the same types), memories, tables and globals, each exported
    function a body that traps, no other function, no start, element or data segments, no
    custom sections. It compiles in a moment whatever the original's size (``omnicore
    inspect`` links it where the plugin would be linked: issue 63); it must never be
    instantiated for what it computes. A component's nested core modules and components are
    hollowed alike (a component's start section is kept: wasmtime refuses it either way).
    ``check`` is called on each core module before it is hollowed (a validator: the hollow
    form must not make valid what is not). Raises WasmFormatError for sections too malformed
    to read."""
    try:
        return _hollow(wasm, check, 0)
    except (IndexError, KeyError):
        raise WasmFormatError("a section ends in the middle of an entry, or names a function "
                              "it does not have") from None


#: How deep components may nest in one another here: a file nesting them deeper is left to
#: wasmtime (which refuses more than 1,000 modules and components); each level is a Python
#: frame, and a few thousand levels fit in 30 KB (a RecursionError was a crash in inspect).
_MAX_NESTING = 100


def _hollow(wasm: bytes, check: Callable[[bytes], object] | None, depth: int) -> bytes:
    if depth > _MAX_NESTING:
        raise WasmFormatError(f"components nested more than {_MAX_NESTING} deep")
    component = is_component(wasm)
    if check is not None and not component:
        check(wasm)
    kept = None if component else _exported_functions(wasm)
    out = bytearray(wasm[:8])
    for sid, start, end in sections(wasm):
        body: bytes | None = wasm[start:end]
        if sid == CUSTOM:
            body = None
        elif component:
            # A component's start section is kept: no instance of hollow code is started, and
            # wasmtime refuses one (component model values), as it refuses the plugin.
            if sid in (_CORE_MODULE, _COMPONENT):
                body = _hollow(wasm[start:end], check, depth + 1)
        elif sid in (_START, _ELEMENT, _DATA, _DATA_COUNT):
            body = None
        elif sid == _CODE:
            count = read_uleb(wasm, start)[0] if kept is None else len(kept[1])
            body = write_uleb(count) + _TRAP_BODY * count
        elif kept is not None and sid == _FUNCTION:
            _imported, defined, types = kept
            body = write_uleb(len(defined)) + b"".join(write_uleb(types[i]) for i in defined)
        elif kept is not None and sid == _EXPORT:
            body = _renumbered_exports(wasm, start, kept)
        if body is not None:
            out += bytes([sid]) + write_uleb(len(body)) + body
    return bytes(out)


def _exported_functions(wasm: bytes) -> tuple[int, list[int], list[int]] | None:
    """``(function imports, the defined functions an export names, every function's type
    index)`` of a core module; None where a global or table initialiser may take a function's
    reference (``ref.func``, read here as any 0xD2 byte in those sections): then every
    function is kept, since renumbering them would break that reference."""
    for sid, start, end in sections(wasm):
        if sid in (_GLOBAL, _TABLE) and _REF_FUNC in wasm[start:end]:
            return None
    found = _signatures(wasm, functions=True)
    imported = len(found.func_imports)
    return (imported, sorted({i for _, i in found.func_exports if i >= imported}),
            found.func_types)


def _renumbered_exports(wasm: bytes, start: int,
                        kept: tuple[int, list[int], list[int]]) -> bytes:
    """The export section at ``start`` with each defined function's index as it is among
    ``kept``'s (imported functions and other kinds keep theirs)."""
    imported, defined, _types = kept
    index = {old: imported + new for new, old in enumerate(defined)}
    count, pos = read_uleb(wasm, start)
    out = bytearray(write_uleb(count))
    for _ in range(count):
        entry = pos
        name_end = _skip_name(wasm, pos)[1]
        kind = wasm[name_end]
        idx, pos = read_uleb(wasm, name_end + 1)
        out += wasm[entry:name_end + 1] + write_uleb(index[idx] if kind == 0 and idx >= imported
                                                     else idx)
    return bytes(out)

"""Just enough of the WebAssembly binary format to read and write custom sections, and to
read a core module's signatures (exports' types, v128 where the C API cannot take it).

wasmtime's Python API does not expose custom sections, nor a module's types before it has
compiled the whole module, and SDK builds need to append the
``omnicore.manifest`` section without a native toolchain, so both use this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = [
    "COMPONENT_HEADER",
    "MAGIC",
    "WasmFormatError",
    "custom_sections",
    "function_exports",
    "is_component",
    "read_uleb",
    "sections",
    "set_custom_section",
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


def _valtype(wasm: bytes, pos: int) -> tuple[int, int]:
    kind = wasm[pos]
    pos += 1
    if kind in _REF_TYPES:
        pos = _skip_sleb(wasm, pos)
    return kind, pos


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
        width = _CONST_OPS.get(op)
        if width is None:
            raise WasmFormatError(f"unsupported opcode {op:#x} in a constant expression")
        pos = _skip_sleb(wasm, pos) if width < 0 else pos + width


@dataclass
class _Signatures:
    """What a core module's sections say of its function and global types."""

    types: list[tuple[bytes, bytes]] = field(default_factory=list)  # (params, results)
    func_types: list[int] = field(default_factory=list)  # imported functions first
    func_imports: dict[int, str] = field(default_factory=dict)  # index -> "import m.f"
    func_exports: list[tuple[str, int]] = field(default_factory=list)  # (name, index)
    globals: int = 0  # imported and defined
    v128_global: str | None = None  # where a global's type is v128
    #: A type that is not a plain function type (GC's rec/sub), which validation refuses
    #: with GC off: nothing more was read.
    gc_type: bool = False


def _signatures(wasm: bytes, *, functions: bool | None) -> _Signatures:
    """The module's types, imports, functions, globals and exports. ``functions=None`` reads
    the function and export sections (one entry per function: tens of thousands in a Go or
    JS plugin) only when a function type mentions v128."""
    found = _Signatures()
    any_v128_type = False
    try:
        for sid, start, end in sections(wasm):
            pos = start
            if sid in (3, 7) and not (functions or (functions is None and any_v128_type)):
                continue
            if sid in (1, 2, 3, 6, 7):
                count, pos = read_uleb(wasm, pos)
            else:
                continue
            for _ in range(count):
                if sid == 1:
                    if wasm[pos] != 0x60:
                        found.gc_type = True
                        return found
                    pos += 1
                    sig: list[bytes] = []
                    for _part in range(2):
                        n, pos = read_uleb(wasm, pos)
                        kinds = bytearray()
                        for _v in range(n):
                            kind, pos = _valtype(wasm, pos)
                            kinds.append(kind)
                        sig.append(bytes(kinds))
                    found.types.append((sig[0], sig[1]))
                    any_v128_type = any_v128_type or _V128 in sig[0] or _V128 in sig[1]
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
                        _, pos = _valtype(wasm, pos)
                        pos = _skip_limits(wasm, pos)
                    elif kind == 2:
                        pos = _skip_limits(wasm, pos)
                    elif kind == 3:
                        vt, pos = _valtype(wasm, pos)
                        if vt == _V128 and found.v128_global is None:
                            found.v128_global = f"import {module}.{name}"
                        found.globals += 1
                        pos += 1
                    elif kind == 4:
                        _, pos = read_uleb(wasm, pos + 1)
                    else:
                        raise WasmFormatError(f"unknown import kind {kind:#x}")
                elif sid == 3:
                    idx, pos = read_uleb(wasm, pos)
                    found.func_types.append(idx)
                elif sid == 6:
                    vt, pos = _valtype(wasm, pos)
                    if vt == _V128 and found.v128_global is None:
                        found.v128_global = f"global {found.globals}"
                    found.globals += 1
                    pos = _skip_const_expr(wasm, pos + 1)
                else:
                    name, pos = _skip_name(wasm, pos)
                    kind = wasm[pos]
                    idx, pos = read_uleb(wasm, pos + 1)
                    if kind == 0:
                        found.func_exports.append((name, idx))
                if pos > end:
                    raise WasmFormatError(f"section {sid} is shorter than its contents")
    except IndexError:
        raise WasmFormatError("a section ends in the middle of an entry (truncated?)") from None
    return found


def v128_in_signatures(wasm: bytes) -> str | None:
    """Where a ``v128`` appears in an import/export signature or a global's type, else None.

    wasmtime's C API aborts the process when asked for the kind of a v128 value type, and
    reading a module's imports and exports asks exactly that, so this is checked from the
    bytes before compiling. SIMD inside function bodies is fine (specs/abi.md §1.5).
    Raises WasmFormatError for sections too malformed to read.
    """
    # When no function type mentions v128, no function signature can, and the function and
    # export sections need not be read at all.
    found = _signatures(wasm, functions=None)
    if found.gc_type:
        return None  # refused by validation (GC is off)
    if found.v128_global is not None:
        return found.v128_global
    named = {**found.func_imports, **{idx: f"export {name!r}" for name, idx in found.func_exports}}
    for fidx, where in named.items():
        if fidx < len(found.func_types) and found.func_types[fidx] < len(found.types):
            params, results = found.types[found.func_types[fidx]]
            if _V128 in params or _V128 in results:
                return where
    return None


def function_exports(wasm: bytes) -> list[tuple[str, bytes, bytes]]:
    """Each exported function of a core module as ``(name, params, results)``, the types as
    their value-type bytes (``0x7F`` i32, ``0x7E`` i64, ...), in the export section's order:
    read from the bytes, where asking wasmtime means compiling the module (4 s of CPU for a Go
    plugin). Raises WasmFormatError for sections too malformed to read."""
    found = _signatures(wasm, functions=True)
    out = []
    for name, idx in found.func_exports:
        if idx < len(found.func_types) and found.func_types[idx] < len(found.types):
            params, results = found.types[found.func_types[idx]]
            out.append((name, params, results))
    return out

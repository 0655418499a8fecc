"""Just enough of the WebAssembly binary format to read and write custom sections.

wasmtime's Python API does not expose custom sections, and SDK builds need to append the
``omnicore.manifest`` section without a native toolchain, so both use this module.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = [
    "MAGIC",
    "WasmFormatError",
    "custom_sections",
    "read_uleb",
    "sections",
    "set_custom_section",
    "write_uleb",
]

MAGIC = b"\x00asm\x01\x00\x00\x00"
CUSTOM = 0


class WasmFormatError(ValueError):
    """The bytes are not a well-formed WebAssembly binary (at the section level)."""


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


def sections(wasm: bytes) -> Iterator[tuple[int, int, int]]:
    """Yield ``(section id, payload start, payload end)`` for every section."""
    for sid, _header, start, end in _sections(wasm):
        yield sid, start, end


def _sections(wasm: bytes) -> Iterator[tuple[int, int, int, int]]:
    if len(wasm) < 8 or wasm[:4] != MAGIC[:4]:
        raise WasmFormatError("not a WebAssembly module (bad magic bytes)")
    if wasm[4:8] != MAGIC[4:]:
        raise WasmFormatError("unsupported WebAssembly binary version (not a core module v1)")
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

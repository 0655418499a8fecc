"""Rewriting the prebuilt JS runtime module into one plugin, in pure Python.

A JS plugin is the runtime (``sdk/js/runtime``) plus three edits, so authors need no native
toolchain:

* an active data segment that fills the runtime's reserved zero region with the source;
* the generic handler exports ``omni_h<i>`` renamed to the plugin's handler names;
* imports of ``omnicore:*`` namespaces the plugin does not use replaced by local trapping
  stubs, because the host treats every imported namespace as a request (specs/abi.md §3)
  and would refuse to run a greeter that "asks" for http.

The last edit shifts function indices, so every ``call``/``ref.func`` operand is rewritten;
:func:`call_sites` finds them once per runtime build (the result is cached by the caller).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from omnicore.sandbox.wasmbin import MAGIC, WasmFormatError, read_uleb, write_sleb, write_uleb

__all__ = ["Import", "call_sites", "imports", "mutable_globals", "nonzero_segments", "rewrite"]

_IMPORT, _FUNC, _MEMORY, _GLOBAL, _EXPORT, _START, _ELEM, _CODE, _DATA, _DATACOUNT = (
    2, 3, 5, 6, 7, 8, 9, 10, 11, 12)
_BLOCK_TYPES = {0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F}
_ONE_ULEB = {0x0C, 0x0D, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x3F, 0x40}


@dataclass(frozen=True)
class Import:
    """One entry of the import section; ``type_index`` is set for function imports only."""

    module: str
    name: str
    kind: int
    raw: bytes
    type_index: int | None


def _split(wasm: bytes) -> list[tuple[int, bytes]]:
    if wasm[:8] != MAGIC:
        raise WasmFormatError("not a WebAssembly core module")
    out, pos = [], 8
    while pos < len(wasm):
        sid = wasm[pos]
        size, start = read_uleb(wasm, pos + 1)
        out.append((sid, wasm[start:start + size]))
        pos = start + size
    return out


def _join(sections: Iterable[tuple[int, bytes]]) -> bytes:
    out = bytearray(MAGIC)
    for sid, payload in sections:
        out += bytes([sid]) + write_uleb(len(payload)) + payload
    return bytes(out)


def _skip_leb(data: bytes, pos: int) -> int:
    while data[pos] & 0x80:
        pos += 1
    return pos + 1


def _name(data: bytes, pos: int) -> tuple[str, int]:
    n, pos = read_uleb(data, pos)
    return data[pos:pos + n].decode("utf-8"), pos + n


def _section(sections: Sequence[tuple[int, bytes]], sid: int) -> bytes | None:
    return next((p for s, p in sections if s == sid), None)


def imports(wasm: bytes) -> list[Import]:
    """The module's import entries, in order."""
    payload = _section(_split(wasm), _IMPORT)
    return _parse_imports(payload) if payload is not None else []


def _parse_imports(payload: bytes) -> list[Import]:
    count, pos = read_uleb(payload, 0)
    out = []
    for _ in range(count):
        start = pos
        module, pos = _name(payload, pos)
        name, pos = _name(payload, pos)
        kind = payload[pos]
        pos += 1
        type_index = None
        if kind == 0:
            type_index, pos = read_uleb(payload, pos)
        elif kind == 1:  # table: reftype + limits
            pos = _skip_limits(payload, pos + 1)
        elif kind == 2:
            pos = _skip_limits(payload, pos)
        elif kind == 3:
            pos += 2
        else:
            raise WasmFormatError(f"unknown import kind {kind}")
        out.append(Import(module, name, kind, payload[start:pos], type_index))
    return out


def _skip_limits(data: bytes, pos: int) -> int:
    flags = data[pos]
    pos = _skip_leb(data, pos + 1)
    return _skip_leb(data, pos) if flags & 1 else pos


def call_sites(wasm: bytes) -> list[tuple[int, int, int]]:
    """``(body index, offset in body, operand width)`` of every function-index operand.

    Decodes every instruction of the code section: the operands of ``call``,
    ``return_call`` and ``ref.func`` are function indices.
    """
    code = _section(_split(wasm), _CODE)
    if code is None:
        return []
    sites: list[tuple[int, int, int]] = []
    count, pos = read_uleb(code, 0)
    for body_index in range(count):
        size, pos = read_uleb(code, pos)
        body_start, end = pos, pos + size
        groups, pos = read_uleb(code, pos)
        for _ in range(groups):
            pos = _skip_leb(code, pos) + 1
        while pos < end:
            op = code[pos]
            pos += 1
            if op in (0x10, 0x12, 0xD2):
                nxt = _skip_leb(code, pos)
                sites.append((body_index, pos - body_start, nxt - pos))
                pos = nxt
            elif op in _ONE_ULEB or op == 0xD0:
                pos = _skip_leb(code, pos)
            elif 0x28 <= op <= 0x3E:
                pos = _skip_leb(code, _skip_leb(code, pos))
            elif op in (0x41, 0x42):
                pos = _skip_leb(code, pos)
            elif op == 0x43:
                pos += 4
            elif op == 0x44:
                pos += 8
            elif op in (0x02, 0x03, 0x04):
                pos = pos + 1 if code[pos] in _BLOCK_TYPES else _skip_leb(code, pos)
            elif op in (0x11, 0x13):
                pos = _skip_leb(code, _skip_leb(code, pos))
            elif op == 0x0E:
                n, pos = read_uleb(code, pos)
                for _ in range(n + 1):
                    pos = _skip_leb(code, pos)
            elif op == 0x1C:
                n, pos = read_uleb(code, pos)
                pos += n
            elif op == 0xFC:
                sub, pos = read_uleb(code, pos)
                pos = _skip_fc(code, pos, sub)
            elif op in (0xFD, 0xFE):
                raise WasmFormatError(f"opcode prefix {op:#x} (SIMD/threads) is not supported by "
                                      "the JS runtime rewriter; build the runtime without it")
        if pos != end:
            raise WasmFormatError(f"function body {body_index} decoded past its end")
    return sites


def _skip_fc(code: bytes, pos: int, sub: int) -> int:
    if sub <= 7:
        return pos
    if sub in (8, 12, 14):  # memory.init, table.init, table.copy: two indices
        return _skip_leb(code, _skip_leb(code, pos))
    if sub in (9, 10, 11, 13, 15, 16, 17):
        pos = _skip_leb(code, pos)
        return _skip_leb(code, pos) if sub == 10 else pos
    raise WasmFormatError(f"unknown 0xFC sub-opcode {sub}")


def _uleb_width(value: int, width: int) -> bytes:
    """``value`` as an unsigned LEB128 of at least ``width`` bytes (padding is valid wasm)."""
    minimal = write_uleb(value)
    if len(minimal) >= width:
        return minimal
    out = bytearray()
    for i in range(width):
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if i < width - 1 else 0))
    return bytes(out)


def rewrite(wasm: bytes, *, sites: Sequence[tuple[int, int, int]], drop_modules: set[str],
            rename: Mapping[str, str], drop_exports: set[str],
            data: Sequence[tuple[int, bytes]], replace_data: bool = False,
            memory_pages: int | None = None) -> bytes:
    """Apply the plugin edits (module docstring) and return the new module.

    ``data`` segments are appended, or with ``replace_data`` replace every segment (a memory
    snapshot); ``memory_pages`` raises the memory's initial size to hold such a snapshot.
    """
    sections = _split(wasm)
    imps = _parse_imports(_section(sections, _IMPORT) or b"\x00")
    func_imports = [i for i in imps if i.kind == 0]
    n_imports = len(func_imports)
    removed = [i for i, imp in enumerate(func_imports) if imp.module in drop_modules]
    if not removed and not rename and not drop_exports and not data:
        return wasm
    func_payload = _section(sections, _FUNC) or b"\x00"
    n_defined, _ = read_uleb(func_payload, 0)
    remap: list[int] = []
    kept = 0
    stub_slot = {old: n_imports - len(removed) + n_defined + k for k, old in enumerate(removed)}
    removed_set = set(removed)
    for old in range(n_imports):
        if old in removed_set:
            remap.append(stub_slot[old])
        else:
            remap.append(kept)
            kept += 1
    shift = len(removed)

    def new_index(old: int) -> int:
        return remap[old] if old < n_imports else old - shift

    out: list[tuple[int, bytes]] = []
    for sid, payload in sections:
        if sid == _IMPORT:
            keep = [i for i in imps if not (i.kind == 0 and i.module in drop_modules)]
            payload = write_uleb(len(keep)) + b"".join(i.raw for i in keep)
        elif sid == _FUNC and removed:
            _, pos = read_uleb(payload, 0)
            extra = b"".join(write_uleb(func_imports[i].type_index or 0) for i in removed)
            payload = write_uleb(n_defined + len(removed)) + payload[pos:] + extra
        elif sid == _EXPORT:
            payload = _rewrite_exports(payload, new_index, rename, drop_exports)
        elif sid == _START and removed:
            payload = write_uleb(new_index(read_uleb(payload, 0)[0]))
        elif sid == _ELEM and removed:
            payload = _rewrite_elems(payload, new_index)
        elif sid == _CODE and removed:
            payload = _rewrite_code(payload, sites, new_index, len(removed))
        elif sid == _DATA and replace_data:
            payload = _append_data(b"\x00", data)
        elif sid == _DATA and data:
            payload = _append_data(payload, data)
        elif sid == _DATACOUNT and (data or replace_data):
            payload = write_uleb((0 if replace_data else read_uleb(payload, 0)[0]) + len(data))
        elif sid == _MEMORY and memory_pages is not None:
            payload = _grow_memory(payload, memory_pages)
        elif sid == 0 and _name(payload, 0)[0] == "name" and removed:
            continue  # function names would point at the wrong functions
        out.append((sid, payload))
    return _join(out)


def _rewrite_exports(payload: bytes, new_index: Callable[[int], int], rename: Mapping[str, str],
                     drop: set[str]) -> bytes:
    count, pos = read_uleb(payload, 0)
    entries = []
    for _ in range(count):
        name, pos = _name(payload, pos)
        kind = payload[pos]
        index, pos = read_uleb(payload, pos + 1)
        if name in drop:
            continue
        if kind == 0:
            index = new_index(index)
        encoded = rename.get(name, name).encode("utf-8")
        entries.append(write_uleb(len(encoded)) + encoded + bytes([kind]) + write_uleb(index))
    return write_uleb(len(entries)) + b"".join(entries)


def _rewrite_elems(payload: bytes, new_index: Callable[[int], int]) -> bytes:
    count, pos = read_uleb(payload, 0)
    out = bytearray(write_uleb(count))
    for _ in range(count):
        flags, pos = read_uleb(payload, pos)
        if flags != 0:
            raise WasmFormatError(f"element segment flags {flags} are not supported")
        expr_end = _expr_end(payload, pos)
        n, next_pos = read_uleb(payload, expr_end)
        out += write_uleb(0) + payload[pos:expr_end] + write_uleb(n)
        pos = next_pos
        for _ in range(n):
            idx, pos = read_uleb(payload, pos)
            out += write_uleb(new_index(idx))
    return bytes(out)


def _expr_end(payload: bytes, pos: int) -> int:
    # the offset expression of an active segment: i32.const N end (or global.get G end)
    pos = _skip_leb(payload, pos + 1)
    if payload[pos] != 0x0B:
        raise WasmFormatError("unsupported segment offset expression")
    return pos + 1


def _rewrite_code(payload: bytes, sites: Sequence[tuple[int, int, int]],
                  new_index: Callable[[int], int], n_stubs: int) -> bytes:
    count, pos = read_uleb(payload, 0)
    by_body: dict[int, list[tuple[int, int]]] = {}
    for body_index, offset, width in sites:
        by_body.setdefault(body_index, []).append((offset, width))
    out = bytearray(write_uleb(count + n_stubs))
    for body_index in range(count):
        size, pos = read_uleb(payload, pos)
        body = payload[pos:pos + size]
        pos += size
        patches = by_body.get(body_index)
        if patches:
            chunks, last = [], 0
            for offset, width in patches:
                old, _ = read_uleb(body, offset)
                chunks.append(body[last:offset])
                chunks.append(_uleb_width(new_index(old), width))
                last = offset + width
            chunks.append(body[last:])
            body = b"".join(chunks)
        out += write_uleb(len(body)) + body
    stub = b"\x00\x00\x0b"  # no locals; unreachable; end
    for _ in range(n_stubs):
        out += write_uleb(len(stub)) + stub
    return bytes(out)


def _append_data(payload: bytes, data: Sequence[tuple[int, bytes]]) -> bytes:
    count, pos = read_uleb(payload, 0)
    out = bytearray(write_uleb(count + len(data)) + payload[pos:])
    for address, blob in data:
        out += b"\x00\x41" + write_sleb(address) + b"\x0b" + write_uleb(len(blob)) + blob
    return bytes(out)


def _grow_memory(payload: bytes, pages: int) -> bytes:
    count, pos = read_uleb(payload, 0)
    if count != 1:
        raise WasmFormatError("expected exactly one memory")
    flags = payload[pos]
    minimum, after = read_uleb(payload, pos + 1)
    rest = payload[after:]
    if flags & 1:
        maximum, _ = read_uleb(payload, after)
        if pages > maximum:
            raise WasmFormatError(f"snapshot needs {pages} pages, the memory allows {maximum}")
    return write_uleb(1) + bytes([flags]) + write_uleb(max(minimum, pages)) + rest


def mutable_globals(wasm: bytes) -> int:
    """How many mutable globals the module defines (a snapshot cannot capture their values)."""
    payload = _section(_split(wasm), _GLOBAL)
    if payload is None:
        return 0
    count, pos = read_uleb(payload, 0)
    mutable = 0
    for _ in range(count):
        mutable += payload[pos + 1] & 1
        pos += 2
        while payload[pos] != 0x0B:  # constant expression: skip to its end
            op = payload[pos]
            pos = _skip_leb(payload, pos + 1) if op in (0x41, 0x42, 0x23, 0xD2) else pos + 1 + (
                4 if op == 0x43 else 8 if op == 0x44 else 0)
        pos += 1
    return mutable


def nonzero_segments(memory: bytes, *, gap: int = 32) -> list[tuple[int, bytes]]:
    """``(address, bytes)`` covering every non-zero byte; zero runs shorter than ``gap`` stay
    inside a segment (each segment costs a few bytes of header)."""
    pattern = re.compile(rb"[^\x00]+(?:\x00{1,%d}[^\x00]+)*" % (gap - 1))
    return [(m.start(), m.group()) for m in pattern.finditer(memory)]

"""A core module's imports and exports read from its bytes, as wasmtime would tell them once
it has compiled the module: what ``omnicore inspect`` and ``omnicore workflows validate
--app`` describe without compiling anything (a Cranelift compile of the demo's plugins took
41 s and 73 CPU-s on a cold cache; reading them takes milliseconds, issue 63).

The types are wasmtime's own (``FuncType``, ``MemoryType``, ``TableType``, ``GlobalType``),
so :meth:`PluginModule._from_compiled <omnicore.sandbox.module.PluginModule>` reads a
:class:`Shape` as it reads a compiled ``wasmtime.Module``.
"""

from __future__ import annotations

from dataclasses import dataclass

import wasmtime

from omnicore.sandbox import wasmbin

__all__ = ["Shape", "read"]

_VALTYPES = {0x7F: wasmtime.ValType.i32, 0x7E: wasmtime.ValType.i64,
             0x7D: wasmtime.ValType.f32, 0x7C: wasmtime.ValType.f64,
             0x70: wasmtime.ValType.funcref, 0x6F: wasmtime.ValType.externref}


@dataclass(frozen=True)
class Item:
    """One import (``module`` set) or export, as wasmtime's ImportType/ExportType."""

    module: str
    name: str
    type: object


@dataclass(frozen=True)
class Shape:
    """What ``wasmtime.Module.imports`` and ``.exports`` would be, in the same order."""

    imports: tuple[Item, ...]
    exports: tuple[Item, ...]


def _valtype(kind: int) -> wasmtime.ValType:
    make = _VALTYPES.get(kind)
    if make is None:  # v128 or a GC reference: refused before (indescribable_signature)
        raise wasmbin.WasmFormatError(f"value type {kind:#x} in an import or export")
    return make()


def _functype(sig: tuple[bytes, bytes] | None) -> object:
    if sig is None:
        raise wasmbin.WasmFormatError("a function of a type that is not a function type")
    return wasmtime.FuncType([_valtype(k) for k in sig[0]], [_valtype(k) for k in sig[1]])


def _limits(wasm: bytes, pos: int) -> tuple[wasmtime.Limits, int]:
    flags = wasm[pos]
    low, pos = wasmbin.read_uleb(wasm, pos + 1)
    high = None
    if flags & 1:
        high, pos = wasmbin.read_uleb(wasm, pos)
    return wasmtime.Limits(low, high), pos


def read(wasm: bytes) -> Shape:
    """The imports and exports of the core module ``wasm``. Raises WasmFormatError for
    sections too malformed to read, or a type wasmtime's C API cannot describe."""
    found = wasmbin._signatures(wasm, functions=True)
    imports: list[Item] = []
    exports: list[Item] = []
    memories: list[object] = []
    funcs = tables = globals_ = 0
    try:
        for sid, start, _end in wasmbin.sections(wasm):
            if sid not in (2, 5, 7):
                continue
            count, pos = wasmbin.read_uleb(wasm, start)
            for _ in range(count):
                if sid == 5:
                    limits, pos = _limits(wasm, pos)
                    memories.append(wasmtime.MemoryType(limits))
                    continue
                module = ""
                if sid == 2:
                    module, pos = wasmbin._skip_name(wasm, pos)
                name, pos = wasmbin._skip_name(wasm, pos)
                kind = wasm[pos]
                pos += 1
                if sid == 7:
                    idx, pos = wasmbin.read_uleb(wasm, pos)
                    exports.append(Item("", name, _export_type(
                        found, kind, idx, memories)))
                    continue
                typ: object
                if kind == 0:
                    _, pos = wasmbin.read_uleb(wasm, pos)
                    typ = _functype(wasmbin._function_type(found, funcs))
                    funcs += 1
                elif kind == 1:
                    vt, pos = wasmbin._valtype(wasm, pos)
                    limits, pos = _limits(wasm, pos)
                    typ = wasmtime.TableType(_valtype(vt), limits)
                    tables += 1
                elif kind == 2:
                    limits, pos = _limits(wasm, pos)
                    typ = wasmtime.MemoryType(limits)
                    memories.append(typ)
                elif kind == 3:
                    vt, pos = wasmbin._valtype(wasm, pos)
                    typ = wasmtime.GlobalType(_valtype(vt), bool(wasm[pos]))
                    pos += 1
                    globals_ += 1
                else:  # a tag: wasmtime's C API tells it as neither kind
                    _, pos = wasmbin.read_uleb(wasm, pos + 1)
                    typ = None
                imports.append(Item(module, name, typ))
    except IndexError:
        raise wasmbin.WasmFormatError("a section ends in the middle of an entry "
                                      "(truncated?)") from None
    return Shape(tuple(imports), tuple(exports))


def _export_type(found: wasmbin._Signatures, kind: int, idx: int,
                 memories: list[object]) -> object:
    if kind == 0:
        return _functype(wasmbin._function_type(found, idx))
    if kind == 2:
        return memories[idx] if idx < len(memories) else None
    if kind == 1 and idx < len(found.table_types):
        return wasmtime.TableType(_valtype(found.table_types[idx][0]), wasmtime.Limits(0, None))
    if kind == 3 and idx < len(found.global_types):
        return wasmtime.GlobalType(_valtype(found.global_types[idx][0]), False)
    return None

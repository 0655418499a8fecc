"""Spans into OTLP's protobuf bytes (``ExportTraceServiceRequest``, opentelemetry-proto's
``trace.proto``), written directly: the wire format of the few messages a span needs, with
the resource and scope encoded once and each ``(key, value)`` attribute of a string value
once (a plugin's name, a route, a connector recur on every span). Standard library only.

The SDK's encoder builds a protobuf message tree per span, then serializes it: about 40 µs a
span, on the export thread but in the host's process and under its GIL. This writes the same
bytes in a few (tests/telemetry/test_otlp.py decodes both and compares them).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from omnicore.telemetry._spans import ERROR, Record

__all__ = ["attributes", "request", "scope"]

_SMALL = [bytes((i,)) for i in range(128)]
_Q = struct.Struct("<Q").pack
_D = struct.Struct("<d").pack
#: OTLP's SpanFlags: the is-remote bit says something (0x100), and the parent is remote (0x200).
_HAS_REMOTE, _IS_REMOTE = 0x100, 0x200
_KINDS = {k: b"\x30" + _SMALL[k] for k in range(1, 6)}
#: A span's start and end times: fields 7 and 8, fixed64.
_TIMES = struct.Struct("<BQBQ").pack
#: Span.flags (field 16, fixed32) by the trace flags and the remote bit.
_FLAGS = {f | r: b"\x85\x01" + struct.pack("<I", _HAS_REMOTE | f | r)
          for f in range(256) for r in (0, _IS_REMOTE)}
_NAMES: dict[str, bytes] = {}
#: Encoded ``(tag, key, value)`` attributes of a string, integer or boolean value, bounded
#: (cleared when full): most recur, span after span.
_CACHE: dict[tuple[bytes, str, Any], tuple[type, bytes]] = {}
_CACHE_MAX = 4096
#: A span's ``shared`` attributes, encoded, by the mapping's identity (the mapping kept, so
#: its id is not reused while cached): many spans hold the one mapping.
_SHARED: dict[int, tuple[Mapping[str, Any], bytes]] = {}


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    n = len(payload)
    return tag + (_SMALL[n] if n < 0x80 else _varint(n)) + payload


def _text(value: str) -> bytes:
    return value.encode("utf-8", "replace")


def _value(value: Any) -> bytes:
    """An ``AnyValue``'s fields."""
    if value.__class__ is str:
        return _field(b"\x0a", _text(value))
    if value is True or value is False:
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFF_FFFF_FFFF_FFFF)
    if isinstance(value, float):
        return b"\x21" + _D(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, str):
        return _field(b"\x0a", _text(str(value)))
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _value(v)) for v in value))
    return _field(b"\x0a", _text(str(value)))


def _attribute(tag: bytes, key: str, value: Any) -> bytes:
    """One ``KeyValue`` as field ``tag`` of its message."""
    cls = value.__class__
    if cls is str or cls is int or cls is bool:
        found = _CACHE.get((tag, key, value))
        if found is None or found[0] is not cls:  # (1 == True: told apart by class)
            found = (cls, _field(tag, _field(b"\x0a", _text(key))
                                 + _field(b"\x12", _value(value))))
            if len(_CACHE) >= _CACHE_MAX:
                _CACHE.clear()
            _CACHE[tag, key, value] = found
        return found[1]
    return _field(tag, _field(b"\x0a", _text(key)) + _field(b"\x12", _value(value)))


def attributes(tag: bytes, items: Mapping[str, Any]) -> bytes:
    """``items`` as the repeated ``KeyValue`` field ``tag`` (None values left out)."""
    return b"".join(_attribute(tag, k, v) for k, v in items.items() if v is not None)


def scope(resource: Mapping[str, Any], name: str, version: str | None) -> tuple[bytes, bytes]:
    """The encoded ``Resource`` (as ResourceSpans' field 1) and ``InstrumentationScope`` (as
    ScopeSpans' field 1): the same for every span of the process."""
    scope_fields = _field(b"\x0a", _text(name))
    if version:
        scope_fields += _field(b"\x12", _text(version))
    return _field(b"\x0a", attributes(b"\x0a", resource)), _field(b"\x0a", scope_fields)


#: A span's ids as its first fields (trace_id 1, span_id 2: bytes, big-endian), and a
#: parent's (field 4), packed at once.
_IDS = struct.Struct(">BBQQBBQ").pack
_PARENT = struct.Struct(">BBQ").pack
_OK = b"\x7a\x00"


def _span(r: Record) -> bytes:
    (trace_id, span_id, parent_id, span_name, kind, start_ns, end_ns, own, shared, status,
     description, flags, remote, state) = r
    name = _NAMES.get(span_name)
    if name is None:
        if len(_NAMES) >= _CACHE_MAX:
            _NAMES.clear()
        name = _NAMES[span_name] = _field(b"\x2a", _text(span_name))
    parts = [_IDS(0x0A, 0x10, trace_id >> 64, trace_id & 0xFFFF_FFFF_FFFF_FFFF, 0x12, 0x08,
                  span_id)]
    if state:
        parts.append(_field(b"\x1a", _text(state)))
    if parent_id:
        parts.append(_PARENT(0x22, 0x08, parent_id))
    parts += (name, _KINDS[kind], _TIMES(0x39, start_ns, 0x41, end_ns))
    if shared is not None:
        found = _SHARED.get(id(shared))
        if found is None or found[0] is not shared:
            if len(_SHARED) >= _CACHE_MAX:
                _SHARED.clear()
            found = _SHARED[id(shared)] = (shared, attributes(b"\x4a", shared))
        parts.append(found[1])
    cached = _CACHE.get
    for key, value in own.items():
        # (_attribute's cache, looked up here: a call a span's attribute saved)
        cls = value.__class__
        if cls is str or cls is int or cls is bool:
            hit = cached((b"\x4a", key, value))
            if hit is not None and hit[0] is cls:
                parts.append(hit[1])
                continue
        if value is not None:
            parts.append(_attribute(b"\x4a", key, value))
    if status == ERROR:
        message = _field(b"\x12", _text(description)) if description else b""
        parts.append(_field(b"\x7a", message + b"\x18" + _SMALL[ERROR]))
    else:
        parts.append(_OK)
    parts.append(_FLAGS[flags & 0xFF | (_IS_REMOTE if remote else 0)])
    body = b"".join(parts)
    n = len(body)
    return b"\x12" + (_SMALL[n] if n < 0x80 else _varint(n)) + body


def request(resource: bytes, scope_bytes: bytes, spans: Iterable[Record]) -> bytes:
    """An ``ExportTraceServiceRequest`` of ``spans`` (ended spans' records), all of one
    resource and scope."""
    scoped = _field(b"\x12", scope_bytes + b"".join(_span(s) for s in spans))
    return _field(b"\x0a", resource + scoped)

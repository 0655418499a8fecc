"""The ``omnicore.manifest`` custom section every kind of plugin carries (abi.md §5): read
it from the bytes and check its fields, before anything is compiled."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from omnicore.core import jsoncodec
from omnicore.errors import InvalidModule
from omnicore.sandbox import configschema, wasmbin

__all__ = ["MANIFEST_SECTION", "MAX_MANIFEST_BYTES", "MAX_MANIFEST_DEPTH", "check_manifest",
           "parse_manifest"]

MANIFEST_SECTION = "omnicore.manifest"
#: A manifest is metadata: far below this. Bounds what parsing a dropped-in file costs.
MAX_MANIFEST_BYTES = 256 * 1024
MAX_MANIFEST_DEPTH = 32
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def parse_manifest(wasm: bytes, fallback_name: str | None) -> dict[str, Any]:
    """The manifest section of ``wasm`` as a dict (``{}`` without one); InvalidModule if it
    is not one JSON object within the bounds above."""
    # Every refusal names the plugin: `omnicore call`/`inspect` print the message alone.
    who = f"plugin {fallback_name!r}: " if fallback_name else "module: "
    section = f"the '{MANIFEST_SECTION}' section"
    try:
        payloads = wasmbin.custom_sections(wasm, MANIFEST_SECTION)
    except wasmbin.WasmFormatError as exc:
        raise InvalidModule(f"{who}{exc}", plugin=fallback_name) from None
    if len(payloads) > 1:
        raise InvalidModule(f"{who}{len(payloads)} '{MANIFEST_SECTION}' sections; at most one "
                            "allowed", plugin=fallback_name)
    if not payloads:
        return {}
    if len(payloads[0]) > MAX_MANIFEST_BYTES:
        raise InvalidModule(f"{who}{section} is {len(payloads[0])} bytes; at most "
                            f"{MAX_MANIFEST_BYTES} allowed", plugin=fallback_name)
    try:
        text = payloads[0].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidModule(f"{who}{section} is not UTF-8 JSON: {exc}",
                            plugin=fallback_name) from None
    # Measured on the text, before parsing: json's recursive parser would run 100,000 levels
    # deep into a RecursionError on a hostile manifest; this refuses it in one linear scan.
    if _text_depth(text) > MAX_MANIFEST_DEPTH:
        raise InvalidModule(f"{who}{section} is nested too deeply (at most "
                            f"{MAX_MANIFEST_DEPTH} levels)", plugin=fallback_name)
    try:
        manifest = jsoncodec.loads(text)
    except ValueError as exc:  # also over-long integers
        raise InvalidModule(f"{who}{section} is not UTF-8 JSON: {str(exc)[:200]}",
                            plugin=fallback_name) from None
    if not isinstance(manifest, dict):
        raise InvalidModule(f"{who}{section} must be a JSON object", plugin=fallback_name)
    return manifest


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def _text_depth(text: str) -> int:
    """How deeply brackets nest in JSON ``text`` (strings skipped), without recursion."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if m.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def check_manifest(m: Mapping[str, Any], plugin: str | None) -> None:
    """InvalidModule naming the first field of ``m`` of the wrong shape."""
    def bad(field: str, want: str) -> InvalidModule:
        return InvalidModule(f"manifest field '{field}' must be {want}, got "
                             f"{repr(m[field])[:200]}", plugin=plugin)

    for key in ("name", "version", "description"):
        if key in m and not isinstance(m[key], str):
            raise bad(key, "a string")
    if "name" in m and not _NAME_RE.fullmatch(m["name"]):
        raise bad("name", "lowercase [a-z0-9][a-z0-9_-]{0,62}")
    if "handlers" in m:
        hs = m["handlers"]
        if not isinstance(hs, list) or not all(
                isinstance(h, str) or (isinstance(h, dict) and isinstance(h.get("name"), str))
                for h in hs):
            raise bad("handlers", "a list of names or {\"name\": ...} objects")
    if "config" in m and not isinstance(m["config"], dict):
        raise bad("config", "a JSON Schema object")
    if m.get("config"):
        configschema.check(m["config"], plugin)
    for key in ("subscriptions", "schedules"):
        if key in m and not (isinstance(m[key], list)
                             and all(isinstance(x, dict) for x in m[key])):
            raise bad(key, "a list of objects")
    if "sdk" in m and not isinstance(m["sdk"], dict):
        raise bad("sdk", "an object")

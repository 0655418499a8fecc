"""The ``omnicore.manifest`` section: read from any plugin's bytes, its fields checked."""

from __future__ import annotations

import json
from typing import Any

import pytest
import wasmtime

from omnicore.errors import InvalidModule
from omnicore.sandbox import wasmbin
from omnicore.sandbox.manifest import (
    MANIFEST_SECTION,
    MAX_MANIFEST_BYTES,
    check_manifest,
    parse_manifest,
)

EMPTY = wasmtime.wat2wasm("(module)")


def with_section(payload: bytes) -> bytes:
    return wasmbin.set_custom_section(EMPTY, MANIFEST_SECTION, payload)


def test_no_section_is_an_empty_manifest() -> None:
    assert parse_manifest(EMPTY, "m") == {}


def test_the_section_is_read_as_a_json_object() -> None:
    manifest = {"name": "echo", "handlers": ["alpha", {"name": "beta"}], "config": {}}
    assert parse_manifest(with_section(json.dumps(manifest).encode()), "m") == manifest
    check_manifest(manifest, "m")


@pytest.mark.parametrize(("payload", "match"), [
    (b"{not json", "not UTF-8 JSON"),
    (b"\xff\xfe", "not UTF-8 JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"[" * 40 + b"]" * 40, "nested too deeply"),
    (b'{"pad": "' + b"x" * MAX_MANIFEST_BYTES + b'"}', f"at most {MAX_MANIFEST_BYTES}"),
])
def test_a_section_that_is_not_one_json_object_is_refused(payload: bytes, match: str) -> None:
    with pytest.raises(InvalidModule, match=match) as caught:
        parse_manifest(with_section(payload), "m")
    assert str(caught.value).startswith("plugin 'm': ") and caught.value.plugin == "m"


def test_two_sections_are_refused() -> None:
    body = b"\x11omnicore.manifest{}"
    twice = with_section(b"{}") + b"\x00" + bytes([len(body)]) + body
    with pytest.raises(InvalidModule, match=r"2 'omnicore\.manifest' sections"):
        parse_manifest(twice, None)


@pytest.mark.parametrize(("manifest", "match"), [
    ({"name": "Bad Name"}, "manifest field 'name' must be lowercase"),
    ({"name": 5}, "'name' must be a string"),
    ({"version": 1}, "'version' must be a string"),
    ({"handlers": "alpha"}, "'handlers' must be a list"),
    ({"handlers": [{"nom": "x"}]}, "'handlers' must be a list"),
    ({"config": "nope"}, "'config' must be a JSON Schema object"),
    ({"config": {"$ref": "#"}}, "refers to itself"),
    ({"schedules": {"a": 1}}, "'schedules' must be a list of objects"),
    ({"subscriptions": ["x"]}, "'subscriptions' must be a list of objects"),
    ({"sdk": "rust"}, "'sdk' must be an object"),
])
def test_fields_of_the_wrong_shape_are_refused(manifest: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidModule, match=match):
        check_manifest(manifest, "m")

"""A TypeScript plugin typed with the SDK's own types builds: ``Handler`` and ``Output`` hold
``JsonValue``, which refers to itself, and the build's type reader (toolchains/js/describe.cjs)
stops where a type recurs instead of overflowing its stack. A recursive reference is a schema
without constraints there (any JSON is exactly what a ``JsonValue`` is)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omnicore.sandbox import SandboxEngine
from omnicore.sandbox.wasmbin import custom_sections
from omnicore.toolchains import build, js
from tests.sdk.hosting import runtime

pytestmark = pytest.mark.skipif(js.check() is not None, reason=f"JS runtime: {js.check()}")

PLUGIN = """
import { json, type Handler, type Json, type JsonValue, type Output } from "omnicore";

/** Answers what it was given. */
export const echo: Handler = (input: string) => input;

/** Answers a JSON value. */
export function value(_input: string): Output {
  return { a: [1, "x", null] };
}

interface Node {
  /** The node's label. */
  label: string;
  children: Node[];
  data: JsonValue;
}

/** Counts a tree's nodes. */
export function count(input: Json<Node>): { nodes: number; payload: JsonValue } {
  const walk = (n: Node): number => 1 + n.children.reduce((s, c) => s + walk(c), 0);
  const root = json(input);
  return { nodes: walk(root), payload: root.data };
}
"""


def test_handlers_typed_with_recursive_types_build_and_are_described(
        tmp_path: Path, engine: SandboxEngine) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "plugin.ts").write_text(PLUGIN)
    wasm = build(tmp_path / "src", tmp_path / "out", name="recursive-ts")

    manifest = json.loads(custom_sections(wasm.read_bytes(), "omnicore.manifest")[0])
    handlers = {h["name"] if isinstance(h, dict) else h: h for h in manifest["handlers"]}
    assert set(handlers) == {"echo", "value", "count"}
    assert handlers["echo"]["description"] == "Answers what it was given."
    node = handlers["count"]["input_schema"]
    assert node["type"] == "object"
    assert node["required"] == ["label", "children", "data"]
    assert node["properties"]["label"] == {"type": "string", "description": "The node's label."}
    # Node below itself, and JsonValue inside itself: anything from there down.
    assert node["properties"]["children"] == {"type": "array", "items": {}}
    data = node["properties"]["data"]
    assert {"type": "array", "items": {}} in data["anyOf"]
    assert {"type": "object", "properties": {}, "additionalProperties": {}} in data["anyOf"]
    output = handlers["count"]["output_schema"]
    assert output["properties"]["nodes"] == {"type": "number"}
    assert output["properties"]["payload"] == data

    with runtime(engine, wasm, grants=[]) as rt:
        assert rt.call("echo", b"hi") == b"hi"
        assert json.loads(rt.call("value", b"")) == {"a": [1, "x", None]}
        tree = {"label": "a", "data": {"k": [1]},
                "children": [{"label": "b", "children": [], "data": None}]}
        assert json.loads(rt.call("count", json.dumps(tree).encode())) == \
            {"nodes": 2, "payload": {"k": [1]}}

"""The example plugins, built by the real toolchains, reach an MCP client as typed and
described tools: the description of each handler (not its plugin's), input and output schemas
derived from the handler's types (Rust, Go, TypeScript, Python) or written in omnicore.toml
(JavaScript, C), and annotations from the grants and the manifest.

Slow: builds six examples once (cached under build/test-plugins, like the other real-plugin
tests).
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import anyio
import mcp_types as types
import pytest

from tests.mcp.mcp_fixtures import Host, http_session

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "test-plugins"
#: plugin -> (source folder, language module, grants)
EXAMPLES = {
    "notes-rust": ("notes/rust", "rust", ["memory", "vectors"]),
    "counter-go": ("counter/go", "go", ["config", "kv"]),
    "counter-ts": ("counter/ts", "js", ["config", "kv"]),
    "counter-python": ("counter/python", "python", ["config", "kv"]),
    "greeter-c": ("greeter/c", "c", ["config"]),
    "greeter-js": ("greeter/js", "js", ["config"]),
}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, module_cache: Path) -> Iterator[Host]:
    from omnicore.toolchains import build

    root = tmp_path_factory.mktemp("typed") / "app"
    (root / "plugins").mkdir(parents=True)
    for name, (folder, lang, grants) in EXAMPLES.items():
        missing = importlib.import_module(f"omnicore.toolchains.{lang}").check()
        if missing:  # a machine without that toolchain (under CI a skip fails: conftest.py)
            pytest.skip(f"cannot build {folder}: {missing}")
        wasm = build(ROOT / "plugins" / folder, OUT)
        (root / "plugins" / f"{name}.toml").write_text(f"grants = {grants!r}\n")
        shutil.copy(wasm, root / "plugins" / f"{name}.wasm")
    # The app loads its plugins folder as it starts, compiling into the run's module cache
    # (the Python counter takes seconds; the demo app test loads the same bytes).
    h = Host(root, ["*/*"], sandbox={"limits": {"timeout_ms": 500},
                                     "cache_dir": str(module_cache)})
    try:
        yield h
    finally:
        h.stop()


def listed(host: Host) -> dict[str, types.Tool]:
    async def main() -> dict[str, types.Tool]:
        async with http_session(host.url, host.admin_token) as session:
            return {t.name: t for t in (await session.list_tools()).tools}
    return anyio.run(main)


def test_every_example_handler_is_a_described_typed_tool(host: Host) -> None:
    tools = {name: tool for name, tool in listed(host).items()
             if name.partition(".")[0] in EXAMPLES}
    assert len(tools) == 5 + 2 * 3 + 2  # notes: 5 handlers, each counter 2, each greeter 1
    plugin_descriptions = {host.app.plugins.get(p).description for p in EXAMPLES}
    for name, tool in tools.items():
        assert tool.description and tool.description not in plugin_descriptions, name
    notes = {n.partition(".")[2]: t for n, t in tools.items() if n.startswith("notes-rust.")}
    assert len({t.description for t in notes.values()}) == 5  # each its own words
    # From the Rust types: serde structs through omnicore::json_schema!.
    # Open: a field the handler does not know is ignored (specs/abi.md §2.7).
    assert notes["add"].input_schema == {
        "type": "object", "required": ["text"],
        "properties": {"text": {"type": "string"},
                       "tag": {"anyOf": [{"type": "string"}, {"type": "null"}]}}}
    assert notes["find"].input_schema["required"] == ["query"]
    assert notes["forget"].annotations is not None
    assert notes["forget"].annotations.destructive_hint is True
    assert notes["forget"].annotations.read_only_hint is False
    assert notes["forget"].annotations.open_world_hint is False
    assert notes["add"].output_schema is not None
    assert notes["add"].output_schema["properties"] == {"id": {"type": "integer"}}
    by = {"go": {"anyOf": [{"type": "integer"}, {"type": "null"}],
                 "description": "how much to add (default 1)"},
          "ts": {"type": "number", "description": "How much to add (default 1, an integer)."},
          "python": {"type": "integer", "description": "how much to add (default 1)"}}
    for lang, schema in by.items():
        count, reset = tools[f"counter-{lang}.count"], tools[f"counter-{lang}.reset"]
        assert count.input_schema["properties"] == {"by": schema}, lang
        assert count.output_schema is not None, lang
        assert count.output_schema["properties"]["count"]["type"] in ("integer", "number")
        assert reset.annotations is not None and reset.annotations.destructive_hint is True
        assert reset.title == "Reset the counter", lang
    for lang in ("c", "js"):  # no types to read: described in omnicore.toml
        greet = tools[f"greeter-{lang}.greet"]
        assert greet.input_schema["properties"]["name"]["type"] == "string"
        assert greet.output_schema == {"type": "object", "required": ["message"],
                                       "properties": {"message": {"type": "string"}}}
        assert greet.annotations is not None and greet.annotations.read_only_hint is True


def test_calls_answer_structured_content_that_matches_the_output_schema(host: Host) -> None:
    async def main() -> None:
        async with http_session(host.url, host.admin_token) as session:
            added = await session.call_tool("notes-rust.add", {"text": "a recipe for bread"})
            assert not added.is_error and isinstance(added.structured_content, dict)
            assert isinstance(added.structured_content["id"], int)
            for lang in ("go", "ts", "python"):
                counted = await session.call_tool(f"counter-{lang}.count", {"by": 2})
                assert not counted.is_error and counted.structured_content == {"count": 2}, lang
            greeted = await session.call_tool("greeter-c.greet", {"name": "Ada"})
            assert greeted.structured_content == {"message": "Hello, Ada!"}

    anyio.run(main)

"""Typed tools: output schemas, the check of a call's structured output against them, and
the annotations an agent reads before calling (from the grants and the manifest)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.mcp.tools import Exposure, tools_of
from omnicore.plugins.info import PluginInfo
from tests.mcp.mcp_fixtures import SCHEMA, Host, http_session, text_of, wasm

OUT = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
MANIFEST: dict[str, Any] = {
    "abi": 1, "name": "typed", "version": "1.0.0", "description": "typed tools",
    "handlers": [{"name": "echo", "title": "Echo", "description": "Echo the arguments back",
                  "input_schema": SCHEMA, "output_schema": OUT},
                 {"name": "plain", "description": "Say hello", "destructive": True,
                  "output_schema": OUT}]}


def info(granted: dict[str, dict[str, Any]], destructive: bool = True) -> PluginInfo:
    return PluginInfo(name="p", state="loaded", source=None, sha256="0" * 64,
                      handlers=("h",), granted=granted,
                      manifest={"handlers": [{"name": "h", "destructive": destructive}]})


@pytest.mark.parametrize(("granted", "read_only", "open_world"), [
    ({}, True, False),
    ({"log": {}, "config": {}, "secrets": {}}, True, False),
    ({"fs": {"dirs": [{"path": "/srv", "guest": "/data"}]}}, True, False),
    ({"fs": {"dirs": [{"path": "/srv", "guest": "/out", "write": True}]}}, False, False),
    ({"kv": {}}, False, False),
    ({"http": {"connectors": ["github"]}}, False, True),
])
def test_annotations_follow_the_grants(granted: dict[str, dict[str, Any]], read_only: bool,
                                       open_world: bool) -> None:
    tool = tools_of([info(granted)], Exposure(["p/*"]))["p.h"]
    assert (tool.read_only, tool.open_world) == (read_only, open_world)
    # A plugin that can change nothing destroys nothing, whatever its manifest says.
    assert tool.destructive is (not read_only)


def test_an_output_schema_that_is_no_object_schema_is_not_served() -> None:
    bad = PluginInfo(name="p", state="loaded", source=None, sha256="1" * 64, handlers=("h",),
                     manifest={"handlers": [{"name": "h", "output_schema": {"type": "array"}}]})
    assert tools_of([bad], Exposure(["p/*"])) == {}


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    (tmp_path / "app" / "plugins").mkdir(parents=True)
    (tmp_path / "app" / "plugins" / "typed.wasm").write_bytes(wasm("tools", MANIFEST))
    h = Host(tmp_path / "app", ["typed/*"])  # the app loads its plugins folder as it starts
    try:
        yield h
    finally:
        h.stop()


def test_tools_carry_output_schemas_and_annotations_to_the_client(host: Host) -> None:
    import anyio

    async def main() -> None:
        async with http_session(host.url, host.admin_token) as session:
            listed = {t.name: t for t in (await session.list_tools()).tools}
            echo, plain = listed["typed.echo"], listed["typed.plain"]
            assert echo.title == "Echo" and echo.description == "Echo the arguments back"
            assert echo.input_schema == SCHEMA and echo.output_schema == OUT
            assert echo.annotations is not None and plain.annotations is not None
            assert (echo.annotations.read_only_hint, echo.annotations.open_world_hint) == \
                (True, False)
            # Said outright: MCP's defaults would call every tool destructive and open-world.
            assert echo.annotations.destructive_hint is None  # read-only: nothing to destroy

            good = await session.call_tool("typed.echo", {"text": "hi"})
            assert not good.is_error and good.structured_content == {"text": "hi"}
            # The echo returns its arguments: a number where the schema says a string.
            bad = await session.call_tool("typed.echo", {"text": 5})
            assert bad.is_error
            assert text_of(bad) == ("handler 'echo' of plugin 'typed' returned output that does "
                                    "not match its output_schema at text: 5 is not of type "
                                    "'string'")
            # "hello" is no JSON object, and its schema says it returns one.
            plain_result = await session.call_tool("typed.plain", {})
            assert plain_result.is_error and "returned no JSON object" in text_of(plain_result)
            again = await session.call_tool("typed.echo", {"text": "still serving"})
            assert again.structured_content == {"text": "still serving"}

    anyio.run(main)

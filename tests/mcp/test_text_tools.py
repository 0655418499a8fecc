"""Tools whose handler reads text, not JSON (``"input": "text"``): markdown-js's ``render`` and
logparse-go's ``parse`` as agents see them through the MCP SDK's own client — one string
argument, ``text``, which the host hands the handler as it is (not ``{"text": ...}`` as JSON,
which markdown-js rendered as ``<p>{&quot;text&quot;…</p>``); and the build writing
``input = "text"`` from omnicore.toml into the manifest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import wasmtime

from omnicore.errors import BuildError
from omnicore.sandbox.wasmbin import custom_sections, set_custom_section
from omnicore.toolchains.manifest import SECTION, embed_manifest, read_plugin_meta
from tests.mcp.mcp_fixtures import Host, http_session, text_of

ROOT = Path(__file__).resolve().parents[2]
BUILT = ROOT / "build" / "plugins"
#: What an agent is told: an object of one string, the input itself.
TEXT_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["text"],
               "properties": {"text": {"type": "string", "description": "The whole input, "
                                       "given to the handler as it is (not JSON)."}}}
LOG = ('203.0.113.7 - - [10/Oct/2025:13:55:36 +0000] "GET /index.html HTTP/1.1" 200 2326 '
       '"-" "curl/8.5"\n')


def as_built_now(name: str) -> bytes:
    """``build/plugins/NAME.wasm`` with the handler objects its omnicore.toml gives today
    (``input = "text"``), as ``omnicore build`` writes them: the example's code is unchanged."""
    path = BUILT / f"{name}.wasm"
    if not path.is_file():
        pytest.skip(f"{path} is not built (scripts/dev demo builds it)")
    wasm = path.read_bytes()
    manifest = json.loads(custom_sections(wasm, SECTION)[0])
    source = {"markdown-js": "markdown/js", "logparse-go": "logparse/go"}[name]
    tables = read_plugin_meta(ROOT / "plugins" / source).get("handler", {})
    manifest["handlers"] = [
        {**({"name": h} if isinstance(h, str) else h), **tables.get(
            h if isinstance(h, str) else h["name"], {})} for h in manifest["handlers"]]
    return set_custom_section(wasm, SECTION, json.dumps(manifest).encode())


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    files = {"markdown-js": as_built_now("markdown-js"), "logparse-go": as_built_now("logparse-go")}
    h = Host(tmp_path / "app", ["markdown-js/render", "logparse-go/parse"], files=files,
             plugins={"markdown-js": {"grants": ["config"], "config": {"gfm": True}},
                      "logparse-go": {"grants": ["config"], "config": {"top": 5}}})
    try:
        yield h
    finally:
        h.stop()


def test_a_text_handler_is_a_tool_of_one_string_argument(host: Host) -> None:
    async def main() -> None:
        async with http_session(host.url, host.admin_token) as session:
            listed = {t.name: t for t in (await session.list_tools()).tools}
            assert listed["markdown-js.render"].input_schema == TEXT_SCHEMA
            assert listed["logparse-go.parse"].input_schema == TEXT_SCHEMA

            html = await session.call_tool("markdown-js.render", {"text": "# hi *there*"})
            assert not html.is_error, text_of(html)
            assert text_of(html) == "<h1>hi <em>there</em></h1>\n"

            parsed = await session.call_tool("logparse-go.parse", {"text": LOG * 2})
            assert not parsed.is_error, text_of(parsed)
            out = parsed.structured_content
            assert out is not None and len(out["records"]) == 2, out
            assert out["records"][0]["status"] == 200

            # Anything but the one string argument is refused, saying how to call it.
            wrong = await session.call_tool("markdown-js.render", {"markdown": "# hi"})
            assert wrong.is_error
            assert text_of(wrong).endswith(
                "tool 'markdown-js.render' takes one argument, \"text\": the input as a "
                "string (got markdown)")

    anyio.run(main)


MODULE = ('(module (memory (export "memory") 1)'
          ' (func (export "render") (param i32 i32) (result i64) i64.const 0))')


def manifest_of(wasm: bytes) -> dict[str, object]:
    found: dict[str, object] = json.loads(custom_sections(wasm, SECTION)[0])
    return found


def test_the_build_writes_input_text_from_omnicore_toml() -> None:
    for source, handlers in (("markdown/js", ("render", "headings")),
                             ("markdown/python", ("render", "headings")),
                             ("logparse/go", ("parse", "stats"))):
        tables = read_plugin_meta(ROOT / "plugins" / source)["handler"]
        assert all(tables[h]["input"] == "text" for h in handlers), source
    wasm = wasmtime.wat2wasm(MODULE)
    built = embed_manifest(wasm, {"name": "md", "handler": {"render": {"input": "text"}}},
                           language="js", default_name="md")
    assert manifest_of(built)["handlers"] == [{"name": "render", "input": "text"}]
    with pytest.raises(BuildError, match=r"\[plugin.handler.render\] reads text "
                                         r"\(input = \"text\"\), so it takes no input_schema"):
        embed_manifest(wasm, {"name": "md", "handler": {"render": {
            "input": "text", "input_schema": {"type": "object"}}}}, language="js",
            default_name="md")
    with pytest.raises(BuildError, match="input must be \"json\""):
        embed_manifest(wasm, {"name": "md", "handler": {"render": {"input": "markdown"}}},
                       language="js", default_name="md")

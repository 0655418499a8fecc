"""Prompts and resources a plugin declares in its manifest (omnicore.mcp.declared): which are
served, under which names, which URI a template matches; and through a real host, what a
client gets when a handler answers something else (the positive paths run in
test_conformance.py with the example app)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from omnicore.mcp.declared import declared_of
from omnicore.mcp.tools import Exposure, tools_of
from omnicore.plugins.info import PluginInfo
from tests.mcp.mcp_fixtures import TOOLS_MANIFEST, Host, http_session, wasm

DECLARING = {
    "prompts": [{"name": "greet", "description": "Greets", "handler": "render",
                 "arguments": [{"name": "who", "required": True}, {"name": "how"}]},
                {"name": "hidden", "handler": "secret"},
                {"name": "bad", "handler": "render", "arguments": "who"}],
    "resources": [{"uri": "notes://index", "name": "index", "mime_type": "text/plain",
                   "handler": "read"},
                  {"uri_template": "notes://note/{id}/v/{version}", "name": "note",
                   "handler": "read"},
                  {"uri_template": "notes://index", "name": "shadowed", "handler": "read"},
                  {"name": "neither", "handler": "read"}]}


def info(manifest: dict[str, Any], name: str = "p") -> PluginInfo:
    return PluginInfo(name=name, state="loaded", source=None, description="a plugin",
                      handlers=("render", "read", "secret", "tool"), manifest=manifest)


def test_exposed_prompts_and_resources_are_declared_under_the_plugins_prefix(
        caplog: pytest.LogCaptureFixture) -> None:
    exposure = Exposure(["p/render", "p/read", "p/tool"])
    with caplog.at_level(logging.WARNING, "omnicore.mcp"):
        declared = declared_of([info(DECLARING)], exposure)
    assert list(declared.prompts) == ["p.greet"]  # "hidden": its handler is not exposed
    prompt = declared.prompts["p.greet"].prompt
    assert (prompt.description, [(a.name, a.required) for a in prompt.arguments or ()]) == \
        ("Greets", [("who", True), ("how", False)])
    assert [r.resource.uri if r.resource else r.template.uri_template  # type: ignore[union-attr]
            for r in declared.resources] == ["notes://index", "notes://note/{id}/v/{version}",
                                             "notes://index"]
    assert "prompt 'bad': arguments must be a list" in caplog.text
    assert "resource 'neither' needs exactly one of uri and uri_template" in caplog.text
    # A handler that renders a prompt or reads a resource is never a tool.
    assert list(tools_of([info(DECLARING)], exposure)) == ["p.tool"]


def test_a_uri_finds_its_resource_and_the_templates_variables() -> None:
    declared = declared_of([info(DECLARING)], Exposure(["p/*"]))
    found = declared.resource("notes://note/7/v/2")
    assert found is not None and found[1] == {"id": "7", "version": "2"}
    plain = declared.resource("notes://index")
    assert plain is not None and plain[0].resource is not None and plain[1] == {}
    assert declared.resource("notes://note/7/v/2/more") is None  # {var} is one segment
    assert declared.resource("notes://note//v/2") is None


def test_nothing_is_declared_for_a_plugin_that_is_not_listed() -> None:
    failed = PluginInfo(name="p", state="needs-grant", source=None, handlers=("render",),
                        manifest=DECLARING)
    declared = declared_of([failed], Exposure(["p/*"]))
    assert declared.prompts == {} and declared.resources == []


#: The tools fixture's echo as a prompt's and a resource's handler: it answers its input,
#: which is neither MCP's prompt nor its resource contents.
ECHOING = {**TOOLS_MANIFEST, "name": "echoing",
           "prompts": [{"name": "p", "handler": "echo",
                        "arguments": [{"name": "who", "required": True}]}],
           "resources": [{"uri": "echo://x", "name": "x", "handler": "echo"}]}


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    h = Host(tmp_path_factory.mktemp("declared") / "app", ["echoing/*"],
             files={"echoing": wasm("tools", ECHOING)})
    try:
        yield h
    finally:
        h.stop()


def test_a_client_gets_the_protocols_errors(host: Host) -> None:
    async def main() -> None:
        async with http_session(host.url, host.admin_token) as session:
            assert [p.name for p in (await session.list_prompts()).prompts] == ["echoing.p"]
            assert "echo://x" in [r.uri for r in (await session.list_resources()).resources]
            with pytest.raises(MCPError, match=r"needs the argument.*who") as missing:
                await session.get_prompt("echoing.p", {})
            assert missing.value.error.code == -32602
            with pytest.raises(MCPError, match="did not answer a prompt") as wrong:
                await session.get_prompt("echoing.p", {"who": "Ada"})
            assert wrong.value.error.code == -32603
            with pytest.raises(MCPError, match="no prompt 'nope'"):
                await session.get_prompt("nope", {})
            with pytest.raises(MCPError, match="did not answer resource contents"):
                await session.read_resource("echo://x")
            # Sent as requests: the SDK's client deprecates its helpers (2026-07-28 drops
            # subscriptions), which the handshake revisions still have.
            def subscribe(uri: str) -> Any:
                return types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri))

            with pytest.raises(MCPError, match="no resource 'echo://y' to subscribe to"):
                await session.send_request(subscribe("echo://y"), types.EmptyResult)
            await session.send_request(subscribe("echo://x"), types.EmptyResult)
            await session.send_request(types.UnsubscribeRequest(
                params=types.UnsubscribeRequestParams(uri="echo://x")), types.EmptyResult)
            # The tools are still served, and the echo handler is no tool.
            tools = [t.name for t in (await session.list_tools()).tools]
            assert "echoing.echo" not in tools and "echoing.plain" in tools

    anyio.run(main)


def test_a_viewer_cannot_render_a_prompt(host: Host) -> None:
    async def main() -> None:
        async with http_session(host.url, host.viewer_token) as session:
            with pytest.raises(MCPError, match="viewer"):
                await session.get_prompt("echoing.p", {"who": "Ada"})
            result = await session.list_prompts()
            assert isinstance(result, types.ListPromptsResult)

    anyio.run(main)

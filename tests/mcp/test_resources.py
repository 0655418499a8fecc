"""Plugins' memories and vectors as read-only MCP resources: off by default, on by the app
config or a plugin's sidecar, read over ``/mcp`` with the SDK's client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import TextResourceContents

from tests.mcp.mcp_fixtures import TOOLS_MANIFEST, Host, http_session, wasm


def _host(root: Path, resources: bool, sidecar: str | None = None) -> Host:
    files = {"tools": wasm("tools", TOOLS_MANIFEST),
             "other": wasm("tools", dict(TOOLS_MANIFEST, name="other"))}
    host = Host(root, [], files=files, mcp={"expose": [], "resources": resources})
    if sidecar is not None:
        (host.plugins_dir / "tools.yaml").write_text(sidecar)
    for plugin in ("tools", "other"):
        host.app.memory.for_plugin(plugin).remember(2, f"{plugin} remembers the answer: 42")
        vectors = host.app.vectors.for_plugin(plugin)
        vectors.create("docs", 3)
        vectors.upsert("docs", "a", [0.1, 0.2, 0.3])
    return host


@pytest.fixture
def on(tmp_path: Path) -> Iterator[Host]:
    host = _host(tmp_path / "app", True)
    yield host
    host.stop()


def _read(url: str, token: str, uri: str) -> dict[str, object]:
    async def main() -> dict[str, object]:
        async with http_session(url, token) as s:
            result = await s.read_resource(uri)
            content = result.contents[0]
            assert isinstance(content, TextResourceContents)
            assert content.mime_type == "application/json"
            loaded: dict[str, object] = json.loads(content.text)
            return loaded

    try:
        return asyncio.run(main())
    except* MCPError as group:  # the client's task groups wrap the server's answer
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup):
            error = error.exceptions[0]
        raise error from None


def _uris(url: str, token: str) -> set[str]:
    async def main() -> set[str]:
        async with http_session(url, token) as s:
            return {str(r.uri) for r in (await s.list_resources()).resources}

    return asyncio.run(main())


def test_off_by_default(tmp_path: Path) -> None:
    host = _host(tmp_path / "app", False)
    try:
        assert _uris(host.url, host.admin_token) == set()
        with pytest.raises(MCPError, match="no resource"):
            _read(host.url, host.admin_token, "omnicore://tools/memory")
    finally:
        host.stop()


def test_memories_and_collections_read_by_any_user(on: Host) -> None:
    assert _uris(on.url, on.viewer_token) == {
        "omnicore://tools/memory", "omnicore://tools/vectors",
        "omnicore://other/memory", "omnicore://other/vectors"}
    memory = _read(on.url, on.viewer_token, "omnicore://tools/memory")
    assert [m["text"] for m in memory["memory"]] == ["tools remembers the answer: 42"]  # type: ignore[index, union-attr]
    vectors = _read(on.url, on.admin_token, "omnicore://tools/vectors")
    [collection] = vectors["vectors"]  # type: ignore[misc]
    assert collection["name"] == "docs" and collection["count"] == 1
    assert collection["plugin"] == "tools"


@pytest.mark.parametrize("uri", [
    "omnicore://tools/kv", "omnicore://tools/memory/1", "omnicore://tools", "omnicore://",
    "omnicore://nope/memory", "file:///etc/passwd", "omnicore://tools/../other/memory",
    "omnicore://TOOLS/memory"])
def test_only_the_served_resources_can_be_read(on: Host, uri: str) -> None:
    with pytest.raises(MCPError, match="no resource"):
        _read(on.url, on.admin_token, uri)


def test_a_sidecar_decides_for_its_own_plugin(tmp_path: Path) -> None:
    host = _host(tmp_path / "off", True, sidecar="mcp: {resources: false}\n")
    try:
        assert _uris(host.url, host.admin_token) == {"omnicore://other/memory",
                                                     "omnicore://other/vectors"}
        with pytest.raises(MCPError, match="no resource"):
            _read(host.url, host.admin_token, "omnicore://tools/memory")
    finally:
        host.stop()
    host = _host(tmp_path / "on", False, sidecar="mcp: {resources: true}\n")
    try:
        assert _uris(host.url, host.admin_token) == {"omnicore://tools/memory",
                                                     "omnicore://tools/vectors"}
    finally:
        host.stop()

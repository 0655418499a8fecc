"""Which handlers become tools, under which names, with which schema (omnicore.mcp.tools),
on a real plugin host with real plugin files."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from omnicore.errors import ConfigError
from omnicore.mcp.tools import Exposure, tools_of
from omnicore.plugins.host import PluginHost
from omnicore.plugins.sidecar import read_sidecar
from tests.mcp.mcp_fixtures import SCHEMA, TOOLS_MANIFEST, wasm


@pytest.fixture
def host() -> Iterator[PluginHost]:
    with PluginHost() as h:
        yield h


def load(host: PluginHost, folder: Path, manifest: dict[str, Any], stem: str = "tools") -> str:
    folder.mkdir(exist_ok=True)
    path = folder / f"{stem}.wasm"
    path.write_bytes(wasm("tools", manifest))
    return host.load(path).name


def names(host: PluginHost, exposure: Exposure) -> set[str]:
    return set(tools_of(host, exposure))


def test_app_patterns_match_plugin_and_handler_separately(host: PluginHost,
                                                          tmp_path: Path) -> None:
    load(host, tmp_path, TOOLS_MANIFEST)
    assert names(host, Exposure([])) == set()
    assert names(host, Exposure(["tools/echo"])) == {"tools.echo"}
    assert names(host, Exposure(["tools/*"])) == {f"tools.{h}" for h in (
        "echo", "hidden", "trap", "spin", "fail", "plain")}
    assert names(host, Exposure(["t*/[ef]*"])) == {"tools.echo", "tools.fail"}
    assert names(host, Exposure(["other/*", "*/ECHO", "tools/echo2"])) == set()


def test_the_sidecar_exposes_its_own_plugin_and_is_reread_when_edited(
        host: PluginHost, tmp_path: Path) -> None:
    load(host, tmp_path, TOOLS_MANIFEST)
    sidecar = tmp_path / "tools.yaml"
    exposure = Exposure([])
    sidecar.write_text("mcp:\n  expose: [echo]\n")
    assert names(host, exposure) == {"tools.echo"}
    sidecar.write_text("mcp:\n  expose: [plain, fail]  # edited\n")
    assert names(host, exposure) == {"tools.plain", "tools.fail"}
    sidecar.unlink()
    assert names(host, exposure) == set()


@pytest.mark.parametrize("body", ["mcp: [echo]\n", "mcp:\n  expose: echo\n",
                                  "mcp:\n  expose: [1]\n", "mcp:\n  expose: ['']\n",
                                  "mcp:\n  expose: [echo]\n  resource: true\n"])
def test_a_bad_mcp_key_in_a_sidecar_is_a_config_error_naming_it(tmp_path: Path,
                                                               body: str) -> None:
    (tmp_path / "tools.wasm").write_bytes(b"")
    (tmp_path / "tools.yaml").write_text(body)
    with pytest.raises(ConfigError, match="'mcp' must be"):
        read_sidecar(tmp_path / "tools.wasm")


def test_description_and_schema_come_from_the_handler_objects(host: PluginHost,
                                                              tmp_path: Path) -> None:
    load(host, tmp_path, TOOLS_MANIFEST)
    tools = tools_of(host, Exposure(["tools/*"]))
    assert tools["tools.echo"].description == "Echo the arguments back"
    assert tools["tools.echo"].input_schema == SCHEMA
    assert tools["tools.trap"].description == "test tools"
    assert tools["tools.trap"].input_schema == {"type": "object"}


@pytest.mark.parametrize("schema", [
    {"type": "string"}, ["not", "an", "object"], {"properties": {}},
    {"type": "object", "properties": {"a": {"type": 5}}},
    {"type": "object", "$ref": "#/nowhere"},
])
def test_a_handler_with_an_unusable_schema_is_not_served(host: PluginHost, tmp_path: Path,
                                                         schema: object) -> None:
    manifest = dict(TOOLS_MANIFEST, handlers=[
        {"name": "echo", "input_schema": schema}, "plain"])
    load(host, tmp_path, manifest)
    assert names(host, Exposure(["tools/*"])) == {"tools.plain"}


def test_a_schema_ref_to_a_server_is_never_fetched(host: PluginHost, tmp_path: Path) -> None:
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"type": "object"}')

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/schema.json"
        manifest = dict(TOOLS_MANIFEST, handlers=[
            {"name": "echo", "input_schema": {"type": "object", "$ref": url}},
            {"name": "fail", "input_schema": {"type": "object",
                                              "properties": {"x": {"$ref": url}}}},
            "plain"])
        load(host, tmp_path, manifest)
        assert names(host, Exposure(["tools/*"])) == {"tools.plain"}
        assert hits == []
    finally:
        server.shutdown()
        server.server_close()


def test_only_plugins_that_can_run_are_listed(host: PluginHost, tmp_path: Path) -> None:
    load(host, tmp_path, TOOLS_MANIFEST)
    (tmp_path / "off.wasm").write_bytes(wasm("tools", dict(TOOLS_MANIFEST, name="off")))
    (tmp_path / "off.yaml").write_text("enabled: false\n")
    host.load(tmp_path / "off.wasm")
    exposure = Exposure(["*/echo"])
    assert names(host, exposure) == {"tools.echo"}
    # Not listed, but a call still finds it and says why it cannot run.
    assert set(tools_of(host, exposure, listed_only=False)) == {"tools.echo", "off.echo"}


def test_names_mcp_does_not_allow_are_mapped_and_a_collision_is_not_served(
        host: PluginHost, tmp_path: Path) -> None:
    load(host, tmp_path, dict(TOOLS_MANIFEST, handlers=["say/hi", "plain"]))
    tools = tools_of(host, Exposure(["tools/*"]))
    assert set(tools) == {"tools.say_u002f_hi", "tools.plain"}
    assert tools["tools.say_u002f_hi"].handler == "say/hi"
    host.unload("tools")
    load(host, tmp_path, dict(TOOLS_MANIFEST, handlers=["say/hi", "say_u002f_hi"]))
    # Two handlers, one tool name: the first keeps it, the second is not served.
    tools = tools_of(host, Exposure(["tools/*"]))
    assert {t.handler for t in tools.values()} == {"say/hi"}

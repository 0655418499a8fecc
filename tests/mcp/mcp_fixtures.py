"""Real apps for the MCP tests: WAT plugins in a plugins folder, an omnicore.yaml, and the MCP
SDK's own client talking to a real ``omnicore mcp`` subprocess or a real running host."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import mcp_types as types
import wasmtime
import yaml
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from omnicore.errors import ConfigError
from tests.hosts import CHEAP_PASSWORD_HASH

HERE = Path(__file__).parent

SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
TOOLS_MANIFEST: dict[str, Any] = {
    "abi": 1, "name": "tools", "version": "1.0.0", "description": "test tools",
    "handlers": [{"name": "echo", "description": "Echo the arguments back",
                  "input_schema": SCHEMA},
                 "hidden", {"name": "trap"}, "spin", "fail", "plain"]}


def wasm(fixture: str, manifest: Mapping[str, Any] | None = None, name: str = "") -> bytes:
    """``tests/mcp/<fixture>.wat`` compiled, with ``manifest`` as its manifest section (or
    ``name`` as the plugin's name in the one it has)."""
    text = (HERE / f"{fixture}.wat").read_text().replace("NAME_TAG", name)
    if manifest is not None:
        escaped = json.dumps(manifest).replace("\\", "\\\\").replace('"', '\\"')
        text = text.replace("MANIFEST_TAG", escaped)
    return wasmtime.wat2wasm(text)


def make_app(root: Path, expose: Sequence[str], *, files: Mapping[str, bytes] | None = None,
             **config: Any) -> Path:
    """An app folder: omnicore.yaml exposing ``expose`` (and ``config``), and the plugin
    ``files`` (file stem -> wasm; the tools fixture by default)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "plugins").mkdir(exist_ok=True)
    for stem, data in (files if files is not None else
                       {"tools": wasm("tools", TOOLS_MANIFEST)}).items():
        (root / "plugins" / f"{stem}.wasm").write_bytes(data)
    doc = {"name": "mcp-test", "data_dir": "data", "plugins_dir": "plugins",
           "sandbox": {"limits": {"timeout_ms": 500}}, "mcp": {"expose": list(expose)},
           **config}
    (root / "omnicore.yaml").write_text(yaml.safe_dump(doc))
    return root


class Inbox:
    """The notifications a client session received."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    async def __call__(self, message: types.ServerNotification | Exception) -> None:
        if not isinstance(message, Exception):
            self.methods.append(message.method)


@asynccontextmanager
async def stdio_session(appdir: Path, inbox: Inbox | None = None,
                        errlog: Any = None) -> AsyncIterator[ClientSession]:
    """An initialized MCP client session with ``omnicore mcp --app appdir`` as a subprocess."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "omnicore.cli", "mcp", "--app", str(appdir)],
        env={k: v for k, v in os.environ.items() if k.startswith(("PYTHON", "PATH", "HOME"))})
    async with stdio_client(params, errlog=errlog or sys.stderr) as (read, write), \
            ClientSession(read, write, message_handler=inbox) as session:
        await session.initialize()
        yield session


def text_of(result: types.CallToolResult) -> str:
    first = result.content[0]
    assert isinstance(first, types.TextContent)
    return first.text


PASSWORD = "correct horse battery"


class Host:
    """A running app with its console on a free loopback port, an admin and a viewer token."""

    def __init__(self, root: Path, expose: Sequence[str], **config: Any) -> None:
        from omnicore import OmniApp
        from omnicore.console import ConsoleModule

        appdir = make_app(root, expose, **config)
        self.plugins_dir = appdir / "plugins"
        self.app = OmniApp(config_path=appdir / "omnicore.yaml",
                           overrides={"console": {"port": 0,
                                 "password_hash": CHEAP_PASSWORD_HASH}})
        self.module = ConsoleModule()
        self.app.add_module(self.module)
        self.app.start()
        assert self.module.console is not None and self.module.url is not None
        self.url = self.module.url
        self.store = self.module.console.auth.store
        for user in ("admin", "viewer"):
            try:
                self.store.add(user, PASSWORD, user)  # type: ignore[arg-type]
            except ConfigError:
                pass  # a database another host shares has them already
        self.admin_token, _ = self.store.new_token("admin", "tests")
        self.viewer_token, _ = self.store.new_token("viewer", "tests")

    def stop(self) -> None:
        if self.app.state.value == "running":
            self.app.stop()


@asynccontextmanager
async def http_session(url: str, token: str | None,
                       inbox: Inbox | None = None) -> AsyncIterator[ClientSession]:
    """An initialized MCP client session over streamable HTTP to ``url``/mcp."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as client, \
            streamable_http_client(f"{url}/mcp", http_client=client) as (read, write), \
            ClientSession(read, write, message_handler=inbox) as session:
        await session.initialize()
        yield session

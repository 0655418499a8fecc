"""A tool call whose plugin is still loading waits for it (issue 63 item 5): ``tools/call``
of a tool a plugin still compiling will serve, or of any name while plugin files are still
loading, waits where every call waits (``plugins.arrivals``), at most
``sandbox.load_wait_ms``, then answers as the plugin then does; once the load is over
without it, "no tool" as before. Over HTTP (a host whose start holds one plugin's compile at
a gate) and over stdio (``omnicore mcp`` while a file dropped into its folder loads, held at
a named pipe: tests/mcp/held_load.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from omnicore import OmniApp
from tests.host_fixtures import echo_wasm, write
from tests.hosts import CHEAP_PASSWORD_HASH
from tests.mcp.mcp_fixtures import http_session, text_of
from tests.test_loading_after_start import _Held, _padded, serving_held
from tests.waiting import eventually_async

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


@contextmanager
def held_console(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
                 ) -> Iterator[tuple[OmniApp, str, str]]:
    """App ``name`` serving /mcp while big.wasm's compile waits at ``_Held.gate`` (tiny.wasm
    loads first: the folder loads smallest first)."""
    import omnicore.plugins.linking as linking

    monkeypatch.setattr(linking, "PluginModule", _Held)
    _Held.gate.clear()
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    tiny = write(plugins, "tiny.wasm", echo_wasm("tiny"))
    write(plugins, "big.wasm", _padded(echo_wasm("big"), tiny.stat().st_size))
    app = OmniApp(name, overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(plugins),
        "mcp": {"expose": ["tiny/echo", "big/echo"]},
        "console": {"port": 0, "password_hash": CHEAP_PASSWORD_HASH}})
    with serving_held(app) as (url, token):
        yield app, url, token


@pytest.fixture
def held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[OmniApp, str, str]]:
    with held_console(tmp_path, monkeypatch, "mcp-loading") as found:
        yield found


def test_a_tool_call_over_http_waits_for_its_plugin_to_load(
        held: tuple[OmniApp, str, str]) -> None:
    app, url, token = held

    async def main() -> None:
        async with http_session(url, token) as session:
            await eventually_async(lambda: app.plugins.get("tiny").state == "loaded",
                                   "tiny loaded")
            assert app.plugins.get("big").state == "compiling"
            # Past its wait (sandbox.load_wait_ms), the list has what serves now, and the
            # call says the tool still loads.
            app.plugins.load_wait_s = 0.05
            listed = [t.name for t in (await session.list_tools()).tools]
            assert listed == ["tiny.echo"]
            late = await session.call_tool("big.echo", {"text": "late"})
            assert late.is_error and "not served yet: plugins are still loading" \
                in text_of(late), text_of(late)
            app.plugins.load_wait_s = 60
            listing = asyncio.create_task(session.list_tools())
            big = asyncio.create_task(session.call_tool("big.echo", {"text": "hi"}))
            nothing = asyncio.create_task(session.call_tool("nope.echo", {}))
            await eventually_async(lambda: app.plugins.waiting >= 2, "both calls waiting")
            assert not big.done() and not nothing.done() and not listing.done()
            _Held.gate.set()
            # A list asked during the start waits for the start's plugins.
            listed = [t.name for t in (await asyncio.wait_for(listing, 60)).tools]
            assert sorted(listed) == ["big.echo", "tiny.echo"], listed
            result = await asyncio.wait_for(big, 60)
            assert not result.is_error, text_of(result)
            assert text_of(result) == '{"text":"hi"}'
            # The folder loaded without it: no such tool, as ever.
            missing = await asyncio.wait_for(nothing, 60)
            assert missing.is_error and text_of(missing).startswith("no tool 'nope.echo'")

    asyncio.run(main())


class HeldMcp:
    """An app folder for ``omnicore mcp`` holding echo plugins ``names`` with ``expose``,
    whose load of a file named big.wasm waits at a named pipe (tests/mcp/held_load.py): the
    load has begun once :meth:`reach` returns, and goes on at :meth:`open`."""

    def __init__(self, tmp_path: Path, names: list[str], expose: list[str]) -> None:
        self.appdir = tmp_path / "app"
        self.plugins = self.appdir / "plugins"
        self.plugins.mkdir(parents=True)
        for name in names:
            write(self.plugins, f"{name}.wasm", echo_wasm(name))
        (self.appdir / "omnicore.yaml").write_text(yaml.safe_dump({
            "name": "mcp-loading", "data_dir": "data", "plugins_dir": "plugins",
            "mcp": {"expose": expose}}))
        self.fifo = tmp_path / "gate"
        os.mkfifo(self.fifo)
        self.params = StdioServerParameters(
            command=sys.executable,
            args=[str(HERE / "held_load.py"), str(self.fifo), "mcp", "--app", str(self.appdir)],
            cwd=str(ROOT),
            env={**{k: v for k, v in os.environ.items()
                    if k.startswith(("PYTHON", "PATH", "HOME"))}, "PYTHONPATH": str(ROOT)})
        self._ends: list[int] = []

    def reach(self) -> None:
        """Return once the host's load of big.wasm opened the pipe's other end."""
        self._ends.append(os.open(self.fifo, os.O_WRONLY))

    async def reached(self) -> None:
        await asyncio.wait_for(asyncio.to_thread(self.reach), 60)

    def open(self) -> None:
        """The gate opens: the load goes on."""
        while self._ends:
            os.close(self._ends.pop())


def test_omnicore_mcp_answers_the_handshake_while_its_plugins_load(tmp_path: Path) -> None:
    """The start's load of the folder held at a gate: ``initialize`` is answered (an agent's
    handshake has a timeout, a cold compile of a folder can take minutes), ``tools/list``
    waits for the start's plugins and then lists them all, a call waits for its plugin."""
    held = HeldMcp(tmp_path, ["tiny", "big"], ["*/echo"])

    async def main() -> None:
        async with stdio_client(held.params, errlog=sys.stderr) as (read, write_), \
                ClientSession(read, write_) as session:
            await held.reached()
            await asyncio.wait_for(session.initialize(), 60)  # the load still held
            listing = asyncio.create_task(session.list_tools())
            big = asyncio.create_task(session.call_tool("big.echo", {"text": "hi"}))
            await session.send_ping()  # answered after both were read: both wait
            assert not listing.done() and not big.done()
            held.open()
            listed = [t.name for t in (await asyncio.wait_for(listing, 60)).tools]
            assert sorted(listed) == ["big.echo", "tiny.echo"], listed
            result = await asyncio.wait_for(big, 60)
            assert text_of(result) == '{"text":"hi"}', text_of(result)

    try:
        asyncio.run(main())
    finally:
        held.open()


def test_omnicore_mcp_ends_with_a_typo_in_mcp_expose_found_once_loaded(tmp_path: Path) -> None:
    """A pattern judged once the held load ends: the handshake was answered, then the command
    fails with the typo named on stderr, as without a client (tests/cli/test_cli_traps.py)."""
    held = HeldMcp(tmp_path, ["big"], ["big/ehco"])
    params = held.params
    server = subprocess.Popen([params.command, *params.args], cwd=params.cwd, env=params.env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        held.reach()
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(json.dumps({
            "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}}).encode() + b"\n")
        server.stdin.flush()
        answer = json.loads(server.stdout.readline())
        assert answer["id"] == 1 and "result" in answer, answer
        held.open()
        _, err = server.communicate(timeout=60)
        assert server.returncode == 1, err
        assert b"Error: mcp.expose (" in err and b"'big/ehco' matches no handler" in err, err
        assert b"Traceback" not in err, err
    finally:
        held.open()
        if server.poll() is None:
            server.kill()
            server.wait()


def test_a_tool_call_over_stdio_waits_for_a_dropped_plugin_to_load(tmp_path: Path) -> None:
    held = HeldMcp(tmp_path, ["tiny"], ["*/echo"])

    async def main() -> None:
        async with stdio_client(held.params, errlog=sys.stderr) as (read, write_), \
                ClientSession(read, write_) as session:
            await session.initialize()
            assert [t.name for t in (await session.list_tools()).tools] == ["tiny.echo"]
            write(held.plugins, "big.wasm", echo_wasm("big"))
            await held.reached()
            big = asyncio.create_task(session.call_tool("big.echo", {"text": "hi"}))
            # Answered after the call was read: the call is waiting, not answered.
            await session.send_ping()
            tiny = await session.call_tool("tiny.echo", {"text": "meanwhile"})
            assert text_of(tiny) == '{"text":"meanwhile"}'
            assert not big.done()
            held.open()
            result = await asyncio.wait_for(big, 60)
            assert not result.is_error, text_of(result)
            assert text_of(result) == '{"text":"hi"}'
            missing = await session.call_tool("nope.echo", {})
            assert missing.is_error and text_of(missing).startswith("no tool 'nope.echo'")

    try:
        asyncio.run(main())
    finally:
        held.open()

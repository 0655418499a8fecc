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


@pytest.fixture
def held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[OmniApp, str, str]]:
    """A host serving /mcp while big.wasm's compile waits at ``_Held.gate`` (tiny.wasm loads
    first: the folder loads smallest first)."""
    import omnicore.plugins.linking as linking

    monkeypatch.setattr(linking, "PluginModule", _Held)
    _Held.gate.clear()
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    tiny = write(plugins, "tiny.wasm", echo_wasm("tiny"))
    write(plugins, "big.wasm", _padded(echo_wasm("big"), tiny.stat().st_size))
    app = OmniApp("mcp-loading", overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(plugins),
        "mcp": {"expose": ["tiny/echo", "big/echo"]},
        "console": {"port": 0, "password_hash": CHEAP_PASSWORD_HASH}})
    with serving_held(app) as (url, token):
        yield app, url, token


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


def held_mcp(appdir: Path, fifo: Path) -> StdioServerParameters:
    """``omnicore mcp --app appdir`` whose load of a file named big.wasm waits at the named
    pipe ``fifo`` (tests/mcp/held_load.py)."""
    return StdioServerParameters(
        command=sys.executable,
        args=[str(HERE / "held_load.py"), str(fifo), "mcp", "--app", str(appdir)],
        cwd=str(ROOT),
        env={**{k: v for k, v in os.environ.items() if k.startswith(("PYTHON", "PATH", "HOME"))},
             "PYTHONPATH": str(ROOT)})


def test_omnicore_mcp_answers_the_handshake_while_its_plugins_load(tmp_path: Path) -> None:
    """The start's load of the folder held at a gate: ``initialize`` is answered (an agent's
    handshake has a timeout, a cold compile of a folder can take minutes), ``tools/list``
    waits for the start's plugins and then lists them all, a call waits for its plugin."""
    appdir = tmp_path / "app"
    plugins = appdir / "plugins"
    plugins.mkdir(parents=True)
    write(plugins, "tiny.wasm", echo_wasm("tiny"))
    write(plugins, "big.wasm", echo_wasm("big"))
    (appdir / "omnicore.yaml").write_text(yaml.safe_dump({
        "name": "mcp-loading", "data_dir": "data", "plugins_dir": "plugins",
        "mcp": {"expose": ["*/echo"]}}))
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    gate: list[int] = []

    def reach_gate() -> None:  # returns once the host's load of big.wasm opened its end
        gate.append(os.open(fifo, os.O_WRONLY))

    async def main() -> None:
        async with stdio_client(held_mcp(appdir, fifo), errlog=sys.stderr) as (read, write_), \
                ClientSession(read, write_) as session:
            await asyncio.wait_for(asyncio.to_thread(reach_gate), 60)
            await asyncio.wait_for(session.initialize(), 60)  # the load still held
            listing = asyncio.create_task(session.list_tools())
            big = asyncio.create_task(session.call_tool("big.echo", {"text": "hi"}))
            await session.send_ping()  # answered after both were read: both wait
            assert not listing.done() and not big.done()
            os.close(gate.pop())  # the gate opens: the load goes on
            listed = [t.name for t in (await asyncio.wait_for(listing, 60)).tools]
            assert sorted(listed) == ["big.echo", "tiny.echo"], listed
            result = await asyncio.wait_for(big, 60)
            assert text_of(result) == '{"text":"hi"}', text_of(result)

    try:
        asyncio.run(main())
    finally:
        if gate:
            os.close(gate.pop())


def test_omnicore_mcp_ends_with_a_typo_in_mcp_expose_found_once_loaded(tmp_path: Path) -> None:
    """A pattern judged once the held load ends: the handshake was answered, then the command
    fails with the typo named on stderr, as without a client (tests/cli/test_cli_traps.py)."""
    appdir = tmp_path / "app"
    plugins = appdir / "plugins"
    plugins.mkdir(parents=True)
    write(plugins, "big.wasm", echo_wasm("big"))
    (appdir / "omnicore.yaml").write_text(yaml.safe_dump({
        "name": "mcp-loading", "data_dir": "data", "plugins_dir": "plugins",
        "mcp": {"expose": ["big/ehco"]}}))
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    params = held_mcp(appdir, fifo)
    server = subprocess.Popen([params.command, *params.args], cwd=params.cwd, env=params.env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        gate = os.open(fifo, os.O_WRONLY)  # the load of big.wasm is under way, held
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write(json.dumps({
            "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"}}}).encode() + b"\n")
        server.stdin.flush()
        answer = json.loads(server.stdout.readline())
        assert answer["id"] == 1 and "result" in answer, answer
        os.close(gate)
        _, err = server.communicate(timeout=60)
        assert server.returncode == 1, err
        assert b"Error: mcp.expose (" in err and b"'big/ehco' matches no handler" in err, err
        assert b"Traceback" not in err, err
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_a_tool_call_over_stdio_waits_for_a_dropped_plugin_to_load(tmp_path: Path) -> None:
    appdir = tmp_path / "app"
    plugins = appdir / "plugins"
    plugins.mkdir(parents=True)
    write(plugins, "tiny.wasm", echo_wasm("tiny"))
    (appdir / "omnicore.yaml").write_text(yaml.safe_dump({
        "name": "mcp-loading", "data_dir": "data", "plugins_dir": "plugins",
        "mcp": {"expose": ["*/echo"]}}))
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    gate: list[int] = []

    def reach_gate() -> None:  # returns once the host's load of big.wasm opened its end
        gate.append(os.open(fifo, os.O_WRONLY))

    async def main() -> None:
        async with stdio_client(held_mcp(appdir, fifo), errlog=sys.stderr) as (read, write_), \
                ClientSession(read, write_) as session:
            await session.initialize()
            assert [t.name for t in (await session.list_tools()).tools] == ["tiny.echo"]
            write(plugins, "big.wasm", echo_wasm("big"))
            await asyncio.wait_for(asyncio.to_thread(reach_gate), 60)
            big = asyncio.create_task(session.call_tool("big.echo", {"text": "hi"}))
            # Answered after the call was read: the call is waiting, not answered.
            await session.send_ping()
            tiny = await session.call_tool("tiny.echo", {"text": "meanwhile"})
            assert text_of(tiny) == '{"text":"meanwhile"}'
            assert not big.done()
            os.close(gate.pop())  # the gate opens: the load goes on
            result = await asyncio.wait_for(big, 60)
            assert not result.is_error, text_of(result)
            assert text_of(result) == '{"text":"hi"}'
            missing = await session.call_tool("nope.echo", {})
            assert missing.is_error and text_of(missing).startswith("no tool 'nope.echo'")

    try:
        asyncio.run(main())
    finally:
        if gate:
            os.close(gate.pop())

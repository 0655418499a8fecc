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
import os
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
            listed = [t.name for t in (await session.list_tools()).tools]
            assert listed == ["tiny.echo"]  # the list has what serves now
            # Past its wait (sandbox.load_wait_ms), the call says the tool still loads.
            app.plugins.load_wait_s = 0.05
            late = await session.call_tool("big.echo", {"text": "late"})
            assert late.is_error and "not served yet: plugins are still loading" \
                in text_of(late), text_of(late)
            app.plugins.load_wait_s = 60
            big = asyncio.create_task(session.call_tool("big.echo", {"text": "hi"}))
            nothing = asyncio.create_task(session.call_tool("nope.echo", {}))
            await eventually_async(lambda: app.plugins.waiting >= 2, "both calls waiting")
            assert not big.done() and not nothing.done()
            _Held.gate.set()
            result = await asyncio.wait_for(big, 60)
            assert not result.is_error, text_of(result)
            assert text_of(result) == '{"text":"hi"}'
            # The folder loaded without it: no such tool, as ever.
            missing = await asyncio.wait_for(nothing, 60)
            assert missing.is_error and text_of(missing).startswith("no tool 'nope.echo'")

    asyncio.run(main())


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
    params = StdioServerParameters(
        command=sys.executable,
        args=[str(HERE / "held_load.py"), str(fifo), "mcp", "--app", str(appdir)],
        cwd=str(ROOT),
        env={**{k: v for k, v in os.environ.items() if k.startswith(("PYTHON", "PATH", "HOME"))},
             "PYTHONPATH": str(ROOT)})
    gate: list[int] = []

    def reach_gate() -> None:  # returns once the host's load of big.wasm opened its end
        gate.append(os.open(fifo, os.O_WRONLY))

    async def main() -> None:
        async with stdio_client(params, errlog=sys.stderr) as (read, write_), \
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

"""``omnicore mcp --app DIR`` as a real subprocess, driven by the MCP SDK's own client."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from mcp_types.version import LATEST_HANDSHAKE_VERSION

from tests.mcp.mcp_fixtures import (
    SCHEMA,
    TOOLS_MANIFEST,
    Inbox,
    make_app,
    stdio_session,
    text_of,
    wasm,
)
from tests.sandbox_fixtures import compile_wat
from tests.waiting import eventually_async, fastest_async

EXPOSED = ["tools/echo", "tools/trap", "tools/spin", "tools/fail", "tools/plain"]


def test_initialize_and_the_list_is_exactly_the_exposed_tools(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", EXPOSED)

    async def main() -> None:
        async with stdio_session(app) as s:
            init = s.initialize_result
            assert init is not None
            assert init.protocol_version == LATEST_HANDSHAKE_VERSION
            assert init.server_info.name == "omnicore"
            assert init.capabilities.tools is not None
            assert init.capabilities.tools.list_changed is True
            tools = {t.name: t for t in (await s.list_tools()).tools}
            # `hidden` is a handler too, and nobody exposed it.
            assert set(tools) == {"tools.echo", "tools.trap", "tools.spin", "tools.fail",
                                  "tools.plain"}
            assert tools["tools.echo"].description == "Echo the arguments back"
            assert tools["tools.echo"].input_schema == SCHEMA
            # No handler object: the plugin's description and any object.
            assert tools["tools.plain"].description == "test tools"
            assert tools["tools.plain"].input_schema == {"type": "object"}

    asyncio.run(main())


def test_nothing_is_exposed_by_default(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", [])

    async def main() -> None:
        async with stdio_session(app) as s:
            assert (await s.list_tools()).tools == []
            result = await s.call_tool("tools.echo", {"text": "hi"})
            assert result.is_error and "no tool 'tools.echo'" in text_of(result)

    asyncio.run(main())


def test_a_call_returns_the_handlers_answer(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", EXPOSED)

    async def main() -> None:
        async with stdio_session(app) as s:
            result = await s.call_tool("tools.echo", {"text": "héllo"})
            assert not result.is_error
            assert json.loads(text_of(result)) == {"text": "héllo"}
            assert result.structured_content == {"text": "héllo"}
            plain = await s.call_tool("tools.plain", {})
            assert text_of(plain) == "hello" and plain.structured_content is None

    asyncio.run(main())


def test_a_tool_that_is_not_exposed_fails_whatever_its_spelling(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", EXPOSED)

    async def main() -> None:
        async with stdio_session(app) as s:
            for name in ("tools.hidden", "tools/hidden", "tools.hidden ", "TOOLS.hidden",
                         "nope.echo", "tools", "tools.", ".echo", "tools.echo.x"):
                result = await s.call_tool(name, {"text": "x"})
                assert result.is_error, name
                assert text_of(result).startswith("no tool"), (name, text_of(result))

    asyncio.run(main())


def test_failures_are_tool_errors_and_the_server_keeps_serving(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", EXPOSED)

    async def main() -> None:
        async with stdio_session(app) as s:
            trapped = await s.call_tool("tools.trap", {})
            assert trapped.is_error
            assert "plugin 'tools' handler 'trap' trapped" in text_of(trapped)
            assert "\n" not in text_of(trapped)
            assert not (await s.call_tool("tools.echo", {"text": "after"})).is_error

            async def spin() -> None:
                spun = await s.call_tool("tools.spin", {})
                assert spun.is_error and "deadline" in text_of(spun).lower()

            assert await fastest_async(spin) < 0.5 + 1.5
            failed = await s.call_tool("tools.fail", {"why": "bad input"})
            assert failed.is_error and '{"why":"bad input"}' in text_of(failed)
            again = await s.call_tool("tools.echo", {"text": "still here"})
            assert not again.is_error and again.structured_content == {"text": "still here"}

    asyncio.run(main())


def test_a_hot_reload_changes_the_list_and_tells_the_client(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", ["tools/*"])
    inbox = Inbox()
    file = app / "plugins" / "tools.wasm"

    async def wait_for_list(s: object, want: set[str]) -> None:
        async def changed() -> bool:
            names = {t.name for t in (await s.list_tools()).tools}  # type: ignore[attr-defined]
            return names == want and "notifications/tools/list_changed" in inbox.methods

        await eventually_async(changed, f"the list {sorted(want)}, notified")

    async def main() -> None:
        async with stdio_session(app, inbox) as s:
            everything = {f"tools.{h}" for h in ("echo", "hidden", "trap", "spin", "fail",
                                                   "plain")}
            assert {t.name for t in (await s.list_tools()).tools} == everything
            assert inbox.methods == []
            v2 = dict(TOOLS_MANIFEST, version="2.0.0", handlers=["echo", "plain"])
            tmp = file.with_name(".tools.tmp")
            tmp.write_bytes(wasm("tools", v2))
            os.replace(tmp, file)
            await wait_for_list(s, {"tools.echo", "tools.plain"})
            inbox.methods.clear()
            file.unlink()  # unload
            await wait_for_list(s, set())

    asyncio.run(main())


def test_a_sidecar_exposes_handlers_of_its_own_plugin(tmp_path: Path) -> None:
    app = make_app(tmp_path / "app", [])
    (app / "plugins" / "tools.yaml").write_text("mcp:\n  expose: [pl*, echo]\n")

    async def main() -> None:
        async with stdio_session(app) as s:
            assert {t.name for t in (await s.list_tools()).tools} == {"tools.plain",
                                                                      "tools.echo"}
            assert text_of(await s.call_tool("tools.plain", {})) == "hello"

    asyncio.run(main())


def test_stdout_carries_only_json_rpc(tmp_path: Path) -> None:
    # The wasi fixture writes to its stdout and stderr; logs are on too: none of it may
    # reach the client's stream.
    app = make_app(tmp_path / "app", ["tools/*", "wasi/*"],
                   files={"tools": wasm("tools", TOOLS_MANIFEST), "wasi": compile_wat("wasi")},
                   log={"level": "debug"})
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": LATEST_HANDSHAKE_VERSION, "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "wasi.hello", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
         "params": {"name": "tools.trap", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/list"},
    ]
    proc = subprocess.Popen([sys.executable, "-m", "omnicore.cli", "mcp", "--app", str(app)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    # A server that hangs is killed after two minutes: the read below then ends (EOF) and this
    # test fails saying so, instead of waiting for pytest's 900 s timeout with pipes open.
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    answers: dict[int, dict[str, object]] = {}
    try:
        for request in requests:
            proc.stdin.write(json.dumps(request) + "\n")
            proc.stdin.flush()
            if "id" in request:
                while request["id"] not in answers:
                    line = proc.stdout.readline()
                    assert line, "the server closed stdout (or hung and was killed)"
                    message = json.loads(line)  # every line is JSON-RPC, or this fails
                    assert message["jsonrpc"] == "2.0"
                    if "id" in message:
                        answers[message["id"]] = message
        rest, err = proc.communicate(timeout=60)  # closes stdin: the client is done
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    for line in rest.splitlines():
        assert json.loads(line)["jsonrpc"] == "2.0"
    assert proc.returncode == 0, err
    assert "loaded" in err  # the logs went to stderr
    wasi = answers[2]["result"]
    assert isinstance(wasi, dict) and not wasi.get("isError"), wasi
    trap = answers[3]["result"]
    assert isinstance(trap, dict) and trap["isError"] is True
    listed = answers[4]["result"]
    assert isinstance(listed, dict) and any(t["name"] == "wasi.hello" for t in listed["tools"])
    assert "hello from stdout" not in "".join(rest)


def test_a_call_runs_with_the_plugins_own_limits(tmp_path: Path) -> None:
    # The same handler, two limits: the call must honour the app config's per-plugin one.
    app = make_app(tmp_path / "app", ["tools/spin"],
                   plugins={"tools": {"limits": {"timeout_ms": 100}}})

    async def main() -> None:
        async with stdio_session(app) as s:

            async def spin() -> None:
                result = await s.call_tool("tools.spin", {})
                assert result.is_error and "100 ms" in text_of(result), text_of(result)

            assert await fastest_async(spin) < 0.1 + 1.5

    asyncio.run(main())



def test_an_app_folder_without_config_is_one_error_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "omnicore.cli", "mcp", "--app", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"Error: no omnicore.yaml in {tmp_path}; create an app with `omnicore new {tmp_path}`"]


def test_after_a_log_level_calls_bring_their_log_lines(tmp_path: Path) -> None:
    """A call answered on the fast path carries no notifications: once the client asks for
    a level, calls go through the SDK's loop and their log lines come first."""
    import mcp_types as types

    app = make_app(tmp_path / "app", ["logs/*"], files={"logs": wasm("logs")})
    logs: list[str] = []

    async def inbox(message: object) -> None:
        if isinstance(message, types.LoggingMessageNotification):
            logs.append(message.params.level)

    async def main() -> None:
        async with stdio_session(app, inbox) as s:  # type: ignore[arg-type]
            assert not (await s.call_tool("logs.chatty", {})).is_error
            assert logs == []
            await s.send_request(types.SetLevelRequest(
                params=types.SetLevelRequestParams(level="warning")), types.EmptyResult)
            assert not (await s.call_tool("logs.chatty", {})).is_error
            assert logs == ["warning", "error"]

    asyncio.run(main())

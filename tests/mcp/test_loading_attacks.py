"""``omnicore mcp`` serving while its folder loads (tests/mcp/test_loading.py), attacked as a
hostile or careless client and an operator would: requests in bulk during the start, a
client that leaves mid-wait or closes stdin, a plugin that fails or is deleted while the
start is held, a list whose wait runs out (and what it is told after).

The start's load of big.wasm is held at a named pipe (tests/mcp/held_load.py); the client
here writes JSON-RPC lines itself, so it can do what the SDK's client never does.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from omnicore import OmniApp
from tests.host_fixtures import echo_wasm, write
from tests.mcp.mcp_fixtures import TOOLS_MANIFEST, wasm
from tests.mcp.test_loading import HeldMcp, held_console
from tests.test_loading_after_start import _Held, _padded
from tests.waiting import eventually

PROTOCOL = "2025-06-18"


class Wire:
    """``omnicore mcp`` in a process, spoken to in raw JSON-RPC lines."""

    def __init__(self, held: HeldMcp) -> None:
        params = held.params
        self.proc = subprocess.Popen([params.command, *params.args], cwd=params.cwd,
                                     env=params.env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.notifications: list[dict[str, Any]] = []
        self.answers: dict[object, dict[str, Any]] = {}
        self.err = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._err_reader = threading.Thread(target=self._read_err, daemon=True)
        self._err_reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(json.loads(line))
        self._lines.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.err = self.proc.stderr.read()

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")
        self.proc.stdin.flush()

    def request(self, rid: int, method: str, params: dict[str, Any] | None = None) -> None:
        self.send({"id": rid, "method": method, **({"params": params} if params else {})})

    def answer(self, rid: object, timeout: float = 90) -> dict[str, Any]:
        """The answer to request ``rid``, keeping what else came meanwhile."""
        deadline = time.monotonic() + timeout
        while rid not in self.answers:
            message = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if message is None:
                raise AssertionError(f"the server closed stdout before answering {rid}: "
                                     f"{self.err.decode(errors='replace')[-2000:]}")
            if "id" in message and "method" not in message:
                self.answers[message["id"]] = message
            else:
                self.notifications.append(message)
        return self.answers[rid]

    def drain(self) -> None:
        """Everything the server writes until it closes stdout."""
        while (message := self._lines.get(timeout=90)) is not None:
            if "id" in message and "method" not in message:
                self.answers[message["id"]] = message
            else:
                self.notifications.append(message)

    def handshake(self) -> None:
        self.request(0, "initialize", {"protocolVersion": PROTOCOL, "capabilities": {},
                                       "clientInfo": {"name": "attacker", "version": "1"}})
        assert "result" in self.answer(0)
        self.send({"method": "notifications/initialized"})

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait(self, timeout: float = 90) -> int:
        code = self.proc.wait(timeout)
        self._err_reader.join(timeout)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(30)
        self._err_reader.join(30)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None and not pipe.closed:
                try:
                    pipe.close()
                except BrokenPipeError:
                    pass

    def list_changed(self) -> int:
        return sum(1 for n in self.notifications
                   if n.get("method") == "notifications/tools/list_changed")


def _names(answer: dict[str, Any]) -> list[str]:
    return sorted(t["name"] for t in answer["result"]["tools"])


def _text(answer: dict[str, Any]) -> str:
    return str(answer["result"]["content"][0]["text"])


def _config(held: HeldMcp, **sandbox: object) -> None:
    path = held.appdir / "omnicore.yaml"
    data = yaml.safe_load(path.read_text())
    data["sandbox"] = {**data.get("sandbox", {}), **sandbox}
    path.write_text(yaml.safe_dump(data))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[HeldMcp, list[Wire]]]:
    held = HeldMcp(tmp_path, ["tiny", "big"], ["*/echo"])
    # Larger than any other file here: loaded last (the folder loads smallest first), so
    # what the tests add loads before the gate and tiny serves while big is held.
    write(held.plugins, "big.wasm", _padded(echo_wasm("big"), 64 * 1024))
    wires: list[Wire] = []
    try:
        yield held, wires
    finally:
        held.open()
        for wire in wires:
            wire.kill()


def _start(held: HeldMcp, wires: list[Wire]) -> Wire:
    wire = Wire(held)
    wires.append(wire)
    held.reach()
    return wire


def _clean(wire: Wire) -> None:
    err = wire.err.decode(errors="replace")
    for bad in ("Traceback", "Task was destroyed", "never awaited", "Exception in thread"):
        assert bad not in err, err[-3000:]


def test_hundreds_of_lists_and_calls_during_the_start_are_all_answered_after_it(
        served: tuple[HeldMcp, list[Wire]]) -> None:
    held, wires = served
    wire = _start(held, wires)
    wire.handshake()
    n = 150
    for i in range(n):
        wire.request(1000 + i, "tools/list")
        wire.request(2000 + i, "tools/call", {"name": "big.echo", "arguments": {"i": i}})
        wire.request(3000 + i, "tools/call", {"name": "tiny.echo", "arguments": {"i": i}})
    wire.request(1, "ping")
    wire.answer(1)  # read after every request above: each is waiting or answered
    assert not any(1000 <= k < 3000 for k in wire.answers), "answered before the load"
    held.open()
    for i in range(n):
        assert _names(wire.answer(1000 + i)) == ["big.echo", "tiny.echo"]
        assert json.loads(_text(wire.answer(2000 + i))) == {"i": i}
        assert json.loads(_text(wire.answer(3000 + i))) == {"i": i}
    assert wire.list_changed() == 0  # every list held every plugin
    wire.close_stdin()
    assert wire.wait() == 0
    _clean(wire)


def test_a_client_that_leaves_mid_wait_lets_the_process_end(
        served: tuple[HeldMcp, list[Wire]]) -> None:
    """Stdin closed while a list and a call wait for the held load: nothing is left waiting
    once the load ends; the process exits 0 without a traceback or a task left pending."""
    held, wires = served
    wire = _start(held, wires)
    wire.handshake()
    wire.request(1, "tools/list")
    wire.request(2, "tools/call", {"name": "big.echo", "arguments": {}})
    wire.request(3, "tools/call", {"name": "nope.echo", "arguments": {}})
    wire.request(4, "ping")
    wire.answer(4)
    wire.close_stdin()
    held.open()
    assert wire.wait() == 0
    _clean(wire)


def test_stdin_closed_before_the_handshake_during_the_start(
        served: tuple[HeldMcp, list[Wire]]) -> None:
    held, wires = served
    wire = _start(held, wires)
    wire.close_stdin()
    held.open()
    assert wire.wait() == 0
    wire.drain()
    assert not wire.answers and not wire.notifications
    _clean(wire)


def test_a_plugin_that_fails_or_is_deleted_during_the_start(
        served: tuple[HeldMcp, list[Wire]]) -> None:
    """broken.wasm (not wasm) and gone.wasm (deleted while the start is held, after its
    compile began) settle: a call of either waits no longer than the load, and is answered
    with an error, not a hang; the list has what serves."""
    held, wires = served
    write(held.plugins, "broken.wasm", b"\0asm\x01\0\0\0 not a module" * 200)
    write(held.plugins, "gone.wasm", _padded(echo_wasm("gone"), 128 * 1024))  # after big
    wire = _start(held, wires)
    (held.plugins / "gone.wasm").unlink()
    wire.handshake()
    wire.request(1, "tools/call", {"name": "broken.echo", "arguments": {}})
    wire.request(2, "tools/list")
    wire.request(3, "ping")
    wire.answer(3)
    held.open()
    broken = wire.answer(1)
    assert broken["result"]["isError"], broken
    listed = _names(wire.answer(2))
    assert "big.echo" in listed and "tiny.echo" in listed and "broken.echo" not in listed
    # The deleted file is unloaded once the watcher sees it (if it loaded at all).
    wire.request(4, "tools/call", {"name": "tiny.echo", "arguments": {"x": 1}})
    assert json.loads(_text(wire.answer(4))) == {"x": 1}

    def gone_unlisted() -> bool:
        rid = 100 + len(wire.answers)
        wire.request(rid, "tools/list")
        return "gone.echo" not in _names(wire.answer(rid))

    eventually(gone_unlisted, "gone.echo unlisted")
    wire.close_stdin()
    assert wire.wait() == 0
    _clean(wire)


def test_a_list_whose_wait_ran_out_is_told_of_the_arrivals_and_one_in_time_is_not(
        served: tuple[HeldMcp, list[Wire]]) -> None:
    """sandbox.load_wait_ms short: the first list is answered with tiny alone, and big's
    arrival is announced. A client whose list came in time hears only of a later drop."""
    held, wires = served
    _config(held, load_wait_ms=300)
    wire = _start(held, wires)
    wire.handshake()
    wire.request(1, "tools/list")
    assert _names(wire.answer(1)) == ["tiny.echo"]
    held.open()
    eventually(lambda: (wire.request(9, "ping"), wire.answer(9), wire.answers.pop(9),
                        wire.list_changed())[-1], "list_changed after the early list")
    wire.request(2, "tools/list")
    assert _names(wire.answer(2)) == ["big.echo", "tiny.echo"]
    wire.close_stdin()
    assert wire.wait() == 0
    _clean(wire)


def test_one_whose_list_came_in_time_hears_of_no_plugin_of_the_start(
        served: tuple[HeldMcp, list[Wire]]) -> None:
    held, wires = served
    wire = _start(held, wires)
    wire.handshake()
    wire.request(1, "tools/list")
    wire.request(2, "ping")
    wire.answer(2)
    held.open()
    assert _names(wire.answer(1)) == ["big.echo", "tiny.echo"]
    # A later drop is announced: the one list_changed the client gets.
    write(held.plugins, "late.wasm", echo_wasm("late"))

    def listed_late() -> bool:
        rid = 100 + len(wire.answers)
        wire.request(rid, "tools/list")
        return "late.echo" in _names(wire.answer(rid))

    eventually(listed_late, "late.echo listed")
    eventually(lambda: (wire.request(9, "ping"), wire.answer(9), wire.answers.pop(9),
                        wire.list_changed())[-1], "list_changed for the drop")
    wire.close_stdin()
    assert wire.wait() == 0
    assert wire.list_changed() == 1, wire.notifications
    _clean(wire)


def test_stdin_closed_during_a_start_that_outlasts_load_wait_ms_exits_without_a_false_typo(
        served: tuple[HeldMcp, list[Wire]]) -> None:
    """The client left, the start's load outlasted its wait: the process stops loading and
    exits, and says no pattern of mcp.expose is a typo (it could not judge them)."""
    held, wires = served
    write(held.plugins, "zlast.wasm", _padded(echo_wasm("zlast"), 128 * 1024))  # after big
    cfg = held.appdir / "omnicore.yaml"
    data = yaml.safe_load(cfg.read_text())
    data["mcp"]["expose"] = ["tiny/echo", "big/echo", "zlast/echo"]
    data["sandbox"] = {"load_wait_ms": 1}
    cfg.write_text(yaml.safe_dump(data))
    wire = _start(held, wires)
    wire.handshake()
    # The gate opens as the process ends its serving: before its 1 ms wait for the load,
    # during it or after it ran out and the folder stops (whichever: each must end so).
    wire.close_stdin()
    held.open()
    code = wire.wait()
    err = wire.err.decode(errors="replace")
    assert code == 0, err[-3000:]
    assert "matches no handler" not in err and "names no plugin" not in err, err[-3000:]
    _clean(wire)


@pytest.fixture
def console_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                 ) -> Iterator[tuple[OmniApp, str, str]]:
    """A host serving /mcp while big.wasm's compile is held (tests/mcp/test_loading.py)."""
    with held_console(tmp_path, monkeypatch, "mcp-loading-attacks") as found:
        yield found


def _post(url: str, token: str, body: dict[str, Any], session: str | None = None
          ) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": PROTOCOL, **({"Mcp-Session-Id": session} if session else {})}
    return httpx.post(f"{url}/mcp", json={"jsonrpc": "2.0", **body}, headers=headers,
                      timeout=60)


def test_console_clients_that_leave_mid_wait_leave_nothing_waiting(
        console_held: tuple[OmniApp, str, str]) -> None:
    """Twenty lists and twenty calls over /mcp during the start, each client gone (its socket
    closed) while it waits: once the start ends nothing waits or stays woken, and a client
    after them lists both tools."""
    import socket
    from urllib.parse import urlsplit

    app, url, token = console_held
    init = _post(url, token, {"id": 1, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL, "capabilities": {},
        "clientInfo": {"name": "attacker", "version": "1"}}})
    assert init.status_code == 200, init.text
    session = init.headers["mcp-session-id"]
    assert _post(url, token, {"method": "notifications/initialized"}, session
                 ).status_code == 202
    where = urlsplit(url)
    socks = []
    for i in range(40):
        body = json.dumps({"jsonrpc": "2.0", "id": 100 + i, **(
            {"method": "tools/list"} if i % 2 else
            {"method": "tools/call", "params": {"name": "big.echo", "arguments": {}}})})
        request = (f"POST /mcp HTTP/1.1\r\nHost: {where.netloc}\r\n"
                   f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                   "Accept: application/json, text/event-stream\r\n"
                   f"MCP-Protocol-Version: {PROTOCOL}\r\nMcp-Session-Id: {session}\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n{body}")
        sock = socket.create_connection((where.hostname, where.port), timeout=60)
        sock.sendall(request.encode())
        socks.append(sock)
    arrivals = app.plugins._arrivals
    eventually(lambda: len(arrivals._wakers) >= 40, "every request waiting")
    assert app.plugins.waiting >= 20
    for sock in socks:
        sock.close()
    _Held.gate.set()
    eventually(lambda: not arrivals._wakers and app.plugins.waiting == 0,
               "nothing left waiting")
    listed = _post(url, token, {"id": 2, "method": "tools/list"}, session)
    text = listed.text
    assert '"big.echo"' in text and '"tiny.echo"' in text, text


def test_a_file_replaced_without_end_does_not_hold_the_start(
        served: tuple[HeldMcp, list[Wire]]) -> None:
    """churn.wasm rewritten over and over (two versions, each renamed into place) from before
    the start until after it: the start still ends, the list waiting for it is answered, and
    calls are answered while the churn goes on."""
    held, wires = served
    versions = [echo_wasm("churn", "1.0.0"), echo_wasm("churn", "2.0.0")]
    write(held.plugins, "churn.wasm", versions[0])
    stop = threading.Event()
    rewrites = 0

    def churn() -> None:
        nonlocal rewrites
        tmp = held.plugins.parent / "churn.tmp"
        while not stop.is_set() and rewrites < 100_000:  # bounded, whatever the test does
            tmp.write_bytes(versions[rewrites % 2])
            tmp.replace(held.plugins / "churn.wasm")
            rewrites += 1

    writer = threading.Thread(target=churn, daemon=True)
    writer.start()
    try:
        wire = _start(held, wires)
        wire.handshake()
        wire.request(1, "tools/list")
        wire.request(2, "ping")
        wire.answer(2)
        held.open()
        listed = _names(wire.answer(1))
        assert "big.echo" in listed and "tiny.echo" in listed, listed
        at = rewrites
        for i in range(20):
            wire.request(10 + i, "tools/call", {"name": "tiny.echo", "arguments": {"i": i}})
            assert json.loads(_text(wire.answer(10 + i))) == {"i": i}
        eventually(lambda: rewrites > at + 100, "the churn going on meanwhile")
    finally:
        stop.set()
        writer.join(60)
    wire.close_stdin()
    assert wire.wait() == 0
    _clean(wire)


#: big as the tools fixture declaring a prompt and a resource (its echo renders neither as
#: MCP wants, which says the handler was reached).
DECLARING_BIG = {**TOOLS_MANIFEST, "name": "big",
                 "prompts": [{"name": "p", "handler": "echo"}],
                 "resources": [{"uri": "echo://x", "name": "x", "handler": "echo"}]}


def test_prompts_and_resources_asked_during_the_start_wait_for_its_plugins(
        served: tuple[HeldMcp, list[Wire]]) -> None:
    """An agent lists tools, prompts and resources right after its handshake. Prompts and
    resources have no list_changed here (the server declares none): a list answered during
    the start, without big's, stayed so for the session; a prompt or resource of a plugin
    still loading answered 'no prompt' / 'no resource'. They wait as tools/list does."""
    held, wires = served
    write(held.plugins, "big.wasm", _padded(wasm("tools", DECLARING_BIG), 64 * 1024))
    cfg = held.appdir / "omnicore.yaml"
    data = yaml.safe_load(cfg.read_text())
    data["mcp"]["expose"] = ["tiny/echo", "big/*"]
    cfg.write_text(yaml.safe_dump(data))
    wire = _start(held, wires)
    wire.handshake()
    wire.request(1, "prompts/list")
    wire.request(2, "resources/list")
    wire.request(3, "resources/templates/list")
    wire.request(4, "prompts/get", {"name": "big.p", "arguments": {}})
    wire.request(5, "resources/read", {"uri": "echo://x"})
    wire.request(6, "ping")
    wire.answer(6)
    held.open()
    assert [p["name"] for p in wire.answer(1)["result"]["prompts"]] == ["big.p"]
    assert "echo://x" in [r["uri"] for r in wire.answer(2)["result"]["resources"]]
    assert "result" in wire.answer(3)
    assert "did not answer a prompt" in wire.answer(4)["error"]["message"], wire.answer(4)
    assert "did not answer resource contents" in wire.answer(5)["error"]["message"], \
        wire.answer(5)
    wire.close_stdin()
    assert wire.wait() == 0
    _clean(wire)

"""Servers that never answer, or answer a byte at a time, cannot hold a call past its deadline
(specs/abi.md §4.10, "Deadlines"): small fake servers on 127.0.0.1, one per behaviour, for
each connector kind. The client's timeouts are per read, so only a bound on the whole call
(the watchdog's cut) ends these."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from omnicore.egress.db import db_connector
from omnicore.egress.db.base import CLIENT_GRACE_S, HARD_GRACE_S
from omnicore.egress.db.service import _make
from omnicore.egress.refused import Refused

#: What a call may take past its deadline: the graces of the escalation and a loaded machine.
SLACK = CLIENT_GRACE_S + HARD_GRACE_S + 5.0


class FakeServer:
    """Accepts connections and, per ``mode``, says nothing ("silent") or sends ``greeting``
    one byte every 50 ms, forever ("drip"). Stops when the test ends."""

    def __init__(self, mode: str, greeting: bytes = b"") -> None:
        self.mode, self.greeting = mode, greeting
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.accepted = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        clients: list[socket.socket] = []
        while not self.stop.is_set():
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            clients.append(client)
            self.accepted.set()
            if self.mode == "drip":
                threading.Thread(target=self._drip, args=(client,), daemon=True).start()
        for c in clients:
            c.close()
        self.sock.close()

    def _drip(self, client: socket.socket) -> None:
        data = self.greeting * 1000
        for i in range(len(data)):
            if self.stop.wait(0.05):
                return
            try:
                client.sendall(data[i:i + 1])
            except OSError:
                return


@pytest.fixture(params=["silent", "drip"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    made: list[FakeServer] = []

    def start(greeting: bytes) -> int:
        s = FakeServer(request.param, greeting)
        made.append(s)
        return s.port

    yield request.param, start  # type: ignore[misc]
    for s in made:
        s.stop.set()


# A greeting long enough never to finish at one byte per 50 ms: MySQL's handshake packet
# header promises 0xffff bytes; PostgreSQL's a parameter status of 4 KiB; RESP a bulk string
# of a million bytes.
GREETINGS = {
    "mysql": b"\xff\xff\x00\x00\x0a" + b"5.5.5-10.11.6-MariaDB" + b"\x00" * 100,
    # (authentication ok, then a long parameter status; sslmode=disable, the default: libpq
    # asks for no TLS first)
    "postgres": b"R\x00\x00\x00\x08\x00\x00\x00\x00S\x00\x00\x0f\xff" + b"a" * 100,
    "redis": b"$1000000\r\n" + b"x" * 100,
}
URLS = {"mysql": "mysql://u@127.0.0.1:{port}/d", "postgres": "postgresql://u@127.0.0.1:{port}/d",
        "redis": "redis://127.0.0.1:{port}/0"}


@pytest.mark.parametrize("kind", ["mysql", "postgres", "redis"])
def test_a_server_that_never_finishes_its_greeting_ends_the_call_by_its_deadline(
        kind: str, server: tuple[str, object]) -> None:
    mode, start = server
    port = start(GREETINGS[kind])  # type: ignore[operator]
    connector = db_connector("fake", {"kind": kind, "url": URLS[kind].format(port=port)})
    backend = _make(connector, lambda name: None)
    budget = 2.0 if kind == "postgres" else 1.0  # (libpq's connect_timeout: whole seconds, 2 least)
    started = time.monotonic()
    with pytest.raises(Refused) as info:
        if kind == "redis":
            backend.command("p", "GET", ["k"], started + budget)
        else:
            backend.run("p", True, "SELECT 1", [], started + budget)
    took = time.monotonic() - started
    backend.close()
    assert info.value.status == "UNAVAILABLE", (mode, str(info.value))
    assert "timed out" in str(info.value) or "timeout" in str(info.value), str(info.value)
    assert took < budget + SLACK, (mode, took)


def test_a_redis_server_that_drips_a_reply_ends_the_call_by_its_deadline() -> None:
    """The exchange, not only the opening: a connection that opened (PING answered) and then
    drips its reply."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        client, _ = listener.accept()
        client.recv(1024)
        for _ in range(10_000):
            if stop.wait(0.05):
                break
            client.sendall(b"$")
        client.close()

    threading.Thread(target=serve, daemon=True).start()
    connector = db_connector("fake", {"kind": "redis", "url": f"redis://127.0.0.1:{port}/0"})
    backend = _make(connector, lambda name: None)
    started = time.monotonic()
    try:
        with pytest.raises(Refused) as info:
            backend.command("p", "GET", ["k"], started + 1.0)
    finally:
        stop.set()
        backend.close()
        listener.close()
    assert str(info.value) == "connector fake: timed out"
    assert time.monotonic() - started < 1.0 + SLACK


def test_a_read_only_redis_connector_refuses_every_write_before_it_is_sent() -> None:
    connector = db_connector("ro", {"kind": "redis", "url": "redis://127.0.0.1:9/0",
                                    "read_only": True})
    backend = _make(connector, lambda name: None)
    for cmd, args in (("SET", ["k", "v"]), ("DEL", ["k"]), ("GETDEL", ["k"]),
                      ("LPOP", ["k"]), ("INCR", ["k"]), ("PUBLISH", ["c", "m"]),
                      ("EXPIRE", ["k", "1"])):
        with pytest.raises(Refused) as info:
            backend.command("p", cmd, args, time.monotonic() + 1)
        assert (info.value.status, str(info.value)) == (
            "DENIED", f"connector ro is read-only: {cmd} writes")
    backend.close()

"""A hostile guest and a hostile client against a served ``wasi:http/proxy`` component
(issue 65, deliverable 5; specs/http-routes.md §9): tests/routes/proxy/hostile_app.py misuses
the host's wasi:http and wasi:io (children outliving their parents, finish twice, writes after
finish, pollables by the thousand, huge headers and trailers, traps mid-stream), and clients
send bodies at and past the cap, broken framing, floods of HTTP/2 streams and hang-ups. Each
case is an outcome: a status (or, after a streamed head, the connection ended without the
body's end) within the route's deadline, and the host unharmed after it: the next request
answers, no call is left running, the threads are bounded."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import httpx
import pytest

from omnicore.routes.proxy import THREADS
from omnicore.routes.wasihttp import MAX_HANDLES
from tests.routes.conftest import RouteHost
from tests.routes.test_proxy_components import (
    _H2,
    HEAD_BY_MS,
    _authority,
    _connect,
    _h2_get,
    componentized,
)
from tests.waiting import eventually


def hostile_wasm() -> bytes:
    """tests/routes/proxy/hostile_app.py built by componentize-py (cached by its sources'
    digest)."""
    return componentized("hostile_app", "hostile")


def route(path: str, **more: Any) -> dict[str, Any]:
    return {"plugin": "hostile", "handler": "handle", "path": path,
            "methods": more.pop("methods", ["GET", "POST"]), "auth": "public", **more}


def start(route_host: Callable[..., RouteHost], sidecar: str = "",
          **routes: dict[str, Any]) -> RouteHost:
    host = route_host(plugins={"hostile.wasm": hostile_wasm()},
                      sidecars={"hostile.yaml": sidecar} if sidecar else {},
                      routes={"any": route("/any/{leaf}", timeout_ms=10_000),
                              **routes})
    # warmed: the proxy's thread pool and an instance made before the threads are counted
    assert host.client.get("/http/any/hi").text == "hostile /any/hi"
    return host


def in_flight(host: RouteHost) -> int:
    token = getattr(host, "_token", None) or host.token()
    object.__setattr__(host, "_token", token)
    listed = host.client.get("/api/v1/routes",
                             headers={"Authorization": f"Bearer {token}"}).json()
    return sum(int(r["in_flight"]) for r in listed["routes"])


def unharmed(host: RouteHost, threads: int) -> None:
    """The host answers again, nothing of the attack still runs, its threads bounded."""
    r = host.client.get("/http/any/again")
    assert r.status_code == 200 and r.text == "hostile /any/again", r.text
    assert host.client.get("/healthz").status_code == 200
    eventually(lambda: in_flight(host) == 0, "every call's end")
    assert threading.active_count() <= threads + THREADS, \
        (threading.active_count(), threads)


def test_a_guest_misusing_its_handles_gets_a_status(
        route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host)
    threads = threading.active_count()
    c = host.client
    # the body read after the response was set and finished: the answer is the response
    r = c.post("/http/any/late-read", content=b"x" * 200_000)
    assert r.status_code == 200 and r.text == "answered", r.text
    # the incoming-body dropped before its stream: the stream still reads to its end
    r = c.post("/http/any/drop-in", content=b"y" * 100_000)
    assert r.status_code == 200 and r.text == "read 100000 StreamError_Closed", r.text
    # the outgoing-body dropped unfinished before its stream: an incomplete response
    r = c.get("/http/any/drop-out")
    assert r.status_code == 502 and "incomplete" in r.json()["error"], r.text
    # finish twice: a trap, a 500 (the first finish answered nothing yet)
    r = c.get("/http/any/finish-twice")
    assert r.status_code == 500 and r.json()["error"] == "the handler failed", r.text
    # a pollable of a dropped stream blocked on: it still answers (the body's end)
    r = c.post("/http/any/dropped-pollable", content=b"z")
    assert r.status_code == 200 and r.text == "ready True", r.text
    # a poll of one pollable answers; of several (one 10,000 times, 4,000 distinct ones) it
    # is a trap today, a 500 and no more: wasmtime 50's C API cannot lift a second borrowed
    # handle in one host call ("deferred host scope has no call context"; splice too)
    r = c.get("/http/any/poll=one")
    assert r.status_code == 200 and r.text == "ready [0]", r.text
    for leaf in ("poll=two", "poll-many"):
        r = c.get(f"/http/any/{leaf}")
        assert r.status_code in (200, 500), r.text
        if r.status_code == 200:
            assert r.text == {"poll=two": "ready [0, 1]",
                              "poll-many": "ready [10000, 4000]"}[leaf], r.text
    unharmed(host, threads)


def test_writes_after_finish_are_refused(route_host: Callable[..., RouteHost]) -> None:
    """outgoing-body.finish ends the body: a write to its stream after it is refused
    (closed), never appended after the end the guest declared."""
    host = start(route_host)
    threads = threading.active_count()
    r = host.client.get("/http/any/write-after-finish")
    assert r.status_code == 200 and r.text == "before", r.text
    unharmed(host, threads)


def test_handles_a_guest_keeps_across_requests_are_bounded(
        route_host: Callable[..., RouteHost]) -> None:
    """A reused instance's guest that keeps 1,000 handles of each request in its module state
    (the host forgets their objects at the request's end, wasmtime's table keeps the
    handles): past MAX_HANDLES kept so, the instance is retired and a fresh one serves, so
    the handles one instance holds stay bounded however many requests it serves."""
    host = start(route_host)
    threads = threading.active_count()
    held = []
    for _ in range(12):
        r = host.client.get("/http/any/hoard-global")
        assert r.status_code == 200 and r.text.startswith("held "), r.text
        held.append(int(r.text.split()[1]))
    assert max(held) <= MAX_HANDLES + 1000, held
    assert held[:4] == [1000, 2000, 3000, 4000] and held[5] < held[4], held
    unharmed(host, threads)


@pytest.mark.parametrize("status", [204, 304, 205, 101, 103, 999])
def test_a_bodiless_or_invalid_status_with_a_body(route_host: Callable[..., RouteHost],
                                                  status: int) -> None:
    """A status HTTP sends no body with (or none a route may answer), with a body, answered
    whole or streamed: the body dropped or a 502, never a server fault; the connection
    after it still good."""
    host = start(route_host)
    threads = threading.active_count()
    for leaf in (f"status={status}", f"streamed={status}"):
        try:
            r = host.client.get(f"/http/any/{leaf}")
        except httpx.RemoteProtocolError as exc:  # a streamed head, its body cut: no more
            assert leaf.startswith("streamed") and status in (204, 304), exc
            continue
        assert r.status_code in (status, 502), (leaf, r.status_code)
        if r.status_code in (204, 304):
            assert r.content == b"", (leaf, r.content)
        unharmed(host, threads)  # on the same connection
    unharmed(host, threads)


def test_response_bodies_a_guest_never_sends_are_bounded(
        route_host: Callable[..., RouteHost]) -> None:
    """Each outgoing-response has a body buffer of its own, capped at max_response_bytes: a
    guest filling many it never sets made the host hold the cap times the handles (40 MiB
    held on a 1 MiB route here; 4096 x 8 MiB by default). The body bytes a request writes are
    bounded by the route's cap plus wasihttp.MAX_BODY_BYTES: past it the guest traps, 500."""
    # (a deadline long enough for all of it: the bound, not the deadline, stops it)
    host = start(route_host, "limits: {timeout_ms: 30000}\n",
                 cap=route("/cap/{leaf}", max_response_bytes=1 << 20, timeout_ms=40_000))
    threads = threading.active_count()
    r = host.client.get("/http/cap/bodies=1x1048576")  # one full body: fine
    assert r.status_code == 200 and r.text == "wrote 1 bodies", r.text
    r = host.client.get("/http/cap/bodies=40x1048576")
    assert r.status_code == 500 and r.json()["error"] == "the handler failed", r.text
    unharmed(host, threads)


def test_huge_response_heads_and_trailers_are_bounded(
        route_host: Callable[..., RouteHost]) -> None:
    # (the plugin's and the route's deadlines far: the bound, not a deadline, stops it on a
    # loaded machine, where the 100,000 headers took the route's 10 s)
    host = start(route_host, "limits: {timeout_ms: 30000}\n",
                 any=route("/any/{leaf}", timeout_ms=30_000))
    threads = threading.active_count()
    c = host.client
    # 100,000 headers, a 10 MiB header value: past MAX_FIELD_BYTES the guest traps
    for leaf in ("headers=100000", "value=10485760"):
        r = c.get(f"/http/any/{leaf}")
        assert r.status_code == 500 and r.json()["error"] == "the handler failed", r.text
    # framing and hop-by-hop headers of the guest's are not sent as its
    r = c.get("/http/any/bad-head")
    assert r.status_code == 200 and r.text == "short", r.text
    assert r.headers["content-length"] == "5" and r.headers["x-fine"] == "yes"
    assert "transfer-encoding" not in r.headers
    # trailers it may not send are dropped; a large one (within the budget) goes
    _head, body, tail = _h2_get(host, "/http/any/trailers=1000")
    assert body == b"body" and tail == [(b"x-ok", b"fine"), (b"x-big", b"v" * 1000)], tail
    # trailers over the header budget: a trap, so a 500, or (its response set first, the
    # head already streamed while the guest built 2 MiB) the answer ended without its end
    try:
        r = c.get(f"/http/any/trailers={2 << 20}")
        assert r.status_code == 500 and r.json()["error"] == "the handler failed", r.text
    except httpx.RemoteProtocolError as exc:
        assert "incomplete" in str(exc), exc
    unharmed(host, threads)


def test_a_guest_spliced_to_a_trickling_client(route_host: Callable[..., RouteHost]) -> None:
    """The request body spliced into the response as it comes, a client trickling a byte at
    a time: its bytes back as it sends them, then the end -- or, while wasmtime cannot lift
    splice's second borrowed handle (see the poll case above), the trap's end of the
    streamed answer; the host unharmed either way."""
    host = start(route_host)
    threads = threading.active_count()
    h = _H2(host, "POST", "/http/any/splice", more=True)
    status = None
    try:
        h.send(b"0")
        h.until(lambda: bool(h.head) and (h.ended or h.body.endswith(b"0")))
        status = dict(h.head)[b":status"]
        if status == b"200" and not h.ended:
            for i in range(1, 5):
                h.send(b"%d" % i)
                h.until(lambda i=i: h.body.endswith(b"%d" % i))
            h.send(b"", end=True)
            h.until(lambda: h.ended)
            assert h.body == b"01234|5 StreamError_Closed", h.body
        else:
            assert status == b"500" or not h.body.endswith(b"Closed"), (status, h.body)
    except AssertionError as exc:  # the server ended the connection: the trap mid-stream
        assert "closed the connection" in str(exc) and status == b"200", (exc, status)
    finally:
        h.close()
    unharmed(host, threads)


def test_a_streamed_answer_ends_unfinished_on_a_trap_or_the_deadline(
        route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host, keep=route("/keep/{leaf}", timeout_ms=HEAD_BY_MS),
                 big=route("/big/{leaf}", timeout_ms=10_000, max_response_bytes=500))
    threads = threading.active_count()
    for path, first in (("/http/any/trap-mid", b"part one\n"),
                        ("/http/keep/keep-writing", b"."),
                        ("/http/big/keep-writing", b".")):
        began = time.monotonic()
        with host.client.stream("GET", path) as r:
            assert r.status_code == 200, (path, r.status_code)
            got = b""
            with pytest.raises(httpx.RemoteProtocolError):
                for chunk in r.iter_raw():
                    got += chunk
            assert got.startswith(first), (path, got[:100])
        # the route's deadline (HEAD_BY_MS), the cap (500 bytes at 100 a second) or the trap
        assert time.monotonic() - began < HEAD_BY_MS / 1000 + 6, path
    unharmed(host, threads)


def test_an_answer_finished_while_its_call_runs_on_is_sent_whole(
        route_host: Callable[..., RouteHost]) -> None:
    """late-read sets its response and finishes its body, then reads the request's body to
    its end, which the client holds back a second (ten times STREAM_AFTER_S): the answer is
    not streamed for the call running on but sent whole at its end, framed by its length,
    as a quick call's is (before, it went chunked once the call ran past 100 ms, so its
    framing, its trailers and what a trap after the finish gives followed the host's
    load). A host too slow to finish within the second sends nothing early either."""
    host = start(route_host, "limits: {timeout_ms: 30000}\n")
    with _connect(host) as sock:
        sock.sendall(b"POST /http/any/late-read HTTP/1.1\r\nhost: "
                     + _authority(host).encode()
                     + b"\r\ntransfer-encoding: chunked\r\n\r\n3e8\r\n" + b"x" * 1000
                     + b"\r\n")
        sock.settimeout(1.0)
        with pytest.raises(TimeoutError):
            early = sock.recv(65536)
            raise AssertionError(f"sent before the call's end: {early[:300]!r}")
        sock.settimeout(15)
        sock.sendall(b"0\r\n\r\n")
        answer = b""
        while not (b"\r\n\r\n" in answer and answer.endswith(b"answered")):
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    head = answer.partition(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 200") and b"\r\ncontent-length: 8" in head, answer
    assert b"transfer-encoding" not in head, answer
    still = host.client.get("/http/any/again")
    assert still.status_code == 200 and still.text == "hostile /any/again", still.text


def _raw(host: RouteHost, data: bytes, *, shut: bool = False) -> bytes:
    with _connect(host) as sock:
        sock.sendall(data)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and not shut:
                    break
    return answer


def test_bodies_at_and_past_the_cap_and_broken_framing(
        route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host, small=route("/small/{leaf}", max_body_bytes=1000,
                                         timeout_ms=3000))
    threads = threading.active_count()
    at = host.client.post("/http/small/read", content=b"x" * 1000)
    assert at.status_code == 200 and at.text == "read 1000 StreamError_Closed", at.text

    def chunked(n: int) -> Any:
        yield b"x" * (n - 1)
        yield b"x"

    r = host.client.post("/http/small/read", content=chunked(1000))
    assert r.status_code == 200 and r.text == "read 1000 StreamError_Closed", r.text
    for content in (b"x" * 1001, chunked(1001)):
        r = host.client.post("/http/small/read", content=content)
        assert r.status_code == 413, r.text
    auth = _authority(host)
    # a Content-Length the body falls short of, the client's side then shut: the body's end
    # never comes, the guest's read fails, the client gets 400 (or nothing: it went)
    answer = _raw(host, f"POST /http/small/read HTTP/1.1\r\nHost: {auth}\r\n"
                        "Content-Length: 100\r\n\r\nabc".encode(), shut=True)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:200]
    # chunk sizes that are not hex, or absurd
    for size in (b"zz", b"-1", b"FFFFFFFFFFFFFFFFFFFF"):
        answer = _raw(host, f"POST /http/small/read HTTP/1.1\r\nHost: {auth}\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n".encode() +
                      size + b"\r\nabc\r\n0\r\n\r\n", shut=True)
        assert answer == b"" or answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 413")), \
            (size, answer[:200])
    unharmed(host, threads)


def test_a_client_gone_mid_body_frees_the_guest(route_host: Callable[..., RouteHost]) -> None:
    """The guest blocks reading a body whose client hangs up: its read fails at once (not at
    the deadline), the call ends, the slot is free."""
    host = start(route_host, wait=route("/wait/{leaf}", timeout_ms=60_000))
    threads = threading.active_count()
    with _connect(host) as sock:
        sock.sendall(f"POST /http/wait/read HTTP/1.1\r\nHost: {_authority(host)}\r\n"
                     "Content-Length: 100000\r\n\r\n".encode() + b"x" * 10)
        eventually(lambda: in_flight(host) == 1, "the guest reading")
    began = time.monotonic()
    eventually(lambda: in_flight(host) == 0, "the guest's end")
    assert time.monotonic() - began < 20
    unharmed(host, threads)


def test_a_flood_of_http2_streams_at_max_concurrent(
        route_host: Callable[..., RouteHost]) -> None:
    """A thousand HTTP/2 streams at once (ten connections of a hundred, Hypercorn's limit a
    connection) to a route of max_concurrent 2, each sending a byte of a body that never
    ends: two wait for their bodies (408 at the deadline), every other one 503 at once."""
    host = start(route_host, slow=route("/slow/{leaf}", timeout_ms=5000, max_concurrent=2))
    threads = threading.active_count()
    n, links = 100, []
    for _ in range(10):
        sock = _connect(host)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        for sid in (1 + 2 * i for i in range(n)):  # each waits for a body that never comes
            conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                                    (":authority", _authority(host)),
                                    (":path", "/http/slow/read")], end_stream=False)
            conn.send_data(sid, b"a")
        sock.sendall(conn.data_to_send())
        links.append((sock, conn))
    codes: list[int] = []
    began = time.monotonic()
    try:
        for sock, conn in links:
            statuses: dict[int, int] = {}
            while len(statuses) < n:
                data = sock.recv(65536)
                assert data, "the server closed the connection"
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        statuses[event.stream_id] = int(dict(event.headers)[b":status"])
                sock.sendall(conn.data_to_send())
            codes += statuses.values()
    finally:
        for sock, _ in links:
            sock.close()
    # Every stream answered: refused at the cap (503), or given a slot and then out of time
    # for its body (408; on a loaded machine a slot frees while the flood still comes).
    assert len(codes) == 10 * n and set(codes) <= {503, 408}, sorted(codes)[:5]
    assert codes.count(503) >= 9 * n, codes.count(408)
    assert time.monotonic() - began < 60
    unharmed(host, threads)


def test_a_client_gone_mid_response_or_asking_head(route_host: Callable[..., RouteHost],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A client that hangs up after a streamed answer's first bytes, while the guest writes
    on, and one that asks HEAD of it: no host error, the call ends at its deadline."""
    host = start(route_host, keep=route("/keep/{leaf}", timeout_ms=HEAD_BY_MS))
    threads = threading.active_count()
    for _ in range(3):
        with _connect(host) as sock:
            sock.sendall(f"GET /http/keep/keep-writing HTTP/1.1\r\n"
                         f"Host: {_authority(host)}\r\n\r\n".encode())
            got = b""
            while b"\r\n\r\n" not in got or not got.endswith(b".\r\n"):
                chunk = sock.recv(65536)
                assert chunk, got
                got += chunk
            assert got.startswith(b"HTTP/1.1 200"), got[:100]
    r = host.client.head("/http/keep/keep-writing")
    assert r.status_code == 200 and r.content == b"", r
    unharmed(host, threads)
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert not errors, [rec.getMessage() for rec in errors]


def test_a_guest_flooding_its_log(route_host: Callable[..., RouteHost]) -> None:
    """stdout in a loop until the deadline, or one 8 MiB line: the plugin's log ring takes
    what its rate allows, the call ends at its deadline (504) or answers, the host serves."""
    host = start(route_host, flood=route("/flood/{leaf}", timeout_ms=20_000))
    threads = threading.active_count()
    began = time.monotonic()
    r = host.client.get("/http/flood/print-loop")
    assert r.status_code == 504, r.text  # the plugin's deadline (1 s)
    assert time.monotonic() - began < 15
    r = host.client.get("/http/flood/print-huge")
    assert r.status_code == 200 and r.text == "printed", r.text
    unharmed(host, threads)


def test_http2_bodies_at_and_past_the_cap_and_a_wrong_length(
        route_host: Callable[..., RouteHost]) -> None:
    """Over HTTP/2 (no Content-Length needed): a body of exactly the cap is read whole, one
    byte more is 413, and a declared length the body falls short of or exceeds is 400 (or
    the stream reset by the server's own check) -- in time, the host unharmed."""
    host = start(route_host, small=route("/small/{leaf}", max_body_bytes=1000,
                                         timeout_ms=3000))
    threads = threading.active_count()

    def post(body: bytes, length: int | None = None) -> tuple[bytes, bytes]:
        sock = _connect(host)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=False,
            normalize_outbound_headers=False))
        conn.initiate_connection()
        headers = [(":method", "POST"), (":scheme", "http"), (":authority", _authority(host)),
                   (":path", "/http/small/read")]
        if length is not None:
            headers.append(("content-length", str(length)))
        conn.send_headers(1, headers)
        conn.send_data(1, body, end_stream=True)
        sock.sendall(conn.data_to_send())
        status, got = b"", b""
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return status or b"closed", got
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        status = dict(event.headers)[b":status"]
                    elif isinstance(event, h2.events.DataReceived):
                        got += event.data
                    elif isinstance(event, h2.events.StreamEnded):
                        return status, got
                    elif isinstance(event, h2.events.StreamReset):
                        return status or b"reset", got
                try:
                    sock.sendall(conn.data_to_send())
                except (BrokenPipeError, ConnectionResetError):  # answered, then closed
                    return status or b"closed", got
        finally:
            sock.close()

    assert post(b"x" * 1000) == (b"200", b"read 1000 StreamError_Closed")
    assert post(b"x" * 1001)[0] == b"413"
    for body, length in ((b"x" * 10, 20), (b"x" * 20, 10)):
        status, _ = post(body, length)
        assert status in (b"400", b"reset", b"closed"), (length, status)
    unharmed(host, threads)


def test_a_call_still_queued_at_its_route_deadline_never_starts(
        route_host: Callable[..., RouteHost]) -> None:
    """Twice as many never-answering requests as the proxies' threads, on a route whose
    deadline (1 s) comes long before the plugin's (5 s): every client has its 504 at the
    route's deadline, and the calls still queued for a thread then are never started. Before,
    each ran its guest to the plugin's deadline after its client had gone, holding the pool
    every proxy plugin shares for two plugin deadlines."""
    host = start(route_host, sidecar="limits:\n  timeout_ms: 5000\n",
                 slow={**route("/slow/{leaf}", timeout_ms=1000), "max_concurrent": 1000})
    threads = threading.active_count()
    assert host.burst("/http/slow/sleep", 2 * THREADS) == [504] * (2 * THREADS)
    eventually(lambda: in_flight(host) == 0, "every call's end", timeout=60)
    started = [ln.message for ln in host.app.plugins.logs("hostile").lines()
               if ln.message == "started"]
    assert 0 < len(started) <= THREADS, len(started)
    unharmed(host, threads)


def test_one_plugins_calls_held_to_their_deadline_leave_another_plugins_routes_served(
        route_host: Callable[..., RouteHost]) -> None:
    """THREADS calls of one proxy plugin that never answer, each held to its deadline: a
    route of another proxy plugin answers meanwhile. Every proxy plugin's calls ran on one
    shared pool of THREADS, so a hostile plugin held every thread the others' routes had,
    for its whole deadline; each plugin's calls now run on its own door (plugins/door.py)."""
    from tests.routes.test_proxy_components import proxy_wasm
    from tests.routes.test_proxy_components import route as hello_route

    held_s = 20  # (under the burst's own client timeout, 30 s)
    host = route_host(plugins={"hostile.wasm": hostile_wasm(), "hello.wasm": proxy_wasm()},
                      sidecars={"hostile.yaml": f"limits:\n  timeout_ms: {held_s * 1000}\n",
                                "hello.yaml": "limits:\n  timeout_ms: 10000\n"},
                      routes={"slow": {**route("/slow/{leaf}", timeout_ms=held_s * 1000),
                                       "max_concurrent": 1000},
                              "hello": hello_route("/hello/{rest...}")})
    statuses: list[list[int]] = []
    holding = threading.Thread(target=lambda: statuses.append(
        host.burst("/http/slow/sleep", THREADS)), daemon=True)
    holding.start()

    def started() -> int:
        return sum(1 for ln in host.app.plugins.logs("hostile").lines()
                   if ln.message == "started")

    eventually(lambda: started() == THREADS, "every held call started", timeout=60)
    # Well inside the held calls' deadline: answered by the other plugin's own threads.
    r = httpx.get(f"{host.url}/http/hello/x", timeout=held_s / 2)
    assert r.status_code == 200 and r.text.startswith("hello GET /hello/x"), r.text
    assert holding.is_alive() and not statuses  # the held calls still held
    holding.join(held_s + 30)
    assert statuses == [[504] * THREADS]

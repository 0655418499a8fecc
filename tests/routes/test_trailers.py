"""Trailers both ways on a proxy component's route, over HTTP/1.1 as over HTTP/2 (issue 65,
deliverable 1; omnicore/console/http1.py, http2.py; routes/proxy.py, wasihttp.py): the
response's in the last chunk of a chunked HTTP/1.1 answer to a client that sent ``TE:
trailers``, a request's to the guest's ``future-trailers.get``, within the route's header
caps. Real clients on real sockets (h11, h2, curl); tests/routes/proxy/app.py's ``trailers``
leaf sets response trailers (one a trailer may not carry), its ``finish`` leaf says the
request trailers it got."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import h11

from omnicore.console.http1 import takes_trailers
from omnicore.routes import sign_github
from omnicore.routes.proxy import request_trailer_fields
from tests.routes.conftest import RouteHost
from tests.routes.test_proxy_components import (
    _H2,
    _authority,
    _connect,
    route,
    start,
    still_serving,
)


class _H1:
    """One HTTP/1.1 connection (h11 as the client) for requests one after another."""

    def __init__(self, host: RouteHost) -> None:
        self.sock = _connect(host)
        self.conn = h11.Connection(h11.CLIENT)
        self.host = _authority(host).encode()

    def send(self, *events: Any) -> None:
        for event in events:
            data = self.conn.send(event)
            if data:
                self.sock.sendall(data)

    def request(self, method: bytes, path: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.send(h11.Request(method=method, target=path, headers=[(b"host", self.host), *headers]))

    def until_body(self, part: bytes) -> tuple[h11.Response, bytes]:
        """Read until the answer's body holds ``part``: its head and the body so far."""
        got = b""
        head: h11.Response | None = None
        while part not in got:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(65536))
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                got += event.data
        assert head is not None, got
        return head, got

    def response(self, head: h11.Response | None = None
                 ) -> tuple[h11.Response, bytes, list[tuple[bytes, bytes]]]:
        """The answer: its head (or ``head``, read already), its body (what is left of it)
        and its trailer fields (none: empty)."""
        body = b""
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = self.sock.recv(65536)
                self.conn.receive_data(data)
                assert data, "the server closed the connection mid-answer"
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return head, body, [(bytes(k), bytes(v)) for k, v in event.headers]
            else:
                raise AssertionError(f"unexpected {event!r}")

    def next(self) -> None:
        """Ready for the next request on this connection (keep-alive)."""
        self.conn.start_next_cycle()

    def close(self) -> None:
        self.sock.close()


def _get(h: _H1, path: bytes, headers: list[tuple[bytes, bytes]] | None = None
         ) -> tuple[h11.Response, bytes, list[tuple[bytes, bytes]]]:
    h.request(b"GET", path, headers or [])
    h.send(h11.EndOfMessage())
    return h.response()


def _raw_header(head: h11.Response, name: bytes) -> list[bytes]:
    return [v for k, v in head.headers if k == name]


# -- response trailers over HTTP/1.1 ---------------------------------------------------------


def test_response_trailers_reach_an_http11_client_that_takes_them(
        route_host: Callable[..., RouteHost]) -> None:
    """Answered whole and streamed: chunked, the guest's trailers in the last chunk (the one
    a trailer may not carry, content-length, dropped) when the client sent TE: trailers;
    without it, or to an HTTP/1.0 client, the body alone and no error; the keep-alive
    connection serves the next request after each."""
    host = start(route_host, stream=route("/stream/{leaf}", timeout_ms=20_000))
    h = _H1(host)
    try:
        head, body, tail = _get(h, b"/http/hello/trailers", [(b"te", b"trailers")])
        assert head.status_code == 200 and body == b"with trailers", (head, body)
        assert _raw_header(head, b"transfer-encoding") == [b"chunked"], head.headers
        assert not _raw_header(head, b"content-length"), head.headers
        assert tail == [(b"x-checksum", b"abc123")], tail
        # the same connection, no TE: content-length framing, no trailer section
        h.next()
        head, body, tail = _get(h, b"/http/hello/trailers")
        assert head.status_code == 200 and body == b"with trailers" and tail == [], tail
        assert _raw_header(head, b"content-length") == [b"13"], head.headers
        # TE listing trailers among other codings (RFC 9110 §10.1.4)
        h.next()
        head, body, tail = _get(h, b"/http/hello/trailers", [(b"te", b"gzip;q=0.5, trailers")])
        assert tail == [(b"x-checksum", b"abc123")], tail
        # no trailers set: a plain answer
        h.next()
        head, body, tail = _get(h, b"/http/hello/x", [(b"te", b"trailers")])
        assert body.startswith(b"hello GET /hello/x") and tail == [], (body, tail)
        # a HEAD: no body, no trailers, no error
        h.next()
        h.request(b"HEAD", b"/http/hello/trailers", [(b"te", b"trailers")])
        h.send(h11.EndOfMessage())
        head, body, tail = h.response()
        assert head.status_code in (200, 405) and body == b"" and tail == []
    finally:
        h.close()
    # streamed: the echo's head and first chunk come before the client sends the rest;
    # the trailers it gives come after the body's end, announced in its head or not (an
    # answer begun before its request's end closes the connection after it: the console's
    # rule, not the trailers'); none given: an empty trailer section
    for query, want in ((b"", [(b"x-echoed", b"10")]), (b"?unannounced", [(b"x-echoed", b"10")]),
                        (b"?no-trailers", [])):
        h = _H1(host)
        try:
            h.request(b"POST", b"/http/stream/echo" + query,
                      [(b"te", b"trailers"), (b"transfer-encoding", b"chunked")])
            h.send(h11.Data(data=b"first,"))
            head_seen, got = h.until_body(b"first,")
            assert (b"x-echo", b"yes") in head_seen.headers
            assert _raw_header(head_seen, b"transfer-encoding") == [b"chunked"]
            h.send(h11.Data(data=b"last"), h11.EndOfMessage())
            _head, rest, tail = h.response(head_seen)
            assert got + rest == b"first,last|StreamError_Closed", (query, got + rest)
            assert tail == want, (query, tail)
        finally:
            h.close()
    # HTTP/1.0 cannot chunk: the body alone, the connection closed after it
    sock = _connect(host)
    try:
        sock.sendall(b"GET /http/hello/trailers HTTP/1.0\r\nhost: " + _authority(host).encode()
                     + b"\r\nte: trailers\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    finally:
        sock.close()
    head10, _, body10 = data.partition(b"\r\n\r\n")
    assert head10.startswith(b"HTTP/1.1 200") and body10 == b"with trailers", data
    assert b"transfer-encoding" not in head10.lower(), head10
    still_serving(host)


def test_curl_sees_the_trailer_section(route_host: Callable[..., RouteHost]) -> None:
    """curl, a client of its own, reads the chunked answer's trailer section (``--raw``
    shows the chunks as sent) and decodes the body around it."""
    host = start(route_host)
    url = f"{host.url}/http/hello/trailers"
    raw = subprocess.run(["curl", "-sS", "--raw", "-H", "TE: trailers", url],
                         capture_output=True, timeout=30, check=True).stdout
    assert raw == b"d\r\nwith trailers\r\n0\r\nx-checksum: abc123\r\n\r\n", raw
    plain = subprocess.run(["curl", "-sS", "-H", "TE: trailers", url],
                           capture_output=True, timeout=30, check=True).stdout
    assert plain == b"with trailers", plain


# -- request trailers ------------------------------------------------------------------------


def test_request_trailers_reach_the_guest_over_http11(
        route_host: Callable[..., RouteHost]) -> None:
    """A chunked request's trailer section is the guest's future-trailers (fields a trailer
    may not carry, and cookie, left out); none sent, none got; the connection serves the
    next request after a trailered one."""
    host = start(route_host)
    h = _H1(host)
    try:
        h.request(b"POST", b"/http/hello/finish", [(b"transfer-encoding", b"chunked")])
        h.send(h11.Data(data=b"a" * 5000),
               h11.EndOfMessage(headers=[(b"x-digest", b"sha-256=abc"), (b"X-Two", b"2"),
                                         (b"authorization", b"Bearer stolen"),
                                         (b"cookie", b"omnicore_session=x"),
                                         (b"content-length", b"1")]))
        head, body, _ = h.response()
        assert head.status_code == 200, body
        assert body == b"request trailers: some x-digest=sha-256=abc; x-two=2", body
        h.next()
        h.request(b"POST", b"/http/hello/finish", [(b"transfer-encoding", b"chunked")])
        h.send(h11.Data(data=b"b" * 10), h11.EndOfMessage())
        head, body, _ = h.response()
        assert body == b"request trailers: none", body
        h.next()  # and an ordinary request after them, on the same connection
        h.request(b"POST", b"/http/hello/again", [(b"content-length", b"2")])
        h.send(h11.Data(data=b"ok"), h11.EndOfMessage())
        head, body, _ = h.response()
        assert head.status_code == 201 and body.endswith(b"body=ok"), body
    finally:
        h.close()
    still_serving(host)


def test_request_trailers_reach_the_guest_over_http2(
        route_host: Callable[..., RouteHost]) -> None:
    """A HEADERS frame ending the stream after its DATA: the guest's future-trailers."""
    host = start(route_host)
    h = _H2(host, "POST", "/http/hello/finish", more=True)
    try:
        h.send(b"a" * 5000)
        h.conn.send_headers(1, [("x-digest", "sha-256=abc"), ("authorization", "Bearer x")],
                            end_stream=True)
        h.sock.sendall(h.conn.data_to_send())
        h.until(lambda: h.ended)
    finally:
        h.close()
    assert (b":status", b"200") in h.head, h.head
    assert h.body == b"request trailers: some x-digest=sha-256=abc", h.body
    still_serving(host)


def test_request_trailers_are_held_to_the_routes_header_caps(
        route_host: Callable[..., RouteHost]) -> None:
    """A client cannot pass a route's max_header_bytes or max_headers by sending its fields
    as trailers: headers and trailers are counted together, 431 past either (HTTP/1.1 and
    HTTP/2); a trailer section over the server's own head limit is refused as a head is."""
    host = start(route_host, tight=route("/tight/{leaf}", max_header_bytes=1024,
                                         max_headers=20, timeout_ms=20_000))
    big = [(b"x-pad", b"p" * 600), (b"x-pad2", b"q" * 600)]  # 1,211 bytes: each head fits
    h = _H1(host)
    try:
        # within the caps: the guest gets them
        h.request(b"POST", b"/http/tight/finish", [(b"transfer-encoding", b"chunked")])
        h.send(h11.Data(data=b"x"), h11.EndOfMessage(headers=big[:1]))
        head, body, _ = h.response()
        assert head.status_code == 200 and body.startswith(b"request trailers: some x-pad="), \
            body
    finally:
        h.close()
    h = _H1(host)
    try:  # over the bytes: 431, as those fields sent as headers are
        h.request(b"POST", b"/http/tight/finish", [(b"transfer-encoding", b"chunked")])
        h.send(h11.Data(data=b"x"), h11.EndOfMessage(headers=big))
        head, body, _ = h.response()
        assert head.status_code == 431 and b"1024 bytes" in body, (head, body)
    finally:
        h.close()
    h = _H1(host)
    try:  # over the count
        h.request(b"POST", b"/http/tight/finish", [(b"transfer-encoding", b"chunked")])
        h.send(h11.Data(data=b"x"),
               h11.EndOfMessage(headers=[(f"x-t{i}".encode(), b"1") for i in range(25)]))
        head, body, _ = h.response()
        assert head.status_code == 431 and b"20 headers" in body, (head, body)
    finally:
        h.close()
    # HTTP/2
    h2c = _H2(host, "POST", "/http/tight/finish", more=True)
    try:
        h2c.send(b"x")
        h2c.conn.send_headers(1, [(k.decode(), v.decode()) for k, v in big], end_stream=True)
        h2c.sock.sendall(h2c.conn.data_to_send())
        h2c.until(lambda: h2c.ended)
    finally:
        h2c.close()
    assert (b":status", b"431") in h2c.head, h2c.head
    # over h11's own limit for a head (16 KiB): refused by the server, 431, the
    # connection closed
    sock = _connect(host)
    try:
        sock.sendall(b"POST /http/hello/finish HTTP/1.1\r\nhost: " + _authority(host).encode()
                     + b"\r\ntransfer-encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
                     + b"".join(b"x-f%d: %s\r\n" % (i, b"v" * 1000) for i in range(40))
                     + b"\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 431"), data[:200]
    still_serving(host)


def test_a_signed_routes_request_trailers_are_held_to_its_caps_too(
        route_host: Callable[..., RouteHost]) -> None:
    """A signed webhook's route reads the body whole before the call (its signature is over
    it): its trailers are in by then, reach the guest, and are counted with its headers."""
    host = start(route_host, signed=route("/signed/{leaf}", auth="github", secret="gh",
                                          max_header_bytes=1024, timeout_ms=20_000))
    host.app.secrets.set("gh", b"It's a Secret to Everybody")
    body = b'{"zen": "trailers"}'
    signature = sign_github(b"It's a Secret to Everybody", body).encode()
    for trailers, status, said in (
            ([(b"x-digest", b"abc")], 200, b"request trailers: some x-digest=abc"),
            ([(b"x-pad", b"p" * 1100)], 431, b"1024 bytes")):
        h = _H1(host)
        try:
            h.request(b"POST", b"/http/signed/finish",
                      [(b"transfer-encoding", b"chunked"),
                       (b"x-hub-signature-256", signature)])
            h.send(h11.Data(data=body), h11.EndOfMessage(headers=trailers))
            head, got, _ = h.response()
        finally:
            h.close()
        assert head.status_code == status and said in got, (head, got)
    still_serving(host)


# -- the pieces ------------------------------------------------------------------------------


def test_te_lists_trailers_among_codings() -> None:
    assert takes_trailers([(b"te", b"trailers")])
    assert takes_trailers([(b"TE", b"gzip;q=0.5, Trailers")])
    assert not takes_trailers([(b"te", b"gzip")])
    assert not takes_trailers([(b"te", b"trailersx"), (b"x-te", b"trailers")])


def test_request_trailer_fields_leave_out_what_a_trailer_may_not_carry() -> None:
    assert request_trailer_fields([(b"X-A", b"1"), (b"host", b"evil"), (b"Cookie", b"c"),
                                   (b"transfer-encoding", b"chunked"), (b"x-b", b"2")]) == \
        [("x-a", b"1"), ("x-b", b"2")]


def test_a_request_through_the_consoles_protocols_leaves_no_cycle() -> None:
    """The console's HTTP/1.1 stream (console/http1.py) held its application wrapper, which
    held the stream: some 20 objects a request (the stream's queue, events, scope) only the
    cyclic collector could free, a third of what a route added to a request's instructions.
    Counted with the collector off over 200 keep-alive requests to a bare Starlette endpoint
    on Hypercorn with the console's protocols installed (0 a request as Hypercorn ships)."""
    import asyncio
    import gc
    import socket
    import threading

    from hypercorn.asyncio import serve
    from hypercorn.config import Config
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from omnicore.console import http1

    http1.install()

    async def hello(_request: Any) -> PlainTextResponse:
        return PlainTextResponse("hej")

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    config = Config()
    config.accesslog = None
    config.bind = [f"fd://{listener.fileno()}"]
    requests, found = 200, []
    stop = asyncio.Event()

    def client(loop: asyncio.AbstractEventLoop) -> None:
        try:
            with socket.create_connection(address) as c:
                for i in range(20 + requests):
                    if i == 20:  # after the first requests' one-off objects
                        gc.collect()
                        gc.disable()
                    c.sendall(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
                    answer = b""
                    while not answer.endswith(b"hej"):
                        answer += c.recv(65536)
                found.append(gc.collect())
        finally:
            gc.enable()
            loop.call_soon_threadsafe(stop.set)

    async def main() -> None:
        threading.Thread(target=client, args=(asyncio.get_running_loop(),)).start()
        await serve(Starlette(routes=[Route("/hello", hello)]),  # type: ignore[arg-type]
                    config, shutdown_trigger=stop.wait)

    address = listener.getsockname()
    listener.detach()  # Hypercorn serves the descriptor and closes it at its stop
    asyncio.run(main())
    assert found and found[0] < requests, f"{found[0] / requests:.1f} objects a request"

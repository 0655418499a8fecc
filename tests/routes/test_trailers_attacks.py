"""Trailers, attacked (issue 65's trailers: omnicore/console/http1.py, http2.py;
routes/proxy.py, wasihttp.py), as a hostile HTTP client would: trailer sections endless or
huge, trailers that try to smuggle fields the guest must not get or that an auth check reads,
trailers on routes that authenticate or verify a signature, pipelined and keep-alive requests
whose trailers must stay their own, HTTP/2 trailers that break the protocol. Each case says
what the client got, what the guest saw, and that the host (and where it should, the same
connection) still serves. Real clients on real sockets (h11, h2, hand-written bytes);
tests/routes/proxy/app.py's ``finish`` leaf says the request trailers it got."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import select
import threading
import time
from collections.abc import Callable

import h2.config
import h2.connection
import h2.events
import h11
import hyperframe.frame

from omnicore.console.module import ConsoleModule
from omnicore.routes import sign_github
from tests.routes.conftest import RouteHost
from tests.routes.test_proxy_attacks import start as attack_start
from tests.routes.test_proxy_components import (
    _H2,
    _authority,
    _connect,
    route,
    start,
    still_serving,
)
from tests.routes.test_trailers import _H1, _get
from tests.waiting import eventually

FINISH = b"/http/hello/finish"


def _raw(host: RouteHost, data: bytes) -> bytes:
    """``data`` sent on a connection of its own, and all the server answers until it closes
    (a reset after the answer is read as the end). Its last request should say
    ``connection: close`` (the client does not half-close: the server takes that for a
    client gone, its request's answer abandoned)."""
    sock = _connect(host)
    got = b""
    try:
        sock.sendall(data)
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return got


def _responses(data: bytes) -> list[tuple[int, bytes, list[tuple[bytes, bytes]]]]:
    """The HTTP/1.1 answers in ``data`` (status, body, trailers), parsed as a client would."""
    conn = h11.Connection(h11.CLIENT)
    conn.receive_data(data)
    conn.receive_data(b"")
    out: list[tuple[int, bytes, list[tuple[bytes, bytes]]]] = []
    status, body = 0, b""
    while True:
        # a client cannot send requests after the answers here: each answer's request is
        # "sent" as the answers come, so h11 frames them as a pipelining client's
        if conn.our_state is h11.IDLE:
            conn.send(h11.Request(method=b"POST", target=b"/", headers=[
                (b"host", b"x"), (b"transfer-encoding", b"chunked")]))
            conn.send(h11.EndOfMessage())
        event = conn.next_event()
        if isinstance(event, h11.Response):
            status, body = event.status_code, b""
        elif isinstance(event, h11.Data):
            body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            out.append((status, body, [(bytes(k), bytes(v)) for k, v in event.headers]))
            if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                conn.start_next_cycle()
        elif event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
            return out


def _chunked(path: bytes, host: RouteHost, body: bytes, trailers: bytes,
             headers: bytes = b"", *, close: bool = True) -> bytes:
    """A chunked HTTP/1.1 request in bytes: ``trailers`` as written (each line with its
    CRLF), then the blank line ending the trailer section; ``connection: close`` unless
    another request follows it."""
    return (b"POST " + path + b" HTTP/1.1\r\nhost: " + _authority(host).encode()
            + b"\r\ntransfer-encoding: chunked\r\n" + headers
            + (b"connection: close\r\n" if close else b"") + b"\r\n"
            + (b"%x\r\n%s\r\n" % (len(body), body) if body else b"")
            + b"0\r\n" + trailers + b"\r\n")


def _answer_while_sending(host: RouteHost, head: bytes, filler: bytes, most: int) -> bytes:
    """Send ``head`` then ``filler`` over and over (never the blank line that would end a
    trailer section) until the server answers or ``most`` bytes are out; the answer, read
    until the server closes. A server that buffered the section without bound would answer
    nothing (the test's socket timeout then fails it)."""
    sock = _connect(host)
    got = b""
    try:
        sock.sendall(head)
        sent = 0
        while sent < most:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(filler)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(filler)
        try:
            while chunk := sock.recv(65536):
                got += chunk
        except ConnectionResetError:
            pass
    finally:
        sock.close()
    return got


# -- endless and huge trailer sections -------------------------------------------------------


def test_an_endless_or_huge_trailer_section_is_431_before_it_ends(
        route_host: Callable[..., RouteHost]) -> None:
    """A trailer section that never ends, of many small fields or of one field growing to a
    megabyte, is refused with 431 within the server's head limit (16 KiB) while the client is
    still sending it: the answer comes before any end, so nothing buffered it past the limit;
    the host serves the next client."""
    host = start(route_host)
    prefix = (b"POST /http/hello/finish HTTP/1.1\r\nhost: " + _authority(host).encode()
              + b"\r\ntransfer-encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n")
    many = _answer_while_sending(host, prefix, b"x-a: b\r\n" * 128, 1 << 20)
    assert many.startswith(b"HTTP/1.1 431"), many[:200]
    one = _answer_while_sending(host, prefix + b"x-huge: ", b"v" * 4096, 1 << 20)
    assert one.startswith(b"HTTP/1.1 431"), one[:200]
    # a whole one, under the route's default caps' count but over the server's head limit
    whole = _raw(host, _chunked(FINISH, host, b"x", b"x-huge: " + b"v" * (1 << 20) + b"\r\n"))
    assert whole.startswith(b"HTTP/1.1 431"), whole[:200]
    still_serving(host)


def test_huge_http2_trailers_are_refused_and_the_host_serves(
        route_host: Callable[..., RouteHost]) -> None:
    """Over HTTP/2, a trailer block past the route's header caps is 431 on its stream, and
    the same connection then serves another request."""
    host = start(route_host, tight=route("/tight/{leaf}", max_header_bytes=4096,
                                         timeout_ms=20_000))
    h = _H2(host, "POST", "/http/tight/finish", more=True)
    try:
        h.send(b"x")
        h.conn.send_headers(1, [("x-pad", "p" * 8000)], end_stream=True)
        h.sock.sendall(h.conn.data_to_send())
        h.until(lambda: h.ended)
        assert (b":status", b"431") in h.head, (h.head, h.body)
        # the connection still serves: a second stream on it
        h.ended, h.head, h.body = False, [], b""
        h.conn.send_headers(3, [(":method", "GET"), (":scheme", "http"),
                                (":authority", _authority(host)), (":path", "/http/hello/x")],
                            end_stream=True)
        h.sock.sendall(h.conn.data_to_send())
        h.until(lambda: h.ended)
        assert (b":status", b"200") in h.head and h.body.startswith(b"hello GET /hello/x"), \
            (h.head, h.body)
    finally:
        h.close()
    still_serving(host)


# -- fields a trailer must not carry ---------------------------------------------------------


def test_smuggled_trailer_fields_do_not_reach_the_guest_over_http11(
        route_host: Callable[..., RouteHost]) -> None:
    """Fields a trailer may not carry (framing, routing, auth, cookies), in any case, never
    reach the guest; the one ordinary field does. An obs-fold line is part of the field
    before it (RFC 9112 §5.2: replaced by a space), never a field of its own. A trailer name
    or value the grammar forbids (a space, a bare CR, a NUL, an empty name) or a framing
    coding in a trailer is refused (400, 501) and the connection's end: the request written
    after it is never read as one (no desync)."""
    host = start(route_host)
    forbidden = (b"Host: evil.example\r\nAuthorization: Bearer stolen\r\n"
                 b"Proxy-Authorization: Basic eA==\r\nCookie: omnicore_session=x\r\n"
                 b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n"
                 b"Trailer: x-late\r\nConnection: close\r\nUpgrade: h2c\r\n"
                 b"Set-Cookie: a=b\r\nX-Ok: 1\r\n")
    got = _responses(_raw(host, _chunked(FINISH, host, b"abc", forbidden)))
    assert [(s, b) for s, b, _ in got] == [(200, b"request trailers: some x-ok=1")], got
    got = _responses(_raw(host, _chunked(FINISH, host, b"abc",
                                         b"x-fold: a\r\n host: evil.example\r\n")))
    assert [(s, b) for s, b, _ in got] == [
        (200, b"request trailers: some x-fold=a host: evil.example")], got
    # a bare LF ends a line (RFC 9112 §2.2 lets a recipient take it so): the field after
    # it is a field, and one the guest is not given
    got = _responses(_raw(host, _chunked(FINISH, host, b"abc", b"x-lf: a\nhost: evil\r\n")))
    assert [(s, b) for s, b, _ in got] == [(200, b"request trailers: some x-lf=a")], got
    second = (b"GET /http/hello/second HTTP/1.1\r\nhost: " + _authority(host).encode()
              + b"\r\nconnection: close\r\n\r\n")
    for bad, status in ((b"x bad: 1\r\n", 400), (b"x-cr: a\rb\r\n", 400),
                        (b"x-nul: a\x00b\r\n", 400), (b": empty-name\r\n", 400),
                        (b"x-te: 1\r\ntransfer-encoding: gzip\r\n", 501)):
        answer = _raw(host, _chunked(FINISH, host, b"abc", bad, close=False) + second)
        statuses = [s for s, _, _ in _responses(answer)]
        assert statuses == [status], (bad, answer[:300])
    still_serving(host)


def test_smuggled_trailer_fields_do_not_reach_the_guest_over_http2(
        route_host: Callable[..., RouteHost]) -> None:
    """Over HTTP/2: fields a trailer may not carry never reach the guest; a pseudo-header or
    a connection-specific field in the trailers is the client's error (the stream or the
    connection ends, no answer from the guest), and the host serves the next client."""
    host = start(route_host)
    h = _H2(host, "POST", FINISH.decode(), more=True)
    try:
        h.send(b"abc")
        h.conn.send_headers(1, [("host", "evil.example"), ("authorization", "Bearer stolen"),
                                ("cookie", "omnicore_session=x"), ("content-length", "1"),
                                ("x-ok", "1")], end_stream=True)
        h.sock.sendall(h.conn.data_to_send())
        h.until(lambda: h.ended)
    finally:
        h.close()
    assert (b":status", b"200") in h.head, h.head
    assert h.body == b"request trailers: some x-ok=1", h.body
    for bad in ([(":path", "/http/hello/evil"), ("x-ok", "1")],
                [(":status", "200")],
                [("connection", "close")],
                [("transfer-encoding", "chunked")],
                [("X-Upper", "1")]):
        h = _H2(host, "POST", FINISH.decode(), more=True)
        try:
            h.conn.config.validate_outbound_headers = False
            h.conn.config.normalize_outbound_headers = False
            h.send(b"abc")
            h.conn.send_headers(1, bad, end_stream=True)
            h.sock.sendall(h.conn.data_to_send())
            ended = _h2_end(h)
        finally:
            h.close()
        assert ended in ("reset", "goaway", "closed"), (bad, ended, h.head, h.body)
        assert b"request trailers" not in h.body, (bad, h.body)
    still_serving(host)


def _h2_end(h: _H2) -> str:
    """How the server ended ``h``'s stream 1: "answered", "reset", "goaway" or "closed"."""
    while True:
        try:
            data = h.sock.recv(65536)
        except ConnectionResetError:
            return "closed"
        if not data:
            return "closed"
        for event in h.conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                h.head = list(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                h.body += event.data
            elif isinstance(event, h2.events.StreamEnded):
                return "answered"
            elif isinstance(event, h2.events.StreamReset):
                return "reset"
            elif isinstance(event, h2.events.ConnectionTerminated):
                return "goaway"
        h.sock.sendall(h.conn.data_to_send())


# -- HTTP/2 trailers that break the protocol -------------------------------------------------


def _raw_headers(h: _H2, stream_id: int, headers: list[tuple[str, str]], *,
                 end_stream: bool, first: bytes = b"") -> None:
    """A HEADERS frame h2's client would refuse to send, written by hand (its block from the
    connection's own encoder, so the server's decoder stays in step), in one write after
    ``first``."""
    frame = hyperframe.frame.HeadersFrame(stream_id)
    frame.data = h.conn.encoder.encode(headers)
    frame.flags.add("END_HEADERS")
    if end_stream:
        frame.flags.add("END_STREAM")
    h.sock.sendall(first + frame.serialize())


def test_http2_trailers_without_end_stream_or_headers_after_them(
        route_host: Callable[..., RouteHost]) -> None:
    """A trailer block without END_STREAM is the client's protocol error: the stream gets
    no guest's answer and the host still serves. A HEADERS frame after a stream's trailers
    (the client's side of it closed) is a stream error, STREAM_CLOSED (RFC 9113 §5.1): the
    stream is reset, whatever its guest answers goes nowhere (or, the answer complete before
    the frame was read, the answer stands, with the trailers before the frame), and the same
    connection serves the next streams (one while that guest may still be answering, one
    after)."""
    host = start(route_host)
    h = _H2(host, "POST", FINISH.decode(), more=True)
    try:
        h.send(b"abc")
        _raw_headers(h, 1, [("x-t", "1")], end_stream=False)
        ended = _h2_end(h)
    finally:
        h.close()
    assert ended in ("reset", "goaway", "closed") and b"request trailers" not in h.body, \
        (ended, h.head, h.body)
    still_serving(host)
    h = _H2(host, "POST", FINISH.decode(), more=True)
    try:
        h.send(b"abc")
        h.conn.send_headers(1, [("x-t", "1")], end_stream=True)
        trailers = h.conn.data_to_send()
        # after the stream's end, in the same write (most often read with the trailers, so
        # the reset comes before the guest's answer; an answer already complete is closed
        # both ways, and the frame then changes nothing)
        _raw_headers(h, 1, [("x-after", "2")], end_stream=True, first=trailers)
        ended = _h2_end(h)
        assert (ended == "reset" and b"request trailers" not in h.body) or (
            ended == "answered" and h.body == b"request trailers: some x-t=1"), \
            (ended, h.head, h.body)
        for stream_id in (3, 5):
            h.head, h.body, h.ended = [], b"", False
            h.conn.send_headers(stream_id, [
                (":method", "GET"), (":scheme", "http"), (":authority", _authority(host)),
                (":path", f"/http/hello/y{stream_id}")], end_stream=True)
            h.sock.sendall(h.conn.data_to_send())
            h.until(lambda: h.ended)
            assert h.body.startswith(f"hello GET /hello/y{stream_id}".encode()), h.body
    finally:
        h.close()
    still_serving(host)


# -- a request's trailers are its own --------------------------------------------------------


def test_pipelined_requests_after_a_trailered_one_are_parsed_as_sent(
        route_host: Callable[..., RouteHost]) -> None:
    """Three requests in one write: a chunked one with trailers (one of them a request line
    and a head in disguise), a plain one, a chunked one with none. Each is answered as sent,
    in order, the second's and third's trailers none (the first's do not carry over), and
    the disguised request is a field of the first, never a request of its own."""
    host = start(route_host)
    auth = _authority(host).encode()
    data = (_chunked(FINISH, host, b"abc", b"x-first: 1\r\nx-get: /http/hello/smuggled\r\n",
                     close=False)
            + b"POST /http/hello/again HTTP/1.1\r\nhost: " + auth
            + b"\r\ncontent-length: 2\r\n\r\nok"
            + _chunked(FINISH, host, b"def", b"", close=False))
    got = _responses(_raw(host, data + b"GET /http/hello/last HTTP/1.1\r\nhost: " + auth
                          + b"\r\nconnection: close\r\n\r\n"))
    assert [(s, b) for s, b, _ in got[:3]] == [
        (200, b"request trailers: some x-first=1; x-get=/http/hello/smuggled"),
        (201, b"hello POST /hello/again 2 bytes; x-test=-; body=ok"),
        (200, b"request trailers: none")], got
    assert len(got) == 4 and got[3][1].startswith(b"hello GET /hello/last"), got
    # a trailer section that smuggles a request after a premature blank line: the bytes
    # after it are the next request, parsed as one (so a proxy in front that saw the same
    # bytes sees the same two requests)
    smuggle = _chunked(FINISH, host, b"abc", b"x-a: 1\r\n\r\nGET /http/hello/inner HTTP/1.1\r\n"
                       b"host: " + auth + b"\r\nconnection: close\r\n", close=False)
    got = _responses(_raw(host, smuggle))
    assert [s for s, _, _ in got] == [200, 200], got
    assert got[0][1] == b"request trailers: some x-a=1", got
    assert got[1][1].startswith(b"hello GET /hello/inner"), got
    still_serving(host)


def test_keep_alive_requests_never_see_each_others_trailers(
        route_host: Callable[..., RouteHost]) -> None:
    """One keep-alive connection, twelve requests, trailers on every other: each guest sees
    exactly its own request's trailers (none when none were sent). Over HTTP/2, two streams
    open at once, the trailers of one arriving while the other's body still comes: each
    sees its own."""
    host = start(route_host)
    h = _H1(host)
    try:
        for i in range(12):
            if i:
                h.next()
            h.request(b"POST", FINISH, [(b"transfer-encoding", b"chunked")])
            trailers = [(b"x-n", str(i).encode())] if i % 2 == 0 else []
            h.send(h11.Data(data=b"b" * (i + 1)), h11.EndOfMessage(headers=trailers))
            head, body, _ = h.response()
            want = f"request trailers: some x-n={i}" if i % 2 == 0 else "request trailers: none"
            assert head.status_code == 200 and body == want.encode(), (i, body)
    finally:
        h.close()
    h2c = _H2(host, "POST", FINISH.decode(), more=True)
    bodies: dict[int, bytes] = {1: b"", 3: b""}
    ended: set[int] = set()
    try:
        h2c.conn.send_headers(3, [(":method", "POST"), (":scheme", "http"),
                                  (":authority", _authority(host)), (":path", FINISH.decode())])
        h2c.conn.send_data(1, b"one")
        h2c.conn.send_data(3, b"three")
        h2c.conn.send_headers(3, [("x-stream", "3")], end_stream=True)
        h2c.conn.send_data(1, b"", end_stream=True)
        h2c.sock.sendall(h2c.conn.data_to_send())
        while ended != {1, 3}:
            data = h2c.sock.recv(65536)
            assert data, "the server closed the connection"
            for event in h2c.conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    bodies[event.stream_id] += event.data
                    h2c.conn.acknowledge_received_data(event.flow_controlled_length,
                                                       event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    ended.add(event.stream_id)
            h2c.sock.sendall(h2c.conn.data_to_send())
    finally:
        h2c.close()
    assert bodies == {1: b"request trailers: none", 3: b"request trailers: some x-stream=3"}, \
        bodies
    still_serving(host)


# -- trailers and the routes' and the console's auth -----------------------------------------


def test_trailers_do_not_authenticate_a_token_route_or_sign_a_webhook(
        route_host: Callable[..., RouteHost]) -> None:
    """An API token or a webhook signature sent as a trailer, not a header, is no
    credential: 401, the guest never called. With the signature in its header, a trailer
    carrying another signature neither breaks nor replaces what was verified (the body)."""
    secret = b"It's a Secret to Everybody"
    host = start(route_host, tok=route("/tok/{leaf}", auth="token", timeout_ms=20_000),
                 signed=route("/signed/{leaf}", auth="github", secret="gh",
                              timeout_ms=20_000))
    host.app.secrets.set("gh", secret)
    token = host.token("admin").encode()
    answer = _responses(_raw(host, _chunked(b"/http/tok/finish", host, b"abc",
                                            b"authorization: Bearer " + token + b"\r\n")))
    assert [s for s, _, _ in answer] == [401], answer
    answer = _responses(_raw(host, _chunked(
        b"/http/tok/finish", host, b"abc", b"x-ok: 1\r\nauthorization: Bearer nope\r\n",
        headers=b"authorization: Bearer " + token + b"\r\n")))
    assert [(s, b) for s, b, _ in answer] == [(200, b"request trailers: some x-ok=1")], answer
    body = b'{"zen": "trailers"}'
    good = sign_github(secret, body).encode()
    forged = sign_github(secret, b'{"zen": "forged"}').encode()
    # the signature only in a trailer: no header, refused before the body is read
    answer = _responses(_raw(host, _chunked(b"/http/signed/finish", host, body,
                                            b"x-hub-signature-256: " + good + b"\r\n")))
    assert [s for s, _, _ in answer] == [401], answer
    # a signature over another body in the header, the right one in a trailer: refused
    answer = _responses(_raw(host, _chunked(
        b"/http/signed/finish", host, body, b"x-hub-signature-256: " + good + b"\r\n",
        headers=b"x-hub-signature-256: " + forged + b"\r\n")))
    assert [s for s, _, _ in answer] == [401], answer
    # the right one in the header, a forged one in a trailer: the body was verified; the
    # guest is told the trailer as a trailer (its own to trust or not), nothing else changes
    answer = _responses(_raw(host, _chunked(
        b"/http/signed/finish", host, body, b"x-hub-signature-256: " + forged + b"\r\n",
        headers=b"x-hub-signature-256: " + good + b"\r\n")))
    assert [(s, b) for s, b, _ in answer] == [
        (200, b"request trailers: some x-hub-signature-256=" + forged)], answer
    still_serving(host)


def test_the_console_api_ignores_trailers_and_they_are_no_credential(
        route_host: Callable[..., RouteHost]) -> None:
    """The console's own API: a chunked request with trailers is answered as the same
    request without them; a token or session cookie sent only as a trailer is no
    credential (401; answered before the body's end, so the connection closes after it, the
    console's rule), and the host serves on."""
    host = start(route_host)
    token = host.token("admin").encode()
    body = b'{"handler": "handle", "input": {}}'
    plain = host.client.post("/api/v1/plugins/hello/invoke", content=body,
                             headers={"authorization": f"Bearer {token.decode()}",
                                      "content-type": "application/json"})
    h = _H1(host)
    try:
        h.request(b"POST", b"/api/v1/plugins/hello/invoke",
                  [(b"transfer-encoding", b"chunked"), (b"authorization", b"Bearer " + token),
                   (b"content-type", b"application/json")])
        h.send(h11.Data(data=body), h11.EndOfMessage(headers=[
            (b"x-extra", b"1"), (b"content-type", b"text/plain"),
            (b"authorization", b"Bearer nope")]))
        head, got, _ = h.response()
        assert head.status_code == plain.status_code and got == plain.content, \
            (head, got, plain.status_code, plain.content)
        h.next()
        h.request(b"POST", b"/api/v1/plugins/hello/invoke",
                  [(b"transfer-encoding", b"chunked"), (b"content-type", b"application/json")])
        # The head carries no credential: the console may answer 401 and close before the
        # body comes (its rule above), and the body then meets a closed socket.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            h.send(h11.Data(data=body), h11.EndOfMessage(headers=[
                (b"authorization", b"Bearer " + token), (b"cookie", b"omnicore_session=x")]))
        head, got, _ = h.response()
        assert head.status_code == 401, (head, got)
    finally:
        h.close()
    still_serving(host)


# -- TE: trailers where trailers cannot go ---------------------------------------------------


def test_te_trailers_from_http10_head_or_a_lookalike_coding(
        route_host: Callable[..., RouteHost]) -> None:
    """TE: trailers on HTTP/1.0 (with GET or HEAD) and on an HTTP/1.1 HEAD: the answer is
    framed as ever, no trailer section and no chunking. A TE that names a coding merely
    containing "trailers" is not TE: trailers: the answer is framed by its length, whole,
    and the keep-alive connection serves the next request."""
    host = start(route_host)
    auth = _authority(host).encode()
    for method in (b"GET", b"HEAD"):
        data = _raw(host, method + b" /http/hello/trailers HTTP/1.0\r\nhost: " + auth
                    + b"\r\nte: trailers\r\n\r\n")
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), data
        assert b"transfer-encoding" not in head.lower(), head
        assert body == (b"with trailers" if method == b"GET" else b""), data
    h = _H1(host)
    try:
        h.request(b"HEAD", b"/http/hello/trailers", [(b"te", b"trailers")])
        h.send(h11.EndOfMessage())
        head, body, tail = h.response()
        assert body == b"" and tail == [], (head, body, tail)
        assert b"chunked" not in b"".join(v for k, v in head.headers if k == b"transfer-encoding")
        for te in (b"x-trailers-not", b"notrailers", b"trailers-ish;q=1"):
            h.next()
            h.request(b"GET", b"/http/hello/trailers", [(b"te", te)])
            h.send(h11.EndOfMessage())
            head, body, tail = h.response()
            assert head.status_code == 200 and body == b"with trailers" and tail == [], \
                (te, head, body, tail)
            assert (b"content-length", b"13") in list(head.headers), (te, head.headers)
    finally:
        h.close()
    still_serving(host)


# -- more ------------------------------------------------------------------------------------


def test_thousands_of_tiny_trailers_under_the_servers_limit_are_431_at_the_routes(
        route_host: Callable[..., RouteHost]) -> None:
    """Three thousand four-byte trailer fields fit h11's 16 KiB limit for a head but not a
    route's default max_headers (100): 431 from the route, the guest told no trailers; the
    console's own API, which has no use for them, answers as without them."""
    host = start(route_host)
    tiny = b"".join(b"a%d:\r\n" % (i % 10) for i in range(3000))
    got = _responses(_raw(host, _chunked(FINISH, host, b"abc", tiny)))
    assert len(got) == 1 and got[0][0] == 431 and b"100 headers" in got[0][1], got
    got = _responses(_raw(host, _chunked(b"/healthz", host, b"abc", tiny)))
    assert [s for s, _, _ in got] == [host.client.post("/healthz", content=b"abc").status_code]
    still_serving(host)


def test_pipelined_requests_for_trailered_answers(
        route_host: Callable[..., RouteHost]) -> None:
    """Three requests written at once, each with TE: trailers, to an answer with trailers,
    one without and the first again: each answer complete and in order, the trailers in the
    last chunk of each that has them, and nothing of one in the next."""
    host = start(route_host)
    auth = _authority(host).encode()

    def get(path: bytes, last: bool = False) -> bytes:
        return (b"GET " + path + b" HTTP/1.1\r\nhost: " + auth + b"\r\nte: trailers\r\n"
                + (b"connection: close\r\n" if last else b"") + b"\r\n")

    got = _responses(_raw(host, get(b"/http/hello/trailers") + get(b"/http/hello/x")
                          + get(b"/http/hello/trailers", last=True)))
    assert [(s, t) for s, _, t in got] == [
        (200, [(b"x-checksum", b"abc123")]), (200, []), (200, [(b"x-checksum", b"abc123")])], got
    assert got[0][1] == got[2][1] == b"with trailers" and got[1][1].startswith(
        b"hello GET /hello/x"), got


def test_a_request_refused_for_its_trailers_after_the_answer_began(
        route_host: Callable[..., RouteHost]) -> None:
    """A guest that answers as it reads (the echo: head and first chunk out before the body
    ends) and a client whose trailers then pass the route's header caps: the answer cannot
    become a 431; the guest's read fails (not a clean end), and the client's answer is cut
    short (the connection closed, no last chunk): it never reads as complete."""
    host = start(route_host, tight=route("/tight/{leaf}", max_header_bytes=1024,
                                         timeout_ms=20_000))
    h = _H1(host)
    try:
        h.request(b"POST", b"/http/tight/echo",
                  [(b"te", b"trailers"), (b"transfer-encoding", b"chunked")])
        h.send(h11.Data(data=b"first,"))
        head, got = h.until_body(b"first,")
        assert head.status_code == 200
        h.send(h11.Data(data=b"last"), h11.EndOfMessage(headers=[(b"x-pad", b"p" * 2000)]))
        complete = False
        tail: list[tuple[bytes, bytes]] = []
        try:
            while True:
                event = h.conn.next_event()
                if event is h11.NEED_DATA:
                    data = h.sock.recv(65536)
                    if not data:
                        break
                    h.conn.receive_data(data)
                elif isinstance(event, h11.Data):
                    got += event.data
                elif isinstance(event, h11.EndOfMessage):
                    complete, tail = True, list(event.headers)
                    break
        except (ConnectionResetError, h11.RemoteProtocolError):
            pass
    finally:
        h.close()
    # cut short (no last chunk): what came is the echo of what was read before the refusal
    assert not complete and got in (b"first,", b"first,last"), (complete, got, tail)
    still_serving(host)


def test_a_hostile_guests_response_trailers_over_http11(
        route_host: Callable[..., RouteHost]) -> None:
    """tests/routes/proxy/hostile_app.py's ``trailers=N``: it announces and sends trailers a
    trailer may not carry (content-length, Transfer-Encoding) with an ordinary one and one
    of N bytes. Over HTTP/1.1 to a client with TE: trailers: the last chunk carries only the
    two it may send, the framing is the server's (chunked, no content-length), and the
    keep-alive connection serves on. Past the guest's header budget (2 MiB): a 500, or an
    answer that never reads as complete; the host serves on."""
    host = attack_start(route_host)
    h = _H1(host)
    try:
        for size in (10, 1000, 12_000):
            head, body, tail = _get(h, f"/http/any/trailers={size}".encode(),
                                    [(b"te", b"trailers")])
            assert head.status_code == 200 and body == b"body", (head, body)
            assert tail == [(b"x-ok", b"fine"), (b"x-big", b"v" * size)], tail
            framing = [(k, v) for k, v in head.headers
                       if k in (b"content-length", b"transfer-encoding")]
            assert framing == [(b"transfer-encoding", b"chunked")], head.headers
            announced = b",".join(v for k, v in head.headers if k == b"trailer")
            assert b"content-length" not in announced.lower(), head.headers
            h.next()
        # without TE: trailers, none of them, framed by the length
        head, body, tail = _get(h, b"/http/any/trailers=1000")
        assert body == b"body" and tail == [], (body, tail)
    finally:
        h.close()
    h = _H1(host)
    try:
        h.request(b"GET", f"/http/any/trailers={2 << 20}".encode(), [(b"te", b"trailers")])
        h.send(h11.EndOfMessage())
        try:
            head, body, tail = h.response()
            assert head.status_code == 500, (head, body[:200], len(tail))
        except (AssertionError, ConnectionResetError, h11.RemoteProtocolError) as exc:
            # the head streamed first, then the guest trapped: cut short, never complete
            assert "mid-answer" in str(exc) or not isinstance(exc, AssertionError), exc
    finally:
        h.close()
    r = host.client.get("/http/any/again")
    assert r.status_code == 200 and r.text == "hostile /any/again", r.text


def test_a_trailer_section_that_stops_or_trickles_ends_at_the_route_deadline(
        route_host: Callable[..., RouteHost]) -> None:
    """The body's chunks all in, then a trailer section that stops coming (one field, no
    blank line) or trickles a field every 20 ms within h11's limit: the guest waiting on its
    future-trailers is cut at the route's deadline, 408 in time, and the host serves on."""
    host = start(route_host, slow=route("/slow/{leaf}", timeout_ms=500))
    prefix = (b"POST /http/slow/finish HTTP/1.1\r\nhost: " + _authority(host).encode()
              + b"\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-first: 1\r\n")
    with _connect(host) as sock:
        began = time.monotonic()
        sock.sendall(prefix)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):  # to the server's close
                answer += chunk
        took = time.monotonic() - began
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert took < 5, took
    with _connect(host) as sock:
        began = time.monotonic()
        sock.sendall(prefix)
        answered = threading.Event()

        def trickle() -> None:  # paced, not deciding: a field every 20 ms until answered
            with contextlib.suppress(OSError):
                n = 0
                while not answered.wait(0.02) and n < 1000:
                    sock.sendall(b"x-t%d: 1\r\n" % n)
                    n += 1

        feeder = threading.Thread(target=trickle)
        feeder.start()
        try:
            answer = sock.recv(4096)
        finally:
            answered.set()
            feeder.join()
        took = time.monotonic() - began
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert took < 5, took
    still_serving(host)


def test_trailers_with_no_body_and_a_chunked_http10_request(
        route_host: Callable[..., RouteHost]) -> None:
    """Over HTTP/2, a trailer block straight after the request's head (no DATA) is the
    guest's trailers. An HTTP/1.0 request framed chunked (HTTP/1.0 has no chunked coding),
    with trailers and a request written after it: 400 and the connection's end, the bytes
    after it never read as a request."""
    host = start(route_host)
    h = _H2(host, "POST", FINISH.decode(), more=True)
    try:
        h.conn.send_headers(1, [("x-only", "1")], end_stream=True)
        h.sock.sendall(h.conn.data_to_send())
        h.until(lambda: h.ended)
    finally:
        h.close()
    assert h.body == b"request trailers: some x-only=1", (h.head, h.body)
    auth = _authority(host).encode()
    data = _raw(host, b"POST /http/hello/finish HTTP/1.0\r\nhost: " + auth
                + b"\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-ten: 1\r\n\r\n"
                + b"GET /http/hello/second HTTP/1.1\r\nhost: " + auth + b"\r\n\r\n")
    assert data.count(b"HTTP/1.1 ") == 1 and b"/hello/second" not in data, data
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and body == b"", data  # h11: no chunked 1.0
    still_serving(host)


def _connections(host: RouteHost) -> int:
    """The console server's live connection tasks (Hypercorn's, one a connection), counted on
    its own loop."""
    module = host.app.get_module("console", ConsoleModule)
    assert module._serving is not None
    loop = module._serving.get_loop()
    counted: concurrent.futures.Future[int] = concurrent.futures.Future()
    loop.call_soon_threadsafe(lambda: counted.set_result(sum(
        1 for task in asyncio.all_tasks(loop)
        if task.get_coro().__qualname__.endswith("_server_callback"))))  # type: ignore[union-attr]
    return counted.result(10)


def test_an_http2_connection_ended_mid_request_ends_on_the_server(
        route_host: Callable[..., RouteHost]) -> None:
    """HTTP/2 clients that end their connection while a request's body is still open: one
    whose trailers break the protocol (a pseudo-header: the server's GOAWAY), one that just
    closes its socket. The route answers the request it was serving (its client gone) and
    each connection's task on the server ends with it: it does not wait for the host's stop
    (Hypercorn's stream buffer, drained for the answer's end on a connection already closed,
    waited for ever; each such client left a connection's tasks and buffers behind)."""
    host = start(route_host)
    before = _connections(host)
    for how in ("pseudo-header trailers", "closed"):
        h = _H2(host, "POST", FINISH.decode(), more=True)
        try:
            h.conn.config.validate_outbound_headers = False
            h.send(b"abc")
            if how == "closed":
                h.until(lambda: _connections(host) > before)  # (no answer: held by the body)
            else:
                h.conn.send_headers(1, [(":path", "/x")], end_stream=True)
                h.sock.sendall(h.conn.data_to_send())
                assert _h2_end(h) == "goaway"
        finally:
            h.close()
        eventually(lambda: _connections(host) == before, f"the connection's end ({how})",
                   timeout=10)
    still_serving(host)

"""Response trailers of a streamed proxy answer, attacked (817ba8ed, 29a091db: a streamed
head says trailers may follow whenever the server takes them; omnicore/console/http1.py's
TrailerStream judges the client's ``te`` once, on every version, and ends an empty section
as none; an answer finished before the 100 ms check is sent whole). As a hostile client
would: ``te`` values that only look like ``trailers``, HTTP/2's own ``te`` rule, HEAD,
HTTP/1.0, bodiless statuses streamed, a stream cut after its head, many streams on one
HTTP/2 connection whose trailers must stay their own, and the connection serving right after
each. Real clients on real sockets (h11, h2, hand-written bytes). The streamed path is forced
by holding the request body open (the echo guest answers as it reads)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import h11
import pytest

from omnicore.console.http1 import takes_trailers
from omnicore.routes import server
from tests.routes.conftest import RouteHost
from tests.routes.test_proxy_attacks import route as hostile_route
from tests.routes.test_proxy_attacks import start as hostile_start
from tests.routes.test_proxy_components import (
    _authority,
    _connect,
    route,
    start,
    still_serving,
)
from tests.routes.test_trailers import _H1, _get, _raw_header

ECHO = "/http/stream/echo"


def _echo_host(route_host: Callable[..., RouteHost]) -> RouteHost:
    return start(route_host, stream=route("/stream/{leaf}", timeout_ms=20_000,
                                          methods=["GET", "POST", "HEAD"]))


def _hostile(route_host: Callable[..., RouteHost]) -> RouteHost:
    """The hostile guest with a 30 s deadline: its calls here are cut by its own traps or
    held by the client across another stream's answer, never by the plugin's 1 s default,
    which a loaded machine can reach before the client sends the rest (a held ``read``
    answered and closed by its deadline)."""
    return hostile_start(route_host, "limits: {timeout_ms: 30000}\n")


def _read_until_closed(sock: socket.socket) -> bytes:
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    return got


class _Many:
    """One HTTP/2 connection (h2's client) with several streams in flight at once."""

    def __init__(self, host: RouteHost) -> None:
        self.sock = _connect(host)
        self.sock.settimeout(20)
        self.authority = _authority(host)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.head: dict[int, list[tuple[bytes, bytes]]] = {}
        self.body: dict[int, bytes] = {}
        self.tail: dict[int, list[tuple[bytes, bytes]] | None] = {}
        self.ended: set[int] = set()
        self.reset: dict[int, int] = {}
        self.closed = False

    def open(self, sid: int, method: str, path: str, *, te: str | None,
             more: bool) -> None:
        headers = [(":method", method), (":scheme", "http"), (":authority", self.authority),
                   (":path", path)] + ([("te", te)] if te is not None else [])
        self.conn.send_headers(sid, headers, end_stream=not more)
        self.head[sid], self.body[sid], self.tail[sid] = [], b"", None
        self.sock.sendall(self.conn.data_to_send())

    def send(self, sid: int, data: bytes, *, end: bool = False) -> None:
        self.conn.send_data(sid, data, end_stream=end)
        self.sock.sendall(self.conn.data_to_send())

    def until(self, done: Callable[[], bool]) -> None:
        while not done():
            data = self.sock.recv(65536)
            if not data:
                self.closed = True
                raise AssertionError("the server closed the connection")
            for event in self.conn.receive_data(data):
                sid = getattr(event, "stream_id", None)
                if isinstance(event, h2.events.ResponseReceived):
                    self.head[event.stream_id] = list(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    self.body[event.stream_id] += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                        event.stream_id)
                elif isinstance(event, h2.events.TrailersReceived):
                    self.tail[event.stream_id] = list(event.headers)
                elif isinstance(event, h2.events.StreamEnded):
                    self.ended.add(event.stream_id)
                elif isinstance(event, h2.events.StreamReset) and sid is not None:
                    self.reset[sid] = event.error_code
                elif isinstance(event, h2.events.ConnectionTerminated):
                    self.closed = True
                    raise AssertionError(f"the connection was ended: {event!r}")
            self.sock.sendall(self.conn.data_to_send())

    def get(self, sid: int, path: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
        self.open(sid, "GET", path, te="trailers", more=False)
        self.until(lambda: sid in self.ended or sid in self.reset)
        return self.head[sid], self.body[sid]

    def close(self) -> None:
        self.sock.close()


# -- te, judged by its grammar -----------------------------------------------------------------


def test_te_lookalikes_are_judged_by_the_list_grammar() -> None:
    """The te judge alone: ``trailers`` in any case, among codings, with OWS and parameters
    is taken; a coding that merely contains the word, a quoted one, or none is not."""
    yes = [b"trailers", b"TRAILERS", b"Trailers", b"gzip, trailers", b"\ttrailers ",
           b"gzip;q=0.5,trailers", b"trailers;q=1", b",,trailers,,"]
    no = [b"", b"x-trailers", b"trailers-not", b"trailersx", b'"trailers"', b"gzip",
          b"trailer", b"chunked, gzip"]
    for value in yes:
        assert takes_trailers([(b"te", value)]), value
        assert takes_trailers([(b"TE", value)]), value
    for value in no:
        assert not takes_trailers([(b"te", value)]), value
    # one te line of several says it
    assert takes_trailers([(b"te", b"gzip"), (b"te", b"trailers")])
    assert not takes_trailers([(b"x-te", b"trailers"), (b"tee", b"trailers")])


def test_a_comma_inside_a_quoted_te_parameter_is_no_list_member() -> None:
    """te: x;p=", trailers ," names one coding, x (RFC 9110 §5.6.4, §10.1.4: a quoted
    string's comma splits nothing); it was read as listing trailers (found by this file)."""
    assert not takes_trailers([(b"te", b'x;p=", trailers ,"')])


def test_a_quoted_te_parameter_gets_no_trailers_over_http11(
        route_host: Callable[..., RouteHost]) -> None:
    """The same te over a real connection: the answer framed by its length, no trailers."""
    host = start(route_host)
    h = _H1(host)
    try:
        head, body, tail = _get(h, b"/http/hello/trailers", [(b"te", b'x;p=", trailers ,"')])
    finally:
        h.close()
    assert head.status_code == 200 and body == b"with trailers", (head, body)
    assert tail == [] and _raw_header(head, b"content-length") == [b"13"], (head.headers, tail)


def test_http11_te_variants_on_a_streamed_answer_and_the_next_connection(
        route_host: Callable[..., RouteHost]) -> None:
    """A streamed echo (its body held open past its head) to HTTP/1.1 clients whose te is
    ``trailers`` in another case, among codings or with a parameter: the trailers the guest
    gave at its finish, in the last chunk; te that only contains the word, or none: a
    chunked body with no trailer section. A streamed answer ends its connection (the
    console's rule); a new connection is served right after each."""
    host = _echo_host(route_host)
    cases: list[tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]] = [
        ([(b"te", b"TRAILERS")], [(b"x-echoed", b"10")]),
        ([(b"TE", b"Trailers")], [(b"x-echoed", b"10")]),
        ([(b"te", b"deflate;q=0.1, trailers")], [(b"x-echoed", b"10")]),
        ([(b"te", b"gzip"), (b"te", b"trailers")], [(b"x-echoed", b"10")]),
        ([(b"te", b"x-trailers, trailersx")], []),
        ([(b"te", b"gzip")], []),
        ([], []),
    ]
    for headers, want in cases:
        h = _H1(host)
        h.sock.settimeout(20)
        try:
            h.request(b"POST", (ECHO + "?unannounced").encode(),
                      [*headers, (b"transfer-encoding", b"chunked")])
            h.send(h11.Data(data=b"first,"))
            seen, got = h.until_body(b"first,")
            assert _raw_header(seen, b"transfer-encoding") == [b"chunked"], seen.headers
            assert not _raw_header(seen, b"content-length"), seen.headers
            h.send(h11.Data(data=b"last"), h11.EndOfMessage())
            _head, rest, tail = h.response(seen)
        finally:
            h.close()
        assert got + rest == b"first,last|StreamError_Closed", (headers, got + rest)
        assert tail == want, (headers, tail)
        # the keep-alive next: a whole answer on a new connection, its trailers its own
        h = _H1(host)
        try:
            _head, body, tail = _get(h, b"/http/hello/trailers", headers)
            assert body == b"with trailers", body
            assert tail == ([(b"x-checksum", b"abc123")] if want else []), (headers, tail)
            h.next()
            _head, body, tail = _get(h, b"/http/hello/x")
            assert body.startswith(b"hello GET /hello/x") and tail == [], (body, tail)
        finally:
            h.close()
    still_serving(host)


def _echo_held(host: RouteHost, line_end: bytes, head_and_first: bytes, rest: bytes) -> bytes:
    """The echo asked with te: trailers (``POST`` + ECHO + ``line_end``, then the framing
    fields and the body's first part), its answer read until ``first,`` is back, then the
    body's rest sent and everything read to the connection's end."""
    sock = _connect(host)
    sock.settimeout(20)
    try:
        sock.sendall(b"POST " + ECHO.encode() + line_end + b"\r\nhost: "
                     + _authority(host).encode() + b"\r\nte: trailers\r\n" + head_and_first)
        got = b""
        while b"first," not in got:
            chunk = sock.recv(65536)
            assert chunk, got
            got += chunk
        sock.sendall(rest)
        return got + _read_until_closed(sock)
    finally:
        sock.close()


def test_an_empty_trailer_section_over_http11_is_a_bare_last_chunk(
        route_host: Callable[..., RouteHost]) -> None:
    """?no-trailers streamed to a client that takes trailers: the body's end is the bare
    last chunk ``0\\r\\n\\r\\n``, no field line after it (no announced name with an empty
    value), and the bytes after it are nothing but the connection's end."""
    host = _echo_host(route_host)
    got = _echo_held(host, b"?no-trailers HTTP/1.1", b"transfer-encoding: chunked\r\n\r\n"
                     b"6\r\nfirst,\r\n", b"4\r\nlast\r\n0\r\n\r\n")
    head, _, rest = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
    assert b"\r\ntrailer:" not in head.lower(), head  # (the guest's announcement is not sent)
    assert rest.endswith(b"|StreamError_Closed\r\n0\r\n\r\n"), rest[-80:]
    assert b"x-echoed" not in rest.lower(), rest
    still_serving(host)


def test_http10_gets_a_streamed_body_without_chunks_or_trailers(
        route_host: Callable[..., RouteHost]) -> None:
    """An HTTP/1.0 client saying te: trailers, its declared body held back past the head:
    the body alone, close-delimited (HTTP/1.0 has no chunks to carry trailers in)."""
    host = _echo_host(route_host)
    got = _echo_held(host, b" HTTP/1.0", b"content-length: 10\r\n\r\nfirst,", b"last")
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), got
    assert b"transfer-encoding" not in head.lower(), head
    assert body == b"first,last|StreamError_Closed", body
    still_serving(host)


# -- HTTP/2 -------------------------------------------------------------------------------------


def test_http2_te_in_another_case_takes_trailers_and_the_connection_serves_on(
        route_host: Callable[..., RouteHost]) -> None:
    """h2 lets te be ``trailers`` in any case (RFC 9113 §8.2.2 compares it so): the streamed
    echo's trailers reach a client that wrote TRAILERS, not one that sent no te, each on its
    own stream of one connection, which then serves a whole answer with trailers."""
    host = _echo_host(route_host)
    m = _Many(host)
    try:
        for sid, te, want in ((1, "TRAILERS", [(b"x-echoed", b"10")]), (3, None, None),
                              (5, "Trailers", [(b"x-echoed", b"10")])):
            m.open(sid, "POST", ECHO + "?unannounced", te=te, more=True)
            m.send(sid, b"first,")
            m.until(lambda: b"first," in m.body[sid])  # noqa: B023
            m.send(sid, b"last", end=True)
            m.until(lambda: sid in m.ended or sid in m.reset)  # noqa: B023
            assert sid in m.ended and sid not in m.reset, (sid, m.reset)
            assert m.body[sid] == b"first,last|StreamError_Closed", m.body[sid]
            assert m.tail[sid] == want, (te, m.tail[sid])
        head, body = m.get(7, "/http/hello/trailers")
        assert (b":status", b"200") in head and body == b"with trailers"
        assert m.tail[7] == [(b"x-checksum", b"abc123")], m.tail[7]
    finally:
        m.close()
    still_serving(host)


def test_many_streamed_http2_answers_keep_their_own_trailers(
        route_host: Callable[..., RouteHost]) -> None:
    """Eight streamed echoes in flight at once on one HTTP/2 connection, each body held
    open, with and without te, announced, unannounced and with none given, finished in
    reverse order: each stream's trailers are its own count or none, never another's, no
    empty trailer block (h2 has none), and the connection serves after them."""
    host = _echo_host(route_host)
    m = _Many(host)
    queries = ["", "?unannounced", "?no-trailers", "?unannounced"] * 2
    tes = ["trailers"] * 4 + [None, "trailers", None, "trailers"]
    sids = [1 + 2 * i for i in range(8)]
    try:
        for i, sid in enumerate(sids):
            m.open(sid, "POST", ECHO + queries[i], te=tes[i], more=True)
            m.send(sid, b"s" * (i + 1) + b",")
        m.until(lambda: all(m.body[sid].endswith(b",") for sid in sids))
        for i, sid in reversed(list(enumerate(sids))):
            m.send(sid, b"t" * (10 * i), end=True)
        m.until(lambda: all(sid in m.ended or sid in m.reset for sid in sids))
        for i, sid in enumerate(sids):
            assert sid in m.ended and sid not in m.reset, (sid, m.reset)
            n = (i + 1) + 1 + 10 * i
            assert m.body[sid] == b"s" * (i + 1) + b"," + b"t" * (10 * i) \
                + b"|StreamError_Closed", (sid, m.body[sid])
            want = None if tes[i] is None or "no-trailers" in queries[i] \
                else [(b"x-echoed", str(n).encode())]
            assert m.tail[sid] == want, (sid, queries[i], tes[i], m.tail[sid])
        head, body = m.get(17, "/http/hello/x")
        assert (b":status", b"200") in head and body.startswith(b"hello GET /hello/x")
        assert m.tail[17] is None, m.tail[17]
    finally:
        m.close()
    still_serving(host)


def test_a_head_on_a_streamed_route_gets_no_body_or_trailers_over_http2(
        route_host: Callable[..., RouteHost]) -> None:
    """HEAD with te: trailers on the echo route, its body held open: the head alone, the
    stream ended with no DATA and no trailer block, and the connection's next stream
    served with its own trailers."""
    host = _echo_host(route_host)
    m = _Many(host)
    try:
        m.open(1, "HEAD", ECHO, te="trailers", more=True)
        m.send(1, b"first,")
        m.until(lambda: 1 in m.ended or 1 in m.reset)
        assert (b":status", b"200") in m.head[1], m.head[1]
        assert m.body[1] == b"" and m.tail[1] is None, (m.body[1], m.tail[1])
        _head, body = m.get(3, "/http/hello/trailers")
        assert body == b"with trailers" and m.tail[3] == [(b"x-checksum", b"abc123")]
    finally:
        m.close()
    still_serving(host)


# -- bodiless statuses, cut streams (the hostile guest) -----------------------------------------


def test_streamed_bodiless_statuses_with_te_over_http11_keep_the_connection(
        route_host: Callable[..., RouteHost]) -> None:
    """A 204 and a 304 the guest streams (its head set, a body written 0.3 s later, which
    HTTP says it has not) to a client with te: trailers: no body, no trailer section, no
    chunk; the same keep-alive connection's next request is answered right."""
    host = _hostile(route_host)
    h = _H1(host)
    h.sock.settimeout(20)
    try:
        for code in (204, 304):
            head, body, tail = _get(h, f"/http/any/streamed={code}".encode(),
                                    [(b"te", b"trailers")])
            assert head.status_code == code and body == b"" and tail == [], (head, body, tail)
            assert not _raw_header(head, b"transfer-encoding"), head.headers
            h.next()
            head, body, tail = _get(h, b"/http/any/after")
            assert head.status_code == 200 and body == b"hostile /any/after", (head, body)
            h.next()
    finally:
        h.close()


def test_streamed_bodiless_statuses_over_http2_end_clean(
        route_host: Callable[..., RouteHost]) -> None:
    """The same 204 and 304 over HTTP/2 with te: trailers: the stream ends with its head,
    no DATA, no trailer block (and no error); the connection serves on."""
    host = _hostile(route_host)
    m = _Many(host)
    try:
        for sid, code in ((1, 204), (3, 304)):
            head, body = m.get(sid, f"/http/any/streamed={code}")
            assert sid in m.ended and sid not in m.reset, (sid, m.reset)
            assert (b":status", str(code).encode()) in head and body == b"", (head, body)
            assert m.tail[sid] is None, m.tail[sid]
        head, body = m.get(5, "/http/any/after")
        assert body == b"hostile /any/after", body
    finally:
        m.close()


def test_a_stream_cut_after_its_head_never_ends_cleanly_with_trailers(
        route_host: Callable[..., RouteHost]) -> None:
    """trap-mid (streamed, then a trap) to clients that take trailers: over HTTP/1.1 no
    last chunk (the connection ends mid-body), over HTTP/2 no clean end of the stream (a
    reset, INTERNAL_ERROR: the stream alone ends) and
    no trailer block; a head that said trailers may follow never makes a cut answer look
    complete."""
    host = _hostile(route_host)
    sock = _connect(host)
    sock.settimeout(20)
    try:
        sock.sendall(b"GET /http/any/trap-mid HTTP/1.1\r\nhost: " + _authority(host).encode()
                     + b"\r\nte: trailers\r\n\r\n")
        got = _read_until_closed(sock)
    finally:
        sock.close()
    assert got.startswith(b"HTTP/1.1 200") and b"part one" in got, got
    assert not got.endswith(b"0\r\n\r\n"), got[-60:]
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(got)
    conn.receive_data(b"")
    ends = []
    with pytest.raises(h11.RemoteProtocolError):
        while (event := conn.next_event()) is not h11.NEED_DATA:
            ends.append(type(event).__name__)
            assert not isinstance(event, h11.EndOfMessage), ends
    m = _Many(host)
    try:
        m.open(1, "GET", "/http/any/trap-mid", te="trailers", more=False)
        m.until(lambda: 1 in m.ended or 1 in m.reset)
        assert b"part one" in m.body[1], m.body[1]
        assert 1 not in m.ended and m.tail[1] is None, (m.ended, m.tail[1])
        assert m.reset[1] == h2.errors.ErrorCodes.INTERNAL_ERROR, m.reset
    finally:
        m.close()
    r = host.client.get("/http/any/again")
    assert r.status_code == 200 and r.text == "hostile /any/again", r.text


def test_a_finished_answer_with_trailers_held_by_its_request_is_whole_over_http2(
        route_host: Callable[..., RouteHost]) -> None:
    """late-read over HTTP/2 with te: trailers, its request body held open: the answer
    (finished at once, the call reading on) comes whole once the body ends, its DATA
    exactly the body and no trailer block; the connection serves on."""
    host = hostile_start(route_host, "limits: {timeout_ms: 30000}\n",
                         slow=hostile_route("/slow/{leaf}", timeout_ms=20_000))
    m = _Many(host)
    try:
        m.open(1, "POST", "/http/slow/late-read", te="trailers", more=True)
        m.send(1, b"x" * 1000)
        m.send(1, b"y", end=True)
        m.until(lambda: 1 in m.ended or 1 in m.reset)
        assert (b":status", b"200") in m.head[1] and m.body[1] == b"answered", m.body[1]
        assert (b"content-length", b"8") in m.head[1], m.head[1]
        assert m.tail[1] is None, m.tail[1]
        _head, body = m.get(3, "/http/any/after")
        assert body == b"hostile /any/after", body
    finally:
        m.close()


# -- a client gone before the trailers ----------------------------------------------------------


class _Outcomes:
    """Each route answer's send (the route server's ``_send``: whole or streamed), as it
    ended: None (it returned) or what it raised."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.ended: list[BaseException | None] = []
        self.done = threading.Event()
        original = server.RoutesServer._send

        async def send(routes: Any, send: Any, response: Any, *, head_only: bool) -> None:
            try:
                await original(routes, send, response, head_only=head_only)
            except BaseException as exc:
                self.ended.append(exc)
                self.done.set()
                raise
            self.ended.append(None)
            self.done.set()

        monkeypatch.setattr(server.RoutesServer, "_send", send)

    def wait(self) -> BaseException | None:
        assert self.done.wait(20), "the answer's send never ended"
        self.done.clear()
        return self.ended[-1]


def _gone_after_the_body(host: RouteHost, te: bytes) -> None:
    """A streamed echo (its head and first chunk read), then the request's rest and its end
    sent and the connection closed at once: the client is gone before the guest's finish,
    its request complete."""
    sock = _connect(host)
    sock.settimeout(20)
    try:
        sock.sendall(b"POST " + ECHO.encode() + b" HTTP/1.1\r\nhost: "
                     + _authority(host).encode() + b"\r\n" + te
                     + b"transfer-encoding: chunked\r\n\r\n6\r\nfirst,\r\n")
        got = b""
        while b"first," not in got:
            chunk = sock.recv(65536)
            assert chunk, got
            got += chunk
        sock.sendall(b"4\r\nlast\r\n0\r\n\r\n")
    finally:
        sock.close()


#: An HTTP/1.1 client that sends its whole request and closes the connection before the
#: answer's end: TrailerStream.app_send handed a closed stream's http.response.trailers to
#: Hypercorn's HTTPStream, which takes trailers only on HTTP/2 and 3 and raised
#: UnexpectedMessageError into the route's send (logged twice at ERROR with a traceback).
#: Since the route sends trailers to every answer that has (or, streamed, may have) them, te
#: or not, any client could make the host log an error a request. (Found by this file.)


@pytest.mark.parametrize("te", [b"", b"te: trailers\r\n"], ids=["no-te", "te"])
def test_a_client_gone_before_streamed_trailers_is_no_error_over_http11(
        route_host: Callable[..., RouteHost], monkeypatch: pytest.MonkeyPatch,
        te: bytes) -> None:
    host = _echo_host(route_host)
    outcomes = _Outcomes(monkeypatch)
    _gone_after_the_body(host, te)
    ended = outcomes.wait()
    still_serving(host)
    assert ended is None, repr(ended)


@pytest.mark.parametrize("te", [b"", b"te: trailers\r\n"], ids=["no-te", "te"])
def test_a_client_gone_before_whole_trailers_is_no_error_over_http11(
        route_host: Callable[..., RouteHost], monkeypatch: pytest.MonkeyPatch,
        te: bytes) -> None:
    """The whole answer of /hello/trailers (x-checksum), its request sent and the
    connection closed at once (no te: before the change no trailers message was sent)."""
    host = start(route_host)
    outcomes = _Outcomes(monkeypatch)
    sock = _connect(host)
    try:
        sock.sendall(b"GET /http/hello/trailers HTTP/1.1\r\nhost: "
                     + _authority(host).encode() + b"\r\n" + te + b"\r\n")
    finally:
        sock.close()
    ended = outcomes.wait()
    still_serving(host)
    assert ended is None, repr(ended)


def test_a_client_gone_before_the_trailers_is_no_error_over_http2(
        route_host: Callable[..., RouteHost], monkeypatch: pytest.MonkeyPatch) -> None:
    """The HTTP/2 equal: the request's end, then RST_STREAM (CANCEL) at once: the streamed
    answer's send ends quietly (Hypercorn takes a closed stream's trailers on HTTP/2), and
    the connection serves its next stream."""
    host = _echo_host(route_host)
    outcomes = _Outcomes(monkeypatch)
    m = _Many(host)
    try:
        m.open(1, "POST", ECHO, te="trailers", more=True)
        m.send(1, b"first,")
        m.until(lambda: b"first," in m.body[1])
        m.conn.send_data(1, b"last", end_stream=True)
        m.conn.reset_stream(1, 8)  # CANCEL
        m.sock.sendall(m.conn.data_to_send())
        assert outcomes.wait() is None, outcomes.ended
        _head, body = m.get(3, "/http/hello/trailers")
        assert body == b"with trailers" and m.tail[3] == [(b"x-checksum", b"abc123")]
    finally:
        m.close()
    still_serving(host)


def test_a_cut_stream_over_http2_leaves_the_other_streams_of_its_connection(
        route_host: Callable[..., RouteHost]) -> None:
    """A streamed answer cut after its head (trap-mid: a trap mid-body) over HTTP/2 is its
    stream's reset (RFC 9113 §5.4.2), never the connection's end: another stream on it,
    its request body still being sent, is answered. Before, the cut stream waited with its
    buffer open and the connection went (found by this file)."""
    host = _hostile(route_host)
    m = _Many(host)
    try:
        m.open(1, "POST", "/http/any/read", te="trailers", more=True)
        m.send(1, b"x" * 100)
        m.open(3, "GET", "/http/any/trap-mid", te="trailers", more=False)
        m.until(lambda: 3 in m.reset or 3 in m.ended)
        assert 3 not in m.ended and b"part one" in m.body[3], (m.ended, m.body[3])
        m.send(1, b"y" * 20, end=True)
        m.until(lambda: 1 in m.ended or 1 in m.reset)
        assert m.body[1] == b"read 120 StreamError_Closed", m.body[1]
    finally:
        m.close()


def test_a_head_on_a_streamed_route_gets_no_body_or_trailers_over_http11(
        route_host: Callable[..., RouteHost]) -> None:
    """HEAD with te: trailers on the echo route over HTTP/1.1, its body held open: the head
    alone (no chunk, no trailer section); a new connection is served right."""
    host = _echo_host(route_host)
    h = _H1(host)
    h.sock.settimeout(20)
    try:
        h.request(b"HEAD", ECHO.encode(), [(b"te", b"trailers"), (b"content-length", b"10")])
        h.send(h11.Data(data=b"first,"))
        head, body, tail = h.response()
        assert head.status_code == 200 and body == b"" and tail == [], (head, body, tail)
    finally:
        h.close()
    h = _H1(host)
    try:
        head, body, tail = _get(h, b"/http/hello/trailers", [(b"te", b"trailers")])
        assert body == b"with trailers" and tail == [(b"x-checksum", b"abc123")], tail
    finally:
        h.close()
    still_serving(host)


def test_http2_trailers_wait_for_a_body_held_by_flow_control(
        route_host: Callable[..., RouteHost]) -> None:
    """A client whose stream window is 64 bytes: the streamed echo's 4 KiB body goes in
    window-sized DATA frames as the client opens it, and the trailers come after its last
    byte (h2 refuses DATA after them), never ahead of the body."""
    host = _echo_host(route_host)
    m = _Many(host)
    try:
        m.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 64})
        m.sock.sendall(m.conn.data_to_send())
        m.open(1, "POST", ECHO, te="trailers", more=True)
        m.send(1, b"a" * 4000 + b",")
        m.until(lambda: m.body[1].endswith(b","))
        m.send(1, b"b" * 96, end=True)
        m.until(lambda: 1 in m.ended or 1 in m.reset)
        assert m.body[1] == b"a" * 4000 + b"," + b"b" * 96 + b"|StreamError_Closed"
        assert m.tail[1] == [(b"x-echoed", b"4097")], m.tail[1]
    finally:
        m.close()
    still_serving(host)

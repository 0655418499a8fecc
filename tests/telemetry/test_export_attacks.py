"""The OTLP/HTTP transport (omnicore.telemetry._http) against a hostile, broken or spoofed
collector and an operator's odd configuration: what its own tests (test_export_answers.py)
do not try. A real TCP (or TLS) peer on loopback. Ten faults these found are fixed (each test
failed on the transport as first written: the reason is in its docstring)."""

from __future__ import annotations

import base64
import http.client
import os
import resource
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.common.http import _OTLPHTTPClient

from omnicore.telemetry import _http
from tests.registryserver import make_ca
from tests.telemetry.wire import OK, Answer, Peer, closing

STALE = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
SECOND = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"


@pytest.fixture
def redirect(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every connection the transport opens goes to 127.0.0.1 at the port asked (so that
    a name that no resolver knows reaches the loopback peer); the addresses asked are kept."""
    asked: list[tuple[str, int]] = []

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        asked.append((host, port))
        if port in (0, 80):  # (never reach a real service on this machine)
            raise ConnectionRefusedError(f"test: refused {(host, port)}")
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                 ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return asked


def port_of(p: Peer) -> int:
    return int(p.url.split(":")[2].split("/")[0])


# -- keep-alive desync ------------------------------------------------------------------------

def _unsolicited_later(sent: threading.Event, go: threading.Event) -> Answer:
    """OK, then (once the test has its result) an answer to no request, on the same
    connection: it waits in the client's socket, not in the transport's buffer."""
    def send(conn: socket.socket) -> None:
        conn.sendall(OK)
        if go.wait(5):
            conn.sendall(STALE)
        sent.set()
    return send


def test_a_kept_connection_on_a_descriptor_past_1023_is_used_again(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport) -> None:
    """Whether a kept connection has bytes waiting is asked with poll: select refuses a
    descriptor past 1,023 (ValueError), which would have failed every post of a host with
    that many files and sockets open, after its first."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        p = peer([SECOND, SECOND])
        first = transport.request("POST", p.url, data=b"one", timeout=5)
        assert first.status_code == 200
        assert transport._sock is not None and transport._sock.fileno() > 1023
        again = transport.request("POST", p.url, data=b"two", timeout=5)
        assert again.error is None and again.content() == b"second"
        assert p.connections == 1
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("how", ["same-write", "no-content-with-body", "later"])
def test_an_answer_to_no_request_is_never_taken_for_the_next_requests(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport,
        how: str) -> None:
    """(First written: bytes past an answer were taken for the next request's answer, and the
    connection stayed an answer behind from then on.)"""
    sent, go = threading.Event(), threading.Event()
    first: Answer = {
        "same-write": OK + STALE,
        "no-content-with-body": b"HTTP/1.1 204 No Content\r\nContent-Length: %d\r\n\r\n"
                                % len(STALE) + STALE,
        "later": _unsolicited_later(sent, go),
    }[how]
    p = peer([first, SECOND, SECOND])
    assert transport.request("POST", p.url, data=b"spans", timeout=5).error is None
    if how == "later":
        go.set()
        assert sent.wait(5)
        sock = transport._sock
        assert sock is not None and select.select([sock], [], [], 5)[0]  # (it has come)
    second = transport.request("POST", p.url, data=b"more", timeout=5)
    # Its own answer, on this connection or a new one: never the 503 sent before it was.
    assert second.status_code == 200 and second.content() == b"second"


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
], ids=["te-then-cl", "cl-then-te", "te-in-http10"])
def test_an_answer_framed_two_ways_does_not_keep_its_connection(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport,
        answer: bytes) -> None:
    """(First written: read by its chunks and the connection kept; RFC 9112 §6.1 and §6.3 make
    it an error.)"""
    p = peer([answer, OK, OK])
    transport.request("POST", p.url, data=b"spans", timeout=5)
    after = transport.request("POST", p.url, data=b"more", timeout=5)
    assert after.error is None and after.status_code == 200
    assert p.connections == 2


@pytest.mark.parametrize("code", [b"000", b"099"])
def test_a_status_code_below_100_is_a_bad_status_line(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport,
        code: bytes) -> None:
    """(First written: taken for an interim answer, and the answer after it returned.)"""
    p = peer([closing(b"HTTP/1.1 " + code + b" Odd\r\n\r\n" + OK)])
    result = transport.request("POST", p.url, data=b"spans", timeout=5)
    assert result.status_code is None and result.error is not None


# -- errors the SDK's client must see as connection errors -----------------------------------

@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\n\r\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\r\n\r\n",
], ids=["head", "trailer"])
def test_a_line_of_bare_carriage_returns_is_a_malformed_header_error(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport,
        answer: bytes) -> None:
    """(First written: an IndexError, which the SDK's client does not retry, naming no reason.)"""
    p = peer([closing(answer)])
    result = transport.request("POST", p.url, data=b"spans", timeout=5)
    assert result.status_code is None
    assert isinstance(result.error, http.client.HTTPException)


def test_a_content_length_of_many_digits_is_read_or_a_connection_error(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport) -> None:
    """(First written: int()'s ValueError past 4,300 digits, which the SDK's client does not
    retry.)"""
    p = peer([closing(b"HTTP/1.1 200 OK\r\nContent-Length: " + b"0" * 5000 + b"5\r\n\r\n"
                      b"hello")])
    result = transport.request("POST", p.url, data=b"spans", timeout=5)
    assert result.status_code == 200 or transport.is_connection_error(result.error)


def test_a_garbled_answer_is_retried_once_at_once_by_the_sdks_client(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport) -> None:
    p = peer([closing(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"), OK])
    client = _OTLPHTTPClient(transport, p.url, "spans", timeout=5, jitter=0)
    result = client.export(b"spans")
    assert result.success and result.status_code == 200
    assert p.connections == 2 and len(p.requests) == 2


@pytest.mark.parametrize("name", ["Retry-After", "RETRY-AFTER", "retry-after"])
def test_the_sdks_client_backs_off_by_retry_after_in_any_case(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport,
        name: str) -> None:
    """A 503 with Retry-After: 0 is retried at once (without it the client waits about a
    second); a Retry-After the client could not find would cost that second."""
    busy = b"HTTP/1.1 503 Busy\r\n%s: 0\r\nContent-Length: 0\r\n\r\n" % name.encode()
    p = peer([busy, OK])
    client = _OTLPHTTPClient(transport, p.url, "spans", timeout=5, jitter=0)
    began = time.monotonic()
    result = client.export(b"spans")
    assert result.success and len(p.requests) == 2
    assert time.monotonic() - began < 0.9
    assert p.connections == 1


# -- bounds: memory and time ------------------------------------------------------------------

@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"1\r\nx\r\n" * (_http.MAX_BODY + 1) + b"0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
    + b"X-T: 1\r\n" * (_http.MAX_FIELDS + 1) + b"\r\n",
    b"HTTP/1.1 200 OK\r\nX-F: 1\r\n" + b" folded\r\n" * (_http.MAX_FIELDS + 1)
    + b"Content-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X-F: " + b"v" * 60000 + b"\r\n" + b" " + b"v" * 70000
    + b"\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + b"e" * _http.MAX_LINE
    + b"\r\nx\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n" + b"X-I: 1\r\n" * (_http.MAX_FIELDS + 1) + b"\r\n" + OK,
    b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * (_http.MAX_BODY + 70000),
], ids=["tiny-chunks-past-bound", "trailers-many", "folds-many", "fold-long",
        "chunk-extension-long", "interim-fields-many", "to-close-past-bound"])
def test_an_answer_past_a_bound_another_way_is_an_error(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport,
        answer: bytes) -> None:
    p = peer([closing(answer), OK])
    result = transport.request("POST", p.url, data=b"spans", timeout=8)
    assert result.status_code is None and transport.is_connection_error(result.error)
    assert transport.request("POST", p.url, data=b"x", timeout=5).status_code == 200
    assert p.connections == 2


def _endless(head: bytes, piece: bytes, stop: threading.Event,
             pace: float = 0.0) -> Answer:
    """``head``, then ``piece`` again and again (every ``pace`` seconds) until the test ends
    or the transport closes the connection."""
    def send(conn: socket.socket) -> None:
        conn.sendall(head)
        while not stop.wait(pace):
            conn.sendall(piece)
    return send


@pytest.mark.parametrize(("head", "piece", "pace"), [
    (b"", b"H", 0.02),
    (b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 100 Continue\r\n\r\n"[:1], 0.02),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"1\r\nx\r\n", 0.02),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
     b"1;" + b"e" * 60000 + b"\r\nx\r\n", 0.0),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", b"x", 0.02),
    (b"HTTP/1.1 200 OK\r\n\r\n", b"x" * 1000, 0.02),
], ids=["status-line", "interim", "chunks", "extensions-flood", "length-body", "to-close"])
def test_an_answer_that_never_ends_is_cut_at_the_exports_timeout(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport,
        head: bytes, piece: bytes, pace: float) -> None:
    stop = threading.Event()
    p = peer([_endless(head, piece, stop, pace)])
    began = time.monotonic()
    try:
        result = transport.request("POST", p.url, data=b"spans", timeout=1.0)
    finally:
        stop.set()
    # (A flood of chunks may meet the chunk count's bound before the deadline.)
    cut = (TimeoutError, http.client.HTTPException) if pace == 0 else TimeoutError
    assert isinstance(result.error, cut)
    assert time.monotonic() - began < 3


# -- a collector that does not read ---------------------------------------------------------

BIG = b"s" * (64 << 20)


def _slow_reader(conn: socket.socket, stop: threading.Event, seconds: float) -> None:
    """Read 256 KiB every 0.1 s for ``seconds`` (each write of the transport's makes some
    progress within any timeout), then nothing until the test ends."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and not stop.wait(0.1):
        got = 0
        while got < (256 << 10):
            data = conn.recv(65536)
            if not data:
                return
            got += len(data)
    stop.wait(15)


def test_a_collector_reading_slowly_over_tcp_is_cut_at_the_exports_timeout(
        transport: _http.ClientTransport) -> None:
    stop = threading.Event()
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            try:
                _slow_reader(conn, stop, 4)
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/v1/traces"
    began = time.monotonic()
    try:
        result = transport.request("POST", url, data=BIG, timeout=2.0)
    finally:
        stop.set()
        server.close()
    assert isinstance(result.error, TimeoutError)
    assert time.monotonic() - began < 2.5


def _tls_server(folder: Path) -> tuple[ssl.SSLContext, Path]:
    ca, cert, key = make_ca(folder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, ca


def _post_big_over_tls(folder: Path, serve: Callable[[socket.socket, ssl.SSLContext,
                                                      threading.Event], None],
                       timeout: float) -> tuple[Any, float]:
    """:data:`BIG` posted over TLS to a collector that ``serve`` plays (given the accepted
    socket, the server's TLS context and an event set when the post is over): the result, and
    the seconds it took."""
    context, ca = _tls_server(folder)
    stop = threading.Event()
    server = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        raw, _ = server.accept()
        try:
            serve(raw, context, stop)
        except OSError:
            pass
        finally:
            raw.close()

    threading.Thread(target=accept, daemon=True).start()
    url = f"https://127.0.0.1:{server.getsockname()[1]}/v1/traces"
    transport = _http.ClientTransport(verify=str(ca))
    began = time.monotonic()
    try:
        result = transport.request("POST", url, data=BIG, timeout=timeout)
    finally:
        stop.set()
        server.close()
        transport.close()
    return result, time.monotonic() - began


def test_a_collector_reading_slowly_over_tls_is_cut_at_the_exports_timeout(
        tmp_path: Path) -> None:
    """SSLSocket.sendall is a loop of send()s, each with the socket's timeout: it holds only
    because each send() is one SSL_write of all that is left (no partial writes), under one
    deadline; a collector reading 2.5 MB/s of a 64 MiB body is cut at the timeout (a timeout
    on each write would take some 25 s)."""
    def serve(raw: socket.socket, context: ssl.SSLContext, stop: threading.Event) -> None:
        with context.wrap_socket(raw, server_side=True) as conn:
            _slow_reader(conn, stop, 4)

    result, took = _post_big_over_tls(tmp_path, serve, 2.0)
    assert isinstance(result.error, TimeoutError)
    assert took < 4.0


def test_tls_checks_the_collectors_name_and_sends_it(
        tmp_path: Path, redirect: list[tuple[str, int]]) -> None:
    context, ca = _tls_server(tmp_path)
    names: list[str | None] = []
    context.sni_callback = lambda _s, name, _c: names.append(name)
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        for _ in range(2):
            try:
                raw, _ = server.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(raw, server_side=True) as conn:
                    buf = b""
                    while b"\r\n\r\n" not in buf:
                        buf += conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    transport = _http.ClientTransport(verify=str(ca))
    try:
        good = transport.request("POST", f"https://localhost:{port}/v1/traces", data=b"x",
                                 timeout=5)
        spoofed = transport.request("POST", f"https://collector.invalid:{port}/v1/traces",
                                    data=b"x", timeout=5)
    finally:
        server.close()
        transport.close()
    assert good.error is None and good.status_code == 200
    assert isinstance(spoofed.error, ssl.SSLCertVerificationError)
    assert spoofed.status_code is None
    assert names[:1] == ["localhost"]


# -- the operator's URL and headers ---------------------------------------------------------

@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


def test_credentials_in_the_endpoint_are_sent_or_the_sdks_transport_kept(
        peer: Callable[[list[Answer]], Peer], no_proxy: None) -> None:
    """(First written: the userinfo dropped without a word, where the SDK's requests transport
    sends it as Basic authorization; the SDK's transport is kept for such an endpoint now.)"""
    p = peer([OK])
    url = p.url.replace("http://", "http://user:secret@")
    transport = _http.lean_transport(url, {})
    if transport is None:
        return
    try:
        assert transport.request("POST", url, data=b"x", timeout=5).status_code == 200
    finally:
        transport.close()
    head = p.requests[0].split(b"\r\n\r\n")[0]
    assert b"secret" not in head.split(b"\r\n")[0]  # (never in the request line)
    assert b"authorization: basic " + base64.b64encode(b"user:secret") in head.lower()


def test_the_endpoints_userinfo_never_reaches_the_request_line_or_host(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport) -> None:
    p = peer([OK])
    url = p.url.replace("http://", "http://evil.example@")
    assert transport.request("POST", url, data=b"x", timeout=5).status_code == 200
    head = p.requests[0].split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"POST /v1/traces HTTP/1.1"
    assert head[1] == b"Host: 127.0.0.1:%d" % port_of(p)


@pytest.mark.parametrize(("host", "ascii_host"), [
    ("bücher.example", b"xn--bcher-kva.example"),
    ("\u4f8b\u3048.example", b"xn--r8jz45g.example"),
])
def test_an_international_host_is_sent_in_its_idna_form(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport,
        redirect: list[tuple[str, int]], host: str, ascii_host: bytes) -> None:
    """(First written: Host sent as latin-1 bytes, or a UnicodeEncodeError past latin-1.)"""
    p = peer([OK])
    result = transport.request("POST", f"http://{host}:{port_of(p)}/v1/traces", data=b"x",
                               timeout=5)
    assert result.error is None and result.status_code == 200
    assert b"Host: %s:%d" % (ascii_host, port_of(p)) in p.requests[0].split(b"\r\n")


def test_an_endpoint_on_port_0_is_not_sent_to_port_80(
        transport: _http.ClientTransport, redirect: list[tuple[str, int]]) -> None:
    """(First written: ``port or default`` connected to port 80.)"""
    result = transport.request("POST", "http://127.0.0.1:0/v1/traces", data=b"x", timeout=5)
    assert result.error is not None
    assert all(port != 80 for _, port in redirect)


def test_an_ipv6_literal_host_is_bracketed_in_host(transport: _http.ClientTransport) -> None:
    server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    port = server.getsockname()[1]
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += conn.recv(65536)
            got.append(buf)
            conn.sendall(OK)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        result = transport.request("POST", f"http://[::1]:{port}/v1/traces", data=b"x",
                                   timeout=5)
    finally:
        server.close()
    thread.join(5)
    assert result.status_code == 200
    assert got and b"\r\nHost: [::1]:%d\r\n" % port in got[0]


@pytest.mark.parametrize(("path", "line"), [
    ("/v1/traces%0D%0AX-Injected:%201", b"POST /v1/traces%0D%0AX-Injected:%201 HTTP/1.1"),
    ("/v1/tr\r\naces", b"POST /v1/traces HTTP/1.1"),  # (urlsplit drops CR, LF and tab)
    ("/v1/traces?a=1&b=%20", b"POST /v1/traces?a=1&b=%20 HTTP/1.1"),
    ("/v1/traces#frag ment", b"POST /v1/traces HTTP/1.1"),
    ("", b"POST / HTTP/1.1"),
])
def test_the_request_line_is_one_line_whatever_the_path(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport,
        path: str, line: bytes) -> None:
    p = peer([OK])
    base = p.url.rsplit("/v1/traces", 1)[0]
    assert transport.request("POST", base + path, data=b"x", timeout=5).status_code == 200
    head = p.requests[0].split(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == line
    assert not any(h.lower().startswith(b"x-injected") for h in head[1:])


@pytest.mark.parametrize("url_tail", ["/v1/traces?a b", "/v1/traces?a=\x00", "/v1/\x7ftraces",
                                      "/v1/tra\u0441es"])
def test_a_path_that_is_not_a_request_target_is_refused_with_nothing_sent(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport,
        url_tail: str) -> None:
    p = peer([OK])
    base = p.url.rsplit("/v1/traces", 1)[0]
    result = transport.request("POST", base + url_tail, data=b"x", timeout=5)
    assert isinstance(result.error, ValueError)
    assert p.connections == 0 and p.requests == []


@pytest.mark.parametrize("headers", [
    {"hOsT": "evil.example", "CONTENT-LENGTH": "0", "Transfer-encoding": "chunked",
     "connection": "upgrade", "X-A": "1", "x-a": "2"},
])
def test_framing_headers_in_any_case_are_the_transports_and_duplicates_pass(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport,
        headers: dict[str, str]) -> None:
    p = peer([OK])
    assert transport.request("POST", p.url, headers=headers, data=b"spans",
                             timeout=5).status_code == 200
    head, body = p.requests[0].split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")[1:]
    names = sorted(line.split(b":", 1)[0].lower() for line in lines)
    assert names == [b"content-length", b"content-type", b"host", b"x-a", b"x-a"]
    assert b"Content-Length: 5" in lines and body == b"spans"
    assert b"Host: 127.0.0.1:%d" % port_of(p) in lines


def test_a_non_exception_in_the_answer_does_not_leave_a_half_read_connection(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A BaseException (KeyboardInterrupt where the export runs in the main thread, as a
    SimpleSpanProcessor's does) escapes ``request`` as it should; the connection it cut short
    must not be read again. (First written: only an Exception closed it, and the next
    request read the interrupted one's answer.)"""
    answered = threading.Event()

    def first(conn: socket.socket) -> None:  # (taken and sent before the next request)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
        answered.set()

    p = peer([first, SECOND, SECOND])
    real = _http._answer

    def interrupted(reader: Any, method: str) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(_http, "_answer", interrupted)
    with pytest.raises(KeyboardInterrupt):
        transport.request("POST", p.url, data=b"x", timeout=5)
    monkeypatch.setattr(_http, "_answer", real)
    assert answered.wait(5)
    result = transport.request("POST", p.url, data=b"y", timeout=5)
    assert result.status_code == 200 and result.content() == b"second"


def test_a_slow_handshake_then_no_reading_is_cut_at_the_exports_timeout(
        tmp_path: Path) -> None:
    """(First written: each step before the answer given the whole timeout, so a collector slow
    to shake hands that then read nothing held a request for two timeouts and more.)"""
    def serve(raw: socket.socket, context: ssl.SSLContext, stop: threading.Event) -> None:
        if stop.wait(1.8):  # (the collector's pace: the handshake within the timeout)
            return
        with context.wrap_socket(raw, server_side=True):
            stop.wait(15)  # (and not a byte read)

    result, took = _post_big_over_tls(tmp_path, serve, 2.0)
    assert isinstance(result.error, TimeoutError)
    assert took < 3.0  # (cut near 2 s; the timeout given to each step: 3.8)


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nConnection: CLOSE\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\n"
    b"Content-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nconnection:Upgrade,close\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: keep-alive,\r\n close\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive, close\r\nContent-Length: 0\r\n\r\n",
], ids=["upper", "repeated", "list", "folded", "http10-both"])
def test_close_said_any_way_ends_the_connection(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport,
        answer: bytes) -> None:
    p = peer([closing(answer), OK])
    assert transport.request("POST", p.url, data=b"x", timeout=5).status_code == 200
    assert transport.request("POST", p.url, data=b"y", timeout=5).status_code == 200
    assert p.connections == 2

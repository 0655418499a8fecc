"""What the OTLP/HTTP transport reads from a collector (omnicore.telemetry._http, issue 62):
an answer framed any way RFC 9112 allows (by length, by chunks, to the close, after interim
answers) is read and the connection kept only where the answer lets it be; an answer past a
bound or out of the grammar is an error result, the connection closed; a collector that
trickles its answer is cut at the export's timeout; a header that would split the head is
never sent. A real TCP peer on loopback sends each answer's bytes as written here."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest

from omnicore.telemetry import _http
from tests.telemetry.wire import OK, Answer, Peer, closing


@pytest.mark.parametrize(("answer", "body", "kept"), [
    (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 5\r\n\r\n"
     b"hello", b"hello", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello", b"hello", True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nX-Trailer: t\r\n\r\n", b"hello", True),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK,
     b"", True),
    (b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", b"", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", b"ok", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok", False),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", b"ok", True),
    (closing(b"HTTP/1.1 200 OK\r\n\r\nto the close"), b"to the close", False),
    (b"HTTP/1.1 204 No Content\r\n\r\n", b"", True),
], ids=["length", "length-list", "chunked", "interim", "no-reason", "close", "http10",
        "http10-keep-alive", "to-close", "no-content"])
def test_an_answer_framed_any_way_is_read_and_its_connection_kept_only_where_it_says(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport, answer: Answer,
        body: bytes, kept: bool) -> None:
    p = peer([answer, OK, OK])
    first = transport.request("POST", p.url, data=b"spans", timeout=10)
    assert first.error is None and first.status_code in (200, 204)
    assert first.content() == body
    second = transport.request("POST", p.url, data=b"more", timeout=10)
    assert second.error is None and second.status_code == 200
    assert p.connections == (1 if kept else 2)
    assert [r.rsplit(b"\r\n\r\n", 1)[1] for r in p.requests] == [b"spans", b"more"]


def test_the_answers_fields_are_read_without_regard_to_case_folded_and_repeated(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport) -> None:
    p = peer([b"HTTP/1.1 503 Service Unavailable\r\nretry-AFTER: 3\r\nX-Note: one\r\n"
              b"  two\r\nVia: a\r\nVia: b\r\nContent-Length: 0\r\n\r\n"])
    result = transport.request("POST", p.url, data=b"", timeout=10)
    assert result.status_code == 503 and result.reason == "Service Unavailable"
    head = result.headers()
    assert head.get("Retry-After") == "3"  # (what the SDK's client backs off by)
    assert head["x-note"] == "one two" and head["VIA"] == "a, b"


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 " + b"x" * _http.MAX_LINE + b"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Long: " + b"x" * _http.MAX_LINE + b"\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"X-F: 1\r\n" * (_http.MAX_FIELDS + 1) + b"Content-Length: 0\r\n\r\n",
    b"HTTP/1.1 102 Processing\r\n\r\n" * (_http.MAX_INTERIM + 1) + OK,
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (_http.MAX_BODY + 1),
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + (b"80000\r\n" + b"x" * 0x80000 + b"\r\n") * 3 + b"0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"1\r\nx\r\n" * (_http.MAX_CHUNKS + 1) + b"0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 17 + b"\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiXX0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: \xd9\xa3\r\n\r\nabc",
    b"HTTP/1.1 200 OK\r\nBad Name: 1\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
    b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\n\r\n",
    b"SSH-2.0-OpenSSH_9.2\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nContent-Le",
    b"",
], ids=["status-line-long", "field-long", "fields-many", "interim-many", "switch",
        "length-past-bound", "chunks-past-bound", "chunks-many", "chunk-size-not-hex",
        "chunk-size-long",
        "chunk-without-crlf", "coding-not-chunked", "length-conflicting", "length-negative",
        "length-not-ascii", "field-name-space", "field-no-colon", "version-2", "status-4-digits",
        "not-http", "body-cut", "head-cut", "closed-unanswered"])
def test_an_answer_past_a_bound_or_out_of_the_grammar_is_an_error_and_its_connection_ends(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport,
        answer: bytes) -> None:
    p = peer([closing(answer), OK])
    result = transport.request("POST", p.url, data=b"spans", timeout=10)
    assert result.status_code is None and result.error is not None
    assert transport.is_connection_error(result.error)  # (the SDK's client retries it once)
    after = transport.request("POST", p.url, data=b"more", timeout=10)
    assert after.error is None and after.status_code == 200
    assert p.connections == 2  # the bad answer's connection was not used again


def test_a_collector_that_trickles_its_answer_is_cut_at_the_exports_timeout(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport) -> None:
    """A byte every 50 ms keeps every read within any per-read timeout: only a deadline for
    the whole answer ends it. (The peer gives up after 20 s, so that a transport without
    one fails here rather than hangs.)"""
    stop = threading.Event()

    def trickle(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(400):
            if stop.wait(0.05):
                return
            conn.sendall(b"X")

    p = peer([trickle])
    began = time.monotonic()
    try:
        result = transport.request("POST", p.url, data=b"spans", timeout=1.0)
    finally:
        stop.set()
    assert isinstance(result.error, TimeoutError)
    assert transport.is_connection_error(result.error)
    assert time.monotonic() - began < 10  # (cut near 1 s; a timeout on each read: 20 s)


@pytest.mark.parametrize("headers", [
    {"x-tenant": "blue\r\nX-Injected: 1"},
    {"x-tenant": "blue\nX-Injected: 1"},
    {"x-tenant": "blue\x00"},
    {"x tenant": "blue"},
    {"x-tenant:": "blue"},
    {"x-tenant": "bl\u0119"},
    {"x-a": "1\r"},
    {"x-a": "\r\nHost: evil"},
    {"X-A\r\nHost": "evil"},
    {"x-a": "\u2028"},
    {"\u212aey": "1"},  # (the Kelvin sign: lower() would make it an ASCII k)
    {"": "1"},
])
def test_a_header_that_would_split_the_head_is_refused_and_nothing_is_sent(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport,
        headers: dict[str, str]) -> None:
    p = peer([OK])
    result = transport.request("POST", p.url, headers=headers, data=b"x",
                                             timeout=10)
    assert isinstance(result.error, ValueError)
    assert p.connections == 0 and p.requests == []


def test_the_head_is_the_transports_own_framing_whatever_headers_say(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport) -> None:
    """Host, Content-Length, Transfer-Encoding and Connection are the transport's to say:
    an operator's header of those names cannot frame the body otherwise."""
    p = peer([OK, OK])
    headers = {"Content-Length": "1", "Transfer-Encoding": "chunked", "Host": "elsewhere",
               "Connection": "close", "Content-Type": "application/x-protobuf",
               "X-Tenant": "blue"}
    for data in (b"spans", b"more spans"):
        assert transport.request("POST", p.url, headers=headers, data=data,
                                 timeout=10).status_code == 200
    head, body = p.requests[1].split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/traces HTTP/1.1" and body == b"more spans"
    fields = [line.split(b":", 1)[0].lower() for line in lines[1:]]
    assert sorted(fields) == sorted([b"host", b"content-type", b"x-tenant",
                                     b"content-length"])
    assert b"Content-Length: 10" in lines and b"Host: 127.0.0.1:%d" % int(
        p.url.split(":")[2].split("/")[0]) in lines
    assert p.connections == 1

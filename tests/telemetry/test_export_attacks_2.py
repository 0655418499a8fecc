"""The OTLP/HTTP transport (omnicore.telemetry._http), a second round of attacks: the code the
first round's fixes changed (one deadline for every step, the kept connection's reuse check,
bytes past an answer, lean_transport's credential and proxy detection, IDNA hosts, ports, the
head cache), the SDK's retrying client around it, a close from another thread, and sockets
left open on error paths. A real TCP (or TLS) peer on loopback. Eight faults these found are
fixed; each such test says what it found."""

from __future__ import annotations

import errno
import gc
import inspect
import os
import select
import socket
import ssl
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import requests
from opentelemetry.exporter.otlp.common.http import _OTLPHTTPClient
from requests.utils import get_netrc_auth, select_proxy

from omnicore.telemetry import _http
from tests.registryserver import make_ca
from tests.telemetry.wire import OK, Answer, Peer

STALE = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
SECOND = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"
URL = "http://collector.example:4318/v1/traces"
PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


def port_of(p: Peer) -> int:
    return int(p.url.split(":")[2].split("/")[0])


def head_of(request: bytes) -> list[bytes]:
    return request.split(b"\r\n\r\n")[0].split(b"\r\n")


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper() in PROXIES or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


@pytest.fixture
def redirect(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every name resolves to 127.0.0.1 at the port asked; the (host, port) asked are kept."""
    asked: list[tuple[str, int]] = []

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        asked.append((host, port))
        if port in (0, 80, 443):
            raise ConnectionRefusedError(f"test: refused {(host, port)}")
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                 ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    return asked


@pytest.fixture
def resource_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """ResourceWarnings (an unclosed socket collected) raised while the test runs."""
    gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield caught


def unclosed(caught: list[warnings.WarningMessage]) -> list[str]:
    gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def _tls_server(folder: Path) -> tuple[ssl.SSLContext, Path]:
    ca, cert, key = make_ca(folder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, ca


# -- lean_transport: where the SDK's requests transport would do something else -------------

@pytest.mark.parametrize("name", ["ALL_PROXY", "all_proxy"])
def test_an_all_proxy_keeps_the_sdks_transport(no_proxy: None, monkeypatch: pytest.MonkeyPatch,
                                               name: str) -> None:
    """(Found: ALL_PROXY was not looked at, and the export went past the operator's proxy.)"""
    monkeypatch.setenv(name, "http://proxy.example:3128")
    settings = requests.Session().merge_environment_settings(URL, {}, None, None, None)
    assert select_proxy(URL, settings["proxies"]) == "http://proxy.example:3128"  # (requests')
    assert _http.lean_transport(URL) is None


def test_no_proxy_for_the_collector_with_all_proxy_is_the_lean_transport(
        no_proxy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """(Held whatever the ALL_PROXY case's fix: NO_PROXY naming the collector bypasses it.)"""
    monkeypatch.setenv("ALL_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "collector.example")
    settings = requests.Session().merge_environment_settings(URL, {}, None, None, None)
    assert select_proxy(URL, settings["proxies"]) is None
    assert _http.lean_transport(URL) is not None


def test_a_netrc_that_is_not_utf8_does_not_fail_the_setup(tmp_path: Path, no_proxy: None) -> None:
    """(Found: its UnicodeDecodeError escaped lean_transport and failed tracing's setup.)"""
    rc = tmp_path / "netrc"
    rc.write_bytes(b"machine collector.example login u password p\xe9\xff\n")
    with pytest.raises(UnicodeDecodeError):  # (the file: locale UTF-8 cannot read it)
        rc.read_text(encoding="utf-8")
    _http.lean_transport(URL, {"NETRC": str(rc)})


@pytest.mark.parametrize(("files", "netrc_var", "url"), [
    ({".netrc": "machine collector.example login u password p\n"}, None, URL),
    ({"_netrc": "machine collector.example login u password p\n"}, None, URL),
    ({".netrc": "default login u password p\n"}, None, URL),
    ({".netrc": "machine collector.example password p\n"}, None, URL),
    ({".netrc": "machine collector.example login u\n"}, None, URL),
    ({"rc": "machine collector.example login u password p\n"}, "rc", URL),
    ({".netrc": "machine collector.example login u password p\n"}, "", URL),
    ({".netrc": "machine collector.example login u password p\n"}, "missing", URL),
    ({".netrc": "machine collector.example login u password p\n"}, None,
     "http://COLLECTOR.Example:4318/v1/traces"),
    ({".netrc": "machine bücher.example login u password p\n"}, None,
     "http://bücher.example:4318/v1/traces"),
    ({".netrc": "machine ::1 login u password p\n"}, None, "http://[::1]:4318/v1/traces"),
    ({".netrc": "machine collector.example\n"}, None, URL),
], ids=["home", "underscore", "default", "password-only", "login-only", "NETRC", "NETRC-empty",
        "NETRC-missing", "upper-case-url", "idna", "ipv6", "no-fields"])
def test_never_lean_where_requests_would_send_netrc_credentials(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_proxy: None,
        files: dict[str, str], netrc_var: str | None, url: str) -> None:
    """The safety the credential check is for: wherever requests' session finds a .netrc
    login for the endpoint (NETRC, else ~/.netrc then ~/_netrc, a default entry, the host in
    any case), the lean transport, which sends none, is not used."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    if netrc_var is None:
        monkeypatch.delenv("NETRC", raising=False)
    else:
        monkeypatch.setenv("NETRC", str(tmp_path / netrc_var) if netrc_var else "")
    sent = get_netrc_auth(url)
    lean = _http.lean_transport(url)
    if sent is not None:
        assert lean is None, f"requests sends {sent} from the .netrc, the lean transport none"


# -- IDNA: where the export goes -------------------------------------------------------------

@pytest.mark.parametrize("host", ["straße.example", "ςa.example", "a\u200db.example"],
                         ids=["sharp-s", "final-sigma", "zero-width-joiner"])
def test_an_international_host_goes_where_the_sdks_transport_would_send_it(
        transport: _http.ClientTransport, redirect: list[tuple[str, int]], host: str) -> None:
    """(Found: Python's IDNA 2003 codec sent straße.example to strasse.example, another domain.)"""
    url = f"http://{host}:4318/v1/traces"
    try:
        prepared = requests.Request("POST", url).prepare().url
    except requests.exceptions.InvalidURL:
        prepared = None  # (requests sends it nowhere)
    transport.request("POST", url, data=b"x", timeout=5)
    asked = [name for name, _ in redirect]
    assert asked == ([] if prepared is None else [prepared.split("//")[1].split(":")[0]])


def test_an_international_host_both_encodings_agree_on_is_sent_so(
        transport: _http.ClientTransport, redirect: list[tuple[str, int]]) -> None:
    url = "http://bücher.example:4318/v1/traces"
    assert requests.Request("POST", url).prepare().url == \
        "http://xn--bcher-kva.example:4318/v1/traces"
    transport.request("POST", url, data=b"x", timeout=5)
    assert [name for name, _ in redirect] == ["xn--bcher-kva.example"]


# -- ports -------------------------------------------------------------------------------------

@pytest.mark.parametrize("port", ["65536", "-1", "x80", "99999999999", "\u0668\u0660"])
def test_a_port_out_of_range_or_not_a_number_is_refused_unsent_and_not_retried(
        transport: _http.ClientTransport, redirect: list[tuple[str, int]], port: str) -> None:
    result = transport.request("POST", f"http://collector.example:{port}/v1/traces",
                               data=b"x", timeout=5)
    assert isinstance(result.error, ValueError)
    assert not transport.is_connection_error(result.error)
    assert redirect == []


def test_default_ports_are_connected_to_and_left_out_of_host(
        transport: _http.ClientTransport, redirect: list[tuple[str, int]]) -> None:
    for url, port in (("http://collector.example/v1/traces", 80),
                      ("https://collector.example/v1/traces", 443)):
        result = transport.request("POST", url, data=b"x", timeout=5)
        assert isinstance(result.error, ConnectionRefusedError)
        assert redirect[-1] == ("collector.example", port)
    assert transport._prefix("POST", "https://collector.example/v1/traces", None) \
        .split(b"\r\n")[1] == b"Host: collector.example"


# -- the head cache ----------------------------------------------------------------------------

def test_the_head_follows_every_change_of_headers_and_url(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport) -> None:
    p = peer([OK] * 6)
    q = peer([OK])
    headers = {"Authorization": "Bearer one"}
    assert transport.request("POST", p.url, headers=headers, data=b"a", timeout=5) \
        .status_code == 200
    headers["Authorization"] = "Bearer two"  # (the same dict, changed in place)
    transport.request("POST", p.url, headers=headers, data=b"b", timeout=5)
    headers["X-Tenant"] = "t"
    transport.request("POST", p.url, headers=headers, data=b"c", timeout=5)
    transport.request("POST", p.url + "?x=1", headers=headers, data=b"d", timeout=5)
    transport.request("POST", p.url, headers={"authorization": "Bearer two"}, data=b"e",
                      timeout=5)
    transport.request("POST", q.url, headers=headers, data=b"f", timeout=5)
    heads = [head_of(r) for r in p.requests + q.requests]
    assert b"Authorization: Bearer one" in heads[0]
    assert b"Authorization: Bearer two" in heads[1] and b"Bearer one" not in b"".join(heads[1])
    assert b"X-Tenant: t" in heads[2] and b"X-Tenant: t" not in heads[1]
    assert heads[3][0] == b"POST /v1/traces?x=1 HTTP/1.1"
    assert b"authorization: Bearer two" in heads[4] and b"X-Tenant: t" not in heads[4]
    assert heads[5][1] == b"Host: 127.0.0.1:%d" % port_of(q)
    assert all(h[-1].startswith(b"Content-Length: 1") for h in heads)


def test_a_refused_header_does_not_leave_its_head_for_the_next_request(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport) -> None:
    p = peer([OK, OK])
    assert transport.request("POST", p.url, headers={"X": "ok"}, data=b"a", timeout=5) \
        .status_code == 200
    bad = transport.request("POST", p.url, headers={"X": "ok", "Y": "a\r\nEvil: 1"},
                            data=b"b", timeout=5)
    assert isinstance(bad.error, ValueError)
    good = transport.request("POST", p.url, headers={"X": "ok"}, data=b"c", timeout=5)
    assert good.status_code == 200
    assert len(p.requests) == 2 and all(b"Evil" not in r for r in p.requests)


def test_a_header_value_that_is_not_a_string_is_an_error_never_a_stale_head(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport) -> None:
    """(1 == True == 1.0 as keys: were one cached, the other could reuse its head.)"""
    p = peer([OK])
    for value in (1, True, 1.0, b"1"):
        result = transport.request("POST", p.url, headers={"X": value},  # type: ignore[dict-item]
                                   data=b"a", timeout=5)
        assert result.error is not None and not transport.is_connection_error(result.error)
    assert p.requests == []


# -- one deadline for every step -------------------------------------------------------------

@pytest.mark.parametrize("timeout", [0.0, -1.0])
def test_no_time_left_is_a_timeout_with_no_connection_made(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport,
        timeout: float) -> None:
    """What the SDK's client passes once its deadline has passed (max(left, 0))."""
    p = peer([OK])
    result = transport.request("POST", p.url, data=b"x", timeout=timeout)
    assert isinstance(result.error, TimeoutError)
    assert transport.is_connection_error(result.error)
    assert p.connections == 0 and transport._sock is None


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_an_address_timed_out_by_the_kernel_with_time_left_is_not_the_last_tried(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport,
        monkeypatch: pytest.MonkeyPatch, timeout: float | None) -> None:
    """(Found: a kernel ETIMEDOUT on the first address ended the loop, time left or not.)"""
    p = peer([OK])
    dead = ("127.0.0.1", 9)  # (never connected to: the patched connect fails it)

    def resolve(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", dead),
                (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                 ("127.0.0.1", port))]

    real = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if address == dead:
            raise TimeoutError(errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT))
        real(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setattr(socket.socket, "connect", connect)
    result = transport.request("POST", f"http://collector.example:{port_of(p)}/v1/traces",
                               data=b"x", timeout=timeout)
    assert result.error is None and result.status_code == 200


def test_timeout_none_blocks_without_bound_but_reads_and_keeps_the_connection(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport) -> None:
    p = peer([SECOND, SECOND, SECOND])
    assert transport.request("POST", p.url, data=b"a", timeout=5).content() == b"second"
    assert transport.request("POST", p.url, data=b"b", timeout=None).content() == b"second"
    assert transport._sock is not None and transport._sock.gettimeout() is None
    assert transport.request("POST", p.url, data=b"c", timeout=5).content() == b"second"
    assert p.connections == 1


# -- the SDK's client around the transport ---------------------------------------------------

def test_a_collector_that_never_answers_holds_an_export_one_timeout(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport) -> None:
    p = peer([lambda conn: None, lambda conn: None, lambda conn: None])  # (never answered)
    client = _OTLPHTTPClient(transport, p.url, "spans", timeout=2, jitter=0)
    began = time.monotonic()
    result = client.export(b"spans")
    took = time.monotonic() - began
    assert not result.success and isinstance(result.error, TimeoutError)
    assert took < 3.5  # (2 s, the immediate retry given nothing: no second timeout)
    assert len(p.requests) == 1


def test_a_refused_collector_is_tried_a_bounded_number_of_times_within_the_timeout(
        transport: _http.ClientTransport, monkeypatch: pytest.MonkeyPatch) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    server.close()  # (refused from now on)
    calls: list[float] = []
    real = socket.getaddrinfo

    def resolve(*args: Any, **kwargs: Any) -> Any:
        calls.append(time.monotonic())
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    client = _OTLPHTTPClient(transport, f"http://127.0.0.1:{port}/v1/traces", "spans",
                             timeout=2, jitter=0)
    began = time.monotonic()
    result = client.export(b"spans")
    assert not result.success and isinstance(result.error, ConnectionRefusedError)
    assert time.monotonic() - began < 3.0
    assert 2 <= len(calls) <= 12  # (once, once at once, then after backoff: no spin)


def test_a_header_the_transport_refuses_is_not_retried(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport) -> None:
    p = peer([OK])
    client = _OTLPHTTPClient(transport, p.url, "spans", timeout=5, jitter=0,
                             headers={"X-Bad": "a\nb"})
    began = time.monotonic()
    result = client.export(b"spans")
    assert not result.success and isinstance(result.error, ValueError)
    assert time.monotonic() - began < 1.0 and p.connections == 0


def test_a_missing_ca_file_is_not_retried_and_connects_nowhere(
        peer: Callable[[list[Answer]], Peer], tmp_path: Path) -> None:
    """(Found: a FileNotFoundError, retried as a network error, each try connecting first.)"""
    p = peer([])
    transport = _http.ClientTransport(verify=str(tmp_path / "missing.pem"))
    try:
        result = transport.request("POST", p.url.replace("http:", "https:"), data=b"x",
                                   timeout=5)
        assert isinstance(result.error, ValueError) and "TLS settings" in str(result.error)
        assert not transport.is_connection_error(result.error)
        assert p.connections == 0
    finally:
        transport.close()


# -- TLS: the reuse check ----------------------------------------------------------------------

def _tls_peer(folder: Path, serve: Callable[[ssl.SSLSocket], None]
              ) -> tuple[str, Path, list[int], Callable[[], None]]:
    """A TLS collector: ``serve`` is given each connection; (url, CA, accepted count, stop)."""
    context, ca = _tls_server(folder)
    server = socket.create_server(("127.0.0.1", 0))
    accepted = [0]
    conns: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                raw, _ = server.accept()
            except OSError:
                return
            accepted[0] += 1
            conns.append(raw)
            threading.Thread(target=run, args=(raw,), daemon=True).start()

    def run(raw: socket.socket) -> None:
        try:
            with context.wrap_socket(raw, server_side=True) as conn:
                serve(conn)
        except OSError:
            pass

    def stop() -> None:
        server.close()
        for conn in conns:
            conn.close()

    threading.Thread(target=accept, daemon=True).start()
    return f"https://127.0.0.1:{server.getsockname()[1]}/v1/traces", ca, accepted, stop


def _read_request(conn: ssl.SSLSocket) -> bool:
    buf = b""
    while b"\r\n\r\n" not in buf:
        got = conn.recv(65536)
        if not got:
            return False
        buf += got
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(rest) < length:
        rest += conn.recv(65536)
    return True


def test_over_tls_a_kept_connection_is_used_again(tmp_path: Path) -> None:
    """The reuse check (pending, poll) takes no TLS record for an answer to no request: two
    posts, one connection and one handshake."""
    def serve(conn: ssl.SSLSocket) -> None:
        while _read_request(conn):
            conn.sendall(SECOND)

    url, ca, accepted, stop = _tls_peer(tmp_path, serve)
    transport = _http.ClientTransport(verify=str(ca))
    try:
        for _ in range(3):
            result = transport.request("POST", url, data=b"x", timeout=5)
            assert result.error is None and result.content() == b"second"
        assert accepted[0] == 1
    finally:
        transport.close()
        stop()


def test_over_tls_an_answer_to_no_request_in_its_own_record_is_never_read(
        tmp_path: Path) -> None:
    sent = threading.Event()

    def serve(conn: ssl.SSLSocket) -> None:
        if not sent.is_set() and _read_request(conn):  # (the first connection's first)
            conn.sendall(OK)
            conn.sendall(STALE)  # (a record of its own, after the answer's)
            sent.set()
        while _read_request(conn):
            conn.sendall(SECOND)

    url, ca, accepted, stop = _tls_peer(tmp_path, serve)
    transport = _http.ClientTransport(verify=str(ca))
    try:
        assert transport.request("POST", url, data=b"x", timeout=5).status_code == 200
        assert sent.wait(5)
        sock = transport._sock
        if sock is not None:  # (the stale record has reached this end, or was read with OK)
            assert isinstance(sock, ssl.SSLSocket)
            assert sock.pending() or select.select([sock], [], [], 5)[0]
        second = transport.request("POST", url, data=b"y", timeout=5)
        assert second.status_code == 200 and second.content() == b"second"
        assert accepted[0] == 2  # (the connection with the stale answer dropped)
    finally:
        transport.close()
        stop()


# -- a close from another thread; sockets left open ------------------------------------------

def test_a_close_from_another_thread_cuts_no_post_past_its_timeout(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport) -> None:
    got, stop = threading.Event(), threading.Event()

    def hold(conn: socket.socket) -> None:
        got.set()
        stop.wait(10)

    p = peer([hold])
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(
        transport.request("POST", p.url, data=b"x", timeout=3)))
    began = time.monotonic()
    thread.start()
    try:
        assert got.wait(5)
        transport.close()  # (the SDK's shutdown, from the thread shutting down)
        thread.join(6)
    finally:
        stop.set()
    assert not thread.is_alive() and time.monotonic() - began < 4.5
    assert results[0].error is not None and results[0].status_code is None
    assert transport._sock is None


def test_two_closes_racing_never_raise(peer: Callable[[list[Answer]], Peer],
                                       transport: _http.ClientTransport) -> None:
    """(Found: close() read the socket twice, and raised AttributeError between.)"""
    p = peer([OK])
    assert transport.request("POST", p.url, data=b"x", timeout=5).status_code == 200
    # (held where the connection is closed, in the one place that closes it)
    lines, first = inspect.getsourcelines(_http.ClientTransport._drop)
    at = first + next(i for i, text in enumerate(lines) if "sock.close()" in text)
    checked, go = threading.Event(), threading.Event()
    code = _http.ClientTransport._drop.__code__
    errors: list[BaseException] = []

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and frame.f_lineno == at:
            checked.set()
            go.wait(5)
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code is code else None

    def shutdown() -> None:
        sys.settrace(tracer)
        try:
            transport.close()
        except BaseException as exc:  # (what the other thread would see)
            errors.append(exc)
        finally:
            sys.settrace(None)

    thread = threading.Thread(target=shutdown)
    thread.start()
    try:
        assert checked.wait(5)  # (it has seen a socket, and is about to close it)
        transport.close()  # (the export thread's own: an error path's)
    finally:
        go.set()
        thread.join(5)
    assert errors == []


def test_a_transport_closed_while_a_post_connects_keeps_no_connection(
        peer: Callable[[list[Answer]], Peer], transport: _http.ClientTransport,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """(Found: the post stored its connection after the close and kept it.)"""
    p = peer([OK])
    connected, closed = threading.Event(), threading.Event()
    real = _http.ClientTransport._connect

    def connect(host: str, port: int, deadline: float | None) -> socket.socket:
        sock = real(host, port, deadline)
        connected.set()
        closed.wait(5)
        return sock

    monkeypatch.setattr(_http.ClientTransport, "_connect", staticmethod(connect))
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(
        transport.request("POST", p.url, data=b"x", timeout=5)))
    thread.start()
    try:
        assert connected.wait(5)
        transport.close()  # (the exporter's shutdown)
    finally:
        closed.set()
        thread.join(6)
    assert results and results[0] is not None
    assert transport._sock is None


def test_error_paths_leave_no_socket_open(
        peer: Callable[[list[Answer]], Peer], tmp_path: Path,
        resource_warnings: list[warnings.WarningMessage]) -> None:
    """Refused, timed out, a garbled answer, a header refused, TLS verification failed, a
    kept connection dropped for bytes waiting: every socket closed, none left to the
    collector (run under -W error::ResourceWarning they would fail the test too)."""
    server = socket.create_server(("127.0.0.1", 0))
    refused = server.getsockname()[1]
    server.close()
    p = peer([lambda conn: None, b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", OK + STALE,
              OK])
    (tmp_path / "other").mkdir()
    _, ca = _tls_server(tmp_path / "other")  # (a CA that did not sign the collector's)

    def tls_serve(conn: ssl.SSLSocket) -> None:
        _read_request(conn)

    url, _, _, stop = _tls_peer(tmp_path, tls_serve)
    transport = _http.ClientTransport(verify=str(ca))
    try:
        results = [
            transport.request("POST", f"http://127.0.0.1:{refused}/v1/traces", data=b"x",
                              timeout=5),
            transport.request("POST", p.url, data=b"x", timeout=0.5),
            transport.request("POST", p.url, data=b"x", timeout=5),
            transport.request("POST", p.url, headers={"X": "a\rb"}, data=b"x", timeout=5),
            transport.request("POST", p.url, data=b"x", timeout=5),
            transport.request("POST", p.url, data=b"x", timeout=5),
            transport.request("POST", url, data=b"x", timeout=5),
        ]
        assert [r.status_code for r in results] == [None, None, None, None, 200, 200, None]
        assert isinstance(results[6].error, ssl.SSLCertVerificationError)
        assert transport._sock is None
    finally:
        transport.close()
        stop()
    del results
    assert unclosed(resource_warnings) == []


def test_an_interrupt_in_the_tls_handshake_leaves_no_socket_open(
        peer: Callable[[list[Answer]], Peer], monkeypatch: pytest.MonkeyPatch,
        resource_warnings: list[warnings.WarningMessage]) -> None:
    """(Found: ssl closes what it wrapped only on OSError or ValueError: the SSLSocket was
    left open.)"""
    p = peer([])

    def interrupted(self: ssl.SSLSocket, *args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ssl.SSLSocket, "do_handshake", interrupted)
    transport = _http.ClientTransport(verify=False)
    try:
        with pytest.raises(KeyboardInterrupt):
            transport.request("POST", p.url.replace("http:", "https:"), data=b"x", timeout=5)
    finally:
        transport.close()
    assert unclosed(resource_warnings) == []

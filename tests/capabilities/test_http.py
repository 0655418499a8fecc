"""omnicore:http (specs/abi.md §4.7) against real HTTP servers on 127.0.0.1.

The guest is a WAT plugin whose ``request`` handler passes its input (``u32 req_len | req |
body``) to the host function and returns the host's packed result as its own: a success is
the §4.7 block, a refusal a GuestError whose message starts with the status name. Loopback
is not reachable unless the grant names it, so every test names it on purpose, and one test
checks that a grant that does not is refused.
"""

from __future__ import annotations

import json
import struct
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from omnicore.app import OmniApp
from omnicore.errors import ConfigError, DeadlineExceeded, GuestError
from tests.egress.echo import leaks
from tests.guest_wat import ALLOC, forward, plugin_wasm
from tests.waiting import fastest

#: ``request``: input ``req_len (u32 LE) | req JSON | body``.
HTTP_WAT = r"""
(module
  (import "omnicore:http" "request" (func $req (param i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 2)
""" + ALLOC + forward("request", "req") + r"""
)
"""


def http_wasm(name: str) -> bytes:
    return plugin_wasm(name, HTTP_WAT)


class Upstream:
    """A real HTTP server on 127.0.0.1 with the behaviours the tests need."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.stop = threading.Event()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _reply(self, status: int, body: bytes, **headers: str) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k.replace("_", "-"), v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._handle(b"")

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                self._handle(self.rfile.read(n))

            def _handle(self, body: bytes) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                upstream.seen.append({"method": self.command, "path": parts.path,
                                      "query": query, "headers": dict(self.headers.items()),
                                      "body": body})
                path = parts.path
                if path == "/hello":
                    self._reply(200, b"hi there", X_Test="yes")
                elif path.startswith("/api/"):
                    self._reply(200, json.dumps({"path": path}).encode(),
                                Content_Type="application/json")
                elif path == "/echo-auth":
                    self._reply(200, (self.headers.get("authorization") or "").encode())
                elif path == "/echo-auth-escaped":      # as PHP and hex-escaping encoders do
                    auth = self.headers.get("authorization") or ""
                    hexed = "".join(f"\\u{ord(c):04x}" for c in auth)
                    self._reply(200, (json.dumps({"php": auth}).replace("/", "\\/")[:-1]
                                      + f', "hex": "{hexed}"}}').encode(),
                                X_Echo=quote(auth, safe=""))
                elif path == "/redirect":
                    self._reply(int(query.get("code", ["302"])[0]), b"",
                                Location=query["to"][0])
                elif path == "/big":
                    self._reply(200, b"x" * int(query["n"][0]))
                elif path == "/lie":
                    self.send_response(200)
                    self.send_header("Content-Length", str(1 << 40))
                    self.end_headers()
                    self.wfile.write(b"x" * 10)
                elif path == "/chunked":
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for _ in range(int(query["n"][0])):
                        self.wfile.write(b"4000\r\n" + b"y" * 0x4000 + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                elif path == "/drip":
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    try:
                        while not upstream.stop.wait(0.02):
                            self.wfile.write(b"d")
                            self.wfile.flush()
                    except OSError:
                        return
                elif path == "/hold":
                    upstream.arrived.set()
                    upstream.release.wait(30)
                    self._reply(200, b"held")
                else:
                    self._reply(404, b"no such path")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture
def other() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


Response = tuple[int, dict[str, str], bytes]


class Guest:
    def __init__(self, app: OmniApp, name: str) -> None:
        self.app, self.name = app, name

    def raw(self, req: dict[str, Any] | bytes, body: bytes = b"") -> bytes:
        data = req if isinstance(req, bytes) else json.dumps(req).encode()
        return self.app.plugins.call(self.name, "request",
                                     struct.pack("<I", len(data)) + data + body)

    def request(self, req: dict[str, Any] | bytes, body: bytes = b"") -> Response:
        block = self.raw(req, body)
        head_len = struct.unpack("<I", block[:4])[0]
        head = json.loads(block[4:4 + head_len])
        return head["status"], head["headers"], block[4 + head_len:]

    def get(self, url: str, **extra: Any) -> Response:
        return self.request({"method": "GET", "url": url, **extra})

    def refused(self, req: dict[str, Any] | bytes, body: bytes = b"") -> str:
        with pytest.raises(GuestError) as info:
            self.raw(req, body)
        return info.value.guest_message


@pytest.fixture
def http_app(make_app: Callable[..., OmniApp]) -> Iterator[Callable[..., Guest]]:
    apps: list[OmniApp] = []

    def load(grant: dict[str, Any], *, name: str = "web", limits: dict[str, Any] | None = None,
             connectors: dict[str, Any] | None = None, secrets: dict[str, str] | None = None,
             ) -> Guest:
        if not apps:
            app = make_app(builtin_extensions=None, overrides={
                "sandbox": {"watch": False}, "connectors": connectors or {}})
            app.start()
            apps.append(app)
        app = apps[0]
        for k, v in (secrets or {}).items():
            app.secrets.set(k, v)
        app.plugins.load(http_wasm(name), grants={"http": grant},
                         limits=limits or {"timeout_ms": 5000})
        return Guest(app, name)

    yield load
    for app in apps:
        app.stop(grace=0)


def loopback(upstream: Upstream, **more: Any) -> dict[str, Any]:
    return {"allow_hosts": [f"http://127.0.0.1:{upstream.port}"], **more}


def test_a_request_to_an_allowed_host(http_app: Callable[..., Guest],
                                      upstream: Upstream) -> None:
    g = http_app(loopback(upstream))
    status, headers, body = g.get(f"{upstream.base}/hello", headers={"X-Mine": "1"})
    assert (status, body, headers["x-test"]) == (200, b"hi there", "yes")
    assert upstream.seen[-1]["headers"]["X-Mine"] == "1"
    assert upstream.seen[-1]["headers"]["Host"] == f"127.0.0.1:{upstream.port}"
    status, _, body = g.request({"method": "POST", "url": f"{upstream.base}/nope"}, b"payload")
    assert status == 404 and upstream.seen[-1]["body"] == b"payload"


def test_nothing_is_allowed_by_default(http_app: Callable[..., Guest],
                                       upstream: Upstream) -> None:
    g = http_app({})
    assert g.refused({"url": f"{upstream.base}/hello"}).startswith("DENIED:")
    assert upstream.seen == []


def test_scheme_and_port_are_part_of_the_rule(http_app: Callable[..., Guest],
                                              upstream: Upstream) -> None:
    g = http_app({"allow_hosts": ["127.0.0.1", f"http://127.0.0.1:{upstream.port + 1}"]})
    msg = g.refused({"url": f"{upstream.base}/hello"})
    assert msg.startswith("DENIED:") and "allow_hosts" in msg
    assert upstream.seen == []


def test_loopback_behind_a_name_needs_allow_addresses(http_app: Callable[..., Guest],
                                                      upstream: Upstream) -> None:
    url = f"http://localhost:{upstream.port}/hello"
    g = http_app({"allow_hosts": ["http://localhost:*"]}, name="named")
    msg = g.refused({"url": url})
    assert msg.startswith("DENIED:") and "resolves to" in msg and "127.0.0.1" in msg
    assert upstream.seen == []
    g2 = http_app({"allow_hosts": ["http://localhost:*"],
                   "allow_addresses": ["127.0.0.0/8", "::1"]}, name="named-ok")
    assert g2.get(url)[0] == 200


def test_every_redirect_is_checked(http_app: Callable[..., Guest], upstream: Upstream,
                                   other: Upstream) -> None:
    g = http_app(loopback(upstream))
    ok = f"{upstream.base}/redirect?to=/hello"
    assert g.get(ok)[:1] == (200,) and [s["path"] for s in upstream.seen] == ["/redirect",
                                                                              "/hello"]
    for target in (f"{other.base}/hello", "http://169.254.169.254/latest/meta-data/",
                   "http://[::1]:1/", "file:///etc/passwd"):
        msg = g.refused({"url": f"{upstream.base}/redirect?to={target}"})
        assert msg.startswith(("DENIED: a redirect", "INVALID:")), msg
    assert other.seen == []


def test_a_303_turns_a_post_into_a_get_and_redirects_are_capped(
        http_app: Callable[..., Guest], upstream: Upstream) -> None:
    g = http_app(loopback(upstream, max_redirects=1))
    status, _, _ = g.request({"method": "POST", "url":
                              f"{upstream.base}/redirect?code=303&to=/hello"}, b"x")
    assert status == 200 and upstream.seen[-1]["method"] == "GET"
    loop = f"{upstream.base}/redirect?to=/redirect%3Fto%3D/hello"
    assert g.get(loop)[0] == 302  # the second redirect is returned, not followed


def test_oversized_responses_are_refused(http_app: Callable[..., Guest],
                                         upstream: Upstream) -> None:
    g = http_app(loopback(upstream, max_response_bytes=100_000))
    assert len(g.get(f"{upstream.base}/big?n=100000")[2]) == 100_000
    assert g.refused({"url": f"{upstream.base}/big?n=100001"}).startswith("TOO_LARGE:")
    assert g.refused({"url": f"{upstream.base}/lie"}).startswith("TOO_LARGE:")
    assert g.refused({"url": f"{upstream.base}/chunked?n=100"}).startswith("TOO_LARGE:")
    assert g.get(f"{upstream.base}/hello")[0] == 200


def test_a_slow_drip_ends_at_the_grant_timeout(http_app: Callable[..., Guest],
                                               upstream: Upstream) -> None:
    g = http_app(loopback(upstream, timeout_ms=300))
    start = time.monotonic()
    msg = g.refused({"url": f"{upstream.base}/drip"})
    elapsed = time.monotonic() - start
    assert msg.startswith("UNAVAILABLE:") and "timeout" in msg
    assert 0.25 < elapsed < 2.0
    assert g.get(f"{upstream.base}/hello")[0] == 200


def test_an_answer_whose_allocation_the_deadline_interrupts_is_deadline_exceeded(
        make_app: Callable[..., OmniApp], upstream: Upstream) -> None:
    # The sibling that made the slow-drip test flaky on a loaded machine: the host function
    # returns after the deadline, and the re-entrant omni_alloc for its answer is cut by the
    # epoch. Here the allocator spins whenever the handler has armed it, so the epoch always
    # cuts it: the call is DeadlineExceeded (not a Trap about a failed allocation).
    wat = HTTP_WAT.replace(
        '(global $bump (mut i32) (i32.const 0x10000))',
        '(global $bump (mut i32) (i32.const 0x10000)) (global $armed (mut i32) (i32.const 0))'
    ).replace('(local.set $p (global.get $bump))',
              '(if (global.get $armed) (then (loop $spin (br $spin)))) '
              '(local.set $p (global.get $bump))'
    ).replace('(local.set $a (i32.load (local.get $p)))',
              '(global.set $armed (i32.const 1)) (local.set $a (i32.load (local.get $p)))')
    assert wat.count("$armed") == 3
    wasm = plugin_wasm("spinner", wat)
    app = make_app(builtin_extensions=None, overrides={"sandbox": {"watch": False}})
    app.start()
    try:
        app.plugins.load(wasm, grants={"http": loopback(upstream)},
                         limits={"timeout_ms": 300})
        g = Guest(app, "spinner")
        for _ in range(2):  # and again on the instance that replaced the first
            start = time.monotonic()
            with pytest.raises(DeadlineExceeded, match="deadline of 300 ms"):
                g.raw({"url": f"{upstream.base}/hello"})
            assert time.monotonic() - start < 0.3 + 5
    finally:
        app.stop(grace=0)


def test_a_slow_drip_cannot_hold_the_call_past_its_deadline(http_app: Callable[..., Guest],
                                                            upstream: Upstream) -> None:
    g = http_app(loopback(upstream), limits={"timeout_ms": 300})

    def drip() -> None:
        with pytest.raises(DeadlineExceeded):
            g.raw({"url": f"{upstream.base}/drip"})

    assert fastest(drip) < 0.3 + 1.5
    assert g.get(f"{upstream.base}/hello")[0] == 200


def test_concurrent_requests_per_plugin_are_capped(http_app: Callable[..., Guest],
                                                   upstream: Upstream) -> None:
    g = http_app(loopback(upstream, max_concurrent=1),
                 limits={"timeout_ms": 20_000, "pool_size": 2})
    results: list[Response] = []
    holder = threading.Thread(target=lambda: results.append(g.get(f"{upstream.base}/hold")))
    holder.start()
    assert upstream.arrived.wait(15)
    msg = g.refused({"url": f"{upstream.base}/hello"})
    assert msg.startswith("QUOTA:") and "max_concurrent" in msg
    upstream.release.set()
    holder.join(15)
    assert results and results[0][2] == b"held"
    assert g.get(f"{upstream.base}/hello")[0] == 200


@pytest.mark.parametrize("req, body, status", [
    (b"{not json", b"", "INVALID"),
    (b"[1, 2]", b"", "INVALID"),
    ({"method": "BREW", "url": "http://127.0.0.1/"}, b"", "INVALID"),
    ({"url": "http://127.0.0.1/", "headers": {"X": "a\r\nInjected: 1"}}, b"", "INVALID"),
    ({"url": "http://127.0.0.1/", "headers": {"X": 1}}, b"", "INVALID"),
    ({"url": "http://user:pw@127.0.0.1/"}, b"", "INVALID"),
    ({"url": "ftp://127.0.0.1/"}, b"", "INVALID"),
    ({"url": "http://127.0.0.1/", "timeout_ms": -1}, b"", "INVALID"),
    ({"connector": "nope", "path": "/"}, b"", "DENIED"),
    ({"url": "http://127.0.0.1/"}, b"z" * 1001, "TOO_LARGE"),
    (b" " * (64 * 1024 + 1), b"", "TOO_LARGE"),
])
def test_malformed_requests_get_statuses(http_app: Callable[..., Guest], upstream: Upstream,
                                         req: dict[str, Any] | bytes, body: bytes,
                                         status: str) -> None:
    g = http_app({"allow_hosts": ["http://127.0.0.1:*"], "max_request_bytes": 1000})
    assert g.refused(req, body).startswith(status + ":")
    assert g.get(f"{upstream.base}/hello")[0] == 200


def test_framing_headers_from_the_guest_are_dropped(http_app: Callable[..., Guest],
                                                    upstream: Upstream) -> None:
    g = http_app(loopback(upstream))
    g.request({"method": "POST", "url": f"{upstream.base}/hello",
               "headers": {"Host": "evil.example", "Content-Length": "0"}}, b"abc")
    seen = upstream.seen[-1]
    assert seen["headers"]["Host"] == f"127.0.0.1:{upstream.port}" and seen["body"] == b"abc"


def test_an_unreachable_host_is_unavailable(http_app: Callable[..., Guest]) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    g = http_app({"allow_hosts": [f"http://127.0.0.1:{port}"]})
    assert g.refused({"url": f"http://127.0.0.1:{port}/"}).startswith("UNAVAILABLE:")


@pytest.mark.parametrize("grant, match", [
    ({"allow_hosts": "x.com"}, "list of names"),
    ({"allow_hosts": ["ftp://x.com"]}, "http or https"),
    ({"allow_hosts": ["x.com:99999"]}, "bad port"),
    ({"allow_addresses": ["not-a-net"]}, "not an address"),
    ({"max_response_bytes": 0}, "positive integer"),
    ({"hosts": ["x.com"]}, "no option 'hosts'"),
    ({"connectors": ["missing"]}, "does not define"),
])
def test_bad_grants_are_config_errors(http_app: Callable[..., Guest], grant: dict[str, Any],
                                      match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        http_app(grant)


# -- connectors ----------------------------------------------------------------------------

TOKEN = "tok_7f3a9c1e5b2d4f60"


def _connectors(upstream: Upstream) -> dict[str, Any]:
    base = f"{upstream.base}/api"
    return {
        "bearer": {"base_url": base, "auth": "bearer", "secret": "api_token"},
        "basic": {"base_url": base, "auth": "basic", "username": "bot", "secret": "api_token"},
        "header": {"base_url": base, "auth": "header", "header": "X-Api-Key",
                   "secret": "api_token", "headers": {"Accept": "application/json"}},
        "query": {"base_url": base, "auth": "query", "param": "key", "secret": "api_token"},
        "unset": {"base_url": base, "auth": "bearer", "secret": "never_set"},
        "echo": {"base_url": upstream.base, "auth": "bearer", "secret": "api_token"},
    }


def _connector_app(http_app: Callable[..., Guest], upstream: Upstream,
                   names: list[str], **grant: Any) -> Guest:
    return http_app({"connectors": names, **grant}, connectors=_connectors(upstream),
                    secrets={"api_token": TOKEN})


@pytest.mark.parametrize("name, check", [
    ("bearer", lambda s: s["headers"]["Authorization"] == f"Bearer {TOKEN}"),
    ("basic", lambda s: s["headers"]["Authorization"].startswith("Basic ")),
    ("header", lambda s: s["headers"]["X-Api-Key"] == TOKEN
     and s["headers"]["Accept"] == "application/json"),
    ("query", lambda s: s["query"]["key"] == [TOKEN] and s["query"]["q"] == ["1"]),
])
def test_connectors_add_credentials_the_guest_never_sees(
        http_app: Callable[..., Guest], upstream: Upstream, name: str,
        check: Callable[[dict[str, Any]], bool]) -> None:
    g = _connector_app(http_app, upstream, [name])
    block = g.raw({"method": "GET", "connector": name, "path": "/repos/x?q=1",
                   "headers": {"Authorization": "Bearer guest-forged", "X-Api-Key": "forged"}})
    seen = upstream.seen[-1]
    assert seen["path"] == "/api/repos/x" and check(seen)
    assert TOKEN.encode() not in block
    # The plugin needs no allow_hosts entry for its connector, but gets nothing else.
    assert g.refused({"url": f"{upstream.base}/hello"}).startswith("DENIED:")


def test_credentials_echoed_by_the_upstream_are_cut(http_app: Callable[..., Guest],
                                                    upstream: Upstream) -> None:
    g = _connector_app(http_app, upstream, ["echo"])
    _, _, body = g.request({"connector": "echo", "path": "/echo-auth"})
    assert body == b"Bearer [REDACTED]"


def test_credentials_echoed_in_another_spelling_are_cut(http_app: Callable[..., Guest],
                                                       upstream: Upstream) -> None:
    g = _connector_app(http_app, upstream, ["echo"])
    _, headers, body = g.request({"connector": "echo", "path": "/echo-auth-escaped"})
    assert upstream.seen[-1]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert leaks(body, TOKEN) == [] and leaks(json.dumps(headers), TOKEN) == []
    assert json.loads(body) == {"php": "Bearer [REDACTED]", "hex": "Bearer [REDACTED]"}


def test_connector_paths_cannot_leave_the_base_url(http_app: Callable[..., Guest],
                                                   upstream: Upstream) -> None:
    g = _connector_app(http_app, upstream, ["bearer"])
    for path in ("/../hello", "//evil.example/x", "relative", "/a/./b", "/x#frag",
                 "/%0d%0a\r\nX: y"):
        assert g.refused({"connector": "bearer", "path": path}).startswith("INVALID:"), path
    assert all(s["path"].startswith("/api/") for s in upstream.seen)


def test_credentials_do_not_follow_a_redirect_off_the_base_url(
        http_app: Callable[..., Guest], upstream: Upstream, other: Upstream) -> None:
    g = _connector_app(http_app, upstream, ["bearer"],
                       allow_hosts=[f"http://127.0.0.1:{other.port}"])
    # /api/... on this server answers 200; use the redirect endpoint through a base of "/".
    g2 = http_app({"connectors": ["echo"], "allow_hosts": [f"http://127.0.0.1:{other.port}"]},
                  name="web2")
    status, _, _ = g2.request({"connector": "echo",
                               "path": f"/redirect?to={other.base}/echo-auth"})
    assert status == 200 and other.seen[-1]["path"] == "/echo-auth"
    assert "Authorization" not in other.seen[-1]["headers"]
    assert upstream.seen[-1]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    del g


def test_a_missing_secret_is_named_not_leaked(http_app: Callable[..., Guest],
                                              upstream: Upstream) -> None:
    g = _connector_app(http_app, upstream, ["unset"])
    msg = g.refused({"connector": "unset", "path": "/x"})
    assert msg.startswith("UNAVAILABLE:") and "never_set" in msg and upstream.seen == []


@pytest.mark.parametrize("spec, match", [
    ({"base_url": "ftp://x"}, "http"),
    ({"base_url": "https://x?y=1"}, "query"),
    ({"base_url": "https://x", "auth": "bearer"}, "secret"),
    ({"base_url": "https://x", "auth": "header", "secret": "s"}, "header"),
])
def test_bad_connectors_are_config_errors(make_app: Callable[..., OmniApp],
                                          spec: dict[str, Any], match: str) -> None:
    app = make_app(builtin_extensions=None, overrides={"connectors": {"c": spec}})
    with pytest.raises(ConfigError, match=match):
        app.connectors  # noqa: B018

"""Unmodified ``wasi:http/proxy`` components served on routes (issue 65, deliverable 1;
specs/http-routes.md §8): tests/routes/proxy/app.py, componentize-py's own bindings and
nothing of omnicore, built at test time into a component exporting
``wasi:http/incoming-handler@0.2.0``, dropped into a real host's plugin folder and asked over
real HTTP. Each hostile case is an outcome: a status within the route's deadline, the host
and the route still answering after it."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.routes.conftest import RouteHost

SOURCES = Path(__file__).parent / "proxy"
OUT = Path(__file__).resolve().parents[2] / "build" / "test-plugins" / "proxy"


def proxy_wasm() -> bytes:
    """tests/routes/proxy/app.py with its WIT, built by componentize-py (cached by the
    digest of its sources: 20-80 s cold)."""
    sources = [*sorted(SOURCES.rglob("*.wit")), SOURCES / "app.py"]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    out = OUT / f"hello-{digest}.wasm"
    if not out.is_file():
        OUT.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp.wasm")
        tool = Path(sys.executable).parent / "componentize-py"
        done = subprocess.run(
            [str(tool), "-d", str(SOURCES / "wit"), "-w", "hello", "componentize",
             "-p", str(SOURCES), "app", "-o", str(tmp)],
            capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"componentize-py failed:\n{done.stdout}\n{done.stderr}"
        tmp.replace(out)
    return out.read_bytes()


def route(path: str, **more: Any) -> dict[str, Any]:
    return {"plugin": "hello", "handler": "handle", "path": path,
            "methods": more.pop("methods", ["GET", "POST"]), "auth": "public", **more}


def start(route_host: Callable[..., RouteHost], **routes: dict[str, Any]) -> RouteHost:
    return route_host(plugins={"hello.wasm": proxy_wasm()},
                      routes={"hello": route("/hello/{rest...}"), **routes})


def still_serving(host: RouteHost) -> None:
    r = host.client.post("/http/hello/again", content=b"ok")
    assert r.status_code == 201 and r.text.endswith("body=ok"), r.text
    assert host.client.get("/healthz").status_code == 200


def test_a_proxy_component_answers(route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host)
    r = host.client.post("/http/hello/a/b?q=1", content=b"some body",
                         headers={"x-test": "yes"})
    assert r.status_code == 201, r.text
    # the path after the prefix and the query reach the component as path-with-query
    assert r.text == "hello POST /hello/a/b?q=1 9 bytes; x-test=yes; body=some body"
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["x-app"] == "proxy-hello"
    assert "sandbox" in r.headers["content-security-policy"]
    # a GET without a body, then the same instance again: reused, and nothing of one
    # request reaches the next
    for _ in range(3):
        r = host.client.get("/http/hello/x")
        assert r.status_code == 200 and r.text.startswith("hello GET /hello/x 0 bytes"), r.text
    # a body of many chunks in, a body of many writes out
    big = os.urandom(50_000).hex().encode()
    r = host.client.post("/http/hello/x", content=big)
    assert r.status_code == 201 and r.text.endswith(big.decode())
    r = host.client.get("/http/hello/big=409600")
    assert r.status_code == 200 and r.content == b"x" * 409600


@pytest.mark.parametrize("leaf", ["hoard", "headers"])
def test_host_objects_a_guest_makes_in_a_loop_are_bounded(
        route_host: Callable[..., RouteHost], leaf: str) -> None:
    """A guest that makes handles (fields) or header bytes until its deadline would grow the
    host's memory for its whole timeout: past wasihttp.MAX_HANDLES or MAX_FIELD_BYTES it
    traps (500) long before the deadline, and the host serves on."""
    host = start(route_host, grow=route(f"/{leaf}", timeout_ms=60_000))
    r = host.client.get(f"/http/{leaf}")
    # A trap (500), not the deadline's 504: the guest was stopped at the bound.
    assert r.status_code == 500 and r.json()["error"] == "the handler failed", r.text
    still_serving(host)


def test_a_trap_is_500_and_the_route_still_answers(
        route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host, trap=route("/trap"))
    r = host.client.get("/http/trap")
    assert r.status_code == 500 and r.json()["error"] == "the handler failed"
    assert "the app failed on purpose" not in r.text  # the guest's words stay in the log
    still_serving(host)


def test_a_handler_that_never_sets_its_response_is_502(
        route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host, never=route("/never"))
    r = host.client.get("/http/never")
    assert r.status_code == 502 and "did not set its response" in r.json()["error"]
    still_serving(host)


def test_a_response_over_its_cap_is_502(route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host, big=route("/cap/{leaf}", max_response_bytes=100_000))
    assert host.client.get("/http/cap/big=98304").status_code == 200
    r = host.client.get("/http/cap/big=409600")
    assert r.status_code == 502 and "over 100000 bytes" in r.json()["error"]
    still_serving(host)


def test_a_handler_past_the_deadline_is_504_in_time(
        route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host, spin=route("/spin", timeout_ms=1500))
    r = host.client.get("/http/spin")
    assert r.status_code == 504, r.text
    assert r.elapsed.total_seconds() < 10
    still_serving(host)


def test_a_guest_blocked_in_a_host_call_ends_at_its_deadline(
        route_host: Callable[..., RouteHost]) -> None:
    # time.sleep(3600) in the guest: a pollable's block, a host call no epoch interrupts;
    # the host ends it at the plugin's deadline (limits.timeout_ms, 1 s), never an hour later
    host = start(route_host, sleep=route("/sleep", timeout_ms=20_000))
    r = host.client.get("/http/sleep")
    assert r.status_code == 504, r.text
    assert "plugin's deadline" in r.json()["error"]
    assert r.elapsed.total_seconds() < 15
    still_serving(host)


def test_route_caps_apply_before_the_component(route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host, small=route("/small/{x}", max_body_bytes=10, max_headers=20))
    r = host.client.post("/http/small/x", content=b"x" * 11)
    assert r.status_code == 413
    r = host.client.get("/http/small/x", headers={f"x-h{i}": "v" for i in range(30)})
    assert r.status_code == 431
    still_serving(host)


def test_an_outgoing_request_without_a_grant_is_refused_and_logged(
        route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host)
    r = host.client.get("/http/hello/fetch")
    assert r.status_code == 200 and r.text == "refused: ErrorCode_HttpRequestDenied", r.text
    said = [ln.message for ln in host.app.plugins.logs("hello").lines()]
    assert any("outgoing HTTP request (GET https://example.com/steal) was refused: the plugin "
               "has no http grant" in m for m in said), said
    still_serving(host)


def test_max_concurrent_applies(route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host, spin=route("/spin", timeout_ms=1500, max_concurrent=2))

    codes = host.burst("/http/spin")
    assert codes.count(503) >= 18, codes
    assert set(codes) <= {503, 504}, codes
    still_serving(host)


def test_the_body_is_streamed_as_written(route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host, stream=route("/stream", timeout_ms=20_000))
    # The guest sets its response, writes one chunk, then never ends: the client has the
    # head and the chunk while the guest still runs, then a connection ended without the
    # body's end (the plugin's deadline trapped the guest), never a complete answer.
    with host.client.stream("GET", "/http/stream") as r:
        assert r.status_code == 200 and r.headers["x-streamed"] == "yes"
        assert "content-length" not in r.headers
        got = b""
        chunks = r.iter_raw()
        while not got.endswith(b"first\n"):
            got += next(chunks)
        assert got == b"first\n"
        try:
            rest = b"".join(chunks)
        except httpx.RemoteProtocolError:
            rest = None
        assert rest is None, rest
    # a body written in pieces with work between them arrives whole
    r = host.client.get("/http/hello/slow=5")
    assert r.status_code == 200
    assert r.text == "".join(f"chunk {i}\n" for i in range(5))
    still_serving(host)


class _Upstream(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hi from {self.path}, x-from={self.headers.get('x-from')}".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_outgoing_requests_go_through_the_http_grant(
        route_host: Callable[..., RouteHost]) -> None:
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = upstream.server_address[1]
    try:
        host = route_host(plugins={"hello.wasm": proxy_wasm()},
                          sidecars={"hello.yaml": json.dumps(
                              {"grants": {"http": {
                                  "allow_hosts": [f"http://127.0.0.1:{port}"]}}})},
                          routes={"hello": route("/hello/{rest...}")})
        r = host.client.get(f"/http/hello/get?url=http://127.0.0.1:{port}/up?q=1")
        assert r.status_code == 200
        assert r.text == "upstream 200: hi from /up?q=1, x-from=proxy", r.text
        # the grant's allow-list decides: another port of the same address is refused
        r = host.client.get(f"/http/hello/get?url=http://127.0.0.1:{port + 1}/up")
        assert r.text == "failed: ErrorCode_HttpRequestDenied", r.text
        said = [ln.message for ln in host.app.plugins.logs("hello").lines()]
        assert any(f"127.0.0.1:{port + 1}/up) was refused: DENIED" in m for m in said), said
        still_serving(host)
    finally:
        upstream.shutdown()
        upstream.server_close()

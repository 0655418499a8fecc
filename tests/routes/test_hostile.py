"""Hostile input gets a status, never a host fault (specs/http-routes.md §3.1): a real host,
a real HTTP client, a real wasm guest (tests/routes/conftest.py GUEST)."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from tests.routes.conftest import RouteHost
from tests.waiting import eventually


def route(handler: str, path: str = "/x", **more: Any) -> dict[str, Any]:
    return {"plugin": "web", "handler": handler, "path": path,
            "methods": more.pop("methods", ["GET", "POST"]), "auth": more.pop("auth", "public"),
            **more}


def still_serving(host: RouteHost) -> None:
    """The host is unharmed: the echo route still answers, and so does the console."""
    r = host.client.post("/http/echo", content=b"ok")
    assert r.status_code == 200 and r.content == b"ok"
    assert host.client.get("/healthz").status_code == 200


def start(route_host: Callable[..., RouteHost], **routes: dict[str, Any]) -> RouteHost:
    return route_host(routes={"echo": route("echo", "/echo"), **routes})


def test_the_envelope_reaches_the_handler_whole(route_host: Callable[..., RouteHost]) -> None:
    # `status` answers the response block its body holds: the test writes the response.
    host = start(route_host, status=route("status", "/status/{id}/{rest...}"))
    head = b'{"status": 201, "headers": {"x-made": "yes", "set-cookie": ["a=1", "b=2"]}}'
    block = struct.pack("<I", len(head)) + head + b"created"
    r = host.client.post("/http/status/7/a/b", content=block)
    assert r.status_code == 201 and r.content == b"created"
    assert r.headers["x-made"] == "yes"
    assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]
    # echo: the request head comes back as the response head: headers lower-case, joined
    r = host.client.post("/http/echo?q=1", content=b"body", headers=[("X-Twice", "a"),
                                                                       ("X-Twice", "b")])
    assert r.status_code == 200 and r.content == b"body"
    assert r.headers["x-twice"] == "a, b"


def test_no_route_wrong_method_bad_path(route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host, only_get=route("echo", "/g", methods=["GET"]))
    assert host.client.get("/http/nothing").status_code == 404
    r = host.client.delete("/http/g")
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
    assert host.client.get("/http/echo/%2e%2e/g").status_code == 400
    assert host.client.get("/http/g%00").status_code == 400
    assert host.client.head("/http/g").status_code == 200
    still_serving(host)


def test_a_trap_an_error_and_a_malformed_answer(route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host, trap=route("trap", "/trap"), fail=route("fail", "/fail"),
                 short=route("short", "/short"), status=route("status", "/s"))
    r = host.client.get("/http/trap")
    assert r.status_code == 500 and r.json() == {"error": "the handler failed", "route": "trap"}
    r = host.client.get("/http/fail")
    assert r.status_code == 500 and "refused" not in r.text  # the guest's text is not sent
    assert host.client.get("/http/short").status_code == 502
    # a response block whose head is bad, sent back by the `status` guest
    for head in (b'{"status": "ok"}', b'{"status": 99}', b"[1]", b'{"headers": {"a b": "c"}}',
                 b'{"headers": {"x": "a\\r\\nb"}}'):
        block = struct.pack("<I", len(head)) + head
        assert host.client.post("/http/s", content=block).status_code == 502, head
    still_serving(host)


def test_a_response_over_its_cap(route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host, huge=route("huge", "/huge", max_response_bytes=1 << 20),
                 big=route("echo", "/big", max_response_bytes=1000, max_body_bytes=10_000))
    r = host.client.get("/http/huge")
    assert r.status_code == 502 and "over" in r.json()["error"]
    assert host.client.post("/http/big", content=b"x" * 5000).status_code == 502
    still_serving(host)


def test_a_body_over_its_cap_declared_or_streamed(route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host, small=route("echo", "/small", max_body_bytes=1000))
    assert host.client.post("/http/small", content=b"x" * 1001).status_code == 413

    def endless() -> Iterator[bytes]:  # chunked, no Content-Length, never ends by itself
        while True:
            yield b"y" * 65536

    r = host.client.post("/http/small", content=endless())
    assert r.status_code == 413
    still_serving(host)


def test_huge_headers(route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host, strict=route("echo", "/strict", max_header_bytes=2000,
                                          max_headers=20))
    r = host.client.get("/http/strict", headers={"x-big": "a" * 3000})
    assert r.status_code == 431
    r = host.client.get("/http/strict", headers=[(f"x-{i}", "v") for i in range(30)])
    assert r.status_code == 431
    # past the server's own cap of a request head: refused before any route, still a status
    r = host.client.get("/http/strict", headers={"x-big": "a" * 70_000})
    assert 400 <= r.status_code < 500
    still_serving(host)


def test_a_slow_body_meets_the_deadline(route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host, slow=route("echo", "/slow", timeout_ms=500))
    module_url = httpx.URL(host.url)
    with socket.create_connection((module_url.host, module_url.port)) as sock:
        sock.sendall(b"POST /http/slow HTTP/1.1\r\nHost: " + module_url.host.encode() +
                     b"\r\nContent-Length: 100\r\n\r\nabc")
        sock.settimeout(10)
        began = time.monotonic()
        answer = sock.recv(4096)
        took = time.monotonic() - began
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert took < 5
    still_serving(host)


def test_a_handler_past_the_deadline_gets_504(route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host, spin=route("spin", "/spin", timeout_ms=300))
    began = time.monotonic()
    r = host.client.get("/http/spin")
    assert r.status_code == 504 and time.monotonic() - began < 3
    still_serving(host)


def test_a_spinning_handler_holds_up_no_other_call(route_host: Callable[..., RouteHost]) -> None:
    # A route handler's call runs on one of its plugin's worker threads (plugins/door.py),
    # never on the event loop: while one spins until the plugin's deadline, the same
    # plugin's other route answers many calls at once, each its own body, and so does the
    # console. (Run on the loop, or queued behind the busy worker, they would wait for it.)
    host = route_host(routes={"echo": route("echo", "/echo", max_concurrent=64),
                              "spin": route("spin", "/spin", timeout_ms=20_000)},
                      sidecars={"web.yaml": "limits: {timeout_ms: 6000}\n"})
    listed = {"Authorization": f"Bearer {host.token()}"}

    def spinning() -> bool:
        return any(r["name"] == "spin" and r["in_flight"] == 1 for r in
                   httpx.get(host.url.rstrip("/") + "/api/v1/routes",
                             headers=listed).json()["routes"])

    async def meanwhile() -> tuple[list[tuple[int, bytes]], int, bool, int]:
        async with httpx.AsyncClient(base_url=host.url, timeout=30) as c:
            call = asyncio.ensure_future(c.get("/http/spin"))
            await asyncio.to_thread(eventually, spinning, "the spinning call in flight")
            answers = await asyncio.gather(*(c.post("/http/echo", content=b"call %d" % i)
                                             for i in range(40)))
            health = (await c.get("/healthz")).status_code
            held = not call.done() and await asyncio.to_thread(spinning)
            return [(r.status_code, r.content) for r in answers], health, held, \
                (await call).status_code

    answers, health, held, spun = asyncio.run(meanwhile())
    assert answers == [(200, b"call %d" % i) for i in range(40)], answers
    assert health == 200
    assert held, "the spinning call ended before the others were answered"
    assert spun == 500  # the plugin's own deadline ended it
    still_serving(host)


def test_concurrency_over_the_cap_gets_503(route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host, spin=route("spin", "/spin", timeout_ms=1500, max_concurrent=2))

    codes = host.burst("/http/spin")
    assert codes.count(503) >= 18, codes
    assert set(codes) <= {500, 503, 504}, codes
    still_serving(host)


def test_rate_limit_gets_429(route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host, limited=route("echo", "/limited", rate_limit="3/min"))
    codes = [host.client.get("/http/limited").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    r = host.client.get("/http/limited")
    assert int(r.headers["retry-after"]) >= 1


def test_metrics_count_each_route(route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host, trap=route("trap", "/trap"))
    host.client.post("/http/echo", content=b"1")
    host.client.get("/http/trap")
    host.client.get("/http/none")
    text = host.client.get("/metrics").text
    assert 'omnicore_route_requests_total{code="200",plugin="web",route="echo"} 1.0' in text
    assert 'omnicore_route_requests_total{code="500",plugin="web",route="trap"} 1.0' in text
    assert 'omnicore_route_requests_total{code="404",plugin="",route="-"} 1.0' in text
    assert "omnicore_routes 2.0" in text

"""The console's security headers are on every answer it gives, refusals included: the one
middleware that appends them also refuses hosts, origins and bodies (issue 63)."""

from __future__ import annotations

import socket

import httpx

from tests.console.conftest import Host

HEADERS = {"content-security-policy", "x-content-type-options", "referrer-policy",
           "x-frame-options"}


def _raw(url: str, request: bytes) -> tuple[str, dict[str, str]]:
    """Send ``request`` as is; the status line and the headers of the answer."""
    host, port = url.split("//")[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        got = b""
        while b"\r\n\r\n" not in got:
            piece = sock.recv(4096)
            if not piece:
                break
            got += piece
    head = got.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in head[1:])
    return head[0], {k.lower(): v for k, v in fields.items()}


def _has_all(headers: httpx.Headers | dict[str, str], what: str) -> None:
    missing = HEADERS - {k.lower() for k in headers}
    assert not missing, f"{what}: {missing}"
    assert headers["x-frame-options"] == "DENY", what


def test_every_answer_carries_the_security_headers(host: Host, admin: httpx.Client) -> None:
    r = admin.post("/api/v1/plugins/greeter-rust/invoke",
                   json={"handler": "greet", "input": '{"name": "Ada"}'})
    assert r.status_code in (200, 409), r.text  # answered by the plugin, or its grant
    _has_all(r.headers, "invoke")
    with host.client() as anonymous:
        r = anonymous.get("/api/v1/plugins")
        assert r.status_code == 401
        _has_all(r.headers, "401")
    r = admin.get("/api/v1/no-such-thing")
    assert r.status_code == 404
    _has_all(r.headers, "404")
    r = admin.post("/api/v1/plugins/greeter-rust/invoke", json={"handler": "greet", "inptu": ""})
    assert r.status_code == 422
    _has_all(r.headers, "422")
    # The guard's refusals: a host name the console does not answer to, another origin.
    r = admin.get("/api/v1/plugins", headers={"Host": "evil.example"})
    assert r.status_code == 400
    _has_all(r.headers, "foreign Host")
    r = admin.post("/api/v1/plugins/greeter-rust/reload",
                   headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    _has_all(r.headers, "cross-origin")


def test_refusals_before_the_body_close_the_connection_with_the_headers(host: Host) -> None:
    port = host.url.rsplit(":", 1)[1]
    # A declared body over the cap: refused before a byte of it is read.
    status, fields = _raw(host.url, (
        f"POST /api/v1/plugins/greeter-rust/invoke HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {host.admin_token}\r\nContent-Length: 999999999999\r\n\r\n"
    ).encode())
    assert " 413 " in status, status
    _has_all(fields, "declared 413")
    assert fields.get("connection") == "close"
    # Refused by the guard with its body unsent: the connection cannot carry another request.
    status, fields = _raw(host.url, (
        f"POST /api/v1/plugins/greeter-rust/invoke HTTP/1.1\r\nHost: evil.example\r\n"
        f"Authorization: Bearer {host.admin_token}\r\nContent-Length: 100\r\n\r\n"
    ).encode())
    assert " 400 " in status, status
    _has_all(fields, "guard 400 with an unread body")
    assert fields.get("connection") == "close"


async def test_a_crash_is_answered_500_with_the_headers(host: Host) -> None:
    # Starlette's outermost layer answers an unhandled error with the console's handler, outside
    # every middleware the app adds: the handler itself must carry the headers.
    from starlette.requests import Request
    from starlette.routing import Route

    from omnicore.console import create_app

    def boom(request: Request) -> None:
        raise RuntimeError("a bug")

    assert host.module.console is not None
    app = create_app(host.module.console)
    app.router.routes.insert(0, Route("/boom", boom))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=host.url) as client:
        r = await client.get("/boom")
    assert r.status_code == 500 and "internal error in the console" in r.text, r.text
    _has_all(r.headers, "500")

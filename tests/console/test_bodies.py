"""Request bodies against a real server: identity before body, every body capped as it
streams and timed, and one bounded JSON reader for every route."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx
import pytest

from omnicore.console.bodies import decode_text
from omnicore.console.errors import ApiError
from tests.console.conftest import Host, push

MB = 1 << 20
HUGE = 200 * MB
#: What may sit in socket buffers and Hypercorn's queue before the server stops reading;
#: the 200 MB body must be refused long before it is anywhere near read.
SLACK = 32 * MB
MULTIPART = {"Content-Type": "multipart/form-data; boundary=XyZ"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
#: The start of a well-formed multipart body whose file part is all the bytes that follow.
FILE_PART = (b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.wasm"\r\n'
             b"Content-Type: application/wasm\r\n\r\n")


def refused(pushed: object, *codes: int) -> bool:
    status = getattr(pushed, "status", "")
    return any(f" {code} " in f"{status} " for code in codes) or not status.startswith("HTTP")


@pytest.mark.parametrize("declare", [False, True], ids=["chunked", "content-length"])
def test_an_anonymous_huge_body_is_refused_before_it_is_read(host: Host, declare: bool) -> None:
    targets = [
        ("POST", "/login", MULTIPART),             # the reporter's case: 415 before reading
        ("POST", "/login", FORM),                  # read as a form, but only 256 KiB of it
        ("POST", "/plugins/upload", MULTIPART),    # the reporter's case: sign in first
        ("POST", "/api/v1/plugins?filename=x.wasm", {"Content-Type": "application/wasm"}),
        ("PUT", "/api/v1/secrets/TOKEN", {"Content-Type": "application/json"}),
        ("POST", "/secrets", FORM),
        ("POST", "/users", FORM),
        ("POST", "/workflows/any", FORM),
        ("POST", "/hooks/orders/new", {"Content-Type": "application/json"}),
    ]
    for method, path, headers in targets:
        prefix = FILE_PART if headers is MULTIPART else b""
        pushed = push(host.url, method, path, headers, prefix=prefix, total=HUGE,
                      declare=declare)
        assert pushed.sent < SLACK, (path, pushed)
        assert refused(pushed, 303, 401, 404, 413, 415), (path, pushed)
    assert host.app.secrets.names() == []
    with host.client(host.admin_token) as c:  # and the server is fine afterwards
        assert c.get("/api/v1/info").status_code == 200


def test_an_admin_upload_is_cut_at_the_cap(make_host: Callable[..., Host]) -> None:
    h = make_host(max_upload_bytes=MB)
    pushed = push(h.url, "POST", "/api/v1/plugins?filename=big.wasm",
                  {"Authorization": f"Bearer {h.admin_token}"}, total=HUGE)
    assert pushed.sent < SLACK and refused(pushed, 413), pushed
    # The page's multipart form: the file part is what Starlette would spool without a cap.
    browser, csrf = h.browser_session()
    cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
    preamble = (f"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n{csrf}\r\n"
                "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; "
                "filename=\"big.wasm\"\r\nContent-Type: application/wasm\r\n\r\n\0asm")
    pushed = push(h.url, "POST", "/plugins/upload", {**MULTIPART, "Cookie": cookie},
                  prefix=preamble.encode(), total=HUGE)
    assert pushed.sent < SLACK and refused(pushed, 413), pushed
    # The same through a real client, declared: 413 at once, nothing written.
    r = browser.post("/plugins/upload", content=preamble.encode() + b"x" * 2 * MB,
                     headers=MULTIPART)
    assert r.status_code == 413
    assert sorted(p.name for p in h.plugins_dir.iterdir()) == ["greeter-rust.wasm"]


def test_a_trickled_body_is_cut_at_its_deadline(make_host: Callable[..., Host]) -> None:
    h = make_host(body_timeout_s=1.0, max_upload_bytes=MB)
    bearer = {"Authorization": f"Bearer {h.admin_token}", "Content-Type": "application/json"}
    cases = [  # (method, path, headers, declared size): deadline 1 s + 1 s per MiB
        ("POST", "/login", FORM, 64 * 1024),
        ("PUT", "/api/v1/secrets/SLOW", bearer, 64 * 1024),
        ("PUT", "/api/v1/secrets/SLOW", bearer, None),      # chunked: its route's cap counts
        ("POST", "/api/v1/plugins?filename=slow.wasm", bearer, None),
    ]
    for method, path, headers, size in cases:
        deadline = 1.0 + (size or MB) / MB
        pushed = push(h.url, method, path, headers, total=size or 10 * MB, chunk=16,
                      declare=size is not None, pause_s=0.2)
        assert pushed.seconds < deadline + 1.5, (path, pushed)
        assert pushed.sent < 1024 and refused(pushed, 408), (path, pushed)
    assert h.app.secrets.names() == []
    with h.client(h.admin_token) as c:
        assert c.get("/api/v1/info").status_code == 200


DEEP = b"[" * 200_000 + b"]" * 200_000


def deep_object(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def test_deep_json_is_a_400_on_every_route(host: Host, admin: httpx.Client) -> None:
    routes = [
        ("POST", "/api/v1/plugins/greeter-rust/invoke"),
        ("PUT", "/api/v1/secrets/TOKEN"),
        ("POST", "/api/v1/workflows/anything/runs"),
        ("POST", "/api/v1/users"),
        ("POST", "/api/v1/tokens"),
        ("PUT", "/api/v1/plugins/greeter-rust/grants/config"),
        ("PUT", "/api/v1/plugins/greeter-rust/config"),
        ("PUT", "/api/v1/plugins/greeter-rust/limits"),
        ("PUT", "/api/v1/plugins/greeter-rust/enabled"),
        *(("POST", f"/api/v1/workflow-runs/1/{a}") for a in ("approve", "cancel", "restart")),
    ]
    for method, path in routes:
        for body in (DEEP, deep_object(65), b'{"x":' + DEEP + b"}"):
            r = admin.request(method, path, content=body,
                              headers={"Content-Type": "application/json"})
            assert r.status_code == 400, (path, r.status_code, r.text[:200])
            err = r.json()["error"]
            assert err["type"] == "InvalidJson" and "nested" in err["message"], path
    # 64 levels is JSON like any other: the route's own checks answer.
    r = admin.put("/api/v1/secrets/TOKEN", content=deep_object(63),
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "value" in r.json()["error"]["message"]
    assert host.app.secrets.names() == []


def test_deep_json_in_a_form_field_is_refused(host: Host) -> None:
    browser, csrf = host.browser_session()
    browser.put("/api/v1/plugins/greeter-rust/grants/config", json={},
                headers={"X-CSRF-Token": csrf})
    deep = "[" * 30_000 + "]" * 30_000  # URL-encoded, the most a form takes (256 KiB)
    for fields in ({"action": "config", "config": deep},
                   {"action": "grant", "capability": "kv", "options": deep},
                   {"action": "invoke", "handler": "greet", "format": "json", "input": deep}):
        r = browser.post("/plugins/greeter-rust", data={"csrf": csrf, **fields})
        assert r.status_code == 422 and "nested" in r.text, fields["action"]
    assert host.app.plugins.get("greeter-rust").config == {}


def test_a_lone_surrogate_is_a_400_on_every_json_operation(host: Host,
                                                          admin: httpx.Client) -> None:
    # JSON's grammar takes "\\ud800", but no UTF-8 holds it: a plugin's input, a key or a
    # secret made of it failed with 500. Every operation the OpenAPI document gives a JSON
    # body, a value, a key and a nested string in turn; a pair of escapes is one character.
    doc = admin.get("/api/v1/openapi.json").json()
    operations = [(method.upper(), re.sub(r"\{[^}]+\}", "greeter-rust", path))
                  for path, item in doc["paths"].items() for method, op in item.items()
                  if "application/json" in op.get("requestBody", {}).get("content", {})]
    assert len(operations) >= 20 and ("POST", "/api/v1/plugins/greeter-rust/invoke") in \
        operations
    for method, path in operations:
        for body in (b'{"input": "\\ud800"}', b'{"\\uDC00": 1}',
                     b'{"a": [{"b": "x\\udbff\\u0041"}]}'):
            r = admin.request(method, path, content=body,
                              headers={"Content-Type": "application/json"})
            assert r.status_code == 400, (method, path, body, r.status_code, r.text[:200])
            err = r.json()["error"]
            assert err["type"] == "InvalidJson" and "lone surrogate" in err["message"], path
    host.app.plugins.grant("greeter-rust", "config")
    r = admin.post("/api/v1/plugins/greeter-rust/invoke", content=b'{"handler": "greet", '
                   b'"input": "{\\"name\\": \\"\\ud83d\\ude00 \\\\\\\\ud800\\"}"}',
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    # (An escaped backslash before "ud800" is text.)
    assert json.loads(r.json()["output"]) == {"message": "Hello, \N{GRINNING FACE} \\ud800!"}
    # The console's form takes the same JSON parser.
    browser, csrf = host.browser_session()
    r = browser.post("/plugins/greeter-rust", data={
        "csrf": csrf, "action": "invoke", "handler": "greet", "format": "json",
        "input": '{"name": "\\ud800"}'})
    assert r.status_code == 422 and "lone surrogate" in r.text


@pytest.mark.parametrize(("value", "encoding", "data"), [
    ("héllo", "text", "héllo".encode()), ("aGk=", "base64", b"hi"), ("", "text", b"")])
def test_a_text_field_is_utf8_or_base64(value: str, encoding: str, data: bytes) -> None:
    assert decode_text(value, encoding, "input") == data


@pytest.mark.parametrize(("value", "encoding", "says"), [
    (b"x", "text", "'input' must be a string (text, or base64 with encoding=base64)"),
    ("not base64!", "base64", "'input' is not valid base64"),
    ("x", "hex", "'encoding' must be text or base64"),
])
def test_a_bad_text_field_is_a_422_that_never_quotes_it(value: object, encoding: str,
                                                        says: str) -> None:
    with pytest.raises(ApiError) as exc:
        decode_text(value, encoding, "input")
    assert exc.value.status == 422 and str(exc.value) == says


def test_an_http2_body_without_a_length_is_counted(make_host: Callable[..., Host]) -> None:
    """HTTP/2 frames a body with neither Content-Length nor Transfer-Encoding: it is counted
    against the cap as it comes (it was read uncounted, as if it had no body), and the early
    answer is a clean HTTP/2 response (no connection header: a protocol error there) that
    ends its stream, not the connection: a DATA frame for the stream still on its way after
    the answer is dropped and the connection carries the next request (Hypercorn's own
    protocol raised KeyError on it and reset the connection, the answer sometimes unread:
    omnicore/console/http2.py)."""
    import socket

    import h2.config
    import h2.connection
    import h2.events
    from hyperframe.frame import DataFrame

    h = make_host(max_upload_bytes=10_000)
    url = httpx.URL(h.url)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    statuses: dict[int, bytes] = {}
    ended: set[int] = set()
    common = [(":scheme", "http"), (":authority", f"{url.host}:{url.port}"),
              ("authorization", f"Bearer {h.admin_token}")]
    with socket.create_connection((url.host, url.port)) as sock:
        sock.settimeout(15)

        def until(done: Callable[[], bool]) -> None:
            while not done():
                data = sock.recv(65536)
                assert data, ("the server dropped the connection", statuses, ended)
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        statuses[event.stream_id] = dict(event.headers)[b":status"]
                    elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                        ended.add(event.stream_id)
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        raise AssertionError(("GOAWAY", event, statuses))
                sock.sendall(conn.data_to_send())

        conn.send_headers(1, [(":method", "POST"),
                              (":path", "/api/v1/plugins?filename=big.wasm"), *common,
                              ("content-type", "application/wasm")])
        sock.sendall(conn.data_to_send())
        sent = 0
        while sent < 60_000:  # within the first flow-control window
            conn.send_data(1, b"\0asm" + b"x" * 4092)
            sent += 4096
            sock.sendall(conn.data_to_send())
        until(lambda: 1 in ended)
        assert statuses.get(1) == b"413", statuses
        # A frame of the body sent as the answer came back (as h2's own client, told of the
        # stream's end, no longer sends), then the next request on the same connection.
        sock.sendall(DataFrame(1, data=b"x" * 4096).serialize())
        conn.send_headers(3, [(":method", "GET"), (":path", "/api/v1/info"), *common],
                          end_stream=True)
        sock.sendall(conn.data_to_send())
        until(lambda: 3 in ended)
    assert statuses == {1: b"413", 3: b"200"}, statuses
    assert sorted(p.name for p in h.plugins_dir.iterdir()) == ["greeter-rust.wasm"]


def test_a_drain_ends_at_the_bodys_end_not_after_an_idle_wait(
        host: Host, monkeypatch: pytest.MonkeyPatch) -> None:
    """What is left of a request's body when its answer ends is taken up to the body's end,
    and no longer: every HTTP/2 request whose route reads no body leaves its stream's end (an
    empty last chunk) unread, and each had started a drain that then waited out
    ``DISCARD_IDLE_S`` (5 s) for more. Here the idle wait is ten minutes: the drains must end
    on their own. A body still on its way (an anonymous upload, refused before it is read) is
    drained too, and the connection carries on."""
    from omnicore.console import bodies
    from tests.waiting import eventually

    monkeypatch.setattr(bodies, "DISCARD_IDLE_S", 600.0)
    before = set(bodies._discarding)  # (an earlier test's host's, in this process)

    def drained() -> bool | None:
        return not (bodies._discarding - before) or None

    with httpx.Client(base_url=host.url, http1=False, http2=True, timeout=30,
                      headers={"Authorization": f"Bearer {host.admin_token}"}) as client:
        for _ in range(5):
            r = client.get("/api/v1/info")
            assert r.status_code == 200 and r.http_version == "HTTP/2"
        eventually(drained, "the drains to end")
        refused = client.post("/api/v1/plugins?filename=x.wasm", headers={"Authorization": ""},
                              content=iter([b"\0asm"] + [b"x" * 4096] * 4))
        assert refused.status_code == 401
        assert client.get("/api/v1/info").status_code == 200
        eventually(drained, "the upload's drain to end")

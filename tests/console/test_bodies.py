"""Request bodies against a real server: identity before body, every body capped as it
streams and timed, and one bounded JSON reader for every route."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


class _RawH2:
    """A raw HTTP/2 client on one socket: h2's client state machine, plus frames written
    around it (for a stream h2 already knows is over) that still honour the connection's
    flow-control window, as a well-behaved client's would: it sends only what the server
    has credited, so a server that stops crediting stalls it (``until`` times out)."""

    def __init__(self, url: str, token: str = "") -> None:
        import socket

        import h2.config
        import h2.connection

        self.url = httpx.URL(url)
        self.token = token
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.sock = socket.create_connection((self.url.host, self.url.port))
        self.sock.settimeout(15)
        self.statuses: dict[int, bytes] = {}
        self.ended: set[int] = set()
        self.resets: dict[int, list[int]] = {}
        self.trailers: dict[int, dict[bytes, bytes]] = {}
        self.raw_sent = 0  # bytes of DATA written around h2 (its window does not count them)
        self.flush()

    def close(self) -> None:
        self.sock.close()

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def common(self, auth: bool = True) -> list[tuple[str, str]]:
        found = [(":scheme", "http"), (":authority", f"{self.url.host}:{self.url.port}")]
        return [*found, ("authorization", f"Bearer {self.token}")] if auth else found

    def request(self, stream: int, method: str, path: str, *, end: bool,
                headers: Sequence[tuple[str, str]] = (), auth: bool = True) -> None:
        self.conn.send_headers(stream, [(":method", method), (":path", path),
                                        *self.common(auth), *headers], end_stream=end)
        self.flush()

    def read(self) -> None:
        import h2.events

        data = self.sock.recv(65536)
        assert data, ("the server dropped the connection", self.statuses, self.ended)
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                self.statuses[event.stream_id] = dict(event.headers)[b":status"]
            elif isinstance(event, h2.events.StreamEnded):
                self.ended.add(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                self.ended.add(event.stream_id)
                self.resets.setdefault(event.stream_id, []).append(int(event.error_code))
            elif isinstance(event, h2.events.TrailersReceived):
                self.trailers[event.stream_id] = dict(event.headers)  # type: ignore[arg-type]
            elif isinstance(event, h2.events.ConnectionTerminated):
                raise AssertionError(("GOAWAY", event, self.statuses))
        self.flush()

    def until(self, done: Callable[[], bool]) -> None:
        while not done():
            self.read()

    def room(self) -> int:
        """What the connection's window has left for this client's DATA."""
        return self.conn.outbound_flow_control_window - self.raw_sent

    def body(self, stream: int, size: int) -> None:
        """``size`` bytes of body on a stream h2 still sends on, as the windows allow (less
        if its answer ends it first)."""
        while size > 0:
            self.until(lambda: stream in self.ended or min(
                self.room(), self.conn.local_flow_control_window(stream)) > 0)
            if stream in self.ended:
                return
            n = min(size, 4096, self.room(), self.conn.local_flow_control_window(stream))
            self.conn.send_data(stream, b"x" * n)
            self.flush()
            size -= n

    def raw_data(self, stream: int, size: int, frame: int = 16_384) -> None:
        """``size`` bytes of DATA frames on a stream h2 knows is over, as the connection's
        window allows."""
        from hyperframe.frame import DataFrame

        while size > 0:
            self.until(lambda: self.room() > 0)
            n = min(size, frame, self.room())
            self.sock.sendall(DataFrame(stream, data=b"x" * n).serialize())
            self.raw_sent += n
            size -= n

    def frame(self, data: bytes) -> None:
        self.sock.sendall(data)


UPLOAD = "/api/v1/plugins?filename=big.wasm"
WASM = [("content-type", "application/wasm")]


def _cut_upload(c: _RawH2, stream: int) -> None:
    """An upload on ``stream`` past the host's 10,000-byte cap, answered 413 early."""
    c.request(stream, "POST", UPLOAD, end=False, headers=WASM)
    c.body(stream, 20_000)
    c.until(lambda: stream in c.ended)
    assert c.statuses.get(stream) == b"413", c.statuses


def test_http2_data_after_an_early_answer_is_credited_to_the_connection(
        make_host: Callable[..., Host]) -> None:
    """A client that goes on sending a stream's body after its early answer (413) and after
    the server's NO_ERROR reset, far beyond the connection's first window (64 KiB): every
    byte is credited back to the connection window (a server that kept them would stall
    every stream of the connection), the connection stays, and it carries the next
    request."""
    h = make_host(max_upload_bytes=10_000)
    c = _RawH2(h.url, h.admin_token)
    try:
        _cut_upload(c, 1)
        c.raw_data(1, 1_000_000)  # 15 times the first window
        c.request(3, "GET", "/api/v1/info", end=True)
        c.until(lambda: 3 in c.ended)
        assert c.statuses == {1: b"413", 3: b"200"}, c.statuses
        assert c.resets[1][0] == 0, c.resets  # NO_ERROR: stop sending, keep the answer
        # A second upload's body still gets the connection's window: nothing was kept.
        _cut_upload(c, 5)
    finally:
        c.close()


def test_http2_trailers_after_an_early_answer_and_a_client_reset(
        make_host: Callable[..., Host]) -> None:
    """The client ends an answered stream's body with trailers (a HEADERS frame) after the
    early answer and the server's reset; another stream it resets itself mid-body (CANCEL)
    and then goes on sending on. Neither ends the connection; the next request is
    answered."""
    from h2.errors import ErrorCodes
    from hyperframe.frame import HeadersFrame

    h = make_host(max_upload_bytes=10_000)
    c = _RawH2(h.url, h.admin_token)
    try:
        _cut_upload(c, 1)
        trailers = HeadersFrame(1, data=c.conn.encoder.encode([("x-checksum", "abc")]),
                                flags=["END_STREAM", "END_HEADERS"])
        c.frame(trailers.serialize())
        c.request(3, "POST", UPLOAD, end=False, headers=WASM)
        c.body(3, 5_000)
        c.conn.reset_stream(3, ErrorCodes.CANCEL)
        c.flush()
        c.raw_data(3, 200_000)
        c.request(5, "GET", "/api/v1/info", end=True)
        c.until(lambda: 5 in c.ended)
        assert c.statuses.get(5) == b"200", c.statuses
    finally:
        c.close()
    assert sorted(p.name for p in h.plugins_dir.iterdir()) == ["greeter-rust.wasm"]


def test_http2_many_streams_answered_early_at_once(make_host: Callable[..., Host]) -> None:
    """Forty uploads open at once on one connection, each cut at the cap (413) and reset
    while its client still sends, then every one of them sent more: all answered, the
    connection carries the next request."""
    h = make_host(max_upload_bytes=10_000)
    c = _RawH2(h.url, h.admin_token)
    streams = list(range(1, 81, 2))
    try:
        for s in streams:
            c.request(s, "POST", UPLOAD, end=False, headers=WASM)
        for _ in range(4):
            for s in streams:
                c.body(s, 4096)
        c.until(lambda: all(s in c.ended for s in streams))
        assert {c.statuses.get(s) for s in streams} == {b"413"}, c.statuses
        for s in streams:
            c.raw_data(s, 8192)
        c.request(81, "GET", "/api/v1/info", end=True)
        c.until(lambda: 81 in c.ended)
        assert c.statuses.get(81) == b"200", c.statuses
    finally:
        c.close()


def test_http2_an_early_answer_ended_by_trailers_resets_the_open_request() -> None:
    """An answer that ends with trailers (a plugin route may send them) while the request's
    body is still coming: the stream is reset with NO_ERROR once the trailers are out, the
    client keeps the answer and its trailers, and the body it still sends is dropped with
    the connection intact (Hypercorn's protocol as the console installs it)."""
    import asyncio
    import socket
    import threading

    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    from omnicore.console import http2

    http2.install()

    async def app(scope: dict[str, object], receive: Callable[..., object],
                  send: Callable[..., object]) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-type", b"text/plain")]})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b"early",  # type: ignore[operator]
                    "more_body": False})
        await send({"type": "http.response.trailers",  # type: ignore[operator]
                    "headers": [(b"x-done", b"yes")], "more_trailers": False})

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]  # the server's now: it closes it
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(
        serve(app, config, shutdown_trigger=stop.wait),), daemon=True)  # type: ignore[arg-type]
    thread.start()
    try:
        c = _RawH2(f"http://127.0.0.1:{port}")
        c.request(1, "POST", "/", end=False, headers=[("te", "trailers")], auth=False)
        c.body(1, 1000)
        c.until(lambda: 1 in c.ended)
        c.raw_data(1, 100_000)
        c.request(3, "GET", "/", end=True, headers=[("te", "trailers")], auth=False)
        c.until(lambda: 3 in c.ended)
        assert c.statuses == {1: b"200", 3: b"200"}, c.statuses
        assert c.trailers.get(1) == {b"x-done": b"yes"}, c.trailers
        assert c.resets.get(1, [None])[0] == 0, c.resets  # NO_ERROR once the trailers are out
        c.close()
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        assert not thread.is_alive(), "the test's Hypercorn server did not stop"
        # Its self-pipe: an unclosed loop warns at a later test's collection (filterwarnings
        # = error turns that into that test's failure).
        loop.close()

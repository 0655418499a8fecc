"""HTTP/2 clients that keep sending after the console has answered: the early-answer fix
(``omnicore/console/http2.py``) attacked with a raw h2 client. Each case ends with the
connection carrying the next request and the host's process idle (a connection left
spinning on a finished stream would take a core from every other request)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import httpx

from tests.console.conftest import Host
from tests.waiting import busy_share


def _idle(name: str = "omnicore-console-test") -> None:
    """Nothing spins once the client is gone: the server's event loop thread (the threads
    named ``name``) uses under half a core over half a second."""
    loops = [t for t in threading.enumerate() if t.name == name]
    assert loops, f"no thread {name!r} to watch"
    share, _ = busy_share(loops)
    assert share < 0.5, f"the server's loop used {share:.0%} of a core after the client left"


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


def _carries_next(c: _RawH2, stream: int) -> None:
    """The connection answers a next request, on ``stream``."""
    c.request(stream, "GET", "/api/v1/info", end=True)
    c.until(lambda: stream in c.ended)
    assert c.statuses.get(stream) == b"200", c.statuses


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
        _carries_next(c, 3)
        assert c.statuses == {1: b"413", 3: b"200"}, c.statuses
        assert c.resets[1][0] == 0, c.resets  # NO_ERROR: stop sending, keep the answer
        # A second upload's body still gets the connection's window: nothing was kept.
        _cut_upload(c, 5)
    finally:
        c.close()
    _idle()


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
        _carries_next(c, 5)
    finally:
        c.close()
    _idle()
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
        _carries_next(c, 81)
    finally:
        c.close()
    _idle()


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
        serve(app, config, shutdown_trigger=stop.wait),), daemon=True,  # type: ignore[arg-type]
        name="test-hypercorn")
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
        _idle("test-hypercorn")
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        assert not thread.is_alive(), "the test's Hypercorn server did not stop"
        # Its self-pipe: an unclosed loop warns at a later test's collection (filterwarnings
        # = error turns that into that test's failure).
        loop.close()

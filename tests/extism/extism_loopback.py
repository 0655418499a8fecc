"""A real HTTP server on 127.0.0.1 for the Extism HTTP tests (both omnicore and the Extism SDK
reach it). Its answers carry only fixed headers, so both sides can compare them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BIG = b"0123456789" * 100


@dataclass(frozen=True)
class Loopback:
    """The running server: its base URL; ``stalled`` is set when a /stall request arrives and
    ``stall`` answers it (both are set when the server stops)."""

    url: str
    stall: threading.Event
    stalled: threading.Event


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers: every answer has a length
    # One write per answer, sent at once: no Nagle / delayed-ACK stall between head and body.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    stall: threading.Event
    stalled: threading.Event

    def _answer(self, code: int, body: bytes, *extra: tuple[str, str]) -> None:
        self.send_response_only(code)  # no Date or Server header: answers compare exactly
        for name, value in (("Content-Length", str(len(body))), ("X-Reply", "yes"), *extra):
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        port = self.server.server_address[1]
        if self.path == "/missing":
            self._answer(404, b"no such page")
        elif self.path == "/empty":
            self._answer(204, b"")
        elif self.path == "/big":
            self._answer(200, BIG)
        elif self.path == "/big-chunked":
            # No length up front: the limit must hold while the body streams in.
            self.send_response_only(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(BIG), BIG))
        elif self.path == "/to-hello":
            # Absolute: the Extism SDK fails on a relative Location.
            self._answer(302, b"", ("Location", f"http://127.0.0.1:{port}/hello"))
        elif self.path == "/to-localhost":
            self._answer(302, b"", ("Location", f"http://localhost:{port}/hello"))
        elif self.path == "/stall":
            self.stalled.set()
            self.stall.wait(30)  # answers when told to, or when the server stops
            self._answer(200, b"late")
        else:
            self._answer(200, f"got {self.path} x={self.headers.get('x-test')}".encode())

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self._answer(201, b"posted " + body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def loopback_server() -> Iterator[Loopback]:
    """Serve on 127.0.0.1 (a free port); its URL is ``http://127.0.0.1:PORT``."""
    stall, stalled = threading.Event(), threading.Event()
    handler = type("Handler", (_Handler,), {"stall": stall, "stalled": stalled})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Loopback(f"http://127.0.0.1:{server.server_address[1]}", stall, stalled)
    finally:
        stall.set()
        server.shutdown()
        server.server_close()
        thread.join(10)

"""A loopback HTTP server that holds every request until the test opens it: the gate the
task tests hold tool calls at (tests/mcp/gate.wat), with no sleeps."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BODY = b"opened"


class Gate:
    """Requests to ``url`` wait until :meth:`open`; :meth:`wait_hits` waits for arrivals."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self._cond = threading.Condition()
        self.hits = 0
        self.url = ""

    def arrived(self) -> None:
        with self._cond:
            self.hits += 1
            self._cond.notify_all()

    def wait_hits(self, n: int, timeout: float = 60.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.hits >= n, timeout), \
                f"{self.hits} call(s) reached the gate, not {n}"

    def open(self) -> None:
        self.opened.set()

    def args(self) -> dict[str, Any]:
        """A gate tool's arguments: the request that waits here."""
        return {"method": "GET", "url": self.url, "timeout_ms": 60000}


@contextmanager
def gate_server() -> Iterator[Gate]:
    gate = Gate()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            gate.arrived()
            gate.opened.wait(120)
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    gate.url = f"http://127.0.0.1:{server.server_address[1]}/gate"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gate
    finally:
        gate.open()
        server.shutdown()
        server.server_close()


def gate_config(port_url: str) -> dict[str, Any]:
    """The ``plugins:`` entry for the gate plugin: http to the gate, a minute per call."""
    host = port_url.rsplit("/", 1)[0]
    return {"gate": {"grants": {"http": {"allow_hosts": [host]}},
                     "limits": {"timeout_ms": 60000}}}

"""Registries that misbehave, on loopback: a proxy in front of the real registry that alters
what it relays, and small servers that stall, drip, redirect in a loop or never stop."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["CorruptingProxy", "Scripted", "Silent"]

# (method, path) -> (status, headers, body chunks, seconds between chunks)
Script = Callable[[str, str], tuple[int, dict[str, str], Iterator[bytes], float]]


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ref(self, path: str) -> str:
        return f"oci://{self.host}/{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class CorruptingProxy(_Server):
    """Relays to ``upstream`` (``127.0.0.1:PORT``), flipping one byte of every blob (or,
    with ``manifests=True``, every manifest) it sends back; headers pass unchanged."""

    def __init__(self, upstream: str, *, manifests: bool = False) -> None:
        self.altered = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                target = "/manifests/" if manifests else "/blobs/sha256:"
                if self.command == "GET" and resp.status == 200 and target in self.path \
                        and data:
                    data = data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0x01]) + \
                        data[len(data) // 2 + 1:]
                    proxy.altered += 1
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value.replace(upstream, proxy.host))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = _relay

        super().__init__(Handler)


class Scripted(_Server):
    """Answers every request as ``script(method, path)`` says, a chunk at a time."""

    def __init__(self, script: Script) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                status, headers, chunks, pause = script(self.command, self.path)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    for chunk in chunks:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        if pause:
                            time.sleep(pause)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_HEAD = do_PUT = do_POST = _answer

        super().__init__(Handler)


class Silent:
    """Takes connections (the kernel's backlog) and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ref(self, path: str) -> str:
        return f"oci://{self.host}/{path}"

    def stop(self) -> None:
        self.sock.close()

"""A collector on loopback that answers with bytes written by a test, for the OTLP/HTTP
transport's tests (test_export_answers.py, test_export_attacks.py; the ``peer`` fixture of
tests/telemetry/conftest.py makes one)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

Answer = bytes | Callable[[socket.socket], None]


class Peer:
    """A collector on loopback answering each request (head and Content-Length body read
    whole) with the next of ``answers``: bytes sent as they are, or a function given the
    connection. An answer ending ``Connection: close`` (or none left) ends the connection."""

    def __init__(self, answers: list[Answer]) -> None:
        self.answers = list(answers)
        self.connections = 0
        self.requests: list[bytes] = []
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/v1/traces"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                self._requests(conn)
            except OSError:  # (the transport closed its end, or reset it)
                pass

    def _requests(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                got = conn.recv(65536)
                if not got:
                    return
                buf += got
            head, _, buf = buf.partition(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            while len(buf) < length:
                buf += conn.recv(65536)
            with self.lock:
                self.requests.append(head + b"\r\n\r\n" + buf[:length])
                answer = self.answers.pop(0) if self.answers else None
            buf = buf[length:]
            if answer is None:
                return
            if callable(answer):
                answer(conn)
            else:
                conn.sendall(answer)
                if b"connection: close" in answer.lower():
                    return

    def stop(self) -> None:
        self.server.close()
        with self.lock:
            for conn in self.open:
                conn.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def closing(answer: bytes) -> Answer:
    """``answer``, then the peer's end of the connection shut: what it cut short ends there."""
    def send(conn: socket.socket) -> None:
        conn.sendall(answer)
        conn.shutdown(socket.SHUT_WR)
    return send

"""The test host for a process that cannot import it: Node, running a JS/TS plugin's tests
natively (``sdk/js/testing``), whose plugin calls host functions synchronously.

``python -m omnicore.toolchains.testhost.served DIR`` makes two FIFOs in ``DIR``
(``request``, ``answer``), opens both, then writes ``DIR/ready``; the test process opens
them with blocking reads and writes. Each message is a u32 LE length and that much JSON
(bytes as ``{"$bytes": base64}``, an integer past 2^53 as ``{"$int": text}``). The test
process sends one request and reads until its answer; while a plugin's HTTP request or SQL
statement runs, the answer may be preceded by a question (``{"ask": "http" | "sql", ...}``)
it answers first, as :class:`~.native.NativeHost` asks its caller. Every host is a
:class:`~.native.NativeHost`: the capabilities' own code over in-memory services.

The server ends when its standard input ends: the test process holds the other end, so a
test process that dies takes its server with it.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

from omnicore.toolchains.testhost.native import NativeHost

__all__ = ["main"]

_SAFE = 2**53


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if isinstance(obj.get("$bytes"), str):
            return base64.b64decode(obj["$bytes"])
        if isinstance(obj.get("$int"), str):
            return int(obj["$int"])
    return obj


def _plain(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _SAFE:
        return {"$int": str(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class _Channel:
    def __init__(self, inbox: BinaryIO, outbox: BinaryIO) -> None:
        self._in = inbox
        self._out = outbox

    def send(self, message: Any) -> None:
        data = json.dumps(_plain(message), separators=(",", ":")).encode()
        self._out.write(struct.pack("<I", len(data)) + data)
        self._out.flush()

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            more = self._in.read(size - len(data))
            if not more:
                raise EOFError
            data += more
        return data

    def receive(self) -> Any:
        size = struct.unpack("<I", self._exactly(4))[0]
        return json.loads(self._exactly(size), object_hook=_hook)


class _Server:
    def __init__(self, channel: _Channel) -> None:
        self._channel = channel
        self._hosts: dict[int, NativeHost] = {}

    def _ask_http(self, request: dict[str, Any], body: bytes) -> tuple[bytes, bytes, bool]:
        self._channel.send({"ask": "http", "request": request, "body": body})
        answer = self._channel.receive()
        body = answer["body"]
        return (answer["head"].encode(), body.encode() if isinstance(body, str) else body,
                bool(answer["failed"]))

    def _ask_sql(self, native: list[NativeHost], statement: list[Any],
                 query: bool) -> tuple[str, bool]:
        index = len(native[0].host.databases.statements) - 1
        self._channel.send({"ask": "sql", "statement": statement, "query": query,
                            "index": index})
        answer = self._channel.receive()
        return str(answer["answer"]), bool(answer["failed"])

    def new(self, msg: dict[str, Any]) -> int:
        made: list[NativeHost] = []
        native = NativeHost(tuple(msg.get("handlers") or ()), http=self._ask_http,
                            sql=lambda statement, query: self._ask_sql(made, statement, query))
        made.append(native)
        native.configure(msg.get("config") or {}, msg.get("secrets") or {},
                         msg.get("log_level") or "trace")
        host = native.host
        store = host.storage.kv(host.owner)
        for key, value in (msg.get("kv") or {}).items():
            store.set(key, value)
        host.redis_prefix = msg.get("redis_prefix") or host.redis_prefix
        for name, kind in (msg.get("sql_kinds") or {}).items():
            host.databases.set_kind(name, kind)
        self._hosts[len(self._hosts) + 1] = native
        return len(self._hosts)

    def handle(self, msg: dict[str, Any]) -> Any:
        op = msg["op"]
        if op == "new":
            return {"id": self.new(msg)}
        native = self._hosts[msg["host"]]
        if op == "call":
            try:
                return {"ok": native.call(msg["cap"], msg["fn"], tuple(msg["args"]))}
            except Exception as exc:  # a component's call would trap
                return {"trap": f"{type(exc).__name__}: {exc}"}
        if op == "enter":
            native.enter()
        elif op == "leave":
            native.leave()
        elif op == "kv_set":
            native.host.storage.kv(native.host.owner).set(msg["key"], msg["value"])
        elif op == "kv_delete":
            return native.host.storage.kv(native.host.owner).delete(msg["key"])
        elif op == "read":
            return _read(native, msg["what"])
        else:
            raise ValueError(f"unknown request {op!r}")
        return None

    def serve(self) -> None:
        while True:
            try:
                msg = self._channel.receive()
            except EOFError:
                return
            try:
                self._channel.send(self.handle(msg))
            except Exception as exc:
                self._channel.send({"error": f"{type(exc).__name__}: {exc}"})


def _read(native: NativeHost, what: str) -> Any:
    """What the plugin did, read back by the test (``TestHost``'s properties)."""
    host = native.host
    if what == "logs":
        return [[line.level, line.message] for line in host.log.lines()]
    if what == "kv":
        store = host.storage.kv(host.owner)
        return {key: store.get(key) for key in store.list("")}
    if what == "events":
        return [list(e) for e in host.subscriptions.published]
    if what == "tasks":
        return host.jobs.jobs
    if what == "statements":
        return host.databases.statements
    if what == "redis":
        redis = host.databases.redis
        return {"prefix": host.redis_prefix,
                "keys": sorted(k.decode("utf-8", "replace") for k in redis.data),
                "published": [[c.decode("utf-8", "replace"), m] for c, m in redis.published]}
    if what == "memories":
        memory = host.state("memory")
        return [m.as_dict() for m in memory.recall("", limit=memory.policy.max_limit)]
    raise ValueError(f"nothing to read as {what!r}")


def main(argv: list[str]) -> int:
    where = Path(argv[0])
    request, answer = where / "request", where / "answer"
    os.mkfifo(request)
    os.mkfifo(answer)
    # Read-write: neither open waits for the test process, and neither end sees EOF while
    # this process holds it; the end of standard input is the end.
    inbox = os.fdopen(os.open(request, os.O_RDWR), "rb", buffering=0)
    outbox = os.fdopen(os.open(answer, os.O_RDWR), "wb", buffering=0)
    server = _Server(_Channel(inbox, outbox))
    threading.Thread(target=server.serve, daemon=True).start()
    (where / "ready").write_text("")
    while sys.stdin.buffer.read(65536):
        pass
    return 0  # the test process ended: the store's files are removed at exit


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

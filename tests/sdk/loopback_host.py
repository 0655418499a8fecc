"""Spec-following, in-memory host functions for kv, memory, vectors, http and secrets
(specs/abi.md §4), plus a loopback HTTP server, for the Go and JS SDK tests (tasks and events
are the real host's: ``spec_host.HostedProbe``).

Unlike ``spec_host`` (which records requests), ``omnicore:http`` here makes real requests,
to the loopback server only.
"""

from __future__ import annotations

import http.server
import json
import struct
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from omnicore.sandbox import Capability, GuestMemory, HostFunction, Status

__all__ = ["EchoHandler", "serve_http", "spec_capabilities"]


def spec_capabilities(state: dict[str, Any], *, max_value_bytes: int) -> list[Capability]:
    """kv, memory, vectors, http, secrets per specs/abi.md §4, in memory.

    ``state`` holds what the plugin did (kv, vectors, recall_query) and ``http_base``, where
    the ``local`` connector points.
    """
    kv: dict[str, bytes] = state.setdefault("kv", {})
    memories: dict[int, dict[str, Any]] = {}
    vectors: dict[str, dict[str, tuple[list[float], Any]]] = state.setdefault("vectors", {})

    def kv_get(_: object, mem: GuestMemory, kp: int, kl: int, out: int, cap: int) -> int:
        key = mem.read_str(kp, kl)
        return mem.write_result(kv[key], out, cap) if key in kv else Status.NOT_FOUND

    def kv_set(_: object, mem: GuestMemory, kp: int, kl: int, vp: int, vl: int) -> int:
        if vl > max_value_bytes:
            return Status.TOO_LARGE
        kv[mem.read_str(kp, kl)] = mem.read(vp, vl)
        return 0

    def kv_delete(_: object, mem: GuestMemory, kp: int, kl: int) -> int:
        return 1 if kv.pop(mem.read_str(kp, kl), None) is not None else 0

    def kv_incr(_: object, mem: GuestMemory, kp: int, kl: int, delta: int, out: int) -> int:
        key = mem.read_str(kp, kl)
        try:
            value = int(kv.get(key, b"0")) + delta
        except ValueError:
            return Status.INVALID
        kv[key] = str(value).encode()
        mem.write(out, struct.pack("<q", value))
        return 0

    def kv_list(_: object, mem: GuestMemory, pp: int, pl: int, out: int, cap: int) -> int:
        prefix = mem.read_str(pp, pl)
        keys = sorted(k for k in kv if k.startswith(prefix))
        return mem.write_result(json.dumps(keys).encode(), out, cap)

    def remember(_: object, mem: GuestMemory, tier: int, ip: int, il: int) -> int:
        item = json.loads(mem.read(ip, il))
        memories[len(memories) + 1] = {"tier": tier, **item}
        return len(memories)

    def recall(_: object, mem: GuestMemory, qp: int, ql: int, out: int, cap: int) -> int:
        query = state["recall_query"] = json.loads(mem.read(qp, ql))
        found = [{"id": i, "tier": m["tier"], "text": m["text"],
                  "metadata": m.get("metadata", {}), "score": 1.0, "created_at": 0}
                 for i, m in memories.items() if query["query"] in m["text"]]
        return mem.write_result(json.dumps(found).encode(), out, cap)

    def forget(_: object, mem: GuestMemory, mid: int) -> int:
        return 1 if memories.pop(mid, None) is not None else 0

    def upsert(_: object, mem: GuestMemory, cp: int, cl: int, ip: int, il: int, vp: int,
               dim: int, mp: int, ml: int) -> int:
        coll = vectors.setdefault(mem.read_str(cp, cl), {})
        vec = list(struct.unpack(f"<{dim}f", mem.read(vp, 4 * dim)))
        if any(len(v) != dim for v, _ in coll.values()):
            return Status.INVALID
        coll[mem.read_str(ip, il)] = (vec, json.loads(mem.read(mp, ml)) if ml else {})
        return 0

    def search(_: object, mem: GuestMemory, cp: int, cl: int, vp: int, dim: int,
               k: int) -> int:
        name = mem.read_str(cp, cl)
        if name not in vectors:
            return mem.alloc_result(f"NOT_FOUND: no collection {name!r}".encode(), error=True)
        query = struct.unpack(f"<{dim}f", mem.read(vp, 4 * dim))
        scored = sorted(((round(sum(a * b for a, b in zip(v, query, strict=True)), 3), i, meta)
                         for i, (v, meta) in vectors[name].items()), reverse=True)[:k]
        return mem.alloc_result(json.dumps(
            [{"id": i, "score": s, "metadata": m} for s, i, m in scored]).encode())

    def vdelete(_: object, mem: GuestMemory, cp: int, cl: int, ip: int, il: int) -> int:
        coll = vectors.get(mem.read_str(cp, cl))
        if coll is None:
            return Status.NOT_FOUND
        return 1 if coll.pop(mem.read_str(ip, il), None) is not None else 0

    def request(_: object, mem: GuestMemory, rp: int, rl: int, bp: int, bl: int) -> int:
        req = json.loads(mem.read(rp, rl))
        url = state["http_base"] + req["path"] if req.get("connector") == "local" else req["url"]
        host = urllib.parse.urlparse(url).hostname
        if host != "127.0.0.1":
            return mem.alloc_result(f"DENIED: host {host} is not in the grant".encode(), True)
        body = mem.read(bp, bl) if bl else None
        r = urllib.request.Request(url, data=body, method=req["method"],
                                   headers=req.get("headers", {}))
        with urllib.request.urlopen(r, timeout=5) as resp:
            head = json.dumps({"status": resp.status,
                               "headers": {k.lower(): v for k, v in resp.headers.items()}})
            payload = resp.read()
        return mem.alloc_result(struct.pack("<I", len(head)) + head.encode() + payload)

    def secret(_: object, mem: GuestMemory, np: int, nl: int, out: int, cap: int) -> int:
        name = mem.read_str(np, nl)
        if name == "token":
            return mem.write_result(b"s3cr3t", out, cap)
        return Status.NOT_FOUND if name == "unset" else Status.DENIED

    def fn(name: str, params: str, results: str, impl: Any) -> HostFunction:
        return HostFunction(name, tuple(params.split()), tuple(results.split()), impl)

    return [
        Capability("kv", (fn("get", "ptr len ptr len", "i32", kv_get),
                          fn("set", "ptr len ptr len", "i32", kv_set),
                          fn("delete", "ptr len", "i32", kv_delete),
                          fn("incr", "ptr len i64 ptr", "i32", kv_incr),
                          fn("list", "ptr len ptr len", "i32", kv_list))),
        Capability("memory", (fn("remember", "i32 ptr len", "i64", remember),
                              fn("recall", "ptr len ptr len", "i32", recall),
                              fn("forget", "i64", "i32", forget))),
        Capability("vectors", (fn("upsert", "ptr len ptr len ptr i32 ptr len", "i32", upsert),
                               fn("search", "ptr len ptr i32 i32", "i64", search),
                               fn("delete", "ptr len ptr len", "i32", vdelete))),
        Capability("http", (fn("request", "ptr len ptr len", "i64", request),)),
        Capability("secrets", (fn("get", "ptr len ptr len", "i32", secret),)),
    ]


class EchoHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._reply(b"hello " + self.path.encode())

    def do_POST(self) -> None:
        self._reply(b"echo: " + self.rfile.read(int(self.headers["content-length"])))

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serve_http() -> Iterator[str]:
    """A loopback HTTP server (GET: "hello <path>", POST: "echo: <body>"); yields its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

"""The capabilities that reach out: vectors, memory, http — each next to its floor.

Run: ``.venv/bin/python bench/bench_reach.py [--quick] [--only vectors,memory,http]``.
Prints one table:

* vector search k=10 from a plugin (WAT guest -> ``omnicore:vectors.search`` -> JSON back)
  vs ``hnswlib.Index.knn_query`` on the very same index, with recall@10 of both against exact
  numpy search. The issue's 100k x 384 needs ≈ 10 minutes of index building on a 2-core
  machine; the default here is 20k x 128 (``--n``/``--dim`` change it; ``--quick`` 3k x 64);
* upsert rate through ``app.vectors`` (a SQLite transaction + an index insert each);
* memory recall over N memories (FTS5 + ranking), from a plugin and from Python, vs SQLite's
  own BM25 ranking of the same words over the plugin's rows, in sqlite3 on the same file (the
  floor: the full-text search alone, before any row is read);
* an HTTP GET to a loopback server from a plugin vs the same request with urllib3 from Python
  (a kept-alive pool in both).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sqlite3
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import urllib3
import wasmtime
from _measure import Sample, machine, measure

from omnicore.app import OmniApp
from omnicore.sandbox import wasmbin
from omnicore.storage import SQLiteStorage
from omnicore.storage.sqlite.fulltext import fts_table
from omnicore.storage.sqlite.fulltext import scope as memory_scope

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests package: its guests, so both measure one thing
from tests.capabilities.test_http import HTTP_WAT  # noqa: E402
from tests.capabilities.test_memory import MEMORY_WAT  # noqa: E402
from tests.capabilities.test_vectors import VECTORS_WAT  # noqa: E402

WORDS = [f"w{i}" for i in range(5000)]


def wasm(src: str, name: str) -> bytes:
    return wasmbin.set_custom_section(wasmtime.wat2wasm(src), "omnicore.manifest",
                                      json.dumps({"name": name}).encode())


def interleaved(fns: list[Callable[[int], object]], iters: int, rounds: int = 7
                ) -> list[Sample]:
    """Time each of ``fns`` (called with the iteration number) ``iters`` times per round, the
    rounds taking turns, so a loaded machine slows every column alike."""
    for fn in fns:
        for i in range(iters // 10):
            fn(i)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            for i in range(iters):
                fn(i)
            out.append((time.perf_counter() - start) / iters * 1e6)
    return [Sample(statistics.median(t), min(t), max(t)) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--memories", type=int, default=100_000)
    ap.add_argument("--only", default="vectors,memory,http",
                    help="the rows to run, comma-separated (vectors, memory, http)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    n, dim, memories = (3000, 64, 5000) if args.quick else (args.n, args.dim, args.memories)
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        app = OmniApp("bench", overrides={"data_dir": tmp, "plugins_dir": f"{tmp}/p",
                                          "sandbox": {"watch": False}}, entry_points=False)
        app.start()
        try:
            if "vectors" in only:
                vector_rows(app, n, dim, rows)
            if "memory" in only:
                memory_rows(app, memories, rows)
            if "http" in only:
                http_rows(app, rows)
        finally:
            app.stop(grace=0)
    print(machine())
    w = max(len(r[0]) for r in rows)
    print(f"{'':<{w}}  {'omnicore':>22}  {'floor / peer':>22}  note")
    for name, ours, floor, note in rows:
        print(f"{name:<{w}}  {ours:>22}  {floor:>22}  {note}")


def vector_rows(app: OmniApp, n: int, dim: int, rows: list[tuple[str, str, str, str]]) -> None:
    rng = np.random.default_rng(3)
    data = rng.standard_normal((n, dim)).astype(np.float32)
    view = app.vectors.for_plugin("vb")
    start = time.perf_counter()
    for i, row in enumerate(data):
        view.upsert("emb", f"v{i}", row)
    rate = n / (time.perf_counter() - start)
    rows.append((f"vector upsert ({dim} dims, {n:,} into one collection)", f"{rate:,.0f} /s",
                 "", "SQLite row + HNSW insert each"))
    # The test guest's bump allocator never frees; here it starts over (each result block is
    # read by the host before the next call), so thousands of searches fit.
    reusing = VECTORS_WAT.replace(
        "(then (return (i32.const 0)))",
        "(then (global.set $bump (i32.add (i32.const 0x20000) (local.get $n)))"
        " (return (i32.const 0x20000)))")
    app.plugins.load(wasm(reusing, "vb"), grants=["vectors"])
    coll_id = view._collection("emb")
    assert coll_id is not None
    index = app.vectors.index(*coll_id)
    queries = rng.standard_normal((200, dim)).astype(np.float32)
    norm = data / np.linalg.norm(data, axis=1, keepdims=True)
    exact = [set(np.argsort(-(norm @ (q / np.linalg.norm(q))))[:10]) for q in queries]
    name = b"emb"
    inputs = [struct.pack("<I", len(name)) + name + struct.pack(f"<II{dim}f", 10, dim, *q)
              for q in queries]
    got = [json.loads(app.plugins.call("vb", "search", x)) for x in inputs]
    ours = np.mean([len({int(h["id"][1:]) for h in g} & e) / 10
                    for g, e in zip(got, exact, strict=True)])
    index.hnsw.set_ef(64)
    raw = [set(index.hnsw.knn_query(q.reshape(1, -1), k=10)[0][0]) for q in queries]
    # labels are insertion order here, so label == row index
    raw_recall = np.mean([len(r & e) / 10 for r, e in zip(raw, exact, strict=True)])
    shaped = [q.reshape(1, -1) for q in queries]
    # What the plugin call and the guest->host crossing cost alone: the same guest's host call
    # that finds nothing to do (a delete from a collection that does not exist).
    nothing = struct.pack("<I", 4) + b"none" + b"x"
    # hnswlib's C++ search with its Python binding's cost spread over ten queries a call:
    # what is left of the floor for any wrapper, hnswlib's own binding included.
    # Measured apart: 80 ms of it a round would leave the next column's caches cold.
    tens = itertools.cycle([queries[j:j + 10] for j in range(0, 200, 10)])
    batch = measure(lambda: index.hnsw.knn_query(next(tens), k=10, num_threads=1), 100)
    plugin, python, floor, call = interleaved([
        lambda i: app.plugins.call("vb", "search", inputs[i % 200]),
        lambda i: view.search_json("emb", queries[i % 200], 10),
        lambda i: index.hnsw.knn_query(shaped[i % 200], k=10),
        lambda i: app.plugins.call("vb", "delete", nothing)], 200, rounds=15)
    rows.append((f"vector search k=10 ({n:,} x {dim}) µs", str(plugin), str(floor),
                 f"{plugin.ratio(floor):.2f}x raw hnswlib ({python.median:.1f} µs from "
                 f"Python, {python.ratio(floor):.2f}x; hnswlib's search in a batch "
                 f"{batch.median / 10:.1f} µs a query; a host call doing nothing "
                 f"{call.median:.1f} µs); recall@10 {ours:.3f} vs {raw_recall:.3f} "
                 "(exact numpy = 1)"))


def memory_rows(app: OmniApp, count: int, rows: list[tuple[str, str, str, str]]) -> None:
    rnd = random.Random(5)
    mem = app.memory.for_plugin("mb")
    db = app.storage
    assert isinstance(db, SQLiteStorage), "the bulk load below is the SQLite backend's"
    db.memory  # noqa: B018 - creates the memory tables
    # Bulk-load through one transaction: the rows and FTS index are what recall reads.
    now = time.time()
    batch = [(i + 1, "mb", memory_scope("mb"), 2, " ".join(rnd.choices(WORDS, k=12)), None,
              rnd.random(), now - rnd.random() * 86400 * 30, now, None, 0)
             for i in range(count)]
    mem.remember(2, "creates the plugin's full-text table")
    table = fts_table("mb")

    def load(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO memories (id, plugin, scope, tier, text, meta, importance, created_at,"
            " accessed_at, expires_at, has_vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            batch)
        conn.executemany(f"INSERT INTO {table}(rowid, text) VALUES (?, ?)",
                         [(b[0], b[4]) for b in batch])
    db.backend.write(load)  # type: ignore[arg-type]
    queries = [" ".join(rnd.choices(WORDS, k=2)) for _ in range(200)]
    app.plugins.load(wasm(MEMORY_WAT, "mb"), grants=["memory"])
    inputs = [json.dumps({"query": q, "limit": 10}).encode() for q in queries]
    # The floor: SQLite's own BM25 ranking of the plugin's matches (the best 50, the
    # candidates a recall of 10 ranks), on a connection of its own.
    raw = sqlite3.connect(db.path)
    sql = f"SELECT rowid, bm25({table}) AS r FROM {table} WHERE {table} MATCH ? ORDER BY r LIMIT 50"
    matches = [" OR ".join(f'"{w}"' for w in q.split()) for q in queries]
    plug, py, floor = interleaved([
        lambda i: app.plugins.call("mb", "recall", inputs[i % 200]),
        lambda i: mem.recall(queries[i % 200], limit=10),
        lambda i: raw.execute(sql, (matches[i % 200],)).fetchall()], 30)
    raw.close()
    rows.append((f"memory recall ({count:,} memories, 2-word query, limit 10) µs", str(plug),
                 str(floor), f"{plug.ratio(floor):.2f}x FTS5 BM25 top 50 in sqlite3 "
                 f"({py.median / 1000:.2f} ms from Python); target <= 3 ms"))


def http_rows(app: OmniApp, rows: list[tuple[str, str, str, str]]) -> None:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else headers and body wait on a delayed ACK (40 ms)

        def log_message(self, *a: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        app.plugins.load(wasm(HTTP_WAT, "hb"), grants={"http": {
            "allow_hosts": [f"http://127.0.0.1:{port}"]}})
        req = json.dumps({"method": "GET", "url": f"http://127.0.0.1:{port}/x"}).encode()
        data = struct.pack("<I", len(req)) + req
        plugin = measure(lambda: app.plugins.call("hb", "request", data), 200, repeats=5)
        pool = urllib3.HTTPConnectionPool("127.0.0.1", port, maxsize=4, retries=False)
        python = measure(lambda: pool.urlopen("GET", "/x").data, 200, repeats=5)
        rows.append(("HTTP GET loopback µs", str(plugin), str(python),
                     f"{plugin.ratio(python):.2f}x urllib3 from Python (kept-alive pools)"))
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()

"""kv, tasks and events: from a plugin, against sqlite3 from Python (the floor) and Redis.

Run: ``.venv/bin/python bench/bench_capabilities.py [--markdown] [--quick]``

kv rows: a guest handler doing one kv call, minus nothing (the whole plugin call is timed;
a get repeats one key, so after the first it is answered by the SQLite backend's read cache,
which any commit empties: storage/sqlite/walindex.py);
the "storage" column is ``app.kv.for_plugin()`` from Python (no wasm); the floor is the same
SQL on a plain ``sqlite3`` connection in WAL mode with the same ``synchronous``; the peer is
a real ``redis-server`` started on 127.0.0.1 (a free port, a temp dir, no persistence) and
called over TCP with the ``redis`` package (both installed by the setup; "n/a" with the
reason if one is missing).
Task and event rows are latencies from enqueue/publish to the handler starting (the
``job.started`` event) or finishing (event delivery), p50/p99 over many runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import wasmtime
from _measure import machine, measure, render, scratch

from omnicore.app import OmniApp
from omnicore.sandbox import wasmbin
from omnicore.storage import KVQuota

WAT = r"""
(module
  (import "omnicore:kv" "get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "omnicore:kv" "set" (func $set (param i32 i32 i32 i32) (result i32)))
  (import "omnicore:kv" "incr" (func $incr (param i32 i32 i64 i32) (result i32)))
  (import "omnicore:events" "publish" (func $pub (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  (global $bump (mut i32) (i32.const 0x20000))
  (data (i32.const 0x100) "key")
  (data (i32.const 0x110) "n")
  (data (i32.const 0x120) "tick")
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32) (local.set $p (global.get $bump))
    (global.set $bump (i32.and (i32.add (i32.add (global.get $bump) (local.get $n))
                                        (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  (func (export "get") (param $p i32) (param $n i32) (result i64)
    (drop (call $get (i32.const 0x100) (i32.const 3) (i32.const 0x1000) (i32.const 4096)))
    (i64.const 0))
  (func (export "getk") (param $p i32) (param $n i32) (result i64)
    (drop (call $get (local.get $p) (local.get $n) (i32.const 0x1000) (i32.const 4096)))
    (i64.const 0))
  (func (export "set") (param $p i32) (param $n i32) (result i64)
    (drop (call $set (i32.const 0x100) (i32.const 3) (local.get $p) (local.get $n)))
    (i64.const 0))
  (func (export "incr") (param $p i32) (param $n i32) (result i64)
    (drop (call $incr (i32.const 0x110) (i32.const 1) (i64.const 1) (i32.const 0x1000)))
    (i64.const 0))
  (func (export "noop") (param $p i32) (param $n i32) (result i64) (i64.const 0))
  (func (export "pub") (param $p i32) (param $n i32) (result i64)
    (drop (call $pub (i32.const 0x120) (i32.const 4) (local.get $p) (local.get $n)))
    (i64.const 0))
)
"""

VALUE = b"v" * 100


def plugin(name: str, subscriptions: list[dict[str, Any]] | None = None) -> bytes:
    manifest = {"name": name, "subscriptions": subscriptions or []}
    return wasmbin.set_custom_section(wasmtime.wat2wasm(WAT), "omnicore.manifest",
                                      json.dumps(manifest).encode())


def floor(db: Path, sync: str) -> dict[str, Any]:
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={sync}")
    conn.execute("CREATE TABLE kv (plugin TEXT, key TEXT, value BLOB, PRIMARY KEY (plugin, key))"
                 " WITHOUT ROWID")
    conn.execute("INSERT INTO kv VALUES ('p', 'key', ?)", (VALUE,))
    conn.execute("INSERT INTO kv VALUES ('p', 'n', '0')")

    def get() -> None:
        conn.execute("SELECT value FROM kv WHERE plugin=? AND key=?", ("p", "key")).fetchone()

    def put() -> None:
        conn.execute("INSERT INTO kv VALUES (?,?,?) ON CONFLICT DO UPDATE SET value=excluded.value",
                     ("p", "key", VALUE))

    def incr() -> None:
        conn.execute("UPDATE kv SET value=CAST(value AS INTEGER)+1 WHERE plugin='p' AND key='n'")
    return {"get": get, "set": put, "incr": incr}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_ops(tmp: Path) -> tuple[dict[str, Any] | None, subprocess.Popen[bytes] | None, str]:
    """GET/SET/INCR on a real redis-server on 127.0.0.1 (a free port, data in ``tmp``), over
    TCP from Python as an app would; ``(None, None, why)`` when it cannot run."""
    exe = shutil.which("redis-server")
    if exe is None:
        return None, None, "n/a (no redis-server: scripts/setup-toolchains.sh installs it)"
    try:
        import redis
    except ImportError:
        return None, None, "n/a (no redis package: pip install -e '.[dev]')"
    port = free_port()
    (tmp / "redis").mkdir()
    # No persistence: the column is the in-memory peer, as it is usually deployed for this.
    proc = subprocess.Popen([exe, "--bind", "127.0.0.1", "--port", str(port), "--dir",
                             str(tmp / "redis"), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                return None, None, f"n/a (redis-server did not start on port {port})"
            time.sleep(0.01)
    client.set("key", VALUE)
    return {"get": lambda: client.get("key"), "set": lambda: client.set("key", VALUE),
            "incr": lambda: client.incr("n")}, proc, ""


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--synchronous", choices=["normal", "full"], default="normal")
    args = ap.parse_args()
    iters, runs = (300, 100) if args.quick else (3000, 500)
    tmp = scratch("bench-cap-")
    app = OmniApp("bench", builtin_extensions=None, entry_points=False, overrides={
        "data_dir": str(tmp / "data"), "plugins_dir": str(tmp / "plugins"),
        "sandbox": {"watch": False}, "storage": {"synchronous": args.synchronous},
        "capabilities": {"tasks": {"workers": 2, "poll_s": 1}}})
    app.start()
    try:
        app.plugins.load(plugin("b"), grants=["kv", "events", "tasks"])
        app.plugins.call("b", "set", VALUE)
        call = app.plugins.call
        store = app.kv.for_plugin("b")
        sql = floor(tmp / "floor.db", args.synchronous.upper())
        red, proc, why_not = redis_ops(tmp)
        rows = []
        noop = measure(lambda: call("b", "noop", b""), iters)
        # Last, each column reading keys of its own, none twice: every get misses the read
        # cache and reads SQLite (as the first read of a key after any commit does). The
        # keys are seeded past the default max_keys, so only once the writes are measured.
        span = iters * 8
        fresh_b = iter([f"k{i:06d}".encode() for i in range(span)])
        fresh = iter([f"k{i:06d}" for i in range(span, 2 * span)])
        miss = "get, never the same key"
        sql[miss] = sql["get"]
        ops = {"get": (lambda: call("b", "get", b""), lambda: store.get("key")),
               "set": (lambda: call("b", "set", VALUE), lambda: store.set("key", VALUE)),
               "incr": (lambda: call("b", "incr", b""), lambda: store.incr("n", 1)),
               miss: (lambda: call("b", "getk", next(fresh_b)), lambda: store.get(next(fresh)))}
        for op, (guest, py) in ops.items():
            if op == miss:
                roomy = KVQuota(max_keys=10**6, max_bytes=10**9)
                for i in range(2 * span):
                    store.set(f"k{i:06d}", VALUE, roomy)
            g, s, f = measure(guest, iters), measure(py, iters), measure(sql[op], iters)
            r = measure(red[op], iters) if red and op in red else None
            rows.append([f"kv {op} (100 B)", str(g), f"{g.median - noop.median:.2f}", str(s),
                         str(f), str(r) if r else why_not,
                         f"{g.median / f.median:.1f}x", f"{s.median / f.median:.1f}x"])
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        print(f"# kv, µs per operation (median [min-max] of 7 runs), synchronous="
              f"{args.synchronous}\n# {machine()}\n# a plugin call doing nothing: {noop}")
        print(render(["operation", "from a plugin", "minus empty call", "app.kv (Python)",
                      "sqlite3 floor", "redis", "plugin/floor", "app.kv/floor"], rows,
                     args.markdown))

        # tasks: enqueue -> job.started
        started: dict[int, float] = {}
        cond = threading.Condition()

        def on_start(event: Any) -> None:
            with cond:
                started[event.job_id] = time.perf_counter()
                cond.notify_all()
        app.events.subscribe("job.started", on_start)
        lat = []
        for _ in range(runs):
            t0 = time.perf_counter()
            job = app.jobs.enqueue("b", "noop")
            with cond:
                cond.wait_for(lambda job=job: job in started, 10)
            lat.append((started[job] - t0) * 1e6)
        t0 = time.perf_counter()
        ids = [app.jobs.enqueue("b", "noop") for _ in range(runs)]
        with cond:
            cond.wait_for(lambda: all(i in started for i in ids), 60)
        throughput = runs / (max(started[i] for i in ids) - t0)
        # events: publish from a plugin -> subscriber handler done (in-memory inbox)
        app.plugins.load(plugin("s", [{"topic": "plugin.b.tick", "handler": "noop"}]),
                         grants=["kv", "events"])
        ev = []
        for _ in range(runs):
            t0 = time.perf_counter()
            call("b", "pub", b"{}")
            app.subscriptions.drain(10)
            ev.append((time.perf_counter() - t0) * 1e6)
        print(f"\n# latency, µs (p50 / p99 over {runs} runs)")
        print(render(["path", "p50", "p99", "note"], [
            ["task enqueue -> handler start", f"{statistics.median(lat):.0f}",
             f"{pct(lat, 0.99):.0f}", f"2 workers: {throughput:.0f} jobs/s end to end"],
            ["event publish -> subscriber done", f"{statistics.median(ev):.0f}",
             f"{pct(ev, 0.99):.0f}", "in-memory inbox, includes the subscriber's call"],
        ], args.markdown))
    finally:
        app.stop(grace=1)


if __name__ == "__main__":
    sys.exit(main())

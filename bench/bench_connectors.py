"""Database connectors: a one-row query through a plugin against the driver alone from Python.

Run: ``.venv/bin/python bench/bench_connectors.py [--markdown] [--quick]``

Each server is a private one started here (PostgreSQL, MariaDB and redis-server from Debian's
packages, as the tests start them: tests/pgcluster.py, tests/dbservers.py) on 127.0.0.1.
"from a plugin" is ``app.plugins.call`` of a WAT guest whose handler passes its input to
``omnicore:sql`` ``query`` (or ``omnicore:redis`` ``command``) and returns the host's result:
the whole call is timed (request JSON in, the result JSON out). "driver alone" is the same
statement on one open connection of psycopg 3, PyMySQL or redis-py as their documentation
uses them (psycopg's ``execute``/``fetchall``, which prepares a statement run five times;
PyMySQL's buffered cursor), fetching the row. The two take turns in the timed runs, so a
change in the machine's load falls on both. "host connector" is the same statement through
the connector's backend called from Python, without a plugin: the difference to the plugin
column is the plugin call and its JSON (the ABI), the difference to the driver is the
connector's own work (pool, deadline, caps, streaming). Then 8 threads call the querying
plugin at once, sharing the connector's pool (4 connections): calls per second and failed
calls. Last, the statement gate's cost per statement: the statement parsed by the server's
grammar the first time it is seen, and its verdict looked up after.

The whole run (this process and the servers it starts, which inherit it) is pinned to one CPU
unless ``--spread``: on a small VM the scheduler puts the bench's thread and each server
process (PostgreSQL runs a backend per connection) on the same core or on different ones, and
a run keeps its placement for its whole length. Measured on 2 cores, a cross-core wake-up
costs tens of µs per round trip, and which columns paid it differed per run (PostgreSQL 1.4x
to 2.8x the driver on an idle machine, redis-py alone 49 or 130 µs); on one CPU every column
pays the same context switch and runs repeat within a few percent.

On a machine shared with other work the wall columns move with its load (other processes
take turns on the bench's CPU), so the one-row query is also measured in CPU: the bench
process's (every thread: the plugin call, the connector, the driver) and the server's (each
of its processes' threads, from /proc schedstat), per call, the columns again alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _measure import SMOKE, Sample, machine, measure_alternating, render, scratch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from omnicore.app import OmniApp
from tests.db_fixtures import REDIS_WAT, SQL_WAT, framed, sql_wasm
from tests.dbservers import PASSWORD as MARIA_PASSWORD
from tests.dbservers import MariaDB, Redis
from tests.pgcluster import Cluster

PG_SQL = "SELECT id, name, qty FROM items WHERE id = $1"


def threaded(call: Any, threads: int, per_thread: int) -> tuple[float, int]:
    """(calls per second, failed calls) of ``threads`` threads making ``per_thread`` calls."""
    failed = [0]
    lock = threading.Lock()
    start = threading.Barrier(threads + 1)

    def work() -> None:
        start.wait()
        for _ in range(per_thread):
            try:
                call()
            except Exception:
                with lock:
                    failed[0] += 1

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in pool:
        t.join()
    return threads * per_thread / (time.perf_counter() - began), failed[0]


def server_tasks(pids: list[int]) -> list[str]:
    """The /proc schedstat files of every thread of ``pids`` and of their children (a
    PostgreSQL backend is a child of the postmaster), as they are now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    todo, files = list(pids), []
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        files += [f"/proc/{pid}/task/{tid}/schedstat" for tid in tids]
    return files


def ran_ns(files: list[str]) -> int:
    """The nanoseconds the threads of ``files`` have run (one that ended drops out)."""
    total = 0
    for name in files:
        try:
            with open(name) as f:
                total += int(f.read().split()[0])
        except OSError:
            continue
    return total


def cpu_alternating(fns: list[Any], server: list[int], iters: int, rounds: int
                    ) -> list[tuple[Sample, Sample]]:
    """Per call of each of ``fns``, the columns taking turns in ``rounds`` runs of ``iters``
    calls: (this process's CPU, the server's CPU) in µs, the median over the rounds with its
    min and max."""
    files = server_tasks(server)
    got: list[tuple[list[float], list[float]]] = [([], []) for _ in fns]
    for _ in range(1 if SMOKE else rounds):
        for fn, (mine, theirs) in zip(fns, got, strict=True):
            s0, c0 = ran_ns(files), time.process_time()
            for _ in range(iters):
                fn()
            mine.append((time.process_time() - c0) / iters * 1e6)
            theirs.append((ran_ns(files) - s0) / iters / 1e3)
    return [(_sample(mine), _sample(theirs)) for mine, theirs in got]


def _sample(values: list[float]) -> Sample:
    return Sample(statistics.median(values), min(values), max(values))


def gate_costs(iters: int) -> list[list[str]]:
    """The statement gate's cost per statement (specs/abi.md §4.10, Statements): the server's
    grammar applied to a statement seen for the first time (PostgreSQL: pglast's parse, which
    embeds PostgreSQL's parser; MariaDB: the tokenizer), and the verdict on one seen before
    (the gate keeps its last 1024 verdicts: a plugin's statements are literals in its code)."""
    from omnicore.egress.db import mystatements, pgstatements, statements

    none: frozenset[str] = frozenset()
    out = []
    for label, kind, sql, first in (
            ("PostgreSQL (pglast)", "postgres", PG_SQL, pgstatements.judge),
            ("MariaDB (tokenizer)", "mysql", PG_SQL.replace("$1", "?"), mystatements.judge)):
        assert first(sql, False, False, none).reason is None
        parse, seen = measure_alternating(
            [lambda f=first, s=sql: f(s, False, False, none),
             lambda k=kind, s=sql: statements.judge(s, k, False, False, none)], iters)
        out.append([label, str(parse), str(seen)])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--spread", action="store_true",
                    help="leave the bench and its servers to the scheduler (not one CPU)")
    args = ap.parse_args()
    if not args.spread and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    iters = 200 if args.quick else 2000
    # The three columns take turns in short runs (TURNS of iters // TURNS calls, each 7
    # times): on a shared machine the load changes within a second, and turns of a few
    # milliseconds let every column see the same load.
    turns = 20
    import psycopg
    import pymysql

    pg, maria, red = Cluster.start(), MariaDB.start(), Redis.start()
    tmp = scratch("omnicore-bench-conn-")
    app = None
    try:
        pg_url = pg.database("bench")
        pg_postmaster = int((pg.root / "data" / "postmaster.pid").read_text().split()[0])
        my_url = maria.database("bench")
        app = OmniApp("bench-connectors", entry_points=False, environ={}, overrides={
            "data_dir": str(tmp / "data"), "plugins_dir": str(tmp / "plugins"),
            "sandbox": {"watch": False},
            "connectors": {
                "pg": {"kind": "postgres", "url": pg_url.replace("omnicore:omnicore@",
                                                                 "omnicore@"),
                       "secret": "pg-pw"},
                "my": {"kind": "mysql", "url": my_url, "secret": "my-pw"},
                # One connection each: two plugins taking turns hand it over every statement.
                "pg1": {"kind": "postgres", "url": pg_url.replace("omnicore:omnicore@",
                                                                  "omnicore@"),
                        "secret": "pg-pw", "pool_size": 1},
                "my1": {"kind": "mysql", "url": my_url, "secret": "my-pw", "pool_size": 1},
                "cache": {"kind": "redis", "url": f"redis://127.0.0.1:{red.port}/0",
                          "secret": "cache-pw"}}})
        app.start()
        app.secrets.set("pg-pw", "omnicore")
        app.secrets.set("my-pw", MARIA_PASSWORD)
        app.secrets.set("cache-pw", red.password)
        limits = {"timeout_ms": 5000, "pool_size": 8}
        app.plugins.load(sql_wasm("db", SQL_WAT), grants={"sql": {"connectors": ["pg", "my"]}},
                         limits=limits)
        app.plugins.load(sql_wasm("kv", REDIS_WAT), grants={"redis": {"connectors": ["cache"]}},
                         limits=limits)

        pgc = psycopg.connect(pg_url, autocommit=True)
        pgc.execute("CREATE TABLE items (id int PRIMARY KEY, name text, qty int)")
        pgc.execute("INSERT INTO items VALUES (1, 'apple', 3)")
        myc = pymysql.connect(host="127.0.0.1", port=maria.port, user="omnicore",
                              password=MARIA_PASSWORD, database="bench", autocommit=True)
        with myc.cursor() as cur:
            cur.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(50), qty INT)")
            cur.execute("INSERT INTO items VALUES (1, 'apple', 3)")
        rc = red.client()
        rc.set("omnicore:kv:visits", "7")
        rc.set("visits", "7")

        call = app.plugins.call
        pg_in = framed("pg", json.dumps({"sql": PG_SQL, "params": [1]}).encode())
        my_in = framed("my", json.dumps({"sql": PG_SQL.replace("$1", "?"),
                                         "params": [1]}).encode())
        kv_in = framed("cache", b'{"cmd": "GET", "args": ["visits"]}')
        assert json.loads(call("db", "query", pg_in))["rows"] == [[1, "apple", 3]]
        assert json.loads(call("db", "query", my_in))["rows"] == [[1, "apple", 3]]
        assert json.loads(call("kv", "command", kv_in)) == "7"

        pg_sql = PG_SQL.replace("$1", "%s")

        def pg_alone() -> object:
            return pgc.execute(pg_sql, (1,)).fetchall()

        def my_alone() -> object:
            with myc.cursor() as cur:
                cur.execute(pg_sql, (1,))
                return cur.fetchall()

        pg_be = app.databases.backend("pg", ("postgres",))
        my_be = app.databases.backend("my", ("mysql",))
        kv_be = app.databases.backend("cache", ("redis",))

        def in_host(run: Any, *args: Any) -> Any:
            return lambda: run(*args, time.monotonic() + 5)

        rows, cpu_rows = [], []
        for label, server, plugin, host, alone in (
                ("PostgreSQL (psycopg 3)", [pg_postmaster], lambda: call("db", "query", pg_in),
                 in_host(pg_be.run, "db", True, PG_SQL, [1]), pg_alone),
                ("MariaDB (PyMySQL)", [maria.proc.pid], lambda: call("db", "query", my_in),
                 in_host(my_be.run, "db", True, PG_SQL.replace("$1", "?"), [1]), my_alone),
                ("Redis GET (redis-py)", [red.proc.pid], lambda: call("kv", "command", kv_in),
                 in_host(kv_be.command, "kv", "GET", ["visits"]), lambda: rc.get("visits"))):
            p, h, a = measure_alternating([plugin, host, alone], iters // turns,
                                          repeats=7 * turns, warmup=iters // 10)
            rows.append([label, str(p), str(h), str(a), f"{p.ratio(a):.2f}x"])
            (pm, ps), (am, as_) = cpu_alternating([plugin, alone], server, iters // turns,
                                                  7 * turns)
            cpu_rows.append([label, str(pm), str(ps), str(am), str(as_),
                             f"{(pm.median + ps.median) / (am.median + as_.median):.2f}x"])
        # The reset a connection passes through when it goes from one plugin to another
        # (specs/abi.md §4.10, Sessions): two host-side "plugins" taking turns on a pool of
        # one, against one plugin making the same two statements.
        handover = []
        for label, be, sql in (
                ("PostgreSQL (ROLLBACK if open, DISCARD ALL)",
                 app.databases.backend("pg1", ("postgres",)), PG_SQL),
                ("MariaDB (COM_RESET_CONNECTION, SET, check)",
                 app.databases.backend("my1", ("mysql",)), PG_SQL.replace("$1", "?"))):
            def same(be: Any = be, sql: str = sql) -> None:
                be.run("a", True, sql, [1], time.monotonic() + 5)
                be.run("a", True, sql, [1], time.monotonic() + 5)

            def turns_of_two(be: Any = be, sql: str = sql) -> None:
                be.run("a", True, sql, [1], time.monotonic() + 5)
                be.run("b", True, sql, [1], time.monotonic() + 5)

            s, t = measure_alternating([same, turns_of_two], iters // turns // 2,
                                       repeats=7 * turns, warmup=iters // 20)
            handover.append([label, f"{s.median / 2:.1f}", f"{t.median / 2:.1f}",
                             f"{(t.median - s.median) / 2:.1f}"])
        per_thread = 100 if args.quick else 1000
        rate, failed = threaded(lambda: call("db", "query", pg_in), 8, per_thread)
        one, _ = threaded(lambda: call("db", "query", pg_in), 1, per_thread)
        print(f"# bench_connectors (median [min-max] µs per call over {7 * turns} turns of "
              f"{iters // turns} calls, the columns alternating; "
              f"{'spread over the CPUs' if args.spread else 'bench and servers on one CPU'})\n"
              f"# {machine()}")
        print(render(["one-row query", "from a plugin", "host connector", "driver alone",
                      "plugin / driver"], rows, args.markdown))
        print()
        print(render(["one-row query, CPU µs per call", "plugin: bench process",
                      "plugin: server", "driver: bench process", "driver: server",
                      "plugin / driver (sum)"], cpu_rows, args.markdown))
        print()
        print(render(["statement, µs median", "same plugin", "plugins taking turns",
                      "reset per hand-over"], handover, args.markdown))
        print()
        print(render(["threads calling the querying plugin", "calls/s", "failed calls"],
                     [["1", f"{one:.0f}", "0"],
                      [f"8 (pool of {app.databases.connectors['pg'].pool_size})",
                       f"{rate:.0f}", str(failed)]], args.markdown))
        print()
        print(render(["statement gate, µs per statement", "first seen (parsed)",
                      "seen before (its verdict kept)"], gate_costs(iters), args.markdown))
        pgc.close()
        myc.close()
    finally:
        if app is not None:
            app.stop()
        pg.stop()
        maria.stop()
        red.stop()


if __name__ == "__main__":
    main()

"""What a refused oversized result costs the host in memory: one cell of SIZE MiB (default 100)
selected through a connector whose ``max_result_bytes`` is 8 MiB, beside the driver alone
fetching the same row. Then what one row whose JSON fits costs: a cell of each of FITS MiB
(default 20 and 30) under a 32 MiB cap, answered or refused, as a multiple of the row and of
the cap (specs/abi.md §4.10, Memory: a result costs at most 1.25 x the cap, so a row that
would cost more while it is read, 2 copies of it on PostgreSQL and 3 on MariaDB, is refused
before it is read).

Run: ``.venv/bin/python bench/bench_connector_memory.py [--size MIB] [--fits MIB,MIB]
[--rows COUNTxKIB[+MIB],...] [--markdown]``

Each figure is the growth of the peak resident set (``ru_maxrss``) of a fresh child process
over the statement: the child connects, runs a small query (its baseline), then the one
statement, and reports how much its peak grew. A private PostgreSQL and MariaDB are started
here (as the tests start them); MariaDB's ``max_allowed_packet`` is raised so the server can
send the row at all. The bound stated in specs/abi.md §4.10 (*Memory*): 1.25 x the cap; a
refused row costs the socket's buffers (refused from its announced length, unread).

Then results of many rows (``--rows``: COUNTxKIB, and +MIB for a last row that large) under
the same 32 MiB cap: rows of a few hundred KiB, whose JSON fits, are answered within the
bound on both servers (PostgreSQL's rows come a chunk at a time, one row a chunk once they
are large).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _measure import machine, render

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.dbservers import PASSWORD as MARIA_PASSWORD  # noqa: E402
from tests.dbservers import MariaDB  # noqa: E402
from tests.pgcluster import Cluster  # noqa: E402

CHILD = r"""
import json, resource, sys, time
kind, url, password, size, how, cap, sql = sys.argv[1:8]
size, cap = int(size), int(cap)
q = "SELECT repeat('y', 10)" if kind == "postgres" else "SELECT REPEAT('y', 10)"
sql = sql or q.replace("10", str(size << 20))
def peak(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if how == "host":
    from omnicore.egress.db import db_connector
    from omnicore.egress.db.service import _make
    c = db_connector("big", {"kind": kind, "url": url, "secret": "pw",
                             "max_result_bytes": cap})
    be = _make(c, lambda name: password.encode())
    be.run("p", True, q, [], time.monotonic() + 30)
    base = peak()
    try:
        out = "answered" if len(be.run("p", True, sql, [],
                                        time.monotonic() + 60)) > size << 20 else "short"
    except Exception as exc:
        out = ("TOO_LARGE (its next row)" if "its next row" in str(exc) else
               str(exc)[:60])
else:
    if kind == "postgres":
        import psycopg
        conn = psycopg.connect(url.replace("@", f":{password}@"), autocommit=True)
        conn.execute("SELECT repeat('y', 10)").fetchall()
        base = peak()
        conn.execute(sql).fetchall()
    else:
        import pymysql
        from urllib.parse import urlparse
        u = urlparse(url)
        conn = pymysql.connect(host=u.hostname, port=u.port, user=u.username,
                               password=password, database=u.path.lstrip("/"))
        with conn.cursor() as cur:
            cur.execute("SELECT REPEAT('y', 10)"); cur.fetchall()
            base = peak()
            cur.execute(sql); cur.fetchall()
    out = "fetched"
print(json.dumps({"growth_mib": peak() - base, "outcome": out}))
"""


def child(kind: str, url: str, password: str, size: int, how: str,
          cap: int = 8 << 20, sql: str = "") -> dict[str, object]:
    """One child's peak growth and outcome: a cell of ``size`` MiB, or ``sql`` (whose JSON
    is over ``size`` MiB when answered whole)."""
    done = subprocess.run([sys.executable, "-c", CHILD, kind, url, password, str(size), how,
                           str(cap), sql],
                          capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT / "host"), "PATH": "/usr/bin:/bin"})
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def rows_sql(kind: str, spec: str) -> tuple[str, float]:
    """The statement of ``spec`` (COUNTxKIB, +MIB: then a last row of MIB) and its rows' size
    in MiB."""
    head, _, tail = spec.partition("+")
    count, kib = (int(n) for n in head.split("x"))
    last = int(tail or 0)
    n = count + (1 if last else 0)
    cell = f"CASE WHEN {{v}} <= {count} THEN {kib << 10} ELSE {last << 20} END" if last \
        else str(kib << 10)
    if kind == "postgres":
        sql = f"SELECT repeat('y', {cell.format(v='s')}) FROM generate_series(1, {n}) AS s"
    else:
        sql = f"SELECT REPEAT('y', {cell.format(v='seq')}) FROM seq_1_to_{n}"
    return sql, (count * kib / 1024) + last


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=100, help="the cell, MiB")
    ap.add_argument("--fits", default="20,30",
                    help="the cells whose JSON fits a 32 MiB cap, MiB (comma-separated)")
    ap.add_argument("--rows", default="60x500,28x1024,14x2048,130x100+12",
                    help="results of many rows under a 32 MiB cap: COUNTxKIB, +MIB a last row")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    sizes = [int(mib) for mib in args.fits.split(",")]
    pg, maria = Cluster.start(), MariaDB.start()
    try:
        pg_url = pg.database("mem").replace("omnicore:omnicore@", "omnicore@")
        my_url = maria.database("mem")
        maria.sql("SET GLOBAL max_allowed_packet = 1073741824")
        rows, fits, many = [], [], []
        for label, kind, url, password in (("PostgreSQL", "postgres", pg_url, "omnicore"),
                                           ("MariaDB", "mysql", my_url, MARIA_PASSWORD)):
            host = child(kind, url, password, args.size, "host")
            alone = child(kind, url, password, args.size, "driver")
            rows.append([label, f"{host['growth_mib']:.1f}", str(host["outcome"]),
                         f"{alone['growth_mib']:.1f}"])
            for mib in sizes:
                host = child(kind, url, password, mib, "host", 32 << 20)
                alone = child(kind, url, password, mib, "driver", 32 << 20)
                grew = float(host["growth_mib"])  # type: ignore[arg-type]
                fits.append([label, str(mib), f"{grew:.1f}", str(host["outcome"]),
                             f"{grew / mib:.2f}x", f"{grew / 32:.2f}x",
                             f"{alone['growth_mib']:.1f}"])
            for spec in filter(None, args.rows.split(",")):
                sql, json_mib = rows_sql(kind, spec)
                host = child(kind, url, password, int(json_mib), "host", 32 << 20, sql)
                alone = child(kind, url, password, int(json_mib), "driver", 32 << 20, sql)
                grew = float(host["growth_mib"])  # type: ignore[arg-type]
                many.append([label, spec, f"{json_mib:.1f}", f"{grew:.1f}",
                             str(host["outcome"]), f"{grew / 32:.2f}x",
                             f"{alone['growth_mib']:.1f}"])
        print(f"# bench_connector_memory: peak RSS growth (MiB) over one {args.size} MiB cell, "
              f"max_result_bytes 8 MiB\n# {machine()}")
        print(render(["server", "through the connector", "its answer", "driver alone"], rows,
                     args.markdown))
        print("\n# one cell whose JSON fits, max_result_bytes 32 MiB (the bound: 1.25 x the cap)")
        print(render(["server", "row MiB", "through the connector", "its answer", "x the row",
                      "x the cap", "driver alone"], fits, args.markdown))
        print("\n# results of many rows, max_result_bytes 32 MiB (COUNTxKIB, +MIB a last row)")
        print(render(["server", "rows", "JSON MiB", "through the connector", "its answer",
                      "x the cap", "driver alone"], many, args.markdown))
    finally:
        pg.stop()
        maria.stop()


if __name__ == "__main__":
    main()

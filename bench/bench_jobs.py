"""How fast a running host takes jobs over REST: ``POST /api/v1/jobs`` on one ``omnicore run``.

Run: ``.venv/bin/python bench/bench_jobs.py [--quick] [--markdown]``. A real ``omnicore run``
of an app with an empty plugins folder (embedded SQLite, console on a free port) in its own
process; this process drives it with keep-alive httpx clients (``--clients`` concurrent
requests over as many connections), each request one job for an hour from now (so the workers
stay idle: the enqueue door alone is timed: body checks, the insert, the audit entry, the
answer). Rows: the floor (``GET /healthz`` on the same host and clients: what any request
costs), then without a key, each with a fresh ``Idempotency-Key``, and batches of 100 jobs
(``{"jobs": [...]}``, one transaction and one audit entry each). Jobs/s, median with
min-max over the rounds. Target (issue 33): >= 1,000 jobs/s on one host.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from _measure import machine, render

ROOT = Path(__file__).resolve().parents[1]
BODY = {"plugin": "bench", "handler": "work", "payload": {"n": 1}, "delay_s": 3600}
BATCH = 100


def _start(app: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    env = {**os.environ, "OMNICORE_CONSOLE__PORT": "0"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "host"),
                                                      env.get("PYTHONPATH")]))
    server = subprocess.Popen([sys.executable, "-m", "omnicore.cli", "run", str(app)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    console = app / ".omnicore" / "console.json"
    deadline = time.monotonic() + 120
    while not console.is_file():
        if server.poll() is not None or time.monotonic() > deadline:
            sys.exit("omnicore run did not start")
        time.sleep(0.02)
    doc = json.loads(console.read_text())
    return server, str(doc["url"]), str(doc["token"])


async def _round(url: str, token: str, clients: int, jobs: int, keyed: bool,
                 batch: int = 0, floor: bool = False) -> float:
    """Jobs/s for ``jobs`` enqueues by ``clients`` concurrent senders."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60, headers={
            "Authorization": f"Bearer {token}"}) as client:
        left = jobs

        async def sender() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                if floor:
                    r = await client.get("/healthz")
                elif batch:
                    left -= batch - 1
                    r = await client.post("/api/v1/jobs", json={"jobs": [BODY] * batch})
                else:
                    headers = {"Idempotency-Key": uuid.uuid4().hex} if keyed else {}
                    r = await client.post("/api/v1/jobs", json=BODY, headers=headers)
                if r.status_code != (200 if floor else 201):
                    sys.exit(f"enqueue answered {r.status_code}: {r.text[:200]}")
        await client.get("/healthz")
        start = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(clients)))
        return jobs / (time.perf_counter() - start)


def table(quick: bool = False, markdown: bool = False, clients: int = 8) -> str:
    jobs, rounds = (300, 2) if quick else (3000, 5)
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        app = Path(tmp)
        (app / "plugins").mkdir()
        (app / "omnicore.yaml").write_text("name: bench\nplugins_dir: plugins\n")
        server, url, token = _start(app)
        try:
            asyncio.run(_round(url, token, clients, jobs // 10, False))  # warm up
            rows = []
            for label, keyed, batch, floor in (
                    ("GET /healthz (the console's floor), requests/s", False, 0, True),
                    ("POST /api/v1/jobs", False, 0, False),
                    ("POST /api/v1/jobs, Idempotency-Key", True, 0, False),
                    (f"POST /api/v1/jobs, batches of {BATCH}", False, BATCH, False)):
                rates = [asyncio.run(_round(url, token, clients, jobs * (10 if batch else 1),
                                            keyed, batch, floor)) for _ in range(rounds)]
                rows.append((label, f"{statistics.median(rates):.0f} "
                                    f"[{min(rates):.0f}-{max(rates):.0f}]",
                             "-" if floor else ">= 1000"))
        finally:
            server.terminate()
            server.wait(timeout=60)
    return (f"{machine()}; {clients} concurrent clients, {jobs} jobs a round\n\n"
            + render(["REST enqueue on one host (SQLite)", "jobs/s, median [min-max]",
                      "target"], rows, markdown=markdown))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short rounds (smoke run)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--clients", type=int, default=8, help="concurrent requests")
    args = ap.parse_args()
    print(table(quick=args.quick, markdown=args.markdown, clients=args.clients))


if __name__ == "__main__":
    main()

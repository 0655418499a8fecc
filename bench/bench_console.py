"""The console's speed, against a floor measured in the same run.

1. The invoke endpoint (POST /api/v1/plugins/greeter-rust/invoke, bearer token, the Rust
   greeter) vs a bare Starlette endpoint making the same plugin call (JSON body in, the same
   ``app.plugins.acall``, the same JSON answer) with no middleware, auth or checks, both
   served by Hypercorn on loopback and driven by the same kind of keep-alive httpx client,
   in alternating rounds: requests/s (median of the rounds) and the ratio.
2. The plugins page and the overview with 1,000 plugins: time per request.
3. Live-feed fan-out: 20 SSE clients, 200 entries pushed; time until every client has all.
4. 100 live pages (``/api/v1/live``) open and idle: the host process's CPU over 10 s, the
   clients in another process.
5. The charts' history of 1,000 plugins over 24 h: the bytes its rings hold.

    .venv/bin/python bench/bench_console.py [--invoke-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx
from _measure import machine, scratch
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from omnicore import OmniApp
from omnicore.console import ConsoleModule

ROOT = Path(__file__).resolve().parents[1]
GREETER = ROOT / "build" / "plugins" / "greeter-rust.wasm"


def bare_server(omni: OmniApp, plugin: str) -> tuple[str, threading.Event]:
    async def same_call(request: Request) -> JSONResponse:
        doc = json.loads(await request.body())
        start = time.perf_counter()
        out = await omni.plugins.acall(plugin, doc["handler"], doc["input"].encode())
        return JSONResponse({"output": out.decode(), "encoding": "text",
                             "duration_ms": round((time.perf_counter() - start) * 1000, 3)})

    app = Starlette(routes=[Route("/x", same_call, methods=["POST"])])
    stop = threading.Event()
    ready: list[str] = []
    up = threading.Event()

    def run() -> None:
        async def main() -> None:
            import socket

            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(128)
            ready.append(f"http://127.0.0.1:{sock.getsockname()[1]}")
            config = Config()
            config.bind = [f"fd://{sock.fileno()}"]
            config.accesslog = None
            config.keep_alive_max_requests = 1_000_000  # as the console sets it
            up.set()
            await serve(app, config,  # type: ignore[arg-type]
                        shutdown_trigger=lambda: asyncio.to_thread(stop.wait))

        asyncio.run(main())

    threading.Thread(target=run, daemon=True).start()
    up.wait()
    return ready[0], stop


DRIVER = """
import json, sys, time, httpx
url, token, n, body = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
with httpx.Client(headers={"Authorization": "Bearer " + token} if token else {}) as c:
    def post():
        try:
            return c.post(url, json=body)
        except httpx.RemoteProtocolError:
            # Hypercorn closes an idle-looking keep-alive connection now and then (seen
            # every ~800 requests on the bare server): a client reconnects, and so do we.
            return c.post(url, json=body)
    for _ in range(50):
        post()
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    for _ in range(n):
        r = post()
        assert r.status_code == 200, r.text
    print(n / (time.perf_counter() - start), flush=True)
"""


def driven(url: str, token: str, body: dict[str, str], n: int) -> tuple[float, float]:
    """``n`` keep-alive POSTs from a client in another process: (requests/s, this process's
    CPU µs per request), the second much less swayed by other work on the machine."""
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", DRIVER, url, token, str(n), json.dumps(body)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        cpu = time.process_time()
        child.stdin.write("\n")
        child.stdin.flush()
        per_s = float(child.stdout.readline())
        return per_s, (time.process_time() - cpu) / n * 1e6
    finally:
        child.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--invoke-only", action="store_true", help="only the invoke comparison")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if not GREETER.is_file():
        sys.exit(f"build the examples first: {GREETER} is missing "
                 "(.venv/bin/omnicore build plugins/ --out build/plugins)")
    tmp = scratch("omnicore-bench-console-")
    (tmp / "plugins").mkdir()
    app = OmniApp("bench", overrides={"data_dir": str(tmp / "data"),
                                      "plugins_dir": str(tmp / "plugins"),
                                      "console": {"port": 0}, "log": {"level": "warning"}})
    module = ConsoleModule()
    app.add_module(module)
    app.start()
    bare_url, bare_stop = bare_server(app, "greeter-rust")
    try:
        assert module.console is not None and module.url is not None
        token = module.console.auth.local_token
        app.plugins.load(GREETER.read_bytes(), grants=["config"])
        body = {"handler": "greet", "input": '{"name": "Ada"}'}
        headers = {"Authorization": f"Bearer {token}"}
        n = 1000
        bares, invokes, bare_cpu, invoke_cpu = [], [], [], []
        for _ in range(args.rounds):
            r, cpu = driven(f"{bare_url}/x", "", body, n)
            bares.append(r)
            bare_cpu.append(cpu)
            r, cpu = driven(f"{module.url}/api/v1/plugins/greeter-rust/invoke", token, body, n)
            invokes.append(r)
            invoke_cpu.append(cpu)
        bare, invoke = statistics.median(bares), statistics.median(invokes)
        with httpx.Client(base_url=module.url, headers=headers) as c:
            direct_start = time.perf_counter()
            for _ in range(n):
                app.plugins.call("greeter-rust", "greet", b'{"name": "Ada"}')
            direct = n / (time.perf_counter() - direct_start)
            if args.invoke_only:
                print(f"# {machine()}")
                print(f"bare Starlette endpoint, same call: {bare:.0f} r/s "
                      f"[{min(bares):.0f}-{max(bares):.0f}]")
                print(f"POST /api/v1/plugins/NAME/invoke:   {invoke:.0f} r/s "
                      f"[{min(invokes):.0f}-{max(invokes):.0f}]")
                rounds = ", ".join(f"{i / b_:.2f}" for i, b_ in zip(invokes, bares, strict=True))
                print(f"  invoke / bare:                    {invoke / bare:.2f}x "
                      f"(per round: {rounds})")
                print(f"  host CPU per request, bare/invoke: {statistics.median(bare_cpu):.0f} / "
                      f"{statistics.median(invoke_cpu):.0f} µs (ratio "
                      f"{statistics.median(bare_cpu) / statistics.median(invoke_cpu):.2f}x)")
                print(f"  app.plugins.call in-process:      {direct:.0f} r/s")
                return

            for i in range(999):
                app.plugins.load(GREETER.read_bytes(), name=f"greeter-{i:03d}")
            page_ms, overview_ms = (page_time(c, path) for path in ("/plugins", "/"))

        fanout_ms = sse_fanout(module, token, clients=20, entries=200)
        idle_cpu = live_idle(module, token, clients=100, seconds=10.0)
    finally:
        bare_stop.set()
        app.stop()

    print(f"{'':44} {'value':>14}")
    print(f"# {machine()}")
    print(f"{'bare Starlette endpoint, same plugin call':44} {bare:>10.0f} r/s")
    print(f"{'POST /api/v1/plugins/NAME/invoke (greeter)':44} {invoke:>10.0f} r/s")
    print(f"{'  invoke / bare endpoint':44} {invoke / bare:>12.2f} x")
    print(f"{'  host CPU per request, bare / invoke':44} "
          f"{statistics.median(bare_cpu):>5.0f} / {statistics.median(invoke_cpu):.0f} µs")
    print(f"{'  app.plugins.call, same plugin, in-process':44} {direct:>10.0f} r/s")
    print(f"{'GET /plugins with 1,000 plugins (median)':44} {page_ms:>11.1f} ms")
    print(f"{'GET / (overview) with 1,000 plugins (median)':44} {overview_ms:>11.1f} ms")
    print(f"{'SSE fan-out: 200 entries to 20 clients':44} {fanout_ms:>11.1f} ms")
    print(f"{'100 idle live pages: host CPU':44} {idle_cpu * 100:>10.2f} % of a core")
    print(f"{'charts: 1,000 plugins x 24 h, ring memory':44} "
          f"{series_bytes(1000) / 2**20:>10.2f} MiB")


CLIENTS = """
import asyncio, sys, httpx
async def one(url, token):
    async with httpx.AsyncClient(timeout=None, headers={"Authorization": "Bearer " + token}) as c:
        async with c.stream("GET", url + "/api/v1/live?scope=host") as r:
            async for _ in r.aiter_bytes():
                pass
async def main():
    await asyncio.gather(*(one(sys.argv[1], sys.argv[2]) for _ in range(int(sys.argv[3]))))
asyncio.run(main())
"""


def live_idle(module: ConsoleModule, token: str, *, clients: int, seconds: float) -> float:
    """The fraction of one core this process spends while ``clients`` live pages idle."""
    import subprocess

    assert module.console is not None and module.url is not None
    child = subprocess.Popen([sys.executable, "-c", CLIENTS, module.url, token, str(clients)])
    try:
        deadline = time.monotonic() + 60
        while module.console.pulse.streams < clients:
            assert time.monotonic() < deadline, "the live clients did not connect"
            time.sleep(0.05)
        time.sleep(2.0)  # past the first full frames
        cpu, wall = time.process_time(), time.monotonic()
        time.sleep(seconds)
        return (time.process_time() - cpu) / (time.monotonic() - wall)
    finally:
        child.kill()
        child.wait()


def series_bytes(plugins: int) -> int:
    """Fill the rings of ``plugins`` plugins for a day at the sampling period."""
    from omnicore.console.series import PLUGIN_COLUMNS, Series

    series = Series()
    start = time.time() - 86400
    for k in range(plugins):
        for t in range(0, 86400, 600):  # every 24 h step; finer steps reuse the same rings
            series._add(f"p{k}", start + t, (1.0, 0.001, 0.002, 0.0, 2.0**20, 1e6),
                        PLUGIN_COLUMNS)
    return series.nbytes()


def page_time(client: httpx.Client, path: str) -> float:
    """The median time of 30 GETs of ``path``, in ms."""
    times = []
    for _ in range(30):
        t = time.perf_counter()
        assert client.get(path).status_code == 200
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def sse_fanout(module: ConsoleModule, token: str, *, clients: int, entries: int) -> float:
    assert module.console is not None and module.url is not None
    feed = module.console.feed
    marker = f"bench-{time.time_ns()}"
    connected = threading.Barrier(clients + 1)
    done = threading.Barrier(clients + 1)

    def reader() -> None:
        seen = 0
        with httpx.Client(base_url=module.url, headers={"Authorization": f"Bearer {token}"},
                          timeout=60) as c, \
                c.stream("GET", "/api/v1/stream?kind=host") as r:
            connected.wait()
            for line in r.iter_lines():
                if marker in line:
                    seen += 1
                    if seen == entries:
                        break
        done.wait()

    threads = [threading.Thread(target=reader) for _ in range(clients)]
    for t in threads:
        t.start()
    connected.wait()
    while feed.subscribers < clients:
        time.sleep(0.001)
    start = time.perf_counter()
    for i in range(entries):
        feed.push(kind="host", level="info", message=f"{marker} {i}")
    done.wait()
    elapsed = (time.perf_counter() - start) * 1000
    for t in threads:
        t.join()
    return elapsed


if __name__ == "__main__":
    main()

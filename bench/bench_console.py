"""The console's speed, against a floor measured in the same run.

1. The invoke endpoint (POST /api/v1/plugins/greeter-rust/invoke, bearer token, the Rust
   greeter) vs a bare Starlette endpoint doing nothing, both served by Hypercorn on loopback
   and driven by the same keep-alive httpx client: requests/s and the overhead ratio.
2. The plugins page and the overview with 1,000 plugins: time per request.
3. Live-feed fan-out: 20 SSE clients, 200 entries pushed; time until every client has all.
4. 100 live pages (``/api/v1/live``) open and idle: the host process's CPU over 10 s, the
   clients in another process.
5. The charts' history of 1,000 plugins over 24 h: the bytes its rings hold.

    .venv/bin/python bench/bench_console.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
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


def bare_server() -> tuple[str, threading.Event]:
    async def nothing(_request: Request) -> JSONResponse:
        return JSONResponse({"output": "", "encoding": "text", "duration_ms": 0})

    app = Starlette(routes=[Route("/x", nothing, methods=["POST"])])
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


def rate(client: httpx.Client, url: str, body: dict[str, str], n: int) -> float:
    def post() -> httpx.Response:
        try:
            return client.post(url, json=body)
        except httpx.RemoteProtocolError:
            # Hypercorn closes an idle-looking keep-alive connection now and then (seen
            # every ~800 requests on the bare server): a client reconnects, and so do we.
            return client.post(url, json=body)

    for _ in range(50):
        post()
    start = time.perf_counter()
    for _ in range(n):
        r = post()
        assert r.status_code == 200, r.text
    return n / (time.perf_counter() - start)


def main() -> None:
    if not GREETER.is_file():
        sys.exit(f"build the examples first: {GREETER} is missing "
                 "(.venv/bin/omnicore build plugins/ --out build/plugins)")
    tmp = Path(tempfile.mkdtemp())
    (tmp / "plugins").mkdir()
    app = OmniApp("bench", overrides={"data_dir": str(tmp / "data"),
                                      "plugins_dir": str(tmp / "plugins"),
                                      "console": {"port": 0}, "log": {"level": "warning"}})
    module = ConsoleModule()
    app.add_module(module)
    app.start()
    bare_url, bare_stop = bare_server()
    try:
        assert module.console is not None and module.url is not None
        token = module.console.auth.local_token
        app.plugins.load(GREETER.read_bytes(), grants=["config"])
        body = {"handler": "greet", "input": '{"name": "Ada"}'}
        headers = {"Authorization": f"Bearer {token}"}
        n = 2000
        with httpx.Client(base_url=module.url, headers=headers) as c, httpx.Client() as b:
            bare = rate(b, f"{bare_url}/x", body, n)
            invoke = rate(c, "/api/v1/plugins/greeter-rust/invoke", body, n)
            direct_start = time.perf_counter()
            for _ in range(n):
                app.plugins.call("greeter-rust", "greet", b'{"name": "Ada"}')
            direct = n / (time.perf_counter() - direct_start)

            for i in range(999):
                app.plugins.load(GREETER.read_bytes(), name=f"greeter-{i:03d}")
            page_ms, overview_ms = (page_time(c, path) for path in ("/plugins", "/"))

        fanout_ms = sse_fanout(module, token, clients=20, entries=200)
        idle_cpu = live_idle(module, token, clients=100, seconds=10.0)
    finally:
        bare_stop.set()
        app.stop()

    print(f"{'':44} {'value':>14}")
    print(f"{'bare Starlette endpoint (Hypercorn, loopback)':44} {bare:>10.0f} r/s")
    print(f"{'POST /api/v1/plugins/NAME/invoke (greeter)':44} {invoke:>10.0f} r/s")
    print(f"{'  overhead vs bare endpoint':44} {bare / invoke:>12.2f} x")
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

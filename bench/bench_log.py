"""What one plugin log line costs the call, beside what Python logging costs per record.

``omnicore:log.write`` keeps the line in the plugin's ring (``sandbox/_logring.c``, or the
Python fallback ``sandbox/logring.py``); the forwarder thread (``sandbox/logforward.py``)
takes the ring's new lines in batches and hands them to Python logging after the call. Each
implementation is measured with its forwarder at work (a ``StreamHandler`` on ``/dev/null``
with a formatter, so no terminal is timed; the rings are large enough that the forwarder
passes on every line) beside its floor, the ring alone: the same writes while the forwarder
is held in a handler, so no forwarding competes. The "all work" rows time 100 writes and a
flush, so they include what the forwarder spends per record (the process's cost, off the
call path). The last row is what the call paid when it forwarded synchronously:
``Logger.log`` to the same handler with the same ``extra`` fields.
Medians of 7 runs with min-max, per line.

    .venv/bin/python bench/bench_log.py [--quick] [--markdown]
"""

from __future__ import annotations

import argparse
import logging
import os
import threading

from _measure import Sample, machine, measure, render

from omnicore.sandbox.pluginlog import NATIVE, PluginLog, PyPluginLog, flush

LINE = "a line of about forty bytes from a plugin"


class _Held(logging.Handler):
    """Holds the forwarder until released: the floor runs with no forwarding beside it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.go = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.entered.set()
        self.go.wait(600)


def _through(cls: type[PyPluginLog], name: str, iters: int) -> Sample:
    # The whole work per line, the forwarder's included: 100 writes and a flush per operation.
    plugin = cls(f"through-{name}", rate_lines=10**9, rate_bytes=10**12)

    def hundred() -> None:
        for _ in range(100):
            plugin.write(2, LINE)
        flush(120)

    batch = measure(hundred, max(iters // 100, 5))
    return Sample(batch.median / 100, batch.low / 100, batch.high / 100)


def _rows(cls: type[PyPluginLog], name: str, iters: int) -> tuple[Sample, Sample]:
    unlimited = {"rate_lines": 10**9, "rate_bytes": 10**12, "capacity": 8 * iters,
                 "max_bytes": 1 << 30}
    plugin = cls(f"bench-{name}", **unlimited)  # type: ignore[arg-type]
    line = measure(lambda: plugin.write(2, LINE), iters)
    flush(120)
    held = _Held()
    logging.getLogger(f"omnicore.plugin.held-{name}").addHandler(held)
    ring = cls(f"held-{name}", **unlimited)  # type: ignore[arg-type]
    ring.write(2, "hold the forwarder")
    held.entered.wait(60)
    floor = measure(lambda: ring.write(2, LINE), iters)
    held.go.set()
    flush(120)
    return line, floor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    iters = 2_000 if args.quick else 5_000
    sink = open(os.devnull, "w")  # for the whole run
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger("omnicore.plugin")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False

    rows = []
    impls = ([(PluginLog, "C ring (sandbox/_logring.c)")] if NATIVE else []) + [
        (PyPluginLog, "Python ring (sandbox/logring.py)")]
    first = None
    for cls, label in impls:
        name = "c" if cls is not PyPluginLog else "py"
        line, floor = _rows(cls, name, iters)
        first = first or line
        rows.append([f"log.write, {label} + forwarder", f"{line} µs", f"ring alone {floor} µs",
                     f"{line.ratio(floor):.2f}x"])
    for cls, _ in impls:
        name = "c" if cls is not PyPluginLog else "py"
        total = _through(cls, name, iters)
        rows.append([f"  all work to the handler, {'C' if name == 'c' else 'Python'} ring "
                     "(100 writes + flush)", f"{total} µs", "", ""])
    direct = logging.getLogger("omnicore.plugin.direct")
    extra = {"plugin": "direct", "plugin_level": "info"}
    sync = measure(lambda: direct.log(logging.INFO, "%s", LINE, extra=extra), iters)
    assert first is not None
    rows.append(["Logger.log to a StreamHandler (the call paid this before)", f"{sync} µs",
                 "", f"{sync.ratio(first):.1f}x the first row"])
    print(f"Measured on: {machine()}")
    print(render(["what", "per line", "floor", "ratio"], rows, markdown=args.markdown))


if __name__ == "__main__":
    main()

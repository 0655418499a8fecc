"""What one plugin log line costs the call, beside what Python logging costs per record.

``omnicore:log.write`` keeps the line in the plugin's ring and hands it to a forwarding
thread (``sandbox/pluginlog.py``); Python logging and its handlers format and write it after
the call. The floor is the ring alone (a lock, a token bucket and a deque); the peer row is
what the call paid when it forwarded synchronously: ``Logger.log`` to a ``StreamHandler``
(on ``/dev/null``, so no terminal is timed), with the same ``extra`` fields. Medians of 7
runs with min-max, per line.

    .venv/bin/python bench/bench_log.py [--quick] [--markdown]
"""

from __future__ import annotations

import argparse
import logging
import os

from _measure import machine, measure, render

from omnicore.sandbox.pluginlog import PluginLog, flush


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    iters = 2_000 if args.quick else 5_000  # under the forwarder's 10,000 waiting lines
    sink = open(os.devnull, "w")  # for the whole run
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger("omnicore.plugin")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False
    unlimited = {"rate_lines": 10**9, "rate_bytes": 10**12}

    plugin = PluginLog("bench", **unlimited)  # type: ignore[arg-type]
    ring = PluginLog("ring", min_level="info", **unlimited)  # type: ignore[arg-type]
    ring._forward = lambda *a: True  # type: ignore[method-assign,assignment]
    direct = logging.getLogger("omnicore.plugin.direct")
    extra = {"plugin": "direct", "plugin_level": "info"}

    def write() -> None:
        plugin.write(2, "a line of about forty bytes from a plugin")

    rows = []
    line = measure(write, iters)
    flush(60)
    floor = measure(lambda: ring.write(2, "a line of about forty bytes from a plugin"), iters)
    sync = measure(lambda: direct.log(logging.INFO, "%s",
                                      "a line of about forty bytes from a plugin", extra=extra),
                   iters)
    rows.append(["log.write: ring + hand-off to logging", f"{line} µs",
                 f"ring alone {floor} µs", f"{line.ratio(floor):.2f}x"])
    rows.append(["Logger.log to a StreamHandler (the call paid this before)", f"{sync} µs",
                 "", f"{sync.ratio(line):.1f}x the hand-off"])
    print(f"Measured on: {machine()}")
    print(render(["what", "per line", "floor", "ratio"], rows, markdown=args.markdown))


if __name__ == "__main__":
    main()

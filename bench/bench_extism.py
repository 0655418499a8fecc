"""Extism plugins through omnicore vs through the Extism Python SDK, in one run.

Run: ``.venv/bin/python bench/bench_extism.py [--quick]``. The plugin is the AssemblyScript PDK
plugin of the tests (tests/extism/plugins/pdk_plugin.ts, built from source with @extism/as-pdk):
``count_vowels`` (the PDK's example), ``echo`` as a PDK user writes it (input copied in, then
out, 8 bytes per kernel call) and ``echo_fast``, the fastest echo a peer could write (the
output is the input block itself), and ``http``: a GET through ``http_request`` to a loopback
server (tests/extism/extism_loopback.py), with the same GET from Python (urllib3) as the floor.
Prints µs per call, best of several repeats, and the speed-up. Target: >= 5x on 100 B, no
slower on 64 KiB.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import urllib3

import extism
from omnicore.extism import host_fn
from omnicore.plugins.host import PluginHost

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "extism"))
from extism_fixtures import pdk_plugin
from extism_loopback import loopback_server


def per_call(fn: Callable[[], object], n: int, repeats: int) -> float:
    """Best of ``repeats`` runs of ``n`` calls, in µs per call."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


@extism.host_fn(name="shout")
def sdk_shout(text: str) -> str:
    return text.upper()


@host_fn(name="shout")
def our_shout(text: str) -> str:
    return text.upper()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    wasm = pdk_plugin().read_bytes()
    sdk = extism.Plugin({"wasm": [{"data": wasm}], "allowed_hosts": ["127.0.0.1"]},
                        functions=[sdk_shout])
    text = b"The quick brown fox jumps over the lazy dog. " * 2
    cases = [
        ("count_vowels, 90 B", "count_vowels", text[:90], 20000),
        ("echo (PDK idiom), 100 B", "echo", b"x" * 100, 20000),
        ("echo_fast (input block), 100 B", "echo_fast", b"x" * 100, 20000),
        ("echo (PDK idiom), 64 KiB", "echo", b"x" * 65536, 500),
        ("echo_fast (input block), 64 KiB", "echo_fast", b"x" * 65536, 5000),
    ]
    with PluginHost() as host, loopback_server() as server:
        host.extism_functions.append(our_shout)
        # The manifest's allowed_hosts as the http grant they map to (specs/extism.md).
        host.load(wasm, name="pdk", grants={
            "config": {}, "http": {"allow_hosts": ["http://127.0.0.1:*"]}})
        cases.append(("http GET, loopback server", "http",
                      json.dumps({"url": f"{server.url}/hello"}).encode(), 1000))
        rows = []
        for label, handler, data, n in cases:
            n = max(n // scale, 10)
            assert host.call("pdk", handler, data) == bytes(sdk.call(handler, data))
            ours = per_call(lambda h=handler, d=data: host.call("pdk", h, d), n, 5)
            theirs = per_call(lambda h=handler, d=data: sdk.call(h, d), n, 5)
            rows.append((label, ours, theirs))
        pool = urllib3.HTTPConnectionPool("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
        floor = per_call(lambda: pool.request("GET", "/hello").data, max(1000 // scale, 10), 5)
    print(f"Extism plugin calls, µs per call (best of 5); omnicore vs extism "
          f"{metadata.version('extism')} (Python SDK, same wasm, same run)")
    print(f"{'case':34} {'omnicore':>10} {'extism SDK':>11} {'speed-up':>9}")
    for label, ours, theirs in rows:
        print(f"{label:34} {ours:10.1f} {theirs:11.1f} {theirs / ours:8.1f}x")
    print(f"{'  floor: the same GET from Python':34} {floor:10.1f}   (urllib3, no plugin)")


if __name__ == "__main__":
    main()

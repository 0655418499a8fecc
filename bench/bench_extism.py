"""Extism plugins through omnicore vs through the Extism Python SDK, in one run.

Run: ``.venv/bin/python bench/bench_extism.py [--quick]``. The plugin is the AssemblyScript PDK
plugin of the tests (tests/extism/plugins/pdk_plugin.ts, built from source with @extism/as-pdk):
``count_vowels`` (the PDK's example), ``echo`` as a PDK user writes it (input copied in, then
out, 8 bytes per kernel call) and ``echo_fast``, the fastest echo a peer could write (the
output is the input block itself), and ``http``: a GET through ``http_request`` to a loopback
server (tests/extism/extism_loopback.py), with the same GET from Python (urllib3) as the floor;
and ``alloc-heavy``: a WAT plugin (tests/extism/plugins/allocs.wat) keeping 100,000 kernel
blocks live in one call. Prints the median µs per call over the repeats with its min-max
(bench/_measure.py: both columns get the same iterations, repeats and warm-up) and the
speed-up of the medians. Targets (issue 21): >= 5x on the 100 B echo, >= 2x on the 64 KiB
echo, no case slower.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path

import extism
import urllib3

from omnicore.extism import host_fn
from omnicore.plugins.host import PluginHost

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import machine, measure

from tests.extism.extism_fixtures import pdk_plugin, wat_plugin
from tests.extism.extism_loopback import loopback_server


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
        allocs = wat_plugin("allocs")
        host.load(allocs, name="allocs")
        sdk_allocs = extism.Plugin(allocs, functions=[])
        rows = []
        for label, handler, data, n in cases:
            n = max(n // scale, 10)
            assert host.call("pdk", handler, data) == bytes(sdk.call(handler, data))
            ours = measure(lambda h=handler, d=data: host.call("pdk", h, d), n)
            theirs = measure(lambda h=handler, d=data: sdk.call(h, d), n)
            rows.append((label, ours, theirs))
        n = max(20 // scale, 3)
        assert host.call("allocs", "many", b"") == bytes(sdk_allocs.call("many", b""))
        rows.append(("alloc-heavy: 100,000 live blocks", measure(
            lambda: host.call("allocs", "many", b""), n, warmup=1), measure(
            lambda: sdk_allocs.call("many", b""), n, warmup=1)))
        pool = urllib3.HTTPConnectionPool("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
        floor = measure(lambda: pool.request("GET", "/hello").data, max(1000 // scale, 10))
    print(f"Extism plugin calls, µs per call: median [min-max] of 7 repeats; omnicore vs "
          f"extism {metadata.version('extism')} (Python SDK, same wasm, same run)")
    print(f"({machine()})")
    print(f"{'case':34} {'omnicore':>22} {'extism SDK':>22} {'speed-up':>9}")
    for label, ours, theirs in rows:
        print(f"{label:34} {ours!s:>22} {theirs!s:>22} {theirs.ratio(ours):8.1f}x")
    print(f"{'  floor: the same GET from Python':34} {floor!s:>22}   (urllib3, no plugin)")


if __name__ == "__main__":
    main()

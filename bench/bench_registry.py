"""Pull (and push) of a 10 MiB plugin from a local registry: omnicore beside ``oras`` alone.

Run: ``.venv/bin/python bench/bench_registry.py [--quick] [--markdown] [--mib N]``. A real
registry (Debian's docker-registry, as tests/registryserver.py starts it) on loopback; one
artifact of the Wasm layout with an N MiB module. Rows:

* pull to a file: ``omnicore.oci.pull`` (manifest and config digest-checked, module capped,
  hashed as it streams and checked against its digest and size) then the file written, beside
  ``oras`` (oras-py 0.2's ``OrasClient.pull`` into a folder) pulling the same artifact;
* push: ``omnicore.oci.push`` of a new module each round beside ``oras push`` of the same
  bytes (fresh digests both, so no blob is skipped).

The two alternate round by round; each cell is the median with min-max over the rounds.
Target (issue 44): omnicore within 1.5x of the registry client alone.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "host")]

from _measure import machine, scratch  # noqa: E402

from omnicore import oci  # noqa: E402
from tests.registryserver import Registry  # noqa: E402


def _module(mib: int, salt: int) -> bytes:
    import wasmtime

    from omnicore.sandbox import wasmbin

    wasm = bytes(wasmtime.wat2wasm('(module (memory (export "memory") 1))'))
    pad = os.urandom(16) + salt.to_bytes(8, "big") + bytes(mib * 1024 * 1024)
    return wasmbin.set_custom_section(wasm, "padding", pad)


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} [{min(values) * 1000:.1f}-" \
           f"{max(values) * 1000:.1f}]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="5 rounds instead of 15")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    ap.add_argument("--mib", type=int, default=10, help="module size in MiB")
    args = ap.parse_args()
    rounds = 5 if args.quick else 15
    import oras.client

    registry = Registry.start()
    work = scratch("omnicore-bench-registry-")
    try:
        module = _module(args.mib, 0)
        ref = registry.ref("bench/plugin:1")
        oci.push(module, ref, name="plugin")
        client = oras.client.OrasClient(hostname=registry.host, insecure=True)
        ours: list[float] = []
        theirs: list[float] = []
        for n in range(rounds + 1):
            out = work / f"ours-{n}.wasm"
            start = time.perf_counter()
            pulled = oci.pull(ref)
            out.write_bytes(pulled.module)
            ours_t = time.perf_counter() - start
            start = time.perf_counter()
            files = client.pull(target=f"{registry.host}/bench/plugin:1",
                                outdir=str(work / f"oras-{n}"))
            theirs_t = time.perf_counter() - start
            assert Path(files[0]).read_bytes() == module == out.read_bytes()
            if n:  # the first round warms both
                ours.append(ours_t)
                theirs.append(theirs_t)
        push_ours: list[float] = []
        push_theirs: list[float] = []
        here = os.getcwd()
        os.chdir(work)
        try:
            for n in range(rounds):
                mine = _module(args.mib, 2 * n + 1)
                start = time.perf_counter()
                oci.push(mine, registry.ref(f"bench/ours:{n}"), name="plugin")
                push_ours.append(time.perf_counter() - start)
                other = _module(args.mib, 2 * n + 2)
                Path("plugin.wasm").write_bytes(other)
                config = work / "config.json"
                config.write_text('{"architecture":"wasm","os":"wasip1"}')
                start = time.perf_counter()
                client.push(target=f"{registry.host}/bench/oras:{n}",
                            files=["plugin.wasm:application/wasm"],
                            manifest_config=f"{config}:application/vnd.wasm.config.v0+json",
                            disable_path_validation=True)
                push_theirs.append(time.perf_counter() - start)
        finally:
            os.chdir(here)
    finally:
        registry.stop()
    rows = [
        (f"pull {args.mib} MiB to a file", _cell(ours), _cell(theirs),
         statistics.median(ours) / statistics.median(theirs)),
        (f"push {args.mib} MiB", _cell(push_ours), _cell(push_theirs),
         statistics.median(push_ours) / statistics.median(push_theirs)),
    ]
    print(f"# bench_registry: {machine()}; {rounds} rounds, ms median [min-max]")
    if args.markdown:
        print("| operation | omnicore | oras alone | ratio |\n|---|---|---|---|")
        for name, a, b, r in rows:
            print(f"| {name} | {a} | {b} | {r:.2f}x |")
    else:
        for name, a, b, r in rows:
            print(f"{name:24} omnicore {a:>26}   oras alone {b:>26}   {r:.2f}x")


if __name__ == "__main__":
    main()

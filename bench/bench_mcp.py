"""An MCP tool call against a direct ``app.plugins.call_json``, measured in the same run.

The Rust greeter's ``greet`` exposed as the tool ``greeter-rust.greet``, called with
``{"name": "Ada"}``:

1. ``app.plugins.call_json`` in-process (the floor: what the tool call runs);
2. ``tools/call`` over stdio: the MCP SDK's client and ``omnicore mcp --app DIR`` as a
   subprocess (JSON-RPC over pipes);
3. ``tools/call`` over streamable HTTP: the SDK's client and ``/mcp`` on a running host's
   console (Hypercorn, loopback, Bearer token, SSE responses);
4. the REST invoke of the same handler on the same console (``POST
   /api/v1/plugins/greeter-rust/invoke``, the same token, one httpx client): what an HTTP tool
   call is held to (issue 32: at most 1.3x at the median);
5. ``tools/list`` of 1,000 exposed tools (one plugin, 1,000 handlers with schemas) over
   ``/mcp``, as JSON-RPC from httpx (issue 32: within 20 ms; the SDK's client then spends
   more than that validating what it received);
6. ``omnicore mcp``'s start, as an agent spawning it sees it: milliseconds from the spawn to
   the ``initialize`` answer and to the first ``tools/list`` answer, each plugin compiled
   (a module cache emptied before each round: an operator who never ran ``omnicore
   precompile``) and precompiled, beside the same with no plugin at all (the floor: the
   interpreter and the imports). The handshake is answered while the plugins compile; the
   list waits for them.

The MCP columns add the protocol, the transport and the SDKs of both sides to the floor; the
"added" column is the median minus the floor's. Targets (issue 24): +0.5 ms over stdio and
+1 ms over HTTP. Over stdio two more rows: the same call from a client that writes a prepared
line and reads the answer (no SDK on the client's side), and for both clients the server
process's CPU per call (/proc, every thread of ``omnicore mcp``), which is the server's own
share whatever the client costs (issue 63 item 2: <= 0.5 ms over the call).

    .venv/bin/python bench/bench_mcp.py [--quick] [--markdown]
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml
from _measure import SMOKE, Sample, machine, measure, render, scratch

from omnicore import OmniApp
from omnicore.console import ConsoleModule

ROOT = Path(__file__).resolve().parents[1]
GREETER = ROOT / "build" / "plugins" / "greeter-rust.wasm"
ARGS = {"name": "Ada"}


async def ameasure(fn: Callable[[], Awaitable[object]], iters: int,
                   repeats: int = 7, cpu: Callable[[], float] | None = None) -> Sample:
    """:func:`_measure.measure` for a coroutine function: the same warm-up and repeats.
    With ``cpu`` (a process's CPU seconds so far), :data:`SERVER_CPU` gets that process's
    CPU per call over the same repeats."""
    for _ in range(iters // 10):
        await fn()
    times, cpus = [], []
    for _ in range(repeats):
        used = cpu() if cpu is not None else 0.0
        start = time.perf_counter()
        for _ in range(iters):
            await fn()
        times.append((time.perf_counter() - start) / iters * 1e6)
        if cpu is not None:
            cpus.append((cpu() - used) / iters * 1e6)
    if cpus:
        SERVER_CPU.append(Sample(statistics.median(cpus), min(cpus), max(cpus)))
    return Sample(statistics.median(times), min(times), max(times))


#: The server process's CPU per call of the last stdio measurements (:func:`ameasure`).
SERVER_CPU: list[Sample] = []


def process_cpu(pid: int) -> Callable[[], float]:
    """Process ``pid``'s CPU seconds so far, summed over its threads (the plugin's workers
    too), from each thread's /proc schedstat (nanoseconds; /proc's stat counts 10 ms ticks,
    too coarse for a call). A thread that ended meanwhile drops out of the sum: the server's
    threads live as long as it does."""
    def used() -> float:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except OSError:
                continue
        return total / 1e9

    return used


def mcp_child() -> int:
    """The pid of this process's ``omnicore mcp`` child (the SDK's client spawned it)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if ppid == os.getpid() and b"mcp" in argv and b"omnicore.cli" in argv:
            return int(entry)
    raise RuntimeError("no omnicore mcp child process")


def make_app(root: Path) -> Path:
    (root / "plugins").mkdir(parents=True)
    shutil.copy(GREETER, root / "plugins" / "greeter-rust.wasm")
    (root / "plugins" / "greeter-rust.yaml").write_text("grants: [config]\n")
    (root / "omnicore.yaml").write_text(yaml.safe_dump({
        "name": "bench-mcp", "data_dir": "data", "plugins_dir": "plugins",
        "log": {"level": "warning"}, "console": {"port": 0},
        "mcp": {"expose": ["greeter-rust/greet"]}}))
    return root


async def over_stdio(appdir: Path, iters: int) -> Sample:
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "omnicore.cli", "mcp", "--app", str(appdir)],
        env={k: v for k, v in os.environ.items() if k.startswith(("PYTHON", "PATH", "HOME"))})
    async with stdio_client(params) as (read, write), ClientSession(read, write) as s:
        await s.initialize()
        return await ameasure(_caller(s), iters, cpu=process_cpu(mcp_child()))


async def over_stdio_raw(appdir: Path, iters: int) -> Sample:
    """``tools/call`` over stdio from a client that writes one prepared line and reads one:
    the SDK client's own work (validating, its tasks and streams) left out."""
    from mcp_types.version import LATEST_HANDSHAKE_VERSION as version

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "omnicore.cli", "mcp", "--app", str(appdir),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k.startswith(("PYTHON", "PATH", "HOME"))})
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    def send(message: dict[str, object]) -> None:
        stdin.write(json.dumps(message).encode() + b"\n")

    try:
        send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "bench", "version": "0"}}})
        await stdout.readline()
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "greeter-rust.greet", "arguments": ARGS}}).encode() + b"\n"

        async def call() -> object:
            stdin.write(line)
            answer = await stdout.readline()
            assert b'"isError":false' in answer, answer
            return answer

        return await ameasure(call, iters, cpu=process_cpu(proc.pid))
    finally:
        stdin.close()
        await proc.wait()


async def over_http(url: str, token: str, iters: int) -> Sample:
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client, \
            streamable_http_client(f"{url}/mcp", http_client=client) as (read, write), \
            ClientSession(read, write) as s:
        await s.initialize()
        return await ameasure(_caller(s), iters)


async def over_rest(url: str, token: str, iters: int) -> Sample:
    import httpx

    body = {"handler": "greet", "input": json.dumps(ARGS)}
    async with httpx.AsyncClient(base_url=url,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        async def call() -> object:
            r = await client.post("/api/v1/plugins/greeter-rust/invoke", json=body)
            assert r.status_code == 200, r.text
            return r

        return await ameasure(call, iters)


def start(appdir: Path, cold: bool, rounds: int) -> tuple[Sample, Sample]:
    """Milliseconds from spawning ``omnicore mcp --app appdir`` to its ``initialize`` answer
    and to its first ``tools/list`` answer; ``cold``: its module cache emptied first."""
    from mcp_types.version import LATEST_HANDSHAKE_VERSION as version

    hello, listed = [], []
    for _ in range(1 if SMOKE else rounds):
        if cold:
            shutil.rmtree(appdir / "data" / "cache", ignore_errors=True)
        began = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "omnicore.cli", "mcp", "--app", str(appdir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={k: v for k, v in os.environ.items()
                 if k.startswith(("PYTHON", "PATH", "HOME"))})
        assert proc.stdin is not None and proc.stdout is not None
        try:
            for message in (
                    {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                        "protocolVersion": version, "capabilities": {},
                        "clientInfo": {"name": "bench", "version": "0"}}},
                    {"jsonrpc": "2.0", "method": "notifications/initialized"},
                    {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}):
                proc.stdin.write(json.dumps(message).encode() + b"\n")
            proc.stdin.flush()
            assert b'"id":0' in proc.stdout.readline()
            hello.append((time.perf_counter() - began) * 1e3)
            answer = proc.stdout.readline()
            assert b'"tools"' in answer, answer
            listed.append((time.perf_counter() - began) * 1e3)
        finally:
            proc.stdin.close()
            proc.wait()
    return _ms(hello), _ms(listed)


def _ms(values: list[float]) -> Sample:
    return Sample(statistics.median(values), min(values), max(values))


def start_app(root: Path, plugins: list[Path]) -> Path:
    """An app folder with ``plugins`` (every handler exposed)."""
    (root / "plugins").mkdir(parents=True)
    for wasm in plugins:
        shutil.copy(wasm, root / "plugins" / wasm.name)
    (root / "omnicore.yaml").write_text(yaml.safe_dump({
        "name": "bench-mcp-start", "data_dir": "data", "plugins_dir": "plugins",
        "log": {"level": "error"}, "mcp": {"expose": ["*/*"] if plugins else []}}))
    return root


def many_tools(n: int = 1000) -> bytes:
    """A plugin with ``n`` handlers (one function exported ``n`` times), each declared with a
    description and an input schema."""
    import wasmtime

    manifest = {"abi": 1, "name": "many", "version": "1.0.0", "description": "many tools",
                "handlers": [{"name": f"h{i:04d}", "description": f"Handler number {i}",
                              "input_schema": {"type": "object",
                                               "properties": {"text": {"type": "string"}},
                                               "required": ["text"]}} for i in range(n)]}
    escaped = json.dumps(manifest).replace("\\", "\\\\").replace('"', '\\"')
    exports = "\n".join(f'(export "h{i:04d}" (func $echo))' for i in range(n))
    return wasmtime.wat2wasm(f"""(module
      (memory (export "memory") 1)
      (global $heap (mut i32) (i32.const 1024))
      (func (export "omni_alloc") (param $n i32) (result i32) (local $p i32)
        (local.set $p (global.get $heap))
        (global.set $heap (i32.add (global.get $heap) (local.get $n)))
        (if (i32.gt_u (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
          (then (drop (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16))
                                            (i32.const 1))))))
        (local.get $p))
      (func (export "omni_free") (param i32 i32))
      (func $echo (param $p i32) (param $n i32) (result i64)
        (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
                (i64.extend_i32_u (local.get $n))))
      {exports}
      (@custom "omnicore.manifest" "{escaped}"))""")


def list_many(root: Path, iters: int) -> Sample:
    """``tools/list`` of 1,000 tools over /mcp, raw JSON-RPC from httpx."""
    import httpx
    from mcp_types.version import LATEST_HANDSHAKE_VERSION as version

    (root / "plugins").mkdir(parents=True)
    (root / "plugins" / "many.wasm").write_bytes(many_tools())
    (root / "omnicore.yaml").write_text(yaml.safe_dump({
        "name": "bench-mcp-list", "data_dir": "data", "plugins_dir": "plugins",
        "log": {"level": "warning"}, "console": {"port": 0}, "mcp": {"expose": ["many/*"]}}))
    app = OmniApp(config_path=root / "omnicore.yaml")
    module = ConsoleModule()
    app.add_module(module)
    app.start()
    try:
        assert module.console is not None and module.url is not None
        headers = {"Accept": "application/json, text/event-stream",
                   "Authorization": f"Bearer {module.console.auth.local_token}"}
        with httpx.Client(base_url=module.url, headers=headers, timeout=60) as c:
            r = c.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": version, "capabilities": {},
                "clientInfo": {"name": "bench", "version": "0"}}})
            c.headers.update({"mcp-session-id": r.headers["mcp-session-id"],
                              "mcp-protocol-version": version})
            c.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"})

            def listed() -> object:
                r = c.post("/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
                assert len(r.json()["result"]["tools"]) == 1000
                return r

            return measure(listed, iters)
    finally:
        app.stop()


def _caller(session: object) -> Callable[[], Awaitable[object]]:
    async def call() -> object:
        result = await session.call_tool("greeter-rust.greet", ARGS)  # type: ignore[attr-defined]
        assert not result.is_error, result
        return result

    return call


def main() -> None:
    quick = "--quick" in sys.argv
    if not GREETER.is_file():
        sys.exit(f"build the examples first: {GREETER} is missing "
                 "(.venv/bin/omnicore build plugins/ --out build/plugins)")
    appdir = make_app(scratch("omnicore-bench-mcp-") / "app")
    iters = 50 if quick else 500
    app = OmniApp(config_path=appdir / "omnicore.yaml")
    module = ConsoleModule()
    app.add_module(module)
    app.start()
    try:
        assert module.console is not None and module.url is not None
        assert app.plugins.call_json("greeter-rust", "greet", ARGS) == {"message": "Hello, Ada!"}
        direct = measure(lambda: app.plugins.call_json("greeter-rust", "greet", ARGS),
                         iters * 10)
        stdio = asyncio.run(over_stdio(appdir, iters))
        raw = asyncio.run(over_stdio_raw(appdir, iters))
        sdk_cpu, raw_cpu = SERVER_CPU
        http = asyncio.run(over_http(module.url, module.console.auth.local_token, iters))
        rest = asyncio.run(over_rest(module.url, module.console.auth.local_token, iters))
    finally:
        app.stop()
    listing = list_many(appdir.parent / "many", max(iters // 10, 5))
    # The start: the greeter alone with --quick, else every plugin the examples built.
    built = [GREETER] if quick else sorted(GREETER.parent.glob("*.wasm"))
    rounds = 3 if quick else 5
    bare = start(start_app(appdir.parent / "start-none", []), False, rounds)
    folder = start_app(appdir.parent / "start", built)
    cold = start(folder, True, rounds)
    # Warm: every plugin's Cranelift code in the cache, as `omnicore precompile` leaves it (a
    # start that ends before its tier-up leaves Winch's code, which the next one loads and
    # then tiers up: a warm start in between).
    subprocess.run([sys.executable, "-m", "omnicore.cli", "precompile", str(folder)],
                   check=True, capture_output=True)
    warm = start(folder, False, rounds)
    rows = [
        ["app.plugins.call_json (in-process floor)", str(direct), "-"],
        ["tools/call over stdio (omnicore mcp; the SDK's client)", str(stdio),
         f"{stdio.median - direct.median:.0f}"],
        ["  its server's CPU per call (omnicore mcp process, all threads)", str(sdk_cpu),
         f"{sdk_cpu.median - direct.median:.0f}"],
        ["tools/call over stdio (a client writing one line, reading one)", str(raw),
         f"{raw.median - direct.median:.0f}"],
        ["  its server's CPU per call (omnicore mcp process, all threads)", str(raw_cpu),
         f"{raw_cpu.median - direct.median:.0f}"],
        ["tools/call over HTTP (/mcp, Bearer)", str(http), f"{http.median - direct.median:.0f}"],
        ["REST invoke over HTTP (same handler, Bearer)", str(rest),
         f"{rest.median - direct.median:.0f}"],
        ["tools/list of 1,000 tools over HTTP (/mcp, httpx)", str(listing), "-"],
    ]
    plugins = f"{len(built)} plugin" + ("s" if len(built) != 1 else "")
    starts = [
        ["no plugin (the floor)", str(bare[0]), str(bare[1])],
        [f"{plugins}, every one compiled (cache emptied)", str(cold[0]), str(cold[1])],
        [f"{plugins}, precompiled (omnicore precompile)", str(warm[0]), str(warm[1])],
    ]
    print(f"MCP tool call, Rust greeter, {iters} calls x 7 repeats; {machine()}")
    print(render(["path", "µs per call: median [min-max]", "added µs"], rows,
                 markdown="--markdown" in sys.argv))
    print(f"tools/call over HTTP / REST invoke at the median: {http.median / rest.median:.2f}x")
    print("Over stdio the client shares the machine's cores with the server: the wall rows "
          "include the client's work; the CPU rows are the server process's alone (its CPU "
          "per call minus the floor's time is the server's own share over the call).")
    print(f"\nomnicore mcp's start, ms from the spawn, {1 if SMOKE else rounds} rounds:")
    print(render(["plugins folder", "initialize answered", "first tools/list answered"],
                 starts, markdown="--markdown" in sys.argv))


if __name__ == "__main__":
    main()

"""Hostile plugins: modules that load normally and then attack the host from inside a handler,
a host function, WASI, the manifest or the allocator (specs/security.md). Each attack is
followed by a healthy call: the host keeps serving.
"""

from __future__ import annotations

import json
import logging
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
import wasmtime

from omnicore.errors import (
    DeadlineExceeded,
    InvalidModule,
    PluginLoadError,
    Trap,
)
from omnicore.sandbox import Limits, PluginModule, PluginRuntime, SandboxEngine, wasmbin
from omnicore.sandbox.pluginlog import flush
from tests.sandbox_fixtures import DEADLINE_ALLOWANCE_S, assert_deadlines_kept
from tests.waiting import fastest

Make = Callable[..., PluginRuntime]

ALLOCATOR = """
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (func $alloc (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p)
                               (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  (func (export "ok") (param i32 i32) (result i64) (i64.const 0))
"""


def module(body: str, imports: str = "", memory: str | None = None) -> bytes:
    alloc = ALLOCATOR if memory is None else ALLOCATOR.replace(
        '(memory (export "memory") 2)', memory)
    return wasmtime.wat2wasm(f"(module {imports} {alloc} {body})")


def healthy(rt: PluginRuntime) -> None:
    assert rt.call("ok", b"") == b""


# ---- tables --------------------------------------------------------------------------

def test_table_grow_is_refused_past_the_element_limit(make: Make) -> None:
    wasm = module("""
      (table $t 10 funcref)
      (func (export "grow") (param i32 i32) (result i64)
        (i32.store (i32.const 64) (table.grow $t (ref.null func) (i32.const 10000000)))
        (i64.const 0x0000004000000004))""")
    rt = make(wasm, limits=Limits(max_memory_bytes=16 << 20))
    # table.grow answers -1 (refused) instead of growing the host by tens of MiB.
    assert int.from_bytes(rt.call("grow", b""), "little", signed=True) == -1
    healthy(rt)


def test_declared_tables_over_the_limits_fail_at_load(make: Make) -> None:
    big = module("(table 20000000 funcref)")
    with pytest.raises(PluginLoadError, match=r"max_table_elements"):
        make(big)
    many = module(" ".join(f"(table {i} funcref)" for i in range(1, 7)))
    with pytest.raises(PluginLoadError, match=r"max_tables"):
        make(many, limits=Limits(max_tables=4))
    # Within the limits it loads and serves.
    healthy(make(module("(table 5000 funcref)")))


# ---- deadlines inside host calls -----------------------------------------------------

LOG_LOOP = module("""
  (data (i32.const 16) "spam")
  (func (export "spin_log") (param i32 i32) (result i64)
    (loop $l (call $write (i32.const 0) (i32.const 16) (i32.const 4)) (br $l))
    (i64.const 0))
  (func (export "spin_config") (param i32 i32) (result i64)
    (loop $l (drop (call $get (i32.const 16) (i32.const 4) (i32.const 32) (i32.const 8)))
             (br $l))
    (i64.const 0))""", imports="""
  (import "omnicore:log" "write" (func $write (param i32 i32 i32)))
  (import "omnicore:config" "get" (func $get (param i32 i32 i32 i32) (result i32)))""")

@pytest.mark.parametrize("handler", ["spin_log", "spin_config"])
def test_a_guest_looping_on_host_calls_ends_within_its_deadline_under_cpu_load(
        make: Make, handler: str, cpu_contention: None) -> None:
    rt = make(LOG_LOOP, grants=["config"], config={"spam": "x"},
              limits=Limits(timeout_ms=300))
    overshoots = []
    for _ in range(3):
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="deadline of 300 ms"):
            rt.call(handler, b"")
        overshoots.append(time.monotonic() - start - 0.3)
    assert_deadlines_kept(overshoots)
    healthy(rt)


def test_the_deadline_holds_in_host_calls_even_with_a_starved_epoch_ticker(
        registry: Any) -> None:
    # A ticker that never ticks within the test stands for one starved of the GIL: a guest
    # looping on host calls must still end at its deadline, by the host-call path's check.
    with SandboxEngine(epoch_tick_ms=60_000) as frozen:
        mod = PluginModule.load(frozen, LOG_LOOP, "frozen")
        with PluginRuntime(frozen, mod, registry, ["config"], config={"spam": "x"},
                           limits=Limits(timeout_ms=200)) as rt:
            for handler in ("spin_log", "spin_config"):
                def spin(handler: str = handler) -> None:
                    with pytest.raises(DeadlineExceeded, match="deadline of 200 ms"):
                        rt.call(handler, b"")

                # The frozen ticker would end it after 60 s: ending within a second is the
                # host-call path's check (its precision is held by the tests above).
                assert fastest(spin) < 0.2 + DEADLINE_ALLOWANCE_S + 1.0
            healthy(rt)


def test_many_threads_looping_on_host_calls_all_end_within_their_deadline(
        make: Make) -> None:
    # Six guests hammering host calls keep the GIL busy, so the Python epoch ticker gets it
    # only now and then; the deadline must hold anyway (it is checked in the host-call path).
    import threading

    rt = make(LOG_LOOP, grants=["config"], limits=Limits(timeout_ms=300, pool_size=6))
    overshoots: list[float] = []
    errors: list[BaseException] = []

    def one() -> None:
        start = time.monotonic()
        try:
            rt.call("spin_log", b"")
        except DeadlineExceeded:
            overshoots.append(time.monotonic() - start - 0.3)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and len(overshoots) == 6
    assert_deadlines_kept(overshoots)
    healthy(rt)


def test_host_work_past_the_deadline_fails_the_call(engine: SandboxEngine) -> None:
    # A capability whose host function is slow (as a network call can be): the call fails
    # with DeadlineExceeded even though the guest itself never ran long.
    from omnicore.capabilities.builtin import builtin_capabilities
    from omnicore.sandbox import Capability, CapabilityRegistry, HostFunction

    def slow(_state: object, _mem: object) -> int:
        time.sleep(0.25)
        return 0

    registry = CapabilityRegistry([*builtin_capabilities(),
                                   Capability("slow", (HostFunction("wait", (), ("i32",), slow),))])
    wasm = module("""(func (export "wait") (param i32 i32) (result i64)
                       (drop (call $wait)) (i64.const 0))""",
                  imports='(import "omnicore:slow" "wait" (func $wait (result i32)))')
    mod = PluginModule.load(engine, wasm, "slow")
    with PluginRuntime(engine, mod, registry, ["slow"], limits=Limits(timeout_ms=100)) as rt:
        with pytest.raises(DeadlineExceeded):
            rt.call("wait", b"")
        healthy(rt)


# ---- what a guest can make the host hold -----------------------------------------------

def test_a_huge_config_key_costs_the_host_nothing(make: Make) -> None:
    # A 32 MiB key of dots: absent, answered without copying or splitting it.
    wasm = module("""
      (func (export "get") (param $p i32) (param $n i32) (result i64)
        (i32.store (i32.const 64) (call $get (local.get $p) (local.get $n)
                                              (i32.const 128) (i32.const 8)))
        (i64.const 0x0000004000000004))""",
                  imports='(import "omnicore:config" "get" '
                          '(func $get (param i32 i32 i32 i32) (result i32)))',
                  memory='(memory (export "memory") 1000)')
    rt = make(wasm, grants=["config"], config={"a": {"b": 1}},
              limits=Limits(max_memory_bytes=128 << 20, max_input_bytes=64 << 20))
    key = b"." * (32 << 20)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        start = time.monotonic()
        out = rt.call("get", key)
        elapsed = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert int.from_bytes(out, "little", signed=True) == -1  # NOT_FOUND
    # The input itself is copied once into guest memory by the call; nothing more.
    assert peak < (32 << 20) + (1 << 20), peak
    assert elapsed < 5.0  # no quadratic scan of the 32 MiB key
    healthy(rt)


def test_distinct_absent_config_keys_are_not_cached(make: Make) -> None:
    wasm = module("""
      (func (export "get") (param $p i32) (param $n i32) (result i64)
        (drop (call $get (local.get $p) (local.get $n) (i32.const 128) (i32.const 8)))
        (i64.const 0))""",
                  imports='(import "omnicore:config" "get" '
                          '(func $get (param i32 i32 i32 i32) (result i32)))')
    config = {"k" * 40: "v" * 4000}  # room for long keys under the length bound
    rt = make(wasm, grants=["config"], config=config)
    for i in range(200):  # warm up the instance and the code paths
        rt.call("get", f"absent-{i}".encode())
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(5000):
            rt.call("get", f"absent-{i:05d}-{'x' * 3000}".encode())
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 256 * 1024, f"{grown} bytes kept for absent keys"
    healthy(rt)


WIDE_LOG = module("""
  (func (export "log_input") (param $p i32) (param $n i32) (result i64)
    (call $write (i32.const 2) (local.get $p) (local.get $n))
    (i64.const 0))
  (func (export "log_loop") (param $p i32) (param $n i32) (result i64)
    (loop $l (call $write (i32.const 2) (local.get $p) (local.get $n)) (br $l))
    (i64.const 0))""", imports='(import "omnicore:log" "write" (func $write (param i32 i32 i32)))')


def test_the_log_ring_is_bounded_in_host_bytes(make: Make) -> None:
    rt = make(WIDE_LOG, limits=Limits(max_log_bytes_per_s=1 << 30))
    line = ("\U0001F600" * 16000).encode()  # 64 KiB of 4-byte characters
    for _ in range(300):
        rt.call("log_input", line)
    assert rt.log.buffered_bytes <= rt.log.max_bytes
    assert len(rt.log.lines()) < 300
    healthy(rt)


def test_log_volume_forwarded_to_the_host_is_rate_limited(
        make: Make, caplog: pytest.LogCaptureFixture) -> None:
    rt = make(WIDE_LOG, limits=Limits(timeout_ms=300, max_log_bytes_per_s=256 * 1024))
    caplog.set_level(logging.INFO, logger="omnicore.plugin")
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        rt.call("log_loop", b"x" * 60000)
    elapsed = time.monotonic() - start
    assert flush()  # what reached Python logging, off the call path
    forwarded = sum(len(r.getMessage()) for r in caplog.records
                    if r.name.startswith("omnicore.plugin"))
    # One burst plus what the rate refills while the call ran.
    assert forwarded <= 256 * 1024 * (1 + elapsed) + 65536, forwarded
    assert rt.log.dropped > 0
    healthy(rt)
    rt.log.write("info", "after")  # the next line admitted reports the drop
    notes = [ln for ln in rt.log.lines() if "dropped" in ln.message]
    assert 1 <= len(notes) <= 2  # reported, but at most once a second, not after every line


WASI_FLOOD = module("""
  (func (export "flood") (param $p i32) (param $n i32) (result i64)
    (i32.store (i32.const 64) (local.get $p))
    (i32.store (i32.const 68) (local.get $n))
    (drop (call $fd_write (i32.const 1) (i32.const 64) (i32.const 1) (i32.const 72)))
    (i64.const 0))""", imports='(import "wasi_snapshot_preview1" "fd_write" '
                                '(func $fd_write (param i32 i32 i32 i32) (result i32)))',
                    memory='(memory (export "memory") 64)')


def test_one_huge_wasi_write_is_cheap_and_bounded(make: Make, cpu_contention: None) -> None:
    rt = make(WASI_FLOOD, limits=Limits(timeout_ms=5000, max_input_bytes=8 << 20))
    start = time.monotonic()
    rt.call("flood", b"\n" * 2_000_000)
    elapsed = time.monotonic() - start
    kept = len(rt.log.lines())  # reading the log takes in what the pipe still holds
    # It took 4-5 s when every line was logged one by one; in bulk it is milliseconds, and
    # stays well under a second beside two CPU-burning processes.
    assert elapsed < 2.0, f"one fd_write took {elapsed:.2f} s"
    assert kept <= rt.log.capacity
    assert rt.log.dropped + rt.log.written >= 1_990_000
    healthy(rt)


async def test_a_spinning_plugin_does_not_delay_another_plugins_acall(
        wat: Callable[[str], bytes]) -> None:
    from omnicore.plugins import PluginHost

    with PluginHost() as host:
        host.load(wat("loop"), name="spinner", limits={"timeout_ms": 1000, "pool_size": 2})
        host.load(wat("echo"), name="healthy")
        import asyncio

        spinning = [asyncio.ensure_future(host.acall("spinner", "spin", b"")) for _ in range(16)]
        await asyncio.sleep(0)  # let them queue
        start = time.monotonic()
        assert await host.acall("healthy", "echo", b"hi") == b"hi"
        waited = time.monotonic() - start
        assert waited < 0.5, f"the healthy plugin's acall waited {waited:.2f} s"
        for task in spinning:
            task.cancel()


# ---- results, manifests -----------------------------------------------------------------

def test_an_error_result_out_of_bounds_is_a_trap(make: Make) -> None:
    # E = 1 with (ptr, len) past memory: a trap (abi.md §2.2), not a GuestError, even though
    # the first 4 KiB of it would be readable.
    rt = make(module("""(func (export "bad_error") (param i32 i32) (result i64)
                          (i64.const 0x0000100080100000))"""))
    with pytest.raises(Trap, match="out-of-bounds"):
        rt.call("bad_error", b"")
    healthy(rt)


def with_manifest(text: bytes) -> bytes:
    return wasmbin.set_custom_section(module(""), "omnicore.manifest", text)


@pytest.mark.parametrize(("manifest", "reason"), [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"abi": 1, "x": ' + b"9" * 5000 + b"}", "not UTF-8 JSON"),
    (b'{"abi": 1, "x": ' + b"[" * 40 + b"]" * 40 + b"}", "nested too deeply"),
    (b'{"abi": 1, "pad": "' + b"x" * 300_000 + b'"}', "at most"),
    (json.dumps({"abi": 1, "config": {"$ref": "#"}}).encode(), "refers to itself"),
    (json.dumps({"abi": 1, "config": {"type": "object", "properties": {
        "a": {"$ref": "other.json"}}}}).encode(), "points outside the schema"),
])
def test_hostile_manifests_are_invalid_modules(engine: SandboxEngine, manifest: bytes,
                                               reason: str) -> None:
    with pytest.raises(InvalidModule, match=reason):
        PluginModule.load(engine, with_manifest(manifest), "hostile")


def test_no_garbage_collection_runs_while_a_schema_recurses_to_the_limit(
        engine: SandboxEngine) -> None:
    # Telling a schema that refers to itself takes the stack to the recursion limit. A
    # collection down there ran other objects' finalizers (wasmtime stores, files) at that
    # depth, where they failed with RecursionError and freed nothing.
    import gc
    import sys

    depths: list[int] = []

    def on_collect(phase: str, _info: object) -> None:
        if phase == "start":
            frame, depth = sys._getframe(), 0
            while frame is not None:
                frame, depth = frame.f_back, depth + 1
            depths.append(depth)

    old = gc.get_threshold()
    gc.set_threshold(1)  # a collection at nearly every allocation
    gc.callbacks.append(on_collect)
    try:
        with pytest.raises(InvalidModule, match="refers to itself"):
            PluginModule.load(engine, with_manifest(json.dumps(
                {"abi": 1, "config": {"$ref": "#"}}).encode()), "hostile")
    finally:
        gc.callbacks.remove(on_collect)
        gc.set_threshold(*old)
    assert depths and max(depths) < sys.getrecursionlimit() // 2, max(depths)


def test_a_remote_schema_ref_is_never_fetched(engine: SandboxEngine) -> None:
    import http.server
    import threading

    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/schema.json"
        manifest = json.dumps({"abi": 1, "config": {"$ref": url}}).encode()
        with pytest.raises(InvalidModule, match="nothing is fetched"):
            PluginModule.load(engine, with_manifest(manifest), "ssrf")
    finally:
        server.shutdown()
        server.server_close()
    assert hits == []


def test_a_hostile_manifest_in_the_folder_is_registered_as_failed(tmp_path: Any) -> None:
    from omnicore.plugins import PluginHost

    (tmp_path / "deep.wasm").write_bytes(with_manifest(b"[" * 100_000 + b"]" * 100_000))
    (tmp_path / "fine.wasm").write_bytes(module(""))
    with PluginHost() as host:
        host.watch_folder(tmp_path, watch=False)
        deep = host.get("deep")
        assert deep.state == "failed" and "nested too deeply" in (deep.last_error or "")
        assert host.get("fine").state == "loaded"


def test_the_plugin_log_is_returned_even_when_empty(wat: Callable[[str], bytes]) -> None:
    from omnicore.plugins import PluginHost

    with PluginHost() as host:
        host.load(wat("echo"), name="echo")
        log = host.logs("echo")
        assert len(log) == 0
        host.call("echo", "log", b"first line")
        assert [ln.message for ln in host.logs("echo").lines()] == ["first line"]
        assert host.logs("echo") is log

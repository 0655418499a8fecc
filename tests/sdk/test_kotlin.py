"""The Kotlin SDK (sdk/kotlin): the greeter example, a scaffold and the SDK's probe, built by the
real kotlinc-wasm (npm's kotlin-compiler 2.4.20 on Debian's JDK) and wasm-opt through
``omnicore.toolchains.build``, run through the real sandbox: a Wasm GC module with the engine's
GC on (specs/security.md "Wasm GC")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicore.errors import GuestError
from omnicore.sandbox import Limits, PluginModule, SandboxEngine, wasmbin
from omnicore.toolchains import build, kotlin, language_for, scaffold
from tests.sdk.hosting import HostedProbe, Upstream, call_text, runtime

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(kotlin.check() is not None, reason=f"Kotlin: {kotlin.check()}")


@pytest.fixture(scope="module")
def wasm(out_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    built = {"greeter": build(ROOT / "plugins" / "greeter" / "kotlin", out_dir),
             "counter": build(ROOT / "plugins" / "counter" / "kotlin", out_dir),
             "probe": build(Path(__file__).parent / "probe_kotlin", out_dir)}
    fresh = tmp_path_factory.mktemp("scaffold") / "hello-kotlin"
    scaffold(fresh, "hello-kotlin", "kotlin")
    built["scaffold"] = build(fresh, out_dir)
    return built


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    yield from Upstream().serve()


def test_the_greeter_is_a_small_gc_module_importing_only_what_it_calls(
        engine: SandboxEngine, wasm: dict[str, Path]) -> None:
    assert language_for(ROOT / "plugins" / "greeter" / "kotlin") == "kotlin"
    data = wasm["greeter"].read_bytes()
    assert wasmbin.uses_gc(data) and len(data) < 200_000  # wasm-opt: 715 KB -> about 71 KB
    module = PluginModule.load(engine, wasm["greeter"])
    assert isinstance(module, PluginModule)
    assert module.name == "greeter-kotlin" and list(module.handlers) == ["greet"]
    assert {e.name for e in module.exports} >= {"omni_alloc", "omni_free", "greet", "memory"}
    # wasm-opt dropped the SDK's kv and http imports the greeter never calls.
    namespaces = {ns for ns in module.imports_by_capability() if ns.startswith("omnicore:")}
    assert namespaces == {"omnicore:log", "omnicore:config"}
    assert module.manifest["handlers"] == [{
        "name": "greet", "title": "Greet",
        "description": "Greets someone by name with the configured greeting."}]


def test_the_greeter_answers_through_the_real_host(engine: SandboxEngine,
                                                   wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["greeter"], config={"greeting": "Ahoy"}) as rt:
        assert json.loads(rt.call("greet", b'{"name": "Ada"}')) == {"message": "Ahoy, Ada!"}
        assert json.loads(rt.call("greet", b'{"name": "\\ud83c\\udf0d"}')) == {
            "message": "Ahoy, \U0001f30d!"}
        assert [line.message for line in rt.log.lines()] == ["greeting Ada", "greeting \U0001f30d"]
        with pytest.raises(GuestError, match="name must not be empty"):
            rt.call("greet", b'{"name": ""}')
        for data, message in [(b"{", "invalid JSON input"), (b"", "invalid JSON input"),
                              (b"[1]", "invalid JSON input: expected an object"),
                              (b'{"name": 42}', "name must be a string")]:
            with pytest.raises(GuestError, match=message):
                rt.call("greet", data)
        assert json.loads(rt.call("greet", b"{}")) == {"message": "Ahoy, world!"}
        # Many calls on one instance: the arena gives every call's blocks back.
        for i in range(300):
            assert json.loads(rt.call("greet", json.dumps({"name": f"n{i}"}).encode()))
        assert rt.stats()["discarded"] == 0


def test_the_counter_counts_in_kv_from_its_configured_start_and_resets(
        engine: SandboxEngine, wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["counter"], config={"start": 40},
                 limits=Limits(pool_size=1)) as rt:
        assert json.loads(rt.call("count", b"{}")) == {"count": 41}
        assert json.loads(rt.call("count", b'{"by": -50}')) == {"count": -9}
        assert json.loads(rt.call("reset", b"")) == {"count": 40}
        with pytest.raises(GuestError, match="counter overflow"):
            rt.call("count", b'{"by": 9223372036854775807}')
        for bad in (b'{"by": "x"}', b'{"by": 1.5}', b'{"by": 9223372036854775808}'):
            with pytest.raises(GuestError, match="by must be an integer in the 64-bit range"):
                rt.call("count", bad)
        assert json.loads(rt.call("count", b"{}")) == {"count": 41}
        memory = rt.usage().memory_bytes
        for _ in range(2000):  # the arena gives each call's blocks back: memory stays flat
            rt.call("count", b'{"by": 0}')
        assert rt.usage().memory_bytes == memory
        assert rt.stats()["discarded"] == 0
    described = {h["name"]: h for h in PluginModule.load(engine, wasm["counter"]).manifest[
        "handlers"]}
    assert described["reset"]["destructive"] is True
    assert described["count"]["input_schema"] == {"type": "object", "properties": {
        "by": {"type": "integer"}}}


def test_a_scaffold_builds_and_answers(engine: SandboxEngine, wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["scaffold"]) as rt:
        assert json.loads(rt.call("greet", b'{"name": "Ada"}')) == {"message": "Hello, Ada!"}


def test_kv_http_and_the_arena_through_the_real_host(engine: SandboxEngine,
                                                     wasm: dict[str, Path],
                                                     upstream: Upstream) -> None:
    with HostedProbe(engine, wasm["probe"], upstream=upstream,
                     limits=Limits(pool_size=1)) as probe:
        assert json.loads(call_text(probe, "kv", b'{"key": "k1", "value": "v1"}')) == {
            "get": "v1", "missing": None, "incr": 5, "list": ["k1", "k1-n"], "delete": True,
            "after": None}
        with pytest.raises(GuestError, match="kv value too large"):
            probe.call("kv", json.dumps({"key": "big", "value": "x" * 4000}).encode())
        # The host answers http through omni_alloc, re-entered during the host call.
        for _ in range(20):
            assert json.loads(call_text(probe, "fetch", json.dumps(
                {"url": upstream.url + "/x"}).encode())) == {
                "get": "200 hello /x", "post": "201 echo: payload", "method": "POST"}
        with pytest.raises(GuestError, match="DENIED"):
            probe.call("fetch", b'{"url": "https://example.com/"}')
        arena = json.loads(call_text(probe, "arena", b"{}"))
        assert all(arena[k] > 0 and arena[k] % 8 == 0 for k in ("a", "b", "c", "zero"))
        assert arena["c"] == arena["a"]  # freed, then handed out again
        # println opens a scope of Kotlin's own allocator above the arena: the arena's
        # blocks (the input, the output) are intact, at every input size.
        for size in (0, 1, 100, 70_000, 300_000, 5):
            data = bytes(range(256)) * (size // 256) + bytes(size % 256)
            assert probe.call("shout", data) == data
        assert any("shouting 300000 bytes" in line.message for line in probe.log.lines())

"""The Zig SDK (sdk/zig): its examples and a scaffold, built with PyPI's ziglang for
wasm32-wasi through ``omnicore.toolchains.build``, run through the real sandbox; the unit
tests (``omnicore test``: compiled for wasm32-wasi, run on omnicore's test host).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from omnicore.errors import BuildError, GuestError
from omnicore.sandbox import Limits, PluginModule, SandboxEngine
from omnicore.toolchains import build, language_for, scaffold, unit_tests, zig
from tests.sdk.hosting import HostedProbe, Upstream, call_text, runtime

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(zig.check() is not None, reason=f"Zig: {zig.check()}")


@pytest.fixture(scope="module")
def wasm(out_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    built = {name: build(ROOT / "plugins" / name / "zig", out_dir)
             for name in ("greeter", "counter")}
    fresh = tmp_path_factory.mktemp("scaffold") / "hello-zig"
    scaffold(fresh, "hello-zig", "zig")
    built["scaffold"] = build(fresh, out_dir)
    built["scaffold-src"] = fresh
    built["probe"] = build(Path(__file__).parent / "probe_zig", out_dir)
    return built


def test_examples_export_the_allocator_and_describe_their_handlers_from_types(
        engine: SandboxEngine, wasm: dict[str, Path]) -> None:
    assert language_for(ROOT / "plugins" / "greeter" / "zig") == "zig"
    module = PluginModule.load(engine, wasm["counter"])
    assert module.name == "counter-zig" and list(module.handlers) == ["count", "reset"]
    assert {e.name for e in module.exports} >= {"omni_alloc", "omni_free", "count", "reset"}
    namespaces = {ns for ns in module.imports_by_capability() if ns.startswith("omnicore:")}
    assert namespaces == {"omnicore:log", "omnicore:config", "omnicore:kv"}
    described = {h["name"]: h for h in module.manifest["handlers"]}
    assert described["count"]["input_schema"] == {"type": "object", "properties": {
        "by": {"type": "integer"}}}
    assert described["count"]["output_schema"] == {"type": "object", "properties": {
        "count": {"type": "integer"}}, "required": ["count"]}
    assert described["reset"]["destructive"] is True


def test_greeter_uses_config_logs_and_fails_with_messages(engine: SandboxEngine,
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
        assert rt.stats()["discarded"] == 0


def test_counter_counts_from_configured_start_and_resets(engine: SandboxEngine,
                                                         wasm: dict[str, Path]) -> None:
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
        for _ in range(2000):  # the per-call arena is reset: memory stays flat
            rt.call("count", b'{"by": 0}')
        assert rt.stats()["discarded"] == 0


def test_scaffold_builds_runs_and_its_unit_tests_pass(engine: SandboxEngine,
                                                      wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["scaffold"], config={"greeting": "Hi"}) as rt:
        assert json.loads(rt.call("greet", b'{"name": "Sam"}')) == {"message": "Hi, Sam!"}
    run = unit_tests(wasm["scaffold-src"])
    done = subprocess.run(run.argv, env=run.env, cwd=run.cwd, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert "All 1 tests passed" in done.stderr


def test_the_test_host_answers_every_capability() -> None:
    # probe_zig's own tests: the tour, a SQL/Redis/MCP handler and a fresh Host per test, on
    # omnicore's test host (the capabilities' own code; omni.testing.Host sets it up).
    run = unit_tests(Path(__file__).parent / "probe_zig")
    done = subprocess.run(run.argv, env=run.env, cwd=run.cwd, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert "All 3 tests passed" in done.stderr


def test_a_failing_or_trapping_test_fails_the_run_and_names_pick_tests(tmp_path: Path) -> None:
    # The tests run as wasm in wasmtime: a failed expectation and a panic (a trap) both fail
    # the run; `omnicore test DIR -- NAME` compiles only the tests whose names contain NAME.
    (tmp_path / "plugin.zig").write_text(
        'const std = @import("std");\nconst omni = @import("omnicore");\n'
        'test "fails" { try std.testing.expect(false); }\n'
        'test "panics" { @panic("boom"); }\n'
        'test "reads redis" { var h = omni.testing.Host.init(); defer h.deinit();\n'
        '    h.redisSet("a", "b");\n'
        '    try std.testing.expectEqualStrings("b", (try h.redisGet("a")).?);\n'
        '    try std.testing.expectEqual(-1, h.redisTtl("a")); }\n')
    run = unit_tests(tmp_path)

    def tests(*names: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*run.argv, *names], env=run.env, cwd=run.cwd, capture_output=True,
                              text=True, timeout=600, check=False)

    failed = tests("fails")
    assert failed.returncode != 0 and "FAIL" in failed.stderr, failed.stderr
    trapped = tests("panics")
    assert trapped.returncode != 0 and "boom" in trapped.stderr, trapped.stderr
    passed = tests("reads redis")
    assert passed.returncode == 0, passed.stderr
    assert "All 1 tests passed" in passed.stderr


def test_mcp_outside_an_mcp_call_reaches_nobody(engine: SandboxEngine, tmp_path: Path,
                                                out_dir: Path) -> None:
    (tmp_path / "plugin.zig").write_text(
        'const omni = @import("omnicore");\n'
        'comptime {\n    omni.handler("tool", tool, .{});\n}\n'
        "fn tool(call: *omni.Call, _: []const u8) ![]const u8 {\n"
        '    const sent = try omni.mcp.progress(1, 2, "half way");\n'
        '    const asked = omni.mcp.ask(call.arena,\n'
        '        "{\\"method\\":\\"roots/list\\",\\"params\\":{}}");\n'
        '    return call.print("{any} {any}", .{ sent, asked });\n}\n')
    wasm = build(tmp_path, out_dir, name="mcp-zig")
    assert "omnicore:mcp" in PluginModule.load(engine, wasm).imports_by_capability()
    with runtime(engine, wasm, grants={"mcp": {"ask": ["roots"]}}) as rt:
        assert rt.call("tool", b"") == b"false error.Unavailable"


def test_compile_errors_are_build_errors_with_zig_output(tmp_path: Path, out_dir: Path) -> None:
    src = tmp_path / "broken"
    scaffold(src, "broken", "zig")
    plugin = src / "plugin.zig"
    plugin.write_text(plugin.read_text().replace('orelse "Hello"', 'orelse undefinedThing'))
    with pytest.raises(BuildError) as info:
        build(src, out_dir)
    assert "plugin.zig:" in str(info.value) and "undefinedThing" in str(info.value)
    assert info.value.toolchain == "zig"


def test_every_capability_through_the_real_host(probe: HostedProbe, upstream: Upstream) -> None:
    out = call_text(probe, "tour", upstream.url.encode())
    lines = dict(line.split("=", 1) for line in out.splitlines())
    recalled, found = lines.pop("memory.recall"), lines.pop("vectors.search")
    assert lines == {
        "kv.set": "ok(void)", "kv.get": "v1", "kv.missing": "null", "kv.big": "TooLarge",
        "kv.incr": "ok(5)", "kv.list": "k1", "kv.delete": "ok(true)", "config.db": "5432",
        "secret": "s3cr3t", "secret.unset": "ok(null)", "secret.hidden": "Denied",
        "events": "ok(void)", "events.denied": "Denied", "tasks.cancel": "ok(true)",
        "tasks.unknown": "NotFound",
        "http": "201 echo: payload", "http.denied": "Denied", "memory.forget": "ok(true)",
        "vectors.upsert": "ok(void)", "vectors.missing": "NotFound",
        "vectors.delete": "ok(true)"}
    assert '"text":"likes green tea"' in recalled and '"id":"a"' in found
    assert probe.events() == [("order.created", b"{}")]
    assert [(t.handler, t.payload, t.state) for t in probe.tasks()] == [
        ("echo", b"later", "cancelled")]
    assert probe.kv("n") == b"5"
    assert upstream.seen[-1].body == b"payload"

"""The AssemblyScript SDK (sdk/assemblyscript): its examples, a scaffold and a module whose
top-level statements call the host from the start function, built with npm's assemblyscript
through ``omnicore.toolchains.build`` and run through the real sandbox.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicore.errors import BuildError, ConfigError, GuestError, Trap
from omnicore.sandbox import Limits, PluginModule, SandboxEngine
from omnicore.toolchains import assemblyscript, build, language_for, scaffold, unit_tests
from tests.sdk.hosting import HostedProbe, Upstream, call_text, probe_grants, runtime

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(assemblyscript.check() is not None,
                                reason=f"AssemblyScript: {assemblyscript.check()}")


@pytest.fixture(scope="module")
def wasm(out_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    built = {name: build(ROOT / "plugins" / name / "as", out_dir)
             for name in ("greeter", "counter")}
    fresh = tmp_path_factory.mktemp("scaffold") / "hello-as"
    scaffold(fresh, "hello-as", "assemblyscript")
    built["scaffold"] = build(fresh, out_dir)
    built["start"] = build(Path(__file__).parent / "as_start", out_dir)
    built["probe"] = build(Path(__file__).parent / "probe_as", out_dir)
    return built


@pytest.fixture(scope="module")
def probe(engine: SandboxEngine, wasm: dict[str, Path], upstream: Upstream,
          fs_root: Path) -> Iterator[HostedProbe]:
    """conftest's probe, also granted ``fs_root``'s two directories."""
    grants = probe_grants(upstream, publish=("order.*",))
    grants["fs"] = {"dirs": [{"path": str(fs_root / "in"), "guest": "/in"},
                             {"path": str(fs_root / "out"), "guest": "/out", "write": True}]}
    with HostedProbe(engine, wasm["probe"], upstream=upstream, grants=grants,
                     config={"db": {"host": "h", "port": 5432}}) as rt:
        yield rt


def test_examples_are_plain_modules_that_request_only_what_they_use(
        engine: SandboxEngine, wasm: dict[str, Path]) -> None:
    # asconfig.json makes a folder of .ts files AssemblyScript, not TypeScript for QuickJS
    assert language_for(ROOT / "plugins" / "greeter" / "as") == "assemblyscript"
    for name, handlers in {"greeter": ["greet"], "counter": ["count", "reset"]}.items():
        module = PluginModule.load(engine, wasm[name])
        assert module.name == f"{name}-as"
        assert list(module.handlers) == handlers
        imports = module.imports_by_capability()
        assert set(imports) <= {"omnicore:log", "omnicore:config", "omnicore:kv"}  # no env.abort
        assert ("omnicore:kv" in imports) == (name == "counter")
        assert not module.uses_wasi  # the SDK's fs is compiled in only when called


def test_greeter_uses_config_logs_and_fails_with_messages(engine: SandboxEngine,
                                                          wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["greeter"], config={"greeting": "Ahoy"}) as rt:
        assert json.loads(rt.call("greet", b'{"name": "Ada"}')) == {"message": "Ahoy, Ada!"}
        assert json.loads(rt.call("greet", b'{"name": "\\ud83c\\udf0d\\u00e9"}')) == {
            "message": "Ahoy, \U0001f30d\u00e9!"}
        assert [line.message for line in rt.log.lines()] == ["greeting Ada",
                                                             "greeting \U0001f30d\u00e9"]
        for data, message in [(b"{", "invalid JSON input"), (b"[]", "expected an object"),
                              (b'{"name": 1}', "name must be a string"),
                              (b'{"name": ""}', "name must not be empty"),
                              (b'{"name": "\\udc00"}', "lone surrogate")]:
            with pytest.raises(GuestError, match=message):
                rt.call("greet", data)
        for _ in range(2000):  # the GC collects what calls leave behind
            rt.call("greet", b'{"name": "B"}')
        assert rt.stats()["discarded"] == 0


def test_counter_counts_from_configured_start_and_resets(engine: SandboxEngine,
                                                         wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["counter"], config={"start": 40},
                 limits=Limits(pool_size=1)) as rt:
        assert json.loads(rt.call("count", b"{}")) == {"count": 41}
        assert json.loads(rt.call("count", b'{"by": 5}')) == {"count": 46}
        assert json.loads(rt.call("reset", b"")) == {"count": 40}
        for bad in (b'{"by": "x"}', b'{"by": 1.5}', b'{"by": 9223372036854775808}'):
            with pytest.raises(GuestError, match="by must be an integer"):
                rt.call("count", bad)
        with pytest.raises(GuestError, match="counter overflow"):
            rt.call("count", b'{"by": 9223372036854775807}')
        assert json.loads(rt.call("count", b'{"by": -9223372036854775808}')) == {
            "count": 40 - 2**63}
    with pytest.raises(ConfigError, match="start"):
        runtime(engine, wasm["counter"], config={"start": "ten"})


def test_top_level_statements_call_the_host_from_the_start_function(
        engine: SandboxEngine, wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["start"], config={"greeting": "Hey"},
                 limits=Limits(pool_size=1)) as rt:
        assert rt.call("hello", b"you") == b"Hey you"
        assert [line.message for line in rt.log.lines()] == ["loaded with greeting Hey"]
        # A throw aborts through the SDK's abort: logged at error level, then a trap.
        with pytest.raises(Trap):
            rt.call("boom", b"bad data")
        assert any(line.level == "error" and line.message.startswith("abort: boom with bad data")
                   for line in rt.log.lines())
        assert rt.call("hello", b"again") == b"Hey again"  # a new instance started over


def test_scaffold_builds_and_runs(engine: SandboxEngine, wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["scaffold"], config={"greeting": "Hi"}) as rt:
        assert json.loads(rt.call("greet", b'{"name": "Sam"}')) == {"message": "Hi, Sam!"}


def _unit_tests(src: Path) -> subprocess.CompletedProcess[str]:
    run = unit_tests(src)
    return subprocess.run(run.argv, env=run.env, cwd=run.cwd, capture_output=True, text=True,
                          timeout=600, check=False)


def test_unit_tests_run_each_test_on_the_test_host_and_report_failures(tmp_path: Path) -> None:
    passed = _unit_tests(ROOT / "plugins" / "greeter" / "as")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "test result: ok. 3 passed; 0 failed" in passed.stdout
    assert "node" not in unit_tests(ROOT / "plugins" / "greeter" / "as").argv[0]
    src = tmp_path / "hello"
    scaffold(src, "hello", "assemblyscript")
    test_file = src / "plugin.test.ts"
    test_file.write_text(test_file.read_text().replace("Hi, Ada!", "Hello, Ada!"))
    failed = _unit_tests(src)
    assert failed.returncode == 1
    assert 'expected {"message":"Hello, Ada!"}, got {"message":"Hi, Ada!"}' in failed.stdout
    assert "INFO greeting Ada" in failed.stdout  # the failed test's log


def test_a_failing_or_trapping_test_fails_alone(tmp_path: Path) -> None:
    src = tmp_path / "hello"
    scaffold(src, "hello", "assemblyscript")
    (src / "plugin.test.ts").write_text(
        'import { greet } from "./plugin";\n'
        'import { call, expectEqual, kvGet, setKv, test } from "omnicore/testing";\n'
        'test("first passes", () => { setKv("seen", "1"); '
        "expectEqual(call(greet, '{}'), '{\"message\":\"Hello, world!\"}'); });\n"
        'test("then one throws", () => { throw new Error("thrown on purpose"); });\n'
        'test("then one traps", () => { unreachable(); });\n'
        'test("the last still runs, on a fresh host", () => { '
        'if (kvGet("seen") != null) throw new Error("state leaked"); });\n')
    done = _unit_tests(src)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "test first passes ... ok" in out
    assert "test then one throws ... FAILED\n    thrown on purpose at plugin.test.ts" in out
    assert "test then one traps ... FAILED\n    the test trapped: " in out
    assert "test the last still runs, on a fresh host ... ok" in out
    assert "test result: FAILED. 2 passed; 2 failed; 0 filtered out" in out
    run = unit_tests(src)
    chosen = subprocess.run([*run.argv, "first"], env=run.env, cwd=run.cwd,
                            capture_output=True, text=True, timeout=600, check=False)
    assert chosen.returncode == 0, chosen.stdout + chosen.stderr
    assert "test result: ok. 1 passed; 0 failed; 3 filtered out" in chosen.stdout


def test_the_test_host_answers_every_capability() -> None:
    # probe_as/plugin.test.ts: the probe's tour and a SQL/Redis handler against the test host.
    done = _unit_tests(Path(__file__).parent / "probe_as")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test result: ok. 4 passed; 0 failed" in done.stdout


def test_top_level_statements_run_in_each_tests_instance() -> None:
    # as_start/plugin.test.ts: its start function logs through the test host; a handler's
    # throw fails that test, with the handler's message.
    done = _unit_tests(Path(__file__).parent / "as_start")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "test the start function's host calls are served ... ok" in done.stdout
    assert ("test fails on purpose: a throw in a handler fails its test with the message"
            " ... FAILED\n"
            "    boom with bad data at plugin.ts:") in done.stdout
    assert "test result: FAILED. 1 passed; 1 failed" in done.stdout


def test_mcp_outside_an_mcp_call_reaches_nobody(engine: SandboxEngine, tmp_path: Path,
                                                out_dir: Path) -> None:
    (tmp_path / "asconfig.json").write_text('{"entries": ["plugin.ts"]}')
    (tmp_path / "plugin.ts").write_text(
        'import { lastError, lastStatus, mcp, ok } from "omnicore";\n'
        "export function tool(ptr: usize, len: usize): u64 {\n"
        '  const sent = mcp.progress(1, 2, "half way");\n'
        "  const asked = mcp.ask('{\"method\":\"roots/list\",\"params\":{}}');\n"
        '  return ok(sent.toString() + " " + (asked == null ? lastStatus.toString() : asked));\n'
        "}\n")
    wasm = build(tmp_path, out_dir, name="mcp-as")
    assert "omnicore:mcp" in PluginModule.load(engine, wasm).imports_by_capability()
    with runtime(engine, wasm, grants={"mcp": {"ask": ["roots"]}}) as rt:
        assert rt.call("tool", b"") == b"false -5"


def test_compile_errors_are_build_errors_with_asc_output(tmp_path: Path, out_dir: Path) -> None:
    src = tmp_path / "broken"
    scaffold(src, "broken", "as")
    plugin = src / "plugin.ts"
    plugin.write_text(plugin.read_text().replace('let name = "world";',
                                                 "let name = undefinedThing;"))
    with pytest.raises(BuildError) as info:
        build(src, out_dir)
    assert "undefinedThing" in str(info.value) and "plugin.ts" in str(info.value)
    assert info.value.toolchain == "assemblyscript"


def test_every_capability_through_the_real_host(probe: HostedProbe, upstream: Upstream) -> None:
    out = call_text(probe, "tour", upstream.url.encode())
    lines = dict(line.split("=", 1) for line in out.splitlines())
    recalled, found = lines.pop("memory.recall"), lines.pop("vectors.search")
    assert lines == {
        "kv.set": "true", "kv.get": "ok(v1)", "kv.missing": "err(-1)", "kv.big": "err(-6)",
        "kv.incr": "5", "kv.list": 'ok(["k1"])', "kv.delete": "true", "config.db": "ok(5432)",
        "secret": "ok(s3cr3t)", "secret.unset": "err(-1)", "secret.hidden": "err(-2)",
        "events": "true", "events.denied": "err(-2)", "tasks.cancel": "true",
        "http": "201 echo: payload",
        "http.denied": "err(-2) DENIED: https://denied.example:443 is not in the grant's "
                       "allow_hosts",
        "memory.forget": "true", "vectors.upsert": "true", "vectors.missing": "err(-1)",
        "vectors.delete": "true"}
    assert '"text":"likes green tea"' in recalled and '"id":"a"' in found
    assert probe.events() == [("order.created", b"{}")]
    assert [(t.handler, t.payload, t.state) for t in probe.tasks()] == [
        ("echo", b"later", "cancelled")]
    assert probe.kv("n") == b"5"
    assert upstream.seen[-1].body == b"payload"


def test_a_plugin_requests_only_the_capabilities_it_calls(engine: SandboxEngine, tmp_path: Path,
                                                         out_dir: Path) -> None:
    src = tmp_path / "kv-only"
    src.mkdir()
    (src / "asconfig.json").write_text('{"entries": ["plugin.ts"]}')
    (src / "plugin.ts").write_text(
        'import { input, kv, ok } from "omnicore";\n'
        "export function keys(ptr: usize, len: usize): u64 {\n"
        "  const value = kv.getBytes(input(ptr, len));\n"
        '  const listed = kv.list("");\n'
        '  return ok((value != null ? "1" : "0") + (listed != null ? listed : ""));\n'
        "}\n")
    module = PluginModule.load(engine, build(src, out_dir, name="kv-only"))
    # the SDK's readers of config, secrets and memory stay out of the module
    assert set(module.imports_by_capability()) == {"omnicore:kv", "omnicore:log"}
    assert not module.uses_wasi


def test_fs_reads_and_writes_granted_directories_only(probe: HostedProbe, fs_root: Path) -> None:
    out = call_text(probe, "files", b"/in /out")
    lines = dict(line.split("=", 1) for line in out.splitlines())
    assert lines == {
        "dirs": "/in,/out", "read": "ok(granted)",
        "read.small": "err(-6) TOO_LARGE: /in/a.txt is over 3 bytes",
        "read.missing": "err(-1) NOT_FOUND: /in/nope.txt (WASI errno 44)",
        # a `..` leaving the directory, a path under no grant, a read-only directory: DENIED
        "read.escape": "err(-2) DENIED: /in/../secret.txt (WASI errno 76)",
        "read.ungranted": "err(-2) DENIED: no fs directory is granted for /etc/passwd",
        "read.relative": "err(-3) INVALID: fs paths are absolute: a.txt",
        "write.readonly": "err(-2) DENIED: /in/c.txt (WASI errno 69)",
        "write": "true", "write.bytes": "true", "read.bytes": "0,255,7", "mkdir": "true",
        "list": "ok(b.txt,raw.bin,sub)", "stat": "7 true false", "exists": "true false",
        "remove": "true true", "remove.readonly": "err(-2) DENIED: /in/a.txt (WASI errno 69)",
        "list.after": "ok(b.txt)", "list.file": "err(-3) INVALID: /in/a.txt (WASI errno 54)"}
    assert (fs_root / "out" / "b.txt").read_text() == "written"
    assert sorted(p.name for p in (fs_root / "in").iterdir()) == ["a.txt"]

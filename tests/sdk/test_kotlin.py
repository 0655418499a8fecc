"""The Kotlin SDK (sdk/kotlin): the greeter example, a scaffold and the SDK's probe, built by the
real kotlinc-wasm (npm's kotlin-compiler 2.4.20 on Debian's JDK) and wasm-opt through
``omnicore.toolchains.build``, run through the real sandbox: a Wasm GC module with the engine's
GC on (specs/security.md "Wasm GC"). Every capability's wrapper through the real host (SQL on
a real PostgreSQL, Redis on a real redis-server), a denied one's refusal as the SDK reports
it; `omnicore test` of a project (its tests on the one test host) and `omnicore inspect`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from omnicore.errors import GuestError
from omnicore.sandbox import Limits, PluginModule, SandboxEngine, wasmbin
from omnicore.toolchains import build, kotlin, language_for, scaffold, unit_tests
from tests.db_fixtures import redis_server  # noqa: F401 - fixture
from tests.dbservers import Redis
from tests.sdk.hosting import HostedProbe, Upstream, call_text, probe_grants, runtime

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


def test_a_scaffold_builds_and_answers(engine: SandboxEngine, wasm: dict[str, Path],
                                       upstream: Upstream) -> None:
    module = PluginModule.load(engine, wasm["scaffold"])
    assert list(module.handlers) == ["greet", "check"]
    assert {ns for ns in module.imports_by_capability() if ns.startswith("omnicore:")} == {
        "omnicore:log", "omnicore:config", "omnicore:kv", "omnicore:http"}
    # Every capability it imports granted (http allowing nothing), as its hint says.
    with runtime(engine, wasm["scaffold"], grants={"config": {}, "kv": {}, "http": {}}) as rt:
        assert json.loads(rt.call("greet", b'{"name": "Ada"}')) == {"message": "Hello, Ada!"}
    grants = {"config": {}, "kv": {}, "log": {},
              "http": {"allow_hosts": ["http://127.0.0.1:*"], "allow_addresses": ["127.0.0.1/32"]}}
    with runtime(engine, wasm["scaffold"], config={"url": upstream.url + "/health"},
                 grants=grants) as rt:
        assert json.loads(rt.call("check", b"{}")) == {
            "url": upstream.url + "/health", "status": 200, "bytes": len("hello /health"),
            "checks": 1}
        assert json.loads(rt.call("check", b"{}"))["checks"] == 2
    with runtime(engine, wasm["scaffold"], config={"url": "https://example.com/"},
                 grants=grants) as rt, pytest.raises(GuestError, match="DENIED"):
        rt.call("check", b"{}")


def test_kv_http_and_the_arena_through_the_real_host(engine: SandboxEngine,
                                                     wasm: dict[str, Path],
                                                     upstream: Upstream) -> None:
    with HostedProbe(engine, wasm["probe"], upstream=upstream, grants=_grants(upstream),
                     connectors=_NOWHERE, limits=Limits(pool_size=1)) as probe:
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


def _grants(upstream: Upstream, fs_root: Path | None = None) -> dict[str, Any]:
    """Every capability, as an operator grants it: events publishing only ``order.*``, the
    sql and redis connectors ``orders`` and ``cache`` (not ``other``), /in and /out."""
    grants = probe_grants(upstream, publish=("order.*",))
    grants["sql"] = {"connectors": ["orders"]}
    grants["redis"] = {"connectors": ["cache"]}
    if fs_root is not None:
        grants["fs"] = {"dirs": [{"path": str(fs_root / "in"), "guest": "/in"},
                                 {"path": str(fs_root / "out"), "guest": "/out", "write": True}]}
    return grants


#: Connectors nothing listens on: the probes that do not reach a database still need them
#: declared (a grant names only the app's connectors).
_NOWHERE = {"orders": {"kind": "postgres", "url": "postgresql://nobody@127.0.0.1:1/none"},
            "other": {"kind": "postgres", "url": "postgresql://nobody@127.0.0.1:1/none"},
            "cache": {"kind": "redis", "url": "redis://127.0.0.1:1/0"}}


def test_every_capability_through_the_real_host(engine: SandboxEngine, wasm: dict[str, Path],
                                                upstream: Upstream, fs_root: Path) -> None:
    with HostedProbe(engine, wasm["probe"], upstream=upstream, grants=_grants(upstream, fs_root),
                     connectors=_NOWHERE, limits=Limits(pool_size=1)) as probe:
        tour = json.loads(call_text(probe, "tour", b"{}"))
        assert tour == {
            "secret": "s3cr3t", "secret.unset": None, "secret.hidden": "DENIED",
            "secret.bad": "DENIED",
            "events": "ok", "events.denied": "DENIED",
            "tasks.cancel": True, "tasks.unknown": "NOT_FOUND", "tasks.nohandler": "NOT_FOUND",
            "memory.recall": [[True, "LONG", "likes green tea", "ada"]],
            "memory.empty": "INVALID", "memory.forget": True, "memory.again": False,
            "vectors.upsert": "ok", "vectors.search": [["a", "x", True], ["b", "y", False]],
            "vectors.query": ["b"], "vectors.dim": "INVALID", "vectors.missing": "NOT_FOUND",
            "vectors.delete": True, "vectors.delete.none": "NOT_FOUND",
            # Outside an MCP call progress reaches nobody; roots are not in the grant's ask.
            "mcp.progress": False, "mcp.ask": "DENIED",
            "http.connector": "200 hello /via", "http.denied": "DENIED"}
        assert probe.events() == [("order.created", b'{"id":7}')]
        assert [(t.handler, t.payload, t.state) for t in probe.tasks()] == [
            ("tour", b"later", "cancelled")]
        # The connector's credentials went with the request; the plugin never saw them.
        assert upstream.seen[-1].path == "/via"
        assert upstream.seen[-1].headers["authorization"] == "Bearer conn-t0ken"

        files = json.loads(call_text(probe, "files", b"{}"))
        assert files == {
            "roots": ["/in", "/out"], "read": "granted", "missing": "NOT_FOUND",
            "outside": "NOT_FOUND", "escape": "DENIED", "readonly": "DENIED", "write": "ok",
            "append": "ok", "mkdir": "ok", "list": ["b.txt", "sub"], "back": "written twice",
            "big": "ok", "bigback": True, "delete": "ok", "listed": ["b.txt", "sub"]}
        assert (fs_root / "out" / "b.txt").read_text() == "written twice"
        assert not (fs_root / "in" / "new.txt").exists()
        assert probe.stats()["discarded"] == 0


def test_without_the_fs_grant_there_are_no_files(engine: SandboxEngine, wasm: dict[str, Path],
                                                 upstream: Upstream) -> None:
    with HostedProbe(engine, wasm["probe"], upstream=upstream, grants=_grants(upstream),
                     connectors=_NOWHERE) as probe:
        files = json.loads(call_text(probe, "files", b"{}"))
        assert files["roots"] == [] and files["read"] == "NOT_FOUND"
        assert files["write"] == "NOT_FOUND" and files["list"] == "NOT_FOUND"


def test_sql_and_redis_through_real_servers(engine: SandboxEngine, wasm: dict[str, Path],
                                            upstream: Upstream, pg_url: str,
                                            redis_server: Redis) -> None:  # noqa: F811
    url = urlsplit(pg_url)
    bare = url._replace(netloc=f"{url.username}@{url.hostname}:{url.port}").geturl()
    connectors = {
        "orders": {"kind": "postgres", "url": bare, "secret": "orders-pw",
                   "statements": {"allow": ["create"]}},
        "other": {"kind": "postgres", "url": bare, "secret": "orders-pw"},
        "cache": {"kind": "redis", "secret": "cache-pw",
                  "url": f"redis://127.0.0.1:{redis_server.port}/0"}}
    secrets = {"orders-pw": (url.password or "").encode(),
               "cache-pw": redis_server.password.encode()}
    with HostedProbe(engine, wasm["probe"], upstream=upstream, grants=_grants(upstream),
                     connectors=connectors, secrets=secrets) as probe:
        out = json.loads(call_text(probe, "db", b'{"redis": true}'))
    assert out == {
        "create": "ok", "insert": 2,
        "rows": [["id:int4", "name:text", "qty:int8"], [[1, "apple", 3], [2, "pear", 0]],
                 ["apple", "pear"]],
        "typed": [[0, 1, 2], {"a": 1}, "2026-11-24", "12.50", True],
        "tx.inside": [[2]], "tx.commit": "ok", "tx.rollback": "ok", "tx.gone": "NOT_FOUND",
        "after": [[1, 2], [2, 0]], "bad": "INVALID", "denied": "DENIED",
        "redis.set": "ok", "redis.get": "v", "redis.incr": 5, "redis.hash": 1,
        "redis.all": {"a": "1"}, "redis.denied": "DENIED", "redis.wrong": "INVALID"}


def test_omnicore_test_runs_a_projects_tests_on_the_test_host(tmp_path: Path) -> None:
    """The scaffold's tests pass; a failing test fails with its assertion's message, a
    trapping one says it trapped; the exit code says so; a name part selects tests."""
    project = tmp_path / "tested"
    scaffold(project, "tested", "kotlin")
    assert [name for name, _ in kotlin.test_names(project)] == [
        "greet uses the configured greeting", "greet refuses an empty name",
        "check fetches the configured url and counts in kv",
        "check fails when the url does not answer"]
    (project / "tests" / "more_test.kt").write_text(
        "import omnicore.json\nimport omnicore.testing.*\n\n"
        "@Test\nfun wrongGreeting() {\n    val host = Host()\n"
        '    host.setConfig("greeting", "Yo")\n'
        '    assertEquals(json("message" to "Hi, Ada!"), '
        'host.callJson(::greet, json("name" to "Ada")), "the greeting")\n}\n\n'
        "@Test\nfun `a trap`() {\n    val x: String? = null\n    x!!.length\n}\n")
    run = unit_tests(project)
    proc = subprocess.run(run.argv, env=run.env, cwd=run.cwd, capture_output=True, text=True,
                          timeout=900, check=False)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    for name in ("greet uses the configured greeting", "greet refuses an empty name",
                 "check fetches the configured url and counts in kv",
                 "check fails when the url does not answer"):
        assert f"test {name} ... ok" in out, out
    assert "test wrongGreeting ... FAILED\n    the greeting: expected " \
           '{"message":"Hi, Ada!"}, got {"message":"Yo, Ada!"}' in out, out
    assert "test a trap ... FAILED\n    the test trapped:" in out, out
    assert "test result: FAILED. 4 passed; 2 failed; 0 filtered out" in out, out
    # Selected by a part of their names (the program is kept: no compile this time).
    again = subprocess.run([*run.argv, "greet"], env=run.env, cwd=run.cwd, capture_output=True,
                           text=True, timeout=900, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 passed; 0 failed; 4 filtered out" in again.stdout, again.stdout


def test_a_project_without_tests_says_how_to_write_them(tmp_path: Path) -> None:
    project = tmp_path / "untested"
    scaffold(project, "untested", "kotlin")
    (project / "tests" / "plugin_test.kt").unlink()
    with pytest.raises(Exception, match=r"no tests: mark top-level functions @Test"):
        unit_tests(project)


def test_inspect_shows_a_kotlin_plugins_handlers(wasm: dict[str, Path]) -> None:
    omnicore = Path(sys.executable).parent / "omnicore"
    proc = subprocess.run([str(omnicore), "inspect", str(wasm["scaffold"])],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "handlers    greet, check" in lines, proc.stdout
    assert "requested   omnicore:config, omnicore:http, omnicore:kv, omnicore:log" in lines
    assert "  greet (func (i32, i32) -> i64)" in lines
    assert "  check (func (i32, i32) -> i64)" in lines
    assert '"description": "Greets someone by name with the configured greeting."' in proc.stdout


def test_the_scaffold_hints_run(tmp_path: Path, wasm: dict[str, Path]) -> None:
    """`omnicore new plugin --lang kotlin` prints how to build and call it: into an app (kv
    keeps its data there), with every capability it imports granted; each hint runs as printed
    (its `test` hint is the docs walk-through's, tests/test_readme_commands.py). The scaffold
    is ``wasm``'s too: the hint's build copies it from the build cache."""
    omnicore = Path(sys.executable).parent / "omnicore"
    created = subprocess.run([str(omnicore), "new", "plugin", "hello-kotlin", "--lang", "kotlin"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300, check=True)
    hints = [line.split(":", 1)[1].strip() for line in created.stdout.splitlines()[1:]]
    assert [h.split()[1] for h in hints] == ["new", "build", "call", "test"], created.stdout
    assert "--grant config --grant kv --grant http" in hints[2]
    for hint in hints[:3]:
        done = subprocess.run(hint.replace("omnicore", str(omnicore), 1), shell=True,
                              cwd=tmp_path, capture_output=True, text=True, timeout=900,
                              check=False)
        assert done.returncode == 0, f"{hint}\n{done.stdout}\n{done.stderr}"
    assert json.loads(done.stdout) == {"message": "Hello, Ada!"}
    assert "[info] greeting Ada" in done.stderr

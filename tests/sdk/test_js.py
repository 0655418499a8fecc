"""The JS/TS SDK (sdk/js): its examples and fixtures, built through ``omnicore.toolchains.build``
(QuickJS-ng runtime + pure-Python plugin build; esbuild for TypeScript and npm packages) and
run through the real sandbox.

The host implements only log and config so far; the other namespaces are exercised against
small spec-following host implementations defined here (specs/abi.md §4), which is what the
SDK's wrappers are written against.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.errors import (
    BuildError,
    ConfigError,
    DeadlineExceeded,
    GuestError,
    InputTooLarge,
    MemoryLimitExceeded,
    NeedsGrant,
    OutputTooLarge,
    Trap,
)
from omnicore.sandbox import (
    Limits,
    PluginModule,
    PluginRuntime,
    SandboxEngine,
)
from omnicore.sandbox.wasmbin import custom_sections
from omnicore.toolchains import build, js, scaffold
from omnicore.toolchains.js import npm
from omnicore.toolchains.js import plugin as js_plugin
from omnicore.toolchains.js.rewrite import imports
from tests.sdk.hosting import CONNECTOR_TOKEN, HostedProbe, Upstream, probe_grants, runtime

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent

pytestmark = pytest.mark.skipif(js.check() is not None, reason=f"JS runtime: {js.check()}")


@pytest.fixture(scope="module")
def wasm(out_dir: Path) -> dict[str, Path]:
    """Every JS example plus the fixtures, built once for the module."""
    return {
        "greeter": build(ROOT / "plugins" / "greeter" / "js", out_dir),
        "counter": build(ROOT / "plugins" / "counter" / "ts", out_dir),
        "markdown": build(ROOT / "plugins" / "markdown" / "js", out_dir),
        "caps": build(HERE / "js_capabilities", out_dir, name="js-caps"),
        "edge": build(HERE / "js_edge", out_dir, name="js-edge"),
    }


# --- examples ---------------------------------------------------------------------------


def test_examples_export_named_handlers_and_request_only_what_they_import(
        engine: SandboxEngine, wasm: dict[str, Path]) -> None:
    expected = {"greeter": ("greeter-js", ["greet"]),
                "counter": ("counter-ts", ["count", "reset"]),
                "markdown": ("markdown-js", ["render", "headings"])}
    for key, (name, handlers) in expected.items():
        module = PluginModule.load(engine, wasm[key])
        assert module.name == name
        assert list(module.handlers) == handlers
        # the runtime imports every namespace; the build prunes the ones the source does not
        # import from "omnicore", so the host sees only real requests
        assert module.requested == ({"log", "config", "kv"} if key == "counter"
                                    else {"log", "config"})
        manifest = json.loads(custom_sections(wasm[key].read_bytes(), "omnicore.manifest")[0])
        assert manifest["sdk"]["language"] == "js"
    caps = PluginModule.load(engine, wasm["caps"])
    # every capability but the database connectors (tests/sdk/test_connectors.py has those)
    assert caps.requested == set(js.CAPABILITIES) - {"sql", "redis"}
    edge = PluginModule.load(engine, wasm["edge"])
    assert edge.requested == {"log"}
    assert "_private" not in edge.handlers and "counter" in edge.handlers


def test_greeter_greets_with_configured_greeting_and_logs(
        engine: SandboxEngine, wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["greeter"], {"greeting": "Salut"}) as rt:
        assert json.loads(rt.call("greet", b'{"name": "Ada"}')) == {"message": "Salut, Ada!"}
        assert json.loads(rt.call("greet", b"{}")) == {"message": "Salut, world!"}
        assert [line.message for line in rt.log.lines()] == ["greeting Ada", "greeting world"]
        assert {line.level for line in rt.log.lines()} == {"info"}


def test_greeter_bad_input_is_a_clear_guest_error_not_a_trap(
        engine: SandboxEngine, wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["greeter"]) as rt:
        cases = {b'{"name": ': "InputError: invalid JSON input: ",
                 b"[1, 2]": "InputError: invalid JSON input: expected an object",
                 b"": "InputError: invalid JSON input: empty input",
                 b"\xff\xfe": "InputError: invalid JSON input: ",
                 b'{"name": 42}': "InputError: name must be a string",
                 b'{"name": ""}': "InputError: name must not be empty"}
        for data, message in cases.items():
            with pytest.raises(GuestError) as info:
                rt.call("greet", data)
            assert info.value.guest_message.startswith(message), data
            assert "at greet (plugin.js:" in info.value.guest_message  # the JS stack
            assert info.value.plugin == "greeter-js" and info.value.handler == "greet"
        assert rt.instances_discarded == 0
        assert json.loads(rt.call("greet", b'{"name": "ok"}')) == {"message": "Hello, ok!"}


def test_greeter_needs_config_grant(engine: SandboxEngine, wasm: dict[str, Path]) -> None:
    with pytest.raises(NeedsGrant, match="omnicore:config"):
        runtime(engine, wasm["greeter"], grants=[])


def test_counter_ts_counts_from_configured_start_and_resets(
        engine: SandboxEngine, wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["counter"], {"start": 10}, Limits(pool_size=1)) as rt:
        assert json.loads(rt.call("count", b"")) == {"count": 11}
        assert json.loads(rt.call("count", b'{"by": 5}')) == {"count": 16}
        assert json.loads(rt.call("count", b'{"by": -20}')) == {"count": -4}
        assert json.loads(rt.call("reset", b"")) == {"count": 10}
        assert json.loads(rt.call("count", b"{}")) == {"count": 11}
        with pytest.raises(GuestError, match="by must be an integer"):
            rt.call("count", b'{"by": 1.5}')
        with pytest.raises(GuestError, match="invalid JSON input"):
            rt.call("count", b"{by: 1}")
    # the manifest's config schema (from omnicore.toml) reaches the host, which refuses
    with pytest.raises(ConfigError, match="'ten' is not of type 'integer'"):
        runtime(engine, wasm["counter"], {"start": "ten"})


def test_markdown_renders_with_marked_from_npm(engine: SandboxEngine,
                                               wasm: dict[str, Path]) -> None:
    doc = ("# Title\n\nSome *emphasis* and `code`.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
           "## Zoë's part\n\n- [x] done\n~~gone~~\n")
    with runtime(engine, wasm["markdown"]) as rt:
        html = rt.call("render", doc.encode()).decode()
        assert "<h1>Title</h1>" in html
        assert "<em>emphasis</em>" in html and "<code>code</code>" in html
        assert "<table>" in html and "<td>1</td>" in html  # GFM tables on by default
        assert "<del>gone</del>" in html
        assert json.loads(rt.call("headings", doc.encode())) == [
            {"depth": 1, "text": "Title", "id": "title"},
            {"depth": 2, "text": "Zoë's part", "id": "zoës-part"}]
        assert rt.call("render", b"") == b""
    with runtime(engine, wasm["markdown"], {"gfm": False}) as rt:
        assert "<table>" not in rt.call("render", doc.encode()).decode()


# --- the calling convention -----------------------------------------------------------------


def test_outputs_strings_bytes_json_and_empty(engine: SandboxEngine,
                                              wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["edge"], grants=[]) as rt:
        assert rt.call("echo", "héllo 🌍".encode()) == "héllo 🌍".encode()
        assert rt.call("raw", b"\x00\xff\x10") == b"\x00\xff\x10"  # bytes() is not decoded
        assert json.loads(rt.call("size", "é".encode())) == {"chars": 1, "bytes": 2}
        assert rt.call("nothing", b"x") == b""
        assert json.loads(rt.call("later", b"q")) == {"got": "q"}  # async handlers settle
        with pytest.raises(GuestError, match="not JSON-serialisable"):
            rt.call("nan", b"")


def test_throws_become_guest_errors_with_message_and_stack(engine: SandboxEngine,
                                                           wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["edge"], grants=[]) as rt:
        with pytest.raises(GuestError) as info:
            rt.call("fail", b"")
        assert info.value.guest_message.startswith("TypeError: boom from JS\n")
        assert "at fail (plugin.js:" in info.value.guest_message
        with pytest.raises(GuestError) as info:
            rt.call("fail_value", b"")
        assert info.value.guest_message == "42"  # a thrown non-Error: String(value), no stack
        with pytest.raises(GuestError, match="Error: async boom"):
            rt.call("reject", b"")
        with pytest.raises(GuestError, match="promise never settled"):
            rt.call("pending", b"")
        # stack overflow in JS is a RangeError, not a wasm trap
        with pytest.raises(GuestError, match="RangeError"):
            rt.call("recurse", b"")
        assert rt.instances_discarded == 0
        assert rt.call("echo", b"still fine") == b"still fine"


def test_instance_state_persists_between_calls(engine: SandboxEngine,
                                               wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["edge"], grants=[], limits=Limits(pool_size=1)) as rt:
        assert [rt.call("counter", b"") for _ in range(3)] == [b"1", b"2", b"3"]


def test_snapshot_instances_start_fast_with_their_own_randomness(
        engine: SandboxEngine, wasm: dict[str, Path]) -> None:
    # js-edge's top level calls no host function, so the build pre-initialised it: the
    # exported _initialize only reseeds Math.random, so instances must not share a sequence
    module = PluginModule.load(engine, wasm["edge"])
    assert "omni_js_resume" not in [e.name for e in module.exports]
    seen = set()
    for _ in range(3):
        with runtime(engine, wasm["edge"], grants=[], limits=Limits(pool_size=1)) as rt:
            pair = tuple(json.loads(rt.call("random", b"")))
            assert 0 <= pair[0] < 1 and pair[0] != pair[1]
            seen.add(pair)
    assert len(seen) == 3


def test_top_level_host_calls_run_in_every_instance(tmp_path: Path,
                                                    engine: SandboxEngine) -> None:
    # a top level that reads config must see the operator's config at run time, not the
    # build's stubs: such plugins are not pre-initialised
    path = build_source(tmp_path, 'import { config } from "omnicore";\n'
                                  'const greeting = config.get("greeting", "unset");\n'
                                  'export const get = () => greeting;\n', "toplevel-config")
    with runtime(engine, path, {"greeting": "Ahoy"}) as rt:
        assert rt.call("get", b"") == b"Ahoy"


def test_console_and_log_reach_the_host_log(engine: SandboxEngine,
                                            wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["edge"], grants=[]) as rt:
        assert rt.call("console_log", b"") == b"ok"
        lines = [(line.level, line.message) for line in rt.log.lines()]
        assert ("info", 'via console {"a":1}') in lines and ("warn", "warned") in lines


def test_endless_loop_hits_the_deadline_and_host_keeps_serving(
        engine: SandboxEngine, wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["edge"], grants=[], limits=Limits(timeout_ms=200)) as rt:
        with pytest.raises(DeadlineExceeded):
            rt.call("forever", b"")
        assert rt.call("echo", b"after") == b"after"


def test_memory_hog_hits_the_memory_limit(engine: SandboxEngine,
                                          wasm: dict[str, Path]) -> None:
    limits = Limits(max_memory_bytes=32 << 20, timeout_ms=5000)
    with runtime(engine, wasm["edge"], grants=[], limits=limits) as rt:
        # QuickJS reports malloc failure as a JS "out of memory" error or the allocator traps;
        # either way the call fails typed and the next call works
        with pytest.raises((GuestError, MemoryLimitExceeded, Trap)) as info:
            rt.call("hog", b"")
        if isinstance(info.value, GuestError):
            assert "out of memory" in info.value.guest_message
        assert rt.call("echo", b"alive") == b"alive"


def test_large_inputs_and_outputs_near_the_limits(engine: SandboxEngine,
                                                  wasm: dict[str, Path]) -> None:
    limits = Limits(max_input_bytes=4 << 20, max_output_bytes=4 << 20, timeout_ms=10_000)
    with runtime(engine, wasm["edge"], grants=[], limits=limits) as rt:
        data = ("ü" * ((4 << 20) // 2)).encode()  # exactly the limit, multi-byte UTF-8
        assert len(data) == 4 << 20
        assert rt.call("echo", data) == data
        with pytest.raises(InputTooLarge):
            rt.call("echo", data + b"x")
        assert len(rt.call("big", str(4 << 20).encode())) == 4 << 20
        with pytest.raises(OutputTooLarge):
            rt.call("big", str((4 << 20) + 1).encode())
        assert rt.call("echo", b"small again") == b"small again"


def test_a_handler_the_plugin_did_not_export_is_not_there(engine: SandboxEngine,
                                                          wasm: dict[str, Path]) -> None:
    module = PluginModule.load(engine, wasm["edge"])
    names = [e.name for e in module.exports]
    assert not [n for n in names if n.startswith("omni_h") or n.startswith("omni_js")]


# --- every namespace through the real host -----------------------------------------------


@pytest.fixture(scope="module")
def caps(engine: SandboxEngine, wasm: dict[str, Path],
         upstream: Upstream) -> Iterator[HostedProbe]:
    grants = probe_grants(upstream, publish=("user.*",), max_value_bytes=4000)
    with HostedProbe(engine, wasm["caps"], upstream=upstream, grants=grants,
                     config={"db": {"host": "h1"}, "n": 3, "s": "42"},
                     limits=Limits(pool_size=1, timeout_ms=5000)) as rt:
        yield rt


def call_json(rt: PluginRuntime | HostedProbe, handler: str, data: bytes = b"") -> Any:
    return json.loads(rt.call(handler, data))


def test_kv(caps: HostedProbe) -> None:
    assert call_json(caps, "kv_roundtrip") == {
        "text": "hi", "blob": [0, 255, 7], "obj": {"a": 1}, "big": 3000, "missing": None,
        "incr": [1, 42], "incr_bad": "INVALID",
        "incr_big": [str(2**62), str(2**62), "bigint"],
        "incr_past_number": ["RangeError", str(2**62 + 1)],  # the add was done
        "too_large": "TOO_LARGE",
        "list": ["big", "blob"], "deleted": [True, False]}
    assert caps.kv("obj") == b'{"a":1}' and caps.kv("blob") is None   # as the SDK sent them


def test_mcp_outside_a_tool_call(caps: HostedProbe) -> None:
    assert call_json(caps, "mcp_outside") == {"progress": False, "asked": "UNAVAILABLE",
                                              "sampling": "DENIED"}


def test_memory(caps: HostedProbe) -> None:
    out = call_json(caps, "memory_roundtrip")
    assert out == {"id": out["id"], "found": [[out["id"], "the sky is blue", {"src": "test"}]],
                   "forgot": True, "again": False}


def test_memory_fields(caps: HostedProbe) -> None:
    assert call_json(caps, "memory_fields") == {
        "ada": ["ada ordered a kettle"], "near_bob": ["bob ordered a kettle"],
        "nan": "INVALID", "too_important": "INVALID", "bad_filter": "INVALID"}
    stored = caps.app.memory.for_plugin(caps.name).recall("kettle", [1], 10, {"user": "ada"})
    assert [(m.text, m.metadata) for m in stored] == [("ada ordered a kettle", {"user": "ada"})]


def test_vectors(caps: HostedProbe) -> None:
    assert call_json(caps, "vectors_roundtrip") == {
        "hits": [{"id": "a", "score": pytest.approx(0.993884, abs=1e-6),
                  "metadata": {"title": "A"}}],
        "missing": ["NOT_FOUND",
                    "vectors.search failed: NOT_FOUND (no vector collection 'nope')"],
        "deleted": True, "mismatch": "INVALID"}


def test_vectors_query(caps: HostedProbe) -> None:
    out = call_json(caps, "vectors_query")
    assert out == {"en": ["en"], "fr": [], "all": ["en", "de"],
                   "bad": ["INVALID", "vectors.query failed: INVALID (filter value of 'lang' "
                           "must be a string, number or boolean)"]}


def test_tasks(caps: HostedProbe) -> None:
    before = time.time()
    out = call_json(caps, "tasks_roundtrip")
    after = time.time()
    assert out == {"id": out["id"], "unknown": "NOT_FOUND", "cancel": [True, False],
                   "cancel_unknown": "NOT_FOUND"}
    # What the SDK sent, as the real host queued it.
    task = next(t for t in caps.tasks() if t.id == out["id"])
    assert (task.handler, task.payload, task.state) == ("config_all", b'{"n":1}',
                                                         "cancelled")
    assert before + 0.25 <= task.run_at <= after + 0.25


def test_http_and_connectors(caps: HostedProbe, upstream: Upstream) -> None:
    upstream.seen.clear()
    out = call_json(caps, "http_roundtrip", json.dumps({"base": upstream.url}).encode())
    assert out == {"get": [200, True, "hello /hello"], "post": "echo: ping",
                   "conn": "hello /via-connector",
                   "denied": [True, "DENIED", -2, "http.request failed: DENIED (https://"
                              "example.com:443 is not in the grant's allow_hosts)"]}
    get, post, via = upstream.seen   # what the SDK sent; the connector's token is the host's
    assert (get.method, get.path) == ("GET", "/hello")
    assert (post.method, post.body, post.headers["content-type"]) == ("POST", b"ping",
                                                                      "text/plain")
    assert (via.path, via.headers["authorization"]) == ("/via-connector",
                                                        f"Bearer {CONNECTOR_TOKEN}")


def test_events(caps: HostedProbe) -> None:
    assert call_json(caps, "events_roundtrip") == {"denied": "DENIED"}
    assert ("user.created", b'{"id":7}') in caps.events()   # as the real host logged it


def test_secrets(caps: HostedProbe) -> None:
    assert call_json(caps, "secrets_roundtrip") == {"token": "s3cr3t", "unset": None,
                                                    "hidden": "DENIED"}


def test_config_through_the_real_host(caps: HostedProbe) -> None:
    section = {"db": {"host": "h1"}, "n": 3, "s": "42"}
    assert call_json(caps, "config_all") == {
        "all": section, "nested": "h1", "num": 3, "str_num": "42", "deep": "h1",
        "whole": section, "missing": "fallback", "missing_value": 7}


_MEMORY_VECTORS_TEST = """import assert from "node:assert/strict";
import { test } from "node:test";
import { TestHost, useTestHost } from "omnicore/testing";
import { memory, vectors, Tier } from "omnicore";

const code = (fn) => { try { fn(); return "ok"; } catch (e) { return e.code ?? e.message; } };

test("memory and vectors in the Node test host", () => {
  const host = useTestHost(new TestHost());
  const ada = memory.remember(Tier.SHORT, "ada likes tea", { metadata: { user: "ada" },
    importance: 0.9, vector: [1, 0] });
  memory.remember(Tier.SHORT, "bob likes tea", { metadata: { user: "bob" }, vector: [0, 1] });
  assert.deepEqual(memory.recall("tea", { filter: { user: "bob" } }).map((m) => m.text),
    ["bob likes tea"]);
  assert.equal(memory.recall("tea", { vector: [0, 1], limit: 1 })[0].text, "bob likes tea");
  assert.deepEqual(host.memories.map((m) => m.text).sort(), ["ada likes tea", "bob likes tea"]);
  assert.equal(code(() => memory.remember(0, "x", { vector: [1, 2, 3] })), "INVALID");
  assert.equal(code(() => memory.remember(0, "x", { importance: 2 })), "INVALID");
  assert.equal(code(() => memory.recall("x", { filter: { user: ["a"] } })), "INVALID");
  assert.equal(memory.forget(ada), true);
  assert.equal(memory.forget(ada), false);
  vectors.upsert("c", "en", [1, 0], { lang: "en" });
  vectors.upsert("c", "de", [1, 0.1], { lang: "de" });
  assert.deepEqual(vectors.query("c", [1, 0], 5, { lang: "de" }).map((h) => h.id), ["de"]);
  assert.deepEqual(vectors.search("c", [1, 0], 1).map((h) => h.id), ["en"]);
  assert.equal(code(() => vectors.upsert("c", "x", [1])), "INVALID");
  assert.equal(code(() => vectors.search("nope", [1, 0])), "NOT_FOUND");
  try { vectors.search("nope", [1, 0]); } catch (e) {
    assert.equal(e.message, "vectors.search failed: NOT_FOUND (no vector collection 'nope')");
  }
  assert.equal(vectors.delete("c", "en"), true);
  assert.equal(code(() => vectors.delete("nope", "x")), "NOT_FOUND");
});
"""


def test_node_test_host_has_memory_and_vectors(tmp_path: Path) -> None:
    # Node's tests (sdk/js/testing) are answered by omnicore's test host: the same wrappers
    # as the wasm host above meet the capabilities' own code.
    (tmp_path / "plugin.js").write_text("export const x = 1;\n")
    (tmp_path / "plugin.test.js").write_text(_MEMORY_VECTORS_TEST)
    tests = js.unit_tests(tmp_path)
    done = subprocess.run(tests.argv, env=tests.env, cwd=tests.cwd, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0 and "# pass 1" in done.stdout, done.stdout + done.stderr


_REAL_HOST_TEST = """import assert from "node:assert/strict";
import { test } from "node:test";
import { TestHost, useTestHost } from "omnicore/testing";
import { http, mcp, tasks } from "omnicore";

const code = (fn) => { try { fn(); return "ok"; } catch (e) { return e.code ?? e.message; } };

test("the real host's answers", () => {
  const host = useTestHost(new TestHost());
  assert.equal(code(() => http.get("https://example.com/")), "UNAVAILABLE");
  assert.equal(code(() => mcp.ask("elicitation/create", {})), "DENIED");
  assert.equal(tasks.enqueue("work", "p"), 1);  // the entry's exports are its handlers
  assert.equal(code(() => tasks.enqueue("nope", "p")), "NOT_FOUND");
  assert.deepEqual(host.tasks.map((t) => t.handler), ["work"]);
});
"""

_DYING_TEST = """import { test } from "node:test";
import { TestHost, useTestHost } from "omnicore/testing";

test("a test process that dies takes its test host with it", () => {
  useTestHost(new TestHost());
  process.kill(process.pid, "SIGKILL");
});
"""


def test_node_tests_meet_the_real_hosts_answers_and_end_their_server(tmp_path: Path) -> None:
    (tmp_path / "plugin.js").write_text("export function work() {}\nexport { work as x };\n")
    (tmp_path / "plugin.test.js").write_text(_REAL_HOST_TEST)
    (tmp_path / "dies.test.js").write_text(_DYING_TEST)
    tests = js.unit_tests(tmp_path)
    # The server's folder (and so its command line) is under TMPDIR.
    env = {**tests.env, "TMPDIR": str(tmp_path)}
    done = subprocess.run(tests.argv, env=env, cwd=tests.cwd, capture_output=True,
                          text=True, timeout=120, check=False)
    assert "# pass 1" in done.stdout and "# fail 1" in done.stdout, done.stdout + done.stderr

    def servers() -> list[str]:
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                text = cmdline.read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "testhost.served" in text and str(tmp_path) in text:
                found.append(text)
        return found

    deadline = time.monotonic() + 10
    while servers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not servers()


# --- the build ---------------------------------------------------------------------------


def build_source(tmp_path: Path, source: str, name: str = "snippet") -> Path:
    src = tmp_path / f"{name}.js"
    src.write_text(source, encoding="utf-8")
    return build(src, tmp_path / "out", name=name)


def test_plain_js_needs_no_node(tmp_path: Path, engine: SandboxEngine,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no node, npm, esbuild or clang
    monkeypatch.setattr(npm, "esbuild", lambda: None)  # not even the cached one
    # text that looks like an import in a comment or string does not call for a bundler
    path = build_source(tmp_path, '// unlike `import { x } from "./x.js"`, this needs nothing\n'
                                  'const doc = "import y from \'y\'";\n'
                                  "export const twice = (s) => s + s;\n")
    with runtime(engine, path, grants=[]) as rt:
        assert rt.call("twice", b"ab") == b"abab"


def test_syntax_and_load_errors_fail_the_build(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="SyntaxError"):
        build_source(tmp_path, "export function f( {\n", "syntax")
    with pytest.raises(BuildError, match="Error: top-level boom"):
        build_source(tmp_path, "throw new Error('top-level boom');\nexport function f() {}\n",
                     "toplevel")
    with pytest.raises(BuildError, match="exports no handler"):
        build_source(tmp_path, "const x = 1;\n", "nohandlers")
    with pytest.raises(BuildError, match="ran out of time"):
        build_source(tmp_path, "for (;;) {}\nexport function f() {}\n", "loop")
    with pytest.raises(BuildError, match="named 'memory'"):
        build_source(tmp_path, "export function memory() {}\n", "memname")
    with pytest.raises(BuildError, match="Could not resolve \"left-pad\""):
        # a bare import in a file built without a project: esbuild cannot resolve it either
        build_source(tmp_path, 'import pad from "left-pad";\nexport const f = () => pad;\n',
                     "bare")


def test_imports_are_bundled_or_refused_clearly(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "util.js").write_text("export const shout = (s) => s.toUpperCase();\n")
    (tmp_path / "proj" / "plugin.js").write_text(
        'import { shout } from "./util.js";\nexport function loud(s) { return shout(s); }\n')
    monkeypatch.chdir(tmp_path)  # relative paths, as `omnicore build proj` passes them
    built = build(Path("proj"), Path("out"))  # bundled with esbuild
    assert PluginModule.inspect(built)["ok"]
    assert PluginModule.inspect(built)["handlers"] == ["loud"]
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(npm, "esbuild", lambda: None)
    with pytest.raises(BuildError, match="need esbuild"):
        build(tmp_path / "proj", tmp_path / "out2", force=True)


def test_capability_detection() -> None:
    assert js.used_capabilities('import { kv, log as l } from "omnicore";') == {"log", "kv"}
    assert js.used_capabilities("import * as o from 'omnicore'; o.http.get(u); o.kv;") == {
        "log", "http", "kv"}
    assert js.used_capabilities("import * as o from 'omnicore'; o[name]") == set(js.CAPABILITIES)
    assert js.used_capabilities("const x = 1;") == {"log"}
    # the namespace object escaping (destructuring, passing it on) links everything
    assert js.used_capabilities("import * as o from 'omnicore'; const { kv } = o;") == set(
        js.CAPABILITIES)
    assert js.used_capabilities("const m = await import('omnicore');") == set(js.CAPABILITIES)


def test_unlinked_capability_throws_a_clear_js_error(tmp_path: Path, engine: SandboxEngine,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # The build links what it sees imported; should it ever miss a use, the runtime's mask
    # check throws instead of reaching the trapping stub. Force a miss to prove it.
    monkeypatch.setattr(js_plugin, "used_capabilities", lambda source: {"log"})
    path = build_source(tmp_path, 'import { kv } from "omnicore";\n'
                                  'export function g() { return kv.get("x"); }\n', "unlinked")
    assert not {i.module for i in imports(path.read_bytes())} & {"omnicore:kv"}
    with runtime(engine, path, grants=[]) as rt:
        with pytest.raises(GuestError, match=r"omnicore:kv is not linked into this plugin"):
            rt.call("g", b"")
        assert rt.instances_discarded == 0


def test_too_many_handlers_and_too_big_sources_are_refused(tmp_path: Path) -> None:
    many = "".join(f"export function h{i}() {{ return {i}; }}\n" for i in range(65))
    with pytest.raises(BuildError, match="at most 64 handlers"):
        build_source(tmp_path, many, "many")
    with pytest.raises(BuildError, match="holds at most"):
        build_source(tmp_path, "export const f = () => 1;\n//" + "x" * (5 << 20), "huge")


@pytest.mark.parametrize("lang", ["js", "ts"])
def test_scaffold_builds_and_runs(lang: str, tmp_path: Path, engine: SandboxEngine) -> None:
    dest = tmp_path / f"hello-{lang}"
    scaffold(dest, f"hello-{lang}", lang)
    assert (dest / "omnicore.toml").exists() and (dest / f"plugin.{lang}").exists()
    path = build(dest, tmp_path / "out")
    with runtime(engine, path, {"greeting": "Hey"}) as rt:
        assert json.loads(rt.call("greet", b'{"name": "Bo"}')) == {"message": "Hey, Bo!"}
        assert json.loads(rt.call("greet", b"")) == {"message": "Hey, world!"}
    with pytest.raises(BuildError, match="invalid plugin name"):
        scaffold(tmp_path / "bad", "Bad Name", lang)


def test_detect_and_check() -> None:
    assert js.check() is None
    assert js.detect(ROOT / "plugins" / "greeter" / "js")
    assert js.detect(ROOT / "plugins" / "counter" / "ts")
    assert not js.detect(ROOT / "plugins" / "greeter")
    assert not js.detect(ROOT / "plugins" / "greeter" / "go")
    assert js.LANGUAGE == "js" and js.EXTENSIONS == ("js", "ts")


def _tsc() -> Path | None:
    found = ROOT / "build" / "js-tools" / "node_modules" / ".bin" / "tsc"
    return found if found.exists() else None


@pytest.mark.skipif(_tsc() is None, reason="tsc not installed (npm i --prefix build/js-tools "
                                           "typescript)")
def test_typescript_types_check(tmp_path: Path) -> None:
    import subprocess

    config = {"compilerOptions": {"target": "ES2023", "module": "ES2022", "strict": True,
                                  "moduleResolution": "bundler", "noEmit": True,
                                  "paths": {"omnicore": [str(ROOT / "sdk" / "js" / "index.d.ts")]}},
              "files": [str(HERE / "js_types" / "check.ts"),
                        str(ROOT / "plugins" / "counter" / "ts" / "plugin.ts")]}
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    proc = subprocess.run([str(_tsc()), "-p", str(tmp_path / "tsconfig.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(_tsc() is None, reason="tsc not installed (npm i --prefix build/js-tools "
                                           "typescript)")
def test_typescript_handlers_are_described_from_their_types(tmp_path: Path) -> None:
    (tmp_path / "plugin.ts").write_text("""
import { json, type Json } from "omnicore";

interface Item {
  /** What it is called. */
  name: string;
  tags?: string[];
  kind: "book" | "film";
  /** Anything else, by key. */
  extra: { [key: string]: number };
  parent: Item | null;
}

/**
 * Stores an item.
 *
 * Later paragraphs are for readers of the code.
 * @title Store
 * @destructive
 */
export function store(input: Json<Item>): { id: number; ok: boolean } {
  const item = json(input);
  return { id: item.name.length, ok: true };
}

/** Answers the raw text. */
export async function raw(input: string): Promise<{ text: string }> {
  return { text: input };
}

export function list(_input: string): string[] { return []; }
""")
    described = js.handler_descriptions(tmp_path)
    assert set(described) == {"store", "raw"}  # list: no doc, no object types
    store = described["store"]
    assert (store["description"], store["title"], store["destructive"]) == \
        ("Stores an item.", "Store", True)
    item = store["input_schema"]
    assert item["required"] == ["name", "kind", "extra", "parent"]
    assert item["properties"]["name"] == {"type": "string", "description": "What it is called."}
    assert item["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
    assert item["properties"]["kind"] == {"type": "string", "enum": ["book", "film"]}
    assert item["properties"]["extra"]["additionalProperties"] == {"type": "number"}
    assert item["properties"]["parent"] == {}  # itself below the first level: anything
    assert store["output_schema"] == {"type": "object", "required": ["id", "ok"], "properties": {
        "id": {"type": "number"}, "ok": {"type": "boolean"}}}
    assert described["raw"] == {"description": "Answers the raw text.", "output_schema": {
        "type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}}
    # Plain JavaScript has no types: it is described in omnicore.toml.
    (tmp_path / "plugin.ts").rename(tmp_path / "plugin.js")
    assert js.handler_descriptions(tmp_path) == {}


def test_types_declare_exactly_what_the_runtime_exports() -> None:
    import re

    def names(text: str) -> set[str]:
        return set(re.findall(r"^\s*export (?:const|function|class) (\w+)", text, re.M))

    api = names((ROOT / "sdk" / "js" / "runtime" / "api.js").read_text())
    types = names((ROOT / "sdk" / "js" / "index.d.ts").read_text())
    assert api == types
    assert set(js.CAPABILITIES) <= api

"""The C SDK (sdk/c/omnicore.h): its examples and a probe plugin, built with clang for
wasm32-wasi through ``omnicore.toolchains.build`` and run through the real sandbox.

The probe runs on the real host (``hosting.HostedProbe``: every capability of specs/abi.md §4
with its real storage, http to a loopback server), so a wrong import type or a broken buffer
protocol fails here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnicore.errors import (
    BuildError,
    ConfigError,
    GuestError,
    InputTooLarge,
    NeedsGrant,
    OutputTooLarge,
    Trap,
)
from omnicore.sandbox import Limits, PluginModule, SandboxEngine
from omnicore.toolchains import build, c, language_for, scaffold
from tests.sdk.hosting import CONNECTOR_TOKEN, HostedProbe, Upstream, call_text, runtime

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).parent / "probe_c"
JSON_TYPES = {"null": 1, "bool": 2, "number": 3, "string": 4, "array": 5, "object": 6}

pytestmark = pytest.mark.skipif(c.check() is not None, reason=f"C: {c.check()}")


@pytest.fixture(scope="module")
def wasm(out_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    built = {name: build(ROOT / "plugins" / name / "c", out_dir)
             for name in ("greeter", "counter")}
    fresh = tmp_path_factory.mktemp("scaffold") / "hello-c"
    scaffold(fresh, "hello-c", "c")
    built["scaffold"] = build(fresh, out_dir)
    built["probe"] = build(PROBE, out_dir, name="c-probe")
    return built


# -- examples -------------------------------------------------------------------------------

def test_examples_are_reactors_that_request_only_what_they_use(
        engine: SandboxEngine, wasm: dict[str, Path]) -> None:
    for name, handlers in {"greeter": ["greet"], "counter": ["count", "reset"]}.items():
        module = PluginModule.load(engine, wasm[name])
        assert module.name == f"{name}-c"
        assert list(module.handlers) == handlers
        namespaces = {ns for ns in module.imports_by_capability() if ns.startswith("omnicore:")}
        assert namespaces <= {"omnicore:log", "omnicore:config", "omnicore:kv"}
        assert "omnicore:config" in namespaces
        assert ("omnicore:kv" in namespaces) == (name == "counter")
        assert any(e.name == "_initialize" for e in module.exports)


def test_greeter_uses_config_and_logs_through_the_host(engine: SandboxEngine,
                                                       wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["greeter"], config={"greeting": "Ahoy"}) as rt:
        assert json.loads(rt.call("greet", b'{"name": "Ada"}')) == {"message": "Ahoy, Ada!"}
        assert json.loads(rt.call("greet", b'{"name": "\\ud83c\\udf0d\\u00e9"}')) == {
            "message": "Ahoy, \U0001f30d\u00e9!"}
        assert [line.message for line in rt.log.lines()] == ["greeting Ada",
                                                             "greeting \U0001f30d\u00e9"]


def test_greeter_bad_input_is_a_guest_error_and_the_instance_serves_on(
        engine: SandboxEngine, wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["greeter"]) as rt:
        for data, message in [(b"{", "invalid JSON input: syntax error at byte 1"),
                              (b"", "invalid JSON input"), (b"{} x", "invalid JSON input"),
                              (b"[]", "invalid JSON input: expected an object"),
                              (b'{"name": 1}', "name must be a string"),
                              (b'{"name": ""}', "name must not be empty"),
                              (b'{"name": "\\udc00"}', "lone surrogate")]:
            with pytest.raises(GuestError) as info:
                rt.call("greet", data)
            assert message in info.value.guest_message, data
        assert json.loads(rt.call("greet", b'{"name":"B"}')) == {"message": "Hello, B!"}
        assert rt.stats()["discarded"] == 0


def test_greeter_without_config_grant_needs_grant(engine: SandboxEngine,
                                                  wasm: dict[str, Path]) -> None:
    with pytest.raises(NeedsGrant):
        runtime(engine, wasm["greeter"], grants={})


def test_counter_counts_from_configured_start_and_resets(engine: SandboxEngine,
                                                         wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["counter"], config={"start": 40},
                 limits=Limits(pool_size=1)) as rt:
        assert json.loads(rt.call("count", b"{}")) == {"count": 41}
        assert json.loads(rt.call("count", b'{"by": 5}')) == {"count": 46}
        assert json.loads(rt.call("count", b'{"by": -50}')) == {"count": -4}
        assert json.loads(rt.call("reset", b"")) == {"count": 40}
        for bad in (b'{"by": "x"}', b'{"by": 1.5}', b'{"by": 1e3}',
                    b'{"by": 9223372036854775808}'):
            with pytest.raises(GuestError, match="by must be an integer"):
                rt.call("count", bad)
        with pytest.raises(GuestError, match="invalid JSON input"):
            rt.call("count", b"{by}")
        with pytest.raises(GuestError, match="counter overflow"):
            rt.call("count", b'{"by": 9223372036854775807}')
        assert json.loads(rt.call("count", b'{"by": -9223372036854775808}')) == {
            "count": 40 - 2**63}
    with pytest.raises(ConfigError, match="start"):
        runtime(engine, wasm["counter"], config={"start": "ten"})


def test_scaffolded_plugin_builds_and_runs(engine: SandboxEngine, wasm: dict[str, Path]) -> None:
    with runtime(engine, wasm["scaffold"], config={"greeting": "Hi"}) as rt:
        assert rt.module.name == "hello-c"
        assert json.loads(rt.call("greet", b'{"name": "Sam"}')) == {"message": "Hi, Sam!"}
        with pytest.raises(GuestError, match="name must be a string"):
            rt.call("greet", b'{"name": 3}')


# -- the SDK through the probe --------------------------------------------------------------

def test_handler_error_message_and_panic(probe: HostedProbe) -> None:
    rt = probe
    with pytest.raises(GuestError) as info:
        rt.call("fail", "nope: ünïcode".encode())
    assert info.value.guest_message == "nope: ünïcode"
    before = rt.stats()["discarded"]
    with pytest.raises(Trap):
        rt.call("boom", b"bad data")
    assert rt.stats()["discarded"] == before + 1
    assert any(line.level == "error" and line.message == "panic: boom with bad data"
               for line in rt.log.lines())
    assert call_text(rt, "echo", b"after") == "after"


def test_large_input_round_trips_and_limits_refuse(engine: SandboxEngine,
                                                   wasm: dict[str, Path]) -> None:
    limit = 4 * 1024 * 1024
    with HostedProbe(engine, wasm["probe"],
                     limits=Limits(max_input_bytes=limit, max_output_bytes=limit)) as rt:
        big = bytes(range(256)) * (limit // 256)
        assert rt.call("echo", big) == big
        with pytest.raises(InputTooLarge):
            rt.call("echo", big + b"!")
        with pytest.raises(OutputTooLarge):
            rt.call("big_output", str(limit + 1).encode())
        assert len(rt.call("big_output", str(limit).encode())) == limit


def test_outputs_are_freed_on_the_next_call(engine: SandboxEngine,
                                            wasm: dict[str, Path]) -> None:
    with HostedProbe(engine, wasm["probe"],
                     limits=Limits(max_memory_bytes=8 * 1024 * 1024, pool_size=1)) as rt:
        for _ in range(300):  # 75 MiB in total if outputs leaked
            assert len(rt.call("big_output", b"262144")) == 262144
        assert rt.stats()["discarded"] == 0
        # malloc returns NULL past the limit: a clean guest error, not a trap.
        with pytest.raises(GuestError, match="out of memory for 16777216 bytes"):
            rt.call("big_output", str(16 * 1024 * 1024).encode())


def test_log_levels_enabled_and_long_lines(probe: HostedProbe) -> None:
    rt = probe
    rt.log.clear()
    assert call_text(rt, "logging") == "debug=0 info=1"
    assert [(line.level, line.message) for line in rt.log.lines()] == [
        ("info", "i"), ("warn", "w2"), ("error", "e"), ("info", "L" * 600)]


def test_config_get_dotted_missing_and_all(probe: HostedProbe) -> None:
    rt = probe
    whole = '{"db":{"host":"h","port":5432}}'
    assert call_text(rt, "config_probe", b"db.host") == f"value=ok(h) all=ok({whole}) "
    assert call_text(rt, "config_probe", b"db.port") == f"value=ok(5432) all=ok({whole}) "
    assert call_text(rt, "config_probe", b"nope") == f"value=err(-1,) all=ok({whole}) "


def test_kv_wrappers_retry_large_values(probe: HostedProbe) -> None:
    rt = probe
    before = rt.calls["kv.get"]
    assert call_text(rt, "kv_probe", b"v" * 1000) == (
        'len=1000 hits=5,3 missing=err(-1,) keys=ok(["user:a \\"q\\"","user:b"]) '
        "deleted=1,0 not_int=-3 too_big=-6")
    assert rt.calls["kv.get"] - before == 3  # big twice (retry) + absent once
    assert rt.kv("hits") == b"3" and rt.kv("big") is None


def test_secrets_http_events(probe: HostedProbe, upstream: Upstream) -> None:
    rt = probe
    assert call_text(rt, "secrets_probe") == "token=ok(s3cr3t) unset=err(-1,) hidden=err(-2,) "
    upstream.seen.clear()
    assert call_text(rt, "http_probe", upstream.url.encode()) == (
        "post=201:POST:echo: payload via=200:GET:hello /repos/x "
        "denied=err(-2,DENIED: https://denied.example:443 is not in the grant's allow_hosts) ")
    post, get = upstream.seen   # what the SDK sent; the connector's token is the host's
    assert (post.path, post.headers["x-a"], post.body) == ("/items", "1", b"payload")
    assert (get.path, get.headers["authorization"]) == ("/repos/x", f"Bearer {CONNECTOR_TOKEN}")
    assert call_text(rt, "events_probe", b"{}") == "published"
    assert rt.events()[-1] == ("order.created", b"{}")   # what the SDK sent, on the host


def test_tasks_memory_vectors(probe: HostedProbe) -> None:
    rt = probe
    before = time.time()
    tasks = call_text(rt, "tasks_probe")
    after = time.time()
    task_id = int(tasks.split()[0].removeprefix("id="))
    assert tasks.split(" ", 1)[1] == "cancel=1,0 unknown=-1 bad_handler=-1"
    [task] = rt.tasks()
    assert (task.id, task.handler, task.payload, task.state) == (task_id, "echo", b"later",
                                                                 "cancelled")
    assert before + 0.010 <= task.run_at <= after + 0.010   # delay_ms 10
    memory = call_text(rt, "memory_probe")
    hits = json.loads(memory.split("hits=ok(")[1].split(") forget=")[0])
    assert [h["text"] for h in hits] == ['likes "green" tea']
    assert memory.endswith("forget=1,0")
    vectors = call_text(rt, "vectors_probe")
    assert vectors.startswith("mismatch=-3 search=ok(")
    search = json.loads(vectors.split("search=ok(")[1].split(") missing=")[0])
    assert search == [{"id": "a", "score": pytest.approx(1 / 1.0625 ** 0.5, abs=1e-6),
                       "metadata": {"t": 1}}]
    assert "missing=err(-1,NOT_FOUND: no vector collection 'zz')" in vectors
    assert vectors.endswith("delete=1,0 no_coll=-1")


def fields(out: str) -> dict[str, str]:
    """The probe's ``key=value`` lines."""
    return dict(line.split("=", 1) for line in out.splitlines())


def test_memory_fields_and_json_floats(probe: HostedProbe) -> None:
    out = fields(call_text(probe, "memory_fields"))
    assert out["ids"] == "1"
    ada = json.loads(out["ada"].removeprefix("ok(").removesuffix(")"))
    assert [(m["text"], m["metadata"]) for m in ada] == [("ada ordered a blue kettle",
                                                          {"user": "ada"})]
    [near] = json.loads(out["near_bob"].removeprefix("ok(").removesuffix(")"))
    assert near["text"] == "bob ordered a red kettle"
    assert out["nan"] == "-3" and out["nan_untouched"] == "1"
    assert out["importance"] == "-3"


def test_vectors_query_filters_by_metadata(probe: HostedProbe) -> None:
    out = fields(call_text(probe, "vectors_query"))
    en = json.loads(out["en"].removeprefix("ok(").removesuffix(")"))
    assert [h["id"] for h in en] == ["en1", "en2"]
    assert out["fr"] == "ok([])"
    assert [h["id"] for h in json.loads(out["all"].removeprefix("ok(").removesuffix(")"))] == [
        "en1"]
    assert out["bad"] == "err(-3,INVALID: the filter must be a JSON object)"


def test_json_reader_members(probe: HostedProbe) -> None:
    rt = probe
    doc = {"s": "a\"b\\c\n\u00e9\U0001f30d", "i": 42, "f": 1.5, "big": 2**63, "neg": -2**63,
           "b": True, "n": None, "a": [1, {"s": "inner"}], "o": {"i": 1}}
    out = call_text(rt, "json_probe", json.dumps(doc).encode())
    t = JSON_TYPES
    assert out == (f's:1/{t["string"]}="a\\"b\\\\c\\n\u00e9\U0001f30d" i:1/{t["number"]}=42 '
                   f'f:1/{t["number"]} big:1/{t["number"]} neg:1/{t["number"]}={-2**63} '
                   f'b:1/{t["bool"]} n:1/{t["null"]} a:1/{t["array"]} o:1/{t["object"]} '
                   f"missing:0/0 ")
    escaped_key = b'{"\\u0073": "by escape", "s": "second"}'
    assert call_text(rt, "json_probe", escaped_key).startswith('s:1/4="by escape"')


JSON_ALPHABET = '{}[]",:0123456789.eE+- \t\ntruefalsn\\u/x\u00e9'
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=4),
    max_leaves=12)


def python_accepts(text: str) -> bool:
    def refuse(name: str) -> None:
        raise ValueError(name)

    try:
        json.loads(text, parse_constant=refuse)
    except ValueError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=JSON_ALPHABET, max_size=24) | json_values.map(json.dumps))
def test_json_reader_agrees_with_python(probe: HostedProbe,
                                        text: str) -> None:
    rt = probe
    try:
        out = call_text(rt, "json_valid", text.encode())
    except GuestError:
        accepted = False
    else:
        accepted = True
        value = json.loads(text)
        kind = ("null" if value is None else "bool" if isinstance(value, bool) else
                "number" if isinstance(value, int | float) else "string" if isinstance(value, str)
                else "array" if isinstance(value, list) else "object")
        assert out == f"ok:{JSON_TYPES[kind]}"
    assert accepted == python_accepts(text), text


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans())
def test_json_reader_iterates_and_decodes_like_python(probe: HostedProbe,
                                                      value: Any, ascii_only: bool) -> None:
    # ensure_ascii turns non-ASCII into \uXXXX escapes (surrogate pairs above the BMP).
    text = json.dumps(value, ensure_ascii=ascii_only, indent=1 if ascii_only else None)
    assert json.loads(call_text(probe, "json_reencode", text.encode())) == value


def test_json_iteration_of_empty_and_scalar_values(probe: HostedProbe) -> None:
    rt = probe
    for text in ["[]", "{}", "[ ]", "{ }", '[[], {}, [[]], ""]', "42", '"x"', "null"]:
        assert json.loads(call_text(rt, "json_reencode", text.encode())) == json.loads(text)


def test_json_reader_refuses_deep_nesting(probe: HostedProbe) -> None:
    rt = probe
    assert call_text(rt, "json_valid", b"[" * 64 + b"]" * 64) == "ok:5"
    with pytest.raises(GuestError, match="invalid at byte"):
        rt.call("json_valid", b"[" * 65 + b"]" * 65)
    with pytest.raises(GuestError, match="invalid at byte"):
        rt.call("json_valid", b"[" * 100_000)  # no stack overflow: refused at depth 64


# -- the toolchain --------------------------------------------------------------------------

def test_detect_check_and_single_file_plugins(tmp_path: Path, out_dir: Path,
                                              engine: SandboxEngine) -> None:
    assert c.check() is None
    assert language_for(ROOT / "plugins" / "greeter" / "c") == "c"
    assert not c.detect(ROOT / "plugins" / "greeter" / "rust" / "src")
    single = tmp_path / "solo.c"
    shutil.copy(PROBE / "probe.c", single)
    path = build(single, out_dir)
    assert path.name == "solo.wasm"
    with HostedProbe(engine, path) as rt:
        assert call_text(rt, "echo", b"solo") == "solo"


def test_multi_file_plugin_shares_one_runtime(tmp_path: Path, out_dir: Path,
                                              engine: SandboxEngine) -> None:
    # The header's runtime symbols are weak: including it from two files must link, and the
    # output slot must be shared (each call frees the previous call's output, whoever made it).
    src = tmp_path / "multi"
    src.mkdir()
    (src / "a.c").write_text('#include "omnicore.h"\nint twice(int);\n'
                             'OMNI_HANDLER(a, input) { return omni_error("a%d", '
                             "twice((int)input.len)); }\n")
    (src / "b.c").write_text('#include "omnicore.h"\nint twice(int x) { return 2 * x; }\n'
                             "OMNI_HANDLER(b, input) { return omni_ok(input.ptr, input.len); }\n")
    with runtime(engine, build(src, out_dir), grants={},
                 limits=Limits(max_memory_bytes=4 * 1024 * 1024, pool_size=1)) as rt:
        assert set(rt.handlers) == {"a", "b"}
        for _ in range(100):
            assert rt.call("b", b"y" * 200_000) == b"y" * 200_000
            with pytest.raises(GuestError, match=r": a6$"):
                rt.call("a", b"xyz")


@pytest.mark.parametrize("flags", [
    ["-x", "c", "-std=c99", "-Wpedantic"],
    ["-x", "c", "-std=c17", "-Wpedantic"],
    # The probe's `omni_buf b = {0}` is idiomatic C; C++ -Wextra flags it, the header is clean.
    ["-x", "c++", "-std=c++17", "-fno-exceptions", "-nostdlib++",
     "-Wno-missing-field-initializers"],
], ids=["c99", "c17", "c++17"])
def test_header_is_warning_free_under_strict_flags(tmp_path: Path, flags: list[str]) -> None:
    clang = shutil.which("clang")
    assert clang is not None
    proc = subprocess.run(
        [clang, *c.FLAGS, "-Wall", "-Wextra", "-Wconversion", "-Wshadow", "-Werror", *flags,
         f"-I{c.sdk_dir()}", "-o", str(tmp_path / "p.wasm"), str(PROBE / "probe.c")],
        capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr


def test_compile_errors_are_build_errors_with_clang_output(tmp_path: Path,
                                                           out_dir: Path) -> None:
    src = tmp_path / "broken"
    scaffold(src, "broken", "c")
    plugin = src / "plugin.c"
    plugin.write_text(plugin.read_text().replace("omni_buf_free(&message);",
                                                 "omni_buf_frees(&message);"))
    with pytest.raises(BuildError) as info:
        build(src, out_dir)
    assert "omni_buf_frees" in str(info.value) and info.value.toolchain == "c"


def test_scaffold_refuses_bad_names(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="invalid plugin name"):
        scaffold(tmp_path / "x", "-bad", "c")

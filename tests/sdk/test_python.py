"""Python plugins (sdk/python, toolchains/python.py): real plugins built by componentize-py
at test time, run by a real host through ``app.plugins.call`` and ``omnicore call``, using
log, config and kv under grants, refused without them, and held by the same limits as
every plugin (an endless loop by the deadline, a memory bomb by the memory limit)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicore.app import OmniApp
from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import (
    BuildError,
    DeadlineExceeded,
    GuestError,
    MemoryLimitExceeded,
    NeedsGrant,
)
from omnicore.sandbox import PluginModule, SandboxEngine
from omnicore.sandbox.component import ComponentModule, ComponentRuntime
from omnicore.sandbox.limits import Limits
from omnicore.toolchains import python, scaffold, unit_tests
from tests.compiler import BASELINE, ENVIRON
from tests.component_fixtures import PYTHON_SOURCES, python_plugin
from tests.host_fixtures import echo_wasm
from tests.sdk.hosting import Upstream

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def probe() -> Path:
    return python_plugin("python_probe")


@pytest.fixture(scope="module")
def cache(module_cache: Path) -> Path:
    # An 18 MB component compiles in 8-30 s: once per run, then from this cache in ms.
    return module_cache


def _app(root: Path, probe: Path, cache: Path, grants: object,
         **plugin: object) -> OmniApp:
    plugins = root / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "pyprobe.wasm").write_bytes(probe.read_bytes())
    app = OmniApp("py", overrides={
        "data_dir": str(root / "data"), "plugins_dir": str(plugins),
        "sandbox": {"cache_dir": str(cache), "watch": False},
        "plugins": {"pyprobe": {"grants": grants, **plugin}}}, environ=ENVIRON,
        entry_points=False)
    app.start()
    return app


#: Every capability the probe imports; http to loopback only.
GRANTS = {"kv": {}, "config": {}, "tasks": {}, "events": {"publish": ["greeted", "ok.*"]},
          "http": {"allow_hosts": ["http://127.0.0.1:*"], "allow_addresses": ["127.0.0.1/32"]}}


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    yield from Upstream().serve()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, probe: Path, cache: Path
        ) -> Iterator[OmniApp]:
    app = _app(tmp_path_factory.mktemp("py-app"), probe, cache, GRANTS,
               config={"greeting": "Hi", "db": {"host": "h", "port": 5}},
               limits={"timeout_ms": 1000, "max_memory_bytes": 128 << 20})
    yield app
    app.stop()


def test_the_build_reads_handlers_and_capabilities_from_the_source(probe: Path,
                                                                   cache: Path) -> None:
    src = PYTHON_SOURCES / "python_probe"
    assert python.handler_names(src) == ["greet", "count", "store", "forget", "setting",
                                         "settings", "fail", "spin", "hog", "hog_once",
                                         "noisy", "later", "announce", "fetch"]
    assert python.used_capabilities(src) == ["log", "config", "kv", "tasks", "events",
                                             "http"]
    assert python.used_capabilities(PYTHON_SOURCES / "python_logonly") == ["log"]
    engine = SandboxEngine(cache_dir=cache, baseline=BASELINE)
    try:
        module = PluginModule.load(engine, probe)
    finally:
        engine.close()
    assert module.abi == "component"
    assert module.name == "pyprobe"
    assert module.manifest["version"] == "0.2.0"
    assert module.requested == frozenset({"kv", "config", "log", "tasks", "events", "http"})
    assert module.handlers[:2] == ("greet", "count")


def test_handlers_run_with_bytes_through_app_plugins_call(app: OmniApp) -> None:
    plugins = app.plugins
    assert plugins.get("pyprobe").state == "loaded"
    assert plugins.call("pyprobe", "greet", b"Ada") == b"Hello, Ada!"
    assert any(line.message == "greeting Ada" for line in plugins.logs("pyprobe").lines())
    assert plugins.call("pyprobe", "setting", b"greeting") == b"Hi"
    assert plugins.call("pyprobe", "setting", b"db.port") == b"5"
    assert plugins.call("pyprobe", "setting", b"nope") == b"(absent)"
    assert json.loads(plugins.call("pyprobe", "settings", b"")) == {
        "all": {"greeting": "Hi", "db": {"host": "h", "port": 5}}, "level": False}


def test_kv_is_the_plugins_own_durable_store(app: OmniApp) -> None:
    plugins = app.plugins
    first = int(plugins.call("pyprobe", "count", b""))
    assert int(plugins.call("pyprobe", "count", b"")) == first + 1
    # The host's view of the same keys (the store native plugins use).
    assert app.kv.for_plugin("pyprobe").get("count") == str(first + 1).encode()
    out = json.loads(plugins.call("pyprobe", "store", b'{"key": "a", "value": "1"}'))
    assert out == {"value": "1", "keys": ["a", "count"]}
    assert json.loads(plugins.call("pyprobe", "store", b'{"key": "missing"}'))["value"] is None
    assert plugins.call("pyprobe", "forget", b'"a"') == b"true"
    assert plugins.call("pyprobe", "forget", b'"a"') == b"false"


def test_a_refused_kv_call_is_a_host_error_with_the_abi_code(app: OmniApp) -> None:
    call = app.plugins.call
    assert json.loads(call("pyprobe", "store", b'{"key": ""}')) == {"error": "INVALID"}
    assert json.loads(call("pyprobe", "store", json.dumps(
        {"key": "k" * 513}).encode())) == {"error": "INVALID"}
    big = json.dumps({"key": "big", "value": "x" * (1 << 20 | 1)}).encode()
    assert json.loads(call("pyprobe", "store", big)) == {"error": "TOO_LARGE"}


def test_tasks_are_enqueued_and_cancelled_for_the_plugins_own_handlers(app: OmniApp) -> None:
    out = json.loads(app.plugins.call("pyprobe", "later", b'{"handler": "greet"}'))
    assert out["id"] >= 1 and out["cancelled"] is True and out["again"] is False
    call = app.plugins.call
    assert json.loads(call("pyprobe", "later", b'{"handler": "nope"}')) == {
        "error": "NOT_FOUND"}
    too_late = json.dumps({"handler": "greet", "delay_ms": 2**63}).encode()
    assert json.loads(call("pyprobe", "later", too_late)) == {"error": "INVALID"}


def test_a_task_runs_the_handler_later(app: OmniApp) -> None:
    store = app.kv.for_plugin("pyprobe")
    before = int(store.get("count") or b"0")
    out = json.loads(app.plugins.call("pyprobe", "later", b'{"handler": "count", '
                                      b'"delay_ms": 0, "keep": true}'))
    assert out["id"] >= 1
    deadline = time.monotonic() + 30
    while int(store.get("count") or b"0") == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert int(store.get("count") or b"0") == before + 1


def test_events_are_published_only_on_granted_topics(app: OmniApp) -> None:
    seen: list[object] = []
    app.events.subscribe("plugin.pyprobe.*", seen.append)
    assert json.loads(app.plugins.call("pyprobe", "announce", b'"greeted"')) == {
        "published": "greeted"}
    assert json.loads(app.plugins.call("pyprobe", "announce", b'"ok.fine"')) == {
        "published": "ok.fine"}
    assert json.loads(app.plugins.call("pyprobe", "announce", b'"secret"')) == {
        "error": "DENIED"}
    assert json.loads(app.plugins.call("pyprobe", "announce", b'"bad topic!"')) == {
        "error": "INVALID"}
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(getattr(e, "topic", "") for e in seen) == [
        "plugin.pyprobe.greeted", "plugin.pyprobe.ok.fine"]


def test_http_reaches_the_granted_hosts_only(app: OmniApp, upstream: Upstream) -> None:
    def fetch(**request: object) -> dict[str, object]:
        out = app.plugins.call("pyprobe", "fetch", json.dumps(request).encode())
        return dict(json.loads(out))

    assert fetch(url=upstream.url + "/hi") == {"status": 200, "type": "text/plain",
                                               "body": "hello /hi"}
    assert fetch(method="POST", url=upstream.url + "/p", body="data") == {
        "status": 201, "type": "text/plain", "body": "echo: data"}
    assert upstream.seen[-1].headers["x-probe"] == "1"
    denied = fetch(url="http://example.com/")
    assert denied["error"] == "DENIED" and "example.com" in str(denied["detail"])
    # The sibling path to a loopback address: a name the policy must resolve first.
    assert fetch(url="http://localhost:1/")["error"] == "DENIED"
    assert fetch(url="ftp://127.0.0.1/")["error"] in ("DENIED", "INVALID")


def test_a_handler_exception_is_a_guest_error_and_the_plugin_keeps_serving(
        app: OmniApp) -> None:
    with pytest.raises(GuestError, match=r"handler 'fail' failed: ValueError: no such thing"):
        app.plugins.call("pyprobe", "fail", b"")
    assert app.plugins.call("pyprobe", "greet", b"again") == b"Hello, again!"


def test_print_goes_to_the_plugin_log_never_to_the_caller(app: OmniApp) -> None:
    assert app.plugins.call("pyprobe", "noisy", b"") == b"false"
    lines = [(ln.level, ln.message) for ln in app.plugins.logs("pyprobe").lines()]
    assert ("info", "to stdout") in lines
    assert ("warn", "careful") in lines


def test_an_endless_loop_ends_at_the_deadline(app: OmniApp) -> None:
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="deadline of 1000 ms"):
        app.plugins.call("pyprobe", "spin", b"")
    assert time.monotonic() - started < 1.0 + 5.0
    assert app.plugins.call("pyprobe", "greet", b"after") == b"Hello, after!"


@pytest.fixture(scope="module")
def roomy_app(tmp_path_factory: pytest.TempPathFactory, probe: Path, cache: Path
              ) -> Iterator[OmniApp]:
    """The probe with the memory limit and a deadline no bomb reaches first: filling 128 MB
    took over a second on a loaded CI, and the deadline then answered for the limiter."""
    app = _app(tmp_path_factory.mktemp("py-roomy"), probe, cache, GRANTS,
               config={"greeting": "Hi"},
               limits={"timeout_ms": 60_000, "max_memory_bytes": 128 << 20})
    yield app
    app.stop()


@pytest.mark.parametrize("handler", ["hog", "hog_once"])
def test_a_memory_bomb_stops_at_the_memory_limit(roomy_app: OmniApp, handler: str) -> None:
    # CPython meets the limit as a MemoryError (a failed call) or, when it cannot even raise
    # one, traps: either way the limiter refused a growth, so the call is
    # MemoryLimitExceeded, its instance is replaced and the next call is served.
    with pytest.raises(MemoryLimitExceeded, match=r"limits\.max_memory_bytes") as info:
        roomy_app.plugins.call("pyprobe", handler, b"")
    assert info.value.limit == "max_memory_bytes"
    assert roomy_app.plugins.call("pyprobe", "greet", b"after") == b"Hello, after!"


def test_without_grants_it_waits_in_needs_grant_naming_them(
        tmp_path: Path, probe: Path, cache: Path) -> None:
    app = _app(tmp_path, probe, cache, ["config"])
    try:
        info = app.plugins.get("pyprobe")
        assert info.state == "needs-grant"
        assert "needs grant: omnicore:events, omnicore:http, omnicore:kv, omnicore:tasks;" \
            in (info.last_error or "")
        with pytest.raises(NeedsGrant, match="omnicore:kv"):
            app.plugins.call("pyprobe", "greet", b"x")
        app.plugins.grant("pyprobe", "kv")
        app.plugins.grant("pyprobe", "tasks")
        app.plugins.grant("pyprobe", "http")
        with pytest.raises(NeedsGrant, match="needs grant: omnicore:events;"):
            app.plugins.call("pyprobe", "greet", b"x")
        app.plugins.grant("pyprobe", "events")
        assert app.plugins.call("pyprobe", "greet", b"x") == b"Hello, x!"
    finally:
        app.stop()


def test_a_component_in_the_folder_is_compiled_once_into_the_cache(tmp_path: Path,
                                                                  probe: Path) -> None:
    # A serving host compiles a component with Cranelift at once, into the cache: tiered, it
    # was compiled twice (and, when the baseline engine's components were Cranelift's and
    # uncached, twice again at every start: the demo, 38 s each time). Only a one-off host
    # (`omnicore call`) keeps Winch's code for a component (tests/cli/test_cli_plugins.py).
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "pyprobe.wasm").write_bytes(probe.read_bytes())
    (tmp_path / "plugins" / "echo.wasm").write_bytes(echo_wasm())  # a folder of several
    (tmp_path / "omnicore.yaml").write_text(
        "name: once\nplugins_dir: plugins\nplugins:\n  pyprobe:\n    grants: "
        + json.dumps(sorted(GRANTS)) + "\n")
    app = OmniApp(config_path=tmp_path / "omnicore.yaml", environ={}, entry_points=False)
    app.start()
    try:
        entry = app.plugins._entries.require("pyprobe")
        assert entry.state == "loaded"
        assert not app.plugins._linker._tiers.is_baseline(entry.module)
        assert len(list(tmp_path.rglob("*.component.cwasm"))) == 1
    finally:
        app.stop()


def test_a_plugin_importing_no_capability_needs_no_grant(cache: Path) -> None:
    engine = SandboxEngine(cache_dir=cache, baseline=BASELINE)
    try:
        module = PluginModule.load(engine, python_plugin("python_logonly"))
        assert module.requested == frozenset({"log"})
        assert isinstance(module, ComponentModule)
        with ComponentRuntime(engine, module, Limits(), registry=builtin_registry()) as rt:
            assert rt.call("hello", b"quiet") == b"QUIET"
    finally:
        engine.close()


def _cli(*args: str | Path, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMNICORE_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-m", "omnicore.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600, env=env)


def test_omnicore_call_runs_it_with_grants_and_refuses_it_without(
        tmp_path: Path, probe: Path, cache: Path) -> None:
    # The app's module cache is the run's: `--app` compiles into it (18 MB, seconds).
    (tmp_path / "omnicore.yaml").write_text(f"name: cli\nsandbox: {{cache_dir: {cache}}}\n")
    refused = _cli("call", probe, "greet", "--input", "Ada", cwd=tmp_path, cache=cache)
    assert refused.returncode != 0
    assert "needs grant: omnicore:config, omnicore:events, omnicore:http, omnicore:kv, " \
        "omnicore:tasks" in refused.stderr
    assert refused.stdout == ""
    grants = ("--grant", "kv", "--grant", "config", "--grant", "tasks", "--grant", "events",
              "--grant", "http")
    done = _cli("call", probe, "count", *grants, "--app", tmp_path, cwd=tmp_path, cache=cache)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "1\n"
    again = _cli("call", probe, "count", *grants, "--app", tmp_path, cwd=tmp_path, cache=cache)
    assert again.stdout == "2\n"


def test_new_plugin_python_builds_tests_and_runs(tmp_path: Path, cache: Path) -> None:
    # The Python guide's name: its shell blocks build the same scaffold, one build for both
    # (the build cache keys by sources and name).
    project = tmp_path / "hello-py"
    scaffold(project, "hello-py", "python")
    tests = unit_tests(project)
    done = subprocess.run(tests.argv, cwd=tests.cwd, env=tests.env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    from omnicore.toolchains import build

    wasm = build(project, tmp_path / "out")
    out = _cli("call", wasm, "greet", "--grant", "config", "--config", "greeting=Hi",
               "--input", '{"name": "Ada"}', cwd=tmp_path, cache=cache)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"message": "Hi, Ada!"}


def test_a_project_without_a_handler_fails_the_build_saying_so(tmp_path: Path) -> None:
    (tmp_path / "plugin.py").write_text("import omnicore_plugin\n")
    with pytest.raises(BuildError, match="no handler"):
        python.compile(tmp_path, tmp_path / "work")
    (tmp_path / "plugin.py").write_text("def broken(:\n")
    with pytest.raises(BuildError, match=r"plugin\.py:1"):
        python.handler_names(tmp_path)

"""A host starting on an empty module cache (issue 25, item 1): the folder's files compile in
parallel, smallest first, by Winch first and Cranelift after; each plugin serves as soon as
it is loaded while the others show ``compiling``; the console answers meanwhile; ``omnicore
build --app`` compiles ahead into the app's cache.

The slow plugin is real: a generated module of about 2 MB of code that takes Cranelift a good
fraction of a second of CPU, against a few hundred bytes for the small one. Nothing here
asserts a duration: the tests watch the states and the answers while the big one compiles.
"""

from __future__ import annotations

import gc
import json
import threading
import time
import urllib.request
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from omnicore.errors import (
    DeadlineExceeded,
    InvalidModule,
    MemoryLimitExceeded,
    PluginLoadError,
    Trap,
)
from omnicore.plugins.ahead import CompileAhead
from omnicore.plugins.host import PluginHost
from omnicore.sandbox import PluginModule, SandboxEngine
from tests.host_fixtures import echo_wasm, write
from tests.hosts import Host
from tests.waiting import eventually


def _big_wat(funcs: int = 1200, ops: int = 300) -> str:
    body = " ".join(f"(local.set 0 (i32.add (i32.mul (local.get 0) (i32.const {i + 3})) "
                    f"(i32.const {i})))" for i in range(ops))
    fs = "\n".join(f"(func $f{j} (param i32) (result i32) {body} (local.get 0))"
                   for j in range(funcs))
    return f'''(module
  (@custom "omnicore.manifest" "{{\\"name\\":\\"big\\",\\"handlers\\":[\\"run\\"]}}")
  (memory (export "memory") 4)
  (func (export "omni_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "omni_free") (param i32 i32))
  (func (export "run") (param i32 i32) (result i64) (drop (call $f0 (i32.const 1)))
    (i64.const 0))
  {fs})'''


@pytest.fixture(scope="module")
def big_wasm() -> bytes:
    return wasmtime.wat2wasm(_big_wat())


@pytest.fixture
def folder(tmp_path: Path, big_wasm: bytes) -> Path:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    write(plugins, "big.wasm", big_wasm)
    write(plugins, "tiny.wasm", echo_wasm("tiny"))
    return plugins


class _Held(PluginModule):
    """PluginModule whose big file waits at a gate before it compiles.

    How long Cranelift takes on the big module depends on the machine: on a fast one it was
    done before the test looked (CI saw ``loaded`` where the test expected ``compiling``).
    The gate makes the window the tests look through last until they open it.
    """

    gate = threading.Event()

    @classmethod
    def load(cls, engine: SandboxEngine, source: bytes | bytearray | Path | str,
             name: str | None = None, **kw: object) -> PluginModule:
        if isinstance(source, (str, Path)) and Path(source).name == "big.wasm":
            assert cls.gate.wait(120), "the test never opened the gate"
        return PluginModule.load(engine, source, name, **kw)  # type: ignore[arg-type]


@pytest.fixture
def starting(folder: Path, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginHost]:
    """A host loading the folder on another thread (as the app's startup does), whose big
    module stays ``compiling`` until the test calls ``_Held.gate.set()``."""
    import omnicore.plugins.linking as linking

    monkeypatch.setattr(linking, "PluginModule", _Held)
    _Held.gate.clear()
    with SandboxEngine(cache_dir=tmp_path / "cache") as engine, \
            PluginHost(engine=engine) as host:
        loader = threading.Thread(target=host.watch_folder, args=(folder,),
                                  kwargs={"watch": False})
        loader.start()
        try:
            yield host
        finally:
            _Held.gate.set()
            loader.join(timeout=120)


def _state(host: PluginHost, name: str) -> str | None:
    return next((i.state for i in host if i.name == name), None)


def test_a_plugin_answers_while_another_still_compiles(starting: PluginHost) -> None:
    host = starting
    eventually(lambda: _state(host, "tiny") == "loaded")
    assert _state(host, "big") == "compiling"
    assert host.call("tiny", "echo", b"hi") == b"hi"
    assert _state(host, "big") == "compiling"  # the answer did not wait for it
    with pytest.raises(PluginLoadError, match="still loading"):  # past its wait
        host.call("big", "run", b"", wait_s=0.01)
    _Held.gate.set()
    eventually(lambda: _state(host, "big") == "loaded")
    assert host.call("big", "run", b"") == b""


def test_the_compiling_state_is_in_info_and_health(starting: PluginHost) -> None:
    host = starting
    eventually(lambda: _state(host, "tiny") == "loaded")
    info = host.get("big")
    assert info.state == "compiling" and not info.callable
    assert info.as_dict()["state"] == "compiling"
    _Held.gate.set()
    eventually(lambda: _state(host, "big") == "loaded")
    assert [i.name for i in host] == ["big", "tiny"]  # one entry each: the placeholder gone


def test_a_broken_file_among_them_still_fails_alone(folder: Path, tmp_path: Path) -> None:
    write(folder, "junk.wasm", b"\x00asm\x01\x00\x00\x00\x05\xff\xff")
    with PluginHost() as host:
        host.watch_folder(folder, watch=False)
        states = {i.name: i.state for i in host}
    assert states == {"big": "loaded", "tiny": "loaded", "junk": "failed"}


def test_files_compile_smallest_first_and_a_changed_file_is_compiled_again(
        tmp_path: Path, big_wasm: bytes) -> None:
    small = write(tmp_path, "b-small.wasm", echo_wasm("small"))
    large = write(tmp_path, "a-large.wasm", big_wasm)
    compiled: list[str] = []
    with SandboxEngine() as engine:
        def compile_file(path: Path) -> PluginModule:
            compiled.append(path.name)
            return PluginModule.load(engine, path)

        ahead = CompileAhead(compile_file)
        assert ahead.submit([large, small]) == [small, large]
        first = ahead.take(small)
        assert first is not None and first.name == "small"
        write(tmp_path, "a-large.wasm", echo_wasm("large"))  # changed while compiling
        assert ahead.take(large) is None  # the load compiles the file as it is now
        assert ahead.take(small) is None  # handed over once


def test_healthz_and_the_api_answer_while_plugins_compile(folder: Path, tmp_path: Path) -> None:
    app = tmp_path
    (app / "omnicore.yaml").write_text("name: cold\nplugins_dir: plugins\ndata_dir: .omnicore\n"
                                      "console: {port: 0}\n")
    with Host(app, data=app / ".omnicore", log=tmp_path / "run.log").start() as server:
        doc = server.until(lambda: server.console_file, "its console file")

        def get(path: str) -> tuple[int, bytes]:
            req = urllib.request.Request(doc["url"] + path,
                                         headers={"Authorization": f"Bearer {doc['token']}"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read()

        def states() -> dict[str, str]:
            items = json.loads(get("/api/v1/plugins?limit=100")[1])["items"]
            return {i["name"]: i["state"] for i in items}

        server.until(lambda: states().get("tiny") == "loaded", "tiny loaded")
        assert get("/healthz")[0] == 200
        now = states()
        # Seen while the big one compiles (if the machine was that fast, it is loaded).
        assert now["big"] in ("compiling", "loaded")
        req = urllib.request.Request(
            doc["url"] + "/api/v1/plugins/tiny/invoke", method="POST",
            data=json.dumps({"handler": "echo", "input": "hi"}).encode(),
            headers={"Authorization": f"Bearer {doc['token']}",
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert json.loads(resp.read())["output"] == "hi"
        server.until(lambda: states().get("big") == "loaded", "big loaded", timeout=120)
        code = server.stop()
    assert code == 0, server.text


def test_readyz_names_the_plugins_still_compiling(folder: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 63: a probe's answer says what a start still waits for.
    import httpx

    import omnicore.plugins.linking as linking
    from omnicore.app import OmniApp
    from omnicore.console import ConsoleModule

    monkeypatch.setattr(linking, "PluginModule", _Held)
    _Held.gate.clear()
    app = OmniApp("cold", overrides={"data_dir": str(tmp_path / "data"),
                                     "plugins_dir": str(folder), "console": {"port": 0}})
    module = ConsoleModule()
    app.add_module(module)
    starting = threading.Thread(target=app.start)
    starting.start()
    try:
        eventually(lambda: module.url is not None and "tiny" in app.plugins
                   and app.plugins.get("tiny").state == "loaded", "tiny loaded")
        # Ready means serving: the start did not wait for big (tests/test_loading_after_start.py).
        r = httpx.get(f"{module.url}/readyz", timeout=30)
        assert r.status_code == 200, r.text
        assert r.json() == {"ready": True, "reasons": [], "compiling": ["big"]}
    finally:
        _Held.gate.set()
        starting.join(120)
    try:
        eventually(lambda: app.plugins.get("big").state == "loaded", "big loaded")
        r = httpx.get(f"{module.url}/readyz", timeout=30)
        assert r.status_code == 200 and r.json() == {"ready": True, "reasons": []}
    finally:
        app.stop()


def test_build_app_compiles_into_the_apps_cache(folder: Path, tmp_path: Path) -> None:
    from omnicore.app import OmniApp
    from omnicore.cli.build import _precompile
    from omnicore.config import load_config

    app = tmp_path
    (app / "omnicore.yaml").write_text("name: pre\nplugins_dir: plugins\ndata_dir: .omnicore\n")
    _precompile(app, sorted(folder.glob("*.wasm")))
    cache = load_config(app / "omnicore.yaml").sandbox.cache_dir
    assert cache is not None
    entries = {p: p.stat().st_ino for p in cache.glob("*.cwasm")}
    assert len(entries) == 2
    host_app = OmniApp(config=load_config(app / "omnicore.yaml"), default_modules=False)
    try:
        host_app.plugins.watch_folder(folder, watch=False)
        assert {i.name: i.state for i in host_app.plugins} == {"big": "loaded",
                                                               "tiny": "loaded"}
    finally:
        host_app.close()
    # Loaded from the cache: a compile would have written each entry anew.
    assert {p: p.stat().st_ino for p in cache.glob("*.cwasm")} == entries


def _baseline(host: PluginHost, name: str) -> bool:
    # Which code serves is not part of PluginInfo: read the linker's own record of it.
    return host._linker._tiers.is_baseline(host._entries.require(name).module)


def test_a_cold_start_serves_baseline_code_then_swaps_in_cranelift(
        folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with PluginHost(engine_factory=lambda fuel=False: SandboxEngine(cache_dir=cache,
                                                                    fuel=fuel)) as host:
        host.watch_folder(folder, watch=False)
        assert {i.name: i.state for i in host} == {"big": "loaded", "tiny": "loaded"}
        assert host.call("tiny", "echo", b"x") == b"x"
        calls = 0
        while _baseline(host, "big") or _baseline(host, "tiny"):  # swapped in the background
            assert host.call("big", "run", b"") == b""  # and it serves all along
            calls += 1
            time.sleep(0.01)
        assert host.call("big", "run", b"") == b"" and host.get("big").stats.calls == calls + 1
        assert len(list(cache.glob("*.cwasm"))) == 2  # the next start is a cached one
    with PluginHost(engine_factory=lambda fuel=False: SandboxEngine(cache_dir=cache,
                                                                    fuel=fuel)) as host:
        host.watch_folder(folder, watch=False)
        assert not _baseline(host, "big") and not _baseline(host, "tiny")


def test_a_start_that_ends_before_its_tier_up_loads_the_baseline_code_from_the_cache(
        folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent's short ``omnicore mcp`` session: the host stops before Cranelift replaced
    Winch's code. The next start loads that code from the cache (compiled once, not again at
    every start), tiers up, and the baseline entries leave the cache once replaced."""
    from omnicore.plugins.tiers import TierUp

    cache = tmp_path / "cache"

    def host() -> PluginHost:
        return PluginHost(engine_factory=lambda fuel=False: SandboxEngine(cache_dir=cache,
                                                                          fuel=fuel))

    submit = TierUp.submit
    monkeypatch.setattr(TierUp, "submit", lambda *_: None)  # stopped before any tier-up
    with host() as first:
        first.watch_folder(folder, watch=False)
        assert _baseline(first, "big") and _baseline(first, "tiny")
    baseline = {p.name: p.stat().st_ino for p in cache.glob("*.cwasm")}
    assert len(baseline) == 2, baseline

    monkeypatch.setattr(TierUp, "submit", submit)
    gate = threading.Event()
    monkeypatch.setattr(CompileAhead, "wait_idle", lambda self: gate.wait(120))
    try:
        with host() as second:
            second.watch_folder(folder, watch=False)
            assert _baseline(second, "big") and _baseline(second, "tiny")
            # Read from the cache, not compiled again (a compile writes its entry anew).
            assert {p.name: p.stat().st_ino for p in cache.glob("*.cwasm")} == baseline
            assert second.call("tiny", "echo", b"x") == b"x"
            gate.set()
            eventually(lambda: not (_baseline(second, "big") or _baseline(second, "tiny")),
                       "the tier-up")
            optimized = {p.name for p in cache.glob("*.cwasm")}
            assert len(optimized) == 2 and not optimized & set(baseline), optimized
            assert second.call("big", "run", b"") == b""
    finally:
        gate.set()


def test_the_baseline_code_is_freed_once_the_tier_up_is_done(folder: Path,
                                                            tmp_path: Path) -> None:
    # Issue 63: the baseline runtimes swapped out sit in reference cycles; with no full
    # collection (an idle host may run none for hours) their code stayed mapped, a cold host
    # holding it beside the optimized code. The tier-up collects once its queue is empty.
    cache = tmp_path / "cache"
    was = gc.isenabled()
    gc.disable()  # only the tier-up's own collection may free it
    try:
        with PluginHost(engine_factory=lambda fuel=False: SandboxEngine(cache_dir=cache,
                                                                        fuel=fuel)) as host:
            host.watch_folder(folder, watch=False)
            baseline = [weakref.ref(host._entries.require(n).module) for n in ("big", "tiny")]
            assert all(_baseline(host, n) for n in ("big", "tiny"))
            eventually(lambda: not (_baseline(host, "big") or _baseline(host, "tiny")),
                       "the tier-up")
            eventually(lambda: all(ref() is None for ref in baseline),
                       "the baseline modules freed")
            assert host.call("big", "run", b"") == b"" and host.call("tiny", "echo", b"x") == b"x"
    finally:
        if was:
            gc.enable()


def test_a_module_the_baseline_compiler_refuses_is_compiled_by_cranelift_at_once(
        folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Winch lacks some proposals Cranelift has: such a module must still load, not fail.
    real = PluginModule.load

    def no_winch(engine: SandboxEngine, source: object, *a: object, **kw: object) -> object:
        if engine.baseline:
            raise InvalidModule("the baseline compiler does not support this module")
        return real(engine, source, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(PluginModule, "load", staticmethod(no_winch))
    cache = tmp_path / "cache"
    with PluginHost(engine_factory=lambda fuel=False: SandboxEngine(cache_dir=cache,
                                                                    fuel=fuel)) as host:
        host.watch_folder(folder, watch=False)
        assert {i.name: i.state for i in host} == {"big": "loaded", "tiny": "loaded"}
        assert not _baseline(host, "tiny") and host.call("tiny", "echo", b"x") == b"x"


def test_a_plugin_reloaded_before_its_tier_up_keeps_the_new_file(folder: Path,
                                                                  tmp_path: Path) -> None:
    with PluginHost() as host:
        host.watch_folder(folder, watch=False)
        write(folder, "tiny.wasm", echo_wasm("tiny", "2.0.0"))
        host.reload_file("tiny", folder / "tiny.wasm")
        assert host.call("tiny", "version", b"") == b"2.0.0"
        eventually(lambda: not _baseline(host, "big"))
        assert host.call("tiny", "version", b"") == b"2.0.0"  # not swapped back
        assert not _baseline(host, "tiny")  # a reload compiles with Cranelift


@pytest.mark.parametrize(("fixture", "handler", "error"), [
    ("loop", "spin", DeadlineExceeded),
    ("grow_bomb", "bomb", MemoryLimitExceeded),
    ("unreachable", "crash", Trap),
    # A component's baseline code too (its own engine, the host's memories, the adapters).
    ("component:limits", "spin", DeadlineExceeded),
    ("component:limits", "bomb", MemoryLimitExceeded),
    ("component:limits", "boom", Trap),
    ("component:oob", "far", Trap),
])
def test_baseline_code_keeps_every_limit(fixture: str, handler: str,
                                         error: type[Exception]) -> None:
    # Deadlines, memory limits and traps belong to the runtime, not to the compiler: the
    # Winch code a cold start serves for a while meets them as Cranelift's does.
    from omnicore.capabilities.builtin import builtin_registry
    from omnicore.sandbox import Limits, PluginRuntime
    from omnicore.sandbox.component import ComponentRuntime
    from tests.component_fixtures import wat_component
    from tests.sandbox_fixtures import compile_wat

    limits = Limits(timeout_ms=200, max_memory_bytes=4 << 20)
    with SandboxEngine(baseline=True, epoch_tick_ms=5) as engine:
        runtime: PluginRuntime | ComponentRuntime
        if fixture.startswith("component:"):
            module = PluginModule.load(engine, wat_component(fixture.split(":")[1]))
            runtime = ComponentRuntime(engine, module, limits)  # type: ignore[arg-type]
        else:
            module = PluginModule.load(engine, compile_wat(fixture))
            runtime = PluginRuntime(engine, module, builtin_registry(), limits=limits)
        try:
            with pytest.raises(error):
                runtime.call(handler, b"")
            with pytest.raises(error):  # a fresh instance, the same verdict
                runtime.call(handler, b"")
        finally:
            runtime.close()


def test_compiles_finished_before_submit_returns_do_not_deadlock(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A compile that is done when its callback is added runs the callback in the submitting
    # thread; that once happened under the lock the callback takes (the host hung at start,
    # a cached component compiling in milliseconds). Hold that window open for every file.
    from concurrent.futures import Future, ThreadPoolExecutor

    from omnicore.plugins import ahead as ahead_module

    class FinishedFirst(ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
            future = super().submit(fn, *args, **kwargs)
            future.result()
            return future

    monkeypatch.setattr(ahead_module, "ThreadPoolExecutor", FinishedFirst)
    paths = [write(tmp_path, f"p{i}.wasm", echo_wasm(f"p{i}")) for i in range(3)]
    with SandboxEngine() as engine:
        ahead = CompileAhead(lambda path: PluginModule.load(engine, path))
        returned = threading.Event()
        threading.Thread(target=lambda: (ahead.submit(paths), returned.set()),
                         daemon=True).start()
        assert returned.wait(60), "submit deadlocked on its own lock"
        ahead.wait_idle()
        assert all(ahead.take(p) is not None for p in paths)


def test_a_host_closed_while_the_first_tier_compiles_compiles_nothing_more(
        tmp_path: Path) -> None:
    # The tier-up thread waits for the first tier's compiles before it starts Cranelift; a
    # host stopped meanwhile (a test, `omnicore dev` rebuilding) must not then spend a
    # Ruby plugin's 50 s of CPU on code nobody will run. The window held open with a gate.
    from types import SimpleNamespace

    from omnicore.plugins.tiers import TierUp

    first_tier_done = threading.Event()
    waiting = threading.Event()
    compiled: list[Path] = []

    def after() -> None:
        waiting.set()
        first_tier_done.wait(60)

    def compile_optimized(path: Path, name: str) -> Any:
        compiled.append(path)
        raise AssertionError("compiled after close")

    tiers = TierUp(compile_optimized, lambda *_: None, after=after)
    with SandboxEngine() as engine:
        module = tiers.mark(PluginModule.load(engine, echo_wasm("p")))
        # What the thread reads of a host's entry: its name, file and serving module.
        entry = SimpleNamespace(name="p", source=tmp_path / "p.wasm", module=module)
        tiers.submit(entry, module)  # type: ignore[arg-type]
        assert waiting.wait(60)
        tiers.close()
        first_tier_done.set()
        thread = tiers._thread
        assert thread is not None
        thread.join(60)
        assert not thread.is_alive() and compiled == []


def test_sandbox_compiler_winch_serves_winch_code_and_never_tiers_up(
        folder: Path, tmp_path: Path) -> None:
    # `sandbox.compiler: winch` (development loops, test runs): every module is Winch's code,
    # cached under Winch's key, a cached start loads it, and no Cranelift compile ever runs.
    from omnicore.config.schema import SandboxConfig

    sandbox = SandboxConfig(cache_dir=tmp_path / "cache", compiler="winch")
    for start in ("cold", "cached"):
        with PluginHost(engine_factory=lambda fuel=False: SandboxEngine.for_config(
                sandbox, fuel)) as host:
            host.watch_folder(folder, watch=False)
            assert {i.name: i.state for i in host} == {"big": "loaded", "tiny": "loaded"}, start
            assert host.call("tiny", "echo", b"x") == b"x"
            assert host.call("big", "run", b"") == b""
            engine = host._linker.engine_for(False)
            assert engine.baseline
            assert host._linker._tiers._thread is None, f"a {start} start tiered up"
            keys = {p.name.split("-")[1] for p in (tmp_path / "cache").glob("*.cwasm")}
            assert keys == {f"{engine.config_key}.cwasm"}, start
    with SandboxEngine() as cranelift:
        assert cranelift.config_key != engine.config_key


def test_sandbox_compiler_names_its_choices(tmp_path: Path) -> None:
    from omnicore.config import load_config
    from omnicore.errors import ConfigError

    for where in ({"overrides": {"sandbox": {"compiler": "lightbeam"}}},
                  {"environ": {"OMNICORE_SANDBOX__COMPILER": "lightbeam"}}):
        with pytest.raises(ConfigError, match=r"sandbox.compiler.*'cranelift' or 'winch'"):
            load_config(None, **where)  # type: ignore[arg-type]
    assert load_config(None, environ={}).sandbox.compiler == "cranelift"
    assert load_config(None, environ={"OMNICORE_SANDBOX__COMPILER": "winch"}
                       ).sandbox.compiler == "winch"

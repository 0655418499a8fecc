from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omnicore.app import OmniApp
from omnicore.core.events import ModuleStateChanged
from omnicore.core.lifecycle import State
from omnicore.core.module import Module, ServiceModule, start_order
from omnicore.errors import LifecycleError, ModuleError

MakeApp = Callable[..., OmniApp]


class Recorder(Module):
    def __init__(self, name: str, log: list[str], deps: tuple[str, ...] = (),
                 fail_start: bool = False, fail_stop: bool = False) -> None:
        super().__init__(name, depends_on=deps)
        self.events = log
        self.fail_start = fail_start
        self.fail_stop = fail_stop

    def start(self) -> None:
        if self.fail_start:
            raise OSError("port 8470 is in use")
        self.events.append(f"start {self.name}")

    def stop(self) -> None:
        self.events.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError("stuck")


class AsyncRecorder(Module):
    name = "async"

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.events = log

    async def start(self) -> None:
        self.events.append("astart")

    async def stop(self) -> None:
        self.events.append("astop")


def test_default_names() -> None:
    class CacheModule(Module):
        pass

    class Thing(Module):
        pass

    assert CacheModule().name == "cache"
    assert Thing().name == "thing"
    assert Thing("custom").name == "custom"


def test_order_dependencies_first_then_insertion() -> None:
    log: list[str] = []
    mods = [Recorder("web", log, deps=("db",)), Recorder("cache", log),
            Recorder("db", log, deps=("cache",)), Recorder("jobs", log)]
    assert [m.name for m in start_order(mods)] == ["cache", "db", "web", "jobs"]


def test_missing_dependency_and_cycle() -> None:
    log: list[str] = []
    with pytest.raises(ModuleError, match="depends on 'nope'"):
        start_order([Recorder("a", log, deps=("nope",))])
    with pytest.raises(ModuleError, match="cycle: a -> b -> a"):
        start_order([Recorder("a", log, deps=("b",)), Recorder("b", log, deps=("a",))])


def test_start_and_stop_order_with_sync_and_async_modules(make_app: MakeApp) -> None:
    log: list[str] = []
    app = make_app(default_modules=False)
    app.add_module(Recorder("web", log, deps=("db",)))
    app.add_module(AsyncRecorder(log))
    app.add_module(Recorder("db", log))
    app.start()
    assert log == ["start db", "start web", "astart"]
    assert all(m.state is State.RUNNING for m in app.modules)
    app.stop()
    assert log[3:] == ["astop", "stop web", "stop db"]
    assert all(m.state is State.STOPPED for m in app.modules)


def test_failing_module_stops_started_ones_and_names_cause(make_app: MakeApp) -> None:
    log: list[str] = []
    app = make_app(default_modules=False)
    states: list[tuple[str, str, str | None]] = []
    app.events.subscribe(ModuleStateChanged, lambda e: states.append((e.module, e.new, e.error)))
    app.add_module(Recorder("db", log))
    app.add_module(Recorder("console", log, fail_start=True))
    app.add_module(Recorder("late", log))
    with pytest.raises(ModuleError, match=r"module 'console' failed to start: OSError: port"
                       ) as info:
        app.start()
    assert info.value.module == "console"
    assert log == ["start db", "stop db"]
    assert app.state is State.FAILED
    assert app.get_module("late").state is State.CREATED
    assert ("console", "failed", "OSError: port 8470 is in use") in states
    assert not app._driver.threaded  # the loop thread is gone
    app.stop()  # a failed app can be closed
    assert app.state is State.STOPPED


def test_module_stop_failure_still_stops_others_then_raises(make_app: MakeApp) -> None:
    log: list[str] = []
    app = make_app(default_modules=False)
    app.add_module(Recorder("a", log))
    app.add_module(Recorder("b", log, fail_stop=True))
    app.start()
    with pytest.raises(ModuleError, match=r"'b' \(RuntimeError: stuck\)"):
        app.stop()
    assert log == ["start a", "start b", "stop b", "stop a"]
    assert app.state is State.STOPPED
    assert app.get_module("b").state is State.FAILED


def test_add_module_errors(make_app: MakeApp) -> None:
    log: list[str] = []
    app = make_app(default_modules=False)
    app.add_module(Recorder("a", log))
    with pytest.raises(ModuleError, match="already has a module named 'a'"):
        app.add_module(Recorder("a", log))
    with pytest.raises(TypeError, match="needs a Module"):
        app.add_module(object())  # type: ignore[arg-type]
    other = make_app("other", default_modules=False)
    m = Recorder("shared", log)
    app.add_module(m)
    with pytest.raises(ModuleError, match="already belongs to app"):
        other.add_module(m)
    app.start()
    with pytest.raises(LifecycleError, match="add modules before start"):
        app.add_module(Recorder("late", log))
    assert [x.name for x in app.modules] == ["a", "shared"]
    app.stop()


def test_get_module(make_app: MakeApp) -> None:
    app = make_app(default_modules=False)
    log: list[str] = []
    rec = app.add_module(Recorder("a", log))
    assert app.get_module("a") is rec
    assert app.get_module("a", Recorder) is rec
    with pytest.raises(KeyError, match="no module 'b'"):
        app.get_module("b")
    with pytest.raises(TypeError, match="not a AsyncRecorder"):
        app.get_module("a", AsyncRecorder)


def test_module_needs_app() -> None:
    with pytest.raises(ModuleError, match="not added to an app"):
        _ = Recorder("x", []).app


@given(st.lists(st.sets(st.integers(0, 11), max_size=3), min_size=1, max_size=12))
def test_start_order_property(dep_sets: list[set[int]]) -> None:
    # Only depend on earlier modules, so the graph is acyclic; then shuffle nothing: the
    # order must list every module once, each after all of its dependencies.
    mods = [Recorder(f"m{i}", [], deps=tuple(f"m{d}" for d in sorted(deps) if d < i))
            for i, deps in enumerate(dep_sets)]
    order = [m.name for m in start_order(mods)]
    assert sorted(order) == sorted(m.name for m in mods)
    pos = {name: i for i, name in enumerate(order)}
    for m in mods:
        assert all(pos[d] < pos[m.name] for d in m.depends_on)
    if all(not m.depends_on for m in mods):
        assert order == [m.name for m in mods]


class Service:
    """A service with a drain that waits for every other one to be draining too."""

    def __init__(self, name: str, log: list[str], draining: threading.Barrier) -> None:
        self.name = name
        self.log = log
        self.draining = draining

    def drain(self, grace: float) -> None:
        self.draining.wait(timeout=grace)  # only passes if the drains run side by side
        self.log.append(f"drained {self.name}")


def test_a_service_module_makes_its_service_on_first_use() -> None:
    made: list[str] = []
    module: ServiceModule[str] = ServiceModule("svc", lambda: made.append("svc") or "svc")
    assert not module.made and made == []
    assert module.service == "svc" and module.service == "svc"
    assert module.made and made == ["svc"]


def test_services_start_after_the_startup_hooks_drain_side_by_side_and_stop_in_reverse(
        make_app: MakeApp) -> None:
    log: list[str] = []
    app = make_app(default_modules=False, builtin_extensions=[])
    app.add_module(Recorder("web", log))

    class Extension:
        def startup(self, app: OmniApp) -> None:
            log.append("startup")

    app.extensions.register(Extension(), name="ext")
    assert [m.name for m in app.services] == ["cluster", "subscriptions", "jobs", "workflows",
                                              "retention", "bridges"]
    assert [m.name for m in app.modules] == ["web"]  # the services are not user modules
    moves: list[tuple[str, str]] = []
    app.events.subscribe(ModuleStateChanged,
                         lambda e: moves.append((e.module, e.new)) if e.new in (
                             "running", "stopped") else None)
    app.start()
    assert log == ["start web", "startup"]
    assert [name for name, state in moves if state == "running"] == [
        "web", "cluster", "subscriptions", "jobs", "workflows", "retention", "bridges"]
    assert app.cluster is not None  # (no plugin host here, so no job workers either)
    assert all(m.state is State.RUNNING for m in app.services)
    app.stop(grace=1)
    assert [name for name, state in moves if state == "stopped"] == [
        "bridges", "retention", "workflows", "jobs", "subscriptions", "cluster", "web"]
    assert app.cluster is None and not app.jobs.started


def test_started_modules_drain_side_by_side_within_one_grace(make_app: MakeApp) -> None:
    log: list[str] = []
    app = make_app(default_modules=False, builtin_extensions=[])
    barrier = threading.Barrier(2)
    for name in ("a", "b"):
        service = Service(name, log, barrier)
        app.add_module(ServiceModule(name, lambda s=service: s,  # type: ignore[misc]
                                     start=lambda s: None, drain=lambda s, grace: s.drain(grace)))
    app.start()
    app.stop(grace=10)
    assert sorted(log) == ["drained a", "drained b"]  # neither waited out its barrier


def test_a_service_never_made_is_neither_drained_nor_stopped(make_app: MakeApp) -> None:
    app = make_app(default_modules=False, builtin_extensions=[])
    stopped: list[str] = []
    module: ServiceModule[list[str]] = ServiceModule(
        "lazy", lambda: stopped, stop=lambda s: s.append("stopped"))
    app.add_module(module)
    app.start()
    app.stop()
    assert not module.made and stopped == [] and module.state is State.STOPPED

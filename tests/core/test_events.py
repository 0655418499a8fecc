from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import ClassVar

import pytest

from omnicore.core.events import (
    AppStarted,
    ErrorOccurred,
    Event,
    EventBus,
    TaskFailed,
    event_types,
)
from omnicore.plugins.events import PluginFailed, PluginLoaded, PluginUnloaded


def loaded(name: str = "p") -> PluginLoaded:
    return PluginLoaded(plugin=name, version="1", path="/x.wasm")


def test_exact_topic_class_and_wildcards() -> None:
    bus = EventBus()
    got: dict[str, list[str]] = {k: [] for k in ("exact", "cls", "prefix", "all", "glob")}
    bus.subscribe("plugin.loaded", lambda e: got["exact"].append(e.topic))
    bus.subscribe(PluginLoaded, lambda e: got["cls"].append(e.topic))
    bus.subscribe("plugin.*", lambda e: got["prefix"].append(e.topic))
    bus.subscribe("*", lambda e: got["all"].append(e.topic))
    bus.subscribe("*.failed", lambda e: got["glob"].append(e.topic))
    bus.publish(loaded())
    bus.publish(PluginUnloaded(plugin="p"))
    bus.publish(AppStarted(app="a", runtime_id="rt"))
    bus.publish(TaskFailed(task_id=1, name="t", error="boom"))
    assert got["exact"] == ["plugin.loaded"]
    assert got["cls"] == ["plugin.loaded"]
    assert got["prefix"] == ["plugin.loaded", "plugin.unloaded"]
    assert got["all"] == ["plugin.loaded", "plugin.unloaded", "app.started", "task.failed"]
    assert got["glob"] == ["task.failed"]


def test_prefix_wildcard_does_not_match_lookalike_topics() -> None:
    bus = EventBus()
    got: list[str] = []
    bus.subscribe("plugin.*", lambda e: got.append(e.topic))

    @dataclass(frozen=True, kw_only=True)
    class Pluginish(Event):
        topic: ClassVar[str] = "pluginish.thing"

    bus.publish(Pluginish())
    assert got == []


def test_failing_subscriber_does_not_stop_the_others_and_is_reported() -> None:
    bus = EventBus()
    got: list[str] = []
    errors: list[ErrorOccurred] = []

    def bad(e: Event) -> None:
        raise RuntimeError("subscriber exploded")

    bus.subscribe(PluginLoaded, lambda e: got.append("first"))
    bus.subscribe(PluginLoaded, bad)
    bus.subscribe(PluginLoaded, lambda e: got.append("third"))
    bus.subscribe(ErrorOccurred, errors.append)
    assert bus.publish(loaded()) == 3
    assert got == ["first", "third"]
    assert len(errors) == 1
    assert "subscriber exploded" in errors[0].error
    assert isinstance(errors[0].exc, RuntimeError)


def test_failing_error_subscriber_does_not_loop() -> None:
    bus = EventBus()
    calls: list[int] = []

    def bad(e: Event) -> None:
        calls.append(1)
        raise RuntimeError("again")

    bus.subscribe("*", bad)
    bus.publish(loaded())
    # One call for the event, one for the ErrorOccurred about it, and no more.
    assert len(calls) == 2


def test_unsubscribe() -> None:
    bus = EventBus()
    got: list[str] = []
    sub = bus.subscribe("plugin.*", lambda e: got.append(e.plugin))
    bus.publish(loaded("a"))
    bus.unsubscribe(sub)
    bus.publish(loaded("b"))
    assert got == ["a"]


async def test_async_subscriber_on_running_loop_and_failure_isolation() -> None:
    bus = EventBus()
    got: list[str] = []
    errors: list[ErrorOccurred] = []

    async def good(e: PluginLoaded) -> None:
        await asyncio.sleep(0)
        got.append(e.plugin)

    async def bad(e: PluginLoaded) -> None:
        raise ValueError("async boom")

    bus.subscribe(PluginLoaded, bad)
    bus.subscribe(PluginLoaded, good)
    bus.subscribe(ErrorOccurred, errors.append)
    bus.publish(loaded("x"))
    assert got == []  # scheduled, not run inline
    await bus.drain(timeout=1)
    assert got == ["x"]
    assert [e.error for e in errors] == ["ValueError: async boom"]
    assert await bus.apublish(loaded("y")) == 2
    assert got == ["x", "y"]


def test_async_subscriber_without_any_loop_still_delivered() -> None:
    bus = EventBus()
    got: list[str] = []

    async def sub(e: PluginLoaded) -> None:
        got.append(e.plugin)

    bus.subscribe(PluginLoaded, sub)
    bus.publish(loaded("z"))
    assert got == ["z"]


def test_async_subscriber_from_other_thread_runs_on_bound_loop() -> None:
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    t = threading.Thread(target=lambda: (loop.call_soon(ready.set), loop.run_forever()))
    t.start()
    ready.wait()
    try:
        bus = EventBus()
        bus.bind_loop(loop)
        done = threading.Event()
        where: list[threading.Thread] = []

        async def sub(e: PluginLoaded) -> None:
            where.append(threading.current_thread())
            done.set()

        bus.subscribe(PluginLoaded, sub)
        bus.publish(loaded())
        assert done.wait(2)
        assert where == [t]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        t.join()
        loop.close()


def test_event_types_registry_and_extension_elsewhere() -> None:
    @dataclass(frozen=True, slots=True, kw_only=True)
    class CircuitOpened(Event):
        topic: ClassVar[str] = "test.circuit_opened"
        plugin: str

    assert event_types()["test.circuit_opened"] is CircuitOpened
    assert event_types()["plugin.failed"] is PluginFailed
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe("test.*", got.append)
    bus.publish(CircuitOpened(plugin="p"))
    assert got[0].plugin == "p"  # type: ignore[attr-defined]


def test_bad_subscriptions_are_refused() -> None:
    bus = EventBus()
    with pytest.raises(TypeError, match="not callable"):
        bus.subscribe("x", "nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        bus.subscribe("", print)
    with pytest.raises(ValueError, match="plain name"):
        @dataclass(frozen=True, kw_only=True)
        class Bad(Event):
            topic: ClassVar[str] = "bad.*"


def test_events_are_immutable() -> None:
    e = loaded()
    with pytest.raises(AttributeError):
        e.plugin = "other"  # type: ignore[misc]

"""PluginHost (``app.plugins``) on its own: load, call, grants, precedence, breaker, events."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicore.core.events import Event
from omnicore.errors import (
    CircuitOpen,
    ConfigError,
    DeadlineExceeded,
    DuplicatePlugin,
    GuestError,
    HandlerNotFound,
    InputTooLarge,
    InvalidModule,
    NeedsGrant,
    PluginError,
    PluginLoadError,
    PluginNotFound,
    Trap,
)
from omnicore.plugins.events import (
    PluginCircuitChanged,
    PluginFailed,
    PluginLoaded,
    PluginStateChanged,
    PluginUnloaded,
)
from omnicore.plugins.host import PluginHost
from omnicore.sandbox import Limits
from tests.host_fixtures import config_wasm, echo_wasm, in_flight, write
from tests.waiting import eventually


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def host(events: list[Event]) -> Iterator[PluginHost]:
    with PluginHost(events=events.append, failure_threshold=2, cooldown_s=0.3) as h:
        yield h


def test_load_call_and_inspect(host: PluginHost, tmp_path: Path, events: list[Event]) -> None:
    path = write(tmp_path, "echo.wasm", echo_wasm())
    info = host.load(path)
    assert info.name == "echo" and info.state == "loaded" and info.callable
    assert info.source == str(path) and info.version == "1.0.0" and info.size == path.stat().st_size
    assert info.handlers == ("echo", "version", "fail", "trap", "spin", "slow")
    assert info.granted == {"log": {}} and info.missing == () and info.requested == ()
    assert host.call("echo", "echo", b"hello") == b"hello"
    assert host.call("echo", "echo", b"") == b""
    assert host.call("echo", "version") == b"1.0.0"
    assert "echo" in host and "nope" not in host and len(host) == 1
    assert [p.name for p in host] == ["echo"]
    stats = host.get("echo").stats
    assert stats is not None and stats.calls == 3 and stats.errors == 0
    assert isinstance(events[0], PluginLoaded) and events[0].plugin == "echo"
    assert host.get("echo").as_dict()["stats"]["calls"] == 3


def test_load_bytes_with_explicit_name(host: PluginHost) -> None:
    host.load(echo_wasm("echo"), name="other")
    assert host.call("other", "echo", b"x") == b"x"


def test_call_json(host: PluginHost) -> None:
    host.load(echo_wasm())
    assert host.call_json("echo", "echo", {"a": [1, 2]}) == {"a": [1, 2]}
    with pytest.raises(PluginError, match="not JSON"):
        host.call_json("echo", "version")


async def test_acall_runs_off_the_event_loop(host: PluginHost) -> None:
    # A deadline far past the spins' own time: on a loaded machine two of them took over the
    # default second, and the subject here is the loop, not the deadline.
    host.load(echo_wasm(), limits={"timeout_ms": 60_000})
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    # `slow` with input 250 spins ~250M iterations (about 90 ms here, more under load):
    # a loop blocked by the calls would tick once at most, a free one ticks every 5 ms.
    start = asyncio.get_running_loop().time()
    outs = await asyncio.gather(*(host.acall("echo", "slow", bytes([250])) for _ in range(2)),
                                host.acall("echo", "echo", b"fast"))
    took = asyncio.get_running_loop().time() - start
    task.cancel()
    assert outs == [b"1.0.0", b"1.0.0", b"fast"]
    assert ticks >= 3, (took, ticks)


async def test_the_call_door_keeps_its_width_and_drops_calls_cancelled_in_the_queue() -> None:
    from omnicore.plugins.door import CallDoor

    door = CallDoor("gated", 2)
    gate = threading.Event()
    entered = threading.Semaphore(0)
    ran: list[str] = []

    def held(tag: str) -> str:
        entered.release()
        assert gate.wait(30)
        ran.append(tag)
        return tag

    first, second = door.submit(held, "a"), door.submit(held, "b")
    for _ in range(2):  # both workers busy: the door is 2 wide
        assert await asyncio.to_thread(entered.acquire, True, 30)
    third = door.submit(held, "c")
    dropped = door.submit(ran.append, "never")
    dropped.cancel()  # still queued: it must never run
    assert not third.done() and len(door._threads) == 2
    gate.set()
    assert await asyncio.gather(first, second, third) == ["a", "b", "c"]
    assert await door.submit(lambda: "after") == "after"
    assert sorted(ran) == ["a", "b", "c"]
    # One call at a time runs on the worker freed last, not on each worker in turn.
    threads = {await door.submit(threading.get_ident) for _ in range(20)}
    assert len(threads) == 1
    with pytest.raises(ZeroDivisionError):
        await door.submit(lambda: 1 / 0)
    gate.clear()
    queued = [door.submit(held, "x"), door.submit(held, "y"), door.submit(held, "z")]
    door.shutdown(wait=False)
    with pytest.raises(RuntimeError, match="takes no more calls"):
        door.submit(held, "late")
    gate.set()  # what was queued before the shutdown still runs
    assert await asyncio.gather(*queued) == ["x", "y", "z"]
    await asyncio.to_thread(door.shutdown, True)
    assert not any(t.is_alive() for t in door._threads)


async def test_acall_answers_on_every_loop_it_is_called_from(host: PluginHost) -> None:
    host.load(echo_wasm(), limits={"pool_size": 2})

    def other_loop() -> list[bytes]:
        async def calls() -> list[bytes]:
            return list(await asyncio.gather(*(host.acall("echo", "echo", b"%d" % i)
                                               for i in range(20))))
        return asyncio.run(calls())

    here = asyncio.gather(*(host.acall("echo", "echo", b"h%d" % i) for i in range(20)))
    there = await asyncio.to_thread(other_loop)
    assert await here == [b"h%d" % i for i in range(20)]
    assert there == [b"%d" % i for i in range(20)]
    door = host._entries.require("echo").door
    assert door is not None and door.width == 2 and len(door._threads) <= 2


def test_call_errors_are_typed_and_the_host_keeps_serving(host: PluginHost) -> None:
    host.load(echo_wasm(), limits={"timeout_ms": 100, "max_input_bytes": 1024})
    with pytest.raises(PluginNotFound, match=r"no plugin named 'nope' \(loaded: echo\)"):
        host.call("nope", "echo", b"")
    with pytest.raises(HandlerNotFound):
        host.call("echo", "missing", b"")
    with pytest.raises(GuestError) as info:
        host.call("echo", "fail", b"")
    assert info.value.guest_message == "the plugin says no"
    with pytest.raises(InputTooLarge):
        host.call("echo", "echo", b"x" * 2048)
    assert host.call("echo", "echo", b"ok") == b"ok"
    with pytest.raises(Trap):
        host.call("echo", "trap", b"")
    assert host.call("echo", "echo", b"still ok") == b"still ok"
    with pytest.raises(DeadlineExceeded):
        host.call("echo", "spin", b"")
    assert host.call("echo", "echo", b"and ok") == b"and ok"
    info_ = host.get("echo")
    assert info_.stats is not None
    assert info_.stats.errors_by_type == {"HandlerNotFound": 1, "GuestError": 1,
                                          "InputTooLarge": 1, "Trap": 1,
                                          "DeadlineExceeded": 1}
    assert info_.last_error is not None and "deadline" in info_.last_error


def test_bad_files_raise_typed_errors_and_register_nothing(host: PluginHost,
                                                           tmp_path: Path) -> None:
    with pytest.raises(PluginLoadError, match="does not exist"):
        host.load(tmp_path / "missing.wasm")
    with pytest.raises(InvalidModule):
        host.load(b"")
    with pytest.raises(InvalidModule):
        host.load(b"\x00asm\x01\x00\x00\x00\x01\x05garbage")
    assert len(host) == 0


def test_needs_grant_then_grant(host: PluginHost, events: list[Event]) -> None:
    info = host.load(config_wasm("conf"), config={"greeting": "hi"})
    assert info.state == "needs-grant" and info.missing == ("config",)
    assert [(e.old, e.new) for e in events if isinstance(e, PluginStateChanged)] == [
        ("unloaded", "needs-grant")]
    assert info.requested == ("config",) and not info.callable
    with pytest.raises(NeedsGrant, match="needs grant: omnicore:config") as exc:
        host.call("conf", "get", b"greeting")
    assert exc.value.missing == ("config",)
    info = host.grant("conf", "omnicore:config")
    assert info.state == "loaded" and info.missing == () and "config" in info.granted
    assert host.call("conf", "get", b"greeting") == b"hi"
    assert any(isinstance(e, PluginStateChanged) and e.old == "needs-grant"
               and e.new == "loaded" for e in events)


def test_grant_on_an_unknown_plugin(host: PluginHost) -> None:
    with pytest.raises(PluginNotFound):
        host.grant("ghost", "config")


def test_precedence_app_config_then_sidecar_then_arguments(tmp_path: Path) -> None:
    settings = {"conf": {"grants": ["config"],
                         "config": {"a": "app", "b": "app", "c": "app", "nested": {"x": 1}},
                         "limits": {"timeout_ms": 111, "pool_size": 1}}}
    path = write(tmp_path, "conf.wasm", config_wasm("conf"))
    (tmp_path / "conf.toml").write_text(
        '[config]\nb = "sidecar"\nc = "sidecar"\n[config.nested]\ny = 2\n'
        "[limits]\ntimeout_ms = 222\n")
    with PluginHost(plugin_settings=settings, defaults=Limits(max_output_bytes=4096)) as host:
        info = host.load(path, config={"c": "explicit"}, limits={"max_input_bytes": 99})
        assert info.state == "loaded"
        assert host.call("conf", "get", b"a") == b"app"
        assert host.call("conf", "get", b"b") == b"sidecar"
        assert host.call("conf", "get", b"c") == b"explicit"
        assert host.call("conf", "get", b"nested") == b'{"x":1,"y":2}'
        assert info.limits == Limits(max_output_bytes=4096, timeout_ms=222, pool_size=1,
                                     max_input_bytes=99)


def test_a_sidecar_can_revoke_an_app_grant(tmp_path: Path) -> None:
    path = write(tmp_path, "conf.wasm", config_wasm("conf"))
    (tmp_path / "conf.yaml").write_text("grants: {config: false}\n")
    with PluginHost(plugin_settings={"conf": {"grants": ["config"]}}) as host:
        info = host.load(path)
        assert info.state == "needs-grant" and "config" not in info.granted
        assert host.load(config_wasm("conf"), name="conf2").state == "needs-grant"
        assert host.grant("conf", "config").state == "loaded"


def test_bad_limits_name_the_plugin(host: PluginHost) -> None:
    with pytest.raises(ConfigError, match="plugin 'echo': unknown limit"):
        host.load(echo_wasm(), limits={"timeout": 5})
    assert "echo" not in host


def test_duplicate_names_name_both_sources(host: PluginHost, tmp_path: Path) -> None:
    a = write(tmp_path, "a.wasm", echo_wasm("same"))
    b = write(tmp_path, "b.wasm", echo_wasm("same"))
    host.load(a)
    with pytest.raises(DuplicatePlugin) as info:
        host.load(b)
    assert str(a) in str(info.value) and str(b) in str(info.value)
    assert host.get("same").source == str(a)


def test_disabled_in_sidecar(host: PluginHost, tmp_path: Path) -> None:
    path = write(tmp_path, "echo.wasm", echo_wasm())
    (tmp_path / "echo.yaml").write_text("enabled: false\n")
    assert host.load(path).state == "disabled"
    with pytest.raises(PluginNotFound, match="disabled"):
        host.call("echo", "echo", b"")


def test_unload_lets_inflight_calls_finish(host: PluginHost, events: list[Event]) -> None:
    host.load(echo_wasm())
    result: list[bytes] = []
    worker = threading.Thread(target=lambda: result.append(
        host.call("echo", "slow", bytes([200]))))
    worker.start()
    eventually(lambda: in_flight(host, "echo"), "the slow call in flight", every=0.001)
    host.unload("echo")
    worker.join()
    assert result == [b"1.0.0"]
    assert "echo" not in host
    with pytest.raises(PluginNotFound):
        host.call("echo", "echo", b"")
    with pytest.raises(PluginNotFound):
        host.unload("echo")
    assert any(isinstance(e, PluginUnloaded) and e.plugin == "echo" for e in events)


def test_breaker_opens_fails_fast_and_recovers(host: PluginHost, events: list[Event]) -> None:
    host.load(echo_wasm())
    for _ in range(2):
        with pytest.raises(Trap):
            host.call("echo", "trap", b"")
    info = host.get("echo")
    assert info.state == "circuit-open" and info.breaker == "open"
    calls_before = info.stats.calls if info.stats else 0
    with pytest.raises(CircuitOpen, match="circuit is open"):
        host.call("echo", "echo", b"x")
    # Failing fast means the guest was not entered: no call was recorded.
    assert host.get("echo").stats.calls == calls_before  # type: ignore[union-attr]
    time.sleep(0.35)
    assert host.get("echo").state == "half-open"
    assert host.call("echo", "echo", b"x") == b"x"
    assert host.get("echo").state == "loaded"
    changes = [(e.old, e.new) for e in events if isinstance(e, PluginCircuitChanged)]
    assert changes == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]
    states = [(e.old, e.new) for e in events if isinstance(e, PluginStateChanged)]
    assert ("loaded", "circuit-open") in states and ("half-open", "loaded") in states


def test_guest_errors_never_open_the_breaker(host: PluginHost) -> None:
    host.load(echo_wasm())
    for _ in range(10):
        with pytest.raises(GuestError):
            host.call("echo", "fail", b"")
    assert host.get("echo").state == "loaded"


def test_folder_hooks_register_broken_files_as_failed(host: PluginHost, tmp_path: Path,
                                                       events: list[Event]) -> None:
    bad = write(tmp_path, "broken.wasm", b"\x00asm\x01\x00\x00")
    assert host.load_file(bad) == "broken"
    info = host.get("broken")
    assert info.state == "failed" and info.last_error and not info.callable
    with pytest.raises(PluginLoadError, match="failed to load"):
        host.call("broken", "echo", b"")
    assert any(isinstance(e, PluginFailed) and e.plugin == "broken" for e in events)
    with pytest.raises(PluginLoadError, match="fix the file"):
        host.grant("broken", "config")


async def test_close_is_idempotent_and_final() -> None:
    host = PluginHost()
    host.load(echo_wasm())
    assert await host.acall("echo", "echo", b"x") == b"x"
    host.close()
    host.close()
    assert len(host) == 0
    with pytest.raises(PluginError, match="closed"):
        await host.acall("echo", "echo", b"x")
    with pytest.raises(PluginError, match="closed"):
        host.load(echo_wasm())


def test_a_bad_argument_during_a_probe_does_not_wedge_the_breaker(host: PluginHost) -> None:
    host.load(echo_wasm())
    for _ in range(2):
        with pytest.raises(Trap):
            host.call("echo", "trap", b"")
    time.sleep(0.35)
    with pytest.raises(TypeError):
        host.call("echo", "echo", "not bytes")  # type: ignore[arg-type]
    assert host.call("echo", "echo", b"x") == b"x"
    assert host.get("echo").state == "loaded"


def test_public_names() -> None:
    import omnicore.plugins as package
    import omnicore.plugins.events as events
    import omnicore.plugins.extension as extension

    assert package.__all__ == ["PluginHost", "PluginInfo", "PluginState"]
    assert extension.__all__ == ["register", "shutdown", "startup"]
    assert events.__all__ == ["PluginCircuitChanged", "PluginFailed", "PluginLoaded",
                              "PluginReloaded", "PluginSettingsChanged", "PluginStateChanged",
                              "PluginUnloaded"]


def test_info_as_dict_is_json(host: PluginHost) -> None:
    import json

    host.load(echo_wasm(), config={"a": [1]})
    host.call("echo", "echo", b"x")
    doc = json.loads(json.dumps(host.get("echo").as_dict()))
    assert doc["state"] == "loaded" and doc["stats"]["calls"] == 1
    assert doc["limits"]["timeout_ms"] == 1000 and doc["granted"] == {"log": {}}


def test_a_file_loaded_explicitly_is_adopted_by_the_folder(host: PluginHost,
                                                           tmp_path: Path) -> None:
    path = write(tmp_path, "echo.wasm", echo_wasm())
    host.load(path)
    host.watch_folder(tmp_path, watch=False)
    assert [p.name for p in host] == ["echo"] and host.get("echo").state == "loaded"


def test_fuel_limits_are_enforced_per_plugin(host: PluginHost) -> None:
    from omnicore.errors import FuelExhausted

    host.load(echo_wasm("metered"), limits={"fuel": 100_000})
    host.load(echo_wasm("free"))
    with pytest.raises(FuelExhausted) as info:
        host.call("metered", "slow", bytes([5]))
    assert info.value.limit == "fuel" and info.value.value == 100_000
    assert host.call("metered", "echo", b"small") == b"small"
    assert host.call("free", "slow", bytes([5])) == b"1.0.0"  # no metering, no limit


def test_fuel_with_a_given_engine_that_has_none() -> None:
    from omnicore.sandbox import SandboxEngine

    engine = SandboxEngine()
    try:
        with PluginHost(engine=engine) as host:
            with pytest.raises(ConfigError, match="fuel metering"):
                host.load(echo_wasm(), limits={"fuel": 1000})
            assert host.load(echo_wasm()).state == "loaded"
    finally:
        engine.close()


def test_health_follows_the_breaker(events: list[Event]) -> None:
    from omnicore.modules.health import HealthModule, HealthStatus

    health = HealthModule()
    with PluginHost(health=health, failure_threshold=1, cooldown_s=0.2) as host:
        host.load(echo_wasm())
        assert health.check().components["plugin:echo"].status is HealthStatus.HEALTHY
        with pytest.raises(Trap):
            host.call("echo", "trap", b"")
        assert health.check().components["plugin:echo"].status is HealthStatus.UNHEALTHY
        time.sleep(0.25)
        component = health.check().components["plugin:echo"]
        assert component.status is HealthStatus.DEGRADED and "half-open" in component.detail
        host.call("echo", "echo", b"")
        assert health.check().components["plugin:echo"].status is HealthStatus.HEALTHY
        host.unload("echo")
        assert "plugin:echo" not in health.check_names


def test_close_waits_for_a_running_call_and_its_deadline_still_holds() -> None:
    host = PluginHost()
    host.load(echo_wasm(), limits={"timeout_ms": 300})
    errors: list[BaseException] = []

    def spin() -> None:
        try:
            host.call("echo", "spin", b"")
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=spin)
    worker.start()
    eventually(lambda: in_flight(host, "echo"), "the spinning call in flight", every=0.001)
    host.close()  # must not strand the spinning call without its deadline ticker
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], DeadlineExceeded)


def test_require_is_a_lookup_of_registered_plugins_in_any_state(host: PluginHost,
                                                                tmp_path: Path) -> None:
    host.load(echo_wasm())
    host.require("echo")
    with pytest.raises(PluginNotFound, match=r"no plugin named 'nope' \(loaded: echo\)") as e:
        host.require("nope")
    assert e.value.plugin == "nope"
    # Registered but not callable (failed, disabled) is still found: the call says why.
    assert host.load_file(write(tmp_path, "broken.wasm", b"\x00asm\x01\x00\x00")) == "broken"
    host.require("broken")
    host.load(write(tmp_path, "quiet.wasm", echo_wasm("quiet")))
    (tmp_path / "quiet.toml").write_text("enabled = false\n")
    host.reload_file("quiet", tmp_path / "quiet.wasm")
    assert host.get("quiet").state == "disabled"
    host.require("quiet")
    with pytest.raises(PluginNotFound, match="disabled"):
        host.call("quiet", "echo", b"")

"""app.plugins inside a real OmniApp: extension wiring, folder at start, health, metrics, events."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.app import OmniApp
from omnicore.core.events import Event
from omnicore.errors import CircuitOpen, PluginError, Trap
from omnicore.modules.health import HealthStatus
from omnicore.plugins.events import PluginCircuitChanged, PluginFailed, PluginLoaded, PluginReloaded
from omnicore.plugins.host import PluginHost
from tests.host_fixtures import config_wasm, echo_wasm, write
from tests.waiting import eventually


def answer(app: OmniApp, plugin: str, handler: str) -> bytes | None:
    """The plugin's answer, or None while a reload has it refusing calls."""
    try:
        return app.plugins.call(plugin, handler)
    except PluginError:
        return None


@pytest.fixture
def appdir(tmp_path: Path) -> Path:
    (tmp_path / "plugins").mkdir()
    return tmp_path


@pytest.fixture
def make(appdir: Path) -> Iterator[Callable[..., OmniApp]]:
    apps: list[OmniApp] = []

    def factory(**overrides: Any) -> OmniApp:
        over = {"data_dir": str(appdir / "data"), "plugins_dir": str(appdir / "plugins"),
                **overrides}
        app = OmniApp("host-test", overrides=over, environ={}, entry_points=False)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        if app.state.value == "running":
            app.stop()


def test_extension_attaches_plugins_and_loads_the_folder(make: Callable[..., OmniApp],
                                                         appdir: Path) -> None:
    write(appdir / "plugins", "echo.wasm", echo_wasm())
    write(appdir / "plugins", "broken.wasm", b"junk")
    app = make()
    assert isinstance(app.plugins, PluginHost)
    assert "omnicore.plugins.extension" in app.extensions.names
    assert "omnicore.capabilities.builtin" in app.extensions.names
    assert len(app.plugins) == 0  # nothing loads before start
    seen: list[Event] = []
    app.events.subscribe("plugin.*", seen.append)
    app.start()
    assert app.plugins.call("echo", "echo", b"hi") == b"hi"
    assert app.plugins.get("broken").state == "failed"
    assert app.plugins.folder is not None and app.plugins.folder.watching
    assert any(isinstance(e, PluginLoaded) and e.plugin == "echo" for e in seen)
    assert any(isinstance(e, PluginFailed) and e.plugin == "broken" for e in seen)
    report = app.health.check()
    assert report.components["plugin:echo"].status is HealthStatus.HEALTHY
    assert report.components["plugins-folder"].status is HealthStatus.HEALTHY
    assert report.components["plugin:broken"].status is HealthStatus.UNHEALTHY
    assert "failed:" in report.components["plugin:broken"].detail
    app.stop()
    assert len(app.plugins) == 0
    assert not any(n.startswith("plugin") for n in app.health.check_names)


def test_a_missing_plugins_dir_is_degraded(make: Callable[..., OmniApp], appdir: Path) -> None:
    app = make(plugins_dir=str(appdir / "absent"))
    app.start()
    component = app.health.check().components["plugins-folder"]
    assert component.status is HealthStatus.DEGRADED and "does not exist" in component.detail


def test_a_missing_default_plugins_dir_is_not_a_fault(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An embedding app never asked for ./plugins: its absence must not degrade health."""
    monkeypatch.chdir(tmp_path)
    app = OmniApp("embedded", overrides={"data_dir": str(tmp_path / "data")})
    app.start()
    try:
        component = app.health.check().components["plugins-folder"]
        assert component.status is HealthStatus.HEALTHY and "does not exist" in component.detail
        assert app.health.check().status is HealthStatus.HEALTHY
    finally:
        app.stop()


def test_app_config_grants_and_circuit_settings(make: Callable[..., OmniApp],
                                                appdir: Path) -> None:
    write(appdir / "plugins", "conf.wasm", config_wasm("conf"))
    write(appdir / "plugins", "echo.wasm", echo_wasm())
    app = make(plugins={"conf": {"grants": ["config"], "config": {"k": "from-app"}}},
               sandbox={"circuit": {"failure_threshold": 2, "cooldown_s": 60},
                        "limits": {"timeout_ms": 200}})
    changes: list[Event] = []
    app.events.subscribe(PluginCircuitChanged, changes.append)
    app.start()
    assert app.plugins.call("conf", "get", b"k") == b"from-app"
    assert app.plugins.get("echo").limits.timeout_ms == 200  # type: ignore[union-attr]
    for _ in range(2):
        with pytest.raises(Trap):
            app.plugins.call("echo", "trap", b"")
    with pytest.raises(CircuitOpen):
        app.plugins.call("echo", "echo", b"")
    assert [(e.old, e.new) for e in changes] == [("closed", "open")]  # type: ignore[attr-defined]
    report = app.health.check()
    assert report.components["plugin:echo"].status is HealthStatus.UNHEALTHY
    assert "circuit open" in report.components["plugin:echo"].detail
    text = app.metrics.render().decode()
    assert 'omnicore_plugin_errors_total{error="Trap",plugin="echo"} 2.0' in text
    assert 'omnicore_plugin_calls_total{plugin="conf"} 1.0' in text


def test_needs_grant_is_degraded_in_health(make: Callable[..., OmniApp], appdir: Path) -> None:
    write(appdir / "plugins", "conf.wasm", config_wasm("conf"))
    app = make()
    app.start()
    component = app.health.check().components["plugin:conf"]
    assert component.status is HealthStatus.DEGRADED
    assert "needs grant: omnicore:config" in component.detail
    app.plugins.grant("conf", "config")
    assert app.health.check().components["plugin:conf"].status is HealthStatus.HEALTHY


def test_disabled_in_app_config(make: Callable[..., OmniApp], appdir: Path) -> None:
    write(appdir / "plugins", "echo.wasm", echo_wasm())
    app = make(plugins={"echo": {"enabled": False}})
    app.start()
    assert app.plugins.get("echo").state == "disabled"


def test_drop_in_and_replace_under_load_in_a_started_app(make: Callable[..., OmniApp],
                                                          appdir: Path) -> None:
    app = make()
    reloads: list[Event] = []
    app.events.subscribe(PluginReloaded, reloads.append)
    app.start()
    folder = appdir / "plugins"
    write(folder, "drop.wasm", echo_wasm("drop", "1.0.0"))
    eventually(lambda: answer(app, "drop", "version") == b"1.0.0")

    failures: list[BaseException] = []
    answers: list[bytes] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                answers.append(app.plugins.call("drop", "version", b""))
            except BaseException as exc:
                failures.append(exc)

    worker = threading.Thread(target=loop)
    worker.start()
    eventually(lambda: answers, "calls before the swap")
    write(folder, "drop.wasm", echo_wasm("drop", "2.0.0"))
    swapped = eventually(lambda: [i for i, a in enumerate(answers) if a == b"2.0.0"])[0]
    eventually(lambda: len(answers) > swapped + 20, "calls after the swap")
    stop.set()
    worker.join()
    assert failures == []
    assert answers[0] == b"1.0.0" and answers[-1] == b"2.0.0"
    assert app.plugins.call("drop", "version") == b"2.0.0"
    assert [e.version for e in reloads] == ["2.0.0"]  # type: ignore[attr-defined]


async def test_acall_inside_an_async_app(make: Callable[..., OmniApp], appdir: Path) -> None:
    write(appdir / "plugins", "echo.wasm", echo_wasm())
    app = make()
    async with app:
        outs = await asyncio.gather(*(app.plugins.acall("echo", "echo", str(i).encode())
                                      for i in range(20)))
        assert outs == [str(i).encode() for i in range(20)]


def test_sandbox_pooling_config_reaches_the_engine(make: Callable[..., OmniApp],
                                                   appdir: Path) -> None:
    write(appdir / "plugins", "echo.wasm", echo_wasm())
    app = make(sandbox={"pooling": True})
    app.start()
    assert app.plugins.call("echo", "echo", b"pooled") == b"pooled"
    engines = app.plugins._linker.engines()
    assert engines and all(engine.pooling for engine in engines)

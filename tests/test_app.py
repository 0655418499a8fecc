from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from omnicore import OmniApp as ReExported
from omnicore.app import OmniApp
from omnicore.core.events import AppStarted, AppStateChanged, AppStopped
from omnicore.core.lifecycle import State
from omnicore.errors import LifecycleError
from omnicore.modules.health import HealthModule, HealthStatus
from omnicore.modules.metrics import MetricsModule

MakeApp = Callable[..., OmniApp]


def test_identity_and_reexport(make_app: MakeApp) -> None:
    a, b = make_app("a"), make_app("b")
    assert ReExported is OmniApp
    assert a.name == "a" and a.config.name == "a"
    assert a.runtime_id.startswith("rt-") and a.runtime_id != b.runtime_id
    assert a.state is State.CREATED and a.uptime == 0.0
    assert "a" in repr(a) and a.runtime_id in repr(a)


def test_start_stop_creates_data_dir_and_publishes(make_app: MakeApp) -> None:
    app = make_app()
    seen: list[str] = []
    app.events.subscribe("app.*", lambda e: seen.append(
        f"{e.old}->{e.new}" if isinstance(e, AppStateChanged) else e.topic))
    assert not app.data_dir.exists()
    app.start()
    assert app.data_dir.is_dir()
    assert app.state is State.RUNNING
    assert app.loop is not None and app.loop.is_running()
    time.sleep(0.01)
    assert app.uptime > 0
    app.stop()
    frozen = app.uptime
    time.sleep(0.01)
    assert app.uptime == frozen
    assert seen == ["created->starting", "starting->running", "app.started",
                    "running->stopping", "stopping->stopped", "app.stopped"]


async def test_async_context_manager_and_refusals(make_app: MakeApp) -> None:
    app = make_app()
    with pytest.raises(LifecycleError, match=r"await app\.astart"):
        app.start()
    async with app as running:
        assert running is app and app.state is State.RUNNING
        assert app.loop is asyncio.get_running_loop()
        with pytest.raises(LifecycleError, match="astop"):
            app.stop()
        handle = await app.tasks.submit(lambda: 21 * 2)
        assert await handle == 42
    assert app.state is State.STOPPED


def test_sync_context_manager(make_app: MakeApp) -> None:
    with make_app() as app:
        assert app.state is State.RUNNING
    assert app.state is State.STOPPED


def test_mark_start_and_mark_stop(make_app: MakeApp) -> None:
    app = make_app()
    started: list[AppStarted] = []
    stopped: list[AppStopped] = []
    app.events.subscribe(AppStarted, started.append)
    app.events.subscribe(AppStopped, stopped.append)
    app.mark_start()
    assert app.state is State.RUNNING and len(started) == 1
    assert all(m.state is State.CREATED for m in app.modules)  # nothing was started
    with pytest.raises(LifecycleError):
        app.mark_start()
    app.mark_stop()
    assert app.state is State.STOPPED and stopped[0].uptime_s >= 0


def test_default_modules_and_replacement_keeps_registered_checks(make_app: MakeApp) -> None:
    app = make_app()
    assert [m.name for m in app.modules] == ["health", "metrics"]
    app.health.register_check("sandbox", lambda: (HealthStatus.DEGRADED, "1 plugin failed"))
    mine = HealthModule()
    app.add_module(mine)  # the seed's pattern: must replace, not clash
    assert app.health is mine
    assert [m.name for m in app.modules] == ["health", "metrics"]
    with pytest.raises(Exception, match="already has a module named 'health'"):
        app.add_module(HealthModule())
    app.start()
    report = mine.check()
    assert report.components["sandbox"].detail == "1 plugin failed"
    assert report.status is HealthStatus.DEGRADED
    assert isinstance(app.metrics, MetricsModule)
    app.stop()


def test_plugins_attribute_error_is_explained(make_app: MakeApp) -> None:
    app = make_app()
    with pytest.raises(AttributeError, match=r"built-in extension omnicore\.plugins\.extension"):
        _ = app.plugins
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = app.nope  # type: ignore[attr-defined]


def test_stop_grace_cancels_long_tasks(make_app: MakeApp) -> None:
    app = make_app(overrides={"shutdown_grace_s": 0.1})
    app.start()
    assert app.loop is not None
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def quick() -> str:
        await asyncio.sleep(0.01)
        return "done"

    async def submit() -> tuple[object, object]:
        return await app.tasks.submit(forever), await app.tasks.submit(quick)

    h_forever, h_quick = asyncio.run_coroutine_threadsafe(submit(), app.loop).result(1)
    t0 = time.monotonic()
    app.stop()
    assert time.monotonic() - t0 < 5  # not the forever task's forever
    assert cancelled.is_set()
    assert h_forever.cancelled()  # type: ignore[attr-defined]
    assert h_quick.result() == "done"  # type: ignore[attr-defined]


def test_builtin_extensions_load_cleanly(make_app: MakeApp) -> None:
    from omnicore.app import BUILTIN_EXTENSIONS

    app = make_app(builtin_extensions=None)
    assert app.extensions.failures == {}
    assert app.extensions.names == BUILTIN_EXTENSIONS
    app.start()
    assert app.health.check().components["extensions"].status is HealthStatus.HEALTHY
    app.stop()


def test_unusable_data_dir_is_a_config_error(make_app: MakeApp, tmp_path: Path) -> None:
    from omnicore.errors import ConfigError

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    app = make_app(overrides={"data_dir": str(blocker / "data")})
    with pytest.raises(ConfigError, match=r"cannot create data_dir .*a-file/data") as info:
        app.start()
    assert info.value.key == "data_dir" and info.value.source == "override"
    assert app.state is State.FAILED
    assert all(m.state is State.CREATED for m in app.modules)


def test_missing_dependency_fails_start_cleanly(make_app: MakeApp) -> None:
    from omnicore.core.module import Module
    from omnicore.errors import ModuleError

    app = make_app()
    app.add_module(Module("web", depends_on=["db"]))
    with pytest.raises(ModuleError, match="'web' depends on 'db', which is not added"):
        app.start()
    assert app.state is State.FAILED and app.tasks.state is State.CREATED


def test_config_and_overrides_together_are_refused() -> None:
    from omnicore.config import load_config

    cfg = load_config(environ={})
    with pytest.raises(TypeError, match="not both"):
        OmniApp(config=cfg, overrides={"workers": 1})
    app = OmniApp("renamed", config=cfg, entry_points=False, builtin_extensions=[])
    assert app.name == "renamed" and app.config.source_of("name") == "override"


def test_submit_threadsafe_from_sync_code(make_app: MakeApp) -> None:
    app = make_app()
    app.start()
    fut = app.tasks.submit_threadsafe(lambda a, b: a * b, 6, 7)
    assert fut.result(2) == 42
    failing = app.tasks.submit_threadsafe(int, "x")
    with pytest.raises(ValueError):
        failing.result(2)
    app.stop()
    with pytest.raises(LifecycleError):
        app.tasks.submit_threadsafe(print)


def test_stale_reference_to_replaced_default_is_forwarded(make_app: MakeApp) -> None:
    app = make_app()
    captured = app.health  # what an extension's register() sees before the user's add_module
    captured_metrics = app.metrics
    mine = HealthModule()
    app.add_module(mine)
    new_metrics = app.add_module(MetricsModule())
    assert captured.current is mine
    captured.register_check("plugin:greeter", lambda: (HealthStatus.DEGRADED, "needs grant"))
    assert "plugin:greeter" in mine.check_names
    app.start()
    assert mine.check().components["plugin:greeter"].detail == "needs grant"
    assert captured.check().status is HealthStatus.DEGRADED
    assert captured_metrics.current is new_metrics
    captured.unregister_check("plugin:greeter")
    assert "plugin:greeter" not in mine.check_names
    app.stop()


def test_hung_async_subscriber_does_not_block_stop(make_app: MakeApp) -> None:
    from omnicore.core.events import ModuleStateChanged

    app = make_app(overrides={"shutdown_grace_s": 0.1})

    async def hang(e: ModuleStateChanged) -> None:
        await asyncio.sleep(60)

    app.start()
    app.events.subscribe(ModuleStateChanged, hang)
    t0 = time.monotonic()
    app.stop()
    assert time.monotonic() - t0 < 5  # not the forever task's forever
    assert app.state is State.STOPPED

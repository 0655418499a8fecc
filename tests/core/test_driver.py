"""The app driven from blocking code (core/driver.py): start/stop on a loop thread of its
own, run until a signal or request_stop, and the refusals that name the right door."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from omnicore.app import OmniApp
from omnicore.core.lifecycle import State
from omnicore.errors import LifecycleError
from tests.waiting import eventually

MakeApp = Callable[..., OmniApp]


def test_double_start_stop_before_start_and_restart(make_app: MakeApp) -> None:
    app = make_app()
    with pytest.raises(LifecycleError, match="never started"):
        app.stop()
    assert app.state is State.CREATED
    app.start()
    with pytest.raises(LifecycleError, match="already running"):
        app.start()
    assert app.state is State.RUNNING
    app.stop()
    with pytest.raises(LifecycleError, match="already stopped"):
        app.stop()
    with pytest.raises(LifecycleError, match="has been stopped"):
        app.start()
    assert app.state is State.STOPPED


def test_request_stop_ends_run_from_another_thread(make_app: MakeApp) -> None:
    app = make_app()
    errors: list[BaseException] = []

    def runner() -> None:
        try:
            app.run()
        except BaseException as exc:
            errors.append(exc)

    with pytest.raises(LifecycleError, match="not serving"):
        app.request_stop()
    t = threading.Thread(target=runner)
    t.start()
    eventually(lambda: app.state is State.RUNNING, "the app running", every=0.01)
    app.request_stop()
    t.join(5)
    assert not t.is_alive() and errors == []
    assert app.state is State.STOPPED


def test_run_with_failing_module_raises_and_cleans_up(make_app: MakeApp) -> None:
    from omnicore.core.module import Module
    from omnicore.errors import ModuleError

    class Broken(Module):
        def start(self) -> None:
            raise RuntimeError("cannot bind")

    app = make_app()
    app.add_module(Broken())
    with pytest.raises(ModuleError, match="'broken' failed to start: RuntimeError"):
        app.run()
    assert app.state is State.STOPPED
    assert app.health.state is State.STOPPED  # started before it, stopped again


def test_sigterm_during_run_drains_within_grace_then_cancels(make_app: MakeApp) -> None:
    import os
    import signal

    from omnicore.core.module import Module
    from omnicore.core.tasks import TaskHandle

    handles: dict[str, TaskHandle] = {}

    class Jobs(Module):
        async def start(self) -> None:
            async def slow() -> None:
                await asyncio.sleep(30)

            async def medium() -> str:
                await asyncio.sleep(0.05)
                return "finished"

            handles["slow"] = await self.app.tasks.submit(slow)
            handles["medium"] = await self.app.tasks.submit(medium)

    app = make_app(overrides={"shutdown_grace_s": 0.3, "workers": 2})
    app.add_module(Jobs())

    def kill_when_running() -> None:
        try:
            eventually(lambda: app.state is State.RUNNING, "the app running", every=0.005)
        finally:  # else app.run() never returns
            os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    t0 = time.monotonic()
    app.run()  # main thread: real signal handlers
    elapsed = time.monotonic() - t0
    killer.join()
    assert app.state is State.STOPPED
    assert handles["medium"].result() == "finished"
    assert handles["slow"].cancelled()
    assert 0.3 <= elapsed < 5
    assert app.get_module("jobs").state is State.STOPPED
    # The handlers were removed: SIGTERM is back to its default disposition.
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)

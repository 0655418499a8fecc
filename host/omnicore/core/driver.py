"""The app driven from blocking code: ``start()``/``stop()`` run its async start and stop on a
private event loop thread; ``run()`` serves on a loop of its own until SIGINT/SIGTERM or
``request_stop()``. The app itself only knows ``astart()``/``astop()`` on the caller's loop.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from typing import Protocol

from omnicore.core._loop import LoopThread
from omnicore.core.lifecycle import Lifecycle, State
from omnicore.core.module import ModuleHost
from omnicore.errors import LifecycleError

__all__ = ["BlockingDriver", "Drivable"]


class Drivable(ModuleHost, Protocol):
    """What the driver needs of the app it drives (``OmniApp``): the app its modules see
    (its name, log, config and state), with its loop and its async start and stop."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the app runs on while started."""

    async def astart(self) -> None: ...
    async def astop(self, grace: float | None = None) -> None: ...


class BlockingDriver:
    """Drives one app's lifecycle (``lifecycle``: its states, for the precise refusals) for
    callers that block."""

    def __init__(self, app: Drivable, lifecycle: Lifecycle) -> None:
        self._app = app
        self._lifecycle = lifecycle
        self._thread: LoopThread | None = None
        self._stop_event: asyncio.Event | None = None

    @property
    def threaded(self) -> bool:
        """Whether the app runs on this driver's loop thread (started with :meth:`start`)."""
        return self._thread is not None

    def start(self) -> None:
        """Start the app on a private event loop thread and return once it is running."""
        _refuse_inside_loop("start")
        if not self._lifecycle.can(State.STARTING):
            self._lifecycle.transition(State.STARTING)  # raises the precise LifecycleError
        thread = LoopThread(f"omnicore-{self._app.name}")
        try:
            thread.call(self._app.astart())
        except BaseException:
            thread.close()
            raise
        self._thread = thread

    def stop(self, grace: float | None = None) -> None:
        """Stop an app started with :meth:`start`, then end its loop thread."""
        _refuse_inside_loop("stop")
        thread, app = self._thread, self._app
        if thread is None:
            if app.state is State.FAILED:
                self._lifecycle.transition(State.STOPPED)
                return
            if app.state in (State.RUNNING, State.STARTING):
                raise LifecycleError(f"app {app.name!r} was started with astart(); "
                                     "stop it with await app.astop()")
            self._lifecycle.transition(State.STOPPING)  # raises the precise LifecycleError
            return
        try:
            thread.call(app.astop(grace))
        finally:
            self._thread = None
            thread.close()

    def run(self) -> None:
        """Start, serve until SIGINT/SIGTERM (or :meth:`request_stop`), stop; block meanwhile.

        A second signal while stopping falls back to the default action (force quit).
        """
        _refuse_inside_loop("run")
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        app = self._app
        loop = asyncio.get_running_loop()
        self._stop_event = stop = asyncio.Event()
        installed: list[signal.Signals] = []

        def on_signal(sig: signal.Signals) -> None:
            app.log.info("received %s, stopping (grace %.3gs)", sig.name,
                         app.config.shutdown_grace_s)
            for s in installed:
                loop.remove_signal_handler(s)
            installed.clear()
            stop.set()

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, on_signal, sig)
                installed.append(sig)
            # `omnicore run` blocks both from its first line: one that came during the
            # imports is delivered now, to the handler that stops cleanly.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, installed)
        try:
            await app.astart()
            await stop.wait()
        finally:
            for s in installed:
                loop.remove_signal_handler(s)
            if app.state in (State.RUNNING, State.FAILED):
                await app.astop()
            self._stop_event = None

    def request_stop(self) -> None:
        """Make a blocking :meth:`run` stop; safe from any thread or a signal handler."""
        loop, event = self._app.loop, self._stop_event
        if loop is None or event is None:
            raise LifecycleError(f"app {self._app.name!r} is not serving (run() was not "
                                 "called)")
        loop.call_soon_threadsafe(event.set)


def _refuse_inside_loop(what: str) -> None:
    # app.<what>() would block the loop it is called on.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise LifecycleError(f"app.{what}() blocks, so it cannot be called inside a running event "
                         f"loop; use await app.a{what}() (or async with app)"
                         if what != "run" else
                         "app.run() cannot be called inside a running event loop; "
                         "use async with app")

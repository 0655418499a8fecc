"""OmniApp: the host application — config, lifecycle, modules, events, tasks, extensions.

Start sequence: the data dir is made ready before anything else runs — created 0700, its
lock taken (one host per data dir: a second is refused naming the first), the database
opened (a damaged one ends the start in one line, before anything listens), the module
cache's permissions checked, and the leases of a host that died holding the lock given
back; then entry-point extensions load (their ``register`` may add modules), the task engine
starts, modules start in dependency order, extensions' ``startup`` runs (on a worker
thread, so started modules keep serving), the app is running. Stop runs it backwards:
``shutdown`` hooks, the task engine drains for ``shutdown_grace_s`` then cancels, modules
stop in reverse order.

``start()``/``stop()`` run that on a private event loop thread; ``astart()``/``astop()`` (and
``async with app``) run it on the caller's loop; ``run()`` blocks until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from omnicore.app_stores import AppStores
from omnicore.capabilities import builtin as builtin_capabilities
from omnicore.config import OmniConfig, load_config
from omnicore.core._loop import LoopThread
from omnicore.core.events import (
    AppStarted,
    AppStateChanged,
    AppStopped,
    ErrorOccurred,
    EventBus,
    ModuleStateChanged,
)
from omnicore.core.identity import new_runtime_id
from omnicore.core.lifecycle import Lifecycle, State
from omnicore.core.module import Module, start_order
from omnicore.core.tasks import TaskEngine
from omnicore.errors import ConfigError, LifecycleError, ModuleError
from omnicore.extensions.manager import ExtensionManager
from omnicore.logging import get_logger
from omnicore.modules.health import HealthModule
from omnicore.modules.metrics import MetricsModule
from omnicore.plugins import extension as plugin_extension
from omnicore.plugins.host import PluginHost
from omnicore.sandbox.modcache import check_cache_dir

if TYPE_CHECKING:  # made on first use, so `omnicore call` never loads them
    from omnicore.capabilities.events import Subscriptions
    from omnicore.cluster import Membership
    from omnicore.jobs import Jobs
    from omnicore.workflows import Workflows

__all__ = ["BUILTIN_EXTENSIONS", "DEFAULT_MODULES", "OmniApp"]

#: Modules every app gets unless the user adds their own of the same name, which replaces the
#: default (and takes over what was registered on it).
DEFAULT_MODULES: list[type[Module]] = [HealthModule, MetricsModule]

#: Extensions every app loads at construction, in this order: the built-in capabilities
#: (through the same hook third-party capabilities use) and the plugin host.
BUILTIN_EXTENSIONS: list[str] = [builtin_capabilities.__name__, plugin_extension.__name__]
_BUILTIN_OBJECTS = {builtin_capabilities.__name__: builtin_capabilities,
                    plugin_extension.__name__: plugin_extension}

M = TypeVar("M", bound=Module)


class OmniApp(AppStores):
    """A host application.

    ``OmniApp("name")`` uses defaults, ``OMNICORE_*`` env vars and ``overrides``; pass
    ``config_path`` for an ``omnicore.yaml`` or a ready ``config``. Other layers attach to it:
    ``app.plugins`` is set by the sandbox extension.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        config: OmniConfig | None = None,
        config_path: str | Path | None = None,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
        builtin_extensions: list[str] | None = None,
        entry_points: bool = True,
        default_modules: bool = True,
    ) -> None:
        if config is not None and (config_path is not None or overrides or environ is not None):
            raise TypeError("OmniApp() takes either a ready config or config_path/overrides/"
                            "environ to build one, not both")
        if config is None:
            over = dict(overrides or {})
            if name is not None:
                over.setdefault("name", name)
            config = load_config(config_path, environ=environ, overrides=over)
        elif name is not None and name != config.name:
            sources = config.sources
            config = config.model_copy(update={"name": name})
            config._sources = {**sources, "name": "override"}
        self.config = config
        self.name = config.name
        self.runtime_id = new_runtime_id()
        self.log = get_logger("omnicore.app", app=self.name, runtime_id=self.runtime_id)
        self.events = EventBus(log=self.log.bind(component="events"))
        self.tasks = TaskEngine(workers=config.workers, events=self.events,
                                log=self.log.bind(component="tasks"))
        self._lifecycle = Lifecycle(f"app {self.name!r}", self._on_transition)
        self._modules: dict[str, Module] = {}
        self._defaults: set[str] = set()
        self._started: list[Module] = []
        self._started_mono: float | None = None
        self._stopped_mono: float | None = None
        self.started_at: float | None = None
        self._runner: LoopThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        #: This host's row in the instance table while it runs (``/api/v1/instances``).
        self.cluster: Membership | None = None
        self._entry_points = entry_points
        self._storage = None
        self._storage_lock = threading.Lock()
        if default_modules:
            from omnicore.jobs import JobMetrics

            for cls in DEFAULT_MODULES:
                module = cls()
                self.add_module(module)
                self._defaults.add(module.name)
            # Durable jobs and event deliveries in /metrics (collectors follow a replacement).
            self.metrics.add_collector(JobMetrics(self.jobs))
            self.metrics.add_collector(self.subscriptions.collector())
        self.extensions = ExtensionManager(self)
        for dotted in BUILTIN_EXTENSIONS if builtin_extensions is None else builtin_extensions:
            builtin = _BUILTIN_OBJECTS.get(dotted)
            if builtin is not None:
                self.extensions.register(builtin, name=dotted)
            else:
                self.extensions.load_module(dotted)

    # -- services, made on first use ----------------------------------------------------

    @functools.cached_property
    def jobs(self) -> Jobs:
        """Durable plugin jobs (``omnicore:tasks``, schedules); ``tasks`` is the in-memory
        TaskEngine for Python coroutines."""
        from omnicore.jobs import Jobs

        return Jobs(self.config.capabilities.tasks, storage=lambda: self.storage,
                    plugins=lambda: self.plugins, events=self.events, owner=self.runtime_id)

    @functools.cached_property
    def subscriptions(self) -> Subscriptions:
        """Plugins' event subscriptions (``omnicore:events``), delivered off the bus."""
        from omnicore.capabilities.events import Subscriptions

        return Subscriptions(self)

    @functools.cached_property
    def workflows(self) -> Workflows:
        """Workflow definitions (``workflows/``) and their durable runs."""
        from omnicore.workflows import Workflows

        return Workflows(self)

    # -- identity and state -------------------------------------------------------------

    @property
    def state(self) -> State:
        """The app's lifecycle state."""
        return self._lifecycle.state

    @property
    def uptime(self) -> float:
        """Seconds since the app became running (0 before; frozen once stopped)."""
        if self._started_mono is None:
            return 0.0
        end = self._stopped_mono if self._stopped_mono is not None else time.monotonic()
        return end - self._started_mono

    def _join_cluster(self) -> Membership:
        from omnicore import __version__
        from omnicore.cluster import ClusterSettings, Membership

        console = next((m for m in self.modules if m.name == "console"), None)
        membership = Membership(
            lambda: self.storage, self.runtime_id, __version__,
            settings=ClusterSettings(heartbeat_s=self.config.cluster.heartbeat_s,
                                     dead_after_s=self.config.cluster.dead_after_s),
            console_url=lambda: getattr(console, "url", None),
            jobs_held=lambda: len(self.jobs.running()),
            wake=self._wake_workers, on_drain=self._drain)
        membership.start()
        # Another host's enqueue or a reap wakes our idle workers now (LISTEN/NOTIFY).
        self.storage.on_wakeup(self.jobs.wake, "jobs")
        self.storage.on_wakeup(self.workflows.wake, "steps")
        return membership

    def _wake_workers(self) -> None:
        self.jobs.wake()
        self.workflows.wake()

    def _drain(self) -> None:
        """An operator asked this host to drain: stop as SIGTERM does (no new claims, the
        grace for in-flight work, leases given back), and so leave the cluster."""
        self.log.warning("draining: this host stops claiming work and exits")
        self.request_stop()

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the app runs on while started, else ``None``."""
        return self._loop

    def _on_transition(self, old: State, new: State) -> None:
        self.events.publish(AppStateChanged(app=self.name, runtime_id=self.runtime_id,
                                            old=old.value, new=new.value))

    # -- modules ------------------------------------------------------------------------

    def add_module(self, module: Module) -> Module:
        """Add ``module``; it starts with the app. Only before start.

        A module named like one of the app's defaults (``health``, ``metrics``) replaces it.
        """
        if not isinstance(module, Module):
            raise TypeError(f"add_module() needs a Module, got {type(module).__name__}")
        if self.state is not State.CREATED:
            raise LifecycleError(f"cannot add module {module.name!r} to app {self.name!r}: "
                                 f"it is {self.state.value} (add modules before start)")
        if not module.name:
            raise ModuleError("a module needs a non-empty name", module=module.name)
        existing = self._modules.get(module.name)
        if existing is module:
            return module
        if existing is not None:
            if module.name not in self._defaults:
                raise ModuleError(f"app {self.name!r} already has a module named "
                                  f"{module.name!r}", module=module.name)
            module.replaces(existing)
            existing._successor = module
            self._defaults.discard(module.name)
        if module._app is not None and module._app is not self:
            raise ModuleError(f"module {module.name!r} already belongs to app "
                              f"{module._app.name!r}", module=module.name)
        module._app = self
        module._log = None
        self._modules[module.name] = module
        module.on_attach(self)
        return module

    @property
    def modules(self) -> list[Module]:
        """The modules in insertion order."""
        return list(self._modules.values())

    @overload
    def get_module(self, name: str) -> Module: ...
    @overload
    def get_module(self, name: str, kind: type[M]) -> M: ...

    def get_module(self, name: str, kind: type[Module] = Module) -> Module:
        """The module named ``name`` (checked to be a ``kind``); ``KeyError`` if absent."""
        try:
            module = self._modules[name]
        except KeyError:
            raise KeyError(f"app {self.name!r} has no module {name!r} "
                           f"(modules: {', '.join(self._modules) or 'none'})") from None
        if not isinstance(module, kind):
            raise TypeError(f"module {name!r} is a {type(module).__name__}, "
                            f"not a {kind.__name__}")
        return module

    @property
    def health(self) -> HealthModule:
        """The app's health module (the default one, or the one the user added)."""
        return self.get_module("health", HealthModule)

    @property
    def metrics(self) -> MetricsModule:
        """The app's metrics module (the default one, or the one the user added)."""
        return self.get_module("metrics", MetricsModule)

    @property
    def plugins(self) -> PluginHost:
        """The wasm plugin host (attached by the built-in ``omnicore.plugins.extension``)."""
        try:
            host: PluginHost = self.__dict__["_plugins"]
        except KeyError:
            raise AttributeError("app.plugins is provided by the built-in extension "
                                 "omnicore.plugins.extension, which is not loaded in this app"
                                 ) from None
        return host

    @plugins.setter
    def plugins(self, host: PluginHost) -> None:
        self.__dict__["_plugins"] = host

    def _set_module_state(self, module: Module, new: State, error: str | None = None) -> None:
        old = module._state
        module._state = new
        self.events.publish(ModuleStateChanged(module=module.name, old=old.value,
                                               new=new.value, error=error))

    # -- lifecycle ----------------------------------------------------------------------

    def mark_start(self) -> None:
        """Mark the app running without starting anything: for hosts that drive it themselves."""
        self._lifecycle.transition(State.STARTING)
        self._became_running()

    def mark_stop(self) -> None:
        """Mark a running app stopped without stopping anything (pairs with :meth:`mark_start`)."""
        self._lifecycle.transition(State.STOPPING)
        self._became_stopped()

    def _became_running(self) -> None:
        self._started_mono = time.monotonic()
        self._stopped_mono = None
        self.started_at = time.time()
        self._lifecycle.transition(State.RUNNING)
        self.events.publish(AppStarted(app=self.name, runtime_id=self.runtime_id))

    def _became_stopped(self) -> None:
        self._stopped_mono = time.monotonic()
        self._lifecycle.transition(State.STOPPED)
        self.events.publish(AppStopped(app=self.name, runtime_id=self.runtime_id,
                                       uptime_s=self.uptime))

    async def astart(self) -> None:
        """Start on the running loop: extensions, data dir, tasks, modules, ``startup`` hooks."""
        self._lifecycle.transition(State.STARTING)
        self._loop = asyncio.get_running_loop()
        self.events.bind_loop(self._loop)
        try:
            self._open_data_dir()
            if self._entry_points:
                self.extensions.load_entry_points()
            order = start_order(self.modules)
            await self.tasks.start()
        except BaseException:
            await self._abort_start()
            raise
        for module in order:
            self._set_module_state(module, State.STARTING)
            try:
                result = module.start()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}"
                self._set_module_state(module, State.FAILED, why)
                self.log.error("module %s failed to start: %s", module.name, why)
                await self._abort_start()
                raise ModuleError(f"module {module.name!r} failed to start: {why}",
                                  module=module.name) from exc
            self._set_module_state(module, State.RUNNING)
            self._started.append(module)
        # Off the loop: loading every plugin takes seconds, and the modules already started
        # (the console's /healthz) must answer meanwhile.
        await self._loop.run_in_executor(None, self.extensions.startup)
        # Registered before any worker claims: a job leased to this runtime id belongs to a
        # host the others can see, and can take over if it dies.
        self.cluster = self._join_cluster()
        # Subscribers first: a job that runs at once (one queued while the host was down) may
        # publish, and its subscribers must already be listening.
        self.subscriptions.start()
        self.jobs.start()
        self.workflows.start_workers()
        self._became_running()
        self.log.info("app %s started (runtime id %s, %d modules)", self.name, self.runtime_id,
                      len(self._started))

    def _open_data_dir(self) -> None:
        try:
            from omnicore.storage.datadir import private_dir

            private_dir(self.data_dir)
        except OSError as exc:
            raise ConfigError(
                f"cannot create data_dir {self.data_dir}: {exc.strerror or exc} "
                f"(set data_dir in omnicore.yaml or OMNICORE_DATA_DIR)",
                key="data_dir", value=str(self.data_dir),
                source=self.config.source_of("data_dir")) from exc
        # The embedded database has one host; a shared one (storage.url) has many, whose
        # membership, not this lock, says who is alive.
        embedded = self.config.storage.url is None
        if embedded:
            self.data_lock.acquire(runtime_id=self.runtime_id, app=self.name,
                                   started_at=time.time())
        queue = self.storage.queue  # a damaged database ends the start here, in one line
        if self.config.sandbox.cache_dir is not None:
            check_cache_dir(self.config.sandbox.cache_dir)
        if not embedded:
            return
        # The lock is ours, so whoever leased the rows still running died holding it.
        jobs = queue.release_others(self.runtime_id)
        steps = self.workflows.store.release_others(self.runtime_id)
        if jobs or steps:
            gone = self.data_lock.previous or {}
            self.log.warning("released %d job and %d workflow step lease(s) of a host that "
                             "stopped without giving them back (pid %s, runtime id %s): "
                             "they run again now", jobs, steps, gone.get("pid", "?"),
                             gone.get("runtime_id", "?"))

    async def _abort_start(self) -> None:
        await self._stop_modules()
        if self.tasks.state is State.RUNNING:
            await self.tasks.stop(0)
        try:
            self._close_storage()
        finally:
            self.data_lock.release()
            self._lifecycle.transition(State.FAILED)

    async def _stop_modules(self) -> list[str]:
        failures = []
        while self._started:
            module = self._started.pop()
            self._set_module_state(module, State.STOPPING)
            try:
                result = module.stop()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}"
                self._set_module_state(module, State.FAILED, why)
                self.log.error("module %s failed to stop: %s", module.name, why)
                self.events.publish(ErrorOccurred(source=f"module {module.name}", error=why,
                                                  exc=exc))
                failures.append(f"{module.name!r} ({why})")
            else:
                self._set_module_state(module, State.STOPPED)
        return failures

    async def astop(self, grace: float | None = None) -> None:
        """Stop: ``shutdown`` hooks, drain tasks for ``grace`` s (config default), modules.

        Every module is asked to stop even if one fails; such failures are raised afterwards
        as one :class:`ModuleError`, with the app stopped.
        """
        if self.state is State.FAILED:
            self._lifecycle.transition(State.STOPPED)
            return
        self._lifecycle.transition(State.STOPPING)
        stopping_since = time.perf_counter()
        grace = self.config.shutdown_grace_s if grace is None else grace
        # The services stop side by side (the grace counts once); every plugin call still
        # running at its end is interrupted, or the host's close would wait out its deadline.
        with self.jobs.interrupt_after(grace):
            await asyncio.gather(asyncio.to_thread(self.subscriptions.stop),
                                 asyncio.to_thread(self.workflows.stop, grace),
                                 asyncio.to_thread(self.jobs.stop, grace))
            self.extensions.shutdown()
            if self.tasks.state is State.RUNNING:
                await self.tasks.stop(grace)
            failures = await self._stop_modules()
            # A hung async subscriber must not hold the stop beyond the grace period either.
            await self.events.drain(timeout=grace)
        if self.cluster is not None:  # its leases were given back above: leave the instance table
            await asyncio.get_running_loop().run_in_executor(None, self.cluster.stop)
            self.cluster = None
        try:
            self._close_storage()
        finally:  # the next host may start, whatever closing left undone
            self.data_lock.release()
        self._became_stopped()
        self.log.info("app %s stopped in %.3fs (up %.1fs)", self.name,
                      time.perf_counter() - stopping_since, self.uptime)
        self._loop = None
        if failures:
            raise ModuleError(f"app {self.name!r} stopped, but module(s) failed to stop: "
                              f"{', '.join(failures)}", module=failures[0])

    def start(self) -> None:
        """Start the app on a private event loop thread and return once it is running."""
        _refuse_inside_loop("start")
        if not self._lifecycle.can(State.STARTING):
            self._lifecycle.transition(State.STARTING)  # raises the precise LifecycleError
        runner = LoopThread(f"omnicore-{self.name}")
        try:
            runner.call(self.astart())
        except BaseException:
            runner.close()
            raise
        self._runner = runner

    def stop(self, grace: float | None = None) -> None:
        """Stop an app started with :meth:`start`, then end its loop thread."""
        _refuse_inside_loop("stop")
        runner = self._runner
        if runner is None:
            if self.state is State.FAILED:
                self._lifecycle.transition(State.STOPPED)
                return
            if self.state in (State.RUNNING, State.STARTING):
                raise LifecycleError(f"app {self.name!r} was started with astart(); "
                                     "stop it with await app.astop()")
            self._lifecycle.transition(State.STOPPING)  # raises the precise LifecycleError
            return
        try:
            runner.call(self.astop(grace))
        finally:
            self._runner = None
            runner.close()

    def close(self) -> None:
        """Release what a never-started app opened on use (its plugin host and runtimes, its
        database): for apps used without :meth:`start`, like ``omnicore call``'s. A running
        app is stopped with :meth:`stop` instead."""
        if self.state in (State.RUNNING, State.STARTING, State.STOPPING):
            raise LifecycleError(f"app {self.name!r} is {self.state.value}; stop() it instead")
        host = self.__dict__.get("_plugins")
        if host is not None:
            host.close()
        self._close_storage()

    async def __aenter__(self) -> OmniApp:
        await self.astart()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.state in (State.RUNNING, State.FAILED):
            await self.astop()

    def __enter__(self) -> OmniApp:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.state is State.RUNNING:
            self.stop()

    # -- run until signalled ------------------------------------------------------------

    def run(self) -> None:
        """Start, serve until SIGINT/SIGTERM (or :meth:`request_stop`), stop; block meanwhile.

        A second signal while stopping falls back to the default action (force quit).
        """
        _refuse_inside_loop("run")
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        self._stop_event = stop = asyncio.Event()
        installed: list[signal.Signals] = []

        def on_signal(sig: signal.Signals) -> None:
            self.log.info("received %s, stopping (grace %.3gs)", sig.name,
                          self.config.shutdown_grace_s)
            for s in installed:
                loop.remove_signal_handler(s)
            installed.clear()
            stop.set()

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, on_signal, sig)
                installed.append(sig)
        try:
            await self.astart()
            await stop.wait()
        finally:
            for s in installed:
                loop.remove_signal_handler(s)
            if self.state in (State.RUNNING, State.FAILED):
                await self.astop()
            self._stop_event = None

    def request_stop(self) -> None:
        """Make a blocking :meth:`run` stop; safe from any thread or a signal handler."""
        loop, event = self._loop, self._stop_event
        if loop is None or event is None:
            raise LifecycleError(f"app {self.name!r} is not serving (run() was not called)")
        loop.call_soon_threadsafe(event.set)

    def __repr__(self) -> str:
        return f"<OmniApp {self.name!r} {self.runtime_id} {self.state.value}>"


def _refuse_inside_loop(what: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise LifecycleError(f"app.{what}() blocks, so it cannot be called inside a running event "
                         f"loop; use await app.a{what}() (or async with app)"
                         if what != "run" else
                         "app.run() cannot be called inside a running event loop; "
                         "use async with app")

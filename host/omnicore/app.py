"""OmniApp, the composition root: the app's parts, and the order they start and stop in.

The parts: the config; the data dir and its stores (:class:`~omnicore.app_data.AppData`,
``app.data``: ``app.storage``, ``app.kv``, ``app.secrets``...); the event bus; the task engine
(``app.tasks``); the modules (``health``, ``metrics`` and the user's, the console among
them); the extensions (the built-in capabilities, and the plugin host behind ``app.plugins``);
and the services, each a :class:`~omnicore.core.module.ServiceModule` whose service is made
on first use (so ``omnicore call`` never loads one): cluster membership (``app.cluster``),
subscriptions (``app.subscriptions``), jobs (``app.jobs``), workflows (``app.workflows``),
the retention sweep (``retention.*``).

Start sequence: the data dir (:meth:`AppData.open <omnicore.app_data.AppData.open>`),
entry-point extensions, the task engine, the modules in dependency order, the extensions'
``startup`` (which loads the plugins), the services in dependency order; stop runs it
backwards, services and modules drained side by side for ``shutdown_grace_s`` first. specs/host.md
("The app's lifecycle") has each step and why it comes where it does.

``astart()``/``astop()`` (and ``async with app``) run that on the caller's loop; for blocking
callers, ``start()``/``stop()`` run it on a private event loop thread and ``run()`` serves
until SIGINT/SIGTERM (:class:`~omnicore.core.driver.BlockingDriver`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from operator import attrgetter
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Never, Self, TypeVar, overload

from omnicore import telemetry
from omnicore.app_data import AppData
from omnicore.capabilities import builtin as builtin_capabilities
from omnicore.config import OmniConfig, load_config
from omnicore.core.driver import BlockingDriver
from omnicore.core.events import AppStarted, AppStateChanged, AppStopped, EventBus
from omnicore.core.identity import new_runtime_id
from omnicore.core.lifecycle import Lifecycle, State
from omnicore.core.module import Module, ModuleSet, ServiceModule
from omnicore.core.tasks import TaskEngine
from omnicore.errors import LifecycleError, ModuleError
from omnicore.extensions.manager import ExtensionManager
from omnicore.logging import get_logger
from omnicore.modules.health import HealthModule
from omnicore.modules.metrics import MetricsModule
from omnicore.plugins import extension as plugin_extension
from omnicore.plugins.host import PluginHost

if TYPE_CHECKING:  # made on first use, so `omnicore call` never loads them
    from omnicore.bridges import Bridges
    from omnicore.capabilities.kv import KV
    from omnicore.cluster import Membership
    from omnicore.egress import Connector, Egress
    from omnicore.egress.db import Databases
    from omnicore.jobs import Jobs
    from omnicore.storage import Storage
    from omnicore.storage.datadir import DataDirLock
    from omnicore.storage.memory import Embedder, MemoryStore
    from omnicore.storage.retention import Sweeper
    from omnicore.storage.secrets import SecretStore
    from omnicore.storage.vectors import VectorStore
    from omnicore.subscriptions import Subscriptions
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
T = TypeVar("T")


class _DataPart(Generic[T]):
    """``app.<name>``: the part of ``app.data`` of that name, documented there
    (:class:`~omnicore.app_data.AppData`)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name, self._part = name, attrgetter(name)
        self.__doc__ = getattr(AppData, name).__doc__

    @overload
    def __get__(self, app: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, app: OmniApp, owner: type | None = None) -> T: ...

    def __get__(self, app: OmniApp | None, owner: type | None = None) -> T | Self:
        return self if app is None else self._part(app.data)

    def __set__(self, app: OmniApp, value: Never) -> None:
        raise AttributeError(f"app.{self._name} is app.data.{self._name}: it cannot be set")


class OmniApp:
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
            config = config.renamed(name)
        self.config = config
        self.name = config.name
        self.runtime_id = new_runtime_id()
        self.log = get_logger("omnicore.app", app=self.name, runtime_id=self.runtime_id)
        # Off unless telemetry.* or OTEL_* ask (opentelemetry is imported only then).
        telemetry.configure(config.telemetry, service_name=config.name,
                            instance=self.runtime_id, environ=environ)
        self._telemetry_environ = environ
        self._metrics_export: Any = None  # /metrics over OTLP, while running (telemetry.*)
        self.data = AppData(config, self.runtime_id, self.log, embedder=self._embedder)
        self.events = EventBus(log=self.log.bind(component="events"))
        self.tasks = TaskEngine(workers=config.workers, events=self.events,
                                log=self.log.bind(component="tasks"))
        self._lifecycle = Lifecycle(f"app {self.name!r}", self._on_transition)
        self._started_mono: float | None = None
        self._stopped_mono: float | None = None
        self._serving = False
        self.started_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._driver = BlockingDriver(self, self._lifecycle)
        self._entry_points = entry_points
        self._modules = ModuleSet(self)
        # The services start after the plugins load, since they call plugins; depends_on is
        # their start order. Membership first: a lease must name a host the others can see.
        # Subscribers before the workers: a job or a workflow step that runs at once (queued
        # while the host was down) may publish, and its subscribers must be listening. (A
        # durable subscription enqueues a job: that needs the Jobs object, made on first
        # use, not its workers; so jobs start after subscriptions, not before.)
        self._services = ModuleSet(self)
        self._cluster: ServiceModule[Membership] = ServiceModule(
            "cluster", self._membership, start=self._join_cluster, stop=lambda m: m.stop())
        self._subscriptions: ServiceModule[Subscriptions] = ServiceModule(
            "subscriptions", self._make_subscriptions, start=lambda s: s.start(),
            drain=lambda s, _grace: s.stop())
        self._jobs: ServiceModule[Jobs] = ServiceModule(
            "jobs", self._make_jobs, depends_on=("cluster", "subscriptions"),
            start=lambda j: j.start(), drain=lambda j, grace: j.stop(grace))
        self._workflows: ServiceModule[Workflows] = ServiceModule(
            "workflows", self._make_workflows, depends_on=("cluster", "subscriptions"),
            start=lambda w: w.start_workers(), drain=lambda w, grace: w.stop(grace))
        # The retention sweep (retention.*): one host of the cluster at a time, by the claim
        # it makes in the store; it stops before the cluster leaves.
        self._retention: ServiceModule[Sweeper] = ServiceModule(
            "retention", self._make_sweeper, depends_on=("cluster",),
            start=lambda s: s.start(), stop=lambda s: s.stop())
        # Brokers bridged to the event bus (bridges.*): an inbound message becomes durable
        # deliveries, so the bridges start after the subscriptions and the queue.
        self._bridges: ServiceModule[Bridges] = ServiceModule(
            "bridges", self._make_bridges, depends_on=("subscriptions", "jobs"),
            start=lambda b: b.start(), stop=lambda b: b.stop())
        for service in (self._cluster, self._subscriptions, self._jobs, self._workflows,
                        self._retention, self._bridges):
            self._services.add(service)
        if default_modules:
            from omnicore.jobs import JobMetrics

            for cls in DEFAULT_MODULES:
                self._modules.add(cls(), default=True)
            # Durable jobs and event deliveries in /metrics (collectors follow a replacement).
            self.metrics.add_collector(JobMetrics(self.jobs))
            self.metrics.add_collector(self.subscriptions.collector())
            from omnicore.storage.retention import RetentionMetrics

            self.metrics.add_collector(RetentionMetrics(
                lambda: self._retention.service if self._retention.made else None))
            from omnicore.bridges import BridgeMetrics

            self.metrics.add_collector(BridgeMetrics(
                lambda: self._bridges.service if self._bridges.made else None))
            from omnicore.telemetry.prometheus import SpanMetrics

            self.metrics.add_collector(SpanMetrics())
        self.extensions = ExtensionManager(self)
        for dotted in BUILTIN_EXTENSIONS if builtin_extensions is None else builtin_extensions:
            builtin = _BUILTIN_OBJECTS.get(dotted)
            if builtin is not None:
                self.extensions.register(builtin, name=dotted, required=True)
            else:
                self.extensions.load_module(dotted)

    # -- services, made on first use ----------------------------------------------------

    def _make_jobs(self) -> Jobs:
        from omnicore.jobs import Jobs

        jobs = Jobs(self.config.capabilities.jobs, storage=lambda: self.storage,
                    plugins=lambda: self.plugins, events=self.events, owner=self.runtime_id)
        # An MCP task (omnicore.mcp.tasks) is a job of source "mcp:TASK_ID" whose outcome is
        # the task's, whichever host runs it: every host keeps it, served /mcp or not, and
        # answers the questions its call asks from the task's row.
        from omnicore.capabilities.mcp_task import TaskJobs

        tasks = TaskJobs(lambda: self.storage.mcp_tasks)
        jobs.runner.keep_output("mcp", tasks.sink, tasks.around)
        return jobs

    def _make_subscriptions(self) -> Subscriptions:
        from omnicore.subscriptions import Subscriptions

        return Subscriptions(self)

    def _make_workflows(self) -> Workflows:
        from omnicore.workflows import Workflows

        return Workflows(self)

    def _make_bridges(self) -> Bridges:
        from omnicore.bridges import Bridges

        return Bridges(self.config.bridges, events=self.events,
                       deliver=lambda e: self.subscriptions.deliver(e),
                       secrets=lambda: self.secrets, consumer=self.runtime_id, app=self.name,
                       jobs=lambda: self.jobs, storage=lambda: self.storage,
                       subscriptions=lambda: self.subscriptions,
                       lease_s=self.config.capabilities.jobs.lease_s,
                       health=self.health if "health" in self._modules.names else None)

    def _make_sweeper(self) -> Sweeper:
        from omnicore.storage.retention import Sweeper

        return Sweeper(lambda: self.storage, self.config.retention)

    def _membership(self) -> Membership:
        from omnicore import __version__
        from omnicore.cluster import ClusterSettings, Membership

        return Membership(
            lambda: self.storage, self.runtime_id, __version__,
            settings=ClusterSettings(heartbeat_s=self.config.cluster.heartbeat_s,
                                     dead_after_s=self.config.cluster.dead_after_s),
            console_url=self._console_url, jobs_held=lambda: len(self.jobs.running()),
            wake=self._wake_workers, on_drain=self._drain)

    def _join_cluster(self, membership: Membership) -> None:
        membership.start()
        # Another host's enqueue or a reap wakes our idle workers now (LISTEN/NOTIFY).
        self.storage.on_wakeup(self.jobs.wake, "jobs")
        self.storage.on_wakeup(self.workflows.wake, "steps")

    def _console_url(self) -> str | None:
        console = self._modules.get("console") if "console" in self._modules.names else None
        return getattr(console, "url", None)

    def _wake_workers(self) -> None:
        self.jobs.wake()
        self.workflows.wake()

    def _drain(self) -> None:
        """An operator asked this host to drain: stop as SIGTERM does (no new claims, the
        grace for in-flight work, leases given back), and so leave the cluster."""
        self.log.warning("draining: this host stops claiming work and exits")
        self.request_stop()

    def _embedder(self) -> Embedder | None:
        """The first extension with an ``embed(texts) -> vectors`` method, if any."""
        for name in self.extensions.names:
            embed = getattr(self.extensions.get(name), "embed", None)
            if callable(embed):
                return embed  # type: ignore[no-any-return]
        return None

    @property
    def jobs(self) -> Jobs:
        """Durable plugin jobs (``omnicore:tasks``, schedules); ``tasks`` is the in-memory
        TaskEngine for Python coroutines."""
        return self._jobs.service

    @property
    def subscriptions(self) -> Subscriptions:
        """Plugins' event subscriptions (``omnicore:events``), delivered off the bus."""
        return self._subscriptions.service

    @property
    def workflows(self) -> Workflows:
        """Workflow definitions (``workflows/``) and their durable runs."""
        return self._workflows.service

    @property
    def bridges(self) -> Bridges:
        """The brokers bridged to the event bus (``bridges.*``), their state and counters."""
        return self._bridges.service

    @property
    def cluster(self) -> Membership | None:
        """This host's row in the instance table while it runs (``/api/v1/instances``)."""
        return self._cluster.service if self._cluster.state is State.RUNNING else None

    @property
    def services(self) -> list[Module]:
        """The services as modules (``cluster``, ``subscriptions``, ``jobs``, ``workflows``,
        ``retention``),
        in the order they are added; each one's service is made on first use."""
        return list(self._services)

    # -- the data dir and its stores: app.data's, named on the app ------------------------

    data_dir: _DataPart[Path] = _DataPart()
    instance_dir: _DataPart[Path] = _DataPart()
    data_lock: _DataPart[DataDirLock] = _DataPart()
    storage: _DataPart[Storage] = _DataPart()
    kv: _DataPart[KV] = _DataPart()
    secrets: _DataPart[SecretStore] = _DataPart()
    connectors: _DataPart[dict[str, Connector]] = _DataPart()
    egress: _DataPart[Egress] = _DataPart()
    databases: _DataPart[Databases] = _DataPart()
    vectors: _DataPart[VectorStore] = _DataPart()
    memory: _DataPart[MemoryStore] = _DataPart()

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

    @property
    def serving(self) -> bool:
        """Whether the host serves: its services started (its plugins may still be
        loading: a call to one waits for it), and not stopping. ``/readyz`` is 200 from here."""
        state = self.state
        return state is State.RUNNING or (self._serving and state is State.STARTING)

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
        return self._modules.add(module)

    @property
    def modules(self) -> list[Module]:
        """The modules in insertion order (the services are :attr:`services`)."""
        return list(self._modules)

    @overload
    def get_module(self, name: str) -> Module: ...
    @overload
    def get_module(self, name: str, kind: type[M]) -> M: ...

    def get_module(self, name: str, kind: type[Module] = Module) -> Module:
        """The module named ``name`` (checked to be a ``kind``); ``KeyError`` if absent."""
        module = self._modules.get(name)
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

    # -- lifecycle ----------------------------------------------------------------------

    def mark_start(self) -> None:
        """Mark the app running without starting anything: for hosts that drive it themselves."""
        self._lifecycle.transition(State.STARTING)
        self._became_running()

    def mark_stop(self) -> None:
        """Mark a running app stopped without stopping anything (pairs with :meth:`mark_start`)."""
        self._lifecycle.transition(State.STOPPING)
        self._became_stopped()

    def _metric_families(self) -> Any:
        """What ``/metrics`` shows now (the metrics module's registry, if the app has one)."""
        module = self._modules.get("metrics")
        registry = getattr(module.current, "registry", None) if module is not None else None
        return () if registry is None else registry.collect()

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
        """Start on the running loop: data dir, extensions, tasks, modules, ``startup`` hooks,
        services (the module docstring has the whole sequence)."""
        self._lifecycle.transition(State.STARTING)
        self._loop = asyncio.get_running_loop()
        self.events.bind_loop(self._loop)
        started_up = False
        try:
            self.data.open(self.name)
            if self._entry_points:
                self.extensions.load_entry_points()
            order = self._modules.order()
            await self.tasks.start()
            host = self.__dict__.get("_plugins")
            # From the console's start (it serves before the folder is read) a call to a
            # plugin not known yet waits for the folder's load, not 404 (plugins.arrivals).
            with host.starting() if host is not None else contextlib.nullcontext():
                await self._modules.start(order)
                # Off the loop: the plugin host reads its folder there and shows every
                # file (compiling), then loads them in the background (a call to one
                # still loading waits for it).
                await self._loop.run_in_executor(None, self.extensions.startup)
            started_up = True
            await self._services.start()
            # The host serves from here (/readyz 200, the compiling plugins listed): the
            # start returns once the plugins have loaded, as an embedding app expects.
            self._serving = True
            if host is not None:
                await self._loop.run_in_executor(None, host.wait_loaded)
        except BaseException:
            self._serving = False
            await self._abort_start(started_up)
            raise
        self._became_running()
        # /metrics over OTLP too, when telemetry.* or OTEL_* ask (nothing is imported else).
        self._metrics_export = telemetry.export_metrics(
            self.config.telemetry, self._metric_families, service_name=self.config.name,
            instance=self.runtime_id, environ=self._telemetry_environ)
        self.log.info("app %s started (runtime id %s, %d modules)", self.name, self.runtime_id,
                      len(self._modules.started))

    async def _abort_start(self, started_up: bool) -> None:
        await self._services.stop()
        if started_up:
            self.extensions.shutdown()
        await self._modules.stop()
        if self.tasks.state is State.RUNNING:
            await self.tasks.stop(0)
        try:
            self.data.close()
        finally:
            self.data.release()
            self._lifecycle.transition(State.FAILED)

    async def astop(self, grace: float | None = None) -> None:
        """Stop: services drained for ``grace`` s (config default) and stopped, ``shutdown``
        hooks, tasks drained, modules stopped, stores closed.

        Every module and service is asked to stop even if one fails; such failures are raised
        afterwards as one :class:`ModuleError`, with the app stopped.
        """
        if self.state is State.FAILED:
            self._lifecycle.transition(State.STOPPED)
            return
        self._lifecycle.transition(State.STOPPING)
        self._serving = False
        stopping_since = time.perf_counter()
        grace = self.config.shutdown_grace_s if grace is None else grace
        # Services and modules drain side by side (the grace counts once); every plugin call
        # still running at its end is interrupted, or the host's close would wait out its
        # deadline.
        with self.jobs.interrupt_after(grace):
            drained = await asyncio.gather(self._services.drain(grace),
                                           self._modules.drain(grace))
            failures = [f for found in drained for f in found]
            # Membership stops last of them: the leases were given back, so it leaves the
            # instance table.
            failures += await self._services.stop()
            self.extensions.shutdown()
            if self.tasks.state is State.RUNNING:
                await self.tasks.stop(grace)
            failures += await self._modules.stop()
            # A hung async subscriber must not hold the stop beyond the grace period either.
            await self.events.drain(timeout=grace)
        try:
            self.data.close()
        finally:  # the next host may start, whatever closing left undone
            self.data.release()
        self._became_stopped()
        if self._metrics_export is not None:  # a last export: the values at the stop
            self._metrics_export.stop()
            self._metrics_export = None
        telemetry.flush()
        self.log.info("app %s stopped in %.3fs (up %.1fs)", self.name,
                      time.perf_counter() - stopping_since, self.uptime)
        self._loop = None
        if failures:
            raise ModuleError(f"app {self.name!r} stopped, but module(s) failed to stop: "
                              f"{', '.join(failures)}", module=failures[0])

    def start(self) -> None:
        """Start the app on a private event loop thread and return once it is running."""
        self._driver.start()

    def stop(self, grace: float | None = None) -> None:
        """Stop an app started with :meth:`start`, then end its loop thread."""
        self._driver.stop(grace)

    def close(self) -> None:
        """Release what a never-started app opened on use (its plugin host and runtimes, its
        database): for apps used without :meth:`start`, like ``omnicore call``'s. A running
        app is stopped with :meth:`stop` instead."""
        if self.state in (State.RUNNING, State.STARTING, State.STOPPING):
            raise LifecycleError(f"app {self.name!r} is {self.state.value}; stop() it instead")
        host = self.__dict__.get("_plugins")
        if host is not None:
            host.close()
        self.data.close()

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
        self._driver.run()

    def request_stop(self) -> None:
        """Make a blocking :meth:`run` stop; safe from any thread or a signal handler."""
        self._driver.request_stop()

    def __repr__(self) -> str:
        return f"<OmniApp {self.name!r} {self.runtime_id} {self.state.value}>"


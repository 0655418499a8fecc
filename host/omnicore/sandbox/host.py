"""The plugin host behind ``app.plugins``: load, call, reload, unload, grant.

:class:`PluginHost` keeps one entry per plugin name. A loaded entry points at its current
*version* (a module plus its runtime); a call leases the version for its duration, so a reload
swaps the pointer while in-flight calls finish on the old runtime, which closes once its last
lease ends. That is how a reload never fails a call.

This module is also the built-in extension ``omnicore.sandbox.host``: :func:`register`
attaches ``app.plugins``, :func:`startup` loads and watches ``plugins_dir``, :func:`shutdown`
stops watching and closes every runtime.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from omnicore.core.events import (
    Event,
    PluginFailed,
    PluginLoaded,
    PluginStateChanged,
    PluginUnloaded,
)
from omnicore.errors import (
    ConfigError,
    DuplicatePlugin,
    NeedsGrant,
    OmniError,
    PluginError,
    PluginLoadError,
    PluginNotFound,
)
from omnicore.sandbox.breaker import BreakerState, CircuitBreaker
from omnicore.sandbox.folder import (
    GrantMap,
    PluginFolder,
    Sidecar,
    deep_merge,
    merge_grants,
    normalize_grants,
    read_sidecar,
)
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.pluginlog import PluginLog, level_number
from omnicore.sandbox.stats import CallStats, StatsSnapshot

if TYPE_CHECKING:
    # The package face imports wasmtime; importing it lazily keeps `import omnicore.cli` light.
    from omnicore.sandbox.capability import CapabilityRegistry
    from omnicore.sandbox.engine import SandboxEngine
    from omnicore.sandbox.module import PluginModule
    from omnicore.sandbox.runtime import PluginRuntime

__all__ = [
    "PluginCircuitChanged",
    "PluginHost",
    "PluginInfo",
    "PluginReloaded",
    "PluginState",
    "register",
    "shutdown",
    "startup",
]

log = logging.getLogger("omnicore.sandbox.host")

PluginState = Literal["loaded", "needs-grant", "failed", "disabled", "circuit-open",
                      "half-open"]

# `log` only writes to the plugin's own log, so every plugin has it (specs/abi.md §7).
_DEFAULT_GRANTS: GrantMap = {"log": {}}

EventSink = Callable[[Event], Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginReloaded(Event):
    """A plugin's file changed and its new version now serves new calls."""

    topic: ClassVar[str] = "plugin.reloaded"
    plugin: str
    version: str = ""
    path: str = ""
    sha256: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginCircuitChanged(Event):
    """A plugin's circuit breaker moved from ``old`` to ``new`` (closed/open/half-open)."""

    topic: ClassVar[str] = "plugin.circuit_changed"
    plugin: str
    old: str
    new: str


@dataclass(frozen=True)
class PluginInfo:
    """A snapshot of one plugin as the host sees it (for code, CLI and console)."""

    name: str
    state: PluginState
    source: str | None
    sha256: str | None = None
    size: int | None = None
    version: str | None = None
    description: str = ""
    handlers: tuple[str, ...] = ()
    requested: tuple[str, ...] = ()
    granted: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    limits: Limits | None = None
    config: dict[str, Any] = field(default_factory=dict)
    stats: StatsSnapshot | None = None
    breaker: BreakerState = "closed"
    last_error: str | None = None
    loaded_at: float | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def callable(self) -> bool:
        """Whether a call would enter the guest now (loaded or probing)."""
        return self.state in ("loaded", "half-open")

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly view."""
        return {
            "name": self.name,
            "state": self.state,
            "source": self.source,
            "sha256": self.sha256,
            "size": self.size,
            "version": self.version,
            "description": self.description,
            "handlers": list(self.handlers),
            "requested": list(self.requested),
            "granted": {k: dict(v) for k, v in self.granted.items()},
            "missing": list(self.missing),
            "limits": self.limits.as_dict() if self.limits else None,
            "stats": self.stats.as_dict() if self.stats else None,
            "breaker": self.breaker,
            "last_error": self.last_error,
            "loaded_at": self.loaded_at,
        }


@dataclass(frozen=True)
class _Settings:
    """The operator's layered settings for one plugin (app config < sidecar < arguments)."""

    grants: dict[str, dict[str, Any]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    disabled: bool = False
    sidecar: Path | None = None


class _Version:
    """One loaded build of a plugin and the calls currently using it."""

    __slots__ = ("inflight", "module", "retired", "runtime")

    def __init__(self, module: PluginModule, runtime: PluginRuntime) -> None:
        self.module = module
        self.runtime = runtime
        self.inflight = 0
        self.retired = False


class _Entry:
    """Everything the host keeps about one plugin name."""

    def __init__(self, name: str, source: Path | None, stats: CallStats,
                 breaker: CircuitBreaker) -> None:
        self.name = name
        self.source = source
        self.state: PluginState = "failed"
        self.module: PluginModule | None = None
        self.version: _Version | None = None
        self.settings: _Settings | None = None
        self.missing: tuple[str, ...] = ()
        self.last_error: str | None = None
        self.loaded_at: float | None = None
        # The first state is announced by PluginLoaded/PluginFailed, not PluginStateChanged.
        self.announced = False
        self.stats = stats
        self.breaker = breaker
        self.log = PluginLog(name)
        self.lock = threading.Lock()
        # Serializes re-linking (reload, grant) so two of them cannot interleave; never held
        # on the call path.
        self.relink = threading.RLock()

    def acquire(self) -> _Version | None:
        with self.lock:
            version = self.version
            if version is not None:
                version.inflight += 1
            return version

    def release(self, version: _Version) -> None:
        with self.lock:
            version.inflight -= 1
            drained = version.retired and version.inflight == 0
        if drained:
            _close_runtime(version)

    def swap(self, new: _Version | None) -> _Version | None:
        """Make ``new`` current; the old version (returned) closes once its calls drain."""
        with self.lock:
            old, self.version = self.version, new
            drained = False
            if old is not None:
                old.retired = True
                drained = old.inflight == 0
        if old is not None and drained:
            _close_runtime(old)
        return old


def _close_runtime(version: _Version) -> None:
    try:
        version.runtime.close()
    except Exception:
        log.exception("closing a plugin runtime failed")


class PluginHost:
    """The plugins of one app: ``app.plugins``.

    Standalone use (no app)::

        host = PluginHost()
        host.load(Path("echo.wasm"))
        host.call("echo", "echo", b"hi")
        host.close()

    ``plugin_settings`` is the app config's ``plugins`` section (name -> grants, config,
    limits, enabled); ``defaults`` the app's ``sandbox.limits``.
    """

    def __init__(self, *, engine: SandboxEngine | None = None,
                 engine_factory: Callable[..., SandboxEngine] | None = None,
                 registry_factory: Callable[[], CapabilityRegistry] | None = None,
                 defaults: Limits | None = None,
                 plugin_settings: Mapping[str, Any] | None = None,
                 failure_threshold: int = 5, cooldown_s: float = 30.0,
                 events: EventSink | None = None, health: Any = None,
                 data_dir: Path | None = None, max_workers: int = 8) -> None:
        from omnicore.sandbox import CapabilityRegistry, SandboxEngine

        # The engine starts a ticker thread, so it is made on first use: an app that never
        # loads a plugin never pays for it.
        # Fuel metering is an engine-wide switch that slows every call, so the host keeps a
        # metered engine apart, made only when some plugin's limits set `fuel`.
        self._fixed_engine = engine
        self._engines: dict[bool, SandboxEngine] = {}
        self._engine_factory: Callable[..., SandboxEngine] = engine_factory or SandboxEngine
        self._registry_factory = registry_factory or CapabilityRegistry.builtin
        self._registry: CapabilityRegistry | None = None
        self._defaults = defaults or Limits()
        self._plugin_settings = dict(plugin_settings or {})
        self._health = health
        self._data_dir = data_dir
        self._failure_threshold = failure_threshold
        self._cooldown_s = cooldown_s
        self._events = events
        self._plugins: dict[str, _Entry] = {}
        self._runtime_grants: dict[str, dict[str, dict[str, Any]]] = {}
        self._lock = threading.RLock()
        self._executor: ThreadPoolExecutor | None = None
        self._max_workers = max_workers
        self._folder: PluginFolder | None = None
        self._closed = False

    # ---- reading ---------------------------------------------------------------------

    def __iter__(self) -> Iterator[PluginInfo]:
        with self._lock:
            entries = sorted(self._plugins.values(), key=lambda e: e.name)
        return iter([self._info(e) for e in entries])

    def __contains__(self, name: object) -> bool:
        return name in self._plugins

    def __len__(self) -> int:
        return len(self._plugins)

    def get(self, name: str) -> PluginInfo:
        """The current state of plugin ``name``; :class:`PluginNotFound` if unknown."""
        return self._info(self._entry(name))

    def logs(self, name: str) -> PluginLog:
        """The plugin's log ring buffer (kept across reloads)."""
        return self._entry(name).log

    @property
    def engine(self) -> SandboxEngine:
        """The :class:`SandboxEngine` plugins without a fuel limit share (made on first use)."""
        return self._engine_for(False)

    def _engine_for(self, fuel: bool) -> SandboxEngine:
        if self._fixed_engine is not None:
            if fuel and not self._fixed_engine.fuel:
                raise ConfigError("limits.fuel needs fuel metering, and this host was given "
                                  "an engine without it (SandboxEngine(fuel=True))",
                                  key="limits.fuel")
            return self._fixed_engine
        engine = self._engines.get(fuel)
        if engine is None:
            with self._lock:
                engine = self._engines.get(fuel)
                if engine is None:
                    if self._closed:
                        raise PluginError("this plugin host is closed")
                    engine = self._engines[fuel] = self._engine_factory(fuel=fuel)
        return engine

    @property
    def folder(self) -> PluginFolder | None:
        """The watched plugin folder, once :meth:`watch_folder` was called."""
        return self._folder

    # ---- loading ---------------------------------------------------------------------

    def load(self, source: bytes | str | Path, *, name: str | None = None,
             grants: Mapping[str, Any] | list[str] | None = None,
             config: Mapping[str, Any] | None = None,
             limits: Mapping[str, Any] | Limits | None = None) -> PluginInfo:
        """Load a plugin from a ``.wasm`` path or bytes and register it.

        Grants, config and limits layer as app config ``plugins.<name>`` < the sidecar next
        to the file < these arguments. A plugin that imports an ungranted capability is
        registered in state ``needs-grant`` (see :meth:`grant`); a file that cannot become a
        plugin raises a :class:`PluginLoadError` and registers nothing. A second plugin of
        the same name raises :class:`DuplicatePlugin`.
        """
        path = Path(source) if isinstance(source, str | Path) else None
        sidecar = read_sidecar(path) if path is not None else Sidecar()
        module = self._load_module(source, path, name)
        settings = self._settings_for(module.name, sidecar, grants, config, limits)
        module = self._fit_engine(module, settings, source, path, name)
        with self._lock:
            existing = self._plugins.get(module.name)
            if existing is not None and existing.module is None and existing.source != path:
                # Only a broken file's placeholder holds the name: the working plugin takes
                # it and the broken one stays visible under its file name.
                self._pop(existing.name, existing)
                placeholder = existing
            elif existing is not None:
                raise self._duplicate(module.name, existing.source, path)
            else:
                placeholder = None
            entry = self._new_entry(module.name, path)
            # Reserve the name so a concurrent load of the same name is refused.
            self._put(entry)
        if placeholder is not None and placeholder.source is not None:
            self._register_failure(placeholder.source,
                                   PluginLoadError(placeholder.last_error or "failed to load"),
                                   placeholder.source.name)
        try:
            self._activate(entry, module, settings)
        except BaseException:
            self._pop(entry.name, entry)
            raise
        return self._info(entry)

    def unload(self, name: str, *, reason: str = "unloaded") -> None:
        """Remove plugin ``name``; calls already running finish first, on its runtime."""
        entry = self._pop(name)
        if entry is None:
            raise PluginNotFound(f"cannot unload '{name}': no such plugin "
                                 f"(loaded: {self._names()})", plugin=name)
        entry.swap(None)
        log.info("plugin '%s' unloaded: %s", name, reason)
        self._emit(PluginUnloaded(plugin=name, reason=reason))

    def grant(self, name: str, capability: str, options: Mapping[str, Any] | None = None
              ) -> PluginInfo:
        """Grant ``capability`` (with grant ``options``) to plugin ``name`` and re-link it.

        A ``needs-grant`` plugin becomes ``loaded`` once nothing is missing. A loaded plugin
        gets a new runtime with the extra grant (calls in flight finish on the old one). The
        grant lasts for the life of this host, across reloads of the plugin's file (it ranks
        with explicit ``load()`` arguments); it is not written to the sidecar.
        """
        entry = self._entry(name)
        extra = merge_grants(normalize_grants({capability: options or {}},
                                              source=f"grant to '{name}'"))
        with entry.relink:
            if entry.module is None or entry.settings is None:
                raise PluginLoadError(f"plugin '{name}' failed to load ({entry.last_error}); "
                                      "fix the file before granting it anything", plugin=name)
            grants = {**entry.settings.grants, **extra}
            self._activate(entry, entry.module, replace(entry.settings, grants=grants))
            with self._lock:
                self._runtime_grants.setdefault(name, {}).update(extra)
        return self._info(entry)

    def _load_module(self, source: bytes | str | Path, path: Path | None,
                     name: str | None, *, fuel: bool = False) -> PluginModule:
        from omnicore.sandbox import PluginModule

        if path is not None and not path.is_file():
            raise PluginLoadError(f"cannot load plugin: {path} does not exist or is not a file",
                                  plugin=name)
        return PluginModule.load(self._engine_for(fuel), path if path is not None else source,
                                 name=name)

    def _fit_engine(self, module: PluginModule, settings: _Settings,
                    source: bytes | str | Path, path: Path | None,
                    name: str | None) -> PluginModule:
        """Recompile ``module`` on the metered engine when its limits set ``fuel``."""
        if settings.limits.fuel is None or self._engine_for(True) is self._engine_for(False):
            return module
        return self._load_module(source, path, name, fuel=True)

    def _new_entry(self, name: str, path: Path | None) -> _Entry:
        breaker = CircuitBreaker(
            name, failure_threshold=self._failure_threshold, cooldown_s=self._cooldown_s,
            on_change=lambda old, new: self._breaker_changed(name, old, new))
        return _Entry(name, path, CallStats(), breaker)

    def _settings_for(self, name: str, sidecar: Sidecar,
                      grants: Mapping[str, Any] | list[str] | None = None,
                      config: Mapping[str, Any] | None = None,
                      limits: Mapping[str, Any] | Limits | None = None) -> _Settings:
        """Layer app config ``plugins.<name>`` < sidecar < explicit arguments."""
        app = self._plugin_settings.get(name)
        merged_grants = merge_grants(
            _DEFAULT_GRANTS,
            normalize_grants(_field(app, "grants"), source=f"plugins.{name}"),
            sidecar.grants,
            self._runtime_grants.get(name, {}),
            normalize_grants(grants, source=f"load('{name}')"))
        merged_config = deep_merge(deep_merge(_field(app, "config") or {}, sidecar.config),
                                   config or {})
        try:
            merged_limits = self._defaults.merged(_field(app, "limits") or {})
            merged_limits = merged_limits.merged(sidecar.limits)
            merged_limits = limits if isinstance(limits, Limits) else merged_limits.merged(limits)
        except ConfigError as exc:
            raise ConfigError(f"plugin '{name}': {exc}", key=exc.key, value=exc.value,
                              source=exc.source) from exc
        return _Settings(grants=merged_grants, config=merged_config, limits=merged_limits,
                         disabled=_field(app, "enabled") is False or not sidecar.enabled,
                         sidecar=sidecar.path)

    def _activate(self, entry: _Entry, module: PluginModule, settings: _Settings) -> None:
        """Link ``module`` with ``settings`` and make it current.

        Settings are committed only when the result is a state the plugin can be in
        (loaded, needs-grant, disabled); any other failure raises and leaves the entry (and
        the version serving it) untouched.
        """
        with entry.relink:
            self._activate_locked(entry, module, settings)

    def _activate_locked(self, entry: _Entry, module: PluginModule,
                         settings: _Settings) -> None:
        from omnicore.sandbox import PluginRuntime

        if settings.disabled:
            self._commit(entry, module, settings, missing=())
            entry.swap(None)
            self._set_state(entry, "disabled")
            return
        level = settings.grants.get("log", {}).get("level")
        if level is not None:
            entry.log.min_level = level_number(level)
        try:
            engine = self._engine_for(settings.limits.fuel is not None)
            runtime = PluginRuntime(engine, module, self._capabilities(), settings.grants,
                                    settings.config, settings.limits, log=entry.log,
                                    data_dir=self._data_dir)
        except NeedsGrant as exc:
            self._commit(entry, module, settings, missing=tuple(exc.missing))
            entry.last_error = str(exc)
            entry.swap(None)
            self._set_state(entry, "needs-grant")
            log.warning("%s", exc)
            return
        self._commit(entry, module, settings, missing=())
        entry.loaded_at = time.time()
        entry.breaker.reset()
        entry.swap(_Version(module, runtime))
        self._set_state(entry, "loaded")
        log.info("plugin '%s' %s loaded (%s)", entry.name, _version_of(module),
                 entry.source or "bytes")
        self._emit(PluginLoaded(plugin=entry.name, version=_version_of(module),
                                path=str(entry.source or "")))

    @staticmethod
    def _commit(entry: _Entry, module: PluginModule, settings: _Settings,
                missing: tuple[str, ...]) -> None:
        entry.module = module
        entry.settings = settings
        entry.missing = missing
        entry.last_error = None

    def _capabilities(self) -> CapabilityRegistry:
        if self._registry is None:
            self._registry = self._registry_factory()
        return self._registry

    def stats_items(self) -> list[tuple[str, CallStats]]:
        """``(name, stats)`` of every plugin (the Prometheus collector reads these)."""
        with self._lock:
            return [(n, e.stats) for n, e in sorted(self._plugins.items())]

    def refresh_capabilities(self) -> None:
        """Forget the capability registry so the next link rebuilds it from the hooks."""
        self._registry = None

    def _duplicate(self, name: str, first: Path | None, second: Path | None) -> DuplicatePlugin:
        a = str(first) if first else "<bytes>"
        b = str(second) if second else "<bytes>"
        return DuplicatePlugin(
            f"two plugins are named '{name}': {a} is loaded and {b} declares the same name; "
            "rename one (manifest 'name' or file name) or unload the first", plugin=name)

    # ---- calling ---------------------------------------------------------------------

    def call(self, name: str, handler: str, data: bytes = b"") -> bytes:
        """Call ``handler`` of plugin ``name`` with ``data``; return its output bytes.

        Raises the typed errors of :mod:`omnicore.errors`: PluginNotFound, NeedsGrant,
        HandlerNotFound, CircuitOpen, GuestError, Trap, the LimitExceeded family.
        """
        entry = self._plugins.get(name)
        if entry is None:
            raise PluginNotFound(f"no plugin named '{name}' (loaded: {self._names()})",
                                 plugin=name)
        version = entry.acquire()
        if version is None:
            raise self._not_callable(entry, handler)
        try:
            entry.breaker.before_call(handler)
            start = time.perf_counter()
            try:
                out: bytes = version.runtime.call(handler, data)
            except PluginError as exc:
                entry.stats.record(time.perf_counter() - start, exc)
                entry.breaker.record(exc)
                entry.last_error = str(exc)
                raise
            except BaseException:
                # Not the plugin's doing (bad argument, KeyboardInterrupt): no verdict, but a
                # half-open probe slot must be given back or the breaker would stay stuck.
                entry.breaker.abandon()
                raise
            entry.stats.record(time.perf_counter() - start)
            entry.breaker.record_success()
            return out
        finally:
            entry.release(version)

    async def acall(self, name: str, handler: str, data: bytes = b"") -> bytes:
        """:meth:`call` on a worker thread, so the event loop never blocks on a guest."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), self.call, name, handler, data)

    def call_json(self, name: str, handler: str, obj: Any = None) -> Any:
        """Call with ``obj`` encoded as JSON and decode the output as JSON.

        Empty output decodes to ``None``; output that is not JSON raises
        :class:`PluginError` naming the plugin and handler.
        """
        out = self.call(name, handler, json.dumps(obj, separators=(",", ":")).encode())
        if not out:
            return None
        try:
            return json.loads(out)
        except ValueError as exc:
            raise PluginError(f"plugin '{name}' handler '{handler}' returned output that is "
                              f"not JSON ({exc}); use call() for raw bytes",
                              plugin=name, handler=handler) from exc

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            with self._lock:
                if self._closed:
                    raise PluginError("this plugin host is closed")
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self._max_workers,
                                                        thread_name_prefix="omnicore-plugin")
        return self._executor

    def _not_callable(self, entry: _Entry, handler: str) -> OmniError:
        if entry.state == "needs-grant":
            missing = ", ".join(f"omnicore:{m}" for m in entry.missing)
            return NeedsGrant(
                f"plugin '{entry.name}' needs grant: {missing}; grant it in its sidecar, the "
                f"app config (plugins.{entry.name}.grants) or with --grant",
                plugin=entry.name, missing=entry.missing)
        if entry.state == "disabled":
            return PluginNotFound(f"plugin '{entry.name}' is disabled (enabled: false)",
                                  plugin=entry.name)
        return PluginLoadError(f"plugin '{entry.name}' failed to load: {entry.last_error}",
                               plugin=entry.name)

    # ---- the folder ------------------------------------------------------------------

    def watch_folder(self, path: Path, *, watch: bool = True,
                     required: bool = True) -> PluginFolder:
        """Load every ``*.wasm`` in ``path`` now and, with ``watch``, keep following it.

        One folder per host: watching another one stops following the previous folder (its
        plugins stay loaded). A missing folder degrades health only if it was ``required``
        (configured on purpose rather than the default ``./plugins`` of an embedding app).
        """
        if self._folder is not None:
            self._folder.stop()
        folder = PluginFolder(path, self)
        self._folder = folder
        folder.sync()
        if watch and path.is_dir():
            folder.start()
        elif watch:
            log.log(logging.WARNING if required else logging.DEBUG,
                    "plugins_dir %s does not exist; not watching it", path)
        if self._health is not None:
            self._health.register_check("plugins-folder",
                                        partial(_folder_health, folder, watch, required))
        return folder

    def load_file(self, path: Path) -> str:
        """Folder hook: load ``path``; a broken file is registered as ``failed``."""
        entry = self._by_source(path)
        if entry is not None and entry.version is not None:
            return entry.name  # already loaded from this file (by an explicit load())
        try:
            return self.load(path).name
        except PluginError as exc:
            return self._register_failure(path, exc, exc.plugin)
        except (ConfigError, OSError) as exc:
            return self._register_failure(path, exc, None)

    def reload_file(self, name: str, path: Path) -> str:
        """Folder hook: ``path`` changed; swap plugin ``name`` to its new contents.

        If the new contents cannot load while the old version is serving, the old version
        keeps serving and ``last_error`` says why (a half-written file must not take a
        working plugin down).
        """
        # Found by file: the name the folder remembers may have moved (a failed file's
        # placeholder gives way to a working plugin of the same name).
        entry = self._by_source(path)
        if entry is None or entry.module is None:
            if entry is not None:
                self._pop(entry.name, entry)  # a failed file: start over
            return self.load_file(path)
        name = entry.name
        try:
            sidecar = read_sidecar(path)
            module = self._load_module(path, path, None)
            if module.name != name:
                # Renamed in its manifest: a different plugin now lives in this file.
                self.unload(name, reason=f"{path.name} now holds plugin '{module.name}'")
                return self.load_file(path)
            settings = self._settings_for(name, sidecar)
            module = self._fit_engine(module, settings, path, path, None)
        except (PluginError, ConfigError, OSError) as exc:
            return self._reload_failed(entry, path, exc)
        if (entry.state == "loaded" and entry.module.sha256 == module.sha256
                and entry.settings == settings):
            entry.last_error = None
            return name  # only an mtime moved
        try:
            self._activate(entry, module, settings)
        except (PluginError, ConfigError) as exc:
            return self._reload_failed(entry, path, exc)
        self._emit(PluginReloaded(plugin=name, version=_version_of(module), path=str(path),
                                  sha256=module.sha256))
        return name

    def unload_file(self, name: str, path: Path) -> None:
        """Folder hook: ``path`` was removed."""
        entry = self._by_source(path)
        if entry is not None:
            self.unload(entry.name, reason=f"{path.name} was removed")

    def _reload_failed(self, entry: _Entry, path: Path, exc: Exception) -> str:
        if entry.version is not None:
            entry.last_error = f"reload of {path.name} failed, still serving the previous " \
                               f"version: {exc}"
            log.warning("plugin '%s': %s", entry.name, entry.last_error)
            self._emit(PluginFailed(plugin=entry.name, error=entry.last_error, path=str(path)))
            return entry.name
        self._pop(entry.name, entry)
        return self._register_failure(path, exc, entry.name)

    def _register_failure(self, path: Path, exc: Exception, name: str | None) -> str:
        """Register ``path`` as a ``failed`` plugin under a free name."""
        with self._lock:
            stale = self._by_source(path)
            if stale is not None and stale.version is None:
                self._pop(stale.name, stale)  # one entry per file
            key = name or path.stem
            holder = self._plugins.get(key)
            if holder is not None and holder.source != path:
                # The name belongs to a working plugin (a duplicate): the file name, which is
                # unique in the folder and never a valid plugin name, keeps both visible.
                key = path.name
            entry = self._new_entry(key, path)
            entry.state = "failed"
            entry.announced = True
            entry.last_error = str(exc)
            old = self._put(entry)
        if old is not None:
            old.swap(None)
        log.warning("plugin file %s failed to load: %s", path, exc)
        self._emit(PluginFailed(plugin=key, error=str(exc), path=str(path)))
        return key

    # ---- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Stop watching, close every runtime (after its calls drain) and the engine."""
        if self._closed:
            return
        self._closed = True
        if self._folder is not None:
            self._folder.stop()
            if self._health is not None:
                self._health.unregister_check("plugins-folder")
        retired: list[_Version] = []
        for name in list(self._plugins):
            entry = self._pop(name)
            if entry is not None and (old := entry.swap(None)) is not None:
                retired.append(old)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        # The engines' tickers enforce the deadlines of calls still running: keep them until
        # those calls have ended (each within its own timeout).
        longest = max((v.runtime.limits.timeout_ms for v in retired), default=0) / 1000
        until = time.monotonic() + longest + 1.0
        while any(v.inflight for v in retired) and time.monotonic() < until:
            time.sleep(0.005)
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.close()

    def __enter__(self) -> PluginHost:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- internals -------------------------------------------------------------------

    def _entry(self, name: str) -> _Entry:
        entry = self._plugins.get(name)
        if entry is None:
            raise PluginNotFound(f"no plugin named '{name}' (loaded: {self._names()})",
                                 plugin=name)
        return entry

    def _by_source(self, path: Path) -> _Entry | None:
        for entry in list(self._plugins.values()):
            if entry.source == path:
                return entry
        return None

    def _put(self, entry: _Entry) -> _Entry | None:
        """Register ``entry`` (and its health check); return the entry it replaced."""
        with self._lock:
            old = self._plugins.get(entry.name)
            self._plugins[entry.name] = entry
        if self._health is not None:
            self._health.register_check(f"plugin:{entry.name}",
                                        partial(self._health_of, entry.name))
        return old

    def _pop(self, name: str, expected: _Entry | None = None) -> _Entry | None:
        """Unregister ``name`` (only if it is still ``expected``, when given)."""
        with self._lock:
            entry = self._plugins.get(name)
            if entry is None or (expected is not None and entry is not expected):
                return None
            del self._plugins[name]
        if self._health is not None:
            self._health.unregister_check(f"plugin:{name}")
        return entry

    def _health_of(self, name: str) -> tuple[str, str]:
        """One plugin as a health component: (healthy|degraded|unhealthy, detail)."""
        entry = self._plugins.get(name)
        if entry is None:
            return "healthy", "unloaded"
        info = self._info(entry)
        stats = info.stats.as_dict() if info.stats else {}
        counts = f"{stats.get('calls', 0)} calls, {stats.get('errors', 0)} errors"
        if info.state == "loaded":
            if info.last_error and "still serving" in info.last_error:
                return "degraded", info.last_error
            return "healthy", f"{info.version}; {counts}"
        if info.state == "disabled":
            return "healthy", "disabled by the operator"
        if info.state == "needs-grant":
            return "degraded", info.last_error or "needs grant"
        if info.state == "half-open":
            return "degraded", f"circuit half-open, probing; {counts}"
        if info.state == "circuit-open":
            return "unhealthy", f"circuit open: {info.last_error}"
        return "unhealthy", f"failed: {info.last_error}"

    def _names(self) -> str:
        return ", ".join(sorted(self._plugins)) or "none"

    def _info(self, entry: _Entry) -> PluginInfo:
        module = entry.module
        settings = entry.settings
        manifest: dict[str, Any] = dict(getattr(module, "manifest", None) or {})
        state: PluginState = entry.state
        breaker = entry.breaker.state
        if state == "loaded" and breaker == "open":
            state = "circuit-open"
        elif state == "loaded" and breaker == "half-open":
            state = "half-open"
        return PluginInfo(
            name=entry.name,
            state=state,
            source=str(entry.source) if entry.source else None,
            sha256=getattr(module, "sha256", None),
            size=getattr(module, "size", None),
            version=str(manifest.get("version", "0.0.0")) if module is not None else None,
            description=str(manifest.get("description", "")),
            handlers=tuple(getattr(module, "handlers", ()) or ()),
            requested=tuple(sorted(getattr(module, "requested", ()) or ())),
            granted={k: dict(v) for k, v in settings.grants.items()} if settings else {},
            missing=entry.missing,
            limits=settings.limits if settings else None,
            config=dict(settings.config) if settings else {},
            stats=entry.stats.snapshot(),
            breaker=breaker,
            last_error=entry.last_error,
            loaded_at=entry.loaded_at,
            manifest=manifest,
        )

    def _emit(self, event: Event) -> None:
        if self._events is None:
            return
        try:
            self._events(event)
        except Exception:
            log.exception("publishing %s failed", event.topic)

    def _set_state(self, entry: _Entry, new: PluginState) -> None:
        old, entry.state = entry.state, new
        announced, entry.announced = entry.announced, True
        if not announced:
            # A new plugin: PluginLoaded announces a loaded one; any other first state
            # (needs-grant, disabled) is a change from nothing.
            if new != "loaded":
                self._emit(PluginStateChanged(plugin=entry.name, old="unloaded", new=new))
        elif old != new:
            self._emit(PluginStateChanged(plugin=entry.name, old=old, new=new))

    def _breaker_changed(self, name: str, old: BreakerState, new: BreakerState) -> None:
        level = logging.WARNING if new == "open" else logging.INFO
        log.log(level, "plugin '%s' circuit %s -> %s", name, old, new)
        self._emit(PluginCircuitChanged(plugin=name, old=old, new=new))
        public = {"closed": "loaded", "open": "circuit-open", "half-open": "half-open"}
        self._emit(PluginStateChanged(plugin=name, old=public[old], new=public[new]))


def _folder_health(folder: PluginFolder, watch: bool, required: bool) -> tuple[str, str]:
    if not watch:
        return "healthy", f"{folder.path} loaded once (sandbox.watch is off)"
    if not folder.path.is_dir():
        detail = f"plugins_dir {folder.path} does not exist; nothing is watched"
        return ("degraded", detail) if required else ("healthy", detail + " (default path)")
    if folder.mode == "events":
        return "healthy", f"watching {folder.path}"
    if folder.mode == "polling":
        return "degraded", f"polling {folder.path} (file events unavailable)"
    return "unhealthy", f"the watcher of {folder.path} stopped"


def _version_of(module: PluginModule) -> str:
    return str((getattr(module, "manifest", None) or {}).get("version", "0.0.0"))


def _field(settings: Any, key: str) -> Any:
    """Read ``key`` from an app-config plugin entry (a pydantic model or a mapping)."""
    if settings is None:
        return None
    if isinstance(settings, Mapping):
        return settings.get(key)
    return getattr(settings, key, None)


# ---- the built-in extension "omnicore.sandbox.host" ---------------------------------------

def register(app: Any) -> None:
    """Attach ``app.plugins``: a :class:`PluginHost` configured from ``app.config``.

    Nothing heavy happens here (the engine is made on first use); every plugin shows up in
    ``app.health`` as ``plugin:<name>`` and in ``app.metrics`` as ``omnicore_plugin_*``.
    """
    from omnicore.sandbox import CapabilityRegistry, SandboxEngine
    from omnicore.sandbox.stats import PluginMetricsCollector

    cfg = app.config
    sandbox = cfg.sandbox
    defaults = Limits().merged(sandbox.limits.model_dump())

    def make_engine(fuel: bool = False) -> SandboxEngine:
        return SandboxEngine(cache_dir=sandbox.cache_dir, epoch_tick_ms=sandbox.epoch_tick_ms,
                             fuel=fuel, pooling=sandbox.pooling)

    def make_registry() -> CapabilityRegistry:
        # Built-ins arrive through the same hook as third-party capabilities.
        return CapabilityRegistry(app.extensions.capabilities())

    health = _module_or_none(app, "health")
    host = PluginHost(
        engine_factory=make_engine, registry_factory=make_registry, defaults=defaults,
        plugin_settings=cfg.plugins, failure_threshold=sandbox.circuit.failure_threshold,
        cooldown_s=sandbox.circuit.cooldown_s, events=app.events.publish, health=health,
        data_dir=cfg.data_dir)
    app.plugins = host
    metrics = _module_or_none(app, "metrics")
    if metrics is not None:
        metrics.add_collector(PluginMetricsCollector(host.stats_items))


def startup(app: Any) -> None:
    """Load every plugin in ``plugins_dir`` and, with ``sandbox.watch``, follow the folder."""
    host: PluginHost = app.plugins
    host.refresh_capabilities()  # extensions loaded at start may have added capabilities
    folder = host.watch_folder(app.config.plugins_dir, watch=app.config.sandbox.watch,
                               required=app.config.source_of("plugins_dir") != "default")
    loaded = sum(1 for p in host if p.state == "loaded")
    app.log.info("plugins: %d loaded, %d total from %s%s", loaded, len(host), folder.path,
                 " (watching)" if folder.watching else "")


def shutdown(app: Any) -> None:
    """Stop watching and close every plugin runtime (in-flight calls finish first)."""
    host: PluginHost = app.plugins
    host.close()


def _module_or_none(app: Any, module: str) -> Any:
    try:
        return app.get_module(module)
    except (KeyError, TypeError):
        return None

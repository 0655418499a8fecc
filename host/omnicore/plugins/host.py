"""The plugin host behind ``app.plugins``: load, call, reload, unload, grant.

:class:`PluginHost` keeps one :class:`~omnicore.plugins.versions.Entry` per plugin name;
calls lease the entry's current version (:mod:`omnicore.plugins.versions`), so a reload
swaps versions while in-flight calls finish on the old one. Settings layer through
:mod:`omnicore.plugins.settings`, grants follow :mod:`omnicore.sandbox.grants`, health is
decided in :mod:`omnicore.plugins.health`, and :mod:`omnicore.plugins.extension` wires the
host into an app.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from omnicore.core.events import Event
from omnicore.errors import (
    ConfigError,
    DuplicatePlugin,
    NeedsGrant,
    OmniError,
    PluginError,
    PluginLoadError,
    PluginNotFound,
)
from omnicore.extism import ExtismManifest, ExtismRuntime, read_manifest
from omnicore.plugins import settings as plugin_settings
from omnicore.plugins.breaker import BreakerState, CircuitBreaker
from omnicore.plugins.events import (
    PluginCircuitChanged,
    PluginFailed,
    PluginLoaded,
    PluginReloaded,
    PluginStateChanged,
    PluginUnloaded,
)
from omnicore.plugins.folder import PluginFolder
from omnicore.plugins.health import folder_health, plugin_health
from omnicore.plugins.info import PluginInfo, PluginState
from omnicore.plugins.settings import PluginSettings
from omnicore.plugins.sidecar import Sidecar, read_sidecar, write_grants
from omnicore.plugins.stats import CallStats
from omnicore.plugins.versions import Entry, Version
from omnicore.sandbox import grants as grant_rules
from omnicore.sandbox.capability import Capability, CapabilityRegistry
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.module import PluginModule
from omnicore.sandbox.pluginlog import PluginLog, level_number
from omnicore.sandbox.runtime import PluginRuntime
from omnicore.types import HealthChecks

__all__ = ["PluginHost"]

log = logging.getLogger("omnicore.plugins.host")

EventSink = Callable[[Event], Any]
ManifestCheck = Callable[[str, Mapping[str, Any], tuple[str, ...]], None]


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
                 capabilities: Callable[[], Iterable[Capability]] | None = None,
                 defaults: Limits | None = None,
                 plugin_settings: Mapping[str, Any] | None = None,
                 failure_threshold: int = 5, cooldown_s: float = 30.0,
                 events: EventSink | None = None, health: HealthChecks | None = None,
                 data_dir: Path | None = None, max_workers: int = 8) -> None:
        # The engine starts a ticker thread, so it is made on first use: an app that never
        # loads a plugin never pays for it.
        # Fuel metering is an engine-wide switch that slows every call, so the host keeps a
        # metered engine apart, made only when some plugin's limits set `fuel`.
        self._fixed_engine = engine
        self._engines: dict[bool, SandboxEngine] = {}
        self._engine_factory: Callable[..., SandboxEngine] = engine_factory or SandboxEngine
        self._capability_source = capabilities or _builtin_capabilities
        self._registry: CapabilityRegistry | None = None
        self._defaults = defaults or Limits()
        self._plugin_settings = dict(plugin_settings or {})
        self._health = health
        self._data_dir = data_dir
        self._failure_threshold = failure_threshold
        self._cooldown_s = cooldown_s
        self._events = events
        self._plugins: dict[str, Entry] = {}
        self._runtime_grants: dict[str, grant_rules.GrantLayer] = {}
        self._lock = threading.RLock()
        self._max_workers = max_workers
        self._folder: PluginFolder | None = None
        self._closed = False
        #: Host functions for Extism plugins' ``extism:host/user`` imports
        #: (``omnicore.extism.host_fn``); used by plugins loaded after they are added.
        self.extism_functions: list[Any] = []
        #: Checks of each plugin's manifest at load: ``check(name, manifest, handlers)`` raises
        #: ConfigError for an entry that cannot work (a malformed cron in ``schedules``), and
        #: the plugin fails to load with that reason. Built-ins: tasks and events.
        self.manifest_checks: list[ManifestCheck] = _builtin_manifest_checks()

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
        self._check_manifest(module)
        sidecar, extism = self._extism_layer(module, path, sidecar)
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
            self._activate(entry, module, settings, extism)
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

    def grant(self, name: str, capability: str, options: Mapping[str, Any] | None = None,
              *, persist: bool = False) -> PluginInfo:
        """Grant ``capability`` (with grant ``options``) to plugin ``name`` and re-link it.

        A ``needs-grant`` plugin becomes ``loaded`` once nothing is missing. A loaded plugin
        gets a new runtime with the extra grant (calls in flight finish on the old one). The
        grant lasts for the life of this host, across reloads of the plugin's file (it ranks
        with explicit ``load()`` arguments); with ``persist`` it is also written to the
        plugin's sidecar, so it survives a restart.
        """
        return self._regrant(name, {capability: dict(options or {})}, persist)

    def revoke(self, name: str, capability: str, *, persist: bool = False) -> PluginInfo:
        """Take ``capability`` away from plugin ``name`` and re-link it (see :meth:`grant`).

        A plugin that imports the capability goes to ``needs-grant``; calls in flight finish
        on the old runtime.
        """
        return self._regrant(name, {capability: None}, persist)

    def _regrant(self, name: str, change: Mapping[str, Mapping[str, Any] | None],
                 persist: bool) -> PluginInfo:
        entry = self._entry(name)
        layer = grant_rules.normalize({k: (False if v is None else v) for k, v in change.items()},
                                      source=f"grant to '{name}'")
        with entry.relink:
            if entry.module is None or entry.settings is None:
                raise PluginLoadError(f"plugin '{name}' failed to load ({entry.last_error}); "
                                      "fix the file before changing its grants", plugin=name)
            if persist and entry.source is None:
                raise PluginError(f"plugin '{name}' was loaded from bytes; there is no sidecar "
                                  "to persist its grants to", plugin=name)
            grants = grant_rules.merge(entry.settings.grants, layer)
            self._activate(entry, entry.module, replace(entry.settings, grants=grants),
                           entry.extism)
            with self._lock:
                self._runtime_grants.setdefault(name, {}).update(layer)
            if persist and entry.source is not None:
                write_grants(entry.source, layer)
        return self._info(entry)

    def _load_module(self, source: bytes | str | Path, path: Path | None,
                     name: str | None, *, fuel: bool = False) -> PluginModule:
        if path is not None and not path.is_file():
            raise PluginLoadError(f"cannot load plugin: {path} does not exist or is not a file",
                                  plugin=name)
        return PluginModule.load(self._engine_for(fuel), path if path is not None else source,
                                 name=name)

    def _check_manifest(self, module: PluginModule) -> None:
        for check in self.manifest_checks:
            try:
                check(module.name, module.manifest, tuple(module.handlers))
            except ConfigError as exc:
                raise PluginLoadError(f"plugin '{module.name}': {exc}",
                                      plugin=module.name) from exc

    @staticmethod
    def _extism_layer(module: PluginModule, path: Path | None, sidecar: Sidecar
                      ) -> tuple[Sidecar, ExtismManifest | None]:
        """An Extism plugin's manifest (``NAME.json`` under the sidecar's Extism keys) folded
        into its sidecar layer (specs/extism.md); a native plugin's sidecar may not carry
        Extism keys."""
        if module.abi != "extism":
            if sidecar.extism:
                key = next(iter(sidecar.extism))
                raise ConfigError(f"{sidecar.path}: '{key}' is an Extism manifest key, and "
                                  f"plugin '{module.name}' is a native omnicore plugin (use "
                                  "grants.http and limits)", key=key, source=str(sidecar.path))
            return sidecar, None
        manifest = read_manifest(path, sidecar.extism, sidecar.path)
        grants, config, limits = manifest.under(sidecar.grants, sidecar.config, sidecar.limits)
        return replace(sidecar, grants=grants, config=config, limits=limits), manifest

    def _fit_engine(self, module: PluginModule, settings: PluginSettings,
                    source: bytes | str | Path, path: Path | None,
                    name: str | None) -> PluginModule:
        """Recompile ``module`` on the metered engine when its limits set ``fuel``."""
        if settings.limits.fuel is None or self._engine_for(True) is self._engine_for(False):
            return module
        return self._load_module(source, path, name, fuel=True)

    def _new_entry(self, name: str, path: Path | None) -> Entry:
        breaker = CircuitBreaker(
            name, failure_threshold=self._failure_threshold, cooldown_s=self._cooldown_s,
            on_change=lambda old, new: self._breaker_changed(name, old, new))
        return Entry(name, path, CallStats(), breaker)

    def _settings_for(self, name: str, sidecar: Sidecar,
                      grants: Mapping[str, Any] | list[str] | None = None,
                      config: Mapping[str, Any] | None = None,
                      limits: Mapping[str, Any] | Limits | None = None) -> PluginSettings:
        return plugin_settings.layer(
            name, app=self._plugin_settings.get(name), defaults=self._defaults,
            sidecar=sidecar, host_grants=self._runtime_grants.get(name, {}), grants=grants,
            config=config, limits=limits)

    def _activate(self, entry: Entry, module: PluginModule, settings: PluginSettings,
                  extism: ExtismManifest | None = None) -> None:
        """Link ``module`` with ``settings`` (and an Extism plugin's ``extism`` manifest) and
        make it current.

        Settings are committed only when the result is a state the plugin can be in
        (loaded, needs-grant, disabled); any other failure raises and leaves the entry (and
        the version serving it) untouched.
        """
        with entry.relink:
            self._activate_locked(entry, module, settings, extism)

    def _activate_locked(self, entry: Entry, module: PluginModule,
                         settings: PluginSettings, extism: ExtismManifest | None) -> None:
        if settings.disabled:
            self._commit(entry, module, settings, (), extism)
            entry.swap(None)
            self._set_state(entry, "disabled")
            return
        level = settings.grants.get("log", {}).get("level")
        if level is not None:
            entry.log.min_level = level_number(level)
        try:
            engine = self._engine_for(settings.limits.fuel is not None)
            runtime: PluginRuntime | ExtismRuntime
            if module.abi == "extism":
                runtime = ExtismRuntime(engine, module, self._capabilities(), settings.grants,
                                        settings.config, settings.limits, log=entry.log,
                                        data_dir=self._data_dir,
                                        functions=self.extism_functions,
                                        max_var_bytes=(extism or ExtismManifest()).max_var_bytes)
            else:
                runtime = PluginRuntime(engine, module, self._capabilities(), settings.grants,
                                        settings.config, settings.limits, log=entry.log,
                                        data_dir=self._data_dir)
        except NeedsGrant as exc:
            self._commit(entry, module, settings, tuple(exc.missing), extism)
            entry.last_error = str(exc)
            entry.swap(None)
            self._set_state(entry, "needs-grant")
            log.warning("%s", exc)
            return
        self._commit(entry, module, settings, (), extism)
        entry.loaded_at = time.time()
        entry.breaker.reset()
        previous = entry.swap(Version(module, runtime))
        self._set_state(entry, "loaded")
        # An operator watching the log must tell a hot reload from a first load.
        log.info("plugin '%s' %s %s (%s)", entry.name, _version_of(module),
                 "loaded" if previous is None else "reloaded", entry.source or "bytes")
        self._emit(PluginLoaded(plugin=entry.name, version=_version_of(module),
                                path=str(entry.source or "")))

    @staticmethod
    def _commit(entry: Entry, module: PluginModule, settings: PluginSettings,
                missing: tuple[str, ...], extism: ExtismManifest | None) -> None:
        entry.module = module
        entry.settings = settings
        entry.extism = extism
        entry.missing = missing
        entry.last_error = None
        entry.stale = False

    def _capabilities(self) -> CapabilityRegistry:
        if self._registry is None:
            self._registry = CapabilityRegistry(self._capability_source())
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
        return await loop.run_in_executor(self._pool(name), self.call, name, handler, data)

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

    def _pool(self, name: str) -> ThreadPoolExecutor:
        # One executor per plugin, as wide as its instance pool (capped by max_workers): more
        # threads could only wait for an instance, and fewer would let one plugin's spinning
        # calls hold threads another plugin needs.
        if self._closed:
            raise PluginError("this plugin host is closed")
        entry = self._entry(name)
        if entry.executor is None:
            with self._lock:
                if entry.executor is None:
                    version = entry.version
                    size = version.runtime.limits.pool_size if version else self._defaults.pool_size
                    entry.executor = ThreadPoolExecutor(
                        min(size, self._max_workers),
                        thread_name_prefix=f"omnicore-plugin-{entry.name}")
        return entry.executor

    def _not_callable(self, entry: Entry, handler: str) -> OmniError:
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
                                        partial(folder_health, folder, watch, required))
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
            self._check_manifest(module)
            if module.name != name:
                # Renamed in its manifest: a different plugin now lives in this file.
                self.unload(name, reason=f"{path.name} now holds plugin '{module.name}'")
                return self.load_file(path)
            sidecar, extism = self._extism_layer(module, path, sidecar)
            settings = self._settings_for(name, sidecar)
            module = self._fit_engine(module, settings, path, path, None)
        except (PluginError, ConfigError, OSError) as exc:
            return self._reload_failed(entry, path, exc)
        if (entry.state == "loaded" and entry.module.sha256 == module.sha256
                and entry.settings == settings and entry.extism == extism):
            entry.last_error = None
            entry.stale = False
            return name  # only an mtime moved
        try:
            self._activate(entry, module, settings, extism)
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

    def _reload_failed(self, entry: Entry, path: Path, exc: Exception) -> str:
        if entry.version is not None:
            entry.stale = True
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
        retired: list[Version] = []
        retired_entries: list[Entry] = []
        for name in list(self._plugins):
            entry = self._pop(name)
            if entry is not None:
                retired_entries.append(entry)
                if (old := entry.swap(None)) is not None:
                    retired.append(old)
        for entry in retired_entries:
            if entry.executor is not None:
                entry.executor.shutdown(wait=True)
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

    def _entry(self, name: str) -> Entry:
        entry = self._plugins.get(name)
        if entry is None:
            raise PluginNotFound(f"no plugin named '{name}' (loaded: {self._names()})",
                                 plugin=name)
        return entry

    def _by_source(self, path: Path) -> Entry | None:
        for entry in list(self._plugins.values()):
            if entry.source == path:
                return entry
        return None

    def _put(self, entry: Entry) -> Entry | None:
        """Register ``entry`` (and its health check); return the entry it replaced."""
        with self._lock:
            old = self._plugins.get(entry.name)
            self._plugins[entry.name] = entry
        if self._health is not None:
            self._health.register_check(f"plugin:{entry.name}",
                                        partial(self._health_of, entry.name))
        return old

    def _pop(self, name: str, expected: Entry | None = None) -> Entry | None:
        """Unregister ``name`` (only if it is still ``expected``, when given)."""
        with self._lock:
            entry = self._plugins.get(name)
            if entry is None or (expected is not None and entry is not expected):
                return None
            del self._plugins[name]
            if entry.executor is not None and not self._closed:
                # Queued acalls fail with PluginNotFound when they run; none is left hanging.
                entry.executor.shutdown(wait=False)
        if self._health is not None:
            self._health.unregister_check(f"plugin:{name}")
        return entry

    def _health_of(self, name: str) -> tuple[Any, str]:
        entry = self._plugins.get(name)
        return plugin_health(self._info(entry) if entry is not None else None)

    def _names(self) -> str:
        return ", ".join(sorted(self._plugins)) or "none"

    def _info(self, entry: Entry) -> PluginInfo:
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
            stale=entry.stale,
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

    def _set_state(self, entry: Entry, new: PluginState) -> None:
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


def _builtin_manifest_checks() -> list[ManifestCheck]:
    from omnicore.capabilities import events, tasks

    return [tasks.check_manifest, events.check_manifest]


def _builtin_capabilities() -> list[Capability]:
    from omnicore.capabilities.builtin import builtin_capabilities

    return builtin_capabilities()


def _version_of(module: PluginModule) -> str:
    return str((getattr(module, "manifest", None) or {}).get("version", "0.0.0"))

"""The plugin host behind ``app.plugins``: load, call, reload, unload, grant.

:class:`PluginHost` is the public face over four collaborators: the table of
:class:`~omnicore.plugins.versions.Entry` by name (:mod:`omnicore.plugins.entries`), the
:class:`~omnicore.plugins.linking.Linker` that compiles, configures and links plugins (the
runtime chosen by ABI in :mod:`omnicore.plugins.runtimes`), the call path
(:mod:`omnicore.plugins.calls`) and the folder's hooks (:mod:`omnicore.plugins.files`).
Calls lease the entry's current version (:mod:`omnicore.plugins.versions`), so a reload swaps
versions while in-flight calls finish on the old one. Settings layer through
:mod:`omnicore.plugins.settings` (the operator's, kept in the database, through
:mod:`omnicore.plugins.operator`), grants follow :mod:`omnicore.sandbox.grants`, health is
decided in :mod:`omnicore.plugins.health`, and :mod:`omnicore.plugins.extension` wires the
host into an app.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnicore import telemetry
from omnicore.core import jsoncodec
from omnicore.core.events import Event
from omnicore.errors import (
    ConfigError,
    DuplicatePlugin,
    PluginCompiling,
    PluginError,
    PluginLoadError,
    PluginNotFound,
)
from omnicore.plugins.arrivals import Arrivals
from omnicore.plugins.calls import call as call_entry
from omnicore.plugins.calls import door_for
from omnicore.plugins.commands import EXEC, run_exec
from omnicore.plugins.door import CallDoor
from omnicore.plugins.entries import Entries
from omnicore.plugins.events import PluginSettingsChanged, PluginUnloaded
from omnicore.plugins.files import PluginFiles
from omnicore.plugins.folder import PluginFolder
from omnicore.plugins.health import folder_health
from omnicore.plugins.info import PluginInfo
from omnicore.plugins.linking import Linker
from omnicore.plugins.locks import PluginLocks, plugin_key
from omnicore.plugins.published import PublishedPlugins
from omnicore.plugins.regrants import Regrants
from omnicore.plugins.settings import HeldGrants
from omnicore.plugins.sidecar import Sidecar, read_sidecar
from omnicore.plugins.stats import CallStats
from omnicore.plugins.versions import Entry, Version
from omnicore.sandbox.capability import Capability, DeferredCapability, ManifestCheck
from omnicore.sandbox.compiled import CompiledPlugin
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.pluginlog import PluginLog
from omnicore.sandbox.usage import Usage
from omnicore.types import HealthChecks

if TYPE_CHECKING:
    from asyncio import Future

    # A host without an app has no operator settings: it must not load the storage layer
    # they are kept in (plugins/operator.py imports it).
    from omnicore.plugins.operator import OperatorSettings

__all__ = ["PluginHost"]

log = logging.getLogger("omnicore.plugins.host")

EventSink = Callable[[Event], Any]


class PluginHost:
    """The plugins of one app: ``app.plugins``.

    Standalone use (no app)::

        host = PluginHost()
        host.load(Path("echo.wasm"))
        host.call("echo", "echo", b"hi")
        host.close()

    ``plugin_settings`` is the app config's ``plugins`` section (name -> grants, config,
    limits, enabled); ``defaults`` the app's ``sandbox.limits``; ``operator`` the operator's
    settings in the app's database (none for a host without one: grants persist to sidecars).
    """

    def __init__(self, *, engine: SandboxEngine | None = None,
                 engine_factory: Callable[..., SandboxEngine] | None = None,
                 capabilities: Callable[[], Iterable[Capability | DeferredCapability]]
                 | None = None,
                 defaults: Limits | None = None,
                 plugin_settings: Mapping[str, Any] | None = None,
                 failure_threshold: int = 5, cooldown_s: float = 30.0,
                 events: EventSink | None = None, health: HealthChecks | None = None,
                 data_dir: Path | None = None, max_workers: int = 8,
                 operator: OperatorSettings | None = None, load_wait_s: float = 30.0) -> None:
        self._events = events
        #: The operator's settings in the database, when the host has one.
        self.operator = operator
        self._health = health
        self._max_workers = max_workers
        self._folder: PluginFolder | None = None
        #: Called with (plugin, wasm path) after an edit of its sidecar re-linked a plugin
        #: of the watched folder (the config reload records it).
        self.sidecar_observers: list[Callable[[str, Path], object]] = []
        #: Grants made on this running host (:meth:`grant`), by plugin: they outlive reloads.
        self._held = HeldGrants()
        #: Host functions for Extism plugins' ``extism:host/user`` imports
        #: (``omnicore.extism.host_fn``); used by plugins loaded after they are added.
        self.extism_functions: list[Any] = []
        #: Checks of each plugin's manifest at load beside those its capabilities declare
        #: (``Capability.check_manifest``): ``check(name, manifest, handlers)`` raises
        #: ConfigError for an entry that cannot work, and the plugin fails to load with
        #: that reason.
        self.manifest_checks: list[ManifestCheck] = []
        self._entries = Entries(health=health, emit=self._emit,
                                failure_threshold=failure_threshold, cooldown_s=cooldown_s)
        #: Where a call to a plugin still loading waits for it (plugins.arrivals).
        self._arrivals = Arrivals(self._entries, load_wait_s)
        self._linker = Linker(
            engine=engine, engine_factory=engine_factory or SandboxEngine,
            capabilities=capabilities or _builtin_capabilities, defaults=defaults or Limits(),
            app_settings=plugin_settings or {}, data_dir=data_dir, emit=self._emit,
            extra_checks=lambda: self.manifest_checks,
            user_functions=lambda: self.extism_functions,
            operator=operator.doc if operator is not None else None)
        #: Serializes each plugin's loads, reloads and unloads (plugins.locks).
        self._locks = PluginLocks()
        self._files = PluginFiles(self._entries, self._linker,
                                  load=lambda path: self.load(path).name,
                                  unload=lambda name, why: self.unload(name, reason=why),
                                  host_grants=self._held.of, emit=self._emit)
        #: Grant and revoke on this host, here or through the operator's settings.
        self._grants = Regrants(self._entries, self._linker, self._locks, self._held,
                                operator=lambda: self.operator,
                                settings_changed=self.settings_changed)
        #: The plugin catalog's layer over the folder (plugins.published), and what follows
        #: the catalog once an app does (``published.follower``, plugins.convergence).
        self.published = PublishedPlugins(
            self._entries, self._linker, self._locks, host_grants=self._held.of,
            unload=lambda name, why: self.unload(name, reason=why), emit=self._emit)

    # ---- reading ---------------------------------------------------------------------

    def __iter__(self) -> Iterator[PluginInfo]:
        return iter([e.info() for e in self._entries.sorted()])

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def serving(self) -> list[str]:
        """The plugins whose calls run here now (loaded, or their circuit open): the work
        this host claims (jobs of other plugins are left to the hosts that have them)."""
        return self._entries.serving()

    def serving_digests(self) -> dict[str, str | None]:
        """:meth:`serving`, each with the digest (``sha256:<hex>``) of the module serving it
        (a job that asks for a version is claimed only where that one serves)."""
        return self._entries.serving_digests()

    def require(self, name: str) -> None:
        """Raise :class:`PluginNotFound` unless plugin ``name`` is registered (in any state).

        One lookup and no snapshot: what a caller needs to answer "no such plugin" before
        a call (:meth:`get` copies everything about the plugin).
        """
        self._entries.require(name)

    def get(self, name: str) -> PluginInfo:
        """The current state of plugin ``name``; :class:`PluginNotFound` if unknown."""
        return self._entries.require(name).info()

    def granted_to(self, name: str) -> frozenset[str]:
        """The capabilities plugin ``name`` is granted now; :class:`PluginNotFound` if
        unknown. ``get(name).granted``'s names without the snapshot of everything else."""
        settings = self._entries.require(name).settings
        return frozenset(settings.grants) if settings is not None else frozenset()

    def sha256_of(self, name: str) -> str | None:
        """The SHA-256 of the module plugin ``name`` runs (None while it has none);
        :class:`PluginNotFound` if unknown."""
        module = self._entries.require(name).module
        return module.sha256 if module is not None else None

    def limits_of(self, name: str) -> Limits | None:
        """The limits plugin ``name``'s calls run under (None until it has settings: a
        plugin that failed to load); :class:`PluginNotFound` if unknown. ``get(name).limits``
        without the snapshot of everything else (its stats' percentiles among them)."""
        settings = self._entries.require(name).settings
        return settings.limits if settings is not None else None

    @property
    def default_limits(self) -> Limits:
        """The limits of a plugin where nothing of its own sets them: the product's, with the
        app config's ``sandbox.limits`` over them (as last reloaded)."""
        return self._linker.defaults

    def logs(self, name: str) -> PluginLog:
        """The plugin's log ring buffer (kept across reloads)."""
        return self._entries.require(name).log

    @property
    def engine(self) -> SandboxEngine:
        """The :class:`SandboxEngine` plugins without a fuel limit share (made on first use)."""
        return self._linker.engine_for(False)

    @property
    def one_off(self) -> bool:
        """Whether this host serves a call or two and ends (``omnicore call``); set it before
        the first load. Such a host compiles a plugin the module cache lacks with the baseline
        compiler (Winch: a tenth of Cranelift's CPU, for slower code), caches that code, and
        never tiers up; a module the cache holds optimized is loaded optimized."""
        return self._linker.one_off

    @one_off.setter
    def one_off(self, value: bool) -> None:
        self._linker.one_off = value

    @property
    def load_wait_s(self) -> float:
        """How long a call to a plugin still loading waits for it by default
        (``sandbox.load_wait_ms``); a caller's own ``wait_s`` takes its place."""
        return self._arrivals.wait_s

    @load_wait_s.setter
    def load_wait_s(self, value: float) -> None:
        self._arrivals.wait_s = value

    @property
    def loading(self) -> bool:
        """Whether the folder's files are being loaded now (a start's, a drop's)."""
        return self._arrivals.loading

    def starting(self) -> AbstractContextManager[None]:
        """For its duration (an app's start, before its folder is read), a call to a name
        not known yet waits, as while the folder loads: the console serves before then."""
        return self._arrivals.load(start=True)

    @property
    def start_loading(self) -> bool:
        """Whether the start's load of the folder is under way (:meth:`wait_loaded` would
        wait)."""
        return self._arrivals.starting

    async def start_loaded(self, wait_s: float | None = None) -> bool:
        """Wait on the loop until the start's loads are over (the folder's first read in the
        background; a file dropped in later is not waited for): True, or False when
        ``wait_s`` (default :attr:`load_wait_s`) ran out first. For a listing that should
        hold every plugin a start brings (MCP's ``tools/list``)."""
        return await self._arrivals.started(max(0.0, wait_s) if wait_s is not None else None)

    async def arrival(self, name: str, wait_s: float | None = None) -> bool:
        """Wait on the loop until plugin ``name`` has settled (loaded, failed, needs a grant;
        or, the folder's load over, it is not there): True, and a call to it answers as that
        state does; False when ``wait_s`` (default :attr:`load_wait_s`) ran out first. For a
        server that reaches a plugin's module itself (a route's proxy component) and must
        wait where a call would (plugins.arrivals)."""
        try:
            await self._arrivals.arrive(name, max(0.0, wait_s) if wait_s is not None else None)
        except PluginCompiling:
            return False
        except PluginNotFound:
            return True
        return True

    def serving_module(self, name: str) -> CompiledPlugin | None:
        """The module of the version of plugin ``name`` serving now; None while none serves
        (unknown, still loading, failed, needing a grant, disabled)."""
        entry = self._entries.get(name)
        if entry is None:
            return None
        version = entry.version
        return version.module if version is not None else None

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until the start's load of the folder is over (:meth:`starting`, then the
        first read of :meth:`watch_folder`, in the background or not); False if ``timeout``
        ran out first. A file dropped in later and still compiling is not waited for: it
        was not part of what started."""
        return self._arrivals.wait_started(timeout)

    @property
    def waiting(self) -> int:
        """How many calls wait now for their plugin to load."""
        return self._arrivals.waiting

    @property
    def folder(self) -> PluginFolder | None:
        """The watched plugin folder, once :meth:`watch_folder` was called."""
        return self._folder

    def stats_items(self) -> list[tuple[str, CallStats]]:
        """``(name, stats)`` of every plugin (the Prometheus collector reads these)."""
        return [(e.name, e.stats) for e in self._entries.sorted()]

    def usage_items(self) -> list[tuple[str, Usage]]:
        """``(name, usage)`` of every plugin serving calls whose runtime measures it (the
        native one; Extism and component runtimes do not say yet)."""
        out = []
        for e in self._entries.sorted():
            version = e.version
            usage = getattr(version.runtime, "usage", None) if version is not None else None
            if usage is not None:
                out.append((e.name, usage()))
        return out

    # ---- loading ---------------------------------------------------------------------

    def load(self, source: bytes | str | Path, *, name: str | None = None,
             grants: Mapping[str, Any] | list[str] | None = None,
             config: Mapping[str, Any] | None = None,
             limits: Mapping[str, Any] | Limits | None = None,
             links: Mapping[str, str | Path] | None = None) -> PluginInfo:
        """Load a plugin from a ``.wasm`` path or bytes and register it.

        Grants, config and limits layer as app config ``plugins.<name>`` < the sidecar next
        to the file < these arguments. A plugin that imports an ungranted capability is
        registered in state ``needs-grant`` (see :meth:`grant`); a file that cannot become a
        plugin raises a :class:`PluginLoadError` and registers nothing. A second plugin of
        the same name raises :class:`DuplicatePlugin`. ``links`` (an Extism plugin's modules
        linked by name: name -> ``.wasm`` file, ``omnicore call --link``) join its sidecar's.
        """
        path = Path(source) if isinstance(source, str | Path) else None
        if path is None:
            return self._load(source, None, name, grants, config, limits, links)
        with self._locks.hold(plugin_key(path, "")):
            return self._load(source, path, name, grants, config, limits, links)

    def _load(self, source: bytes | str | Path, path: Path | None, name: str | None,
              grants: Mapping[str, Any] | list[str] | None,
              config: Mapping[str, Any] | None,
              limits: Mapping[str, Any] | Limits | None,
              links: Mapping[str, str | Path] | None) -> PluginInfo:
        sidecar = read_sidecar(path) if path is not None else Sidecar()
        if links:
            table = {**sidecar.extism.get("link", {}),
                     **{k: str(Path(v).absolute()) for k, v in links.items()}}
            sidecar = replace(sidecar, extism={**sidecar.extism, "link": table})
        module = self._linker.compile(source, path, name)
        if path is None:
            # From bytes: the plugin is known by its name only now.
            with self._locks.hold(plugin_key(None, module.name)):
                return self._register(module, source, path, name, sidecar, grants, config,
                                      limits)
        return self._register(module, source, path, name, sidecar, grants, config, limits)

    def _register(self, module: CompiledPlugin, source: bytes | str | Path, path: Path | None,
                  name: str | None, sidecar: Sidecar,
                  grants: Mapping[str, Any] | list[str] | None,
                  config: Mapping[str, Any] | None,
                  limits: Mapping[str, Any] | Limits | None) -> PluginInfo:
        plan = self._linker.plan(module, source, path, name, sidecar,
                                 host_grants=self._held.of(module.name), grants=grants,
                                 config=config, limits=limits)
        entries = self._entries
        with entries.lock:
            ahead = entries.by_source(path) if path is not None else None
            if ahead is not None and ahead.state == "compiling":
                entries.pop(ahead.name, ahead)  # the folder's placeholder: this load is it
            existing = entries.get(module.name)
            if existing is not None and existing.module is None and existing.source != path:
                # Only another file's placeholder holds the name: the working plugin takes it.
                # A broken file stays visible under its file name (below); a file a start
                # shows as compiling under its stem, which its manifest may not name (a.wasm
                # holding plugin 'b', b.wasm 'a'), goes on compiling under its file name:
                # it was registered a failure, "failed to load", and stayed one after it
                # loaded under its own name.
                entries.pop(existing.name, existing)
                placeholder: Entry | None = existing
                if existing.state == "compiling" and existing.source is not None:
                    waiting = entries.new(existing.source.name, existing.source)
                    waiting.state = "compiling"
                    entries.put(waiting)
                    placeholder = None
            elif existing is not None:
                raise self._duplicate(module.name, existing.source, path)
            else:
                placeholder = None
            entry = entries.new(module.name, path)
            entry.state = "compiling"  # until activate decides: never "failed" meanwhile
            # Reserve the name so a concurrent load of the same name is refused.
            entries.put(entry)
        if placeholder is not None and placeholder.source is not None \
                and placeholder.published is None:
            self._files.register_failure(
                placeholder.source, PluginLoadError(placeholder.last_error or "failed to load"),
                placeholder.source.name)
        return self._linker.activate_new(entries, entry, plan)

    def unload(self, name: str, *, reason: str = "unloaded") -> None:
        """Remove plugin ``name``; calls already running finish first, on its runtime."""
        with self._locks.hold_entry(name, self._entries.get) as entry:
            if entry is None or self._entries.pop(name, entry) is None:
                raise PluginNotFound(f"cannot unload '{name}': no such plugin "
                                     f"(loaded: {self._entries.names()})", plugin=name)
            with entry.relink:  # a tier-up linking now finishes first (plugins.tiers)
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
        return self._grants.change(name, {capability: dict(options or {})}, persist)

    def revoke(self, name: str, capability: str, *, persist: bool = False) -> PluginInfo:
        """Take ``capability`` away from plugin ``name`` and re-link it (see :meth:`grant`).

        A plugin that imports the capability goes to ``needs-grant``; calls in flight finish
        on the old runtime.
        """
        return self._grants.change(name, {capability: None}, persist)

    def settings_changed(self, name: str, capabilities: frozenset[str] = frozenset()) -> bool:
        """The operator's settings of plugin ``name`` changed (on any instance): re-link it
        from its file, its sidecar and those settings, as a sidecar edit does; False when it
        is not a plugin of the watched folder (it takes the settings when it loads).

        ``capabilities`` are the grants the change decided: this process's own grants of
        them (:meth:`grant` without ``persist``) give way to the newer decision. A revoke
        holds even when the plugin's file no longer loads: the version serving it is
        withdrawn rather than kept with the revoked capability.
        """
        self._held.forget(name, capabilities)
        self._emit(PluginSettingsChanged(plugin=name))
        if self.published.settings_changed(name, capabilities):
            return True  # the catalog's plugin: re-linked from its published module
        entry = self._entries.get(name)
        folder = self._folder
        if entry is None or entry.source is None:
            return False
        # The folder's refresh takes the plugin's lock itself, after the folder's (the order
        # of plugins.locks): it is asked without holding the plugin's.
        if folder is None or not folder.refresh(entry.source):
            with self._locks.hold_entry(name, self._entries.get) as current:
                if current is entry:
                    self._grants.decided(entry, capabilities)
            return False
        with self._locks.hold_entry(name, self._entries.get) as entry:
            if entry is not None and entry.stale and entry.settings is not None \
                    and self.operator is not None:
                decided = self.operator.doc(name).get("grants")
                revoked = {c for c, v in decided.items() if v is False
                           and c in entry.settings.grants} \
                    if isinstance(decided, Mapping) else set()
                if revoked:
                    self._linker.withdraw(entry, f"revoked {', '.join(sorted(revoked))} while "
                                                 f"the plugin could not be re-linked: "
                                                 f"{entry.last_error}")
        return True

    def reconfigure(self, app_settings: Mapping[str, Any], defaults: Limits,
                    plugins: Iterable[str] | None) -> list[str]:
        """The app config's layers changed (``plugins.<name>`` and the default limits of a
        reloaded omnicore.yaml): re-link ``plugins`` (None: every one) of the watched folder
        from their files, as a sidecar edit does; the names re-linked. A plugin that cannot
        take its new settings keeps serving its old version and says why (``last_error``)."""
        self._linker.set_layers(app_settings, defaults)
        wanted = None if plugins is None else set(plugins)
        done = self.published.reconfigure(wanted)
        folder = self._folder
        if folder is None:
            return sorted(done)
        for path, name in folder.files.items():
            if (wanted is None or name in wanted) and folder.refresh(path):
                done.append(name)
        return sorted(set(done))

    def refresh_capabilities(self) -> None:
        """Forget the capability registry so the next link rebuilds it from the hooks."""
        self._linker.refresh_capabilities()

    @staticmethod
    def _duplicate(name: str, first: Path | None, second: Path | None) -> DuplicatePlugin:
        if first is not None and second is not None and first.absolute() == second.absolute():
            # The watched folder loads a file as soon as it lands there: a load() after
            # copying it in often finds it loaded already.
            return DuplicatePlugin(
                f"plugin '{name}' is loaded from {first} already (a watched folder loads the "
                "files put there itself, and reloads them when they change); unload it "
                "first to load it again", plugin=name)
        a = str(first) if first else "<bytes>"
        b = str(second) if second else "<bytes>"
        return DuplicatePlugin(
            f"two plugins are named '{name}': {a} is loaded and {b} declares the same name; "
            "rename one (manifest 'name' or file name) or unload the first", plugin=name)

    # ---- calling ---------------------------------------------------------------------

    def call(self, name: str, handler: str, data: bytes = b"", *,
             wait_s: float | None = None) -> bytes:
        """Call ``handler`` of plugin ``name`` with ``data``; return its output bytes.

        A plugin still loading is waited for, up to ``wait_s`` (default
        :attr:`load_wait_s`), then called (plugins.arrivals). Raises the typed errors of
        :mod:`omnicore.errors`: PluginNotFound, PluginCompiling (still loading after the
        wait), PluginLoadError (its load failed), NeedsGrant, HandlerNotFound, CircuitOpen,
        GuestError, Trap, the LimitExceeded family.
        """
        entry = self._entries.get(name)
        if entry is None or entry.version is None:  # the one wait: every call path's
            entry = self._arrivals.wait(name, wait_s)
        run = run_exec if handler == EXEC else None  # (a command plugin run as a command)
        if telemetry.ON:
            # The call's span made here, around calls.call, rather than by calls.call calling
            # itself again inside it: a Python frame less on every traced call (issue 62).
            return telemetry.traced_call(call_entry, entry, handler, data, run)
        return call_entry(entry, handler, data, run)

    async def acall(self, name: str, handler: str, data: bytes = b"", *,
                    wait_s: float | None = None) -> bytes:
        """:meth:`call` on a worker thread, so the event loop never blocks on a guest; a
        plugin still loading is waited for on the loop, holding no thread."""
        entry = self._entries.get(name)
        if entry is None or entry.version is None:
            if self._linker.closed:
                raise PluginError("this plugin host is closed")
            await self._arrivals.arrive(name, wait_s)
        out: bytes = await self._door(name).submit(self.call, name, handler, data)
        return out

    def submit(self, name: str, handler: str, data: bytes = b"", *,
               wait_s: float | None = None) -> Future[bytes]:
        """:meth:`acall` as the running loop's future, with no task of its own to await it:
        for a server that waits with a deadline of its own (``omnicore.routes``). Cancelled
        before a worker takes it, the call never runs. A plugin still loading: a task that
        waits for it (:meth:`acall`), cancelled with the future."""
        entry = self._entries.get(name)
        if entry is None or entry.version is None:
            import asyncio

            return asyncio.ensure_future(self.acall(name, handler, data, wait_s=wait_s))
        return self._door(name).submit(self.call, name, handler, data)

    def withdraw(self, name: str, call: Future[bytes]) -> bool:
        """Take back a :meth:`submit`'s ``call`` that no worker has begun: True, and it never
        runs (a server whose own deadline passed frees what the call held at once); False
        when it has begun (it runs on to its plugin's deadline) or is not found."""
        entry = self._entries.get(name)
        door = entry.door if entry is not None else None
        return door is not None and door.withdraw(call)

    def call_json(self, name: str, handler: str, obj: Any = None) -> Any:
        """Call with ``obj`` encoded as JSON and decode the output as JSON.

        Empty output decodes to ``None``; output that is not JSON raises
        :class:`PluginError` naming the plugin and handler.
        """
        out = self.call(name, handler, jsoncodec.dumps(obj))
        if not out:
            return None
        try:
            return jsoncodec.loads(out)
        except ValueError as exc:
            raise PluginError(f"plugin '{name}' handler '{handler}' returned output that is "
                              f"not JSON ({exc}); use call() for raw bytes",
                              plugin=name, handler=handler) from exc

    def _door(self, name: str) -> CallDoor:
        # A call through the door runs in the caller's context: what it set for the call's
        # host functions (the MCP client of a tool call, omnicore.capabilities.mcp) reaches
        # the worker thread.
        if self._linker.closed:
            raise PluginError("this plugin host is closed")
        entry = self._entries.get(name)
        if entry is None:
            raise self._entries.not_found(name)
        door = entry.door
        if door is None:
            door = door_for(entry, default_size=self._linker.defaults.pool_size,
                            max_workers=self._max_workers, lock=self._entries.lock)
        return door

    # ---- the folder ------------------------------------------------------------------

    def watch_folder(self, path: Path, *, watch: bool = True, required: bool = True,
                     background: bool = False,
                     loaded: Callable[[PluginFolder], object] | None = None) -> PluginFolder:
        """Load every ``*.wasm`` in ``path`` now and, with ``watch``, keep following it.

        One folder per host: watching another one stops following the previous folder (its
        plugins stay loaded). A missing folder degrades health only if it was ``required``
        (configured on purpose rather than the default ``./plugins`` of an embedding app).
        With ``background`` (an app's start): return once every file shows (``compiling``)
        and load them on a thread of the folder's, in order, while the host serves; a call
        to one of them waits for it (plugins.arrivals). ``loaded(folder)`` is called once
        they are all loaded (at once without ``background``); not when the load is stopped
        first (another folder watched, the host closing), whose files not loaded yet go.
        """
        _check_folder(path)
        if self._folder is not None:
            self._folder.stop()
        folder = PluginFolder(path, self)
        folder.sidecar_observers = self.sidecar_observers
        self._folder = folder
        if background:
            self._arrivals.begin(start=True)

            def done() -> None:
                stopped = folder._stop.is_set()
                if stopped:
                    self._drop_unloaded(folder)
                self._arrivals.end(start=True)
                # Not for a load stopped short: its files were not all loaded, and what the
                # callback judges from them (omnicore mcp's check of mcp.expose) would take
                # the dropped ones for names of no plugin.
                if loaded is not None and not stopped:
                    loaded(folder)

            folder.sync_in_background(done)
        else:
            with self._arrivals.load(start=True):
                folder.sync()
            if loaded is not None:
                loaded(folder)
        if watch and path.is_dir():
            folder.start()
        elif watch:
            log.log(logging.WARNING if required else logging.DEBUG,
                    "plugins_dir %s does not exist; not watching it", path)
        if self._health is not None:
            self._health.register_check("plugins-folder",
                                        partial(folder_health, folder, watch, required))
        return folder

    def _drop_unloaded(self, folder: PluginFolder) -> None:
        """The start's load of ``folder`` stopped before some of its files (another folder
        watched, the host closing): their placeholders go. They showed ``compiling`` for
        good, no load being left to settle them: a call waited ``load_wait_ms`` each time and
        failed with PluginCompiling, /readyz?plugins=loaded never answered 200, and an MCP
        call of their tools waited as for a plugin on its way. Now: no such plugin."""
        with self._entries.lock:
            stale = [e for e in self._entries.sorted()
                     if e.state == "compiling" and e.version is None and e.module is None
                     and e.source is not None and e.source.parent == folder.path]
        for entry in stale:
            self._entries.pop(entry.name, entry)  # wakes whoever waits (plugins.arrivals)

    def prepare_files(self, paths: Sequence[Path]) -> list[Path]:
        """Folder hook: several files are new; compile them ahead (in parallel, smallest
        first) and show them as ``compiling``; return the order to load them in."""
        return self._files.prepare(paths)

    def load_file(self, path: Path) -> str:
        """Folder hook: load ``path``; a broken file is registered as ``failed``."""
        with self._arrivals.load(), self._locks.hold(plugin_key(path, "")):
            return self._files.load_file(path)

    def reload_file(self, name: str, path: Path) -> str:
        """Folder hook: ``path`` changed; swap plugin ``name`` to its new contents.

        If the new contents cannot load while the old version is serving, the old version
        keeps serving and ``last_error`` says why (a half-written file must not take a
        working plugin down). The plugin is found by its file: the name the folder remembers
        may have moved.
        """
        with self._locks.hold(plugin_key(path, "")):
            return self._files.reload_file(path)

    def unload_file(self, name: str, path: Path) -> None:
        """Folder hook: ``path`` was removed."""
        with self._locks.hold(plugin_key(path, "")):
            self._files.unload_file(path)

    # ---- lifecycle -------------------------------------------------------------------

    def interrupt(self) -> None:
        """End every plugin call running now (each fails as if its deadline had passed);
        later calls run as usual. For a stop whose grace is over (``app.jobs``)."""
        self._linker.interrupt()

    def close(self) -> None:
        """Stop watching, close every runtime (after its calls drain) and the engine."""
        if self._linker.closed:
            return
        self._linker.closed = True
        if self._folder is not None:
            self._folder.stop()
            if self._health is not None:
                self._health.unregister_check("plugins-folder")
        retired: list[Version] = []
        retired_entries: list[Entry] = []
        for entry in self._entries.sorted():
            if self._entries.pop(entry.name, entry) is not None:
                retired_entries.append(entry)
                with entry.relink:  # a tier-up swapping in now finishes first (plugins.tiers)
                    old = entry.swap(None)
                if old is not None:
                    retired.append(old)
        for entry in retired_entries:
            if entry.door is not None:
                entry.door.shutdown(wait=True)
        # The engines' tickers enforce the deadlines of calls still running: keep them until
        # those calls have ended (each within its own timeout).
        longest = max((v.runtime.limits.timeout_ms for v in retired), default=0) / 1000
        until = time.monotonic() + longest + 1.0
        while any(v.inflight for v in retired) and time.monotonic() < until:
            time.sleep(0.005)
        self._linker.close_engines()

    def __enter__(self) -> PluginHost:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _emit(self, event: Event) -> None:
        if self._events is None:
            return
        try:
            self._events(event)
        except Exception:
            log.exception("publishing %s failed", event.topic)


def _builtin_capabilities() -> list[DeferredCapability]:
    from omnicore.capabilities.builtin import deferred_capabilities

    return deferred_capabilities()


def _check_folder(path: Path) -> None:
    """ConfigError when ``path`` exists but cannot be read as a folder (a file, no
    permission): a host that started anyway would serve nothing and say it had read it. A
    missing folder is not refused: it degrades health (:func:`folder_health`)."""
    try:
        with os.scandir(path):
            pass
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise ConfigError(f"plugins_dir {path} is a file, not a folder: set plugins_dir to the "
                          f"folder that holds the .wasm files", key="plugins_dir",
                          value=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"plugins_dir {path} cannot be read: {exc.strerror or exc}",
                          key="plugins_dir", value=str(path)) from None

"""Linking: a plugin's file and settings made into the version that serves its calls.

:class:`Linker` owns what every plugin is linked against — the engines (a metered one apart,
made only for plugins whose limits set ``fuel``), the capability registry, the manifest
checks — and the steps: :meth:`~Linker.compile` a module, :meth:`~Linker.plan` its settings
(the runtime kind of :mod:`omnicore.plugins.runtimes` folds in its ABI's manifest), and
:meth:`~Linker.activate` it on an :class:`~omnicore.plugins.versions.Entry`, which decides the
plugin's state (loaded, needs-grant, disabled) and announces it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from omnicore.core.events import Event
from omnicore.errors import (
    ConfigError,
    DeadlineExceeded,
    NeedsGrant,
    PluginError,
    PluginLoadError,
    PluginNotFound,
)
from omnicore.plugins import settings as plugin_settings
from omnicore.plugins.ahead import CompileAhead
from omnicore.plugins.entries import Entries
from omnicore.plugins.events import PluginLoaded, PluginStateChanged
from omnicore.plugins.info import PluginInfo, PluginState
from omnicore.plugins.runtimes import Link, Runtime, kind_of
from omnicore.plugins.settings import PluginSettings
from omnicore.plugins.sidecar import Sidecar
from omnicore.plugins.tiers import TierUp
from omnicore.plugins.versions import Entry, Origin, Version
from omnicore.sandbox import grants as grant_rules
from omnicore.sandbox.capability import (
    Capability,
    CapabilityRegistry,
    DeferredCapability,
    ManifestCheck,
)
from omnicore.sandbox.compiled import CompiledPlugin
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.module import PluginModule
from omnicore.sandbox.pluginlog import level_number
from omnicore.sandbox.wasmbin import is_component, uses_gc

__all__ = ["Linker", "Plan", "regranted", "version_of"]

log = logging.getLogger("omnicore.plugins.host")


@dataclass(frozen=True, slots=True)
class Plan:
    """A plugin ready to link: its module, its effective settings and its ABI's manifest."""

    module: CompiledPlugin
    settings: PluginSettings
    abi_manifest: object | None = None


class Linker:
    """Compiles, configures and links the plugins of one host (see the module docstring).

    ``capabilities`` yields the registry's capabilities (the app's hook, or the built-ins);
    ``app_settings`` is the app config's ``plugins`` section; ``extra_checks`` and
    ``user_functions`` read the host's lists of them, which its embedder may change.
    """

    def __init__(self, *, engine: SandboxEngine | None,
                 engine_factory: Callable[..., SandboxEngine],
                 capabilities: Callable[[], Iterable[Capability | DeferredCapability]],
                 defaults: Limits,
                 app_settings: Mapping[str, Any], data_dir: Path | None,
                 emit: Callable[[Event], None],
                 extra_checks: Callable[[], Sequence[ManifestCheck]],
                 user_functions: Callable[[], Sequence[Any]],
                 operator: Callable[[str], Mapping[str, Any]] | None = None) -> None:
        # The engine starts a ticker thread, so it is made on first use: an app that never
        # loads a plugin never pays for it.
        # Fuel metering is an engine-wide switch that slows every call, so a metered engine
        # is kept apart, made only when some plugin's limits set `fuel`.
        self._fixed_engine = engine
        #: By fuel (True: the metered one), and "baseline" for Winch (plugins.tiers).
        self._engines: dict[bool | str, SandboxEngine] = {}
        self._engine_factory = engine_factory
        self._capability_source = capabilities
        self._registry: CapabilityRegistry | None = None
        self.defaults = defaults
        self._app_settings = dict(app_settings)
        self._data_dir = data_dir
        self._emit = emit
        self._extra_checks = extra_checks
        self._user_functions = user_functions
        self._operator = operator
        self._lock = threading.Lock()
        self._no_baseline = False
        self._ahead = CompileAhead(self._compile_first)
        self._tiers = TierUp(
            lambda path, name: PluginModule.load(self.engine_for(False), path, name=name),
            self._optimize, after=self._ahead.wait_idle, replaced=self._forget_baseline)
        #: Set when the host closes: no engine is made after that.
        self.closed = False
        #: A host for a call or two (``omnicore call``), set before its first load: a plugin
        #: the module cache lacks is compiled by the baseline compiler (a tenth of Cranelift's
        #: CPU: 3 s against 27 for a Ruby plugin), that code is cached beside the optimized
        #: code's entries, and nothing tiers up (the process ends before Cranelift would).
        self.one_off = False

    def set_layers(self, app_settings: Mapping[str, Any], defaults: Limits) -> None:
        """New app config layers (``plugins`` and ``sandbox.limits`` of a reloaded
        omnicore.yaml): every plan from now on is made over them."""
        self._app_settings = dict(app_settings)
        self.defaults = defaults

    # ---- engines and capabilities ----------------------------------------------------

    def engine_for(self, fuel: bool) -> SandboxEngine:
        """The engine for plugins with (``fuel``) or without a fuel limit."""
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
                    if self.closed:
                        raise PluginError("this plugin host is closed")
                    engine = self._engines[fuel] = self._engine_factory(fuel=fuel)
        return engine

    def engines(self) -> list[SandboxEngine]:
        """The engines made so far (not one given to the host)."""
        return list(self._engines.values())

    def interrupt(self) -> None:
        """End every call running on this linker's engines (``PluginHost.interrupt``)."""
        with self._lock:
            engines = [*self._engines.values(), *filter(None, [self._fixed_engine])]
        for engine in engines:
            engine.interrupt()

    def baseline_engine(self) -> SandboxEngine | None:
        """The engine of baseline (Winch) code, made on first use like the main one and with
        its settings; None for a host given its engine, or where Winch is not built in."""
        main = self.engine_for(False)
        if self._fixed_engine is not None or self._no_baseline:
            return None
        engine = self._engines.get("baseline")
        if engine is None:
            with self._lock:
                engine = self._engines.get("baseline")
                if engine is None and not self.closed:
                    try:
                        # Cached: a start that ends before its tier-up (an agent's short
                        # `omnicore mcp` session) loads it again from there instead of
                        # compiling it again, and tiers up then. A serving host deletes the
                        # entry once the optimized one replaces it (_forget_baseline); a
                        # one-off host keeps it.
                        engine = SandboxEngine(
                            cache_dir=main.cache_dir,
                            epoch_tick_ms=main.epoch_tick_ms, pooling=main.pooling,
                            baseline=True, module_key=lambda: main.module_key,
                            hollow=main.hollow)
                    except Exception as exc:  # a wasmtime built without Winch
                        log.info("no baseline compiler (%s); compiling with Cranelift only",
                                 exc)
                        self._no_baseline = True  # and stop asking
                        return None
                    self._engines["baseline"] = engine
        return engine

    def _forget_baseline(self, module: CompiledPlugin) -> None:
        """The baseline code of ``module`` (its optimized code cached and about to serve)
        leaves the module cache: the next start loads the optimized entry."""
        engine = self._engines.get("baseline")
        path = engine.cache_path(module.sha256) if engine is not None else None
        if path is None:
            return
        # Only once the optimized code is in the cache: a store that failed (a full disk, a
        # quota, its name taken) left Winch's entry the only code the next start can load,
        # and deleting it made every later start compile Winch again and fail to store again.
        main = self._engines.get(False)  # (the tier-up's compiler; gone once closing)
        if main is None or not main.is_cached(module.sha256):
            log.debug("the baseline entry %s stays: no optimized entry was stored", path.name)
            return
        # The entry, then its MAC: a MAC left alone was litter for good (nothing else deletes
        # it), one per module version tiered up; in this order a reader between the two finds
        # no entry (a plain miss), never an entry without its MAC (a refusal, counted).
        for part in (path, path.with_name(path.name + ".mac")):
            try:
                part.unlink(missing_ok=True)
            except OSError as exc:  # a read-only cache: the entry stays, unused
                log.debug("the baseline entry %s stays: %s", part.name, exc)
                return

    def close_engines(self) -> None:
        """Close the engines this linker made (after the calls on them have ended)."""
        self._ahead.cancel()
        self._tiers.close()
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.close()

    def capabilities(self) -> CapabilityRegistry:
        """The registry plugins are linked against (built from the source on first use)."""
        if self._registry is None:
            self._registry = CapabilityRegistry(self._capability_source())
        return self._registry

    def refresh_capabilities(self) -> None:
        """Forget the registry so the next link rebuilds it from the source."""
        self._registry = None

    # ---- the steps -------------------------------------------------------------------

    def compile(self, source: bytes | str | Path, path: Path | None, name: str | None, *,
                fuel: bool = False) -> CompiledPlugin:
        """``source`` compiled and its manifest checked; PluginLoadError says why not."""
        module = self._compile(source, path, name, fuel)
        self._check_manifest(module)
        return module

    def compile_soon(self, path: Path, name: str | None) -> CompiledPlugin:
        """``path`` compiled to serve as soon as it can (a catalog rollout, where every host
        compiles at once): from the module cache when it is there, else by the baseline
        compiler now and by Cranelift once it serves (plugins.tiers); its manifest checked.
        PluginLoadError says why not."""
        if not path.is_file():
            raise PluginLoadError(f"cannot load plugin: {path} does not exist or is not a file",
                                  plugin=name)
        module = self._compile_first(path, name)
        self._check_manifest(module)
        return module

    def _compile_first(self, source: bytes | str | Path,
                       name: str | None = None) -> CompiledPlugin:
        # Compiled ahead at start: from the cache when it is there, else by Winch now and by
        # Cranelift later (plugins.tiers).
        main = self.engine_for(False)
        wasm = source if isinstance(source, bytes) else Path(source).read_bytes()
        # A serving host compiles a component with Cranelift at once: tiered, it would
        # compile it twice (Winch, then Cranelift), and again with Winch each time the file
        # is dropped before Cranelift's entry is cached (tests/plugins/test_locks.py's churn
        # of a Python component: 87 CPU-s against 42). A one-off host keeps Winch's code.
        # The cache is looked at first: the baseline engine is made only when it is needed.
        # An engine that is Winch's already (`sandbox.compiler: winch`) has nothing to tier.
        # Winch has no Wasm GC: a GC module (Kotlin) is compiled by Cranelift at once.
        if main.baseline or (is_component(wasm) and not self.one_off) or _is_cached(main, wasm) \
                or uses_gc(wasm) or (baseline := self.baseline_engine()) is None:
            return PluginModule.load(main, source, name=name)
        return self._tiers.mark(PluginModule.load(baseline, source, name=name))

    def _optimize(self, entry: Entry, old: CompiledPlugin, new: CompiledPlugin) -> None:
        with entry.relink:
            if (entry.module is not old or entry.settings is None or self.closed
                    or entry.removed):
                return
            self._activate_locked(entry, Plan(new, entry.settings, entry.abi_manifest),
                                  tier_up=True)

    def compile_ahead(self, paths: Sequence[Path]) -> list[Path]:
        """Start compiling ``paths`` in parallel, smallest first (:mod:`omnicore.plugins.
        ahead`); return them in that order, the order to load them in."""
        return self._ahead.submit(paths)

    def _compile(self, source: bytes | str | Path, path: Path | None, name: str | None,
                 fuel: bool) -> CompiledPlugin:
        if path is not None and not path.is_file():
            raise PluginLoadError(f"cannot load plugin: {path} does not exist or is not a file",
                                  plugin=name)
        if path is not None and not fuel:
            ready = self._ahead.take(path)
            if ready is not None and name in (None, ready.name):
                return ready
        if self.one_off and not fuel:
            return self._compile_first(path if path is not None else source, name)
        return PluginModule.load(self.engine_for(fuel), path if path is not None else source,
                                 name=name)

    def _check_manifest(self, module: CompiledPlugin) -> None:
        # Each capability checks the manifest entries it reads (the tasks capability its
        # schedules, events its subscriptions), whether or not this plugin is granted it: a
        # malformed entry is a broken plugin either way.
        declared = self.capabilities().manifest_checks(module.manifest)
        for check in (*declared, *self._extra_checks()):
            try:
                check(module.name, module.manifest, tuple(module.handlers))
            except ConfigError as exc:
                raise PluginLoadError(f"plugin '{module.name}': {exc}",
                                      plugin=module.name) from exc

    def plan(self, module: CompiledPlugin, source: bytes | str | Path, path: Path | None,
             name: str | None, sidecar: Sidecar, *,
             host_grants: Mapping[str, Mapping[str, Any] | None],
             grants: Mapping[str, Any] | list[str] | None = None,
             config: Mapping[str, Any] | None = None,
             limits: Mapping[str, Any] | Limits | None = None) -> Plan:
        """The settings of ``module``: app config < sidecar < the operator's settings in the
        database (for a plugin from a file) < ``host_grants`` < the arguments, with its ABI's
        manifest folded in; recompiled on the metered engine when its limits set ``fuel``."""
        if path is not None and self._operator is not None:
            # Here: a host without operator settings (no app) never loads the storage layer.
            from omnicore.plugins.operator import overlay

            sidecar = overlay(sidecar, self._operator(module.name), module.name)
        sidecar, abi_manifest = kind_of(module).layer(module, path, sidecar)
        settings = plugin_settings.layer(
            module.name, app=self._app_settings.get(module.name), defaults=self.defaults,
            sidecar=sidecar, host_grants=host_grants, grants=grants, config=config,
            limits=limits)
        if settings.limits.fuel is not None and self.engine_for(True) is not self.engine_for(False):
            module = self._compile(source, path, name, True)
        return Plan(module, settings, abi_manifest)

    def activate(self, entry: Entry, plan: Plan, *, keep_serving: bool = False,
                 origin: Origin | None = None) -> None:
        """Link ``plan`` and make it ``entry``'s current version.

        Settings, and the module's ``origin`` when it changes, are committed only when the
        result is a state the plugin can be in (loaded, needs-grant, disabled), all at once;
        any other failure raises and leaves the entry (and the version serving it)
        untouched. With ``keep_serving`` (a rollout of a new module, not a change of the
        operator's settings), a plan that lacks a grant while a version serves raises
        :class:`NeedsGrant` too, and that version keeps serving.
        """
        with entry.relink:
            self._activate_locked(entry, plan, keep_serving=keep_serving, origin=origin)
        if self._tiers.is_baseline(plan.module) and not self.one_off:
            self._tiers.submit(entry, plan.module)

    def activate_new(self, entries: Entries, entry: Entry, plan: Plan) -> PluginInfo:
        """:meth:`activate` for an ``entry`` just reserved in ``entries`` (state compiling):
        when it raises, the entry leaves them, so the name is free again."""
        try:
            self.activate(entry, plan)
        except BaseException:
            entries.pop(entry.name, entry)
            raise
        entries.on_change()  # it settled: a call waiting for it goes on (plugins.arrivals)
        return entry.info()

    def _activate_locked(self, entry: Entry, plan: Plan, *, tier_up: bool = False,
                         keep_serving: bool = False, origin: Origin | None = None) -> None:
        module, settings = plan.module, plan.settings
        if entry.removed:
            raise PluginNotFound(f"plugin '{entry.name}' was unloaded while it was being "
                                 "linked; load it again", plugin=entry.name)
        if settings.disabled:
            _commit(entry, plan, (), origin)
            entry.swap(None)
            self._set_state(entry, "disabled")
            return
        level = settings.grants.get("log", {}).get("level")
        if level is not None:
            entry.log.min_level = level_number(level)
        try:
            engine = self.baseline_engine() if self._tiers.is_baseline(module) \
                else self.engine_for(settings.limits.fuel is not None)
            assert engine is not None  # a baseline module came from the baseline engine
            runtime = _link(Link(
                engine, module, self.capabilities(),
                settings, entry.log, self._data_dir, plan.abi_manifest, self._user_functions()),
                entry.name)
        except NeedsGrant as exc:
            if keep_serving and entry.version is not None:
                raise
            _commit(entry, plan, tuple(exc.missing), origin)
            entry.last_error = str(exc)
            entry.swap(None)
            self._set_state(entry, "needs-grant")
            if not tier_up:  # said once, at the load
                log.warning("%s", exc)
            return
        _commit(entry, plan, (), origin)
        if tier_up:
            # The same plugin on faster code: its breaker, stats and load time stand.
            entry.swap(Version(module, runtime))
            log.debug("plugin '%s' now runs its optimized code", entry.name)
            return
        entry.loaded_at = time.time()
        entry.breaker.reset()
        previous = entry.swap(Version(module, runtime))
        self._set_state(entry, "loaded")
        # An operator watching the log must tell a hot reload from a first load.
        log.info("plugin '%s' %s %s (%s)", entry.name, version_of(module),
                 "loaded" if previous is None else "reloaded", entry.source or "bytes")
        self._emit(PluginLoaded(plugin=entry.name, version=version_of(module),
                                path=str(entry.source or "")))

    def withdraw(self, entry: Entry, reason: str) -> None:
        """Stop ``entry`` serving (state ``failed``, ``reason`` its last error): for a version
        that must not go on running with the settings it was linked with."""
        with entry.relink:
            entry.swap(None)
            entry.stale = False
            entry.last_error = reason
            self._set_state(entry, "failed")
        log.warning("plugin '%s' withdrawn: %s", entry.name, reason)

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


def regranted(entry: Entry, layer: grant_rules.GrantLayer) -> Plan:
    """The plan ``entry`` was linked from, with ``layer`` merged over its grants."""
    assert entry.module is not None and entry.settings is not None
    grants = grant_rules.merge(entry.settings.grants, layer)
    return Plan(entry.module, replace(entry.settings, grants=grants), entry.abi_manifest)


def _link(link: Link, name: str) -> Runtime:
    """``link`` made into a runtime, once more if its first instance's start crossed the
    plugin's deadline. A host stalled for a moment (a loaded machine, a collection, the
    baseline tier's slower code) can end a sound start there, and a plugin that fails its
    load stays failed until someone loads it again: a clean-clone CI run's second host failed
    markdown-python's start so: 50 ms of CPU from the module cache, past 1 s on a saturated
    machine. Once, not until it works: a start too slow for its deadline fails at twice it.
    Any other failure is the code's own and would fail again. Every start goes through here:
    a first load, a reload, a regrant, a tier-up's swap (plugins.tiers)."""
    kind = kind_of(link.module)
    try:
        return kind.link(link)
    except PluginLoadError as exc:
        # sandbox/pool.py chains a start's failure: its deadline is the cause.
        if not isinstance(exc.__cause__, DeadlineExceeded):
            raise
        log.info("plugin '%s': its start crossed its deadline (%s); once more", name, exc)
    return kind.link(link)


def _is_cached(engine: SandboxEngine, wasm: bytes) -> bool:
    """Whether ``engine``'s module cache holds ``wasm`` compiled (not yet checked)."""
    sha = hashlib.sha256(wasm).hexdigest()
    if not is_component(wasm):
        return engine.is_cached(sha)
    from omnicore.sandbox.component.compiled import cache_path

    return engine.has_entry(cache_path(engine, sha))


def _commit(entry: Entry, plan: Plan, missing: tuple[str, ...], origin: Origin | None) -> None:
    # Under the entry's lock, as Entry.info reads them: a snapshot taken while a catalog's
    # version replaces a file's never names the catalog beside the file's module.
    with entry.lock:
        entry.module = plan.module
        entry.settings = plan.settings
        entry.abi_manifest = plan.abi_manifest
        entry.missing = missing
        entry.last_error = None
        entry.stale = False
        if origin is not None:
            entry.source, entry.published, entry.beneath = origin


def version_of(module: CompiledPlugin) -> str:
    """The version a plugin's manifest declares (``0.0.0`` when it declares none)."""
    return str((getattr(module, "manifest", None) or {}).get("version", "0.0.0"))

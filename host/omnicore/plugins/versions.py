"""Leases: a call holds the plugin version it started on until it returns.

A loaded entry points at its current *version* (a module plus its runtime); a call leases the
version for its duration, so a reload swaps the pointer while in-flight calls finish on the
old runtime, which closes once its last lease ends. That is how a reload never fails a call.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from omnicore.plugins.breaker import CircuitBreaker
from omnicore.plugins.info import PluginInfo, PluginState
from omnicore.plugins.runtimes import Runtime
from omnicore.plugins.settings import PluginSettings
from omnicore.plugins.stats import CallStats
from omnicore.sandbox.compiled import CompiledPlugin
from omnicore.sandbox.pluginlog import PluginLog

if TYPE_CHECKING:
    from omnicore.plugins.door import CallDoor

__all__ = ["Entry", "Origin", "Version"]

log = logging.getLogger("omnicore.plugins.host")


class Origin(NamedTuple):
    """Where the module serving a name came from: a file or bytes (``published`` None), or
    the catalog's version ``published`` loaded over the folder's file ``beneath``."""

    source: Path | None
    published: str | None = None
    beneath: Path | None = None


class Version:
    """One loaded build of a plugin and the calls currently using it."""

    __slots__ = ("inflight", "memory_read", "module", "retired", "runtime", "spans")

    def __init__(self, module: CompiledPlugin, runtime: Runtime) -> None:
        self.module = module
        self.runtime = runtime
        self.inflight = 0
        self.retired = False
        #: Its calls' span names and shared attributes by handler, made once while tracing
        #: is on (omnicore.telemetry), and its runtime's last memory reading for them
        #: (``time.monotonic()``, bytes): they go with the version.
        self.spans: dict[str, tuple[str, dict[str, object]]] = {}
        self.memory_read: tuple[float, int] | None = None


class Entry:
    """Everything the host keeps about one plugin name."""

    def __init__(self, name: str, source: Path | None, stats: CallStats,
                 breaker: CircuitBreaker) -> None:
        self.name = name
        self.source = source
        self.state: PluginState = "failed"
        self.module: CompiledPlugin | None = None
        self.version: Version | None = None
        self.settings: PluginSettings | None = None
        #: The manifest of the plugin's ABI as its settings were made from it (an Extism
        #: plugin's ``NAME.json``; None for a native plugin), see plugins.runtimes.
        self.abi_manifest: object | None = None
        self.missing: tuple[str, ...] = ()
        self.last_error: str | None = None
        # A reload of the file failed while the previous version kept serving.
        self.stale = False
        #: Set (under the table's lock) when the entry leaves the host's table: no version is
        #: linked onto it after that, or its runtime would serve nobody and never close.
        self.removed = False
        self.loaded_at: float | None = None
        #: The catalog's digest when the module serving this name came from the catalog
        #: (plugins.published), None for a file or bytes.
        self.published: str | None = None
        #: The folder's file of the same name that the catalog's version is loaded over: it
        #: serves again if the catalog drops the name.
        self.beneath: Path | None = None
        # The first state is announced by PluginLoaded/PluginFailed, not PluginStateChanged.
        self.announced = False
        self.stats = stats
        self.breaker = breaker
        self.log = PluginLog(name)
        #: Held for a version's leases, and while a link commits what info() reads together.
        self.lock = threading.Lock()
        # Serializes re-linking (reload, grant) so two of them cannot interleave; never held
        # on the call path.
        self.relink = threading.RLock()
        #: Worker threads for this plugin's ``acall``s (made on first use): one plugin's slow
        #: calls queue behind each other, never in front of another plugin's.
        self.door: CallDoor | None = None

    def info(self) -> PluginInfo:
        """A snapshot of this plugin for code, CLI and console: its module, settings and
        origin read under the lock a link commits them under, so never half old, half new."""
        with self.lock:
            module, settings, source, published, beneath, missing, last_error, stale = (
                self.module, self.settings, self.source, self.published, self.beneath,
                self.missing, self.last_error, self.stale)
        manifest = dict(module.manifest) if module is not None else {}
        state: PluginState = self.state
        breaker = self.breaker.state
        if state == "loaded" and breaker == "open":
            state = "circuit-open"
        elif state == "loaded" and breaker == "half-open":
            state = "half-open"
        return PluginInfo(
            name=self.name,
            state=state,
            source=str(source) if source else None,
            sha256=module.sha256 if module is not None else None,
            size=module.size if module is not None else None,
            version=str(manifest.get("version", "0.0.0")) if module is not None else None,
            description=str(manifest.get("description", "")),
            handlers=module.handlers if module is not None else (),
            requested=tuple(sorted(module.requested)) if module is not None else (),
            granted={k: dict(v) for k, v in settings.grants.items()} if settings else {},
            missing=missing,
            limits=settings.limits if settings else None,
            config=dict(settings.config) if settings else {},
            stats=self.stats.snapshot(),
            breaker=breaker,
            last_error=last_error,
            stale=stale,
            loaded_at=self.loaded_at,
            manifest=manifest,
            abi=str(module.abi) if module is not None else None,
            world=tuple(world.lines) if (world := getattr(module, "world", None)) else (),
            origin="catalog" if published else "file" if source else "bytes",
            shadows=str(beneath) if beneath is not None else None,
        )

    def acquire(self) -> Version | None:
        with self.lock:
            version = self.version
            if version is not None:
                version.inflight += 1
            return version

    def release(self, version: Version) -> None:
        with self.lock:
            version.inflight -= 1
            drained = version.retired and version.inflight == 0
        if drained:
            close_runtime(version)

    def swap(self, new: Version | None) -> Version | None:
        """Make ``new`` current; the old version (returned) closes once its calls drain."""
        with self.lock:
            old, self.version = self.version, new
            drained = False
            if old is not None:
                old.retired = True
                drained = old.inflight == 0
        if old is not None and drained:
            close_runtime(old)
        return old


def close_runtime(version: Version) -> None:
    try:
        version.runtime.close()
    except Exception:
        log.exception("closing a plugin runtime failed")

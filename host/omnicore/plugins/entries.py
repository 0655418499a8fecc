"""The plugins of one host by name: one :class:`~omnicore.plugins.versions.Entry` each.

:class:`Entries` is the table behind ``app.plugins``, under one lock; registering an entry
registers its ``plugin:<name>`` health check, and each entry's circuit breaker reports its
moves as events.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from omnicore.core.events import Event
from omnicore.errors import PluginNotFound
from omnicore.plugins.breaker import BreakerState, CircuitBreaker
from omnicore.plugins.events import PluginCircuitChanged, PluginStateChanged
from omnicore.plugins.health import plugin_health
from omnicore.plugins.stats import CallStats
from omnicore.plugins.versions import Entry
from omnicore.types import HealthChecks

__all__ = ["Entries"]

log = logging.getLogger("omnicore.plugins.host")


def _nothing() -> None:
    pass


class Entries:
    """Name -> :class:`Entry`; ``lock`` also guards compound changes made by the host."""

    def __init__(self, *, health: HealthChecks | None, emit: Callable[[Event], None],
                 failure_threshold: int, cooldown_s: float) -> None:
        self._by_name: dict[str, Entry] = {}
        #: The entry of a name, or None. The call path's lookup, so it is the dict's own
        #: ``get``: no Python frame between ``app.plugins.call`` and the entry.
        self.get: Callable[[str], Entry | None] = self._by_name.get
        self.lock = threading.RLock()
        self._health = health
        self._emit = emit
        self._failure_threshold = failure_threshold
        self._cooldown_s = cooldown_s
        #: Called after every change of the table, and when a reserved entry settles
        #: (plugins.arrivals wakes the calls waiting for a plugin to load).
        self.on_change: Callable[[], None] = _nothing

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self._by_name)

    def require(self, name: str) -> Entry:
        """The entry of ``name``; :class:`PluginNotFound` listing the loaded ones if none."""
        entry = self._by_name.get(name)
        if entry is None:
            raise self.not_found(name)
        return entry

    def not_found(self, name: str) -> PluginNotFound:
        """The error for a name no entry holds."""
        return PluginNotFound(f"no plugin named '{name}' (loaded: {self.names()})",
                              plugin=name)

    def by_source(self, path: Path) -> Entry | None:
        """The entry loaded from the file ``path``, or None."""
        for entry in list(self._by_name.values()):
            if entry.source == path:
                return entry
        return None

    def serving(self) -> list[str]:
        """The names whose calls run now (a version linked: loaded, or its circuit open)."""
        return [name for name, e in list(self._by_name.items()) if e.version is not None]

    def serving_digests(self) -> dict[str, str | None]:
        """:meth:`serving`, each with the digest of the module serving it."""
        return {name: f"sha256:{e.module.sha256}" if e.module is not None else None
                for name, e in list(self._by_name.items()) if e.version is not None}

    def sorted(self) -> list[Entry]:
        """Every entry, by name."""
        with self.lock:
            return [e for _, e in sorted(self._by_name.items())]

    def names(self) -> str:
        """The registered names, for messages (``none`` when empty)."""
        return ", ".join(sorted(self._by_name)) or "none"

    def new(self, name: str, path: Path | None) -> Entry:
        """A fresh entry (not registered yet) whose breaker reports its moves."""
        breaker = CircuitBreaker(
            name, failure_threshold=self._failure_threshold, cooldown_s=self._cooldown_s,
            on_change=lambda old, new: self._breaker_changed(name, old, new))
        return Entry(name, path, CallStats(), breaker)

    def put(self, entry: Entry) -> Entry | None:
        """Register ``entry`` (and its health check); return the entry it replaced."""
        with self.lock:
            old = self._by_name.get(entry.name)
            self._by_name[entry.name] = entry
            if old is not None and old is not entry:
                old.removed = True
        self.on_change()
        if self._health is not None:
            self._health.register_check(f"plugin:{entry.name}",
                                        partial(self._health_of, entry.name))
        return old

    def pop(self, name: str, expected: Entry | None = None) -> Entry | None:
        """Unregister ``name`` (only if it is still ``expected``, when given)."""
        with self.lock:
            entry = self._by_name.get(name)
            if entry is None or (expected is not None and entry is not expected):
                return None
            del self._by_name[name]
            entry.removed = True
            if entry.door is not None:
                # Queued acalls fail with PluginNotFound when they run; none is left hanging.
                entry.door.shutdown(wait=False)
        self.on_change()
        if self._health is not None:
            self._health.unregister_check(f"plugin:{name}")
        return entry

    def _health_of(self, name: str) -> tuple[Any, str]:
        entry = self._by_name.get(name)
        return plugin_health(entry.info() if entry is not None else None)

    def _breaker_changed(self, name: str, old: BreakerState, new: BreakerState) -> None:
        level = logging.WARNING if new == "open" else logging.INFO
        log.log(level, "plugin '%s' circuit %s -> %s", name, old, new)
        self._emit(PluginCircuitChanged(plugin=name, old=old, new=new))
        public = {"closed": "loaded", "open": "circuit-open", "half-open": "half-open"}
        self._emit(PluginStateChanged(plugin=name, old=public[old], new=public[new]))

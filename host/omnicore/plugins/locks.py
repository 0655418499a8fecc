"""One lock per plugin: its loads, reloads and unloads happen one at a time.

A plugin's lifecycle has four doors — the watched folder, ``app.plugins``, the console's
upload and the REST API — and several threads behind them. Two of them deciding about the
same file at once (the watcher loading the file an upload form is loading, an unload landing
while a reload links) left entries half-replaced and runtimes nobody would close. So every
lifecycle step of a plugin holds that plugin's lock for its whole length: a plugin from a file
is keyed by the file (its absolute path: a load names the file before anyone knows the
plugin's name), one from bytes by its name. Calls never take it (they lease a version,
:mod:`omnicore.plugins.versions`).

Lock order, outermost first: the folder's sync lock, a plugin's lock, its entry's ``relink``,
the entries table's lock, its entry's ``lock``. Nothing holding a plugin's lock waits for the
folder (:meth:`~omnicore.plugins.host.PluginHost.settings_changed` lets go before it asks
the folder to refresh).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from omnicore.plugins.versions import Entry

__all__ = ["PluginLocks", "plugin_key"]


def plugin_key(source: Path | None, name: str) -> str:
    """The lock key of the plugin ``name`` loaded from ``source`` (None: from bytes)."""
    return f"file:{os.path.abspath(source)}" if source is not None else f"name:{name}"


class PluginLocks:
    """Reentrant locks by :func:`plugin_key`, made on first use and dropped when no thread
    holds or waits for them (thousands of plugins come and go in a long-lived host)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[threading.RLock, list[int]]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Hold the lock of ``key`` for the ``with`` block."""
        with self._lock:
            slot = self._held.get(key)
            if slot is None:
                slot = self._held[key] = (threading.RLock(), [0])
            slot[1][0] += 1
        try:
            with slot[0]:
                yield
        finally:
            with self._lock:
                slot[1][0] -= 1
                if not slot[1][0]:
                    del self._held[key]

    @contextmanager
    def hold_entry(self, name: str, lookup: Callable[[str], Entry | None]
                   ) -> Iterator[Entry | None]:
        """Hold the lock of the plugin registered as ``name`` and give its entry (None if no
        plugin has the name). The name may change hands while this waits (a working file
        takes it from a failed one's placeholder): then the new holder's lock is taken."""
        while True:
            entry = lookup(name)
            key = plugin_key(entry.source if entry is not None else None, name)
            with self.hold(key):
                if lookup(name) is entry:
                    yield entry
                    return

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

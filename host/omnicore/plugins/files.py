"""Plugins that come from files: what the watched folder asks of the host.

:class:`PluginFiles` answers the folder's three hooks (:class:`~omnicore.plugins.folder.
FolderTarget`): a file appeared, changed, or went away. A broken file is registered as a
``failed`` plugin rather than raised, a half-written change never takes a working version
down, and a file whose manifest now names another plugin swaps one plugin for the other. A
file of a name the plugin catalog serves is not loaded: it is the layer beneath the catalog's
version (``Entry.beneath``, :mod:`omnicore.plugins.published`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from omnicore.core.events import Event
from omnicore.errors import ConfigError, DuplicatePlugin, PluginError
from omnicore.plugins.entries import Entries
from omnicore.plugins.events import PluginFailed, PluginReloaded
from omnicore.plugins.linking import Linker, version_of
from omnicore.plugins.sidecar import read_sidecar
from omnicore.plugins.versions import Entry
from omnicore.sandbox.grants import GrantLayer

__all__ = ["PluginFiles"]

log = logging.getLogger("omnicore.plugins.host")


class PluginFiles:
    """The folder hooks of one host; ``load``/``unload`` are the host's own."""

    def __init__(self, entries: Entries, linker: Linker, *, load: Callable[[Path], str],
                 unload: Callable[[str, str], None], host_grants: Callable[[str], GrantLayer],
                 emit: Callable[[Event], None]) -> None:
        self._entries = entries
        self._linker = linker
        self._load = load
        self._unload = unload
        self._host_grants = host_grants
        self._emit = emit

    def prepare(self, paths: Sequence[Path]) -> list[Path]:
        """Several new files at once (a host starting): compile them ahead in parallel,
        smallest first, and show each as ``compiling`` until it loads; return the order to
        load them in (:meth:`load_file` takes over each placeholder)."""
        order = self._linker.compile_ahead(paths)
        entries = self._entries
        for path in order:
            with entries.lock:
                if entries.by_source(path) is not None:
                    continue
                key = path.stem if entries.get(path.stem) is None else path.name
                if entries.get(key) is not None:
                    continue  # the name shows a plugin already: nothing to say meanwhile
                entry = entries.new(key, path)
                entry.state = "compiling"
                entries.put(entry)
        return order

    def load_file(self, path: Path) -> str:
        """Load ``path``; a broken file is registered as ``failed``."""
        entry = self._entries.by_source(path)
        if entry is not None and entry.version is not None:
            return entry.name  # already loaded from this file (by an explicit load())
        try:
            return self._load(path)
        except DuplicatePlugin as exc:
            holder = self._entries.get(exc.plugin or "")
            if holder is not None and holder.published is not None:
                # The catalog's version of this name serves: the file is the layer beneath,
                # loaded again if the catalog drops the name (plugins.published).
                holder.beneath = path
                log.info("plugin '%s': %s is beneath the catalog's version", holder.name,
                         path)
                return holder.name
            return self.register_failure(path, exc, exc.plugin)
        except PluginError as exc:
            return self.register_failure(path, exc, exc.plugin)
        except (ConfigError, OSError) as exc:
            return self.register_failure(path, exc, None)

    def reload_file(self, path: Path) -> str:
        """``path`` changed: swap the plugin it holds to the new contents.

        If the new contents cannot load while the old version is serving, the old version
        keeps serving and ``last_error`` says why (a half-written file must not take a
        working plugin down).
        """
        # Found by file: the name the folder remembers may have moved (a failed file's
        # placeholder gives way to a working plugin of the same name).
        entry = self._entries.by_source(path)
        if entry is None or entry.module is None:
            if entry is not None:
                self._entries.pop(entry.name, entry)  # a failed file: start over
            return self.load_file(path)
        name = entry.name
        try:
            sidecar = read_sidecar(path)
            module = self._linker.compile(path, path, None)
            if module.name != name:
                # Renamed in its manifest: a different plugin now lives in this file.
                self._unload(name, f"{path.name} now holds plugin '{module.name}'")
                return self.load_file(path)
            plan = self._linker.plan(module, path, path, None, sidecar,
                                     host_grants=self._host_grants(name))
        except (PluginError, ConfigError, OSError) as exc:
            return self._reload_failed(entry, path, exc)
        if (entry.state == "loaded" and entry.module.sha256 == plan.module.sha256
                and entry.settings == plan.settings
                and entry.abi_manifest == plan.abi_manifest):
            entry.last_error = None
            entry.stale = False
            return name  # only an mtime moved
        try:
            self._linker.activate(entry, plan)
        except (PluginError, ConfigError) as exc:
            return self._reload_failed(entry, path, exc)
        self._emit(PluginReloaded(plugin=name, version=version_of(plan.module), path=str(path),
                                  sha256=plan.module.sha256))
        return name

    def unload_file(self, path: Path) -> None:
        """``path`` was removed: unload the plugin it held."""
        entry = self._entries.by_source(path)
        if entry is not None:
            self._unload(entry.name, f"{path.name} was removed")
            return
        for held in self._entries.sorted():
            if held.beneath == path:
                held.beneath = None  # nothing is left beneath the catalog's version

    def _reload_failed(self, entry: Entry, path: Path, exc: Exception) -> str:
        if entry.version is not None:
            entry.stale = True
            entry.last_error = f"reload of {path.name} failed, still serving the previous " \
                               f"version: {exc}"
            log.warning("plugin '%s': %s", entry.name, entry.last_error)
            self._emit(PluginFailed(plugin=entry.name, error=entry.last_error, path=str(path)))
            return entry.name
        self._entries.pop(entry.name, entry)
        return self.register_failure(path, exc, entry.name)

    def register_failure(self, path: Path, exc: Exception, name: str | None) -> str:
        """Register ``path`` as a ``failed`` plugin under a free name; return that name."""
        entries = self._entries
        with entries.lock:
            stale = entries.by_source(path)
            if stale is not None and stale.version is None:
                entries.pop(stale.name, stale)  # one entry per file
            key = name or path.stem
            holder = entries.get(key)
            if holder is not None and holder.source != path:
                # The name belongs to a working plugin (a duplicate): the file name, which is
                # unique in the folder and never a valid plugin name, keeps both visible.
                key = path.name
            entry = entries.new(key, path)
            entry.state = "failed"
            entry.announced = True
            entry.last_error = str(exc)
            old = entries.put(entry)
        if old is not None:
            old.swap(None)
        log.warning("plugin file %s failed to load: %s", path, exc)
        self._emit(PluginFailed(plugin=key, error=str(exc), path=str(path)))
        return key

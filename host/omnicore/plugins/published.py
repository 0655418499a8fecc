"""The catalog's layer of one host: plugins published to the app's store, over the folder.

The catalog (:mod:`omnicore.plugins.catalog`) names, for a plugin name, the module every host
runs and the sidecar it was published with; :mod:`omnicore.plugins.convergence` fetches that
module into a verified local file. :class:`PublishedPlugins` then makes it this host's plugin
of that name:

* :meth:`~PublishedPlugins.adopt` loads it over whatever served the name — the folder's file
  of that name, or an older catalog version — the way a hot reload does: the entry stays,
  calls in flight finish on the version they started on, and a module that cannot serve here
  (it does not compile, its link fails, or it lacks a grant the version serving has) leaves
  that version serving and says why (``last_error``, ``stale``). The catalog wins the name;
  the folder's file is remembered as the layer beneath (``Entry.beneath``) and is not loaded
  meanwhile (:class:`~omnicore.plugins.files.PluginFiles` records a file that arrives under a
  published name the same way).
* :meth:`~PublishedPlugins.withdraw` (the catalog dropped the name) puts the folder's file
  beneath back, as a reload onto the same entry, or unloads the plugin when there is none.
* :meth:`~PublishedPlugins.relink` re-links a published plugin when the operator's settings
  of it change, as a sidecar edit re-links a folder plugin (a revoke takes effect: the
  plugin goes to ``needs-grant`` rather than keep a capability it lost).

Grants stay the operator's: a published sidecar's ``grants`` are what the publisher asks for
(:attr:`Published.requested`), never a grant. The plugin is linked with the app config's
``plugins.<name>``, the published sidecar's config, limits, enabled and mcp keys, the
operator's settings in the database over them, and the grants those give it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from omnicore.core.events import Event
from omnicore.errors import ConfigError, PluginError, PluginLoadError
from omnicore.plugins.entries import Entries
from omnicore.plugins.events import PluginFailed
from omnicore.plugins.info import PluginInfo
from omnicore.plugins.linking import Linker, Plan
from omnicore.plugins.locks import PluginLocks, plugin_key
from omnicore.plugins.sidecar import Sidecar, read_sidecar, sidecar_from
from omnicore.plugins.versions import Entry, Origin
from omnicore.sandbox import grants as grant_rules
from omnicore.sandbox.compiled import CompiledPlugin
from omnicore.sandbox.grants import GrantLayer

if TYPE_CHECKING:
    from omnicore.oci.trust import TrustPolicy

__all__ = ["Follower", "Published", "PublishedPlugins", "published_sidecar"]

log = logging.getLogger("omnicore.plugins.host")


class Follower(Protocol):
    """What keeps a host's published plugins what the catalog names
    (:class:`omnicore.plugins.convergence.CatalogFollower`, which imports this module)."""

    def retry(self, name: str) -> None: ...

    def wake(self) -> None: ...

    def stop(self) -> None: ...

    def set_policy(self, policy: TrustPolicy) -> None: ...

    def set_refuse_older(self, on: bool) -> None: ...


@dataclass(frozen=True)
class Published:
    """One catalog version as this host loads it: a verified module file and its settings."""

    name: str
    #: ``sha256:<hex>`` of the module (the file was checked against it).
    digest: str
    #: The catalog's number of this version of the name.
    number: int
    #: The verified module file in this host's catalog cache.
    path: Path
    #: The published sidecar without its grants (they are requests: :attr:`requested`).
    sidecar: Sidecar = field(default_factory=Sidecar)
    #: The grants the publisher asked for; the operator decides (specs/catalog.md).
    requested: GrantLayer = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How messages name it: ``version 3 (sha256:1a2b3c4d5e6f)``."""
        return f"version {self.number} ({self.digest[:19]})"


def published_sidecar(data: Mapping[str, Any], name: str, number: int,
                      wasm: Path) -> tuple[Sidecar, GrantLayer]:
    """The :class:`Sidecar` a published sidecar's ``data`` makes, without its grants, and the
    grants it requests. ConfigError names the catalog version for anything a sidecar file
    would refuse."""
    source = f"the sidecar published with plugin '{name}' version {number} (catalog)"
    sidecar = sidecar_from(dict(data), source, wasm)
    return replace(sidecar, grants={}), dict(sidecar.grants)


class PublishedPlugins:
    """The published plugins of one host (see the module docstring); the host's own parts
    (entries, linker, locks) and its ``unload``."""

    def __init__(self, entries: Entries, linker: Linker, locks: PluginLocks, *,
                 host_grants: Callable[[str], GrantLayer],
                 unload: Callable[[str, str], None], emit: Callable[[Event], None]) -> None:
        self._entries = entries
        self._linker = linker
        self._locks = locks
        self._host_grants = host_grants
        self._unload = unload
        self._emit = emit
        #: The version each name was last adopted at (whether or not it serves yet).
        self._wanted: dict[str, Published] = {}
        #: The version that serves each name here (the one its settings re-link).
        self._served: dict[str, Published] = {}
        #: What keeps these plugins what the app's catalog names, once an app follows it
        #: (plugins.convergence; ``app.plugins.follower``).
        self.follower: Follower | None = None

    def served(self, name: str) -> Published | None:
        """The catalog version serving ``name`` here (None: none serves it)."""
        return self._served.get(name)

    def wanted(self, name: str) -> Published | None:
        """The catalog version last given to :meth:`adopt` for ``name`` (None: none, or the
        catalog dropped it)."""
        return self._wanted.get(name)

    # ---- loading ---------------------------------------------------------------------

    def check_module(self, source: bytes, name: str | None = None) -> CompiledPlugin:
        """Compile and check ``source`` as a load would (the manifest's entries too), without
        registering it: what a publish to the catalog is held to. Raises PluginLoadError."""
        return self._linker.compile(source, None, name)

    def adopt(self, p: Published) -> PluginInfo:
        """Make ``p`` the plugin ``p.name`` on this host (module docstring). Raises the
        error that kept it from serving (PluginLoadError, NeedsGrant, ConfigError); the
        version serving before, if any, still serves then."""
        self._wanted[p.name] = p
        try:
            # Every host compiles a rollout at once: the baseline tier serves first.
            module = self._linker.compile_soon(p.path, p.name)
        except (PluginError, ConfigError) as exc:
            self._failed(p, exc)
            raise
        while True:
            with self._locks.hold_entry(p.name, self._entries.get) as entry:
                try:
                    plan = self._plan(p, module)
                    if entry is None:
                        done = self._register(p, plan)
                        if done is None:
                            continue  # another door took the name meanwhile: over it
                    else:
                        done = self._replace(entry, p, plan)
                    self._served[p.name] = p
                    return done
                except (PluginError, ConfigError) as exc:
                    self._failed(p, exc)
                    raise

    def _plan(self, p: Published, module: CompiledPlugin) -> Plan:
        return self._linker.plan(module, p.path, p.path, p.name, p.sidecar,
                                 host_grants=self._host_grants(p.name))

    def _register(self, p: Published, plan: Plan) -> PluginInfo | None:
        entries = self._entries
        with entries.lock:
            if entries.get(p.name) is not None:
                return None
            entry = entries.new(p.name, p.path)
            entry.state = "compiling"
            entry.published = p.digest
            entries.put(entry)
        return self._linker.activate_new(entries, entry, plan)

    def _replace(self, entry: Entry, p: Published, plan: Plan) -> PluginInfo:
        # A file served the name: it stays the layer beneath, for when the catalog drops it.
        beneath = entry.source if entry.published is None else entry.beneath
        self._linker.activate(entry, plan, keep_serving=True,
                              origin=Origin(p.path, p.digest, beneath))
        return entry.info()

    def _failed(self, p: Published, exc: Exception) -> None:
        """``p`` cannot serve here: the version serving the name (if any) goes on, and the
        plugin says why; a name nothing serves shows as ``failed``."""
        entries = self._entries
        why = f"catalog {p.label} could not be loaded here: {exc}"
        with entries.lock:
            entry = entries.get(p.name)
            if entry is None:
                entry = entries.new(p.name, p.path)
                entry.published = p.digest
                entry.announced = True
                entries.put(entry)
            if entry.version is not None:
                entry.stale = True
                why += f"; still serving {_serving(entry)}"
            else:
                entry.state = "failed"
            entry.last_error = why
        log.warning("plugin '%s': %s", p.name, why)
        self._emit(PluginFailed(plugin=p.name, error=why, path=str(p.path)))

    # ---- the catalog dropped a name ----------------------------------------------------

    def withdraw(self, name: str) -> None:
        """The catalog no longer names ``name``: the folder's file beneath serves again (a
        reload onto the same entry), or the plugin is unloaded."""
        self._wanted.pop(name, None)
        try:
            entry = self._entries.get(name)
            if entry is None or entry.published is None:
                return
            beneath = entry.beneath
            if beneath is not None and beneath.is_file():
                # The file's lock before the name's: the folder's thread takes them in that
                # order.
                with self._locks.hold(plugin_key(beneath, "")), \
                        self._locks.hold_entry(name, self._entries.get) as held:
                    if held is None or held.published is None:
                        return
                    try:
                        self._fall_back(held, beneath)
                        return
                    except (PluginError, ConfigError, OSError) as exc:
                        log.warning("plugin '%s': the catalog dropped it and %s cannot be "
                                    "loaded in its place: %s", name, beneath, exc)
            self._unload(name, "removed from the plugin catalog")
        finally:
            self._forget(name)

    def _forget(self, name: str) -> None:
        """No catalog version serves ``name`` here now: :meth:`served` says so, under the
        name's lock, where an adopt sets it. (Forgotten before the unload, an adopt that
        finished while the withdraw waited for the name left its version named as serving
        a plugin that was gone.) One that serves the name again after the withdraw stays."""
        with self._locks.hold_entry(name, self._entries.get) as held:
            if held is None or held.published is None:
                self._served.pop(name, None)

    def _fall_back(self, entry: Entry, path: Path) -> None:
        module = self._linker.compile(path, path, None)
        if module.name != entry.name:
            raise PluginLoadError(f"{path.name} now holds plugin '{module.name}'",
                                  plugin=entry.name)
        plan = self._linker.plan(module, path, path, None, read_sidecar(path),
                                 host_grants=self._host_grants(entry.name))
        self._linker.activate(entry, plan, origin=Origin(path))

    # ---- the operator's settings changed ----------------------------------------------

    def relink(self, name: str, capabilities: frozenset[str]) -> bool:
        """Re-link the published plugin ``name`` with the operator's settings as they are now;
        False when ``name`` is not served by the catalog here."""
        with self._locks.hold_entry(name, self._entries.get) as entry:
            p = self._served.get(name)
            if entry is None or entry.published is None or entry.module is None \
                    or p is None or p.digest != entry.published:
                return False
            try:
                plan = self._plan(p, entry.module)
                self._linker.activate(entry, plan)
            except (PluginError, ConfigError) as exc:
                changed = _granted(entry, capabilities)
                if changed:
                    # It may have lost one of them: it must not go on running with it.
                    self._linker.withdraw(entry, f"the grants of {', '.join(sorted(changed))} "
                                                 f"changed while the plugin could not be "
                                                 f"re-linked: {exc}")
                else:
                    entry.stale = True
                    entry.last_error = f"the operator's settings could not be applied, still " \
                                       f"serving the previous ones: {exc}"
            return True

    def settings_changed(self, name: str, capabilities: frozenset[str]) -> bool:
        """The operator's settings of ``name`` changed: a catalog version that could not
        serve here is tried again soon (a grant may be what it lacked), and the published
        plugin is re-linked; False when ``name`` is not served by the catalog here."""
        if self.follower is not None:
            self.follower.retry(name)
        return self.relink(name, capabilities)

    def reconfigure(self, wanted: set[str] | None) -> list[str]:
        """The app config's layers changed: re-link the published plugins in ``wanted``
        (None: every one); the names re-linked."""
        return [name for name in self.names()
                if (wanted is None or name in wanted) and self.relink(name, frozenset())]

    def names(self) -> list[str]:
        """The names served by the catalog here, by name."""
        return sorted(e.name for e in self._entries.sorted() if e.published is not None)


def _serving(entry: Entry) -> str:
    digest = f"sha256:{entry.module.sha256}" if entry.module is not None else "?"
    where = "the catalog's" if entry.published else str(entry.source or "bytes")
    return f"{digest[:19]} from {where}"


def _granted(entry: Entry, capabilities: frozenset[str]) -> set[str]:
    settings = entry.settings
    if settings is None:
        return set()
    return {c for c in capabilities
            if c.removeprefix(grant_rules.PREFIX) in settings.grants}

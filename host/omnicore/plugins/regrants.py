"""Grants and revokes of a running plugin host (``PluginHost.grant``/``revoke``), and the
grants the operator decided reaching a plugin: each change validated, then applied by
re-linking the plugin, on this host only (held for its life, :class:`HeldGrants`), in its
sidecar too (``persist``), or through the operator's settings every instance applies."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from omnicore.errors import PluginError, PluginLoadError
from omnicore.plugins.entries import Entries
from omnicore.plugins.info import PluginInfo
from omnicore.plugins.linking import Linker, regranted
from omnicore.plugins.locks import PluginLocks
from omnicore.plugins.settings import HeldGrants
from omnicore.plugins.sidecar import write_grants
from omnicore.plugins.versions import Entry
from omnicore.sandbox import grants as grant_rules

if TYPE_CHECKING:
    from omnicore.plugins.operator import OperatorSettings

__all__ = ["Regrants"]

#: A grant change: capability -> its options, or None to revoke it.
Change = Mapping[str, Mapping[str, Any] | None]


class Regrants:
    """Changes of one host's grants (the host's entries, linker, locks and held grants;
    ``operator``: the operator's settings, when the host has them; ``settings_changed``:
    the host's re-link after a change of them)."""

    def __init__(self, entries: Entries, linker: Linker, locks: PluginLocks,
                 held: HeldGrants, *, operator: Callable[[], OperatorSettings | None],
                 settings_changed: Callable[[str, frozenset[str]], bool]) -> None:
        self._entries = entries
        self._linker = linker
        self._locks = locks
        self._held = held
        self._operator = operator
        self._settings_changed = settings_changed

    def change(self, name: str, change: Change, persist: bool) -> PluginInfo:
        """Apply ``change`` to plugin ``name``: through the operator's settings with
        ``persist`` when the host has them, else here (and in its sidecar with ``persist``)."""
        if persist and self._operator() is not None:
            # Not under the plugin's lock: the change is applied through the folder, whose
            # lock comes first (plugins.locks).
            return self._stored(self._entries.require(name), change)
        with self._locks.hold_entry(name, self._entries.get) as entry:
            if entry is None:
                raise self._entries.not_found(name)
            return self._here(entry, change, persist)

    def _stored(self, entry: Entry, change: Change) -> PluginInfo:
        name = entry.name
        layer = self._layer(entry, change, True)
        operator = self._operator()
        assert operator is not None
        # Stored first, then applied the way every instance applies it (in the folder's
        # order, so a change heard from another instance cannot land in between).
        grant_rules.validate(regranted(entry, layer).settings.grants,
                             self._linker.capabilities(), name)  # bad options: nothing stored
        from omnicore.plugins.operator import with_grants

        operator.change(name, partial(with_grants, layer=layer))
        if not self._settings_changed(name, frozenset(layer)):
            with self._locks.hold_entry(name, self._entries.get) as current:
                if current is entry:
                    with entry.relink:
                        self._linker.activate(entry, regranted(entry, layer))
        return entry.info()

    def _layer(self, entry: Entry, change: Change, persist: bool) -> grant_rules.GrantLayer:
        name = entry.name
        layer = grant_rules.normalize({k: (False if v is None else v) for k, v in change.items()},
                                      source=f"grant to '{name}'")
        if entry.module is None or entry.settings is None:
            raise PluginLoadError(f"plugin '{name}' failed to load ({entry.last_error}); "
                                  "fix the file before changing its grants", plugin=name)
        if persist and entry.source is None:
            raise PluginError(f"plugin '{name}' was loaded from bytes; there is no sidecar "
                              "to persist its grants to", plugin=name)
        if persist and entry.published is not None and self._operator() is None:
            raise PluginError(f"plugin '{name}' comes from the plugin catalog; its grants are "
                              "the operator's settings of an app (omnicore settings grant)",
                              plugin=name)
        return layer

    def _here(self, entry: Entry, change: Change, persist: bool) -> PluginInfo:
        name = entry.name
        layer = self._layer(entry, change, persist)
        with entry.relink:
            self._linker.activate(entry, regranted(entry, layer))
            self._held.add(name, layer)
            if persist and entry.source is not None:
                write_grants(entry.source, layer)
        return entry.info()

    def decided(self, entry: Entry, capabilities: frozenset[str]) -> None:
        """The operator's decision on ``capabilities`` reaching ``entry`` in place: a plugin
        loaded from a file outside the folder is not reloaded (its load() arguments are not
        kept), but the grants just decided reach it, so a revoke stops it here too."""
        operator = self._operator()
        decided = operator.doc(entry.name).get("grants") if operator is not None else None
        if not isinstance(decided, Mapping) or entry.module is None or entry.settings is None:
            return
        layer = grant_rules.normalize({c: decided[c] for c in capabilities if c in decided},
                                      source=f"the operator's grants to '{entry.name}'")
        if layer:
            with entry.relink:
                self._linker.activate(entry, regranted(entry, layer))

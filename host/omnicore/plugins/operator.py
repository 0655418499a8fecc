"""The operator's settings in the database: the layer every instance applies over its folder.

What an operator changes on a running app (a grant or revoke, config, limits, enabled, the
MCP tools) is stored per plugin name in the app's database
(:class:`~omnicore.storage.settings_rows.PluginSettingsRows`), not in the plugin folder, so
every instance of one database applies it; each instance's folder stays its own. The layers,
lowest first (specs/host.md, "Plugin settings"): app config ``plugins.<name>`` < the sidecar
in the folder < these settings < grants made on this process only < ``load()`` arguments.
Grants merge per capability (``false`` revokes); ``config``, ``limits``, ``enabled`` and
``mcp.resources``, once set here, replace the sidecar's; ``mcp.expose`` patterns are served
beside the sidecar's (a handler the folder's file exposes is hidden by editing that file).

:class:`OperatorSettings` keeps a copy of every plugin's settings, written through on a local
change and caught up from the change sequence when another instance changes them: at once on a
shared database's NOTIFY (``Storage.on_settings``), else by polling. Each change reaches the
plugin host's ``apply(plugin, capabilities)``, which re-links the plugin the way a sidecar
edit does (calls in flight finish on the old version).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from omnicore.errors import ConfigError
from omnicore.plugins.following import Following
from omnicore.plugins.sidecar import Sidecar, read_sidecar
from omnicore.sandbox import grants as grant_rules
from omnicore.sandbox.limits import Limits
from omnicore.storage.settings_rows import PluginSettingsRecord, PluginSettingsRows

__all__ = ["KEYS", "OperatorSettings", "folder_grant", "overlay", "source_of", "with_grants"]

log = logging.getLogger("omnicore.plugins.host")

#: The keys an operator's settings object may hold.
KEYS = ("grants", "config", "limits", "enabled", "mcp")
#: How often the change sequence is read when no NOTIFY arrives (the only way on SQLite,
#: where the CLI may change settings beside a running host; a fallback on PostgreSQL).
POLL_S = 1.0

#: ``apply(plugin, capabilities)``: the plugin's settings changed; ``capabilities`` are the
#: grants that changed (granted, revoked or given other options).
Apply = Callable[[str, frozenset[str]], object]


def source_of(plugin: str) -> str:
    """How errors name the operator's settings of ``plugin``."""
    return f"the operator's settings of plugin '{plugin}' (database)"


def overlay(sidecar: Sidecar, doc: Mapping[str, Any] | None, plugin: str) -> Sidecar:
    """``sidecar`` with the operator's settings ``doc`` of ``plugin`` laid over it.

    Raises :class:`ConfigError` naming the database row for a key or value the sidecar itself
    would refuse (settings written by hand, or by a newer omnicore).
    """
    if not doc:
        return sidecar
    source = source_of(plugin)
    unknown = sorted(set(doc) - set(KEYS))
    if unknown:
        raise ConfigError(f"{source}: unknown key '{unknown[0]}'; known keys: "
                          f"{', '.join(KEYS)}", key=unknown[0], source=source)
    changes: dict[str, Any] = {}
    if "grants" in doc:
        changes["grants"] = {**sidecar.grants,
                             **grant_rules.normalize(doc["grants"], source=source)}
    if "config" in doc:
        if not isinstance(doc["config"], Mapping):
            raise ConfigError(f"{source}: 'config' must be a table/mapping", key="config",
                              value=doc["config"], source=source)
        changes["config"] = dict(doc["config"])
    if "limits" in doc:
        try:
            Limits().merged(doc["limits"])
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}", key=exc.key, value=exc.value,
                              source=source) from exc
        changes["limits"] = dict(doc["limits"])
    if "enabled" in doc:
        if not isinstance(doc["enabled"], bool):
            raise ConfigError(f"{source}: 'enabled' must be true or false", key="enabled",
                              value=doc["enabled"], source=source)
        changes["enabled"] = doc["enabled"]
    mcp = doc.get("mcp", {})
    if not isinstance(mcp, Mapping) or set(mcp) - {"expose", "resources"}:
        raise ConfigError(f"{source}: 'mcp' must be {{expose: [HANDLER, ...], resources: "
                          "true|false}}", key="mcp", value=mcp, source=source)
    if "expose" in mcp:
        expose = mcp["expose"]
        if not isinstance(expose, list) or not all(isinstance(h, str) and h for h in expose):
            raise ConfigError(f"{source}: 'mcp.expose' must be a list of handler names or "
                              "globs", key="mcp", value=mcp, source=source)
        changes["mcp_expose"] = (*sidecar.mcp_expose,
                                 *(h for h in expose if h not in sidecar.mcp_expose))
    if "resources" in mcp:
        if not isinstance(mcp["resources"], bool):
            raise ConfigError(f"{source}: 'mcp.resources' must be true or false", key="mcp",
                              value=mcp, source=source)
        changes["mcp_resources"] = mcp["resources"]
    return replace(sidecar, **changes)


def with_grants(doc: Mapping[str, Any], *, layer: grant_rules.GrantLayer) -> dict[str, Any]:
    """An operator settings object with the grant ``layer`` merged into its grants (``None``
    revokes: stored as ``false``, so it wins over the sidecar and the app config)."""
    grants = dict(doc.get("grants") or {})
    grants.update({name: False if opts is None else dict(opts) for name, opts in layer.items()})
    return {**doc, "grants": grants}


def folder_grant(app_grants: object, wasm: Path | None, capability: str
                 ) -> dict[str, Any] | None:
    """The options the layers beneath the operator's give ``capability``: the app config's
    ``plugins.<name>.grants`` (``app_grants``) under the sidecar of ``wasm``; None when they do
    not grant it. A grant without options takes these, so granting back what a revoke took
    restores it as omnicore.yaml or the sidecar had it (``{sql: {connectors: [orders]}}``,
    not ``{}``)."""
    sidecar = read_sidecar(wasm) if wasm is not None else Sidecar()
    layers = grant_rules.normalize(app_grants, source="plugins.<name>.grants"), sidecar.grants
    found = grant_rules.merge(*layers).get(capability.removeprefix(grant_rules.PREFIX))
    return None if found is None else dict(found)


def _grants_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> frozenset[str]:
    """The capabilities whose grant differs between two settings objects."""
    before, after = old.get("grants") or {}, new.get("grants") or {}
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return frozenset(set(before or ()) | set(after or ()))
    return frozenset(c for c in set(before) | set(after) if before.get(c) != after.get(c))


class OperatorSettings:
    """Every plugin's operator settings: written through to ``store``, kept here, followed.

    Before :meth:`follow` (a CLI command's app that is never started) each read goes to the
    store; once following, reads are served from memory, so a database that is away does not
    stop a plugin file from being reloaded.
    """

    def __init__(self, store: Callable[[], PluginSettingsRows], *,
                 poll_s: float = POLL_S) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._docs: dict[str, tuple[int, dict[str, Any]]] = {}
        self._seq = 0
        self._following = False
        self._apply: Apply | None = None
        self._follower = Following("plugin settings", log, poll_s=poll_s,
                                   thread_name="omnicore-plugin-settings")

    # ---- reading ---------------------------------------------------------------------

    def doc(self, plugin: str) -> dict[str, Any]:
        """The operator's settings of ``plugin`` (``{}`` when it has none)."""
        if self._following:
            with self._lock:
                found = self._docs.get(plugin)
            return dict(found[1]) if found else {}
        record = self._store().get(plugin)
        return dict(record.doc) if record else {}

    # ---- changing --------------------------------------------------------------------

    def change(self, plugin: str, edit: Callable[[dict[str, Any]], dict[str, Any]], *,
               by: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Store ``edit(current)`` as ``plugin``'s settings; ``(before, after)``.

        The edit runs inside the store's transaction, so changes made at once on several
        instances never overwrite one another. Not applied here: the caller re-links.
        """
        seen: list[dict[str, Any]] = []

        def keep(doc: dict[str, Any]) -> dict[str, Any]:
            seen[:] = [dict(doc)]
            return {k: v for k, v in edit(dict(doc)).items() if v is not None}

        record = self._store().change(plugin, keep, by=by, at=time.time())
        self._remember(record)
        # The audit hook: every operator settings change (console, REST API, `omnicore
        # settings`, app.plugins.grant(persist=True)) passes here, with its actor `by` and
        # the object before and after; one audit entry per change belongs on this line.
        return seen[0], record.doc

    def _remember(self, record: PluginSettingsRecord) -> bool:
        with self._lock:
            held = self._docs.get(record.plugin)
            if held is not None and held[0] >= record.seq:
                return False
            self._docs[record.plugin] = (record.seq, dict(record.doc))
            return True

    # ---- following -------------------------------------------------------------------

    def follow(self, apply: Apply, subscribe: Callable[[Callable[[], None]], None]) -> None:
        """Load every plugin's settings, then follow changes made anywhere in a thread:
        ``subscribe(wake)`` asks the storage to call ``wake`` on each change it hears of."""
        rows = self._store()
        seq = rows.last_seq()  # first: a change made meanwhile is caught up below
        with self._lock:
            self._docs = {r.plugin: (r.seq, dict(r.doc)) for r in rows.all()}
            self._seq = seq
        self._apply = apply
        self._following = True
        self._follower.start(self.catch_up, subscribe)

    def catch_up(self) -> list[str]:
        """Apply every change made since the last one seen; the plugins it applied."""
        records = self._store().changes(self._seq)
        applied = []
        for record in records:
            with self._lock:
                held = self._docs.get(record.plugin)
            before = held[1] if held else {}
            if self._remember(record) and self._apply is not None:
                applied.append(record.plugin)
                try:
                    self._apply(record.plugin, _grants_changed(before, record.doc))
                except Exception:
                    log.exception("plugin '%s': applying the operator's settings failed",
                                  record.plugin)
            self._seq = max(self._seq, record.seq)
        return applied

    def stop(self) -> None:
        """Stop following (the copy stays readable)."""
        self._follower.stop(5)

"""The operator's plugin settings on PostgreSQL, and the NOTIFY that tells every instance.

A change holds a transaction advisory lock while it takes the next change number, so numbers
are visible in the order they were given: a follower that read up to ``n`` can never see
``n + 1`` commit after ``n + 2``. The ``omnicore_settings`` NOTIFY goes out at commit; the
instances' :class:`~omnicore.storage.postgres.liveness.Liveness` connections hear it.
"""

from __future__ import annotations

import json
from typing import Any

from omnicore.storage.postgres.database import Database
from omnicore.storage.postgres.schema import SETTINGS_LOCK
from omnicore.storage.settings_rows import Edit, PluginSettingsRecord, PluginSettingsRows

__all__ = ["PgPluginSettings"]

_COLS = "plugin, doc, seq, updated_at, updated_by"


def _record(r: Any) -> PluginSettingsRecord:
    return PluginSettingsRecord(str(r[0]), json.loads(r[1]), int(r[2]), float(r[3]), r[4])


class PgPluginSettings(PluginSettingsRows):
    def __init__(self, storage: Database) -> None:
        self._s = storage

    def get(self, plugin: str) -> PluginSettingsRecord | None:
        rows = self._s.read(f"SELECT {_COLS} FROM plugin_settings WHERE plugin=?", (plugin,))
        return _record(rows[0]) if rows else None

    def all(self) -> list[PluginSettingsRecord]:
        return [_record(r) for r in self._s.read(
            f"SELECT {_COLS} FROM plugin_settings WHERE doc <> '{{}}' ORDER BY plugin")]

    def change(self, plugin: str, edit: Edit, *, by: str | None,
               at: float) -> PluginSettingsRecord:
        def run(conn: Any) -> PluginSettingsRecord:
            conn.execute("SELECT pg_advisory_xact_lock(?)", (SETTINGS_LOCK,))
            row = conn.execute("SELECT doc FROM plugin_settings WHERE plugin=?",
                               (plugin,)).fetchone()
            doc = edit(json.loads(row[0]) if row else {})
            text = json.dumps(doc, separators=(",", ":"), sort_keys=True)
            seq = int(conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM plugin_settings")
                      .fetchone()[0])
            conn.execute("INSERT INTO plugin_settings VALUES (?,?,?,?,?) ON CONFLICT "
                         "(plugin) DO UPDATE SET doc=excluded.doc, seq=excluded.seq, "
                         "updated_at=excluded.updated_at, updated_by=excluded.updated_by",
                         (plugin, text, seq, at, by))
            conn.announce("settings", str(seq))
            return PluginSettingsRecord(plugin, json.loads(text), seq, at, by)
        return self._s.write(run)

    def changes(self, since: int, limit: int = 1000) -> list[PluginSettingsRecord]:
        return [_record(r) for r in self._s.read(
            f"SELECT {_COLS} FROM plugin_settings WHERE seq > ? ORDER BY seq LIMIT ?",
            (since, limit))]

    def last_seq(self) -> int:
        return int(self._s.read("SELECT coalesce(max(seq), 0) FROM plugin_settings")[0][0])

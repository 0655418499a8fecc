"""The operator's plugin settings on SQLite: one row per plugin, the object as JSON text.

Writes are serialised by the database's write lock (``BEGIN IMMEDIATE``), so taking the
largest change number plus one inside the transaction numbers changes in commit order.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from omnicore.storage.backend import Tx
from omnicore.storage.settings_rows import Edit, PluginSettingsRecord, PluginSettingsRows
from omnicore.storage.sqlite.database import Database

__all__ = ["SQLitePluginSettings"]

_COLS = "plugin, doc, seq, updated_at, updated_by"


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE plugin_settings (plugin TEXT PRIMARY KEY, doc TEXT NOT NULL, "
                 "seq INTEGER NOT NULL, updated_at REAL NOT NULL, updated_by TEXT)")
    conn.execute("CREATE INDEX plugin_settings_by_seq ON plugin_settings (seq)")


def _record(r: Sequence[Any]) -> PluginSettingsRecord:
    return PluginSettingsRecord(str(r[0]), json.loads(r[1]), int(r[2]), float(r[3]), r[4])


class SQLitePluginSettings(PluginSettingsRows):
    """:class:`PluginSettingsRows` in the app's database (the ``plugin_settings`` component)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        db.ensure_schema("plugin_settings", (_v1,))

    def get(self, plugin: str) -> PluginSettingsRecord | None:
        rows = self._db.read(f"SELECT {_COLS} FROM plugin_settings WHERE plugin = ?",
                              (plugin,))
        return _record(rows[0]) if rows else None

    def all(self) -> list[PluginSettingsRecord]:
        return [_record(r) for r in self._db.read(
            f"SELECT {_COLS} FROM plugin_settings WHERE doc <> '{{}}' ORDER BY plugin")]

    def change(self, plugin: str, edit: Edit, *, by: str | None,
               at: float) -> PluginSettingsRecord:
        def run(conn: Tx) -> PluginSettingsRecord:
            row = conn.execute("SELECT doc FROM plugin_settings WHERE plugin = ?",
                               (plugin,)).fetchone()
            doc = edit(json.loads(row[0]) if row else {})
            text = json.dumps(doc, separators=(",", ":"), sort_keys=True)
            seq = int(conn.execute("SELECT coalesce(max(seq), 0) + 1 FROM plugin_settings")
                      .fetchone()[0])
            conn.execute("INSERT INTO plugin_settings VALUES (?, ?, ?, ?, ?) ON CONFLICT(plugin) "
                         "DO UPDATE SET doc = excluded.doc, seq = excluded.seq, "
                         "updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                         (plugin, text, seq, at, by))
            return PluginSettingsRecord(plugin, json.loads(text), seq, at, by)
        return self._db.write(run)

    def changes(self, since: int, limit: int = 1000) -> list[PluginSettingsRecord]:
        return [_record(r) for r in self._db.read(
            f"SELECT {_COLS} FROM plugin_settings WHERE seq > ? ORDER BY seq LIMIT ?",
            (since, limit))]

    def last_seq(self) -> int:
        return int(self._db.read("SELECT coalesce(max(seq), 0) FROM plugin_settings")[0][0])

"""The operator's plugin settings: one row per plugin, the object as JSON text.

A change takes the next change number inside its transaction under the ``settings`` lock
(a single writer holds it anyway), so numbers become visible in the order they were given: a
follower that read up to ``n`` can never see ``n + 1`` commit after ``n + 2``. The change is
announced on ``settings`` at commit, for the other hosts sharing the database.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from omnicore.storage.backend import Backend, Tx
from omnicore.storage.settings_rows import Edit, PluginSettingsRecord, PluginSettingsRows

__all__ = ["PluginSettings"]

_COLS = "plugin, doc, seq, updated_at, updated_by"


def _record(r: Sequence[Any]) -> PluginSettingsRecord:
    return PluginSettingsRecord(str(r[0]), json.loads(r[1]), int(r[2]), float(r[3]), r[4])


class PluginSettings(PluginSettingsRows):
    """:class:`PluginSettingsRows` on a backend (the ``plugin_settings`` component)."""

    def __init__(self, db: Backend) -> None:
        self._db = db
        db.prepare("plugin_settings")

    def get(self, plugin: str) -> PluginSettingsRecord | None:
        return self._db.read_row(_record, f"SELECT {_COLS} FROM plugin_settings WHERE plugin=?",
                                 (plugin,))

    def all(self) -> list[PluginSettingsRecord]:
        return [_record(r) for r in self._db.read(
            f"SELECT {_COLS} FROM plugin_settings WHERE doc <> '{{}}' ORDER BY plugin")]

    def change(self, plugin: str, edit: Edit, *, by: str | None,
               at: float) -> PluginSettingsRecord:
        def run(tx: Tx) -> PluginSettingsRecord:
            tx.lock("settings")
            row = tx.execute("SELECT doc FROM plugin_settings WHERE plugin=?",
                             (plugin,)).fetchone()
            doc = edit(json.loads(row[0]) if row else {})
            text = json.dumps(doc, separators=(",", ":"), sort_keys=True)
            seq = int(tx.execute("SELECT coalesce(max(seq), 0) + 1 FROM plugin_settings")
                      .fetchone()[0])
            tx.execute("INSERT INTO plugin_settings VALUES (?,?,?,?,?) ON CONFLICT (plugin) "
                       "DO UPDATE SET doc=excluded.doc, seq=excluded.seq, "
                       "updated_at=excluded.updated_at, updated_by=excluded.updated_by",
                       (plugin, text, seq, at, by))
            tx.announce("settings", str(seq))
            return PluginSettingsRecord(plugin, json.loads(text), seq, at, by)
        return self._db.write(run)

    def changes(self, since: int, limit: int = 1000) -> list[PluginSettingsRecord]:
        return [_record(r) for r in self._db.read(
            f"SELECT {_COLS} FROM plugin_settings WHERE seq > ? ORDER BY seq LIMIT ?",
            (since, limit))]

    def last_seq(self) -> int:
        return int(self._db.read("SELECT coalesce(max(seq), 0) FROM plugin_settings")[0][0])

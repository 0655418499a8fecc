"""The event log on SQLite: recent plugin events, trimmed now and then."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import cast

from omnicore.storage.base import EventLog, EventRecord
from omnicore.storage.sqlite.database import Database

__all__ = ["SQLiteEvents"]


class SQLiteEvents(EventLog):
    def __init__(self, db: Database) -> None:
        self._s = db

    def append(self, topic: str, plugin: str | None, payload: bytes, retain: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            new = int(conn.execute("INSERT INTO events(topic, plugin, payload, created_at) "
                                   "VALUES (?,?,?,?) RETURNING id",
                                   (topic, plugin, payload, time.time())).fetchone()[0])
            if new % 64 == 0:  # trim now and then, not on every append
                conn.execute("DELETE FROM events WHERE id<=?", (new - retain,))
            return new
        return cast(int, self._s._write(run))

    def recent(self, limit: int = 100, topic_prefix: str = "") -> list[EventRecord]:
        rows = self._s._read("SELECT id, topic, plugin, payload, created_at FROM events WHERE "
                             "substr(topic, 1, ?)=? ORDER BY id DESC LIMIT ?",
                             (len(topic_prefix), topic_prefix, limit))
        return [EventRecord(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]

    def get_many(self, event_ids: Sequence[int]) -> list[EventRecord]:
        found: list[EventRecord] = []
        event_ids = sorted(set(event_ids))
        for at in range(0, len(event_ids), 1000):
            chunk = list(event_ids[at:at + 1000])
            found += [EventRecord(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in self._s._read(
                f"SELECT id, topic, plugin, payload, created_at FROM events WHERE id IN "
                f"({','.join('?' * len(chunk))}) ORDER BY id", chunk)]
        return found

    def get(self, event_id: int) -> EventRecord | None:
        rows = self._s._read("SELECT id, topic, plugin, payload, created_at FROM events WHERE "
                             "id=?", (event_id,))
        return EventRecord(rows[0][0], rows[0][1], rows[0][2], bytes(rows[0][3]),
                           rows[0][4]) if rows else None

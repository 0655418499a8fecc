"""The instance table on SQLite: one host per data dir, so the table lists that host.

A SQLite database is held by one host at a time (the data dir's lock), so a dead instance is
only ever found by its heartbeat going stale; the host that takes the lock over releases its
predecessor's leases at start. The table is still kept, so ``/api/v1/instances`` and the
console speak of one cluster whatever the backend.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from omnicore.storage.backend import Tx
from omnicore.storage.instance_rows import Instance, InstanceRows
from omnicore.storage.sqlite.database import Database
from omnicore.storage.stores.leases import JOBS, LEASED, release_owners

__all__ = ["SQLiteInstances"]

_COLS = ("runtime_id, hostname, pid, version, started_at, heartbeat_at, console_url, "
         "jobs_held, draining")


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE instances (runtime_id TEXT PRIMARY KEY, hostname TEXT NOT NULL,"
                 " pid INTEGER NOT NULL, version TEXT NOT NULL, started_at REAL NOT NULL,"
                 " heartbeat_at REAL NOT NULL, console_url TEXT, jobs_held INTEGER NOT NULL"
                 " DEFAULT 0, draining INTEGER NOT NULL DEFAULT 0)")


def _instance(r: Sequence[Any]) -> Instance:
    return Instance(str(r[0]), str(r[1]), int(r[2]), str(r[3]), float(r[4]), float(r[5]), r[6],
                    int(r[7]), bool(r[8]))


class SQLiteInstances(InstanceRows):
    """:class:`InstanceRows` in the app's database (the ``instances`` component)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        db.ensure_schema("instances", (_v1,))

    def register(self, instance: Instance) -> None:
        self._db.write(lambda conn: conn.execute(
            f"INSERT INTO instances ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT "
            "(runtime_id) DO UPDATE SET heartbeat_at=excluded.heartbeat_at, "
            "console_url=excluded.console_url",
            (instance.runtime_id, instance.hostname, instance.pid, instance.version,
             instance.started_at, instance.heartbeat_at, instance.console_url,
             instance.jobs_held, int(instance.draining))))

    def heartbeat(self, runtime_id: str, now: float, jobs_held: int,
                  console_url: str | None = None) -> Instance | None:
        row = self._db.write(lambda conn: conn.execute(
            f"UPDATE instances SET heartbeat_at=?, jobs_held=?, console_url=COALESCE(?, "
            f"console_url) WHERE runtime_id=? RETURNING {_COLS}",
            (now, jobs_held, console_url, runtime_id)).fetchone())
        return None if row is None else _instance(row)

    def all(self) -> list[Instance]:
        return [_instance(r) for r in self._db.read(
            f"SELECT {_COLS} FROM instances ORDER BY started_at, runtime_id")]

    def set_draining(self, runtime_id: str, draining: bool) -> bool:
        return bool(self._db.write(lambda conn: conn.execute(
            "UPDATE instances SET draining=? WHERE runtime_id=?",
            (int(draining), runtime_id)).rowcount))

    def remove(self, runtime_id: str) -> None:
        self._db.write(lambda conn: conn.execute("DELETE FROM instances WHERE runtime_id=?",
                                                  (runtime_id,)))

    def reap(self, me: str, now: float, dead_after_s: float) -> list[str]:
        def run(conn: Tx) -> list[str]:
            dead = [str(r[0]) for r in conn.execute(
                "DELETE FROM instances WHERE runtime_id != ? AND heartbeat_at < ? "
                "RETURNING runtime_id", (me, now - dead_after_s)).fetchall()]
            # The workflow step queue's table exists once its store was first used.
            steps = conn.execute("SELECT 1 FROM sqlite_master WHERE name='wf_steps'").fetchone()
            release_owners(conn, dead, LEASED if steps else (JOBS,))
            return dead
        return self._db.write(run)

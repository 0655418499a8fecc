"""The instance table on PostgreSQL: who shares the database, and who died.

A registered instance holds its liveness lock on the storage's own connection
(:class:`~omnicore.storage.postgres.liveness.Liveness`); :meth:`PgInstances.reap` treats a row
whose lock is gone as dead and releases its leases at once.
"""

from __future__ import annotations

from typing import Any

from omnicore.storage.instance_rows import Instance, InstanceRows
from omnicore.storage.postgres.database import Database
from omnicore.storage.postgres.schema import LIVENESS_KEY
from omnicore.storage.stores.leases import release_owners

__all__ = ["PgInstances"]

_COLS = ("runtime_id, hostname, pid, version, started_at, heartbeat_at, console_url, "
         "jobs_held, draining")


def _instance(row: Any) -> Instance:
    return Instance(row[0], row[1], int(row[2]), row[3], float(row[4]), float(row[5]), row[6],
                    int(row[7]), bool(row[8]))


class PgInstances(InstanceRows):
    def __init__(self, db: Database) -> None:
        self._s = db

    def register(self, instance: Instance) -> None:
        slot = self._s.write(lambda conn: int(conn.execute(
            f"INSERT INTO instances(slot, {_COLS}) VALUES (nextval('instance_slots'), "
            "?,?,?,?,?,?,?,?,?) ON CONFLICT (runtime_id) DO UPDATE SET "
            "heartbeat_at=excluded.heartbeat_at, console_url=excluded.console_url "
            "RETURNING slot",
            (instance.runtime_id, instance.hostname, instance.pid, instance.version,
             instance.started_at, instance.heartbeat_at, instance.console_url,
             instance.jobs_held, instance.draining)).fetchone()[0]))
        self._s.liveness.hold(slot)

    def heartbeat(self, runtime_id: str, now: float, jobs_held: int,
                  console_url: str | None = None) -> Instance | None:
        rows = self._s.read(
            f"UPDATE instances SET heartbeat_at=?, jobs_held=?, "
            f"console_url=COALESCE(?, console_url) WHERE runtime_id=? RETURNING {_COLS}",
            (now, jobs_held, console_url, runtime_id))
        return _instance(rows[0]) if rows else None

    def all(self) -> list[Instance]:
        return [_instance(r) for r in self._s.read(
            f"SELECT {_COLS} FROM instances ORDER BY started_at, runtime_id")]

    def set_draining(self, runtime_id: str, draining: bool) -> bool:
        return bool(self._s.read("UPDATE instances SET draining=? WHERE runtime_id=? "
                                  "RETURNING 1", (draining, runtime_id)))

    def remove(self, runtime_id: str) -> None:
        self._s.write(lambda conn: conn.execute("DELETE FROM instances WHERE runtime_id=?",
                                                 (runtime_id,)))
        self._s.liveness.release()

    def reap(self, me: str, now: float, dead_after_s: float) -> list[str]:
        # A live instance whose connection broke (the server restarted) takes its lock again
        # within a second: the grace keeps it from being declared dead in that window.
        grace = min(1.0, dead_after_s / 3)

        def run(conn: Any) -> list[str]:
            dead = [r[0] for r in conn.execute(
                "DELETE FROM instances i WHERE i.runtime_id <> ? AND (i.heartbeat_at < ? "
                "OR (i.heartbeat_at < ? AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE "
                "l.locktype = 'advisory' AND l.classid = ?::oid AND l.objid = i.slot::oid "
                "AND l.objsubid = 2 AND l.granted))) RETURNING i.runtime_id",
                (me, now - dead_after_s, now - grace, LIVENESS_KEY)).fetchall()]
            if dead:
                release_owners(conn, dead)
                conn.wake("")
            return dead
        return self._s.write(run)

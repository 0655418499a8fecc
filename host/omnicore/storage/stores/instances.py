"""The instance table: who shares the database, and who died.

A host registers its row and refreshes its heartbeat; the reap deletes the rows of dead hosts
and makes every job and workflow step they leased due at once. Dead is a heartbeat older
than the limit, or the faster proof the backend's
:class:`~omnicore.storage.backend.Presence` has (PostgreSQL: the host's liveness lock is
gone). A SQLite database is held by one host at a time (the data dir's lock), so there the
heartbeat is the only proof and the host that takes the lock over reaps its predecessor at
start; the table is still kept, so ``/api/v1/instances`` and the console speak of one cluster
whatever the backend.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from omnicore.storage.backend import Backend, Tx, marks
from omnicore.storage.instance_rows import KEEP_LOST_S, Instance, InstanceRows, LostInstance
from omnicore.storage.stores.leases import JOBS, LEASED, STEPS, release_owners

__all__ = ["Instances"]

_COLS = ("runtime_id, hostname, pid, version, started_at, heartbeat_at, console_url, "
         "jobs_held, draining")
#: What a read gives: the columns a registration writes, and the host's report of plugins.
_READ = f"{_COLS}, plugins"
_LOST = ("runtime_id, hostname, pid, version, started_at, heartbeat_at, lost_at, reaped_by, "
         "jobs, steps")


def _instance(r: Sequence[Any]) -> Instance:
    return Instance(str(r[0]), str(r[1]), int(r[2]), str(r[3]), float(r[4]), float(r[5]), r[6],
                    int(r[7]), bool(r[8]), _plugins(r[9]))


def _stamped(at: float, asked: float) -> float:
    """``at``, moved on by the time since ``asked`` (monotonic): a heartbeat says when it was
    written, not when it was asked for. A write that waited for a pooled connection or its
    liveness lock (a loaded host starting) landed already seconds stale, and another host
    reaped the row before the writer's next beat."""
    return at + (time.monotonic() - asked)


def _plugins(text: str) -> dict[str, Any]:
    # A report is the host's own JSON; a row damaged by hand must not break the listing.
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


class Instances(InstanceRows):
    """:class:`InstanceRows` on a backend (the ``instances`` component)."""

    def __init__(self, db: Backend) -> None:
        self._db = db
        self._presence = db.presence
        db.prepare("instances")

    def register(self, instance: Instance) -> None:
        asked = time.monotonic()
        p = self._presence
        proof = p.claim(self._db, instance.runtime_id)  # held before the row exists
        names = "".join(f", {c}" for c in p.columns)
        marks = ",?" * len(proof)
        again = "".join(f", {c}=excluded.{c}" for c in p.columns)

        def run(tx: Tx) -> None:
            tx.execute(
                f"INSERT INTO instances ({_COLS}{names}) VALUES (?,?,?,?,?,?,?,?,?{marks}) "
                "ON CONFLICT (runtime_id) DO UPDATE SET heartbeat_at=excluded.heartbeat_at, "
                f"console_url=excluded.console_url{again}",
                (instance.runtime_id, instance.hostname, instance.pid, instance.version,
                 instance.started_at, _stamped(instance.heartbeat_at, asked),
                 instance.console_url, instance.jobs_held, instance.draining, *proof))
            # Declared dead once and back (a long pause): no longer lost.
            tx.execute("DELETE FROM instances_lost WHERE runtime_id=?", (instance.runtime_id,))
        self._db.write(run)

    def heartbeat(self, runtime_id: str, now: float, jobs_held: int,
                  console_url: str | None = None) -> Instance | None:
        asked = time.monotonic()

        def run(tx: Tx) -> list[Any]:
            return list(tx.execute(
                f"UPDATE instances SET heartbeat_at=?, jobs_held=?, console_url=COALESCE(?, "
                f"console_url) WHERE runtime_id=? RETURNING {_READ}",
                (_stamped(now, asked), jobs_held, console_url, runtime_id)).fetchall())
        rows = self._db.write(run)
        return _instance(rows[0]) if rows else None

    def report(self, runtime_id: str, plugins: Mapping[str, Any]) -> bool:
        text = json.dumps(plugins, separators=(",", ":"), sort_keys=True)
        return bool(self._db.write_one("UPDATE instances SET plugins=? WHERE runtime_id=?",
                                       (text, runtime_id))[0])

    def all(self) -> list[Instance]:
        return [_instance(r) for r in self._db.read(
            f"SELECT {_READ} FROM instances ORDER BY started_at, runtime_id")]

    def set_draining(self, runtime_id: str, draining: bool) -> bool:
        return bool(self._db.write_one("UPDATE instances SET draining=? WHERE runtime_id=?",
                                       (draining, runtime_id))[0])

    def remove(self, runtime_id: str) -> None:
        self._db.write_one("DELETE FROM instances WHERE runtime_id=?", (runtime_id,))
        self._presence.removed()

    def reap(self, me: str, now: float, dead_after_s: float) -> list[str]:
        proof, args = self._presence.dead(now, dead_after_s)
        # The workflow step queue's table exists once its store was first used (SQLite).
        leased = LEASED if self._db.has_table(STEPS.table) else (JOBS,)

        def run(tx: Tx) -> list[str]:
            rows = tx.execute(
                f"DELETE FROM instances WHERE runtime_id <> ? AND (heartbeat_at < ?{proof}) "
                "RETURNING runtime_id, hostname, pid, version, started_at, heartbeat_at",
                (me, now - dead_after_s, *args)).fetchall()
            dead = [str(r[0]) for r in rows]
            if dead:
                held = _held(tx, dead, leased)
                tx.executemany(
                    f"INSERT INTO instances_lost ({_LOST}) VALUES (?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT (runtime_id) DO UPDATE SET lost_at=excluded.lost_at, "
                    "reaped_by=excluded.reaped_by, jobs=excluded.jobs, steps=excluded.steps",
                    [(*r, now, me, json.dumps(held[str(r[0])][0]),
                      json.dumps(held[str(r[0])][1])) for r in rows])
                release_owners(tx, dead, leased)
                tx.wake("")
            return dead
        dead = self._db.write(run)
        if dead:
            self._db.write_one("DELETE FROM instances_lost WHERE lost_at < ?",
                               (now - KEEP_LOST_S,))
        return dead

    def lost(self, now: float) -> list[LostInstance]:
        return [LostInstance(str(r[0]), str(r[1]), int(r[2]), str(r[3]), float(r[4]),
                             float(r[5]), float(r[6]), str(r[7]), tuple(json.loads(r[8])),
                             tuple(json.loads(r[9])))
                for r in self._db.read(f"SELECT {_LOST} FROM instances_lost WHERE lost_at >= ? "
                                       "ORDER BY lost_at DESC, runtime_id",
                                       (now - KEEP_LOST_S,))]


def _held(tx: Tx, owners: list[str], leased: Sequence[Any]
          ) -> dict[str, tuple[list[int], list[str]]]:
    """The jobs and workflow steps each of ``owners`` leased, before their leases run out."""
    held: dict[str, tuple[list[int], list[str]]] = {o: ([], []) for o in owners}
    where = f"state='running' AND owner IN ({marks(len(owners))})"
    for job, owner in tx.execute(f"SELECT id, owner FROM jobs WHERE {where} ORDER BY id",
                                 tuple(owners)).fetchall():
        held[str(owner)][0].append(int(job))
    if STEPS in leased:
        for run, step, idx, owner in tx.execute(
                f"SELECT run_id, step, idx, owner FROM wf_steps WHERE {where} "
                "ORDER BY run_id, step, idx", tuple(owners)).fetchall():
            held[str(owner)][1].append(f"{run}/{step}/{idx}")
    return held

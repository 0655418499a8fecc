"""The event log, on any backend: recent plugin events, trimmed now and then (to
``capabilities.events.retain`` events) and purged by age (``retention.events``).

An append is announced to the other hosts sharing the database at commit, so their live
subscribers see it too (:meth:`~omnicore.storage.backend.Tx.announce`). A plugin's publish is
logged with its durable deliveries (:meth:`Events.append_with_jobs`): the event and its jobs
commit together, under keys in ``job_keys`` (the publish's origin, each delivery's key).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from omnicore.storage.backend import Backend, Tx, bounded_delete, marks
from omnicore.storage.base import Appended, EventLog, EventRecord, KeyedJob
from omnicore.storage.stores.jobs import insert_job

__all__ = ["Events"]

_COLS = "id, topic, plugin, payload, created_at, hops"


def _event(r: Sequence[Any]) -> EventRecord:
    return EventRecord(int(r[0]), r[1], r[2], bytes(r[3]), float(r[4]), int(r[5]))


class Events(EventLog):
    def __init__(self, db: Backend) -> None:
        self._db = db

    def append(self, topic: str, plugin: str | None, payload: bytes, retain: int,
               hops: int = 1) -> int:
        def run(tx: Tx) -> int:
            new = int(tx.execute("INSERT INTO events(topic, plugin, payload, created_at, hops) "
                                 "VALUES (?,?,?,?,?) RETURNING id",
                                 (topic, plugin, payload, time.time(), hops)).fetchone()[0])
            if new % 64 == 0:  # trim now and then, not on every append
                tx.execute("DELETE FROM events WHERE id<=?", (new - retain,))
            tx.announce("events", str(new))
            return new
        return self._db.write(run)

    def append_with_jobs(self, topic: str, plugin: str | None, payload: bytes, retain: int,
                         hops: int, jobs: Sequence[KeyedJob], *, origin: str,
                         replay: bool = False, keep_s: float = 86400.0) -> Appended:
        def run(tx: Tx) -> Appended:
            now = time.time()
            if replay:
                row = tx.execute("SELECT job_id FROM job_keys WHERE key=?", (origin,)).fetchone()
                if row is not None:
                    return Appended(int(row[0]), (), False)
            new = int(tx.execute("INSERT INTO events(topic, plugin, payload, created_at, hops) "
                                 "VALUES (?,?,?,?,?) RETURNING id",
                                 (topic, plugin, payload, now, hops)).fetchone()[0])
            # The origin's key holds the event's id: a replay of this publish finds it
            # (written with deliveries, where it costs one more row, and for every replay: a
            # publish with neither whose commit's answer was lost may be logged twice). A
            # fresh event id makes fresh delivery keys: no conflict to look for.
            keys = [(origin, new, "event")] if jobs or replay else []
            ids = []
            for job in jobs:
                ids.append(insert_job(tx, job.spec, now))
                keys.append((job.key.replace("{event}", str(new)), ids[-1], job.digest))
            if keys:
                tx.executemany("INSERT INTO job_keys(key, job_id, digest, created_at) "
                               "VALUES (?,?,?,?)", [(*k, now) for k in keys])
            if new % 64 == 0:  # trim now and then, not on every append
                tx.execute("DELETE FROM events WHERE id<=?", (new - retain,))
                tx.execute("DELETE FROM job_keys WHERE created_at < ?", (now - keep_s,))
            tx.announce("events", str(new))
            return Appended(new, tuple(ids))
        return self._db.write(run)

    def recent(self, limit: int = 100, topic_prefix: str = "") -> list[EventRecord]:
        rows = self._db.read(f"SELECT {_COLS} FROM events WHERE substr(topic, 1, ?)=? "
                             "ORDER BY id DESC LIMIT ?", (len(topic_prefix), topic_prefix, limit))
        return [_event(r) for r in rows]

    def get_many(self, event_ids: Sequence[int]) -> list[EventRecord]:
        found: list[EventRecord] = []
        event_ids = sorted(set(event_ids))
        for at in range(0, len(event_ids), 1000):
            chunk = list(event_ids[at:at + 1000])
            found += [_event(r) for r in self._db.read(
                f"SELECT {_COLS} FROM events WHERE id IN ({marks(len(chunk))}) ORDER BY id",
                chunk)]
        return found

    def purge(self, before: float, *, limit: int | None = None) -> int:
        return self._db.write_one(*bounded_delete("events", "id", "created_at < ?", [before],
                                                  limit))[0]

    def get(self, event_id: int) -> EventRecord | None:
        return self._db.read_row(_event, f"SELECT {_COLS} FROM events WHERE id=?", (event_id,))

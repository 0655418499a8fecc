"""Vector rows: collections, rows stamped with the generation that wrote them, and tombstones
of deleted labels, so every host's HNSW cache catches up from the rows.

A collection's generation is raised by an ``UPDATE ... RETURNING`` of its row (which holds
the row until commit), so within a collection generations commit in order, as
storage/vector_rows.py requires. A plugin's quota is checked under the ``vectors:<plugin>``
lock, so two hosts writing at once cannot both pass it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omnicore.storage.backend import Backend, Tx
from omnicore.storage.errors import QuotaExceeded
from omnicore.storage.vector_rows import BadVector, CollectionRow, Filter, VectorQuota, VectorRows

__all__ = ["TOMBSTONE_GENERATIONS", "Vectors"]

#: Deletes are remembered for this many generations of their collection; a cache further
#: behind rebuilds from the rows.
TOMBSTONE_GENERATIONS = 100_000
_COLL_COLS = "id, plugin, name, dim, metric, count, bytes, created_at, generation"


def _coll(row: Sequence[Any]) -> CollectionRow:
    return CollectionRow(id=int(row[0]), plugin=str(row[1]), name=str(row[2]), dim=int(row[3]),
                         metric=str(row[4]), count=int(row[5]), bytes=int(row[6]),
                         created_at=float(row[7]), generation=int(row[8]))


class Vectors(VectorRows):
    """:class:`VectorRows` on a backend (the ``vectors`` component)."""

    def __init__(self, db: Backend) -> None:
        self._db = db
        db.prepare("vectors")

    def plugins(self) -> list[str]:
        return [r[0] for r in self._db.read("SELECT DISTINCT plugin FROM vector_collections "
                                            "ORDER BY plugin")]

    def collection(self, plugin: str, name: str) -> CollectionRow | None:
        return self._db.read_row(_coll, f"SELECT {_COLL_COLS} FROM vector_collections "
                                 "WHERE plugin=? AND name=?", (plugin, name))

    def collection_by_id(self, coll_id: int) -> CollectionRow | None:
        return self._db.read_row(_coll, f"SELECT {_COLL_COLS} FROM vector_collections WHERE id=?",
                                 (coll_id,))

    def collections(self, plugin: str) -> list[CollectionRow]:
        return [_coll(r) for r in self._db.read(
            f"SELECT {_COLL_COLS} FROM vector_collections WHERE plugin=? ORDER BY name",
            (plugin,))]

    def create(self, plugin: str, name: str, dim: int, metric: str, max_collections: int,
               now: float) -> None:
        def run(tx: Tx) -> None:
            tx.lock(f"vectors:{plugin}")
            row = tx.execute("SELECT dim FROM vector_collections WHERE plugin=? AND name=?",
                             (plugin, name)).fetchone()
            if row is not None:
                if row[0] != dim:
                    raise BadVector(f"collection {name!r} exists with {row[0]} dimensions")
                return
            n = tx.execute("SELECT COUNT(*) FROM vector_collections WHERE plugin=?",
                           (plugin,)).fetchone()[0]
            if n >= max_collections:
                raise QuotaExceeded(f"plugin {plugin!r} has {n} collections "
                                    f"(max_collections {max_collections})")
            tx.execute("INSERT INTO vector_collections (plugin, name, dim, metric, created_at)"
                       " VALUES (?,?,?,?,?)", (plugin, name, dim, metric, now))
        self._db.write(run)

    def upsert(self, coll_id: int, plugin: str, vid: str, vector: bytes, meta: str | None,
               size: int, quota: VectorQuota) -> tuple[int, int]:
        def run(tx: Tx) -> tuple[int, int]:
            tx.lock(f"vectors:{plugin}")
            old = tx.execute("SELECT label, size FROM vectors WHERE coll=? AND id=?",
                             (coll_id, vid)).fetchone()
            n, used = tx.execute("SELECT COALESCE(SUM(count), 0), COALESCE(SUM(bytes), 0) "
                                 "FROM vector_collections WHERE plugin=?", (plugin,)).fetchone()
            delta = quota.admit(plugin, n, used, old[1] if old else None, size)
            new = 0 if old else 1
            label, gen = tx.execute(
                "UPDATE vector_collections SET next_label = next_label + ?, "
                "generation = generation + 1, count = count + ?, bytes = bytes + ? "
                "WHERE id=? RETURNING next_label - 1, generation",
                (new, new, delta, coll_id)).fetchone()
            if old is None:
                tx.execute("INSERT INTO vectors (coll, id, label, vec, meta, size, gen) VALUES "
                           "(?,?,?,?,?,?,?)", (coll_id, vid, label, vector, meta, size, gen))
            else:
                label = old[0]
                tx.execute("UPDATE vectors SET vec=?, meta=?, size=?, gen=? WHERE coll=? AND "
                           "id=?", (vector, meta, size, gen, coll_id, vid))
            return int(label), int(gen)
        return self._db.write(run)

    def delete(self, coll_id: int, vid: str) -> tuple[int, int] | None:
        def run(tx: Tx) -> tuple[int, int] | None:
            row = tx.execute("DELETE FROM vectors WHERE coll=? AND id=? RETURNING label, size",
                             (coll_id, vid)).fetchone()
            if row is None:
                return None
            gen = tx.execute("UPDATE vector_collections SET generation = generation + 1, "
                             "count = count - 1, bytes = bytes - ? WHERE id=? RETURNING "
                             "generation", (row[1], coll_id)).fetchone()[0]
            tx.execute("INSERT INTO vector_deletes (coll, label, gen) VALUES (?,?,?)",
                       (coll_id, row[0], gen))
            if gen % 1024 == 0:  # forget old deletes now and then, not on every delete
                floor = gen - TOMBSTONE_GENERATIONS
                if floor > 0:
                    tx.execute("DELETE FROM vector_deletes WHERE coll=? AND gen <= ?",
                               (coll_id, floor))
                    tx.execute(f"UPDATE vector_collections SET deletes_from = "
                               f"{self._db.dialect.greatest}(deletes_from, ?) WHERE id=?",
                               (floor, coll_id))
            return int(row[0]), int(gen)
        return self._db.write(run)

    def drop(self, coll_id: int) -> bool:
        def run(tx: Tx) -> bool:
            tx.execute("DELETE FROM vectors WHERE coll=?", (coll_id,))
            tx.execute("DELETE FROM vector_deletes WHERE coll=?", (coll_id,))
            return tx.execute("DELETE FROM vector_collections WHERE id=?",
                              (coll_id,)).rowcount == 1
        return self._db.write(run)

    def entries(self, coll_id: int) -> list[tuple[int, str, str | None]]:
        return [(int(r[0]), str(r[1]), r[2]) for r in self._db.read(
            "SELECT label, id, meta FROM vectors WHERE coll=?", (coll_id,))]

    def changed(self, coll_id: int, since: int, after_label: int = -1,
                limit: int = 5000) -> list[tuple[int, bytes]]:
        return [(int(r[0]), bytes(r[1])) for r in self._db.read(
            "SELECT label, vec FROM vectors WHERE coll=? AND gen > ? AND label > ? "
            "ORDER BY label LIMIT ?", (coll_id, since, after_label, limit))]

    def deleted(self, coll_id: int, since: int) -> list[int] | None:
        floor = self._db.read("SELECT deletes_from FROM vector_collections WHERE id=?",
                              (coll_id,))
        if not floor or since < floor[0][0]:
            return None
        return [int(r[0]) for r in self._db.read(
            "SELECT label FROM vector_deletes WHERE coll=? AND gen > ? ORDER BY gen",
            (coll_id, since))]

    def matching(self, coll_id: int, flt: Filter, limit: int | None) -> list[int]:
        where, args = self._db.dialect.json_filter("meta", flt)
        sql = f"SELECT label FROM vectors WHERE coll=?{where}"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [int(r[0]) for r in self._db.read(sql, (coll_id, *args))]

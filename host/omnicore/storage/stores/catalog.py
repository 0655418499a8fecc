"""The plugin catalog, on any backend (the ``catalog`` component).

Four tables: ``plugin_modules`` (a digest's size and chunk count), ``plugin_chunks`` (its
bytes, one row per chunk), ``plugin_versions`` (every publish) and ``plugin_catalog`` (each
name's version in force, whether it is pinned there, and the number of its last change).
Every change takes the ``catalog`` lock first, so two publishes of one name, a publish and a
removal, or a publish and the pruning of a module it reuses never interleave, and change
numbers become visible in the order they were given. A module's row is written after its
chunks in the same transaction: a module a reader can see is whole. The change is announced
on ``catalog`` at commit, for the other hosts sharing the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from omnicore.storage.backend import Backend, Tx, marks
from omnicore.storage.catalog_rows import (
    CHUNK_BYTES,
    CatalogEntry,
    CatalogRows,
    Pinned,
    PluginVersion,
)

__all__ = ["Catalog"]

_VERSION = ("v.id, v.name, v.number, v.digest, v.size, v.sidecar, v.published_by, "
            "v.published_at, v.source, v.signatures")
_ENTRY = (f"SELECT c.name, c.seq, c.updated_at, c.updated_by, c.pinned_at, c.pinned_by, "
          f"{_VERSION} FROM plugin_catalog c LEFT JOIN plugin_versions v ON v.id = c.version")


def _json(text: str | None, empty: str) -> Any:
    """A JSON column's value; None when it does not parse. A row written straight into the
    table is input: the catalog's check (``check_version``) refuses a version whose sidecar
    or signatures are not of their shape, by name, and the host follows the rest, where a
    raise here stopped every host's start."""
    try:
        return json.loads(text or empty)
    except ValueError:
        return None


def _version(r: Sequence[Any]) -> PluginVersion:
    return PluginVersion(int(r[0]), str(r[1]), int(r[2]), str(r[3]), int(r[4]),
                         _json(r[5], "{}"), r[6], float(r[7]), r[8], _json(r[9], "[]"))


def _entry(r: Sequence[Any]) -> CatalogEntry:
    return CatalogEntry(str(r[0]), None if r[6] is None else _version(r[6:]), int(r[1]),
                        float(r[2]), r[3], None if r[4] is None else float(r[4]), r[5])


class Catalog(CatalogRows):
    """:class:`CatalogRows` on a backend."""

    def __init__(self, db: Backend) -> None:
        self._db = db
        db.prepare("catalog")

    # ---- changing --------------------------------------------------------------------

    def publish(self, name: str, digest: str, size: int, chunks: Iterable[bytes],
                sidecar: dict[str, Any], *, by: str | None, at: float,
                keep: int, source: str | None = None,
                signatures: list[dict[str, Any]] | None = None) -> tuple[PluginVersion, bool]:
        text = json.dumps(sidecar, separators=(",", ":"), sort_keys=True)
        sigs = json.dumps(list(signatures or ()), separators=(",", ":"), sort_keys=True)

        def run(tx: Tx) -> tuple[PluginVersion, bool]:
            tx.lock("catalog")
            current = tx.execute(f"SELECT {_VERSION}, c.pinned_at FROM plugin_catalog c JOIN "
                                 "plugin_versions v ON v.id = c.version WHERE c.name=?",
                                 (name,)).fetchone()
            pinned = current is not None and current[10] is not None
            if pinned:
                # A pinned name keeps its version in force: the same module again is the
                # same when it is the newest one kept (published already, waiting).
                current = tx.execute(f"SELECT {_VERSION} FROM plugin_versions v WHERE "
                                     "v.name=? ORDER BY v.id DESC LIMIT 1", (name,)).fetchone()
            if current is not None and current[3] == digest and current[5] == text and \
                    (current[9] or "[]") == sigs:
                return _version(current), False  # published again as it is: nothing to do
            if tx.execute("SELECT 1 FROM plugin_modules WHERE digest=?",
                          (digest,)).fetchone() is None:
                _store_module(tx, digest, size, chunks, at)
            number = int(tx.execute("SELECT coalesce(max(number), 0) + 1 FROM plugin_versions "
                                    "WHERE name=?", (name,)).fetchone()[0])
            vid = int(tx.execute(
                "INSERT INTO plugin_versions (name, number, digest, size, sidecar, "
                "published_by, published_at, source, signatures) VALUES (?,?,?,?,?,?,?,?,?) "
                "RETURNING id",
                (name, number, digest, size, text, by, at, source, sigs)).fetchone()[0])
            if pinned:
                held = int(tx.execute("SELECT version FROM plugin_catalog WHERE name=?",
                                      (name,)).fetchone()[0])
                _prune(tx, name, (held, vid), keep)
            else:
                _point(tx, name, vid, by, at)
                _prune(tx, name, (vid,), keep)
            return PluginVersion(vid, name, number, digest, size, json.loads(text), by,
                                 at, source, json.loads(sigs)), True
        return self._db.write(run)

    def point(self, name: str, version_id: int, *, by: str | None,
              at: float) -> CatalogEntry:
        def run(tx: Tx) -> CatalogEntry:
            tx.lock("catalog")
            _refuse_pinned(tx, name)
            if tx.execute("SELECT 1 FROM plugin_versions WHERE id=? AND name=?",
                          (version_id, name)).fetchone() is None:
                raise KeyError(f"plugin '{name}' has no version {version_id}")
            _point(tx, name, version_id, by, at)
            return _entry(tx.execute(f"{_ENTRY} WHERE c.name=?", (name,)).fetchone())
        return self._db.write(run)

    def pin(self, name: str, version_id: int, *, by: str | None, at: float) -> CatalogEntry:
        def run(tx: Tx) -> CatalogEntry:
            tx.lock("catalog")
            if tx.execute("SELECT 1 FROM plugin_versions WHERE id=? AND name=?",
                          (version_id, name)).fetchone() is None:
                raise KeyError(f"plugin '{name}' has no version {version_id}")
            _point(tx, name, version_id, by, at)
            tx.execute("UPDATE plugin_catalog SET pinned_at=?, pinned_by=? WHERE name=?",
                       (at, by, name))
            return _entry(tx.execute(f"{_ENTRY} WHERE c.name=?", (name,)).fetchone())
        return self._db.write(run)

    def unpin(self, name: str, *, by: str | None, at: float) -> CatalogEntry | None:
        def run(tx: Tx) -> CatalogEntry | None:
            tx.lock("catalog")
            held = tx.execute("SELECT pinned_at FROM plugin_catalog WHERE name=?",
                              (name,)).fetchone()
            if held is None or held[0] is None:
                return None
            newest = tx.execute("SELECT max(id) FROM plugin_versions WHERE name=?",
                                (name,)).fetchone()[0]
            tx.execute("UPDATE plugin_catalog SET pinned_at=NULL, pinned_by=NULL WHERE name=?",
                       (name,))
            _point(tx, name, None if newest is None else int(newest), by, at)
            return _entry(tx.execute(f"{_ENTRY} WHERE c.name=?", (name,)).fetchone())
        return self._db.write(run)

    def remove(self, name: str, *, by: str | None, at: float) -> CatalogEntry | None:
        def run(tx: Tx) -> CatalogEntry | None:
            tx.lock("catalog")
            _refuse_pinned(tx, name)
            held = tx.execute("SELECT version FROM plugin_catalog WHERE name=?",
                              (name,)).fetchone()
            if held is None or held[0] is None:
                return None
            # The row stays, with no version and a new number: the other hosts hear of it.
            _point(tx, name, None, by, at)
            return _entry(tx.execute(f"{_ENTRY} WHERE c.name=?", (name,)).fetchone())
        return self._db.write(run)

    # ---- reading ---------------------------------------------------------------------

    def entry(self, name: str) -> CatalogEntry | None:
        return self._db.read_row(_entry, f"{_ENTRY} WHERE c.name=?", (name,))

    def entries(self) -> list[CatalogEntry]:
        return [_entry(r) for r in self._db.read(
            f"{_ENTRY} WHERE c.version IS NOT NULL ORDER BY c.name")]

    def versions(self, name: str) -> list[PluginVersion]:
        return [_version(r) for r in self._db.read(
            f"SELECT {_VERSION} FROM plugin_versions v WHERE v.name=? ORDER BY v.id DESC",
            (name,))]

    def names_of(self, digest: str) -> list[str]:
        hexpart = digest.removeprefix("sha256:")
        if not digest.startswith("sha256:") or not hexpart \
                or hexpart.strip("0123456789abcdef"):
            return []  # a digest or a prefix of one only: nothing LIKE would read as a pattern
        return [str(r[0]) for r in self._db.read(
            "SELECT DISTINCT name FROM plugin_versions WHERE digest LIKE ? ORDER BY name",
            (digest + "%",))]

    def changes(self, since: int, limit: int = 1000) -> list[CatalogEntry]:
        return [_entry(r) for r in self._db.read(
            f"{_ENTRY} WHERE c.seq > ? ORDER BY c.seq LIMIT ?", (since, limit))]

    def last_seq(self) -> int:
        return int(self._db.read("SELECT coalesce(max(seq), 0) FROM plugin_catalog")[0][0])

    def module_size(self, digest: str) -> tuple[int, int] | None:
        rows = self._db.read("SELECT size, chunks FROM plugin_modules WHERE digest=?",
                             (digest,))
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def chunk(self, digest: str, index: int) -> bytes | None:
        rows = self._db.read("SELECT data FROM plugin_chunks WHERE digest=? AND idx=?",
                             (digest, index))
        return bytes(rows[0][0]) if rows else None


def _store_module(tx: Tx, digest: str, size: int, chunks: Iterable[bytes], at: float) -> None:
    """The module's chunks, then its row (a reader sees a module only once it is whole)."""
    total = count = 0
    for data in chunks:
        if not 0 < len(data) <= CHUNK_BYTES:
            raise ValueError(f"module {digest}: chunk {count} is {len(data)} bytes; chunks "
                             f"are 1 to {CHUNK_BYTES} bytes")
        tx.execute("INSERT INTO plugin_chunks (digest, idx, data) VALUES (?,?,?)",
                   (digest, count, data))
        total += len(data)
        count += 1
    if total != size:
        raise ValueError(f"module {digest}: {total} bytes arrived, {size} were announced")
    tx.execute("INSERT INTO plugin_modules (digest, size, chunks, created_at) VALUES (?,?,?,?)",
               (digest, size, count, at))


def _point(tx: Tx, name: str, version_id: int | None, by: str | None, at: float) -> None:
    seq = int(tx.execute("SELECT coalesce(max(seq), 0) + 1 FROM plugin_catalog").fetchone()[0])
    tx.execute("INSERT INTO plugin_catalog (name, version, seq, updated_at, updated_by) "
               "VALUES (?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET version=excluded.version, "
               "seq=excluded.seq, updated_at=excluded.updated_at, "
               "updated_by=excluded.updated_by", (name, version_id, seq, at, by))
    tx.announce("catalog", str(seq))


def _refuse_pinned(tx: Tx, name: str) -> None:
    row = tx.execute(f"{_ENTRY} WHERE c.name=?", (name,)).fetchone()
    if row is not None and row[4] is not None:
        raise Pinned(_entry(row))


def _prune(tx: Tx, name: str, held: tuple[int, ...], keep: int) -> None:
    """Drop ``name``'s versions beyond the newest ``keep`` (never those ``held``: the one in
    force, and the newest when a pin holds an older one), then every module no version names
    any more."""
    old = [int(r[0]) for r in tx.execute(
        f"SELECT id FROM plugin_versions WHERE name=? AND id NOT IN ({marks(len(held))}) "
        "ORDER BY id DESC", (name, *held)).fetchall()[max(keep - len(held), 0):]]
    if not old:
        return
    tx.execute(f"DELETE FROM plugin_versions WHERE id IN ({marks(len(old))})", old)
    orphans = [str(r[0]) for r in tx.execute(
        "SELECT digest FROM plugin_modules m WHERE NOT EXISTS (SELECT 1 FROM plugin_versions "
        "v WHERE v.digest = m.digest)").fetchall()]
    if orphans:
        tx.execute(f"DELETE FROM plugin_chunks WHERE digest IN ({marks(len(orphans))})", orphans)
        tx.execute(f"DELETE FROM plugin_modules WHERE digest IN ({marks(len(orphans))})",
                   orphans)

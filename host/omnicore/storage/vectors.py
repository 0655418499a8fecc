"""Vector collections: rows in SQLite, one hnswlib index per collection beside the database.

SQLite is the truth: every vector (``f32`` LE bytes), its id and its JSON metadata is a row of
``vectors``, stamped with the collection's generation (bumped by every change) that wrote it.
The index, and each collection's ids and metadata, are kept in memory, so a search reads no
SQL unless it filters by metadata. ``<data_dir>/vectors/<collection id>.hnsw`` is written by
:meth:`VectorStore.flush` with a sidecar ``.json`` recording the generation it holds, the
file's size and its sha256 — at app stop, and by a host thread every :data:`FLUSH_EVERY_S`
seconds or sooner after :data:`FLUSH_AFTER` changes. At first use a collection loads its file
when size and sha256 match (checked before hnswlib reads a byte, because hnswlib trusts the
sizes it reads) and replays only the rows written after that generation, and the deletes
since; a missing, truncated or corrupt file is rebuilt from all the rows instead. So a crash
loses no vector and costs at most the changes since the last flush.

Search is exact (numpy over the live vectors) below :data:`EXACT_BELOW` vectors and with a
metadata filter that few vectors match, and HNSW above. Deleted vectors are marked deleted in
the index and their slots reused. Cosine similarity is the default metric (``score`` = cosine
similarity); ``l2`` (score = minus the squared distance) and ``ip`` (inner product) can be
chosen when a collection is created from Python.

Errors (all :class:`~omnicore.storage.base.Refused`, nothing written)::

    Refused
    ├── UnknownCollection   -> NOT_FOUND
    ├── BadVector           wrong dimension, NaN/inf, bad name/id/metadata -> INVALID
    ├── QuotaExceeded       max_collections / max_vectors / max_bytes       -> QUOTA
    └── ValueTooLarge       metadata over max_metadata_bytes, dim over max_dim -> TOO_LARGE
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

from omnicore.storage.base import QuotaExceeded, Refused, ValueTooLarge
from omnicore.storage.components import ensure_schema, read, write
from omnicore.storage.sqlite import SQLiteStorage

__all__ = ["EXACT_BELOW", "METRICS", "BadVector", "Collection", "Hit", "PluginVectors",
           "UnknownCollection", "VectorQuota", "VectorStore"]

#: A host thread writes changed indexes this often, and sooner after FLUSH_AFTER changes.
FLUSH_EVERY_S = 60.0
FLUSH_AFTER = 10_000
#: Sidecars without this format predate per-row generations: stale ones are rebuilt.
_FORMAT = 2
_log = logging.getLogger("omnicore.vectors")

#: Below this many vectors a search is exact (and faster than a graph walk anyway).
EXACT_BELOW = 2_000
#: A filtered search is exact when at most this many vectors match the filter.
EXACT_FILTERED_BELOW = 20_000
METRICS = ("cosine", "l2", "ip")
MAX_K = 1_000
_SPACE = {"cosine": "cosine", "l2": "l2", "ip": "ip"}
_INF = math.inf
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_MAX_ID_BYTES = 512


class UnknownCollection(Refused):
    """No such collection for this plugin."""


class BadVector(Refused):
    """A malformed vector, id, name, filter or metadata."""


@dataclass(frozen=True, slots=True)
class VectorQuota:
    """A plugin's vector limits (abi.md §4.5 grant options). ``max_bytes`` counts what a
    vector costs the host: 4 bytes per dimension plus its id and metadata."""

    max_collections: int = 16
    max_vectors: int = 100_000
    max_dim: int = 4_096
    max_bytes: int = 256 * 1024 * 1024
    max_metadata_bytes: int = 16 * 1024


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    score: float
    metadata: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": self.score, "metadata": self.metadata}


@dataclass(frozen=True, slots=True)
class Collection:
    plugin: str
    name: str
    dim: int
    metric: str
    count: int
    bytes: int
    created_at: float
    index: str          # "exact" | "hnsw" | "not loaded"

    def as_dict(self) -> dict[str, Any]:
        return {"plugin": self.plugin, "name": self.name, "dim": self.dim,
                "metric": self.metric, "count": self.count, "bytes": self.bytes,
                "created_at": self.created_at, "index": self.index}


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE vector_collections (id INTEGER PRIMARY KEY, plugin TEXT NOT NULL,"
                 " name TEXT NOT NULL, dim INTEGER NOT NULL, metric TEXT NOT NULL,"
                 " next_label INTEGER NOT NULL DEFAULT 0, generation INTEGER NOT NULL DEFAULT 0,"
                 " count INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0,"
                 " created_at REAL NOT NULL, UNIQUE (plugin, name))")
    conn.execute("CREATE TABLE vectors (coll INTEGER NOT NULL, id TEXT NOT NULL,"
                 " label INTEGER NOT NULL, vec BLOB NOT NULL, meta TEXT, size INTEGER NOT NULL,"
                 " PRIMARY KEY (coll, id))")
    conn.execute("CREATE UNIQUE INDEX vectors_label ON vectors (coll, label)")


def _v2(conn: sqlite3.Connection) -> None:
    # The generation that last wrote each row: an index file of generation G replays the
    # rows above G instead of rebuilding everything.
    conn.execute("ALTER TABLE vectors ADD COLUMN gen INTEGER NOT NULL DEFAULT 0")
    conn.execute("CREATE INDEX vectors_gen ON vectors (coll, gen)")


def check_vector(values: Sequence[float] | np.ndarray, dim: int | None = None) -> np.ndarray:
    """``values`` as a float32 row; BadVector for NaN/inf, an empty or wrong-size vector."""
    arr = np.asarray(values, dtype=np.float32).reshape(-1)
    if arr.size == 0:
        raise BadVector("a vector needs at least one dimension")
    if dim is not None and arr.size != dim:
        raise BadVector(f"vector has {arr.size} dimensions, the collection has {dim}")
    if not np.isfinite(arr).all():
        raise BadVector("vector contains NaN or infinity")
    return arr


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise BadVector(f"bad collection name {name[:140]!r}: 1-128 of A-Z a-z 0-9 _ . : -")


def _check_id(vid: str) -> None:
    if not vid or len(vid.encode()) > _MAX_ID_BYTES:
        raise BadVector(f"a vector id is 1-{_MAX_ID_BYTES} bytes of UTF-8")


def _filter_sql(flt: Mapping[str, Any] | None) -> tuple[str, list[Any]]:
    if not flt:
        return "", []
    if not isinstance(flt, Mapping) or len(flt) > 16:
        raise BadVector("filter must be a JSON object of at most 16 keys")
    clauses, args = [], []
    for key, value in flt.items():
        if not isinstance(key, str) or not key or len(key) > 128 or '"' in key:
            raise BadVector(f"bad filter key {str(key)[:140]!r}")
        if isinstance(value, bool):
            value = 1 if value else 0
        elif not isinstance(value, str | int | float) or (
                isinstance(value, float) and not math.isfinite(value)):
            raise BadVector(f"filter value of {key!r} must be a string, number or boolean")
        clauses.append(f"json_extract(meta, '$.\"{key}\"') = ?")
        args.append(value)
    return " AND " + " AND ".join(clauses), args


class _Index:
    """One collection in memory: its hnswlib index, exact-search cache, ids and metadata."""

    def __init__(self, coll_id: int, dim: int, metric: str, capacity: int) -> None:
        self.coll_id, self.dim, self.metric = coll_id, dim, metric
        self.hnsw = hnswlib.Index(space=_SPACE[metric], dim=dim)
        self.hnsw.init_index(max_elements=max(capacity, 64), ef_construction=200, M=16,
                             allow_replace_deleted=True)
        self.ef = 64
        self.hnsw.set_ef(self.ef)
        #: label -> (the id as a JSON string, the metadata as JSON text): what a hit shows,
        #: rendered once at write time so a search only joins strings.
        self.entries: dict[int, tuple[str, str]] = {}
        self.lock = threading.RLock()
        self.dirty = False
        self.changes = 0            # since the index was last written
        #: How it was opened: rows replayed on top of its file, or None (rebuilt, or new).
        self.replayed: int | None = None
        self._exact: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def live(self) -> int:
        return len(self.entries)

    def set_entry(self, label: int, vid: str, meta: str | None) -> None:
        self.entries[label] = (json.dumps(vid, ensure_ascii=False), meta or "{}")

    def add(self, labels: Sequence[int], vectors: np.ndarray, update: bool = False) -> None:
        """Add new labels (into deleted slots first), or ``update`` ones in the index."""
        need = self.hnsw.get_current_count() + len(labels)
        if need > self.hnsw.get_max_elements():
            self.hnsw.resize_index(max(need, 2 * self.hnsw.get_max_elements()))
        # hnswlib moves a label it already has into a deleted slot and leaves its old slot
        # live (a duplicate), so an update must not ask for a deleted slot.
        self.hnsw.add_items(vectors, np.asarray(labels, dtype=np.int64),
                            replace_deleted=not update)
        self._exact = None
        self.dirty = True

    def remove(self, label: int) -> None:
        if self.entries.pop(label, None) is not None:
            self.hnsw.mark_deleted(label)
            self._exact = None
            self.dirty = True

    def _matrix(self, labels: np.ndarray) -> np.ndarray:
        vecs = np.asarray(self.hnsw.get_items(labels), dtype=np.float32)
        if self.metric == "cosine":
            vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-30)
        return vecs

    def exact(self, query: np.ndarray, k: int, labels: np.ndarray | None = None
              ) -> list[tuple[int, float]]:
        if labels is None:
            if self._exact is None:
                all_labels = np.fromiter(self.entries, dtype=np.int64, count=len(self.entries))
                self._exact = (all_labels, self._matrix(all_labels) if all_labels.size
                               else np.zeros((0, self.dim), np.float32))
            labels, vecs = self._exact
        else:
            vecs = self._matrix(labels) if labels.size else np.zeros((0, self.dim), np.float32)
        if not labels.size:
            return []
        scores = self._scores(vecs, query)
        top = np.argpartition(-scores, min(k, len(scores)) - 1)[:k] if len(scores) > k \
            else np.arange(len(scores))
        top = top[np.argsort(-scores[top])]
        return list(zip(labels[top].tolist(), scores[top].tolist(), strict=True))

    def _scores(self, vecs: np.ndarray, query: np.ndarray) -> np.ndarray:
        if self.metric == "cosine":
            q = query / max(float(np.linalg.norm(query)), 1e-30)
            scores: np.ndarray = vecs @ q
        elif self.metric == "ip":
            scores = vecs @ query
        else:
            scores = -np.sum((vecs - query) ** 2, axis=1)
        return scores

    def approximate(self, query: np.ndarray, k: int, allowed: set[int] | None = None
                    ) -> list[tuple[int, float]]:
        k = min(k, self.live if allowed is None else len(allowed))
        flt = (lambda label: label in allowed) if allowed is not None else None
        ef = max(64, 2 * k)
        if ef != self.ef:
            self.hnsw.set_ef(ef)
            self.ef = ef
        while k > 0:
            try:
                labels, dists = self.hnsw.knn_query(query.reshape(1, -1), k=k, filter=flt)
                break
            except RuntimeError:  # fewer reachable than k (heavily deleted graph): ask less
                k //= 2
        else:
            return []
        if self.metric == "l2":
            return list(zip(labels[0].tolist(), (-dists[0]).tolist(), strict=True))
        return list(zip(labels[0].tolist(), (1.0 - dists[0]).tolist(), strict=True))


class VectorStore:
    """Every plugin's collections in one app: rows in SQLite, indexes in ``index_dir``."""

    def __init__(self, storage: SQLiteStorage, index_dir: str | Path) -> None:
        self._storage = storage
        self.index_dir = Path(index_dir)
        self._loaded: dict[int, _Index] = {}
        #: (plugin, name) -> (collection id, dim, metric), so a search needs no SQL for it.
        self._collections: dict[tuple[str, str], tuple[int, int, str]] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        ensure_schema(storage, "vectors", (_v1, _v2))

    def for_plugin(self, plugin: str) -> PluginVectors:
        """``plugin``'s collections (and only its)."""
        if not plugin:
            raise ValueError("for_plugin() needs a plugin name")
        return PluginVectors(self, plugin)

    def plugins(self) -> list[str]:
        return [r[0] for r in read(self._storage, "SELECT DISTINCT plugin FROM "
                                                  "vector_collections ORDER BY plugin")]

    def collection(self, plugin: str, name: str) -> tuple[int, int, str] | None:
        """``(id, dim, metric)`` of ``plugin``'s collection ``name``, or None."""
        found = self._collections.get((plugin, name))
        if found is None:
            rows = read(self._storage, "SELECT id, dim, metric FROM vector_collections WHERE "
                                       "plugin = ? AND name = ?", (plugin, name))
            if not rows:
                return None
            found = self._collections[(plugin, name)] = (rows[0][0], rows[0][1], rows[0][2])
        return found

    # -- indexes ----------------------------------------------------------------------

    def _paths(self, coll_id: int) -> tuple[Path, Path]:
        return self.index_dir / f"{coll_id}.hnsw", self.index_dir / f"{coll_id}.json"

    def index(self, coll_id: int, dim: int, metric: str) -> _Index:
        with self._lock:
            found = self._loaded.get(coll_id)
            if found is None:
                found = self._loaded[coll_id] = self._open(coll_id, dim, metric)
            return found

    def _open(self, coll_id: int, dim: int, metric: str) -> _Index:
        row = read(self._storage, "SELECT generation, count FROM vector_collections "
                                  "WHERE id = ?", (coll_id,))
        generation, count = row[0] if row else (0, 0)
        capacity = count + 64
        path, meta_path = self._paths(coll_id)
        saved = None
        try:
            meta = json.loads(meta_path.read_text())
            if (meta.get("format") == _FORMAT and 0 <= meta["generation"] <= generation
                    and path.stat().st_size == meta["size"] and _sha256(path) == meta["sha256"]):
                saved = int(meta["generation"])
            elif meta.get("generation") == generation and path.stat().st_size == meta["size"] \
                    and _sha256(path) == meta["sha256"]:
                saved = generation  # an older sidecar of an index that is up to date
        except (OSError, ValueError, KeyError, TypeError):
            saved = None
        idx = _Index(coll_id, dim, metric, capacity)
        if saved is not None:
            try:
                idx.hnsw.load_index(str(path), max_elements=capacity, allow_replace_deleted=True)
                idx.hnsw.set_ef(idx.ef)
            except RuntimeError:
                idx, saved = _Index(coll_id, dim, metric, capacity), None
        self._load_entries(idx)
        if saved is None:
            self._replay(idx, -1, set())
            return idx
        in_file = set(idx.hnsw.get_ids_list())
        # What was deleted after the file was written is still live in it.
        for label in in_file - idx.entries.keys():
            try:
                idx.hnsw.mark_deleted(label)
            except RuntimeError:  # already marked in the file
                continue
            idx.dirty = True
        idx.replayed = self._replay(idx, saved, in_file)
        return idx

    def _load_entries(self, idx: _Index) -> None:
        for label, vid, meta in read(self._storage, "SELECT label, id, meta FROM vectors "
                                                    "WHERE coll = ?", (idx.coll_id,)):
            idx.set_entry(label, vid, meta)

    def _replay(self, idx: _Index, since: int, in_file: set[int]) -> int:
        """Add the rows written after generation ``since`` (all of them for -1); how many."""
        last, added = -1, 0
        while True:
            rows = read(self._storage, "SELECT label, vec FROM vectors WHERE coll = ? AND "
                                       "gen > ? AND label > ? ORDER BY label LIMIT 5000",
                        (idx.coll_id, since, last))
            if not rows:
                break
            for update in (False, True):
                part = [r for r in rows if (r[0] in in_file) == update]
                if part:
                    vecs = np.frombuffer(b"".join(r[1] for r in part), dtype="<f4")
                    idx.add([r[0] for r in part], vecs.reshape(len(part), idx.dim), update)
            last, added = rows[-1][0], added + len(rows)
        idx.dirty = idx.dirty or since < 0
        return added

    def changed(self, idx: _Index) -> None:
        """Count a change of ``idx``; the flusher thread writes it in time."""
        idx.changes += 1
        if self._flusher is None:
            with self._lock:
                if self._flusher is None and not self._stop.is_set():
                    self._flusher = threading.Thread(target=self._flush_loop,
                                                     name="omnicore-vectors", daemon=True)
                    self._flusher.start()
        if idx.changes >= FLUSH_AFTER:
            self._wake.set()

    def _flush_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(FLUSH_EVERY_S)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.flush()
            except Exception:  # a full disk must not end the schedule; the next run retries
                _log.warning("writing vector indexes failed; retrying in %.0f s",
                             FLUSH_EVERY_S, exc_info=True)

    def flush(self) -> int:
        """Write every changed index to disk (atomically); how many were written."""
        with self._lock:
            loaded = list(self._loaded.values())
        written = 0
        self.index_dir.mkdir(parents=True, exist_ok=True)
        with self._flush_lock:
            for idx in loaded:
                path, meta_path = self._paths(idx.coll_id)
                tmp = path.with_suffix(".tmp")
                with idx.lock:  # the rows' generation and the index agree under this lock
                    if not idx.dirty:
                        continue
                    row = read(self._storage, "SELECT generation FROM vector_collections "
                                              "WHERE id = ?", (idx.coll_id,))
                    if not row:
                        continue
                    idx.hnsw.save_index(str(tmp))
                    idx.dirty, idx.changes = False, 0
                # Hashing a large file need not hold up searches and upserts.
                meta = {"format": _FORMAT, "generation": row[0][0],
                        "size": tmp.stat().st_size, "sha256": _sha256(tmp)}
                os.replace(tmp, path)
                tmp_meta = meta_path.with_suffix(".tmp")
                tmp_meta.write_text(json.dumps(meta))
                os.replace(tmp_meta, meta_path)
                written += 1
        return written

    def forget_index(self, coll_id: int) -> None:
        with self._lock:
            self._loaded.pop(coll_id, None)
            for key in [k for k, v in self._collections.items() if v[0] == coll_id]:
                del self._collections[key]
        for p in self._paths(coll_id):
            p.unlink(missing_ok=True)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._flusher is not None:
            self._flusher.join(60)
        self.flush()
        with self._lock:
            self._loaded.clear()
            self._collections.clear()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class PluginVectors:
    """One plugin's collections: what ``omnicore:vectors`` touches (``app.vectors.for_plugin``)."""

    def __init__(self, store: VectorStore, plugin: str) -> None:
        self._store = store
        self._db = store._storage
        self.plugin = plugin

    def _collection(self, name: str) -> tuple[int, int, str] | None:
        return self._store.collection(self.plugin, name)

    def create(self, name: str, dim: int, metric: str = "cosine",
               quota: VectorQuota = VectorQuota()) -> None:
        """Create ``name`` with ``dim`` dimensions (no-op if it exists with them)."""
        _check_name(name)
        if metric not in METRICS:
            raise BadVector(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        if not 0 < dim:
            raise BadVector("dim must be positive")
        if dim > quota.max_dim:
            raise ValueTooLarge(f"dimension {dim} is over max_dim ({quota.max_dim})")

        def run(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT dim FROM vector_collections WHERE plugin = ? AND name = ?",
                               (self.plugin, name)).fetchone()
            if row is not None:
                if row[0] != dim:
                    raise BadVector(f"collection {name!r} exists with {row[0]} dimensions")
                return
            n = conn.execute("SELECT COUNT(*) FROM vector_collections WHERE plugin = ?",
                             (self.plugin,)).fetchone()[0]
            if n >= quota.max_collections:
                raise QuotaExceeded(f"plugin {self.plugin!r} has {n} collections "
                                    f"(max_collections {quota.max_collections})")
            conn.execute("INSERT INTO vector_collections (plugin, name, dim, metric, created_at)"
                         " VALUES (?, ?, ?, ?, ?)", (self.plugin, name, dim, metric, time.time()))

        write(self._db, run)

    def upsert(self, collection: str, vid: str, vector: Sequence[float] | np.ndarray,
               metadata: Mapping[str, Any] | None = None,
               quota: VectorQuota = VectorQuota()) -> None:
        """Insert or replace ``vid``; the collection is created on first use."""
        _check_name(collection)
        _check_id(vid)
        arr = check_vector(vector)
        meta = None
        if metadata is not None:
            if not isinstance(metadata, Mapping):
                raise BadVector("metadata must be a JSON object")
            meta = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
            if len(meta.encode()) > quota.max_metadata_bytes:
                raise ValueTooLarge(f"metadata is {len(meta.encode())} bytes "
                                    f"(max_metadata_bytes {quota.max_metadata_bytes})")
        found = self._collection(collection)
        if found is None:
            self.create(collection, arr.size, quota=quota)
            found = self._collection(collection)
            assert found is not None
        coll_id, dim, metric = found
        check_vector(arr, dim)
        size = 4 * dim + len(vid.encode()) + (len(meta.encode()) if meta else 0)
        idx = self._store.index(coll_id, dim, metric)

        def run(conn: sqlite3.Connection) -> int:
            old = conn.execute("SELECT label, size FROM vectors WHERE coll = ? AND id = ?",
                               (coll_id, vid)).fetchone()
            n, used = conn.execute("SELECT COALESCE(SUM(count), 0), COALESCE(SUM(bytes), 0) "
                                   "FROM vector_collections WHERE plugin = ?",
                                   (self.plugin,)).fetchone()
            if old is None and n + 1 > quota.max_vectors:
                raise QuotaExceeded(f"plugin {self.plugin!r} has {n} vectors "
                                    f"(max_vectors {quota.max_vectors})")
            delta = size - (old[1] if old else 0)
            if used + delta > quota.max_bytes:
                raise QuotaExceeded(f"plugin {self.plugin!r} would use {used + delta} bytes of "
                                    f"vectors (max_bytes {quota.max_bytes})")
            label = old[0] if old else conn.execute(
                "SELECT next_label FROM vector_collections WHERE id = ?", (coll_id,)).fetchone()[0]
            gen = conn.execute("UPDATE vector_collections SET next_label = max(next_label, ? + 1),"
                               " generation = generation + 1, count = count + ?, bytes = bytes + "
                               "? WHERE id = ? RETURNING generation",
                               (label, 0 if old else 1, delta, coll_id)).fetchone()[0]
            if old is None:
                conn.execute("INSERT INTO vectors (coll, id, label, vec, meta, size, gen) VALUES "
                             "(?, ?, ?, ?, ?, ?, ?)",
                             (coll_id, vid, label, arr.astype("<f4").tobytes(), meta, size, gen))
            else:
                conn.execute("UPDATE vectors SET vec = ?, meta = ?, size = ?, gen = ? WHERE "
                             "coll = ? AND id = ?",
                             (arr.astype("<f4").tobytes(), meta, size, gen, coll_id, vid))
            return int(label)

        with idx.lock:
            label = write(self._db, run)
            idx.add([label], arr.reshape(1, -1), update=label in idx.entries)
            idx.set_entry(label, vid, meta)
        self._store.changed(idx)

    def delete(self, collection: str, vid: str) -> bool:
        """True deleted, False absent; UnknownCollection if there is no such collection."""
        found = self._collection(collection)
        if found is None:
            raise UnknownCollection(f"no vector collection {collection[:140]!r}")
        coll_id, dim, metric = found
        idx = self._store.index(coll_id, dim, metric)

        def run(conn: sqlite3.Connection) -> int | None:
            row = conn.execute("SELECT label, size FROM vectors WHERE coll = ? AND id = ?",
                               (coll_id, vid)).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM vectors WHERE coll = ? AND id = ?", (coll_id, vid))
            conn.execute("UPDATE vector_collections SET generation = generation + 1, "
                         "count = count - 1, bytes = bytes - ? WHERE id = ?", (row[1], coll_id))
            return int(row[0])

        with idx.lock:
            label = write(self._db, run)
            if label is None:
                return False
            idx.remove(label)
        self._store.changed(idx)
        return True

    def _best(self, collection: str, vector: Sequence[float] | np.ndarray, k: int,
              filter: Mapping[str, Any] | None) -> tuple[_Index, list[tuple[int, float]]]:
        """The index and its ``k`` best (label, score) pairs; the caller holds ``idx.lock``
        until it has read their entries (a delete may race otherwise)."""
        found = self._collection(collection)
        if found is None:
            raise UnknownCollection(f"no vector collection {collection[:140]!r}")
        coll_id, dim, metric = found
        query = check_vector(vector, dim)
        if not 0 < k <= MAX_K:
            raise BadVector(f"k must be 1-{MAX_K}, got {k}")
        where, args = _filter_sql(filter)
        idx = self._store.index(coll_id, dim, metric)
        idx.lock.acquire()
        try:
            if where:
                labels = np.array([r[0] for r in read(
                    self._db, f"SELECT label FROM vectors WHERE coll = ?{where} LIMIT ?",
                    (coll_id, *args, EXACT_FILTERED_BELOW + 1))], dtype=np.int64)
                if len(labels) <= EXACT_FILTERED_BELOW:
                    return idx, idx.exact(query, k, labels)
                allowed = {r[0] for r in read(self._db, "SELECT label FROM vectors WHERE "
                                                        f"coll = ?{where}", (coll_id, *args))}
                return idx, idx.approximate(query, k, allowed)
            if idx.live < EXACT_BELOW:
                return idx, idx.exact(query, k)
            return idx, idx.approximate(query, k)
        except BaseException:
            idx.lock.release()
            raise

    def search(self, collection: str, vector: Sequence[float] | np.ndarray, k: int = 10,
               filter: Mapping[str, Any] | None = None) -> list[Hit]:
        """The ``k`` best vectors, best first; ``filter`` keeps metadata equal to it."""
        idx, pairs = self._best(collection, vector, k, filter)
        try:
            found = [(idx.entries.get(label), score) for label, score in pairs]
        finally:
            idx.lock.release()
        return [Hit(json.loads(e[0]), round(score, 6), json.loads(e[1]))
                for e, score in found if e is not None]

    def search_json(self, collection: str, vector: Sequence[float] | np.ndarray, k: int = 10,
                    filter: Mapping[str, Any] | None = None) -> bytes:
        """:meth:`search` as the JSON array ``omnicore:vectors`` returns (built from the
        entries' JSON as stored, not decoded and encoded again)."""
        idx, pairs = self._best(collection, vector, k, filter)
        try:
            entries = idx.entries
            # %.6f is round(score, 6) (both correctly rounded) at half the cost; an
            # overflowing inner product has no JSON number: null.
            parts = [f'{{"id":{e[0]},"score":{score:.6f},"metadata":{e[1]}}}'
                     if -_INF < score < _INF else
                     f'{{"id":{e[0]},"score":null,"metadata":{e[1]}}}'
                     for label, score in pairs if (e := entries.get(label)) is not None]
        finally:
            idx.lock.release()
        return ("[" + ",".join(parts) + "]").encode()

    def collections(self) -> list[Collection]:
        """This plugin's collections, by name."""
        rows = read(self._db, "SELECT id, name, dim, metric, count, bytes, created_at FROM "
                              "vector_collections WHERE plugin = ? ORDER BY name",
                    (self.plugin,))
        out = []
        for cid, name, dim, metric, count, size, created in rows:
            idx = self._store._loaded.get(cid)
            kind = "not loaded" if idx is None else (
                "exact" if idx.live < EXACT_BELOW else "hnsw")
            out.append(Collection(self.plugin, name, dim, metric, count, size, created, kind))
        return out

    def drop(self, collection: str) -> bool:
        """Delete a whole collection; whether it existed."""
        found = self._collection(collection)
        if found is None:
            return False

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM vectors WHERE coll = ?", (found[0],))
            conn.execute("DELETE FROM vector_collections WHERE id = ?", (found[0],))

        write(self._db, run)
        self._store.forget_index(found[0])
        return True

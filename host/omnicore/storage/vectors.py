"""Vector collections: rows in SQLite, one hnswlib index per collection beside the database.

SQLite is the truth: every vector (``f32`` LE bytes), its id and its JSON metadata is a row of
``vectors``, so an index file is only a cache. ``<data_dir>/vectors/<collection id>.hnsw`` is
written by :meth:`VectorStore.flush` (at app stop) with a sidecar ``.json`` recording the
collection's generation (bumped by every change), the file's size and its sha256. At first use
a collection loads its file only when all three match; a missing, truncated, corrupt or stale
file is rebuilt from the rows instead (the sha256 is checked before hnswlib reads a byte,
because hnswlib trusts the sizes it reads).

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

#: Below this many vectors a search is exact (and faster than a graph walk anyway).
EXACT_BELOW = 2_000
#: A filtered search is exact when at most this many vectors match the filter.
EXACT_FILTERED_BELOW = 20_000
METRICS = ("cosine", "l2", "ip")
MAX_K = 1_000
_SPACE = {"cosine": "cosine", "l2": "l2", "ip": "ip"}
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
    """One collection's in-memory index (hnswlib) and its exact-search cache."""

    def __init__(self, coll_id: int, dim: int, metric: str, capacity: int) -> None:
        self.coll_id, self.dim, self.metric = coll_id, dim, metric
        self.hnsw = hnswlib.Index(space=_SPACE[metric], dim=dim)
        self.hnsw.init_index(max_elements=max(capacity, 64), ef_construction=200, M=16,
                             allow_replace_deleted=True)
        self.hnsw.set_ef(64)
        self.live: set[int] = set()
        self.lock = threading.RLock()
        self.dirty = False
        self._exact: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, labels: Sequence[int], vectors: np.ndarray) -> None:
        need = len(self.live) + len(labels)
        if need > self.hnsw.get_max_elements():
            self.hnsw.resize_index(max(need, 2 * self.hnsw.get_max_elements()))
        self.hnsw.add_items(vectors, np.asarray(labels, dtype=np.int64), replace_deleted=True)
        self.live.update(labels)
        self._exact = None
        self.dirty = True

    def remove(self, label: int) -> None:
        if label in self.live:
            self.hnsw.mark_deleted(label)
            self.live.discard(label)
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
                all_labels = np.fromiter(self.live, dtype=np.int64, count=len(self.live))
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
        return [(int(labels[i]), float(scores[i])) for i in top]

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
        k = min(k, len(self.live) if allowed is None else len(allowed))
        flt = (lambda label: label in allowed) if allowed is not None else None
        self.hnsw.set_ef(max(64, 2 * k))
        while k > 0:
            try:
                labels, dists = self.hnsw.knn_query(query.reshape(1, -1), k=k, filter=flt)
                break
            except RuntimeError:  # fewer reachable than k (heavily deleted graph): ask less
                k //= 2
        else:
            return []
        out = []
        for label, dist in zip(labels[0], dists[0], strict=True):
            score = 1.0 - float(dist) if self.metric in ("cosine", "ip") else -float(dist)
            out.append((int(label), score))
        return out


class VectorStore:
    """Every plugin's collections in one app: rows in SQLite, indexes in ``index_dir``."""

    def __init__(self, storage: SQLiteStorage, index_dir: str | Path) -> None:
        self._storage = storage
        self.index_dir = Path(index_dir)
        self._loaded: dict[int, _Index] = {}
        self._lock = threading.Lock()
        ensure_schema(storage, "vectors", (_v1,))

    def for_plugin(self, plugin: str) -> PluginVectors:
        """``plugin``'s collections (and only its)."""
        if not plugin:
            raise ValueError("for_plugin() needs a plugin name")
        return PluginVectors(self, plugin)

    def plugins(self) -> list[str]:
        return [r[0] for r in read(self._storage, "SELECT DISTINCT plugin FROM "
                                                  "vector_collections ORDER BY plugin")]

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
        path, meta_path = self._paths(coll_id)
        idx = _Index(coll_id, dim, metric, count + 64)
        try:
            meta = json.loads(meta_path.read_text())
            ok = (meta.get("generation") == generation and path.stat().st_size == meta["size"]
                  and _sha256(path) == meta["sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if ok:
            try:
                idx.hnsw.load_index(str(path), max_elements=max(count + 64, 64),
                                    allow_replace_deleted=True)
                idx.hnsw.set_ef(64)
                idx.live = {r[0] for r in read(self._storage, "SELECT label FROM vectors "
                                                              "WHERE coll = ?", (coll_id,))}
                return idx
            except RuntimeError:
                idx = _Index(coll_id, dim, metric, count + 64)
        self._rebuild(idx)
        return idx

    def _rebuild(self, idx: _Index) -> None:
        last = -1
        while True:
            rows = read(self._storage, "SELECT label, vec FROM vectors WHERE coll = ? AND "
                                       "label > ? ORDER BY label LIMIT 5000",
                        (idx.coll_id, last))
            if not rows:
                break
            labels = [r[0] for r in rows]
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(
                len(rows), idx.dim)
            idx.add(labels, vecs)
            last = labels[-1]
        idx.dirty = True

    def flush(self) -> int:
        """Write every changed index to disk (atomically); how many were written."""
        with self._lock:
            loaded = list(self._loaded.values())
        written = 0
        self.index_dir.mkdir(parents=True, exist_ok=True)
        for idx in loaded:
            with idx.lock:
                if not idx.dirty:
                    continue
                row = read(self._storage, "SELECT generation FROM vector_collections "
                                          "WHERE id = ?", (idx.coll_id,))
                if not row:
                    continue
                path, meta_path = self._paths(idx.coll_id)
                tmp = path.with_suffix(".tmp")
                idx.hnsw.save_index(str(tmp))
                os.replace(tmp, path)
                meta = {"generation": row[0][0], "size": path.stat().st_size,
                        "sha256": _sha256(path)}
                tmp_meta = meta_path.with_suffix(".tmp")
                tmp_meta.write_text(json.dumps(meta))
                os.replace(tmp_meta, meta_path)
                idx.dirty = False
                written += 1
        return written

    def forget_index(self, coll_id: int) -> None:
        with self._lock:
            self._loaded.pop(coll_id, None)
        for p in self._paths(coll_id):
            p.unlink(missing_ok=True)

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._loaded.clear()


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
        rows = read(self._db, "SELECT id, dim, metric FROM vector_collections WHERE plugin = ? "
                              "AND name = ?", (self.plugin, name))
        return (rows[0][0], rows[0][1], rows[0][2]) if rows else None

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
            if old is None:
                label = conn.execute("SELECT next_label FROM vector_collections WHERE id = ?",
                                     (coll_id,)).fetchone()[0]
                conn.execute("INSERT INTO vectors VALUES (?, ?, ?, ?, ?, ?)",
                             (coll_id, vid, label, arr.astype("<f4").tobytes(), meta, size))
            else:
                label = old[0]
                conn.execute("UPDATE vectors SET vec = ?, meta = ?, size = ? WHERE coll = ? "
                             "AND id = ?", (arr.astype("<f4").tobytes(), meta, size, coll_id, vid))
            conn.execute("UPDATE vector_collections SET next_label = max(next_label, ? + 1), "
                         "generation = generation + 1, count = count + ?, bytes = bytes + ? "
                         "WHERE id = ?", (label, 0 if old else 1, delta, coll_id))
            return int(label)

        with idx.lock:
            label = write(self._db, run)
            idx.add([label], arr.reshape(1, -1))

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
        return True

    def search(self, collection: str, vector: Sequence[float] | np.ndarray, k: int = 10,
               filter: Mapping[str, Any] | None = None) -> list[Hit]:
        """The ``k`` best vectors, best first; ``filter`` keeps metadata equal to it."""
        found = self._collection(collection)
        if found is None:
            raise UnknownCollection(f"no vector collection {collection[:140]!r}")
        coll_id, dim, metric = found
        query = check_vector(vector, dim)
        if not 0 < k <= MAX_K:
            raise BadVector(f"k must be 1-{MAX_K}, got {k}")
        where, args = _filter_sql(filter)
        idx = self._store.index(coll_id, dim, metric)
        with idx.lock:
            if where:
                labels = np.array([r[0] for r in read(
                    self._db, f"SELECT label FROM vectors WHERE coll = ?{where} LIMIT ?",
                    (coll_id, *args, EXACT_FILTERED_BELOW + 1))], dtype=np.int64)
                if len(labels) <= EXACT_FILTERED_BELOW:
                    pairs = idx.exact(query, k, labels)
                else:
                    allowed = {r[0] for r in read(self._db, "SELECT label FROM vectors WHERE "
                                                            f"coll = ?{where}", (coll_id, *args))}
                    pairs = idx.approximate(query, k, allowed)
            elif len(idx.live) < EXACT_BELOW:
                pairs = idx.exact(query, k)
            else:
                pairs = idx.approximate(query, k)
        if not pairs:
            return []
        marks = ",".join("?" * len(pairs))
        rows = {r[0]: (r[1], r[2]) for r in read(
            self._db, f"SELECT label, id, meta FROM vectors WHERE coll = ? AND label IN ({marks})",
            (coll_id, *(p[0] for p in pairs)))}
        return [Hit(rows[label][0], round(score, 6), json.loads(rows[label][1] or "{}"))
                for label, score in pairs if label in rows]

    def collections(self) -> list[Collection]:
        """This plugin's collections, by name."""
        rows = read(self._db, "SELECT id, name, dim, metric, count, bytes, created_at FROM "
                              "vector_collections WHERE plugin = ? ORDER BY name",
                    (self.plugin,))
        out = []
        for cid, name, dim, metric, count, size, created in rows:
            idx = self._store._loaded.get(cid)
            kind = "not loaded" if idx is None else (
                "exact" if len(idx.live) < EXACT_BELOW else "hnsw")
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

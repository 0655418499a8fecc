"""Vector collections: rows behind :class:`VectorRows`, one similarity index per collection.

The rows are the truth (:mod:`omnicore.storage.vector_rows`); each collection in use has an
index in memory (:mod:`omnicore.storage.vector_index`), written under
``<data_dir>/vectors/`` by :meth:`VectorStore.flush` — at app stop, and by a host thread every
:data:`FLUSH_EVERY_S` seconds or sooner after :data:`FLUSH_AFTER` changes — and caught up from
the collection's change sequence when it is opened again.

Search is exact (numpy over the live vectors) below :data:`EXACT_BELOW` vectors and with a
metadata filter that few vectors match, and HNSW above. Cosine similarity is the default
metric (``score`` = cosine similarity); ``l2`` (score = minus the squared distance) and ``ip``
(inner product) can be chosen when a collection is created from Python. The errors are drawn
in :mod:`omnicore.storage.vector_rows`.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from omnicore.core.background import Background
from omnicore.storage.errors import ValueTooLarge
from omnicore.storage.metadata import metadata_json
from omnicore.storage.vector_index import (
    Best,
    Index,
    catch_up,
    hit_fields,
    load,
    null_hit,
    paths,
    save,
)
from omnicore.storage.vector_rows import (
    METRICS,
    BadVector,
    CollectionFacts,
    UnknownCollection,
    VectorQuota,
    VectorRows,
    check_filter,
    check_id,
    check_name,
)

__all__ = ["EXACT_BELOW", "METRICS", "BadVector", "Collection", "Hit", "PluginVectors",
           "UnknownCollection", "VectorQuota", "VectorStore", "check_vector"]

#: A host thread writes changed indexes this often, and sooner after FLUSH_AFTER changes.
FLUSH_EVERY_S = 60.0
FLUSH_AFTER = 10_000
_log = logging.getLogger("omnicore.vectors")

#: Below this many vectors a search is exact (and faster than a graph walk anyway).
EXACT_BELOW = 2_000
#: A filtered search is exact when at most this many vectors match the filter.
EXACT_FILTERED_BELOW = 20_000
MAX_K = 1_000
_INF = math.inf
_QUOTA = VectorQuota()
_F32 = np.dtype(np.float32)


def check_vector(values: Sequence[float] | np.ndarray, dim: int | None = None) -> np.ndarray:
    """``values`` as a float32 row; BadVector for NaN/inf, an empty or wrong-size vector."""
    arr = _row(values, dim)
    _check_finite(arr)
    return arr


def _row(values: Sequence[float] | np.ndarray, dim: int | None) -> np.ndarray:
    """``values`` as a float32 row of ``dim`` values (any), not yet checked for NaN/inf."""
    arr = values if isinstance(values, np.ndarray) and values.dtype is _F32 \
        and values.ndim == 1 else np.asarray(values, dtype=_F32).reshape(-1)
    if arr.size == 0:
        raise BadVector("a vector needs at least one dimension")
    if dim is not None and arr.size != dim:
        raise BadVector(f"vector has {arr.size} dimensions, the collection has {dim}")
    return arr


def _check_finite(arr: np.ndarray) -> None:
    if not np.isfinite(arr).all():
        raise BadVector("vector contains NaN or infinity")


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    score: float
    metadata: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": self.score, "metadata": self.metadata}


@dataclass(frozen=True, slots=True)
class Collection(CollectionFacts):
    """A collection as plugins and the console see it: its facts and its index in memory."""

    index: str          # "exact" | "hnsw" | "not loaded"

    def as_dict(self) -> dict[str, Any]:
        return {"plugin": self.plugin, "name": self.name, "dim": self.dim,
                "metric": self.metric, "count": self.count, "bytes": self.bytes,
                "created_at": self.created_at, "index": self.index}


class VectorStore:
    """Every plugin's collections in one app: rows behind ``rows``, indexes in ``index_dir``."""

    def __init__(self, rows: VectorRows, index_dir: str | Path, *, shared: bool = False) -> None:
        self.rows = rows
        self.index_dir = Path(index_dir)
        #: Other hosts write the same rows (PostgreSQL): every search first catches its
        #: index up with what they wrote, so it answers with every acknowledged vector.
        self.shared = shared
        self._loaded: dict[int, Index] = {}
        #: (plugin, name) -> (collection id, dim, metric), so a search needs no SQL for it.
        self._collections: dict[tuple[str, str], tuple[int, int, str]] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._flusher = Background("omnicore-vectors", once=True)

    def for_plugin(self, plugin: str) -> PluginVectors:
        """``plugin``'s collections (and only its)."""
        if not plugin:
            raise ValueError("for_plugin() needs a plugin name")
        return PluginVectors(self, plugin)

    def plugins(self) -> list[str]:
        return self.rows.plugins()

    def collection(self, plugin: str, name: str) -> tuple[int, int, str] | None:
        """``(id, dim, metric)`` of ``plugin``'s collection ``name``, or None."""
        found = self._collections.get((plugin, name))
        if found is None:
            row = self.rows.collection(plugin, name)
            if row is None:
                return None
            found = self._collections[(plugin, name)] = (row.id, row.dim, row.metric)
        return found

    # -- indexes ----------------------------------------------------------------------

    def index(self, coll_id: int, dim: int, metric: str) -> Index:
        """Collection ``coll_id``'s index, loaded on first use."""
        found = self._loaded.get(coll_id)  # a dict read is atomic: no lock once loaded
        if found is not None:
            return found
        with self._lock:
            found = self._loaded.get(coll_id)
            if found is None:
                found = self._loaded[coll_id] = load(self.rows, self.index_dir, coll_id, dim,
                                                      metric)
            return found

    def changed(self, idx: Index) -> None:
        """Count a change of ``idx``; the flusher thread writes it in time."""
        idx.changes += 1
        if not self._flusher.running:  # an attribute read: no lock for every change
            self._flusher.start(self._flush_loop)
        if idx.changes >= FLUSH_AFTER:
            self._wake.set()

    def _flush_loop(self) -> None:
        stopping = self._flusher.stopping
        while not stopping.is_set():
            self._wake.wait(FLUSH_EVERY_S)
            self._wake.clear()
            if stopping.is_set():
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
                written += save(self.rows, self.index_dir, idx)
        return written

    def forget_index(self, coll_id: int) -> None:
        with self._lock:
            self._loaded.pop(coll_id, None)
            for key in [k for k, v in self._collections.items() if v[0] == coll_id]:
                del self._collections[key]
        for p in paths(self.index_dir, coll_id):
            p.unlink(missing_ok=True)

    def close(self) -> None:
        self._flusher.stopping.set()  # before the wake: the loop sees it when it wakes
        self._wake.set()
        self._flusher.stop(60)
        try:
            self.flush()
        except Exception as exc:  # a full disk must not break the stop: indexes are a cache
            _log.warning("cannot write vector indexes at close (%s); they catch up from the "
                         "database's rows when next opened", exc)
        with self._lock:
            self._loaded.clear()
            self._collections.clear()



def _joined(found: list[bytes | None], scores: list[float]) -> bytes | None:
    """The JSON array of the hits ``found`` with their ``scores``, in one format call (the
    per-hit work done in C); None when a hit is gone or a score is not finite."""
    # A sum is finite only when every score is (NaN and inf propagate; at most 1,000 floats
    # of f32 range cannot overflow a double).
    if None in found or not math.isfinite(sum(scores)):
        return None
    return (b"[" + b",".join(cast("list[bytes]", found)) + b"]") % tuple(scores)


class PluginVectors:
    """One plugin's collections: what ``omnicore:vectors`` touches (``app.vectors.for_plugin``)."""

    def __init__(self, store: VectorStore, plugin: str) -> None:
        self._store = store
        self._rows = store.rows
        self.plugin = plugin

    def _collection(self, name: str) -> tuple[int, int, str] | None:
        return self._store.collection(self.plugin, name)

    def create(self, name: str, dim: int, metric: str = "cosine",
               quota: VectorQuota = _QUOTA) -> None:
        """Create ``name`` with ``dim`` dimensions (no-op if it exists with them)."""
        check_name(name)
        if metric not in METRICS:
            raise BadVector(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        if not 0 < dim:
            raise BadVector("dim must be positive")
        if dim > quota.max_dim:
            raise ValueTooLarge(f"dimension {dim} is over max_dim ({quota.max_dim})")

        self._rows.create(self.plugin, name, dim, metric, quota.max_collections, time.time())

    def upsert(self, collection: str, vid: str, vector: Sequence[float] | np.ndarray,
               metadata: Mapping[str, Any] | None = None,
               quota: VectorQuota = _QUOTA) -> None:
        """Insert or replace ``vid``; the collection is created on first use."""
        check_name(collection)
        check_id(vid)
        arr = check_vector(vector)
        meta = metadata_json(metadata, BadVector)
        if meta is not None and len(meta.encode()) > quota.max_metadata_bytes:
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

        with idx.lock:
            label, gen = self._rows.upsert(coll_id, self.plugin, vid,
                                           arr.astype("<f4").tobytes(), meta, size, quota)
            idx.add([label], arr.reshape(1, -1), update=label in idx.entries)
            idx.set_entry(label, vid, meta)
            if gen == idx.generation + 1:  # else another host wrote in between: catch up
                idx.generation = gen
        self._store.changed(idx)

    def delete(self, collection: str, vid: str) -> bool:
        """True deleted, False absent; UnknownCollection if there is no such collection."""
        found = self._collection(collection)
        if found is None:
            raise UnknownCollection(f"no vector collection {collection[:140]!r}")
        coll_id, dim, metric = found
        idx = self._store.index(coll_id, dim, metric)

        with idx.lock:
            gone = self._rows.delete(coll_id, vid)
            if gone is None:
                return False
            idx.remove(gone[0])
            if gone[1] == idx.generation + 1:
                idx.generation = gone[1]
        self._store.changed(idx)
        return True

    def _best(self, collection: str, vector: Sequence[float] | np.ndarray, k: int,
              filter: Mapping[str, Any] | None) -> tuple[Index, Best]:
        """The index and its ``k`` best labels and scores; the caller holds ``idx.lock``
        until it has read their entries (a delete may race otherwise)."""
        found = self._collection(collection)
        if found is None:
            raise UnknownCollection(f"no vector collection {collection[:140]!r}")
        coll_id, dim, metric = found
        query = _row(vector, dim)
        if not 0 < k <= MAX_K:
            raise BadVector(f"k must be 1-{MAX_K}, got {k}")
        flt = check_filter(filter)
        idx = self._store.index(coll_id, dim, metric)
        idx.lock.acquire()
        try:
            if self._store.shared:
                catch_up(self._rows, idx)
            small = idx.live < EXACT_BELOW
            if flt or small:
                _check_finite(query)
            if flt:
                labels = np.array(self._rows.matching(coll_id, flt, EXACT_FILTERED_BELOW + 1),
                                  dtype=np.int64)
                if len(labels) <= EXACT_FILTERED_BELOW:
                    return idx, idx.exact(query, k, labels)
                allowed = set(self._rows.matching(coll_id, flt, None))
                return idx, idx.approximate(query, k, allowed)
            if small:
                return idx, idx.exact(query, k)
            best = idx.approximate(query, k)
            # NaN or inf anywhere in the query makes every distance NaN or inf (each sums a
            # term of every dimension; cosine first divides by the query's norm), so finite
            # scores prove a finite query, checked only when they are not (np.isfinite
            # costs a search 1-2 µs).
            if not best[1] or not math.isfinite(sum(best[1])):
                _check_finite(query)
            return idx, best
        except BaseException:
            idx.lock.release()
            raise

    def _entries(self, collection: str, vector: Sequence[float] | np.ndarray, k: int,
                 filter: Mapping[str, Any] | None) -> tuple[list[bytes | None], list[float]]:
        """The stored entries (None for one deleted meanwhile) of the ``k`` best and their
        scores, read under the index's lock."""
        idx, (labels, scores) = self._best(collection, vector, k, filter)
        try:
            return idx.templates(labels), scores
        finally:
            idx.lock.release()

    def search(self, collection: str, vector: Sequence[float] | np.ndarray, k: int = 10,
               filter: Mapping[str, Any] | None = None) -> list[Hit]:
        """The ``k`` best vectors, best first; ``filter`` keeps metadata equal to it."""
        found, scores = self._entries(collection, vector, k, filter)
        joined = _joined(found, scores)
        if joined is not None:  # one decode for every hit; "%.6f" reads back as round(s, 6)
            return [Hit(h["id"], h["score"], h["metadata"]) for h in json.loads(joined)]
        hits = []
        for e, score in zip(found, scores, strict=True):
            if e is not None:
                vid, meta = hit_fields(e)
                hits.append(Hit(vid, round(score, 6), meta))
        return hits

    def search_json(self, collection: str, vector: Sequence[float] | np.ndarray, k: int = 10,
                    filter: Mapping[str, Any] | None = None) -> bytes:
        """:meth:`search` as the JSON array ``omnicore:vectors`` returns (built from the
        entries' JSON as stored, not decoded and encoded again)."""
        found, scores = self._entries(collection, vector, k, filter)
        joined = _joined(found, scores)
        if joined is not None:
            return joined
        parts = [e % score if -_INF < score < _INF else null_hit(e)
                 for e, score in zip(found, scores, strict=True) if e is not None]
        return b"[" + b",".join(parts) + b"]"

    def collections(self) -> list[Collection]:
        """This plugin's collections, by name."""
        out = []
        for c in self._rows.collections(self.plugin):
            idx = self._store._loaded.get(c.id)
            kind = "not loaded" if idx is None else (
                "exact" if idx.live < EXACT_BELOW else "hnsw")
            out.append(Collection(self.plugin, c.name, c.dim, c.metric, c.count, c.bytes,
                                  c.created_at, kind))
        return out

    def drop(self, collection: str) -> bool:
        """Delete a whole collection; whether it existed."""
        found = self._collection(collection)
        if found is None:
            return False

        self._rows.drop(found[0])
        self._store.forget_index(found[0])
        return True

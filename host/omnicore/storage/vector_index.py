"""The similarity index of one collection: a per-process cache over its rows.

The rows (:class:`~omnicore.storage.vector_rows.VectorRows`) are the truth. Each collection
in use is kept in memory as an hnswlib index with its ids and metadata, so a search reads no
rows unless it filters by metadata. :func:`save` writes the index to
``<index_dir>/<collection id>.hnsw`` with a sidecar ``.json`` recording the generation it
holds, the file's size and its sha256; :func:`load` opens that file when size and sha256
match (checked before hnswlib reads a byte, because hnswlib trusts the sizes it reads) and
catches up from the collection's change sequence: the rows written after that generation,
and the deletes since. A missing, truncated or corrupt file is rebuilt from all the rows
instead. So a crash loses no vector and costs at most the changes since the last save.

Search is exact (numpy over the live vectors) or approximate (HNSW); the caller chooses.
Deleted vectors are marked deleted in the index and their slots reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

from omnicore.storage.vector_rows import VectorRows

__all__ = ["Best", "Index", "entry", "hit_fields", "load", "null_hit", "paths", "save"]

#: A search's answer: labels and their scores, best first (two lists: what a caller walks).
Best = tuple[list[int], list[float]]

#: Sidecars without this format predate per-row generations: stale ones are rebuilt.
_FORMAT = 2
_SPACE = {"cosine": "cosine", "l2": "l2", "ip": "ip"}


_SCORE = b',"score":%.6f,"metadata":'
#: A table of templates by label may hold this many slots per live vector (and _SLACK more):
#: 8 bytes each, beside about a kilobyte a vector costs anyway. Labels are never reused, so a
#: collection that deletes and adds a lot outgrows it; its newer labels are then looked up
#: in the dict alone.
_DENSE = 8
_SLACK = 4096


def entry(vid: str, meta: str | None) -> bytes:
    """A hit's JSON object in UTF-8, ``{"id":…,"score":%.6f,"metadata":…}``, with ``%``
    doubled in the id and metadata: ``entry % score`` is the hit (``%.6f`` is
    ``round(score, 6)``)."""
    return (b'{"id":' + json.dumps(vid, ensure_ascii=False).replace("%", "%%").encode()
            + _SCORE + (meta or "{}").replace("%", "%%").encode() + b"}")


def null_hit(template: bytes) -> bytes:
    """The hit of an :func:`entry` template whose score is not finite (an overflowing inner
    product): ``null``, as JSON has no such number."""
    # A JSON string escapes every '"', so the id cannot hold _SCORE: the first one is it.
    head, _, tail = template.partition(_SCORE)
    return (head + b',"score":null,"metadata":' + tail) % ()


def hit_fields(template: bytes) -> tuple[str, dict[str, Any]]:
    """The id and metadata of an :func:`entry` template."""
    hit = json.loads(template % 0.0)
    return hit["id"], hit["metadata"]


class Index:
    """One collection in memory: its hnswlib index, exact-search cache, ids and metadata."""

    def __init__(self, coll_id: int, dim: int, metric: str, capacity: int) -> None:
        self.coll_id, self.dim, self.metric = coll_id, dim, metric
        self.hnsw = hnswlib.Index(space=_SPACE[metric], dim=dim)
        self.hnsw.init_index(max_elements=max(capacity, 64), ef_construction=200, M=16,
                             allow_replace_deleted=True)
        self.ef = 64
        self.hnsw.set_ef(self.ef)
        #: label -> the hit's JSON object as a ``%`` template (:func:`entry`): rendered once
        #: at write time, so a search formats each hit in one step from one object.
        self.entries: dict[int, bytes] = {}
        #: The same templates in a list by label (None: no vector), which :meth:`templates`
        #: reads: after the graph walk every lookup is a cache miss, and a list slot is one
        #: where a dict's int key costs three (its slot, its entry, the key object). Kept to
        #: ``_DENSE`` slots per live vector: a label past its end is in ``entries`` only.
        self.table: list[bytes | None] = []
        self.lock = threading.RLock()
        self.dirty = False
        self.changes = 0            # since the index was last written
        #: How it was opened: rows replayed on top of its file, or None (rebuilt, or new).
        self.replayed: int | None = None
        #: Every change up to this generation of the collection is in the index (see
        #: :func:`catch_up`: what other instances of a shared database wrote).
        self.generation = -1
        self._exact: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def live(self) -> int:
        return len(self.entries)

    def set_entry(self, label: int, vid: str, meta: str | None) -> None:
        template = self.entries[label] = entry(vid, meta)
        table = self.table
        if label < len(table):
            table[label] = template
        elif label < _DENSE * len(self.entries) + _SLACK:
            # The labels in between may be in entries already (rows load in any order).
            table.extend(map(self.entries.get, range(len(table), label + 1)))

    def templates(self, labels: list[int]) -> list[bytes | None]:
        """The :func:`entry` templates of ``labels`` (None for a label without a vector)."""
        try:
            return list(map(self.table.__getitem__, labels))
        except IndexError:  # a label past the table (see Index.table)
            return list(map(self.entries.get, labels))

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
            if label < len(self.table):
                self.table[label] = None
            self.hnsw.mark_deleted(label)
            self._exact = None
            self.dirty = True

    def _matrix(self, labels: np.ndarray) -> np.ndarray:
        vecs = np.asarray(self.hnsw.get_items(labels), dtype=np.float32)
        if self.metric == "cosine":
            with np.errstate(over="ignore"):  # a huge vector's norm: as in _scores
                vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-30)
        return vecs

    def exact(self, query: np.ndarray, k: int, labels: np.ndarray | None = None) -> Best:
        """The ``k`` best of the live vectors (or of ``labels``), exactly."""
        if labels is None:
            if self._exact is None:
                all_labels = np.fromiter(self.entries, dtype=np.int64, count=len(self.entries))
                self._exact = (all_labels, self._matrix(all_labels) if all_labels.size
                               else np.zeros((0, self.dim), np.float32))
            labels, vecs = self._exact
        else:
            vecs = self._matrix(labels) if labels.size else np.zeros((0, self.dim), np.float32)
        if not labels.size:
            return [], []
        scores = self._scores(vecs, query)
        top = np.argpartition(-scores, min(k, len(scores)) - 1)[:k] if len(scores) > k \
            else np.arange(len(scores))
        top = top[np.argsort(-scores[top])]
        return labels[top].tolist(), scores[top].tolist()

    def _scores(self, vecs: np.ndarray, query: np.ndarray) -> np.ndarray:
        # Huge values overflow: to inf, answered as a null score, or for cosine in the
        # query's norm, which makes every score 0 as in hnswlib. Not worth a warning.
        with np.errstate(over="ignore"):
            if self.metric == "cosine":
                q = query / max(float(np.linalg.norm(query)), 1e-30)
                scores: np.ndarray = vecs @ q
            else:
                scores = vecs @ query if self.metric == "ip" else \
                    -np.sum((vecs - query) ** 2, axis=1)
        return scores

    def approximate(self, query: np.ndarray, k: int, allowed: set[int] | None = None) -> Best:
        """The ``k`` best by the HNSW graph (of ``allowed`` only, when given)."""
        k = min(k, self.live if allowed is None else len(allowed))
        flt = allowed.__contains__ if allowed is not None else None
        ef = max(64, 2 * k)
        if ef != self.ef:
            self.hnsw.set_ef(ef)
            self.ef = ef
        while k > 0:
            try:
                # Positional: pybind11 matches keywords by name on every call (0.3 µs).
                labels, dists = self.hnsw.knn_query(query, k, -1, flt)
                break
            except RuntimeError:  # fewer reachable than k (heavily deleted graph): ask less
                k //= 2
        else:
            return [], []
        # The 2-D arrays whole: a row view first would cost one more array object each.
        if self.metric == "l2":
            return labels.tolist()[0], (-dists).tolist()[0]
        return labels.tolist()[0], (1.0 - dists).tolist()[0]


def paths(index_dir: Path, coll_id: int) -> tuple[Path, Path]:
    """The index file of collection ``coll_id`` and its sidecar."""
    return index_dir / f"{coll_id}.hnsw", index_dir / f"{coll_id}.json"


def load(rows: VectorRows, index_dir: Path, coll_id: int, dim: int, metric: str) -> Index:
    """Collection ``coll_id``'s index: its file caught up from the rows, or rebuilt."""
    coll = rows.collection_by_id(coll_id)
    generation, count = (coll.generation, coll.count) if coll is not None else (0, 0)
    capacity = count + 64
    idx = _load(rows, index_dir, coll_id, dim, metric, generation, capacity)
    # Changes that commit while the index loads are read again by the next catch-up.
    idx.generation = generation
    return idx


def catch_up(rows: VectorRows, idx: Index) -> int:
    """Apply what other instances wrote to the collection since ``idx.generation`` (upserts
    and deletes); how many changes. The caller holds ``idx.lock``. One indexed query when
    nothing changed: the price of never answering from a stale cache."""
    coll = rows.collection_by_id(idx.coll_id)
    if coll is None or coll.generation <= idx.generation:
        return 0
    since = idx.generation
    gone = rows.deleted(idx.coll_id, since)
    entries = {label: (vid, meta) for label, vid, meta in rows.entries(idx.coll_id)}
    if gone is None:  # too far behind for the tombstones: whatever is not in the rows went
        gone = [label for label in idx.entries if label not in entries]
    for label in gone:
        if label in idx.entries:
            idx.remove(label)
    changed = 0
    last = -1
    while page := rows.changed(idx.coll_id, since, last):
        for label, vec in page:
            if label in entries:
                update = label in idx.entries
                idx.add([label], np.frombuffer(vec, dtype="<f4").reshape(1, idx.dim), update)
                idx.set_entry(label, *entries[label])
        last, changed = page[-1][0], changed + len(page)
    idx.generation = coll.generation
    return changed + len(gone)


def _load(rows: VectorRows, index_dir: Path, coll_id: int, dim: int, metric: str,
          generation: int, capacity: int) -> Index:
    path, meta_path = paths(index_dir, coll_id)
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
    idx = Index(coll_id, dim, metric, capacity)
    if saved is not None:
        try:
            idx.hnsw.load_index(str(path), max_elements=capacity, allow_replace_deleted=True)
            idx.hnsw.set_ef(idx.ef)
        except RuntimeError:
            idx, saved = Index(coll_id, dim, metric, capacity), None
    for label, vid, meta_text in rows.entries(coll_id):
        idx.set_entry(label, vid, meta_text)
    if saved is None:
        _replay(rows, idx, -1, set())
        return idx
    in_file = set(idx.hnsw.get_ids_list())
    # What was deleted after the file was written is still live in it. Without the deletes
    # since (too old for the backend to keep), the rows tell: a label in the file but not
    # in the rows was deleted (labels are never reused).
    gone = rows.deleted(coll_id, saved)
    stale = in_file - idx.entries.keys() if gone is None else in_file.intersection(gone)
    for label in stale:
        try:
            idx.hnsw.mark_deleted(label)
        except RuntimeError:  # already marked in the file
            continue
        idx.dirty = True
    idx.replayed = _replay(rows, idx, saved, in_file)
    return idx


def _replay(rows: VectorRows, idx: Index, since: int, in_file: set[int]) -> int:
    """Add the rows written after generation ``since`` (all of them for -1); how many."""
    last, added = -1, 0
    while True:
        page = rows.changed(idx.coll_id, since, last)
        if not page:
            break
        for update in (False, True):
            part = [r for r in page if (r[0] in in_file) == update]
            if part:
                vecs = np.frombuffer(b"".join(r[1] for r in part), dtype="<f4")
                idx.add([r[0] for r in part], vecs.reshape(len(part), idx.dim), update)
        last, added = page[-1][0], added + len(page)
    idx.dirty = idx.dirty or since < 0
    return added


def save(rows: VectorRows, index_dir: Path, idx: Index) -> bool:
    """Write ``idx`` atomically when it changed since it was last written; whether it was."""
    path, meta_path = paths(index_dir, idx.coll_id)
    tmp = path.with_suffix(".tmp")
    with idx.lock:  # the rows' generation and the index agree under this lock
        if not idx.dirty:
            return False
        coll = rows.collection_by_id(idx.coll_id)
        if coll is None:
            return False
        idx.hnsw.save_index(str(tmp))
        idx.dirty, idx.changes = False, 0
    # Hashing a large file need not hold up searches and upserts.
    meta = {"format": _FORMAT, "generation": coll.generation, "size": tmp.stat().st_size,
            "sha256": _sha256(tmp)}
    os.replace(tmp, path)
    tmp_meta = meta_path.with_suffix(".tmp")
    tmp_meta.write_text(json.dumps(meta))
    os.replace(tmp_meta, meta_path)
    return True


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()

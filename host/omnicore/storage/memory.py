"""Tiered memories for agents: rows behind :class:`MemoryRows`, full-text search, vectors.

Tiers (specs/abi.md §4.4): ``0`` working (expires after ``working_ttl_s``, 1 h), ``1``
short-term (``short_ttl_s``, 7 days), ``2`` long-term (no expiry); an item's ``ttl_s``
overrides. Each tier has a cap per plugin; remembering into a full tier evicts its least
important memory (then the least recently recalled) in the same transaction.

Recall ranks candidates from the backend's full-text search (SQLite: FTS5's BM25, scoped to
the plugin by an indexed token) and, when the query carries a vector, from the plugin's
``_memory`` vector collection; the score blends text relevance ``r/(1+r)`` (``r`` the
backend's relevance), cosine similarity, recency (half-life 7 days) and importance.

Consolidation (:meth:`MemoryStore.consolidate`, run on an interval by the host) deletes
expired memories, promotes short-term memories recalled ``promote_after`` times to
long-term, and decays the importance of memories not recalled since the previous run.

Recalls are counted in batches (:meth:`MemoryStore.touch`): writing a recall's count at once
updates rows scattered over the table and their index pages, which cost a third of the
recall itself at 100,000 memories. Only eviction and consolidation read the counts, so the
batch is written before each of them, at :meth:`MemoryStore.stop`, and by the first recall
:data:`TOUCH_EVERY_S` after the batch began; a crash loses at most that batch.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omnicore.core.background import Background
from omnicore.storage.errors import Refused, StorageError, ValueTooLarge
from omnicore.storage.memory_rows import (
    TIERS,
    BadMemory,
    MemoryRow,
    MemoryRows,
    NewMemory,
    check_filter,
    query_words,
)
from omnicore.storage.metadata import metadata_json
from omnicore.storage.vectors import BadVector, PluginVectors, VectorStore, check_vector

__all__ = ["TIERS", "BadMemory", "Embedder", "MemoryPolicy", "MemoryStore", "PluginMemory",
           "Recalled"]

VECTOR_COLLECTION = "_memory"
#: ``embed(texts) -> vectors``: an extension's embedder, used when a plugin sends text only.
Embedder = Callable[[list[str]], Sequence[Sequence[float]]]
_HALF_LIFE_S = 7 * 86400.0
_log = logging.getLogger("omnicore.memory")
#: Counted recalls wait at most this long for a write (unless no recall or write follows).
TOUCH_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class MemoryPolicy:
    """Per-plugin limits and lifetimes (grant options of ``memory``)."""

    max_working: int = 1_000
    max_short: int = 10_000
    max_long: int = 100_000
    max_text_bytes: int = 16 * 1024
    max_metadata_bytes: int = 16 * 1024
    working_ttl_s: int = 3600
    short_ttl_s: int = 7 * 86400
    max_limit: int = 100

    def cap(self, tier: int) -> int:
        return (self.max_working, self.max_short, self.max_long)[tier]


@dataclass(frozen=True, slots=True)
class Recalled:
    id: int
    tier: int
    text: str
    metadata: dict[str, Any]
    score: float
    created_at: float

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "tier": self.tier, "text": self.text, "metadata": self.metadata,
                "score": self.score, "created_at": self.created_at}


class MemoryStore:
    """Every plugin's memories in one app (thread-safe)."""

    def __init__(self, rows: MemoryRows, vectors: Callable[[], VectorStore] | None = None,
                 embedder: Callable[[], Embedder | None] | None = None) -> None:
        self._rows = rows
        self._vectors = vectors
        self._embedder = embedder or (lambda: None)
        self._last_consolidation = time.time()
        self._consolidating = Background("omnicore-memory")
        #: plugin -> memory id -> recalls not yet written, since _touched_at (monotonic).
        self._touched: dict[str, dict[int, int]] = {}
        self._touched_at = 0.0
        self._touch_lock = threading.Lock()

    def for_plugin(self, plugin: str, policy: MemoryPolicy | None = None) -> PluginMemory:
        if not plugin:
            raise ValueError("for_plugin() needs a plugin name")
        return PluginMemory(self, plugin, policy or MemoryPolicy())

    def embedder(self) -> Embedder | None:
        return self._embedder()

    def vectors_for(self, plugin: str) -> PluginVectors | None:
        return self._vectors().for_plugin(plugin) if self._vectors is not None else None

    def touch(self, plugin: str, ids: Sequence[int]) -> None:
        """Count a recall of ``ids`` of ``plugin``: into the batch, written when it is due."""
        tick = time.monotonic()
        with self._touch_lock:
            if not self._touched:
                self._touched_at = tick
            counts = self._touched.setdefault(plugin, {})
            for mid in ids:
                counts[mid] = counts.get(mid, 0) + 1
            due = tick - self._touched_at >= TOUCH_EVERY_S
        if due:
            self.write_touches()

    def write_touches(self) -> None:
        """Write the counted recalls now (one statement per plugin and count)."""
        with self._touch_lock:
            batch, self._touched = self._touched, {}
        now = time.time()
        for plugin, counts in batch.items():
            by_times: dict[int, list[int]] = {}
            for mid, times in counts.items():
                by_times.setdefault(times, []).append(mid)
            for times, ids in by_times.items():
                self._rows.touch(plugin, ids, now, times)

    def consolidate(self, now: float | None = None, promote_after: int = 3,
                    decay: float = 0.95) -> dict[str, int]:
        """Expire, promote and decay (see the module docstring); counts of each."""
        now = time.time() if now is None else now
        since = self._last_consolidation
        self.write_touches()

        done = self._rows.consolidate(now, since, promote_after, decay)
        self._last_consolidation = now
        for plugin, mid in done.dropped:
            self._drop_vector(plugin, mid)
        return {"expired": done.expired, "promoted": done.promoted}

    def _drop_vector(self, plugin: str, mid: int) -> None:
        view = self.vectors_for(plugin)
        if view is None:
            return
        try:
            view.delete(VECTOR_COLLECTION, str(mid))
        except Refused:
            pass

    def start(self, every_s: float) -> None:
        """Consolidate every ``every_s`` seconds on a host thread, until :meth:`stop`."""
        stopping = self._consolidating.stopping

        def loop() -> None:
            while not stopping.wait(every_s):
                try:
                    self.consolidate()
                except Exception:  # a failed run must not end the schedule; the next retries
                    continue

        self._consolidating.start(loop)

    def stop(self) -> None:
        self._consolidating.stop(5)
        try:
            self.write_touches()
        except StorageError as exc:  # a failing database must not break the stop
            _log.warning("cannot write the last counted recalls at stop (%s)", exc)


class PluginMemory:
    """One plugin's memories: what ``omnicore:memory`` touches (``app.memory.for_plugin``)."""

    def __init__(self, store: MemoryStore, plugin: str, policy: MemoryPolicy) -> None:
        self._store = store
        self._rows = store._rows
        self.plugin = plugin
        self.policy = policy

    def remember(self, tier: int, text: str, metadata: Mapping[str, Any] | None = None,
                 ttl_s: int | None = None, importance: float = 0.5,
                 vector: Sequence[float] | None = None) -> int:
        """Store a memory; its id. A full tier evicts its least important memory first."""
        p = self.policy
        if tier not in TIERS:
            raise BadMemory(f"tier must be 0 (working), 1 (short-term) or 2 (long-term), "
                            f"got {tier}")
        if not isinstance(text, str) or not text.strip():
            raise BadMemory("text must be a non-empty string")
        if len(text.encode()) > p.max_text_bytes:
            raise ValueTooLarge(f"text is over max_text_bytes ({p.max_text_bytes})")
        meta = metadata_json(metadata, BadMemory)
        if meta is not None and len(meta.encode()) > p.max_metadata_bytes:
            raise ValueTooLarge(f"metadata is over max_metadata_bytes ({p.max_metadata_bytes})")
        if ttl_s is not None and (isinstance(ttl_s, bool) or not isinstance(ttl_s, int)
                                  or ttl_s <= 0):
            raise BadMemory("ttl_s must be a positive integer")
        if isinstance(importance, bool) or not isinstance(importance, int | float) \
                or not 0 <= importance <= 1:
            raise BadMemory("importance must be a number from 0 to 1")
        vec = None
        if vector is None and self._store.embedder() is not None:
            vector = self._store.embedder()([text])[0]  # type: ignore[misc]
        if vector is not None:
            try:
                vec = check_vector(vector)
            except BadVector as exc:
                raise BadMemory(str(exc)) from None
        now = time.time()
        ttl = ttl_s if ttl_s is not None else (p.working_ttl_s, p.short_ttl_s, None)[tier]
        expires = now + ttl if ttl is not None else None
        cap = p.cap(tier)
        self._store.write_touches()  # eviction picks the least recently recalled

        mid, evicted = self._rows.insert(NewMemory(self.plugin, tier, text, meta,
                                                   float(importance), now, expires,
                                                   vec is not None), cap)
        for old in evicted:
            self._store._drop_vector(self.plugin, old)
        if vec is not None:
            view = self._store.vectors_for(self.plugin)
            if view is not None:
                try:
                    view.upsert(VECTOR_COLLECTION, str(mid), vec)
                except BadVector as exc:
                    self.forget(mid)
                    raise BadMemory(f"vector: {exc}") from None
                except Refused:
                    self.forget(mid)
                    raise
        return int(mid)

    def recall(self, query: str = "", tiers: Sequence[int] = TIERS, limit: int = 10,
               filter: Mapping[str, Any] | None = None,
               vector: Sequence[float] | None = None) -> list[Recalled]:
        """The best ``limit`` live memories for ``query`` (and ``vector``), best first."""
        if not isinstance(query, str):
            raise BadMemory("query must be a string")
        if isinstance(limit, bool) or not isinstance(limit, int) or \
                not 0 < limit <= self.policy.max_limit:
            raise BadMemory(f"limit must be 1-{self.policy.max_limit}")
        tiers = list(dict.fromkeys(tiers))
        if not tiers or any(t not in TIERS for t in tiers):
            raise BadMemory("tiers must be a list of 0, 1, 2")
        flt = check_filter(filter)
        now = time.time()
        candidates = max(50, limit * 5)
        text_scores: dict[int, float] = {}
        rows: dict[int, MemoryRow] = {}
        words = query_words(query)
        for row, rel in self._rows.search(self.plugin, words, tiers, now, flt, candidates):
            rows[row.id] = row
            text_scores[row.id] = rel / (1.0 + rel)
        sims: dict[int, float] = {}
        if vector is None and query.strip() and self._store.embedder() is not None:
            vector = self._store.embedder()([query])[0]  # type: ignore[misc]
        if vector is not None:
            sims = self._similar(vector, candidates)
            missing = [i for i in sims if i not in rows]
            for row in self._rows.by_ids(self.plugin, missing, tiers, now, flt):
                rows[row.id] = row
        if not words and vector is None:
            for row in self._rows.top(self.plugin, tiers, now, flt, candidates):
                rows[row.id] = row
        scored = []
        for mid, r in rows.items():
            recency = math.exp(-max(now - r.created_at, 0.0) * math.log(2) / _HALF_LIFE_S)
            if vector is not None:
                score = (0.45 * text_scores.get(mid, 0.0) + 0.35 * max(sims.get(mid, 0.0), 0.0)
                         + 0.1 * recency + 0.1 * r.importance)
            else:
                score = 0.6 * text_scores.get(mid, 0.0) + 0.2 * recency + 0.2 * r.importance
            scored.append((round(score, 6), r))
        scored.sort(key=lambda m: (-m[0], -m[1].created_at))
        # Only the answer's metadata is decoded: the other candidates' never shows.
        return [Recalled(r.id, r.tier, r.text, json.loads(r.meta or "{}"), score, r.created_at)
                for score, r in scored[:limit]]

    def _similar(self, vector: Sequence[float], k: int) -> dict[int, float]:
        view = self._store.vectors_for(self.plugin)
        if view is None:
            return {}
        try:
            hits = view.search(VECTOR_COLLECTION, vector, min(k, 1000))
        except BadVector as exc:
            raise BadMemory(f"vector: {exc}") from None
        except Refused:  # no memory has a vector yet
            return {}
        return {int(h.id): h.score for h in hits}

    def touch(self, ids: Sequence[int]) -> None:
        """Count a recall of ``ids`` (promotion, decay and eviction read it; written in a
        batch, see the module docstring)."""
        self._store.touch(self.plugin, ids)

    def forget(self, mid: int) -> bool:
        """Delete memory ``mid`` of this plugin; whether it existed."""
        had_vector = self._rows.delete(self.plugin, mid)
        if had_vector is None:
            return False
        if had_vector:
            self._store._drop_vector(self.plugin, mid)
        return True

    def count(self) -> dict[int, int]:
        """Memories per tier."""
        return {**dict.fromkeys(TIERS, 0), **self._rows.count(self.plugin)}

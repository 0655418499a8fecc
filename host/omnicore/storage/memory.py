"""Tiered memories for agents: rows in SQLite, full-text search by FTS5, optional vectors.

Tiers (specs/abi.md §4.4): ``0`` working (expires after ``working_ttl_s``, 1 h), ``1``
short-term (``short_ttl_s``, 7 days), ``2`` long-term (no expiry); an item's ``ttl_s``
overrides. Each tier has a cap per plugin; remembering into a full tier evicts its least
important memory (then the least recently recalled) in the same transaction.

Recall ranks candidates from FTS5 (BM25 over the text, scoped to the plugin by an indexed
scope token so other plugins' rows are never scanned) and, when the query carries a vector,
from the plugin's ``_memory`` vector collection; the score blends text relevance
``r/(1+r)`` (``r`` = -BM25), cosine similarity, recency (half-life 7 days) and importance.

Consolidation (:meth:`MemoryStore.consolidate`, run on an interval by the host) deletes
expired memories, promotes short-term memories recalled ``promote_after`` times to
long-term, and decays the importance of memories not recalled since the previous run.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omnicore.storage.base import QuotaExceeded, Refused, StorageError, ValueTooLarge
from omnicore.storage.components import ensure_schema, read, write
from omnicore.storage.sqlite import SQLiteStorage
from omnicore.storage.vectors import BadVector, PluginVectors, VectorStore, check_vector

__all__ = ["TIERS", "BadMemory", "Embedder", "MemoryPolicy", "MemoryStore", "PluginMemory",
           "Recalled"]

TIERS = (0, 1, 2)
VECTOR_COLLECTION = "_memory"
#: ``embed(texts) -> vectors``: an extension's embedder, used when a plugin sends text only.
Embedder = Callable[[list[str]], Sequence[Sequence[float]]]
_WORD = re.compile(r"\w+", re.UNICODE)
_HALF_LIFE_S = 7 * 86400.0


class BadMemory(Refused):
    """A malformed item or query (tier, text, metadata, filter, vector)."""


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


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE memories (id INTEGER PRIMARY KEY, plugin TEXT NOT NULL,"
                 " scope TEXT NOT NULL, tier INTEGER NOT NULL, text TEXT NOT NULL, meta TEXT,"
                 " importance REAL NOT NULL, created_at REAL NOT NULL,"
                 " accessed_at REAL NOT NULL, expires_at REAL, recalls INTEGER NOT NULL"
                 " DEFAULT 0, has_vector INTEGER NOT NULL DEFAULT 0)")
    conn.execute("CREATE INDEX memories_tier ON memories (plugin, tier, importance, "
                 "accessed_at)")
    conn.execute("CREATE INDEX memories_expiry ON memories (expires_at) WHERE expires_at "
                 "IS NOT NULL")
    conn.execute("CREATE VIRTUAL TABLE memories_fts USING fts5(scope, text, content='memories',"
                 " content_rowid='id')")
    conn.execute("CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN INSERT INTO "
                 "memories_fts(rowid, scope, text) VALUES (new.id, new.scope, new.text); END")
    conn.execute("CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN INSERT INTO "
                 "memories_fts(memories_fts, rowid, scope, text) VALUES ('delete', old.id, "
                 "old.scope, old.text); END")


def _scope(plugin: str) -> str:
    # One alphanumeric token, so FTS5 can restrict a match to the plugin through its index.
    return "p" + hashlib.sha256(plugin.encode()).hexdigest()[:20]


def _fts_query(scope: str, text: str) -> str | None:
    words = _WORD.findall(text.lower())[:32]
    if not words:
        return None
    terms = " OR ".join('"' + w.replace('"', "") + '"' for w in dict.fromkeys(words))
    return f"scope : {scope} AND text : ({terms})"


def _meta_sql(flt: Mapping[str, Any] | None) -> tuple[str, list[Any]]:
    if not flt:
        return "", []
    if not isinstance(flt, Mapping) or len(flt) > 16:
        raise BadMemory("filter must be a JSON object of at most 16 keys")
    sql, args = [], []
    for key, value in flt.items():
        if not isinstance(key, str) or not key or len(key) > 128 or '"' in key:
            raise BadMemory(f"bad filter key {str(key)[:140]!r}")
        if isinstance(value, bool):
            value = int(value)
        elif not isinstance(value, str | int | float):
            raise BadMemory(f"filter value of {key!r} must be a string, number or boolean")
        sql.append(f"json_extract(m.meta, '$.\"{key}\"') = ?")
        args.append(value)
    return " AND " + " AND ".join(sql), args


class MemoryStore:
    """Every plugin's memories in one app (thread-safe)."""

    def __init__(self, storage: SQLiteStorage, vectors: Callable[[], VectorStore] | None = None,
                 embedder: Callable[[], Embedder | None] | None = None) -> None:
        self._storage = storage
        self._vectors = vectors
        self._embedder = embedder or (lambda: None)
        self._last_consolidation = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        ensure_schema(storage, "memory", (_v1,))

    def for_plugin(self, plugin: str, policy: MemoryPolicy | None = None) -> PluginMemory:
        if not plugin:
            raise ValueError("for_plugin() needs a plugin name")
        return PluginMemory(self, plugin, policy or MemoryPolicy())

    def embedder(self) -> Embedder | None:
        return self._embedder()

    def vectors_for(self, plugin: str) -> PluginVectors | None:
        return self._vectors().for_plugin(plugin) if self._vectors is not None else None

    def consolidate(self, now: float | None = None, promote_after: int = 3,
                    decay: float = 0.95) -> dict[str, int]:
        """Expire, promote and decay (see the module docstring); counts of each."""
        now = time.time() if now is None else now
        since = self._last_consolidation

        def run(conn: sqlite3.Connection) -> tuple[list[tuple[str, int]], int, int]:
            gone = conn.execute("SELECT plugin, id FROM memories WHERE expires_at IS NOT NULL "
                                "AND expires_at <= ? AND has_vector = 1", (now,)).fetchall()
            conn.execute("DELETE FROM memories WHERE expires_at IS NOT NULL AND expires_at <= ?",
                         (now,))
            expired = conn.execute("SELECT changes()").fetchone()[0]
            promoted = conn.execute("UPDATE memories SET tier = 2, expires_at = NULL WHERE "
                                    "tier = 1 AND recalls >= ?", (promote_after,)).rowcount
            conn.execute("UPDATE memories SET importance = importance * ? WHERE "
                         "accessed_at < ? AND importance > 0.01", (decay, since))
            return gone, expired, promoted

        gone, expired, promoted = write(self._storage, run)
        self._last_consolidation = now
        for plugin, mid in gone:
            self._drop_vector(plugin, mid)
        return {"expired": expired, "promoted": promoted}

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
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(every_s):
                try:
                    self.consolidate()
                except Exception:  # a failed run must not end the schedule; the next retries
                    continue

        self._thread = threading.Thread(target=loop, name="omnicore-memory", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


class PluginMemory:
    """One plugin's memories: what ``omnicore:memory`` touches (``app.memory.for_plugin``)."""

    def __init__(self, store: MemoryStore, plugin: str, policy: MemoryPolicy) -> None:
        self._store = store
        self._db = store._storage
        self.plugin = plugin
        self.scope = _scope(plugin)
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
        meta = None
        if metadata is not None:
            if not isinstance(metadata, Mapping):
                raise BadMemory("metadata must be a JSON object")
            meta = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
            if len(meta.encode()) > p.max_metadata_bytes:
                raise ValueTooLarge(f"metadata is over max_metadata_bytes "
                                    f"({p.max_metadata_bytes})")
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

        def run(conn: sqlite3.Connection) -> tuple[int, list[int]]:
            evicted: list[int] = []
            n = conn.execute("SELECT COUNT(*) FROM memories WHERE plugin = ? AND tier = ?",
                             (self.plugin, tier)).fetchone()[0]
            if n >= cap:
                rows = conn.execute(
                    "SELECT id, has_vector FROM memories WHERE plugin = ? AND tier = ? ORDER BY"
                    " importance, accessed_at LIMIT ?", (self.plugin, tier, n - cap + 1)
                ).fetchall()
                if not rows:
                    raise QuotaExceeded(f"tier {tier} is full")
                conn.executemany("DELETE FROM memories WHERE id = ?", [(r[0],) for r in rows])
                evicted = [r[0] for r in rows if r[1]]
            # Ids are random, not a counter shared by every plugin: a plugin must not learn
            # from its own ids how many memories the others keep. 53 bits stay exact in JS.
            for _ in range(16):
                mid = secrets.randbits(53) or 1
                try:
                    conn.execute(
                        "INSERT INTO memories (id, plugin, scope, tier, text, meta, importance, "
                        "created_at, accessed_at, expires_at, has_vector) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (mid, self.plugin, self.scope, tier, text, meta, float(importance), now,
                         now, expires, 1 if vec is not None else 0))
                except sqlite3.IntegrityError:
                    continue  # an id already taken (about one chance in 10^15)
                return mid, evicted
            raise StorageError("could not find a free memory id")

        mid, evicted = write(self._db, run)
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
        where, args = _meta_sql(filter)
        now = time.time()
        pool = max(50, limit * 5)
        tier_sql = f" AND m.tier IN ({','.join('?' * len(tiers))})"
        live = " AND (m.expires_at IS NULL OR m.expires_at > ?)"
        cols = "m.id, m.tier, m.text, m.meta, m.importance, m.created_at"
        text_scores: dict[int, float] = {}
        rows: dict[int, Any] = {}
        fts = _fts_query(self.scope, query)
        if fts is not None:
            for r in read(self._db, f"SELECT {cols}, bm25(memories_fts, 0.0, 1.0) AS rank "
                                    "FROM memories_fts JOIN memories m ON m.id = "
                                    "memories_fts.rowid WHERE memories_fts MATCH ?"
                                    f"{tier_sql}{live}{where} ORDER BY rank LIMIT ?",
                          (fts, *tiers, now, *args, pool)):
                rows[r[0]] = r
                rel = max(-float(r[6]), 0.0)
                text_scores[r[0]] = rel / (1.0 + rel)
        sims: dict[int, float] = {}
        if vector is None and query.strip() and self._store.embedder() is not None:
            vector = self._store.embedder()([query])[0]  # type: ignore[misc]
        if vector is not None:
            sims = self._similar(vector, pool)
            missing = [i for i in sims if i not in rows]
            if missing:
                for r in read(self._db, f"SELECT {cols} FROM memories m WHERE m.plugin = ? AND "
                                        f"m.id IN ({','.join('?' * len(missing))}){tier_sql}"
                                        f"{live}{where}",
                              (self.plugin, *missing, *tiers, now, *args)):
                    rows[r[0]] = r
        if fts is None and vector is None:
            for r in read(self._db, f"SELECT {cols} FROM memories m WHERE m.plugin = ?"
                                    f"{tier_sql}{live}{where} ORDER BY m.importance DESC, "
                                    "m.created_at DESC LIMIT ?",
                          (self.plugin, *tiers, now, *args, pool)):
                rows[r[0]] = r
        scored = []
        for mid, r in rows.items():
            recency = math.exp(-max(now - r[5], 0.0) * math.log(2) / _HALF_LIFE_S)
            if vector is not None:
                score = (0.45 * text_scores.get(mid, 0.0) + 0.35 * max(sims.get(mid, 0.0), 0.0)
                         + 0.1 * recency + 0.1 * r[4])
            else:
                score = 0.6 * text_scores.get(mid, 0.0) + 0.2 * recency + 0.2 * r[4]
            scored.append(Recalled(r[0], r[1], r[2], json.loads(r[3] or "{}"), round(score, 6),
                                   r[5]))
        scored.sort(key=lambda m: (-m.score, -m.created_at))
        return scored[:limit]

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
        """Count a recall of ``ids`` (promotion and decay read it)."""
        if ids:
            marks = ",".join("?" * len(ids))
            write(self._db, lambda conn: conn.execute(
                # "+plugin": look rows up by id; the (plugin, ...) index would scan them all.
                f"UPDATE memories SET recalls = recalls + 1, accessed_at = ? WHERE id IN "
                f"({marks}) AND +plugin = ?", (time.time(), *ids, self.plugin)))

    def forget(self, mid: int) -> bool:
        """Delete memory ``mid`` of this plugin; whether it existed."""
        row = write(self._db, lambda conn: conn.execute(
            "DELETE FROM memories WHERE plugin = ? AND id = ? RETURNING has_vector",
            (self.plugin, mid)).fetchone())
        if row is None:
            return False
        if row[0]:
            self._store._drop_vector(self.plugin, mid)
        return True

    def count(self) -> dict[int, int]:
        """Memories per tier."""
        counts = dict.fromkeys(TIERS, 0)
        for tier, n in read(self._db, "SELECT tier, COUNT(*) FROM memories WHERE plugin = ? "
                                      "GROUP BY tier", (self.plugin,)):
            counts[tier] = n
        return counts

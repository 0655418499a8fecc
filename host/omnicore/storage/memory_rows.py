"""The memory store's interface: plugins' memory rows, full-text search, consolidation.

Policy lives above it (:mod:`omnicore.storage.memory`: tiers' lifetimes and caps, validation,
the score that blends text relevance, similarity, recency and importance); a backend only
keeps rows, ranks text matches with its own full-text search and runs the row updates that
must be one transaction (insert with eviction, consolidation). Every method but
:meth:`MemoryRows.consolidate` is scoped to one plugin and never reads another plugin's rows.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omnicore.storage import metadata
from omnicore.storage.errors import Refused
from omnicore.storage.metadata import Filter

__all__ = ["TIERS", "BadMemory", "Consolidated", "Filter", "MemoryRow", "MemoryRows",
           "NewMemory", "check_filter", "query_words"]

TIERS = (0, 1, 2)
_WORD = re.compile(r"\w+", re.UNICODE)
#: A query's first words that count; the rest are ignored (a search is not a document).
MAX_QUERY_WORDS = 32


class BadMemory(Refused):
    """A malformed item or query (tier, text, metadata, filter, vector)."""


@dataclass(frozen=True, slots=True)
class NewMemory:
    """A memory to store; ``meta`` is JSON text (an object) or None."""

    plugin: str
    tier: int
    text: str
    meta: str | None
    importance: float
    now: float
    expires_at: float | None
    has_vector: bool


@dataclass(frozen=True, slots=True)
class MemoryRow:
    id: int
    tier: int
    text: str
    meta: str | None
    importance: float
    created_at: float


@dataclass(frozen=True, slots=True)
class Consolidated:
    """What one consolidation did; ``dropped`` are expired (plugin, id) that had a vector."""

    expired: int
    promoted: int
    dropped: list[tuple[str, int]]


def query_words(text: str) -> list[str]:
    """The distinct lower-case words of ``text`` a search looks for (at most 32), in order."""
    return list(dict.fromkeys(_WORD.findall(text.lower())[:MAX_QUERY_WORDS]))


def check_filter(flt: Mapping[str, Any] | None) -> Filter:
    """``flt`` as checked pairs (booleans as 0/1); :class:`BadMemory` for a bad key or value."""
    return metadata.check_filter(flt, BadMemory)


class MemoryRows(abc.ABC):
    """Every plugin's memory rows. Thread-safe; "live" means not expired at ``now``."""

    @abc.abstractmethod
    def insert(self, item: NewMemory, cap: int) -> tuple[int, list[int]]:
        """Store ``item`` under a fresh random id of at most 53 bits (never a counter shared
        by plugins: a plugin must not learn from its ids how many memories the others keep).
        When the plugin's tier already holds ``cap`` rows, its least important (then least
        recently recalled) rows are evicted first, in the same transaction.
        ``(id, evicted ids that had a vector)``."""

    @abc.abstractmethod
    def search(self, plugin: str, words: Sequence[str], tiers: Sequence[int], now: float,
               flt: Filter, limit: int) -> list[tuple[MemoryRow, float]]:
        """Live rows whose text holds any of ``words``, best first, each with its text
        relevance (>= 0, higher is better; the caller maps it to ``r/(1+r)``)."""

    @abc.abstractmethod
    def by_ids(self, plugin: str, ids: Sequence[int], tiers: Sequence[int], now: float,
               flt: Filter) -> list[MemoryRow]:
        """The live rows among ``ids`` (in no order)."""

    @abc.abstractmethod
    def top(self, plugin: str, tiers: Sequence[int], now: float, flt: Filter,
            limit: int) -> list[MemoryRow]:
        """Live rows, most important first (then newest)."""

    @abc.abstractmethod
    def touch(self, plugin: str, ids: Sequence[int], now: float, times: int = 1) -> None:
        """Count ``times`` recalls of each of ``ids`` and stamp their access time."""

    @abc.abstractmethod
    def delete(self, plugin: str, mid: int) -> bool | None:
        """Delete one row: None when absent, else whether it had a vector."""

    @abc.abstractmethod
    def count(self, plugin: str) -> dict[int, int]:
        """Rows per tier (tiers without rows absent)."""

    @abc.abstractmethod
    def consolidate(self, now: float, since: float, promote_after: int,
                    decay: float) -> Consolidated:
        """In one transaction: delete rows expired at ``now``; promote tier-1 rows recalled
        ``promote_after`` times to tier 2 (no expiry); multiply by ``decay`` the importance
        (above 0.01) of rows not accessed since ``since``."""

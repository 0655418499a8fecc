"""Tiered text memories of the plugin's own, recalled by relevance, recency and importance
(``omnicore:memory``; needs the ``memory`` grant, whose options cap each tier).

Tiers are ``"working"`` (short-lived: the grant's ``working_ttl_s``), ``"short"`` (its
``short_ttl_s``) and ``"long"`` (kept until evicted or forgotten); a full tier evicts its
least important memory. Refusals raise :class:`~omnicore_plugin.HostError` with ``code``
``INVALID`` (a bad tier, text, metadata or query), ``TOO_LARGE`` (over the grant's
``max_text_bytes`` or ``max_metadata_bytes``), ``QUOTA`` or ``UNAVAILABLE``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omnicore_plugin._binding import Binding

__all__ = ["TIERS", "Memory", "forget", "recall", "remember"]

_host = Binding("memory")

#: The tiers, in the host's order (``omnicore:memory`` numbers them 0, 1, 2).
TIERS = ("working", "short", "long")
_WIT = {"working": "working", "short": "short-term", "long": "long-term"}


@dataclass(frozen=True)
class Memory:
    """One recalled memory: ``score`` ranks it for the query (higher is better)."""

    id: int
    tier: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    score: float = 0.0
    created_at: float = 0.0


def _tier(tier: str) -> Any:
    if tier not in _WIT:
        raise ValueError(f"tier must be one of {', '.join(TIERS)}, got {tier!r}")
    return _host.case("Tier", _WIT[tier])


def remember(text: str, *, tier: str = "working", metadata: Mapping[str, Any] | None = None,
             ttl_s: int | None = None, importance: float = 0.5,
             vector: Sequence[float] | None = None) -> int:
    """Remember ``text`` in ``tier``; the new memory's id. ``importance`` (0-1) decides
    what a full tier evicts first; ``vector`` (optional) is used by vector recall."""
    item: dict[str, Any] = {"text": text, "importance": importance}
    if metadata is not None:
        item["metadata"] = dict(metadata)
    if ttl_s is not None:
        item["ttl_s"] = ttl_s
    if vector is not None:
        item["vector"] = [float(v) for v in vector]
    return int(_host.call("remember", _tier(tier), json.dumps(item)))


def recall(query: str = "", *, tiers: Iterable[str] = TIERS, limit: int = 10,
           filter: Mapping[str, Any] | None = None,
           vector: Sequence[float] | None = None) -> list[Memory]:
    """The memories that best match ``query`` in ``tiers`` (at most ``limit``), best first;
    ``filter`` keeps those whose metadata equals each of its keys."""
    q: dict[str, Any] = {"query": query, "limit": limit,
                         "tiers": [TIERS.index(t) if t in TIERS else t for t in tiers]}
    if filter is not None:
        q["filter"] = dict(filter)
    if vector is not None:
        q["vector"] = [float(v) for v in vector]
    found = json.loads(_host.call("recall", json.dumps(q)))
    return [Memory(int(m["id"]), TIERS[int(m["tier"])], m["text"], m.get("metadata") or {},
                   float(m.get("score") or 0.0), float(m.get("created_at") or 0.0))
            for m in found]


def forget(memory_id: int) -> bool:
    """Forget memory ``memory_id``; whether it existed."""
    return bool(_host.call("forget", int(memory_id)))

"""Named collections of f32 vectors of the plugin's own, with cosine search
(``omnicore:vectors``; needs the ``vectors`` grant, whose options are its quotas).

A collection (1-128 bytes) is made by its first :func:`upsert`; ids are 1-512 bytes; every
vector in a collection has its dimension. Refusals raise :class:`~omnicore_plugin.HostError`
with ``code`` ``INVALID`` (a wrong dimension, NaN/inf, a bad name, id, metadata or filter),
``TOO_LARGE`` (over ``max_dim`` or ``max_metadata_bytes``), ``QUOTA``, ``NOT_FOUND`` (no such
collection) or ``UNAVAILABLE``; a search's refusal carries the host's reason in ``detail``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omnicore_plugin._binding import Binding

__all__ = ["Match", "delete", "search", "upsert"]

_host = Binding("vectors")


@dataclass(frozen=True)
class Match:
    """One search result: ``score`` is the cosine similarity (None if it overflowed)."""

    id: str
    score: float | None
    metadata: dict[str, Any] = field(default_factory=dict)


def upsert(collection: str, vector_id: str, vector: Sequence[float],
           metadata: Mapping[str, Any] | None = None) -> None:
    """Insert or replace ``vector_id`` in ``collection`` with ``metadata`` (JSON object)."""
    meta = "" if metadata is None else json.dumps(dict(metadata), separators=(",", ":"))
    _host.call("upsert", collection, vector_id, [float(v) for v in vector], meta)


def search(collection: str, vector: Sequence[float], k: int = 10,
           filter: Mapping[str, Any] | None = None,
           ) -> list[Match]:
    """The ``k`` vectors of ``collection`` nearest ``vector``, best first; ``filter`` keeps
    those whose metadata equals each of its keys."""
    flt = "" if filter is None else json.dumps(dict(filter), separators=(",", ":"))
    found = json.loads(_host.call("search", collection, [float(v) for v in vector], k, flt))
    return [Match(str(m["id"]), m["score"], m.get("metadata") or {}) for m in found]


def delete(collection: str, vector_id: str) -> bool:
    """Delete ``vector_id``; whether it existed."""
    return bool(_host.call("delete", collection, vector_id))

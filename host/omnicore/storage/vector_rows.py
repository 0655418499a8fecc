"""The vector store's interface: collections and their rows, with a change sequence.

The rows are the truth; every similarity index (hnswlib in :mod:`omnicore.storage.vector_index`)
is a per-process cache built from them. Each collection has a **generation**: a change
sequence that every upsert, delete and drop of one of its rows raises by one, assigned under
the collection row's write lock, so within a collection generations commit in order — a cache
that has applied every change up to ``G`` catches up with :meth:`VectorRows.changed` (the
rows written after ``G``) and :meth:`VectorRows.deleted` (the labels deleted after ``G``),
and never misses one that committed late. A **label** is a row's number in its collection,
never reused, so a cache can key its index by it.

Errors (all :class:`~omnicore.storage.errors.Refused`, nothing written)::

    Refused
    ├── UnknownCollection   -> NOT_FOUND
    ├── BadVector           wrong dimension, NaN/inf, bad name/id/metadata -> INVALID
    ├── QuotaExceeded       max_collections / max_vectors / max_bytes       -> QUOTA
    └── ValueTooLarge       metadata over max_metadata_bytes, dim over max_dim -> TOO_LARGE
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omnicore.storage import metadata
from omnicore.storage.errors import QuotaExceeded, Refused
from omnicore.storage.metadata import Filter

__all__ = ["METRICS", "BadVector", "CollectionFacts", "CollectionRow", "Filter",
           "UnknownCollection", "VectorQuota", "VectorRows", "check_filter", "check_id",
           "check_name"]

METRICS = ("cosine", "l2", "ip")
_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_MAX_ID_BYTES = 512


class UnknownCollection(Refused):
    """No such collection for this plugin."""

    status = "NOT_FOUND"


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

    def admit(self, plugin: str, vectors: int, used: int, old_size: int | None,
              size: int) -> int:
        """Whether a ``size``-byte row fits beside ``plugin``'s ``vectors`` rows of ``used``
        bytes (``old_size``: the row it replaces, None for a new one): the change in bytes,
        or :class:`QuotaExceeded`. One rule for every backend."""
        if old_size is None and vectors + 1 > self.max_vectors:
            raise QuotaExceeded(f"plugin {plugin!r} has {vectors} vectors "
                                f"(max_vectors {self.max_vectors})")
        delta = size - (old_size or 0)
        if used + delta > self.max_bytes:
            raise QuotaExceeded(f"plugin {plugin!r} would use {used + delta} bytes of "
                                f"vectors (max_bytes {self.max_bytes})")
        return delta


@dataclass(frozen=True, slots=True)
class CollectionFacts:
    """What a vector collection is: its row holds it (:class:`CollectionRow`), plugins and the
    console see it (:class:`omnicore.storage.vectors.Collection`)."""

    plugin: str
    name: str
    dim: int
    metric: str
    count: int
    bytes: int
    created_at: float


@dataclass(frozen=True, slots=True)
class CollectionRow(CollectionFacts):
    """A collection's row: its facts, its id and the generation its changes have reached."""

    id: int
    generation: int


def check_name(name: str) -> None:
    """BadVector unless ``name`` is 1-128 of ``A-Z a-z 0-9 _ . : -``."""
    if not _NAME.fullmatch(name):
        raise BadVector(f"bad collection name {name[:140]!r}: 1-128 of A-Z a-z 0-9 _ . : -")


def check_id(vid: str) -> None:
    """BadVector unless ``vid`` is 1-512 bytes of UTF-8."""
    if not vid or len(vid.encode()) > _MAX_ID_BYTES:
        raise BadVector(f"a vector id is 1-{_MAX_ID_BYTES} bytes of UTF-8")


def check_filter(flt: Mapping[str, Any] | None) -> Filter:
    """``flt`` as checked pairs (booleans as 0/1); BadVector for a bad key or value."""
    return metadata.check_filter(flt, BadVector)


class VectorRows(abc.ABC):
    """Every plugin's collections and vector rows. Thread-safe.

    Vectors travel as little-endian ``f32`` bytes; metadata as JSON text (an object) or None.
    """

    @abc.abstractmethod
    def plugins(self) -> list[str]:
        """Plugins with at least one collection, sorted."""

    @abc.abstractmethod
    def collection(self, plugin: str, name: str) -> CollectionRow | None: ...

    @abc.abstractmethod
    def collection_by_id(self, coll_id: int) -> CollectionRow | None: ...

    @abc.abstractmethod
    def collections(self, plugin: str) -> list[CollectionRow]:
        """``plugin``'s collections, by name."""

    @abc.abstractmethod
    def create(self, plugin: str, name: str, dim: int, metric: str, max_collections: int,
               now: float) -> None:
        """Create ``name`` (no-op when it exists with ``dim``); BadVector when it exists
        with another dimension, QuotaExceeded over ``max_collections``."""

    @abc.abstractmethod
    def upsert(self, coll_id: int, plugin: str, vid: str, vector: bytes, meta: str | None,
               size: int, quota: VectorQuota) -> tuple[int, int]:
        """Insert or replace ``vid`` (``size`` bytes against ``plugin``'s quota, checked in
        the same transaction); ``(label, generation)``. A replaced row keeps its label."""

    @abc.abstractmethod
    def delete(self, coll_id: int, vid: str) -> tuple[int, int] | None:
        """Delete ``vid``: ``(its label, the new generation)``, or None when absent."""

    @abc.abstractmethod
    def drop(self, coll_id: int) -> bool:
        """Delete a whole collection and its rows; whether it existed."""

    @abc.abstractmethod
    def entries(self, coll_id: int) -> list[tuple[int, str, str | None]]:
        """Every row's ``(label, id, metadata)``: what a cache shows for a hit."""

    @abc.abstractmethod
    def changed(self, coll_id: int, since: int, after_label: int = -1,
                limit: int = 5000) -> list[tuple[int, bytes]]:
        """``(label, vector)`` of the rows written after generation ``since`` (all rows for
        -1), by label, from above ``after_label``: page with the last label seen."""

    @abc.abstractmethod
    def deleted(self, coll_id: int, since: int) -> list[int] | None:
        """Labels deleted after generation ``since``; None when the backend no longer keeps
        deletes that old (the cache rebuilds from :meth:`entries` then)."""

    @abc.abstractmethod
    def matching(self, coll_id: int, flt: Filter, limit: int | None) -> list[int]:
        """Labels whose metadata equals every pair of ``flt`` (at most ``limit``)."""

"""The plugin catalog's interface: published modules, their versions, and which one is in force.

A module is kept once per content digest (``sha256:<hex>``), in chunks of at most
:data:`CHUNK_BYTES` (one row each, read back one at a time), so no statement ever carries a
whole module: a 17 MiB plugin is 17 rows, never one value that a driver or a
``max_allowed_packet``-like limit has to swallow. Every publish is a version of a name (its
number, digest, the sidecar published with it, who and when), and each name points at the
version in force. A publish, a rollback and a removal are each one transaction that takes the
next number of one change sequence, in commit order, so a host that has seen every change up
to ``n`` catches up with :meth:`CatalogRows.changes` ``(since=n)`` and misses none (the same
rule as the operator's settings, :mod:`omnicore.storage.settings_rows`). What a name's
sidecar means and who may publish is decided above (:mod:`omnicore.plugins.catalog`).
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CHUNK_BYTES", "CatalogEntry", "CatalogRows", "Pinned", "PluginVersion",
           "full_digest", "version_digest"]

#: The largest chunk of a module one row holds.
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class PluginVersion:
    """One publish of a plugin name. Times are Unix seconds."""

    id: int
    name: str
    #: 1 for the first publish of the name, then one more each time.
    number: int
    #: ``sha256:<64 hex>``: the module's content address.
    digest: str
    size: int
    #: The sidecar published with it (grants requested, config, limits, mcp, ...).
    sidecar: dict[str, Any] = field(default_factory=dict)
    published_by: str | None = None
    published_at: float = 0.0
    #: Where it was published from: an OCI reference (``oci://REGISTRY/REPO@sha256:...``),
    #: None for a file or an upload.
    source: str | None = None
    #: The signatures published with it, as ``omnicore.oci.signature_to_json`` writes them;
    #: every host checks them against its own ``plugins.trust`` before it loads the module.
    signatures: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "number": self.number, "digest": self.digest,
                "size": self.size, "sidecar": self.sidecar, "published_by": self.published_by,
                "published_at": self.published_at, "source": self.source,
                "signatures": len(self.signatures),
                "signed_by": sorted({str(s.get("key") or "") for s in self.signatures} - {""})}


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A name in the catalog and the version in force (None: removed, so every host falls
    back to its own folder); ``seq`` numbers its last change."""

    name: str
    version: PluginVersion | None
    seq: int
    updated_at: float
    updated_by: str | None
    #: When the version in force was pinned (None: not pinned): a publish then adds a
    #: version without putting it in force, until the name is unpinned.
    pinned_at: float | None = None
    pinned_by: str | None = None

    @property
    def pinned(self) -> bool:
        return self.pinned_at is not None


class Pinned(Exception):
    """A change that would move a pinned name's version in force (a rollback, a removal)
    was refused; ``entry`` is the name as it stands."""

    def __init__(self, entry: CatalogEntry) -> None:
        super().__init__(f"plugin '{entry.name}' is pinned")
        self.entry = entry


class CatalogRows(abc.ABC):
    """The catalog of one app's storage. Thread-safe; shared by every host."""

    @abc.abstractmethod
    def publish(self, name: str, digest: str, size: int, chunks: Iterable[bytes],
                sidecar: dict[str, Any], *, by: str | None, at: float,
                keep: int, source: str | None = None,
                signatures: list[dict[str, Any]] | None = None) -> tuple[PluginVersion, bool]:
        """Make ``digest`` (with ``sidecar``, ``signatures`` and ``source``) the version of
        ``name`` in force, in one transaction no other catalog change interleaves with; the
        version and whether it is new (False: that module, sidecar and signatures were in
        force already, nothing changed; a pinned name: a new version kept, not put in
        force, unless it is the newest version again). ``chunks`` (each at most
        :data:`CHUNK_BYTES`, ``size`` bytes in all) are read only when the store does not hold
        the module yet. Versions of ``name`` beyond the newest ``keep`` (never the one in
        force) are dropped, and modules no version names any more with them."""

    @abc.abstractmethod
    def point(self, name: str, version_id: int, *, by: str | None,
              at: float) -> CatalogEntry:
        """Put version ``version_id`` (one of ``name``'s) in force (a rollback); KeyError
        when ``name`` has no such version, :class:`Pinned` when the name is pinned."""

    @abc.abstractmethod
    def remove(self, name: str, *, by: str | None, at: float) -> CatalogEntry | None:
        """Take ``name`` out of force (its versions stay, for a rollback); None when it was
        not in force. :class:`Pinned` when it is pinned."""

    @abc.abstractmethod
    def pin(self, name: str, version_id: int, *, by: str | None, at: float) -> CatalogEntry:
        """Put version ``version_id`` (one of ``name``'s) in force and keep it there: a
        publish adds a version without putting it in force, a rollback or a removal is
        refused (:class:`Pinned`), until :meth:`unpin`. KeyError when ``name`` has no such
        version."""

    @abc.abstractmethod
    def unpin(self, name: str, *, by: str | None, at: float) -> CatalogEntry | None:
        """Release ``name``'s pin and put its newest version in force (what would serve had
        it never been pinned); None when it was not pinned."""

    @abc.abstractmethod
    def entry(self, name: str) -> CatalogEntry | None:
        """``name``'s entry (None: never published)."""

    @abc.abstractmethod
    def entries(self) -> list[CatalogEntry]:
        """Every name with a version in force, by name."""

    @abc.abstractmethod
    def versions(self, name: str) -> list[PluginVersion]:
        """``name``'s versions kept, newest first."""

    @abc.abstractmethod
    def names_of(self, digest: str) -> list[str]:
        """The names with a version kept whose digest starts with ``digest`` (``sha256:`` and
        hex digits only), by name."""

    @abc.abstractmethod
    def changes(self, since: int, limit: int = 1000) -> list[CatalogEntry]:
        """The names changed after change number ``since``, oldest change first (removed ones
        included, with no version)."""

    @abc.abstractmethod
    def last_seq(self) -> int:
        """The number of the latest change (0 before the first)."""

    @abc.abstractmethod
    def module_size(self, digest: str) -> tuple[int, int] | None:
        """``(size, chunks)`` of the module stored under ``digest``, or None."""

    @abc.abstractmethod
    def chunk(self, digest: str, index: int) -> bytes | None:
        """Chunk ``index`` of the module ``digest`` (None: no such chunk)."""

    def read(self, digest: str) -> Iterator[bytes]:
        """The chunks of module ``digest`` in order, one read each; KeyError when the store
        does not hold it (removed meanwhile), LookupError when a chunk is missing."""
        found = self.module_size(digest)
        if found is None:
            raise KeyError(digest)
        for index in range(found[1]):
            data = self.chunk(digest, index)
            if data is None:
                raise LookupError(f"module {digest}: chunk {index} of {found[1]} is missing")
            yield data


def full_digest(text: str) -> str:
    """A digest as announced (``sha256:HEX`` or bare HEX, any case, spaces around) in the
    catalog's form, unchecked (a prefix stays one)."""
    text = text.strip().lower()
    return text if text.startswith("sha256:") else f"sha256:{text}"


def version_digest(text: str) -> str:
    """A plugin version as a job or a workflow step names it, in the catalog's form
    (``sha256:<64 lowercase hex>``; any case, the prefix optional); ValueError otherwise."""
    full = full_digest(text)
    hexpart = full.removeprefix("sha256:")
    if len(hexpart) != 64 or hexpart.strip("0123456789abcdef"):
        raise ValueError(f"digest {text[:80]!r} is not a plugin version: sha256:<64 hex "
                         "digits>, as omnicore plugins versions lists them")
    return full

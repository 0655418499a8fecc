"""The errors every store raises, whichever backend serves it.

Errors::

    OmniError
    └── StorageError           the database failed (names the file); host functions map it
        │                      to UNAVAILABLE
        ├── StorageFull        the disk (or the database's size cap) is full: nothing was
        │                      written; writes work again once there is space
        ├── DataDirLocked      another host holds the data dir (names its pid, runtime id)
        ├── SchemaBehind       the schema is older than this host needs and it was told not
        │                      to migrate (storage.migrate: false): run `omnicore migrate`
        ├── SchemaAhead        the schema is newer than this host knows and not one it can
        │                      run on: upgrade omnicore
        └── StorageRefused     a request the backend turned down on purpose (also an
            │                  omnicore.errors.Refused; ``Refused`` here is its old name)
            ├── QuotaExceeded      over max_bytes / max_keys / max_queued   -> QUOTA
            ├── ValueTooLarge      over max_value_bytes                     -> TOO_LARGE
            └── NotAnInteger       incr on a value that is not decimal ASCII -> INVALID

The memory and vector interfaces add refusals of their own (``BadMemory``, ``BadVector``,
``UnknownCollection``) under :class:`StorageRefused`.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from omnicore.errors import OmniError
from omnicore.errors import Refused as _Refused

__all__ = ["DataDirLocked", "NotAnInteger", "QuotaExceeded", "Refused", "SchemaAhead",
           "SchemaBehind", "StorageError", "StorageFull", "StorageRefused", "ValueTooLarge"]


class StorageError(OmniError):
    """The database failed: corrupt, locked, unwritable, or from a newer omnicore."""

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.path = path


class StorageFull(StorageError):
    """A write found no space (``ENOSPC``, SQLite's "database or disk is full"); it was rolled
    back, everything acknowledged before it is kept, and reads go on working."""


class DataDirLocked(StorageError):
    """Another live host holds the data dir's lock; ``holder`` is what it wrote about itself
    (``pid``, ``runtime_id``, ``console_url``)."""

    def __init__(self, message: str, *, path: Path | str | None = None,
                 holder: dict[str, object] | None = None) -> None:
        super().__init__(message, path=path)
        self.holder = dict(holder or {})


class SchemaBehind(StorageError):
    """The schema is older than this host needs, and ``storage.migrate`` is false: nothing
    was changed; ``omnicore migrate`` applies the pending steps."""


class SchemaAhead(StorageError):
    """The schema was written by a newer omnicore and records that this host is too old to
    run on it."""


class StorageRefused(StorageError, _Refused):
    """The backend turned a request down on purpose; nothing was written. ``status`` names
    the specs/abi.md §3.1 status a host function answers it with, as egress's refusals do."""

    status: ClassVar[str] = "INVALID"


#: The name users and the stores have always used; the one class named Refused is
#: :class:`omnicore.errors.Refused`, the base of every refusal.
Refused = StorageRefused


class QuotaExceeded(Refused):
    """A per-plugin quota (keys, bytes, queued jobs) would be exceeded."""

    status = "QUOTA"


class ValueTooLarge(Refused):
    """A single value is over its size limit."""

    status = "TOO_LARGE"


class NotAnInteger(Refused):
    """``incr`` on a value that is not a decimal integer (or would overflow 64 bits)."""

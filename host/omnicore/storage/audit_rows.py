"""The audit log's interface: who changed what, when and from where.

An entry is written for a change an operator makes (a grant, a config key, a plugin upload,
a user or token), by whichever surface made it; values are JSON (``before`` and ``after``:
what the target was and became, None where there was nothing). Secret values are never
entries' values: the caller records a secret by name. The log only grows; the oldest entries
are purged by age (``retention.audit``, omnicore.storage.retention).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

__all__ = ["AuditEntry", "AuditLog"]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: float
    actor: str            # a user name ("local" for the CLI's token, "operator" when open)
    action: str           # dotted, e.g. "grant.add", "config.set", "plugin.upload"
    #: What it changed: a plugin ``NAME``, or a part of one ``NAME/capability-or-key``, or
    #: ``kind:id`` for what belongs to no plugin (``user:ada``, ``secret:DB_URL``).
    target: str | None
    before: Any
    after: Any
    origin: str | None    # the client's address (", API token" when sent with one), or "cli"

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


class AuditLog(abc.ABC):
    """The app's audit entries. Thread-safe; ids grow with time."""

    @abc.abstractmethod
    def append(self, actor: str, action: str, target: str | None, before: Any, after: Any,
               origin: str | None, at: float) -> int:
        """Record one change; its id."""

    @abc.abstractmethod
    def entries(self, *, actor: str | None = None, action_prefix: str = "",
                target: str | None = None, since: float | None = None,
                before_id: int | None = None, limit: int = 100,
                plugin: str | None = None) -> list[AuditEntry]:
        """Newest first, matching every filter given; ``before_id`` pages back; ``plugin``
        matches a target that is the plugin or one of its parts (``plugin/...``)."""

    @abc.abstractmethod
    def purge(self, before: float, *, limit: int | None = None) -> int:
        """Delete the entries older than ``before``, oldest first, at most ``limit`` (None:
        all) in one transaction; how many."""

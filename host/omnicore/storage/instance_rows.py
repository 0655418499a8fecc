"""The instance table's interface: which hosts share this storage, and which of them died.

Every running host registers a row (runtime id, host name, pid, console URL, version, start)
and heartbeats it. :meth:`InstanceRows.reap` is the takeover: an instance found dead loses its
row, and the job and workflow-step leases it held become due again at once, in the same
transaction, with their delivery counted (at-least-once: the next owner's attempt is the
second delivery). How a backend knows an instance is dead is its own business: SQLite by the
heartbeat alone; PostgreSQL also by a session advisory lock that the server drops the moment
the instance's connection closes, so a SIGKILLed host is noticed in well under a second.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["KEEP_LOST_S", "Instance", "InstanceRows", "LostInstance"]

#: How long a dead instance stays listed as lost (the Instances page: what happened to it).
KEEP_LOST_S = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class _Host:
    """What identifies a registered host, alive or lost: its row's first columns."""

    runtime_id: str
    hostname: str
    pid: int
    version: str
    started_at: float
    heartbeat_at: float


@dataclass(frozen=True, slots=True)
class Instance(_Host):
    """One host as registered. Times are Unix seconds."""

    console_url: str | None = None
    jobs_held: int = 0
    draining: bool = False
    #: What the host reported of its plugins (:meth:`InstanceRows.report`): name -> the
    #: digest it serves, where it came from, and the catalog's digest it could not load.
    plugins: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LostInstance(_Host):
    """An instance found dead: when it stopped answering (its last heartbeat), when and by
    whom it was reaped, and the jobs (ids) and workflow steps (``run/step/index``) whose
    leases it held and that were handed on. Times are Unix seconds."""

    lost_at: float
    reaped_by: str
    jobs: tuple[int, ...] = ()
    steps: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["jobs"], d["steps"] = list(self.jobs), list(self.steps)
        return d


class InstanceRows(abc.ABC):
    """The instance table. Thread-safe."""

    @abc.abstractmethod
    def register(self, instance: Instance) -> None:
        """Add (or replace) ``instance``'s row; from now on the backend watches its liveness."""

    @abc.abstractmethod
    def heartbeat(self, runtime_id: str, now: float, jobs_held: int,
                  console_url: str | None = None) -> Instance | None:
        """Refresh the row; the row as stored (its ``draining`` flag is how an operator's
        drain reaches the instance), or None when it is gone: another instance found this one
        dead and took its work, so it must register again before it claims anything."""

    @abc.abstractmethod
    def report(self, runtime_id: str, plugins: Mapping[str, Any]) -> bool:
        """Keep ``plugins`` (JSON-ready: name -> what the host serves of it) on the instance's
        row for the others to read; False when the row is gone (not registered, or reaped)."""

    @abc.abstractmethod
    def all(self) -> list[Instance]:
        """Every registered instance, oldest first."""

    @abc.abstractmethod
    def set_draining(self, runtime_id: str, draining: bool) -> bool:
        """Ask an instance to drain (stop claiming, finish in-flight work, exit); False when
        no such instance is registered."""

    @abc.abstractmethod
    def remove(self, runtime_id: str) -> None:
        """A clean stop: the row goes (its leases were already given back)."""

    @abc.abstractmethod
    def reap(self, me: str, now: float, dead_after_s: float) -> list[str]:
        """Find the instances other than ``me`` that are dead (heartbeat older than
        ``dead_after_s``, or whatever faster proof the backend has), delete their rows and make
        every job and workflow step they leased due at once; their runtime ids. Each is
        recorded as lost (reaped by ``me``, with what it held) for :data:`KEEP_LOST_S`."""

    @abc.abstractmethod
    def lost(self, now: float) -> list[LostInstance]:
        """The instances reaped within :data:`KEEP_LOST_S` before ``now``, newest first."""

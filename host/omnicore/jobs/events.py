"""What the job service tells the app's event bus, and the event hop count of the call
running on this thread (every job and event delivery carries it: the cycle guard)."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from omnicore.core.events import Event

__all__ = ["JobDead", "JobFailed", "JobQueued", "JobStarted", "JobSucceeded", "at_hops",
           "current_hops"]

#: The event hop count of the call running on this thread (subscriptions raise it per hop).
current_hops: contextvars.ContextVar[int] = contextvars.ContextVar("omnicore_hops", default=0)


@contextmanager
def at_hops(n: int) -> Iterator[None]:
    """Run with ``current_hops`` set to ``n`` (event deliveries count their hops)."""
    token = current_hops.set(n)
    try:
        yield
    finally:
        current_hops.reset(token)


@dataclass(frozen=True, slots=True, kw_only=True)
class _JobEvent(Event):
    """What every ``job.*`` event names: the job, the plugin handler it calls, and the event
    hops that led to it."""

    job_id: int
    plugin: str
    handler: str
    hops: int = 0  # event hops that led here, plus one (cycle guard)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobQueued(_JobEvent, topic="job.queued"):
    """A job was queued; ``source`` is what queued it."""

    source: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _JobAttempt(_JobEvent):
    """What every event of one attempt of a job names: which attempt (1 the first)."""

    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _AttemptFailed(_JobAttempt):
    """What every event of a failed attempt names: its error."""

    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobStarted(_JobAttempt, topic="job.started"):
    """An attempt of a job was leased and began running."""


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSucceeded(_JobAttempt, topic="job.succeeded"):
    """An attempt returned normally; the job is done."""

    duration_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFailed(_AttemptFailed, topic="job.failed"):
    """One attempt failed; it runs again at ``retry_at``."""

    retry_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class JobDead(_AttemptFailed, topic="job.dead"):
    """The last attempt failed; the job stays ``dead`` until an operator retries it."""

"""``retention.*``: how long finished work is kept before the sweep deletes it.

Every table that grows with use has a retention here (omnicore.storage.retention sweeps them,
one host of a cluster at a time). A retention is a duration (``12h``, ``7d``, ``90d``; a
number is seconds), or ``0`` / ``never`` to keep for ever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from omnicore.config.durations import parse_duration, parse_retention
from omnicore.config.strict import Strict

__all__ = ["MIN_RETENTION_S", "RetentionConfig"]

#: The shortest retention taken: another host reads an event it was told of by its id a moment
#: after the append, and an operator needs a moment to look at a finished job.
MIN_RETENTION_S = 60.0


def _retention(value: Any) -> float | None:
    seconds = parse_retention(value)
    if seconds is not None and seconds < MIN_RETENTION_S:
        raise ValueError(f"{value!r} is shorter than a minute: keep rows at least 1m, or "
                         "0 / never to keep them for ever")
    return seconds


#: The shortest sweep period taken: each sweep is a claim and a transaction a table on the
#: shared database; ``0.001`` (a sweep a millisecond) was taken.
MIN_SWEEP_S = 1.0


def _every(value: Any) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a duration like 30m, 1h, 6h (a number is "
                         "seconds)") from None
    if seconds < MIN_SWEEP_S:
        raise ValueError(f"{value!r} is shorter than a second: sweep at most once a second "
                         "(the default is 1h)")
    return seconds


def _written(text: str) -> Callable[[], Any]:
    # The default as an operator writes it (so the reference shows "7d"), validated as one.
    return lambda: text


Retention = Annotated[float | None, BeforeValidator(_retention)]
Every = Annotated[float, BeforeValidator(_every)]


class RetentionConfig(Strict):
    """``retention.*``: how long finished work is kept (a duration: ``12h``, ``7d``, ``90d``,
    a number is seconds; ``0`` or ``never``: for ever). Work still to do is never deleted:
    queued and running jobs, runs still queued or running (and a finished sub-workflow run
    whose parent still runs). One host of a cluster sweeps at a time, every ``sweep_every``,
    in transactions of ``batch`` rows; each sweep logs what it deleted and counts it in
    ``omnicore_retention_deleted_total{table}`` (docs/operations/retention.md)."""

    jobs: Retention = Field(
        default_factory=_written("7d"),
        description="succeeded and cancelled jobs, by when they finished: a week of results "
                    "to look back on (each row keeps up to 64 KiB of the job's output, the "
                    "largest thing the queue holds)")
    dead_letter: Retention = Field(
        default_factory=_written("30d"),
        description="dead jobs (every attempt failed), by when they died: they wait for an "
                    "operator to read and retry them, so a month, longer than a holiday")
    audit: Retention = Field(
        default_factory=_written("365d"),
        description="audit entries, by when the change was made: a year, what compliance "
                    "reviews commonly ask for; entries are small (an operator's change, never "
                    "traffic)")
    events: Retention = Field(
        default_factory=_written("7d"),
        description="the event log (also bounded by capabilities.events.retain, 10000 "
                    "events), by when the event was published: it is for operators looking "
                    "back; a durable delivery carries its own copy of the event")
    workflow_runs: Retention = Field(
        default_factory=_written("30d"),
        description="finished workflow runs with their steps and history, by when the run "
                    "ended: a month to read a run's history or restart a failed run")
    sweep_every: Every = Field(
        default_factory=_written("1h"),
        description="how often the sweep runs (on one host of the cluster: the first to claim "
                    "the period); a sweep stops at the end of its period and the next goes on")
    batch: int = Field(
        default=1000, gt=0, le=100_000,
        description="rows deleted per transaction, so a huge table never holds a long "
                    "transaction or lock")

    def keep(self) -> dict[str, float | None]:
        """Each table's retention in seconds (None: kept for ever), by its key."""
        return {"jobs": self.jobs, "dead_letter": self.dead_letter, "audit": self.audit,
                "events": self.events, "workflow_runs": self.workflow_runs}

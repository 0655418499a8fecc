"""``Membership``: this host's row in the instance table, kept alive by one thread."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field

from omnicore.core.identity import hostname
from omnicore.core.outage import Outage
from omnicore.logging import get_logger
from omnicore.storage.base import Storage, StorageError
from omnicore.storage.instance_rows import Instance, LostInstance

__all__ = ["ClusterSettings", "Membership"]

_log = get_logger("omnicore.cluster")


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """``cluster.*``: how often this host says it lives, and when another one is dead."""

    heartbeat_s: float = 1.0
    dead_after_s: float = 3.0
    #: How often the instance table is searched for the dead. Cheap (one indexed statement), and
    #: it bounds the takeover on PostgreSQL, where a killed host's lock vanishes at once.
    check_s: float = 0.25


@dataclass(eq=False)
class Membership:
    """Registers ``runtime_id`` on :meth:`start`, heartbeats and reaps until :meth:`stop`.

    ``jobs_held`` counts this host's running jobs for the instance table; ``wake`` is called after
    dead instances' work became due (so local idle workers claim it now); ``on_drain`` once,
    when an operator asks this host to drain.
    """

    storage: Callable[[], Storage]
    runtime_id: str
    version: str
    _: KW_ONLY
    settings: ClusterSettings = ClusterSettings()
    console_url: Callable[[], str | None] = lambda: None
    jobs_held: Callable[[], int] = lambda: 0
    wake: Callable[[], None] = lambda: None
    on_drain: Callable[[], None] = lambda: None
    draining: bool = field(default=False, init=False)
    _started_at: float = field(default_factory=time.time, init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)
    _registered: bool = field(default=False, init=False, repr=False)
    #: An outage of the storage pauses the heartbeat and the reaper (one log line);
    #: the first tick after it beats at once.
    _outage: Outage = field(init=False, repr=False, default_factory=lambda: Outage(
        "cluster heartbeat", _log, transient=(StorageError,)))
    _next_beat: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._every = self.settings.heartbeat_s

    def _me(self, now: float) -> Instance:
        return Instance(self.runtime_id, hostname(), os.getpid(), self.version,
                        self._started_at, now, self.console_url(), self.jobs_held())

    def start(self) -> None:
        """Register now (so the instance table lists this host before it claims anything) and
        start the heartbeat thread."""
        self._register()
        self._thread = threading.Thread(target=self._run, name="omnicore-cluster", daemon=True)
        self._thread.start()

    def _register(self) -> None:
        self.storage().instances.register(self._me(time.time()))
        self._registered = True

    @property
    def unavailable(self) -> str | None:
        """None while the storage answers; else why not (for ``/readyz``)."""
        return self._outage.reason

    def instances(self) -> list[Instance]:
        return self.storage().instances.all()

    def _run(self) -> None:
        # An embedded database has one host (the data dir's lock): nobody to watch closely.
        if self.storage().shared:
            self._every = self.settings.check_s
        while not self._stop.wait(self._outage.pause(self._every)):
            self._outage.call(self._tick, None)

    def _tick(self) -> None:
        now = time.time()
        if not self._registered:
            self._register()
        if time.monotonic() >= self._next_beat or self._outage.down:
            self._next_beat = time.monotonic() + self.settings.heartbeat_s - self._every / 2
            self._beat(now)
        instances = self.storage().instances
        dead = instances.reap(self.runtime_id, now, self.settings.dead_after_s)
        if dead:
            # The lost rows say what each dead host held: the operator reading the log learns
            # which jobs may run twice (at-least-once) without opening the console.
            lost = [i for i in instances.lost(now) if i.runtime_id in dead]
            _log.warning("cluster: instance(s) %s stopped answering; %s handed on, now due "
                         "again", ", ".join(dead), _handed_on(lost))
            self.wake()

    def _beat(self, now: float) -> None:
        row = self.storage().instances.heartbeat(self.runtime_id, now, self.jobs_held(),
                                                 self.console_url())
        if row is None:
            # Another instance declared this one dead (a long pause, a lost connection) and
            # took its leases: say so and register again; our in-flight jobs' results are
            # refused by their lost leases, and the jobs run again elsewhere (at-least-once).
            _log.warning("cluster: this instance (%s) was declared dead by another and its "
                         "leases were handed on; registering again", self.runtime_id)
            self._register()
            return
        if row.draining and not self.draining:
            self.draining = True
            _log.warning("cluster: drain requested: no new jobs are claimed; in-flight work "
                         "finishes, then this host stops")
            self.on_drain()

    def stop(self) -> None:
        """Stop heartbeating and leave the instance table (a clean stop; leases were given back)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._registered:
            try:
                self.storage().instances.remove(self.runtime_id)
            except StorageError as exc:
                _log.warning("cluster: could not leave the instance table: %s", exc)
            self._registered = False


def _handed_on(lost: list[LostInstance], shown: int = 10) -> str:
    """``3 jobs (4, 7, 9) and 1 workflow step (12/fetch/0)``: counts, and at most ``shown``
    ids of each, so a host that held thousands still makes one short line."""
    jobs = [str(j) for i in lost for j in i.jobs]
    steps = [s for i in lost for s in i.steps]

    def part(ids: list[str], noun: str) -> str:
        more = f", … {len(ids) - shown} more" if len(ids) > shown else ""
        plural = "" if len(ids) == 1 else "s"
        return f"{len(ids)} {noun}{plural} ({', '.join(ids[:shown])}{more})"

    parts = [part(jobs, "job")] if jobs else []
    if steps:
        parts.append(part(steps, "workflow step"))
    return " and ".join(parts) if parts else "no job or workflow step"

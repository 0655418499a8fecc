"""Background loops that live through an outage of what they depend on (the database, mostly).

A loop runs each step through :meth:`Outage.call` (or :meth:`Outage.persist` for a write that
must land, such as a job's outcome after its plugin call ran). While the step fails the loop
is in an outage:

* the first failure logs **one** line: a ``transient`` error (what the loop depends on
  failing: by default omnicore's own errors, whose message says what failed) by its
  message; anything else is a bug, logged with its traceback. Nothing more is logged while
  the outage lasts, however often the loop ticks;
* the loop backs off: :meth:`Outage.pause` grows with the outage's age up to ``max_s``, so
  a stopped database is not hammered and a returned one is seen within ``max_s``;
* the first success after it logs one line saying the loop resumed and how long it was out,
  then runs the ``on_resume`` callbacks (the leased workers renew the leases they hold at
  once, rather than letting them lapse).

One :class:`Outage` may be shared by the threads of one loop (a queue's workers): the outage
is then logged once for all of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import TypeVar

from omnicore.errors import OmniError
from omnicore.logging import BoundLogger

__all__ = ["Outage"]

T = TypeVar("T")


@dataclass(eq=False)
class Outage:
    """The outage state of one loop named ``what`` (``"job queue"``), logged on ``log``;
    ``transient`` are the errors of what it depends on (the storage's ``StorageError``)."""

    what: str
    log: BoundLogger
    _: KW_ONLY
    transient: tuple[type[Exception], ...] = (OmniError,)
    first_s: float = 0.1
    max_s: float = 2.0
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    #: Monotonic start of the outage; None: up.
    _since: float | None = field(default=None, init=False, repr=False)
    #: Why the loop is out (the first failure's message), or None while it works.
    reason: str | None = field(default=None, init=False)
    _on_resume: list[Callable[[], None]] = field(default_factory=list, init=False, repr=False)

    @property
    def down(self) -> bool:
        """Whether the last step failed."""
        return self._since is not None

    def on_resume(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (on the resuming thread) each time an outage ends."""
        self._on_resume.append(callback)

    def call(self, step: Callable[[], T], default: T) -> T:
        """``step()``, or ``default`` when it fails (the failure counted, logged once)."""
        try:
            result = step()
        except Exception as exc:
            self.failed(exc)
            return default
        self.succeeded()
        return result

    def persist(self, step: Callable[[], T], stop: threading.Event) -> T:
        """``step()``, tried again through an outage until it works: on a transient error
        only (anything else is raised at once), and until ``stop`` is set (then the last
        error is raised)."""
        while True:
            try:
                result = step()
            except self.transient as exc:
                self.failed(exc)
                if stop.wait(self.pause()):
                    raise
                continue
            self.succeeded()
            return result

    def pause(self, normal_s: float = 0.0) -> float:
        """How long the loop waits before its next step: ``normal_s`` while it works; in an
        outage a quarter of its age, never less than ``first_s`` nor ``normal_s`` and never
        more than ``max_s`` (so a returned database is seen within ``max_s``)."""
        since = self._since
        if since is None:
            return normal_s
        return min(self.max_s, max(self.first_s, normal_s, (time.monotonic() - since) / 4))

    def failed(self, exc: BaseException) -> None:
        """Count a failed step: the first of an outage is logged."""
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
            self.reason = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, self.transient):
            self.log.error("%s paused: %s; retrying in the background", self.what,
                           self.reason)
        else:
            self.log.error("%s paused by a failure; retrying in the background", self.what,
                           exc_info=exc)

    def succeeded(self) -> None:
        """Count a step that worked: the first after an outage is logged, then the
        ``on_resume`` callbacks run."""
        if self._since is None:
            return
        with self._lock:
            since, self._since = self._since, None
            self.reason = None
        if since is None:
            return  # another thread of the loop saw the end first
        self.log.info("%s resumed after %.1fs", self.what, time.monotonic() - since)
        for callback in list(self._on_resume):
            try:
                callback()
            except Exception:
                self.log.exception("%s: resuming failed", self.what)

"""Plugin log lines to Python logging, from a thread of their own, in batches.

A line reaches its plugin's ring at call speed (``sandbox/logring.py``); what Python logging
and its handlers do with it (format, write to a stream, ship as JSON) would cost the call tens
of microseconds, so it happens here, after the call. The ring is the queue: the forwarder
sleeps until a ring has lines it has not taken, takes them in order, and hands each to
``omnicore.plugin.<name>`` with the time the plugin said it, and to each tap (:func:`add_tap`:
the console's live feed), which takes every line whatever the host's log level, without a
``LogRecord`` made for it.

Bounded: waiting lines are the rings' own (no copy; ``capacity`` lines and ``max_bytes`` each),
and a batch in hand holds at most ``MAX_PENDING`` lines and ``MAX_PENDING_BYTES``. When the
handlers fall so far behind that lines leave a ring before they were taken, those lines stay
out of Python logging and their count is reported in one warning per round. :meth:`flush`
waits for every line written before it; the process flushes at exit, so nothing kept is lost
on a normal stop.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from omnicore.sandbox.logring import LEVELS, PY_LEVELS

__all__ = ["Forwarder", "Tap", "add_tap", "remove_tap"]

_LOG = logging.getLogger("omnicore.plugin")

#: ``tap(plugin, level, message, created)``, with ``level`` a name of ``LEVELS``.
Tap = Callable[[str, str, str, float], None]

#: Replaced, never changed in place: a forwarder reads it once per batch without a lock.
_taps: tuple[Tap, ...] = ()


def add_tap(tap: Tap) -> None:
    """Give ``tap`` every plugin line from now on, on the forwarder's thread.

    Why not a logging handler: the live feed wants plugins' info lines on a host whose log is
    set to warning, and lowering ``omnicore.plugin``'s level for it made a ``LogRecord`` (and
    a handler round) for each line only to be dropped by the stream's handler: a REST invoke
    of a plugin that logs paid a tenth of its server CPU for it (issue 63).
    """
    global _taps
    _taps = (*_taps, tap)


def remove_tap(tap: Tap) -> None:
    global _taps
    _taps = tuple(t for t in _taps if t is not tap)


class Signal(Protocol):
    """What a ring implementation offers the forwarder (``logring.PySignal``, ``_logring``)."""

    def wait(self) -> None: ...
    def swap(self) -> list[Any]: ...
    def wake(self) -> None: ...


class Forwarder:
    """The thread that takes the lines of one ring implementation's rings to Python logging.

    A ring it drains has ``take``, ``written``, ``plugin`` and ``logger``.
    """

    MAX_PENDING = 10_000
    MAX_PENDING_BYTES = 16 << 20
    #: Once woken, how long the forwarder lets lines gather before it takes them. Woken for
    #: each line (a REST invoke's one line a call, at thousands of calls a second), the
    #: thread's wake-up and its hand-over of the GIL with the event loop cost the calls more
    #: than the lines did: a futex wake on the writer's side, a switch in, a switch out, each
    #: request (issues 62, 63). While it lingers a write wakes nobody; :meth:`flush` cuts it.
    LINGER_S = 0.02

    def __init__(self, signal: Signal) -> None:
        self._signal = signal
        self._lock = threading.Lock()
        self._waiters: list[threading.Event] = []
        self._hurry = threading.Event()
        self._thread: threading.Thread | None = None
        #: Lines that left their ring before this forwarder took them (never forwarded).
        self.dropped = 0

    def start(self) -> None:
        """Start the thread (once) and flush at exit."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="omnicore-plugin-logs",
                                                daemon=True)
                self._thread.start()
                atexit.register(self.flush)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every line written before this call has reached Python logging."""
        if self._thread is None:
            return True
        done = threading.Event()
        with self._lock:
            self._waiters.append(done)
        self._hurry.set()
        self._signal.wake()
        return done.wait(timeout)

    def _run(self) -> None:
        while True:
            self._signal.wait()
            self._hurry.clear()
            if not self._waiters:  # a flush set _hurry after this look: the wait ends at once
                self._hurry.wait(self.LINGER_S)
            # Waiters first: a line written before a flush() is then on a ring swapped below
            # (or was taken in an earlier round), so setting them after this round is right.
            with self._lock:
                waiters, self._waiters = self._waiters, []
            rings = self._signal.swap()
            # Each ring up to what it had now: one that keeps writing is listed again for the
            # next round instead of holding up the others and the flushes.
            ends = [ring.written for ring in rings]
            missed = 0
            for ring, end in zip(rings, ends, strict=True):
                try:
                    missed += self._drain(ring, end)
                except Exception:  # one broken ring must not end the forwarding for all
                    _LOG.exception("plugin log lines of %r could not be forwarded", ring)
            if missed:
                self.dropped += missed
                _LOG.warning("%d plugin log line(s) never reached Python logging: its "
                             "handlers fell so far behind that the lines left their plugins' "
                             "logs first", missed)
            for done in waiters:
                done.set()

    def _drain(self, ring: Any, end: int) -> int:
        missed = 0
        while True:
            lost: int
            lines: list[tuple[float, int, str]]
            lost, lines = ring.take(self.MAX_PENDING, self.MAX_PENDING_BYTES, end)
            missed += lost
            if not lines:
                return missed
            logger: logging.Logger = ring.logger
            plugin: str = ring.plugin
            taps = _taps
            for created, level, message in lines:
                for tap in taps:
                    try:
                        tap(plugin, LEVELS[level], message, created)
                    except Exception:  # a broken tap must not end the forwarding
                        _LOG.debug("a plugin log tap failed", exc_info=True)
                self._emit(logger, plugin, level, message, created)

    @staticmethod
    def _emit(logger: logging.Logger, plugin: str, level: int, message: str,
              created: float) -> None:
        py_level = PY_LEVELS[level]
        try:
            if logger.isEnabledFor(py_level):
                record = logger.makeRecord(logger.name, py_level, "(plugin)", 0, "%s",
                                           (message,), None,
                                           extra={"plugin": plugin,
                                                  "plugin_level": LEVELS[level]})
                # When the plugin said it, not when this thread got to it.
                record.created = created
                record.msecs = (created - int(created)) * 1000
                logger.handle(record)
        except Exception:  # a broken handler must not end the forwarding
            _LOG.debug("a log handler failed", exc_info=True)

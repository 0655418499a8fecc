"""A plugin's own log: a ring buffer for the console plus forwarding to Python logging."""

from __future__ import annotations

import atexit
import logging
import queue
import sys
import threading
import time
from collections import deque
from typing import Any, NamedTuple

__all__ = ["LEVELS", "LogLine", "PluginLog", "flush"]

#: ABI levels (specs/abi.md §4.1) by number; the index is the wire value.
LEVELS = ("trace", "debug", "info", "warn", "error")
_PY_LEVELS = (5, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)


class LogLine(NamedTuple):
    """One line of a plugin's log. (A named tuple: made on every log call, it costs a third
    of a frozen dataclass.)"""

    time: float
    level: str
    message: str


class _Forwarder:
    """Hands plugin log lines to Python logging on a thread of its own, in order.

    A line reaches the plugin's ring at call speed; what Python logging and its handlers do
    with it (format, write to a stream, ship as JSON) would cost the call tens of
    microseconds, so it happens here, after the call. Bounded: at most ``MAX_PENDING`` lines
    and ``MAX_PENDING_BYTES`` of text wait; beyond, a line stays in its plugin's ring but is
    not forwarded, and the count is reported in one warning once the handlers caught up.
    :func:`flush` waits for every line queued before it; the process flushes at exit, so
    nothing queued is lost on a normal stop.
    """

    MAX_PENDING = 10_000
    MAX_PENDING_BYTES = 16 << 20

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Any, ...] | threading.Event] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0
        self._bytes = 0
        self._thread: threading.Thread | None = None
        #: Lines not forwarded because the handlers were too far behind, and not yet reported.
        self.dropped = 0
        self._unreported = 0

    def put(self, logger: logging.Logger, level: int, plugin: str, level_name: str,
            message: str, created: float) -> bool:
        cost = len(message)
        with self._lock:
            if self._pending >= self.MAX_PENDING or self._bytes + cost > self.MAX_PENDING_BYTES:
                self.dropped += 1
                self._unreported += 1
                return False
            self._pending += 1
            self._bytes += cost
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="omnicore-plugin-logs",
                                                daemon=True)
                self._thread.start()
                atexit.register(self.flush)
        self._queue.put((logger, level, plugin, level_name, message, created))
        return True

    def flush(self, timeout: float = 5.0) -> bool:
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def _run(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if isinstance(item, threading.Event):
                item.set()
                continue
            logger, level, plugin, level_name, message, created = item
            with self._lock:
                self._pending -= 1
                self._bytes -= len(message)
                missed = self._unreported if self._pending == 0 else 0
                self._unreported -= missed
            try:
                if logger.isEnabledFor(level):
                    record = logger.makeRecord(logger.name, level, "(plugin)", 0, "%s",
                                               (message,), None,
                                               extra={"plugin": plugin,
                                                      "plugin_level": level_name})
                    # When the plugin said it, not when this thread got to it.
                    record.created = created
                    record.msecs = (created - int(created)) * 1000
                    logger.handle(record)
            except Exception:  # a broken handler must not end the forwarding
                logging.getLogger("omnicore.plugin").debug("a log handler failed",
                                                          exc_info=True)
            if missed:
                logging.getLogger("omnicore.plugin").warning(
                    "%d plugin log line(s) were kept in their plugins' logs but not passed to "
                    "Python logging: its handlers were %d lines behind", missed,
                    self.MAX_PENDING)


_FORWARDER = _Forwarder()


def flush(timeout: float = 5.0) -> bool:
    """Wait until every plugin log line written so far has reached Python logging (lines go
    there from a thread of their own, after the call); False if ``timeout`` passed first."""
    return _FORWARDER.flush(timeout)


def level_number(level: int | str) -> int:
    """Clamp an ABI level number, or map a level name, to 0..4."""
    if isinstance(level, str):
        name = level.lower()
        if name == "warning":
            name = "warn"
        if name not in LEVELS:
            raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
        return LEVELS.index(name)
    return min(max(level, 0), len(LEVELS) - 1)


class PluginLog:
    """The last lines a plugin logged, also forwarded to ``omnicore.plugin.<name>``.

    What a plugin can make the host spend here is bounded twice, in bytes of host memory
    (``sys.getsizeof`` of the text: a line of 4-byte characters costs four times its length):
    the ring keeps at most ``capacity`` lines and ``max_bytes`` bytes, and two token buckets
    let through ``rate_bytes`` bytes and ``rate_lines`` records per second (bursts up to the
    same), so a guest that logs in a loop, in long lines or in tiny ones, cannot flood the
    host's logging either. Dropped lines are counted (:attr:`dropped`) and
    reported in one line once the budget allows again. Lines below ``min_level`` are not kept
    (that is what ``omnicore:log.enabled`` reports).
    """

    #: Bookkeeping per line besides its text (the LogLine and deque slot), for the budgets.
    LINE_OVERHEAD = 120
    #: How often at most the count of dropped lines is reported.
    NOTE_EVERY_S = 1.0

    def __init__(self, plugin: str, *, capacity: int = 1000, max_bytes: int = 1 << 20,
                 rate_bytes: int = 1 << 20, rate_lines: int = 500,
                 min_level: int | str = "info",
                 logger: logging.Logger | None = None) -> None:
        self.plugin = plugin
        self.min_level = level_number(min_level)
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._lines: deque[tuple[LogLine, int]] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        #: Lines kept so far (not capped by capacity): a caller notes it before a call to find
        #: what the plugin said during that call (see :meth:`since`).
        self.written = 0
        #: Lines dropped by the rate budget so far, and those not yet reported.
        self.dropped = 0
        self._unreported = 0
        self._rate = float(rate_bytes)
        self._tokens = float(rate_bytes)
        self._line_rate = float(rate_lines)
        self._line_tokens = float(rate_lines)
        self._refilled = time.monotonic()
        self._noted = float("-inf")
        self._logger = logger or logging.getLogger(f"omnicore.plugin.{plugin}")

    @property
    def rate_bytes(self) -> int:
        """Bytes per second let through (``limits.max_log_bytes_per_s``)."""
        return int(self._rate)

    @rate_bytes.setter
    def rate_bytes(self, value: int) -> None:
        with self._lock:
            self._rate = float(value)
            # A log that has taken no line yet starts full at its configured budget (runtimes
            # set it right after making the log); later changes never add a free burst.
            self._tokens = self._rate if self._fresh() else min(self._tokens, self._rate)

    def enabled(self, level: int) -> bool:
        """Whether a line of ``level`` (ABI number) would be kept."""
        return level_number(level) >= self.min_level

    @property
    def rate_lines(self) -> int:
        """Lines per second let through (``limits.max_log_lines_per_s``)."""
        return int(self._line_rate)

    @rate_lines.setter
    def rate_lines(self, value: int) -> None:
        with self._lock:
            self._line_rate = float(value)
            self._line_tokens = (self._line_rate if self._fresh()
                                 else min(self._line_tokens, self._line_rate))

    def _fresh(self) -> bool:
        return self.written == 0 and self.dropped == 0

    def _take(self, cost: int) -> bool:
        # Called with the lock held. Two buckets refilled together: bytes, and records (each
        # record costs Python logging and its handlers far more than its bytes).
        now = time.monotonic()
        passed = now - self._refilled
        self._tokens = min(self._rate, self._tokens + passed * self._rate)
        self._line_tokens = min(self._line_rate, self._line_tokens + passed * self._line_rate)
        self._refilled = now
        if self._tokens < cost or self._line_tokens < 1:
            return False
        self._tokens -= cost
        self._line_tokens -= 1
        return True

    def write(self, level: int | str, message: str) -> bool:
        """Record one line (if enabled and within budget) and forward it to Python logging.

        Returns False when a rate budget dropped it.
        """
        num = level_number(level)
        if num < self.min_level:
            return True
        cost = sys.getsizeof(message) + self.LINE_OVERHEAD
        with self._lock:
            if not self._take(cost):
                self.dropped += 1
                self._unreported += 1
                return False
            # One report per NOTE_EVERY_S at most: a plugin logging on every call at a high
            # rate stays over budget, and a note after each admitted line would be spam.
            note = 0
            if self._unreported and self._refilled - self._noted >= self.NOTE_EVERY_S:
                note, self._unreported, self._noted = self._unreported, 0, self._refilled
            if note:
                self._keep(LogLine(time.time(), "warn", self._dropped_note(note)))
                self.written += 1
            line = LogLine(time.time(), LEVELS[num], message)
            self._keep(line, cost)
            self.written += 1
        if note:
            self._forward(logging.WARNING, "warn", self._dropped_note(note), line.time)
        self._forward(_PY_LEVELS[num], LEVELS[num], message, line.time)
        return True

    def _forward(self, level: int, name: str, message: str, created: float) -> bool:
        return _FORWARDER.put(self._logger, level, self.plugin, name, message, created)

    def drop(self, lines: int) -> None:
        """Count ``lines`` dropped without looking at them (a caller out of budget)."""
        if lines > 0:
            with self._lock:
                self.dropped += lines
                self._unreported += lines

    def _keep(self, line: LogLine, cost: int | None = None) -> None:
        # Called with the lock held.
        if cost is None:
            cost = sys.getsizeof(line.message) + self.LINE_OVERHEAD
        self._lines.append((line, cost))
        self._bytes += cost
        while self._lines and (len(self._lines) > self.capacity or self._bytes > self.max_bytes):
            self._bytes -= self._lines.popleft()[1]

    @property
    def buffered_bytes(self) -> int:
        """Host memory the ring holds now (as counted for :attr:`max_bytes`)."""
        return self._bytes

    def lines(self, limit: int | None = None) -> list[LogLine]:
        """The buffered lines, oldest first (the last ``limit`` if given)."""
        with self._lock:
            items = [line for line, _ in self._lines]
        return items[-limit:] if limit else items

    def since(self, mark: int) -> list[LogLine]:
        """The buffered lines written after :attr:`written` was ``mark``."""
        with self._lock:
            count = min(self.written - mark, len(self._lines))
            if count <= 0:
                return []
            return [line for line, _ in list(self._lines)[len(self._lines) - count:]]

    def clear(self) -> None:
        """Forget the buffered lines."""
        with self._lock:
            self._lines.clear()
            self._bytes = 0

    def _dropped_note(self, count: int) -> str:
        return (f"[omnicore] {count} log line(s) dropped: over this plugin's log budget of "
                f"{int(self._rate)} bytes/s (limits.max_log_bytes_per_s) or "
                f"{int(self._line_rate)} lines/s (limits.max_log_lines_per_s)")

    def __len__(self) -> int:
        return len(self._lines)

    def __bool__(self) -> bool:
        # An empty log is still a log: `log or PluginLog(...)` must not replace it.
        return True

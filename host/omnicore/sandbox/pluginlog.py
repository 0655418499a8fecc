"""A plugin's own log: a ring buffer for the console plus forwarding to Python logging."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass

__all__ = ["LEVELS", "LogLine", "PluginLog"]

#: ABI levels (specs/abi.md §4.1) by number; the index is the wire value.
LEVELS = ("trace", "debug", "info", "warn", "error")
_PY_LEVELS = (5, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of a plugin's log."""

    time: float
    level: str
    message: str


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
            self._tokens = min(self._tokens, self._rate)

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
            self._line_tokens = min(self._line_tokens, self._line_rate)

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
            self._logger.warning("%s", self._dropped_note(note),
                                 extra={"plugin": self.plugin, "plugin_level": "warn"})
        self._logger.log(_PY_LEVELS[num], "%s", message,
                         extra={"plugin": self.plugin, "plugin_level": LEVELS[num]})
        return True

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

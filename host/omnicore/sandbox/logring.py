"""A plugin's log ring: the part of ``omnicore:log.write`` that runs on the call path.

Two implementations of one contract: ``sandbox/_logring.c`` (``_logring.Ring``, built at
install) and :class:`PyRing` here, used when the C one was not built or
``OMNICORE_CALLPATH=python``; ``sandbox/pluginlog.py`` picks one and the log tests run on both.

The contract. ``write(level, message)`` checks the level, then two token buckets (bytes of host
memory, ``sys.getsizeof(message) + line_overhead``, and lines), keeps the line in a ring of at
most ``capacity`` lines and ``max_bytes`` bytes (the oldest go first; a line alone over
``max_bytes`` is not kept), and counts what the budgets dropped, reported in one note line at
most every ``note_every`` seconds. Lines are numbered in the order kept (``written`` is the next
number). Python logging gets them later, from the forwarder thread (``sandbox/logforward.py``):
the first line after the forwarder took a ring's lines puts the ring on its signal's list
(:meth:`PySignal.queue`), and the forwarder then calls ``take``. A line that left the ring
before the forwarder took it is counted as missed. ``clear()`` hides the lines from
``lines()``/``since()``; those not yet taken stay until the forwarder took them.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from itertools import islice
from typing import NamedTuple, Self, overload

__all__ = ["LEVELS", "PY_LEVELS", "LogLine", "PyRing", "PySignal", "level_number"]

#: ABI levels (specs/abi.md §4.1) by number; the index is the wire value.
LEVELS = ("trace", "debug", "info", "warn", "error")
#: The Python logging level of each.
PY_LEVELS = (5, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)
_WARN = 3
_MAX_CAPACITY = 1 << 24


class LogLine(NamedTuple):
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


#: A kept line: (time, level number, message, cost in bytes).
_Entry = tuple[float, int, str, int]


class PySignal:
    """The rings with lines the forwarder has not taken, and its sleep until there are some
    (``_logring``'s module functions ``wait``, ``swap`` and ``wake`` in C)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._dirty: list[PyRing] = []
        self._woken = False

    def queue(self, ring: PyRing) -> None:
        """List ``ring`` (once per batch: its ``_queued`` flag says it is listed)."""
        with self._cond:
            self._dirty.append(ring)
            self._cond.notify()

    def wait(self) -> None:
        """Sleep until a ring is listed or :meth:`wake` was called."""
        with self._cond:
            while not self._dirty and not self._woken:
                self._cond.wait()
            self._woken = False

    def swap(self) -> list[PyRing]:
        """The listed rings; a ring that writes again is listed again."""
        with self._cond:
            rings, self._dirty = self._dirty, []
            for ring in rings:
                ring._queued = False
        return rings

    def wake(self) -> None:
        """End the current or next :meth:`wait`."""
        with self._cond:
            self._woken = True
            self._cond.notify()


SIGNAL = PySignal()


class _Rate:
    """``rate_bytes`` and ``rate_lines`` are one getter and one setter (as in the C ring): the
    names of the rate and the tokens of the ring's token bucket it reads and sets."""

    def __init__(self, rate: str, tokens: str, doc: str) -> None:
        self._rate, self._tokens, self.__doc__ = rate, tokens, doc

    @overload
    def __get__(self, ring: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, ring: PyRing, owner: type | None = None) -> int: ...

    def __get__(self, ring: PyRing | None, owner: type | None = None) -> int | Self:
        return self if ring is None else int(getattr(ring, self._rate))

    def __set__(self, ring: PyRing, value: float) -> None:
        rate = float(value)
        with ring._lock:
            setattr(ring, self._rate, rate)
            setattr(ring, self._tokens, ring._bucket(rate, getattr(ring, self._tokens)))


class PyRing:
    """The ring in Python (see the module docstring for the contract it shares with C)."""

    def __init__(self, capacity: int, max_bytes: int, rate_bytes: float, rate_lines: float,
                 min_level: int, line_overhead: int, note_every: float) -> None:
        if not 1 <= capacity <= _MAX_CAPACITY:
            raise ValueError(f"a log ring holds 1 to {_MAX_CAPACITY} lines, not {capacity}")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.min_level = min_level
        self._overhead = line_overhead
        self._note_every = note_every
        self._entries: deque[_Entry] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self.written = 0
        self.dropped = 0
        self._unreported = 0
        self._forwarded = 0
        self._shown = 0
        self._queued = False
        self._rate = float(rate_bytes)
        self._tokens = float(rate_bytes)
        self._line_rate = float(rate_lines)
        self._line_tokens = float(rate_lines)
        self._refilled = time.monotonic()
        self._noted = float("-inf")

    rate_bytes = _Rate("_rate", "_tokens", "Bytes per second let through.")
    rate_lines = _Rate("_line_rate", "_line_tokens", "Lines per second let through.")

    def _bucket(self, rate: float, tokens: float) -> float:
        """The tokens a bucket holding ``tokens`` keeps when its rate is set to ``rate``. A
        log that has taken no line yet starts full at its configured budget (runtimes set it
        right after making the log); later changes never add a free burst."""
        return rate if self._fresh() else min(tokens, rate)

    def _fresh(self) -> bool:
        return self.written == 0 and self.dropped == 0

    def enabled(self, level: int | str) -> bool:
        """Whether a line of ``level`` would be kept."""
        return level_number(level) >= self.min_level

    def write(self, level: int | str, message: str) -> bool:
        """Keep one line (if enabled and within budget); False when a rate budget dropped it."""
        num = level_number(level)
        if num < self.min_level:
            return True
        if type(message) is not str:
            if not isinstance(message, str):
                raise TypeError(f"a log message is a str, not {type(message).__name__}")
            message = str.__str__(message)  # a str subclass: its text, as a str
        cost = sys.getsizeof(message) + self._overhead
        with self._lock:
            # Two buckets refilled together: bytes, and records (each record costs Python
            # logging and its handlers far more than its bytes).
            now = time.monotonic()
            passed = now - self._refilled
            self._tokens = min(self._rate, self._tokens + passed * self._rate)
            self._line_tokens = min(self._line_rate, self._line_tokens + passed * self._line_rate)
            self._refilled = now
            if self._tokens < cost or self._line_tokens < 1:
                self.dropped += 1
                self._unreported += 1
                return False
            self._tokens -= cost
            self._line_tokens -= 1
            # One report per note_every at most: a plugin logging on every call at a high
            # rate stays over budget, and a note after each admitted line would be spam.
            if self._unreported and now - self._noted >= self._note_every:
                note = self._note(self._unreported)
                self._unreported, self._noted = 0, now
                self._keep(_WARN, note, sys.getsizeof(note) + self._overhead)
            self._keep(num, message, cost)
            listed, self._queued = self._queued, True
        if not listed:
            SIGNAL.queue(self)
        return True

    def _keep(self, level: int, message: str, cost: int) -> None:
        # Called with the lock held.
        self._entries.append((time.time(), level, message, cost))
        self.written += 1
        self._bytes += cost
        while self._entries and (len(self._entries) > self.capacity
                                 or self._bytes > self.max_bytes):
            self._bytes -= self._entries.popleft()[3]

    def _note(self, count: int) -> str:
        return (f"[omnicore] {count} log line(s) dropped: over this plugin's log budget of "
                f"{int(self._rate)} bytes/s (limits.max_log_bytes_per_s) or "
                f"{int(self._line_rate)} lines/s (limits.max_log_lines_per_s)")

    def drop(self, lines: int) -> None:
        """Count ``lines`` dropped without looking at them (a caller out of budget)."""
        if lines > 0:
            with self._lock:
                self.dropped += lines
                self._unreported += lines

    @property
    def buffered_bytes(self) -> int:
        """Host memory the ring holds now (as counted for ``max_bytes``)."""
        return self._bytes

    def _visible(self) -> int:
        hidden = self._shown - (self.written - len(self._entries))
        return len(self._entries) - max(hidden, 0)

    def _items(self, limit: int) -> list[tuple[float, int, str]]:
        """The last ``limit`` visible lines (all if ``limit`` <= 0) as (time, level, text)."""
        with self._lock:
            return self._last(limit)

    def _since(self, mark: int) -> list[tuple[float, int, str]]:
        """The visible lines written after ``written`` was ``mark``."""
        with self._lock:
            count = self.written - mark
            return [] if count <= 0 else self._last(count)

    def _last(self, limit: int) -> list[tuple[float, int, str]]:
        # Called with the lock held.
        shown = self._visible()
        count = shown if limit <= 0 else min(limit, shown)
        return [entry[:3] for entry in islice(self._entries, len(self._entries) - count, None)]

    def clear(self) -> None:
        """Forget the buffered lines (those not yet forwarded stay until they are)."""
        with self._lock:
            self._shown = self.written
            self._release_cleared()

    def _release_cleared(self) -> None:
        done = min(self._forwarded, self._shown)
        while self._entries and self.written - len(self._entries) < done:
            self._bytes -= self._entries.popleft()[3]

    def take(self, max_lines: int, max_bytes: int,
             end: int) -> tuple[int, list[tuple[float, int, str]]]:
        """For the forwarder: (missed, lines), the next lines Python logging has not had,
        numbered below ``end``, at most ``max_lines`` and (past the first) ``max_bytes``."""
        with self._lock:
            oldest = self.written - len(self._entries)
            missed = max(oldest - self._forwarded, 0)
            self._forwarded += missed
            out: list[tuple[float, int, str]] = []
            size = 0
            for entry in islice(self._entries, self._forwarded - oldest, None):
                if (len(out) >= max_lines or self._forwarded + len(out) >= end
                        or (out and size + entry[3] > max_bytes)):
                    break
                size += entry[3]
                out.append(entry[:3])
            self._forwarded += len(out)
            self._release_cleared()
        return missed, out

    def __len__(self) -> int:
        return self._visible()

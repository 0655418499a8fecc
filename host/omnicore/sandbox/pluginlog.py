"""A plugin's own log: a ring buffer for the console plus forwarding to Python logging."""

from __future__ import annotations

import logging
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
    """The last ``capacity`` lines a plugin logged, also forwarded to ``omnicore.plugin.<name>``.

    Lines below ``min_level`` are dropped (that is what ``omnicore:log.enabled`` reports).
    """

    def __init__(self, plugin: str, *, capacity: int = 1000, min_level: int | str = "info",
                 logger: logging.Logger | None = None) -> None:
        self.plugin = plugin
        self.min_level = level_number(min_level)
        self._lines: deque[LogLine] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        #: Lines kept so far (not capped by capacity): a caller notes it before a call to find
        #: what the plugin said during that call (see :meth:`since`).
        self.written = 0
        self._logger = logger or logging.getLogger(f"omnicore.plugin.{plugin}")

    def enabled(self, level: int) -> bool:
        """Whether a line of ``level`` (ABI number) would be kept."""
        return level_number(level) >= self.min_level

    def write(self, level: int | str, message: str) -> None:
        """Record one line (if enabled) and forward it to Python logging."""
        num = level_number(level)
        if num < self.min_level:
            return
        line = LogLine(time.time(), LEVELS[num], message)
        with self._lock:
            self._lines.append(line)
            self.written += 1
        self._logger.log(_PY_LEVELS[num], "%s", message,
                         extra={"plugin": self.plugin, "plugin_level": LEVELS[num]})

    def lines(self, limit: int | None = None) -> list[LogLine]:
        """The buffered lines, oldest first (the last ``limit`` if given)."""
        with self._lock:
            items = list(self._lines)
        return items[-limit:] if limit else items

    def since(self, mark: int) -> list[LogLine]:
        """The buffered lines written after :attr:`written` was ``mark``."""
        with self._lock:
            count = min(self.written - mark, len(self._lines))
            return list(self._lines)[len(self._lines) - count:] if count > 0 else []

    def clear(self) -> None:
        """Forget the buffered lines."""
        with self._lock:
            self._lines.clear()

    def __len__(self) -> int:
        return len(self._lines)

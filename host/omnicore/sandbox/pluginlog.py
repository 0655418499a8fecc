"""A plugin's own log: a ring buffer for the console plus forwarding to Python logging.

The ring runs in C (``sandbox/_logring.c``, built at install) or in Python
(``sandbox/logring.py``): :data:`NATIVE` says which :class:`PluginLog` is. Set
``OMNICORE_CALLPATH=python`` to force the Python one, ``native`` to require C (as for the call
path, sandbox/fastcall.py). Lines reach Python logging from the forwarder thread
(``sandbox/logforward.py``); :func:`flush` waits for them.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import TYPE_CHECKING

from omnicore.sandbox import native
from omnicore.sandbox.logforward import Forwarder
from omnicore.sandbox.logring import LEVELS, SIGNAL, LogLine, PyRing, level_number

__all__ = ["LEVELS", "NATIVE", "LogLine", "PluginLog", "PyPluginLog", "flush", "level_number"]


def _native_ring() -> ModuleType | None:
    ring = native.extension("_logring", "C log ring")
    if ring is not None:
        ring.bind(level_number)
    return ring


_DOC = """The last lines a plugin logged, also forwarded to ``omnicore.plugin.<name>``.

What a plugin can make the host spend here is bounded twice, in bytes of host memory
(``sys.getsizeof`` of the text: a line of 4-byte characters costs four times its length):
the ring keeps at most ``capacity`` lines and ``max_bytes`` bytes, and two token buckets
let through ``rate_bytes`` bytes and ``rate_lines`` records per second (bursts up to the
same), so a guest that logs in a loop, in long lines or in tiny ones, cannot flood the
host's logging either. Dropped lines are counted (``dropped``) and reported in one line
once the budget allows again. Lines below ``min_level`` are not kept (that is what
``omnicore:log.enabled`` reports). ``write(level, message)`` returns False when a rate
budget dropped the line; ``written`` counts the lines kept so far (a caller notes it before
a call to find what the plugin said during it, :meth:`since`); ``drop(n)`` counts lines
dropped without looking at them; ``clear()`` forgets the buffered lines.
"""


class _PluginLogApi:
    """What :class:`PluginLog` adds to either ring: its plugin, its logger and the views."""

    #: Bookkeeping per line besides its text (the ring entry and its tuple), for the budgets.
    LINE_OVERHEAD = 120
    #: How often at most the count of dropped lines is reported.
    NOTE_EVERY_S = 1.0
    _forwarder: Forwarder

    if TYPE_CHECKING:  # the ring's (PyRing or _logring.Ring)
        written: int

        def _items(self, limit: int) -> list[tuple[float, int, str]]: ...
        def _since(self, mark: int) -> list[tuple[float, int, str]]: ...

    def __init__(self, plugin: str, *, capacity: int = 1000, max_bytes: int = 1 << 20,
                 rate_bytes: int = 1 << 20, rate_lines: int = 500,
                 min_level: int | str = "info",
                 logger: logging.Logger | None = None) -> None:
        super().__init__(capacity, max_bytes, rate_bytes, rate_lines,  # type: ignore[call-arg]
                         level_number(min_level), self.LINE_OVERHEAD, self.NOTE_EVERY_S)
        self.plugin = plugin
        self.logger = logger or logging.getLogger(f"omnicore.plugin.{plugin}")
        self._forwarder.start()

    def lines(self, limit: int | None = None) -> list[LogLine]:
        """The buffered lines, oldest first (the last ``limit`` if given)."""
        return [LogLine(t, LEVELS[lv], m) for t, lv, m in self._items(limit or 0)]

    def since(self, mark: int) -> list[LogLine]:
        """The buffered lines written after :attr:`written` was ``mark``."""
        return [LogLine(t, LEVELS[lv], m) for t, lv, m in self._since(mark)]

    def __bool__(self) -> bool:
        # An empty log is still a log: `log or PluginLog(...)` must not replace it.
        return True


class PyPluginLog(_PluginLogApi, PyRing):
    __doc__ = _DOC

    _forwarder = Forwarder(SIGNAL)


_logring = _native_ring()
#: True when plugin logs keep their lines in C (sandbox/_logring.c).
NATIVE = _logring is not None
_FORWARDERS = [PyPluginLog._forwarder]

if TYPE_CHECKING or _logring is None:
    PluginLog = PyPluginLog
else:
    class PluginLog(_PluginLogApi, _logring.Ring):  # type: ignore[misc]
        __doc__ = _DOC
        _forwarder = Forwarder(_logring)

    _FORWARDERS.append(PluginLog._forwarder)


def flush(timeout: float = 5.0) -> bool:
    """Wait until every plugin log line written so far has reached Python logging (lines go
    there from a thread of their own, after the call); False if ``timeout`` passed first."""
    return all([fwd.flush(timeout) for fwd in _FORWARDERS])

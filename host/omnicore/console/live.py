"""The live feed behind the console's log view: plugin log lines, host log records and app
events, kept in a bounded backlog and fanned out to Server-Sent-Event subscribers.

Sources run on any thread (a plugin's ``log.info`` runs on a call's worker thread), so they
hand entries to the event loop with ``call_soon_threadsafe``. Each subscriber has a bounded
queue: a slow browser loses entries (and is told how many) instead of growing the host's
memory, and the number of subscribers is capped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from omnicore.core.events import Event

__all__ = ["LEVELS", "Entry", "LiveFeed", "TooManySubscribers"]

LEVELS = ("trace", "debug", "info", "warn", "error")
_PY = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
       logging.ERROR: "error", logging.CRITICAL: "error"}
MAX_MESSAGE = 4096  # a line longer than this is cut: the feed is for reading, not archiving


# Internal, outside omnicore.errors' tree on purpose: the stream routes turn it into a 429.
class TooManySubscribers(Exception):
    """More live streams are open than the console allows."""


@dataclass(frozen=True)
class Entry:
    id: int
    time: float
    kind: str  # "log" (a plugin's own line), "host" (omnicore's log), "event"
    level: str
    message: str
    plugin: str | None = None
    topic: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "time": self.time, "kind": self.kind,
                               "level": self.level, "message": self.message,
                               "plugin": self.plugin}
        if self.topic is not None:
            out["topic"] = self.topic
            out["data"] = self.data
        return out

    def matches(self, plugin: str | None, level: str | None, kinds: Iterable[str]) -> bool:
        if plugin and self.plugin != plugin:
            return False
        if level and level in LEVELS and LEVELS.index(self.level) < LEVELS.index(level):
            return False
        return not kinds or self.kind in kinds


class _Subscriber:
    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Entry | None] = asyncio.Queue(size)
        self.dropped = 0


class LiveFeed(logging.Handler):
    """Attach with :meth:`attach` (logging + the app's event bus); read with :meth:`stream`."""

    def __init__(self, *, backlog: int = 1000, queue_size: int = 1000,
                 max_subscribers: int = 64) -> None:
        super().__init__(logging.DEBUG)
        self._backlog: deque[Entry] = deque(maxlen=backlog)
        self._ids = itertools.count(1)
        self._subs: set[_Subscriber] = set()
        self._queue_size = queue_size
        self.max_subscribers = max_subscribers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._plugin_level = logging.NOTSET
        #: Entries pushed from any thread, delivered on the loop in one turn per batch: a
        #: wake-up of the loop (a write to its self-pipe, a read, a callback) for each plugin
        #: log line was a tenth of a REST invoke's server CPU (issue 63).
        self._inbox: deque[Entry] = deque()
        self._waking = False

    # -- sources ------------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._closed = False
        logging.getLogger("omnicore").addHandler(self)
        # Plugins' own lines are what operators come to the log view for: let info lines of
        # `omnicore.plugin.*` through even when the host's log is set quieter (each plugin's
        # PluginLog still applies its own level and byte budget first).
        plugins = logging.getLogger("omnicore.plugin")
        self._plugin_level = plugins.level
        if plugins.getEffectiveLevel() > logging.INFO:
            plugins.setLevel(logging.INFO)

    def detach(self) -> None:
        logging.getLogger("omnicore").removeHandler(self)
        logging.getLogger("omnicore.plugin").setLevel(self._plugin_level)
        self._closed = True
        for sub in list(self._subs):
            _offer(sub, None)

    def emit(self, record: logging.LogRecord) -> None:
        plugin = getattr(record, "plugin", None)
        own = getattr(record, "plugin_level", None)
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        self.push(kind="log" if own else "host", level=own or _PY.get(record.levelno, "info"),
                  message=message, plugin=plugin if isinstance(plugin, str) else None)

    def on_event(self, event: Event) -> None:
        data = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)
                if _jsonable(getattr(event, f.name))}
        plugin = data.get("plugin")
        level = "error" if data.get("error") else "info"
        self.push(kind="event", level=level, message=event.topic, topic=event.topic,
                  plugin=plugin if isinstance(plugin, str) else None, data=data)

    def push(self, *, kind: str, level: str, message: str, plugin: str | None = None,
             topic: str | None = None, data: dict[str, Any] | None = None) -> None:
        """Add an entry (any thread)."""
        loop = self._loop
        if loop is None or self._closed:
            return
        entry = Entry(next(self._ids), time.time(), kind, level, message[:MAX_MESSAGE], plugin,
                      topic, data or {})
        self._inbox.append(entry)
        if self._waking:  # a delivery is scheduled and has not started taking yet
            return
        self._waking = True
        try:
            loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:
            self._waking = False  # the loop is closing; nobody is left to read it
            self._inbox.clear()

    def _deliver(self) -> None:
        # Cleared before taking: an entry pushed from now on either is taken below or
        # schedules a delivery of its own.
        self._waking = False
        inbox = self._inbox
        while inbox:
            entry = inbox.popleft()
            self._backlog.append(entry)
            for sub in self._subs:
                _offer(sub, entry)

    # -- readers ------------------------------------------------------------------------

    def recent(self, *, plugin: str | None = None, level: str | None = None,
               kinds: Iterable[str] = (), limit: int | None = 200) -> list[Entry]:
        """The matching entries of the backlog, oldest first: the last ``limit`` (all with
        ``None``)."""
        kinds = tuple(kinds)
        found = [e for e in self._backlog if e.matches(plugin, level, kinds)]
        if limit is None:
            return found
        return found[-limit:] if limit else []

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def stream(self, *, plugin: str | None = None, level: str | None = None,
                     kinds: Iterable[str] = (), backlog: int = 100,
                     keepalive_s: float = 15.0) -> AsyncIterator[bytes]:
        """SSE frames: the matching backlog, then entries as they come, until detached."""
        if len(self._subs) >= self.max_subscribers:
            raise TooManySubscribers(f"{len(self._subs)} live streams are open already")
        kinds = tuple(kinds)
        sub = _Subscriber(self._queue_size)
        self._subs.add(sub)
        return self._frames(sub, plugin, level, kinds, backlog, keepalive_s)

    async def _frames(self, sub: _Subscriber, plugin: str | None, level: str | None,
                      kinds: tuple[str, ...], backlog: int,
                      keepalive_s: float) -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            for entry in self.recent(plugin=plugin, level=level, kinds=kinds, limit=backlog):
                yield _frame(entry)
            while not self._closed:
                try:
                    got: Entry | None = await asyncio.wait_for(sub.queue.get(), keepalive_s)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if got is None:
                    break
                entry = got
                if sub.dropped:
                    yield (f"event: dropped\ndata: {sub.dropped}\n\n").encode()
                    sub.dropped = 0
                if entry.matches(plugin, level, kinds):
                    yield _frame(entry)
        finally:
            self._subs.discard(sub)


def _offer(sub: _Subscriber, entry: Entry | None) -> None:
    try:
        sub.queue.put_nowait(entry)
    except asyncio.QueueFull:
        if entry is None:  # the end must arrive: make room for it
            sub.queue.get_nowait()
            sub.queue.put_nowait(None)
        else:
            sub.dropped += 1


def _frame(entry: Entry) -> bytes:
    body = json.dumps(entry.as_dict(), separators=(",", ":"))
    return f"id: {entry.id}\nevent: {entry.kind}\ndata: {body}\n\n".encode()


def _jsonable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | type(None)) or (
        isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value))

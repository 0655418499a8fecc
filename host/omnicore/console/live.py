"""The live feed behind the console's log view: plugin log lines, host log records and app
events, kept in a bounded backlog and fanned out to Server-Sent-Event subscribers.

Sources run on any thread (plugins' lines come from the log forwarder's thread, as a tap:
``sandbox/logforward.add_tap``). With nobody subscribed an entry only joins the backlog; with
subscribers it is handed to the event loop with ``call_soon_threadsafe``, one wake-up per
batch. Each subscriber has a bounded queue: a slow browser loses entries (and is told how
many) instead of growing the host's memory, and the number of subscribers is capped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from omnicore.core.events import Event
from omnicore.sandbox import logforward

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
        #: Guards the backlog, the inbox and the subscriber set against sources on other
        #: threads: a subscriber's backlog and its queue then neither miss nor repeat an entry.
        self._lock = threading.Lock()
        #: Entries for subscribers, pushed from any thread and delivered on the loop in one
        #: turn per batch: a wake-up of the loop (a write to its self-pipe, a read, a callback)
        #: for each plugin log line was a tenth of a REST invoke's server CPU (issue 63).
        self._inbox: deque[Entry] = deque()
        self._waking = False

    # -- sources ------------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._closed = False
        logging.getLogger("omnicore").addHandler(self)
        # Plugins' own lines are what operators come to the log view for: every one of them,
        # whatever the host's log level (each plugin's PluginLog still applies its own level
        # and byte budget first).
        logforward.add_tap(self.plugin_line)

    def detach(self) -> None:
        logging.getLogger("omnicore").removeHandler(self)
        logforward.remove_tap(self.plugin_line)
        self._closed = True
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            _offer(sub, None)

    def plugin_line(self, plugin: str, level: str, message: str, created: float) -> None:
        """A plugin's own log line (the forwarder's tap)."""
        self._add(created, "log", level, message, plugin, None, None)

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "plugin_level", None) is not None:
            return  # a plugin's line: the tap has it already
        plugin = getattr(record, "plugin", None)
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        self.push(kind="host", level=_PY.get(record.levelno, "info"), message=message,
                  plugin=plugin if isinstance(plugin, str) else None)

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
        self._add(time.time(), kind, level, message, plugin, topic, data)

    def _add(self, at: float, kind: str, level: str, message: str, plugin: str | None,
             topic: str | None, data: dict[str, Any] | None) -> None:
        loop = self._loop
        if loop is None or self._closed:
            return
        entry = Entry(next(self._ids), at, kind, level, message[:MAX_MESSAGE], plugin, topic,
                      data or {})
        with self._lock:
            if not self._subs:  # nobody to wake the loop for
                self._backlog.append(entry)
                return
            self._inbox.append(entry)
            if self._waking:  # a delivery is scheduled and has not taken the inbox yet
                return
            self._waking = True
        try:
            loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closing; nobody is left to read it
            with self._lock:
                self._waking = False
                self._backlog.extend(self._inbox)
                self._inbox.clear()

    def _deliver(self) -> None:
        with self._lock:
            self._waking = False
            entries = list(self._inbox)
            self._inbox.clear()
            self._backlog.extend(entries)
            subs = list(self._subs)
        for entry in entries:
            for sub in subs:
                _offer(sub, entry)

    # -- readers ------------------------------------------------------------------------

    def recent(self, *, plugin: str | None = None, level: str | None = None,
               kinds: Iterable[str] = (), limit: int | None = 200) -> list[Entry]:
        """The matching entries of the backlog, oldest first: the last ``limit`` (all with
        ``None``)."""
        with self._lock:
            backlog = list(self._backlog)
        return _last(_matching(backlog, plugin, level, tuple(kinds)), limit)

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
        # One moment for both: what the backlog has now, and everything after to the queue.
        with self._lock:
            self._subs.add(sub)
            past = list(self._backlog)
        first = _last(_matching(past, plugin, level, kinds), backlog)
        return self._frames(sub, plugin, level, kinds, first, keepalive_s)

    async def _frames(self, sub: _Subscriber, plugin: str | None, level: str | None,
                      kinds: tuple[str, ...], first: list[Entry],
                      keepalive_s: float) -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            for entry in first:
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
            with self._lock:
                self._subs.discard(sub)


def _matching(entries: list[Entry], plugin: str | None, level: str | None,
              kinds: tuple[str, ...]) -> list[Entry]:
    return [e for e in entries if e.matches(plugin, level, kinds)]


def _last(entries: list[Entry], limit: int | None) -> list[Entry]:
    if limit is None:
        return entries
    return entries[-limit:] if limit else []


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

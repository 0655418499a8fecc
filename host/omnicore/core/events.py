"""Typed events and the bus that delivers them.

An event is a frozen dataclass with a class-level ``topic`` (``"plugin.loaded"``). Any layer
adds its own by subclassing :class:`Event` with a new topic (``class PluginLoaded(Event,
topic="plugin.loaded")``, or a ``topic: ClassVar[str]`` in its body); nothing here needs to
change.
Subscribers are plain or ``async`` callables subscribed to an exact topic, a prefix wildcard
(``"plugin.*"``), a glob, or ``"*"``. A subscriber that raises is logged and reported as an
:class:`ErrorOccurred` event; delivery to the others goes on.
"""

from __future__ import annotations

import fnmatch
import inspect
import itertools
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from omnicore.logging import BoundLogger, get_logger

if TYPE_CHECKING:
    # asyncio (and the ssl it loads) inside the methods that use it: a one-off `omnicore
    # call` of a file publishes events with no loop and should not pay for importing it.
    import asyncio

__all__ = [
    "AppStarted",
    "AppStateChanged",
    "AppStopped",
    "ErrorOccurred",
    "Event",
    "EventBus",
    "ExtensionFailed",
    "ExtensionLoaded",
    "HealthChanged",
    "ModuleStateChanged",
    "Subscription",
    "TaskFailed",
    "TaskFinished",
    "TaskStarted",
    "event_types",
]

_TYPES: dict[str, type[Event]] = {}


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event; subclasses set ``topic`` and add their fields."""

    topic: ClassVar[str] = "event"
    timestamp: float = field(default_factory=time.time)

    def __init_subclass__(cls, topic: str | None = None, **kwargs: Any) -> None:
        # slots=True rebuilds the class, so the zero-argument super() cell would be stale.
        super(Event, cls).__init_subclass__(**kwargs)
        if topic is not None:
            # The class statement's keyword: one line a topic, no ClassVar declared again in
            # every event; the rebuilt class finds it in the dict it copies.
            cls.topic = topic
        topic = cls.__dict__.get("topic")
        if isinstance(topic, str):
            if any(c in topic for c in "*?[]") or not topic:
                raise ValueError(f"event topic {topic!r} of {cls.__name__} must be a plain name")
            _TYPES[topic] = cls


def event_types() -> dict[str, type[Event]]:
    """Every event class defined so far, by topic."""
    return dict(_TYPES)


@dataclass(frozen=True, slots=True, kw_only=True)
class _AppEvent(Event):
    """What every ``app.*`` event names: the app, and this run of it."""

    app: str
    runtime_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AppStateChanged(_AppEvent, topic="app.state_changed"):
    """The app moved from ``old`` to ``new`` (values of :class:`omnicore.core.State`)."""

    old: str
    new: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AppStarted(_AppEvent, topic="app.started"):
    """The app is running: modules started, extensions' ``startup`` ran."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AppStopped(_AppEvent, topic="app.stopped"):
    """The app stopped; ``uptime_s`` is how long it ran."""

    uptime_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ModuleStateChanged(Event, topic="module.state_changed"):
    """A module moved from ``old`` to ``new``; ``error`` says why when ``new`` is failed."""

    module: str
    old: str
    new: str
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthChanged(Event, topic="health.changed"):
    """The overall health status changed between two checks."""

    old: str
    new: str
    unhealthy: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtensionLoaded(Event, topic="extension.loaded"):
    """A Python host extension was registered."""

    extension: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtensionFailed(Event, topic="extension.failed"):
    """A Python host extension failed at ``stage`` (import, register, startup...)."""

    extension: str
    stage: str
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _TaskEvent(Event):
    """What every ``task.*`` event names: the task's id and name."""

    task_id: int
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStarted(_TaskEvent, topic="task.started"):
    """A task left the queue and began running."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFinished(_TaskEvent, topic="task.finished"):
    """A task returned normally."""

    duration_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFailed(_TaskEvent, topic="task.failed"):
    """A task raised (``error``) or was cancelled at shutdown (``cancelled``)."""

    error: str
    cancelled: bool = False
    exc: BaseException | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorOccurred(Event, topic="error.occurred"):
    """Something failed that has no better event (e.g. a subscriber raised)."""

    source: str
    error: str
    exc: BaseException | None = field(default=None, compare=False, repr=False)


Handler = Callable[[Any], Any]
_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Subscription:
    """A handle returned by :meth:`EventBus.subscribe`; pass it to ``unsubscribe``."""

    id: int
    pattern: str
    handler: Handler
    is_async: bool

    def matches(self, topic: str) -> bool:
        """Whether this subscription receives events of ``topic``."""
        p = self.pattern
        if p == "*" or p == topic:
            return True
        if p.endswith(".*") and "*" not in p[:-2] and not any(c in p for c in "?["):
            return topic.startswith(p[:-1])
        return fnmatch.fnmatchcase(topic, p)


def _handler_name(handler: Handler) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)


class EventBus:
    """Publishes events to sync and async subscribers, isolating their failures.

    Sync subscribers run inline in the publisher's thread. Async subscribers run as tasks on
    the publisher's running loop, else on the loop bound with :meth:`bind_loop` (the app's),
    else to completion right away: an event is never dropped for want of a loop.
    """

    def __init__(self, log: BoundLogger | None = None) -> None:
        self._subs: tuple[Subscription, ...] = ()
        self._cache: dict[str, tuple[Subscription, ...]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        self.log = log or get_logger("omnicore.events")

    def bind_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Run async subscribers of events published off-loop on ``loop``."""
        self._loop = loop

    def subscribe(self, topic: str | type[Event], handler: Handler) -> Subscription:
        """Call ``handler(event)`` for every event matching ``topic`` (a class, name or glob)."""
        pattern = topic if isinstance(topic, str) else topic.topic
        if not pattern:
            raise ValueError("subscribe() needs a topic, an Event class or '*'")
        if not callable(handler):
            raise TypeError(f"subscriber for {pattern!r} is not callable: {handler!r}")
        is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 - async callable objects count too
        )
        sub = Subscription(next(_ids), pattern, handler, is_async)
        with self._lock:
            self._subs = (*self._subs, sub)
            self._cache = {}
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to ``sub``; unknown subscriptions are ignored."""
        with self._lock:
            self._subs = tuple(s for s in self._subs if s.id != sub.id)
            self._cache = {}

    def subscribers(self, topic: str) -> tuple[Subscription, ...]:
        """The subscriptions an event of ``topic`` is delivered to, in subscription order."""
        # Take the cache before the subscriber list: a concurrent subscribe() then at worst
        # writes a stale entry into a cache it already replaced, never into the new one.
        cache = self._cache
        subs = cache.get(topic)
        if subs is None:
            subs = tuple(s for s in self._subs if s.matches(topic))
            cache[topic] = subs
        return subs

    def publish(self, event: Event) -> int:
        """Deliver ``event``; return how many subscribers it was delivered or scheduled to."""
        subs = self.subscribers(event.topic)
        for sub in subs:
            if sub.is_async:
                self._dispatch_async(sub, event)
            else:
                self._deliver(sub, event)
        return len(subs)

    async def apublish(self, event: Event) -> int:
        """Deliver ``event`` and wait until its async subscribers have finished."""
        subs = self.subscribers(event.topic)
        waits = []
        for sub in subs:
            if sub.is_async:
                waits.append(self._run(sub, event))
            else:
                self._deliver(sub, event)
        if waits:
            import asyncio

            await asyncio.gather(*waits)
        return len(subs)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for async deliveries scheduled so far (used when the app stops)."""
        pending = [f for f in self._pending if not f.done()]
        if pending:
            import asyncio

            await asyncio.wait(pending, timeout=timeout)

    def _deliver(self, sub: Subscription, event: Event) -> None:
        # A sync subscriber runs inline; its failure is reported, the others still get it.
        try:
            sub.handler(event)
        except Exception as exc:
            self._report(sub, event, exc)

    def _dispatch_async(self, sub: Subscription, event: Event) -> None:
        import asyncio

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self._track(loop.create_task(self._run(sub, event)))
            return
        bound = self._loop
        if bound is not None and bound.is_running() and not bound.is_closed():
            bound.call_soon_threadsafe(self._spawn, sub, event)
            return
        asyncio.run(self._run(sub, event))

    def _spawn(self, sub: Subscription, event: Event) -> None:
        import asyncio

        self._track(asyncio.get_running_loop().create_task(self._run(sub, event)))

    def _track(self, task: asyncio.Future[Any]) -> None:
        # The loop keeps only weak references to tasks; hold them until done.
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _run(self, sub: Subscription, event: Event) -> None:
        try:
            result = sub.handler(event)
            if isinstance(result, Awaitable):
                await result
        except Exception as exc:
            self._report(sub, event, exc)

    def _report(self, sub: Subscription, event: Event, exc: Exception) -> None:
        name = _handler_name(sub.handler)
        self.log.error(
            "event subscriber %s failed on %s: %s: %s",
            name, event.topic, type(exc).__name__, exc, exc_info=exc,
        )
        # Reporting a failure while handling a failure report could loop forever.
        if not isinstance(event, ErrorOccurred):
            self.publish(ErrorOccurred(source=f"subscriber {name} ({event.topic})",
                                       error=f"{type(exc).__name__}: {exc}", exc=exc))

"""Schedules: ``every`` a period or a ``cron`` expression in a time zone, from a plugin's
manifest (when it is granted ``tasks``) or ``capabilities.jobs.schedules``.

Each fire is a compare-and-set of the schedule's next fire time with its job enqueued in the
same transaction (``storage.schedules.advance``), so downtime and several hosts still fire
once per period; a fire later than ``misfire_grace_s`` is skipped with ``catch_up: none``.
A fire while the schedule's previous job is still queued or running is skipped too
(``overlap: skip``, the default, as Temporal's schedules and a CronJob's ``Forbid``): two runs
of one handler at once would interleave its read-modify-writes (a counter's summary written
after the next one's), and a handler slower than its period would pile up jobs without bound.
``overlap: allow`` enqueues every fire.
An operator pauses a schedule by setting its next fire time to :data:`PAUSED` (far beyond any
real time) in the same store, so every host sharing it stops firing it, and a restart keeps it
paused; resuming sets the next fire time from now.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from omnicore.core.manifest_entries import granted_entries, handler_entries
from omnicore.errors import ConfigError
from omnicore.jobs.plugins import JobPlugins
from omnicore.jobs.retry import RetryPolicy
from omnicore.logging import get_logger
from omnicore.storage import JobSpec, Storage

__all__ = ["PAUSED", "Schedule", "Scheduler", "check_manifest", "manifest_schedules",
           "parse_schedule"]

log = get_logger("omnicore.jobs")

_EVERY = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
#: The next fire time of a paused schedule (the year 31 million: never due).
PAUSED = 1e15


@dataclass(frozen=True, slots=True)
class Schedule:
    """One schedule of one plugin: ``every`` seconds, or a ``cron`` expression in ``tz``."""

    plugin: str
    name: str
    handler: str
    every: float | None = None
    cron: str | None = None
    tz: str = "UTC"
    catch_up: Literal["none", "one"] = "one"
    payload: bytes = b""
    overlap: Literal["skip", "allow"] = "skip"

    def next_after(self, t: float) -> float:
        """The first fire time after ``t`` (epoch seconds)."""
        if self.every is not None:
            return t + self.every
        start = datetime.fromtimestamp(t, ZoneInfo(self.tz))
        return float(croniter(self.cron or "", start).get_next(float))

    def describe(self) -> str:
        """``every 30s`` or ``cron '0 3 * * *' (Asia/Tokyo)``."""
        return f"every {self.every:g}s" if self.every is not None else \
            f"cron {self.cron!r} ({self.tz})"


def parse_schedule(plugin: str, raw: Any, where: str) -> Schedule:
    """A :class:`Schedule` from a manifest or config entry; ConfigError says what is wrong."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: a schedule is an object like "
                          '{"handler": "tick", "every": "30s"}', key=where)
    handler = raw.get("handler")
    if not isinstance(handler, str) or not handler:
        raise ConfigError(f"{where}: 'handler' must be a handler name", key=f"{where}.handler")
    unknown = set(raw) - {"handler", "every", "cron", "tz", "catch_up", "name", "payload",
                          "overlap"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}", key=where)
    every, cron = raw.get("every"), raw.get("cron")
    if (every is None) == (cron is None):
        raise ConfigError(f"{where}: give exactly one of 'every' or 'cron'", key=where)
    seconds = None
    if every is not None:
        match = _EVERY.fullmatch(str(every).strip())
        if isinstance(every, bool) or match is None or float(match[1]) * _UNITS[match[2]] < 1:
            raise ConfigError(f"{where}.every must be a period of at least 1s like '30s', "
                              f"'5m', '2h', got {every!r}", key=f"{where}.every", value=every)
        seconds = float(match[1]) * _UNITS[match[2]]
    tz = raw.get("tz", "UTC")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}.tz: unknown time zone {tz!r}", key=f"{where}.tz",
                          value=tz) from None
    if cron is not None and (not isinstance(cron, str) or not croniter.is_valid(cron)):
        raise ConfigError(f"{where}.cron: {cron!r} is not a valid cron expression "
                          "(five fields: minute hour day month weekday)",
                          key=f"{where}.cron", value=cron)
    catch_up = raw.get("catch_up", "one")
    if catch_up not in ("none", "one"):
        raise ConfigError(f"{where}.catch_up must be 'none' or 'one', got {catch_up!r}",
                          key=f"{where}.catch_up", value=catch_up)
    overlap = raw.get("overlap", "skip")
    if overlap not in ("skip", "allow"):
        raise ConfigError(f"{where}.overlap must be 'skip' or 'allow', got {overlap!r}",
                          key=f"{where}.overlap", value=overlap)
    payload = raw.get("payload", "")
    return Schedule(plugin, str(raw.get("name") or handler), handler, seconds, cron, str(tz),
                    catch_up, payload.encode() if isinstance(payload, str) else
                    json.dumps(payload).encode(), overlap)


def _distinct(found: list[Schedule], where: str) -> list[Schedule]:
    """``found``, or ConfigError naming two schedules of one name: one would replace the other
    in force without a word (two unnamed schedules of one handler are both named for it)."""
    seen: set[str] = set()
    for sched in found:
        if sched.name in seen:
            raise ConfigError(f"{where}: two schedules are named {sched.name!r} (a schedule "
                              "without a 'name' is named for its handler); give each its own "
                              "'name'", key=where, value=sched.name)
        seen.add(sched.name)
    return found


def manifest_schedules(plugin: str, manifest: Mapping[str, Any],
                       handlers: Sequence[str] = ()) -> list[Schedule]:
    """The schedules of ``plugin``'s manifest; ConfigError names the first bad one."""
    return _distinct(handler_entries(manifest, "schedules",
                                     lambda item, where: parse_schedule(plugin, item, where),
                                     handlers), "manifest schedules")


def check_manifest(plugin: str, manifest: Mapping[str, Any], handlers: Sequence[str]) -> None:
    """Plugin host hook: a schedule that cannot run fails the load (with the reason)."""
    manifest_schedules(plugin, manifest, handlers)


def configured_schedules(raw: Mapping[str, Sequence[Any]]) -> dict[str, list[Schedule]]:
    """``capabilities.jobs.schedules`` parsed; ConfigError names the first bad entry."""
    return {plugin: _distinct([parse_schedule(plugin, s,
                                              f"capabilities.jobs.schedules.{plugin}[{i}]")
                               for i, s in enumerate(items or [])],
                              f"capabilities.jobs.schedules.{plugin}")
            for plugin, items in raw.items()}


@dataclass(eq=False)
class Scheduler:
    """The schedules of the loaded plugins, fired by the job workers' ticker."""

    storage: Callable[[], Storage]
    plugins: Callable[[], JobPlugins]
    configured: Mapping[str, list[Schedule]]
    policy: RetryPolicy
    misfire_grace_s: float
    poll_s: float
    wake: Callable[[], None]
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _schedules: dict[tuple[str, str], Schedule] = field(default_factory=dict, init=False,
                                                        repr=False)

    def __post_init__(self) -> None:
        self.configured = dict(self.configured)

    def all(self) -> list[Schedule]:
        """Every schedule in force, by plugin and name."""
        with self._lock:
            return sorted(self._schedules.values(), key=lambda s: (s.plugin, s.name))

    def sync(self, plugin: str) -> None:
        """(Re)read ``plugin``'s schedules: manifest (if granted ``tasks``) + app config; the
        operator's schedule of a name replaces the manifest's (the manifest only proposes)."""
        configured = self.configured.get(plugin, [])
        found = granted_entries(
            self.plugins().get, plugin, "schedules", "tasks", manifest_schedules, log,
            ungranted="declares schedules but is not granted 'tasks'; they do not run",
            broken="its schedules do not run")
        mine = {sched.name for sched in configured}
        for sched in found:
            if sched.name in mine:
                log.info("plugin '%s': capabilities.jobs.schedules' %r replaces its manifest's",
                         plugin, sched.name)
        with self._lock:
            for key in [k for k in self._schedules if k[0] == plugin]:
                del self._schedules[key]
            for sched in [*found, *configured]:
                self._schedules[(plugin, sched.name)] = sched
        self.wake()

    def get(self, plugin: str, name: str) -> Schedule:
        """The schedule ``name`` of ``plugin``; ConfigError when there is none."""
        with self._lock:
            found = self._schedules.get((plugin, name))
        if found is None:
            raise ConfigError(f"plugin '{plugin}' has no schedule {name!r} in force",
                              key="schedule")
        return found

    def next_run(self, sched: Schedule) -> float | None:
        """When ``sched`` fires next (None: not yet placed; :data:`PAUSED` when paused)."""
        return self.storage().schedules.next_fire(sched.plugin, sched.name)

    def set_paused(self, plugin: str, name: str, paused: bool, now: float) -> bool:
        """Pause or resume a schedule; False when it already was so."""
        sched = self.get(plugin, name)
        store = self.storage().schedules
        for _ in range(8):  # a compare-and-set that another host's fire may beat: read again
            due = store.next_fire(plugin, name)
            if (due is not None and due >= PAUSED) == paused:
                return False
            if store.advance(plugin, name, due, PAUSED if paused else sched.next_after(now),
                             None):
                self.wake()
                return True
        return False

    def fire_due(self, now: float) -> float:
        """Fire what is due at ``now``; when the next schedule is due."""
        store = self.storage().schedules
        plugins = self.plugins()
        soonest = now + self.poll_s
        for sched in self.all():
            if sched.plugin not in plugins:
                continue
            due = store.next_fire(sched.plugin, sched.name)
            if due is None:
                store.advance(sched.plugin, sched.name, None, sched.next_after(now), None)
                due = store.next_fire(sched.plugin, sched.name)
            elif due <= now:
                missed = now - due > self.misfire_grace_s
                fire = None if missed and sched.catch_up == "none" else JobSpec(
                    sched.plugin, sched.handler, sched.payload, now,
                    self.policy.max_attempts, self.policy.backoff_ms,
                    f"schedule:{sched.name}")
                nxt = sched.next_after(now)
                if store.advance(sched.plugin, sched.name, due, nxt, fire,
                                 alone=sched.overlap == "skip") and fire:
                    self.wake()
                due = nxt
            if due is not None:
                soonest = min(soonest, due)
        return soonest

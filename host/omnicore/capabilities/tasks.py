"""``omnicore:tasks`` (specs/abi.md §4.6): a plugin's door onto the job service.

A plugin enqueues ``handler(payload)`` of its own, or cancels a job of its own, or (granted
``commands``) enqueues the run of a command plugin, ``@exec:NAME`` (plugins.commands); the durable
queue, the workers, retries and schedules are :mod:`omnicore.jobs` (``app.jobs``), which runs
whether or not any plugin holds this grant. The namespace keeps the name ``tasks`` that
plugins import (specs/host.md, glossary).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from omnicore.capabilities import standalone
from omnicore.capabilities.options import positive_ints
from omnicore.capabilities.types import AppServices
from omnicore.config.schema import JobsConfig
from omnicore.errors import ConfigError, HandlerNotFound
from omnicore.jobs import Jobs, current_hops
from omnicore.jobs.schedules import check_manifest
from omnicore.sandbox import capability as cap
from omnicore.storage import QuotaExceeded, StorageError

__all__ = ["CAPABILITY", "TaskGrant", "capability", "for_app"]

#: abi.md §4.6: a handler name longer than this cannot exist.
MAX_HANDLER_BYTES = 256
#: ``@exec:NAME``: a run of command plugin NAME (its ``@exec``, plugins.commands.EXEC).
EXEC_PREFIX = "@exec:"


@dataclass(frozen=True, slots=True)
class TaskGrant:
    """Grant options of ``tasks`` (defaults from ``capabilities.jobs``)."""

    max_queued: int = 1000
    max_attempts: int = 5
    backoff_ms: int = 1000
    max_payload_bytes: int = 1024 * 1024
    max_delay_ms: int = 30 * 24 * 3600 * 1000
    #: Command plugins whose runs (``@exec:NAME``) the plugin may enqueue; each runs with its
    #: own grants (its ``fs`` directories) and limits, as an operator's ``@exec`` job.
    commands: tuple[str, ...] = ()

    @classmethod
    def defaults(cls, options: JobsConfig) -> TaskGrant:
        """The app-wide defaults in ``capabilities.jobs``."""
        return cls(**{name: getattr(options, name) for name in _LIMITS})

    @classmethod
    def parse(cls, options: Mapping[str, Any], where: str = "grant.tasks",
              base: TaskGrant | None = None) -> TaskGrant:
        """``options`` over ``base``; ConfigError names an unknown or bad option."""
        base = base or cls()
        rest = {k: v for k, v in options.items() if k != "commands"}
        commands = options.get("commands", base.commands)
        if isinstance(commands, str) or not isinstance(commands, list | tuple) or not all(
                isinstance(c, str) and c for c in commands):
            raise ConfigError(f"{where}.commands must be a list of command plugin names, got "
                              f"{commands!r}", key=f"{where}.commands", value=commands)
        if set(rest) - set(_LIMITS):
            unknown = sorted(set(rest) - set(_LIMITS))[0]
            raise ConfigError(f"unknown option {unknown!r} for {where}; known: "
                              f"{', '.join((*_LIMITS, 'commands'))}", key=f"{where}.{unknown}")
        return replace(positive_ints(rest, base, where, _LIMITS), commands=tuple(commands))


#: The grant's numeric options (``capabilities.jobs`` gives their defaults).
_LIMITS = tuple(f.name for f in fields(TaskGrant) if f.name != "commands")


class _State:
    __slots__ = ("grant", "handlers", "jobs", "plugin")

    def __init__(self, jobs: Jobs, ctx: cap.PluginContext, grant: TaskGrant) -> None:
        self.jobs = jobs
        self.plugin = ctx.plugin
        self.grant = grant
        # A runtime (and so this state) serves one version of the plugin: its handlers,
        # read from the module when it was linked, never change.
        self.handlers = frozenset(ctx.handlers)


def _schedule(state: _State, handler: str, size: int, payload: Callable[[], bytes],
              delay_ms: int) -> int:
    """The job id, or a Status; ``payload()`` is read only once the call is admitted."""
    grant = state.grant
    if delay_ms < 0 or delay_ms > grant.max_delay_ms:
        return cap.Status.INVALID
    if size > grant.max_payload_bytes:
        return cap.Status.TOO_LARGE
    plugin = state.plugin
    if handler.startswith(EXEC_PREFIX):  # a command plugin's run, if the grant names it
        plugin, handler = handler[len(EXEC_PREFIX):], EXEC_PREFIX[:-1]
        if plugin not in grant.commands:
            return cap.Status.DENIED
    elif handler not in state.handlers:
        return cap.Status.NOT_FOUND
    try:
        return state.jobs.enqueue(plugin, handler, payload(),
                                  delay_s=delay_ms / 1000, max_attempts=grant.max_attempts,
                                  backoff_ms=grant.backoff_ms, max_queued=grant.max_queued,
                                  source="call", hops=current_hops.get())
    except QuotaExceeded:
        return cap.Status.QUOTA
    except HandlerNotFound:  # the plugin was reloaded without it since this version linked
        return cap.Status.NOT_FOUND
    except StorageError:
        return cap.Status.UNAVAILABLE


def _unschedule(state: _State, job_id: int) -> int:
    try:
        done = state.jobs.cancel(job_id, plugin=state.plugin)
    except StorageError:
        return cap.Status.UNAVAILABLE
    return cap.Status.NOT_FOUND if done is None else int(done)


def _enqueue(state: _State, mem: cap.GuestMemory, hptr: int, hlen: int, pptr: int, plen: int,
             delay_ms: int) -> int:
    mem.check(pptr, plen, "task payload")
    if hlen > MAX_HANDLER_BYTES:
        mem.check(hptr, hlen, "task handler")
        return cap.Status.NOT_FOUND
    try:
        handler = mem.read(hptr, hlen, "task handler").decode()
    except UnicodeDecodeError:
        return cap.Status.INVALID
    return _schedule(state, handler, plen, lambda: mem.read(pptr, plen, "task payload"),
                     delay_ms)


def _cancel(state: _State, _mem: cap.GuestMemory, job_id: int) -> int:
    return _unschedule(state, job_id)


# omnicore:plugin/tasks (sdk/wit/plugin.wit): the same for components.
_ERROR = cap.WitFunction.ERROR


def _wit_enqueue(state: _State, handler: str, payload: bytes, delay_ms: int
                 ) -> dict[str, Any]:
    if len(handler.encode("utf-8", "surrogatepass")) > MAX_HANDLER_BYTES:
        return cap.Status.wit_error(cap.Status.NOT_FOUND)
    answer = _schedule(state, handler, len(payload), lambda: payload, delay_ms)
    return cap.Status.wit_error(answer) if answer < 0 else {"ok": answer}


def _wit_cancel(state: _State, job_id: int) -> dict[str, Any]:
    answer = _unschedule(state, job_id) if job_id < 2**63 else cap.Status.NOT_FOUND
    return cap.Status.wit_error(answer) if answer < 0 else {"ok": answer == 1}


def _check_grant(options: Mapping[str, Any]) -> None:
    TaskGrant.parse(options)


def capability(jobs_for: Callable[[cap.PluginContext], Jobs]) -> cap.Capability:
    """The tasks capability over the job service ``jobs_for(ctx)`` returns."""
    def bind(ctx: cap.PluginContext) -> _State:
        jobs = jobs_for(ctx)
        base = TaskGrant.defaults(jobs.options)
        return _State(jobs, ctx, TaskGrant.parse(ctx.grant, base=base))

    return cap.Capability(
        name="tasks",
        description="durable background calls of the plugin's own handlers (retries, "
                    "schedules)",
        functions=(
            cap.HostFunction("enqueue", ("ptr", "len", "ptr", "len", "i64"), ("i64",), _enqueue),
            cap.HostFunction("cancel", ("i64",), ("i32",), _cancel),
        ),
        wit=(cap.WitFunction("enqueue", "func(handler: string, payload: list<u8>, delay-ms: u64) "
                                        f"-> result<u64, {_ERROR}>", _wit_enqueue),
             cap.WitFunction("cancel", f"func(id: u64) -> result<bool, {_ERROR}>", _wit_cancel)),
        bind=bind,
        check_grant=_check_grant,
        check_manifest=check_manifest,
    )


#: For plugin hosts without an app: granting ``tasks`` there is a clear error.
CAPABILITY = capability(standalone.needs_app(
    "tasks", "which run in an app (omnicore run, or OmniApp): this plugin host has no job "
    "workers", key="grant.tasks"))


def for_app(app: AppServices) -> cap.Capability:
    """The tasks capability on ``app.jobs``."""
    return capability(lambda _ctx: app.jobs)

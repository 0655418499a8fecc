"""The storage interface every backend implements, and the records it hands out.

Capabilities and services talk only to these classes, never to SQL, so a shared database
(PostgreSQL: ``SKIP LOCKED`` leases, ``LISTEN/NOTIFY`` wake-ups) can replace the SQLite
backend without touching them. Per-plugin scoping lives here, not in the host functions:
:meth:`Storage.kv` and :meth:`Storage.jobs` return views bound to one plugin that can
never reach another plugin's rows. The unscoped :class:`JobQueue` is for the host's own
workers and operators. The durable queue row is a *job* (specs/host.md's glossary); the names
it had as a task (``Task``, ``TaskSpec``, ``TaskState``, ``TASK_STATES``, ``TaskQueue``,
``PluginTasks``, ``Storage.tasks``) stay importable as deprecated aliases.

:class:`Storage` is the root a backend implements: kv, the job queue, schedules and the event
log here; memory, vector rows, sealed secrets, workflow runs and console accounts each in a
module of its own (``memory_rows``, ``vector_rows``, ``secret_rows``, ``workflows``,
``user_rows``, ``audit_rows``, ``settings_rows``, ``catalog_rows``). The errors are drawn in
:mod:`omnicore.storage.errors`.
"""

from __future__ import annotations

import abc
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Self, TypeVar, overload

from omnicore.errors import ConfigError
from omnicore.storage.audit_rows import AuditLog
from omnicore.storage.catalog_rows import CatalogRows
from omnicore.storage.errors import (
    DataDirLocked,
    NotAnInteger,
    QuotaExceeded,
    Refused,
    StorageError,
    StorageFull,
    ValueTooLarge,
)
from omnicore.storage.instance_rows import InstanceRows
from omnicore.storage.mcp_task_rows import McpTaskRows
from omnicore.storage.memory_rows import MemoryRows
from omnicore.storage.oauth_rows import OAuthRows
from omnicore.storage.secret_rows import SecretRows
from omnicore.storage.settings_rows import PluginSettingsRows
from omnicore.storage.user_rows import UserRows
from omnicore.storage.vector_rows import VectorRows
from omnicore.storage.workflows import WorkflowStore

__all__ = [
    "DEFAULT_QUOTA",
    "JOB_STATES",
    "MAX_KEY_BYTES",
    "MAX_LIST_KEYS",
    "Appended",
    "DataDirLocked",
    "EventRecord",
    "Job",
    "JobQueue",
    "JobSpec",
    "JobState",
    "KVQuota",
    "KVStore",
    "KVUsage",
    "KeyedJob",
    "NotAnInteger",
    "PluginJobs",
    "QuotaExceeded",
    "Refused",
    "Storage",
    "StorageError",
    "StorageFull",
    "ValueTooLarge",
]

#: specs/abi.md §4.3: keys are 1-512 bytes of UTF-8; list answers at most 1,000 keys.
MAX_KEY_BYTES = 512
MAX_LIST_KEYS = 1000

JobState = Literal["queued", "running", "succeeded", "dead", "cancelled"]
JOB_STATES: tuple[JobState, ...] = ("queued", "running", "succeeded", "dead", "cancelled")
#: The states of a job that ended well or was called off (``dead`` is the dead letter).
FINISHED: tuple[JobState, ...] = ("succeeded", "cancelled")
#: The states :meth:`JobQueue.purge_finished` may delete: a job that is over.
ENDED: tuple[JobState, ...] = ("succeeded", "cancelled", "dead")


@dataclass(frozen=True, slots=True)
class KVQuota:
    """A plugin's kv limits (abi.md §4.3 grant options). Bytes count keys plus values."""

    max_bytes: int = 10 * 1024 * 1024
    max_keys: int = 10_000
    max_value_bytes: int = 1024 * 1024

    def admit(self, plugin: str, key: str, value: bytes, old_size: int | None,
              usage: tuple[int, int]) -> tuple[int, int, int]:
        """Whether putting ``value`` at ``key`` fits, given the key's stored size (None: a new
        key) and the plugin's ``(keys, bytes)``: ``(entry size, keys, bytes)`` after it, or
        :class:`ValueTooLarge` / :class:`QuotaExceeded`. One rule for every backend; a write
        that shrinks usage is always admitted, even over a lowered ``max_bytes``."""
        if len(value) > self.max_value_bytes:
            raise ValueTooLarge(f"value of {len(value)} bytes is over max_value_bytes "
                                f"({self.max_value_bytes})")
        size = len(key.encode()) + len(value)
        keys, used = usage
        new_keys = keys + (0 if old_size is not None else 1)
        new_bytes = used + size - (old_size or 0)
        if new_keys > self.max_keys:
            raise QuotaExceeded(f"plugin '{plugin}' has {keys} keys, max_keys is "
                                f"{self.max_keys}")
        if new_bytes > self.max_bytes and new_bytes > used:
            raise QuotaExceeded(f"plugin '{plugin}' would use {new_bytes} bytes, "
                                f"max_bytes is {self.max_bytes}")
        return size, new_keys, new_bytes


DEFAULT_QUOTA = KVQuota()


@dataclass(frozen=True, slots=True)
class KVUsage:
    keys: int
    bytes: int


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What to run: ``handler(payload)`` of ``plugin`` at ``run_at`` (epoch seconds)."""

    plugin: str
    handler: str
    payload: bytes
    run_at: float
    max_attempts: int = 5
    backoff_ms: int = 1000
    source: str = "call"        # call | schedule:<name> | event:<topic> | operator
    hops: int = 0               # event hops that led here (cycle guard)
    #: The plugin version it must run on (``sha256:<hex>``: claimed only by a host serving
    #: that module); None: any version.
    digest: str | None = None
    #: The W3C ``traceparent`` of the span that queued it (omnicore.telemetry): its run
    #: continues that trace on whichever host claims it. None: tracing was off.
    trace: str | None = None


@dataclass(frozen=True, slots=True)
class KeyedJob:
    """A job queued in the transaction that logs its event (:meth:`EventLog.append_with_jobs`):
    ``spec`` under the idempotency ``key`` (``{event}`` in it stands for the new event's id),
    ``digest`` as :meth:`JobQueue.add_keyed` takes it."""

    key: str
    spec: JobSpec
    digest: str


@dataclass(frozen=True, slots=True)
class Appended:
    """What :meth:`EventLog.append_with_jobs` did: the event's id and the jobs it queued (in
    the order asked), or, ``first`` False, the id the same ``origin`` was logged under before
    (a replay: nothing was written now)."""

    event_id: int
    jobs: tuple[int, ...] = ()
    first: bool = True


@dataclass(frozen=True, slots=True)
class Job:
    """One job as stored. ``attempts`` is how many times it was delivered (at-least-once)."""

    id: int
    plugin: str
    handler: str
    payload: bytes
    state: JobState
    attempts: int
    max_attempts: int
    backoff_ms: int
    run_at: float
    created_at: float
    started_at: float | None
    finished_at: float | None
    last_error: str | None
    source: str
    hops: int
    #: The host holding the lease, or the one that ran the last delivery (None: never run).
    owner: str | None
    #: The runtime id of the host that ran each delivery, oldest first.
    runs: tuple[str, ...] = ()
    #: What the handler answered, when the job succeeded (its first 64 KiB; None before,
    #: and for jobs that ended before schema step 15).
    result: bytes | None = None
    #: The plugin version it must run on (None: any), as :attr:`JobSpec.digest`.
    digest: str | None = None
    #: The trace it continues, as :attr:`JobSpec.trace`.
    trace: str | None = None

    def as_dict(self, payload_preview: int = 200) -> dict[str, object]:
        """JSON-ready; the payload as text when it is UTF-8 (cut to ``payload_preview``)."""
        try:
            text: str | None = self.payload[:payload_preview].decode()
        except UnicodeDecodeError:
            text = None
        return {"id": self.id, "plugin": self.plugin, "handler": self.handler,
                "state": self.state, "attempts": self.attempts,
                "max_attempts": self.max_attempts, "run_at": self.run_at,
                "created_at": self.created_at, "started_at": self.started_at,
                "finished_at": self.finished_at, "last_error": self.last_error,
                "source": self.source, "hops": self.hops, "owner": self.owner,
                "runs": list(self.runs), "payload": text, "payload_bytes": len(self.payload),
                "digest": self.digest,
                **_result(self.result, payload_preview)}


def _result(result: bytes | None, preview: int) -> dict[str, object]:
    """A job's result as ``as_dict`` shows it: text when UTF-8, else base64."""
    if result is None:
        return {"result": None}
    try:
        return {"result": result[:preview].decode(), "result_bytes": len(result)}
    except UnicodeDecodeError:
        import base64

        return {"result": base64.b64encode(result[:preview]).decode(),
                "result_encoding": "base64", "result_bytes": len(result)}


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: int
    topic: str
    plugin: str | None
    payload: bytes
    created_at: float
    #: The hops of the work that published it (its subscribers' work counts on from there).
    hops: int = 1


class KVStore(abc.ABC):
    """One plugin's keys. Every method is atomic; a refused write leaves nothing behind."""

    plugin: str

    @abc.abstractmethod
    def get(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    def set(self, key: str, value: bytes, quota: KVQuota = DEFAULT_QUOTA) -> None:
        """Store ``value``; :class:`ValueTooLarge` / :class:`QuotaExceeded` refuse it."""

    @abc.abstractmethod
    def delete(self, key: str) -> bool:
        """True when the key existed."""

    @abc.abstractmethod
    def incr(self, key: str, delta: int, quota: KVQuota = DEFAULT_QUOTA) -> int:
        """Add ``delta`` to the decimal integer at ``key`` (absent = 0); the new value."""

    @abc.abstractmethod
    def list(self, prefix: str = "", limit: int = MAX_LIST_KEYS) -> list[str]:
        """Keys starting with ``prefix``, sorted by their UTF-8 bytes, at most ``limit``."""

    @abc.abstractmethod
    def usage(self) -> KVUsage: ...


class PluginJobs(abc.ABC):
    """One plugin's jobs: what the ``omnicore:tasks`` host functions may touch."""

    plugin: str

    @abc.abstractmethod
    def enqueue(self, handler: str, payload: bytes, run_at: float, *, max_attempts: int,
                backoff_ms: int, max_queued: int, source: str = "call", hops: int = 0,
                digest: str | None = None, trace: str | None = None) -> int:
        """The new job id; :class:`QuotaExceeded` when ``max_queued`` are already pending.
        ``digest``: the plugin version it must run on (None: any); ``trace``: the
        ``traceparent`` it continues."""

    @abc.abstractmethod
    def cancel(self, job_id: int) -> bool | None:
        """True cancelled, False already running/finished, None not this plugin's job."""

    @abc.abstractmethod
    def get(self, job_id: int) -> Job | None: ...

    @abc.abstractmethod
    def pending(self) -> int:
        """Jobs queued or running."""


class JobQueue(abc.ABC):
    """The whole queue, for the host's workers and operators (not plugins)."""

    @abc.abstractmethod
    def add(self, spec: JobSpec) -> int:
        """Enqueue without quotas (operator, schedules, durable events)."""

    def add_many(self, specs: Sequence[JobSpec]) -> list[int]:
        """Enqueue several in one transaction; their ids, in order."""
        return [self.add(spec) for spec in specs]

    @abc.abstractmethod
    def add_keyed(self, spec: JobSpec, key: str, digest: str, now: float,
                  keep_s: float) -> tuple[int, str, bool]:
        """Enqueue under the idempotency ``key`` unless a job was enqueued under it within
        ``keep_s``: the job id, the ``digest`` of the request that made it, and whether this
        call made it. Of several hosts adding one key at once, one makes the job."""

    @abc.abstractmethod
    def get(self, job_id: int) -> Job | None: ...

    @abc.abstractmethod
    def list(self, *, plugin: str | None = None, states: Sequence[str] = (),
             limit: int = 100) -> list[Job]:
        """Newest first."""

    @abc.abstractmethod
    def claim(self, owner: str, now: float, lease_s: float,
              plugins: Sequence[str] | Mapping[str, str | None] | None = None
              ) -> Job | None:
        """Take the oldest due job (queued, or running with an expired lease) and lease it
        to ``owner`` until ``now + lease_s``; counts a delivery. With ``plugins``, only a job
        of one of them (the plugins the claiming host has loaded: a host never spends a
        delivery on a plugin it does not have); an empty list claims nothing. A mapping
        gives the digest each plugin serves: a job naming a digest is claimed only where
        that one serves."""

    @abc.abstractmethod
    def renew(self, owner: str, job_ids: Sequence[int], lease_until: float) -> None:
        """Extend the leases ``owner`` still holds."""

    @abc.abstractmethod
    def finish(self, job_id: int, owner: str, now: float, result: bytes | None = None) -> bool:
        """Mark succeeded, keeping the first 64 KiB of ``result`` (the handler's output);
        False when ``owner`` no longer holds the lease."""

    @abc.abstractmethod
    def fail(self, job_id: int, owner: str, now: float, error: str,
             retry_at: float | None) -> JobState | None:
        """Requeue at ``retry_at``, or dead when None; the new state (None: lease lost)."""

    @abc.abstractmethod
    def release(self, owner: str, job_ids: Sequence[int]) -> None:
        """Give leases back without counting an attempt (graceful shutdown)."""

    @abc.abstractmethod
    def release_others(self, owner: str) -> int:
        """Make every job leased by anyone but ``owner`` due again at once, as if its lease
        had expired (the attempt stays counted); how many. Only for a host that knows it is
        alone, such as the holder of the SQLite data dir's lock: the others are dead."""

    @abc.abstractmethod
    def retry(self, job_id: int, now: float) -> bool:
        """Operator: a dead or cancelled job is queued again with fresh attempts."""

    @abc.abstractmethod
    def cancel(self, job_id: int, now: float, plugin: str | None = None) -> bool | None:
        """True cancelled, False not cancellable (running/finished), None unknown (or not
        ``plugin``'s job when ``plugin`` is given)."""

    @abc.abstractmethod
    def next_due(self, plugins: Sequence[str] | Mapping[str, str | None] | None = None
                 ) -> float | None:
        """When the earliest queued job (of ``plugins``, when given, as :meth:`claim` takes
        them) is due (epoch seconds), or None."""

    @abc.abstractmethod
    def counts(self) -> dict[tuple[str, JobState], int]:
        """How many jobs each ``(plugin, state)`` holds (absent: none)."""

    @abc.abstractmethod
    def purge_finished(self, before: float, *, states: Sequence[JobState] = FINISHED,
                       limit: int | None = None) -> int:
        """Delete jobs in ``states`` (finished ones only: succeeded, cancelled, dead)
        finished before ``before``, oldest first, at most ``limit`` (None: all) in one
        transaction; how many. A queued or running job is never deleted: ValueError."""


class Schedules(abc.ABC):
    """When each schedule next fires, so downtime and several hosts fire once per period."""

    @abc.abstractmethod
    def next_fire(self, plugin: str, name: str) -> float | None: ...

    @abc.abstractmethod
    def advance(self, plugin: str, name: str, expected: float | None, new_next: float,
                fire: JobSpec | None, *, alone: bool = False) -> bool:
        """Compare-and-set ``next_fire`` from ``expected`` to ``new_next`` and, in the same
        transaction, enqueue ``fire``; False when another host advanced it first. ``alone``:
        enqueue it only if no job of ``plugin`` from the same source (``fire.source``, or its
        run now: ``fire.source + ":now"``) is still queued or running (the advance happens
        either way)."""


class EventLog(abc.ABC):
    """The recent plugin events (bounded), for operators."""

    @abc.abstractmethod
    def append(self, topic: str, plugin: str | None, payload: bytes, retain: int,
               hops: int = 1) -> int: ...

    @abc.abstractmethod
    def append_with_jobs(self, topic: str, plugin: str | None, payload: bytes, retain: int,
                         hops: int, jobs: Sequence[KeyedJob], *, origin: str,
                         replay: bool = False, keep_s: float = 86400.0) -> Appended:
        """:meth:`append` and queue ``jobs`` (its durable deliveries) in one transaction: the
        event is never logged without them. ``origin`` names this publish (an idempotency
        key kept ``keep_s`` beside the jobs' keys, written when there are jobs or with
        ``replay``): with ``replay`` (the publish was held through an outage and may have
        been logged already), an origin logged before writes nothing and answers its event
        id."""

    @abc.abstractmethod
    def recent(self, limit: int = 100, topic_prefix: str = "") -> list[EventRecord]:
        """Newest first."""

    @abc.abstractmethod
    def get(self, event_id: int) -> EventRecord | None:
        """One event, while the log still keeps it."""

    @abc.abstractmethod
    def get_many(self, event_ids: Sequence[int]) -> list[EventRecord]:
        """The events of ``event_ids`` the log still keeps, oldest first (one query per
        thousand ids)."""

    @abc.abstractmethod
    def purge(self, before: float, *, limit: int | None = None) -> int:
        """Delete the events appended before ``before``, oldest first, at most ``limit``
        (None: all) in one transaction; how many. (A durable delivery is a job carrying its
        own copy of the event: the log's row is not needed to deliver it.)"""


T = TypeVar("T")


class Served(Generic[T]):
    """``storage.<name>``, a store of :class:`Storage` that a backend serves by overriding it
    (``stores.root.Built``). A backend serves the stores one by one; until it serves this
    one, reading it is a configuration error naming it, never a half-working store."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, storage: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, storage: Storage, owner: type | None = None) -> T: ...

    def __get__(self, storage: Storage | None, owner: type | None = None) -> T | Self:
        if storage is None:
            return self
        raise storage._unserved(self.name)


class Storage(abc.ABC):
    """One app's durable state. Thread-safe; open once per app and share."""

    #: A human name for errors and logs (the SQLite file path).
    location: str
    queue: JobQueue
    schedules: Schedules
    events: EventLog

    #: Several hosts may share this storage at once (PostgreSQL): caches must catch up with
    #: what the others write, and the instance table is worth watching closely.
    shared: bool = False

    def on_wakeup(self, callback: Callable[[], None], queue: str | None = None) -> None:
        """Call ``callback`` when another host enqueues work on ``queue`` (``"jobs"``; None:
        any queue) or releases a dead host's leases (every queue's callbacks). A backend
        several hosts share does; an embedded one has no other host: no-op."""
        return None

    def on_event(self, callback: Callable[[list[int]], None]) -> None:
        """Call ``callback(event_ids)`` with the events other hosts append to the log, so its
        live subscribers here see them too: in order, a burst in one call (a shared backend
        does; an embedded one: no-op)."""
        return None

    def on_settings(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` soon after any host changes a plugin's operator settings (a
        shared backend does; an embedded one: no-op, readers poll the change sequence)."""
        return None

    def on_catalog(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` soon after any host changes the plugin catalog (a shared backend
        does, and after a reconnect, when a change may have gone unheard; an embedded one:
        no-op, readers poll the change sequence)."""
        return None

    @property
    @abc.abstractmethod
    def instances(self) -> InstanceRows:
        """Which hosts share this storage (omnicore.cluster)."""

    @abc.abstractmethod
    def kv(self, plugin: str) -> KVStore:
        """The view of ``plugin``'s keys (and only its keys)."""

    @abc.abstractmethod
    def jobs(self, plugin: str) -> PluginJobs:
        """The view of ``plugin``'s jobs (and only its jobs)."""

    def tasks(self, plugin: str) -> PluginJobs:
        """Deprecated: :meth:`jobs` (the row's old name)."""
        warnings.warn("Storage.tasks() is deprecated: use Storage.jobs()", DeprecationWarning,
                      stacklevel=2)
        return self.jobs(plugin)

    @abc.abstractmethod
    def kv_plugins(self) -> list[str]:
        """Plugins that have at least one key."""

    memory: Served[MemoryRows] = Served(
        "Every plugin's memories (the rows under ``app.memory``).")
    vectors: Served[VectorRows] = Served(
        "Every plugin's vector rows (the HNSW index is a per-process cache over them).")
    secrets: Served[SecretRows] = Served("The app's secrets, sealed above storage.")
    workflows: Served[WorkflowStore] = Served(
        "Workflow versions, runs, steps (the step queue), history and triggers.")

    #: The console's accounts for a backend that does not keep them itself yet (set by
    #: ``open_storage``: the SQLite file beside the data dir, where they have always been).
    local_users: UserRows | None = None

    @property
    def users(self) -> UserRows:
        """The console's users, sessions, API tokens and setup links."""
        if self.local_users is not None:
            return self.local_users
        raise self._unserved("users")

    audit: Served[AuditLog] = Served("Who changed what, when and from where.")
    plugin_settings: Served[PluginSettingsRows] = Served(
        "The operator's settings per plugin (grants, config, limits, ...), which every "
        "instance applies over its own plugin folder.")
    oauth: Served[OAuthRows] = Served(
        "Remote agents' OAuth clients, grants, codes and tokens (omnicore.oauth).")
    mcp_tasks: Served[McpTaskRows] = Served(
        "MCP tasks: their owners, jobs and outcomes (omnicore.mcp.tasks).")
    catalog: Served[CatalogRows] = Served(
        "The plugin catalog: modules by digest, every publish a version, the version of each "
        "name in force, which every host loads over its own plugin folder.")

    @abc.abstractmethod
    def close(self) -> None: ...

    def _unserved(self, store: str) -> ConfigError:
        # A backend serves these stores one by one; until it serves one, using it is a
        # configuration error (choose a backend that does), never a half-working store.
        return ConfigError(f"{store} needs a storage backend that serves it; "
                           f"{type(self).__name__} does not yet (use the SQLite storage: "
                           "leave storage.url unset)", key="storage")


#: The row's names from before it was called a job (specs/host.md's glossary): still
#: importable, with a DeprecationWarning naming the new one.
RENAMED = {"Task": "Job", "TaskSpec": "JobSpec", "TaskState": "JobState",
           "TASK_STATES": "JOB_STATES", "TaskQueue": "JobQueue", "PluginTasks": "PluginJobs"}


def renamed(module: str, name: str, namespace: dict[str, Any]) -> Any:
    """``module.__getattr__``'s answer for an old name: the new object, with a warning."""
    new = RENAMED.get(name)
    if new is None or new not in namespace:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warnings.warn(f"{module}.{name} is deprecated: use {module}.{new}", DeprecationWarning,
                  stacklevel=3)
    return namespace[new]


def __getattr__(name: str) -> Any:
    return renamed(__name__, name, globals())

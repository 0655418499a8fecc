"""The root of a storage over a backend: the stores every backend serves, built once here.

A backend's root (``SQLiteStorage``, ``PostgresStorage``) is this over its own
:class:`~omnicore.storage.backend.Backend`, plus the stores it serves its own way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from omnicore.storage.backend import Backend
from omnicore.storage.base import EventLog, KVStore, PluginTasks, Schedules, Storage, TaskQueue
from omnicore.storage.stores.events import Events
from omnicore.storage.stores.jobs import Jobs, JobSchedules, PluginJobs
from omnicore.storage.stores.kv import KV, kv_plugins
from omnicore.storage.stores.workflows import Workflows
from omnicore.storage.workflows import WorkflowStore

__all__ = ["BackendStorage"]


class BackendStorage(Storage):
    """:class:`~omnicore.storage.base.Storage` whose stores run on ``backend``."""

    def __init__(self, backend: Backend) -> None:
        #: The backend every store runs on.
        self.backend = backend
        self.location = backend.location
        self._jobs = Jobs(backend)
        self.queue: TaskQueue = self._jobs
        self.schedules: Schedules = JobSchedules(backend)
        self.events: EventLog = Events(backend)
        #: Guards the stores built on first use (a backend may migrate their tables then).
        self._stores_lock = threading.Lock()
        self._workflows: WorkflowStore | None = None

    def on_wakeup(self, callback: Callable[[], None], queue: str | None = None) -> None:
        self.backend.on_wakeup(callback, queue)

    def kv(self, plugin: str) -> KVStore:
        return KV(self.backend, plugin)

    def tasks(self, plugin: str) -> PluginTasks:
        return PluginJobs(self.backend, self._jobs, plugin)

    def kv_plugins(self) -> list[str]:
        return kv_plugins(self.backend)

    @property
    def workflows(self) -> WorkflowStore:
        with self._stores_lock:
            if self._workflows is None:
                self._workflows = Workflows(self.backend)
            return self._workflows

    def close(self) -> None:
        self.backend.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.location}>"

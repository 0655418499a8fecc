"""The root of a storage over a backend: the stores every backend serves, built once here.

A backend's root (``SQLiteStorage``, ``PostgresStorage``) is this over its own
:class:`~omnicore.storage.backend.Backend`, plus the stores it serves its own way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from omnicore.storage.audit_rows import AuditLog
from omnicore.storage.backend import Backend
from omnicore.storage.base import EventLog, KVStore, PluginTasks, Schedules, Storage, TaskQueue
from omnicore.storage.instance_rows import InstanceRows
from omnicore.storage.memory_rows import MemoryRows
from omnicore.storage.secret_rows import SecretRows
from omnicore.storage.settings_rows import PluginSettingsRows
from omnicore.storage.stores.audit import Audit
from omnicore.storage.stores.events import Events
from omnicore.storage.stores.instances import Instances
from omnicore.storage.stores.jobs import Jobs, JobSchedules, PluginJobs
from omnicore.storage.stores.kv import KV, kv_plugins
from omnicore.storage.stores.memory import Memory
from omnicore.storage.stores.secrets import Secrets
from omnicore.storage.stores.settings import PluginSettings
from omnicore.storage.stores.users import Users
from omnicore.storage.stores.vectors import Vectors
from omnicore.storage.stores.workflows import Workflows
from omnicore.storage.user_rows import UserRows
from omnicore.storage.vector_rows import VectorRows
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
        self._users: UserRows | None = None
        self._instances: InstanceRows | None = None
        self._memory: MemoryRows | None = None
        self._vectors: VectorRows | None = None
        self._secrets: SecretRows | None = None
        self._audit: AuditLog | None = None
        self._plugin_settings: PluginSettingsRows | None = None

    def on_wakeup(self, callback: Callable[[], None], queue: str | None = None) -> None:
        self.backend.on_wakeup(callback, queue)

    def kv(self, plugin: str) -> KVStore:
        return KV(self.backend, plugin)

    def tasks(self, plugin: str) -> PluginTasks:
        return PluginJobs(self.backend, self._jobs, plugin)

    def kv_plugins(self) -> list[str]:
        return kv_plugins(self.backend)

    # Each store below is built when first asked for (SQLite migrates its tables then), so
    # opening the storage for kv alone (``omnicore call``) touches no other table.

    @property
    def workflows(self) -> WorkflowStore:
        with self._stores_lock:
            if self._workflows is None:
                self._workflows = Workflows(self.backend)
            return self._workflows

    @property
    def secrets(self) -> SecretRows:
        with self._stores_lock:
            if self._secrets is None:
                self._secrets = Secrets(self.backend)
            return self._secrets

    @property
    def audit(self) -> AuditLog:
        with self._stores_lock:
            if self._audit is None:
                self._audit = Audit(self.backend)
            return self._audit

    @property
    def plugin_settings(self) -> PluginSettingsRows:
        with self._stores_lock:
            if self._plugin_settings is None:
                self._plugin_settings = PluginSettings(self.backend)
            return self._plugin_settings

    @property
    def vectors(self) -> VectorRows:
        with self._stores_lock:
            if self._vectors is None:
                self._vectors = Vectors(self.backend)
            return self._vectors

    @property
    def memory(self) -> MemoryRows:
        with self._stores_lock:
            if self._memory is None:
                self._memory = Memory(self.backend)
            return self._memory

    @property
    def instances(self) -> InstanceRows:
        with self._stores_lock:
            if self._instances is None:
                self._instances = Instances(self.backend)
            return self._instances

    @property
    def users(self) -> UserRows:
        with self._stores_lock:
            if self._users is None:
                self._users = Users(self.backend)
            return self._users

    def close(self) -> None:
        self.backend.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.location}>"

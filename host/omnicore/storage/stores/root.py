"""The root of a storage over a backend: the stores every backend serves, built once here.

A backend's root (``SQLiteStorage``, ``PostgresStorage``) is this over its own
:class:`~omnicore.storage.backend.Backend`, plus the stores it serves its own way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from omnicore.storage.audit_rows import AuditLog
from omnicore.storage.backend import Backend
from omnicore.storage.base import EventLog, JobQueue, KVStore, PluginJobs, Schedules, Storage
from omnicore.storage.catalog_rows import CatalogRows
from omnicore.storage.instance_rows import InstanceRows
from omnicore.storage.mcp_task_rows import McpTaskRows
from omnicore.storage.memory_rows import MemoryRows
from omnicore.storage.oauth_rows import OAuthRows
from omnicore.storage.secret_rows import SecretRows
from omnicore.storage.settings_rows import PluginSettingsRows
from omnicore.storage.stores.audit import Audit
from omnicore.storage.stores.catalog import Catalog
from omnicore.storage.stores.events import Events
from omnicore.storage.stores.instances import Instances
from omnicore.storage.stores.jobs import Jobs, JobSchedules, PluginJobRows
from omnicore.storage.stores.kv import KV, kv_plugins
from omnicore.storage.stores.mcp_tasks import McpTasks
from omnicore.storage.stores.memory import Memory
from omnicore.storage.stores.oauth import OAuth
from omnicore.storage.stores.secrets import Secrets
from omnicore.storage.stores.settings import PluginSettings
from omnicore.storage.stores.users import Users
from omnicore.storage.stores.vectors import Vectors
from omnicore.storage.stores.workflows import Workflows
from omnicore.storage.user_rows import UserRows
from omnicore.storage.vector_rows import VectorRows
from omnicore.storage.workflows import WorkflowStore

__all__ = ["BackendStorage", "Built"]

T = TypeVar("T")


class Built(Generic[T]):
    """A store of the root, built over its backend when first read and kept."""

    def __init__(self, build: Callable[[Backend], T]) -> None:
        self._build = build

    @overload
    def __get__(self, root: None, owner: type) -> Built[T]: ...

    @overload
    def __get__(self, root: BackendStorage, owner: type | None = None) -> T: ...

    def __get__(self, root: BackendStorage | None, owner: type | None = None) -> T | Built[T]:
        return self if root is None else root.store(self._build)


class BackendStorage(Storage):
    """:class:`~omnicore.storage.base.Storage` whose stores run on ``backend``."""

    def __init__(self, backend: Backend) -> None:
        #: The backend every store runs on.
        self.backend = backend
        self.location = backend.location
        self._jobs = Jobs(backend)
        self.queue: JobQueue = self._jobs
        self.schedules: Schedules = JobSchedules(backend)
        self.events: EventLog = Events(backend)
        #: Guards the stores built on first use (a backend may migrate their tables then).
        self._stores_lock = threading.Lock()
        self._built: dict[Callable[..., Any], Any] = {}

    def on_wakeup(self, callback: Callable[[], None], queue: str | None = None) -> None:
        self.backend.on_wakeup(callback, queue)

    def kv(self, plugin: str) -> KVStore:
        return KV(self.backend, plugin)

    def jobs(self, plugin: str) -> PluginJobs:
        return PluginJobRows(self.backend, self._jobs, plugin)

    def kv_plugins(self) -> list[str]:
        return kv_plugins(self.backend)

    # Each store below is built when first read (SQLite migrates its tables then), so opening
    # the storage for kv alone (``omnicore call``) touches no other table.
    workflows: Built[WorkflowStore] = Built(Workflows)
    secrets: Built[SecretRows] = Built(Secrets)
    audit: Built[AuditLog] = Built(Audit)
    plugin_settings: Built[PluginSettingsRows] = Built(PluginSettings)
    vectors: Built[VectorRows] = Built(Vectors)
    memory: Built[MemoryRows] = Built(Memory)
    instances: Built[InstanceRows] = Built(Instances)
    users: Built[UserRows] = Built(Users)
    oauth: Built[OAuthRows] = Built(OAuth)
    mcp_tasks: Built[McpTaskRows] = Built(McpTasks)
    catalog: Built[CatalogRows] = Built(Catalog)

    def store(self, build: Callable[[Backend], T]) -> T:
        """The store ``build`` makes over the backend, made once."""
        with self._stores_lock:
            if build not in self._built:
                self._built[build] = build(self.backend)
            return self._built[build]  # type: ignore[no-any-return]

    def close(self) -> None:
        self.backend.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.location}>"
